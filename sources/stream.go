package sources

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unsafe"

	jsoniter "github.com/json-iterator/go"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// streamBuffer is how much of an answer the decoder holds at a time: the answer itself is
// never held whole.
const streamBuffer = 64 << 10

// queryRange runs query_range and decodes the answer as it arrives, straight into a
// model.Matrix with each series' samples preallocated for the range's steps. client_golang's
// API reads the whole body, keeps it as a json.RawMessage and decodes it again: at 10 000 groups
// and a few hundred steps that was tens of megabytes held and a quarter of a gigabyte allocated
// per answer. The request and the errors are client_golang's (the same form, the same GET
// fallback, the same v1.Error types); only the decoding of a successful answer is written here,
// with a reader of its own (scanner: json-iterator, which client_golang depends on, cannot skip
// a field or a label name without making a string of it).
func (p *Prometheus) queryRange(ctx context.Context, query string, r Range) (model.Value, v1.Warnings, v1.Infos, error) {
	args := url.Values{}
	args.Set("query", query)
	args.Set("start", formatTime(r.Start))
	args.Set("end", formatTime(r.End))
	args.Set("step", strconv.FormatFloat(r.Step.Seconds(), 'f', -1, 64))
	args.Set("timeout", p.timeout.String())
	u := p.client.URL("/api/v1/query_range", nil)

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(args.Encode()))
	if err != nil {
		return nil, nil, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header["Idempotency-Key"] = nil // retried on a network error like a GET (as client_golang does)
	resp, err := p.httpClient.Do(req)
	if err != nil {
		return nil, nil, nil, err
	}
	switch resp.StatusCode {
	case http.StatusForbidden, http.StatusMethodNotAllowed, http.StatusNotImplemented:
		// A proxy that allows only GET: the query goes in the URL, as client_golang retries.
		resp.Body.Close()
		u.RawQuery = args.Encode()
		if req, err = http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil); err != nil {
			return nil, nil, nil, err
		}
		if resp, err = p.httpClient.Do(req); err != nil {
			return nil, nil, nil, err
		}
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, nil, nil, errorResponse(resp)
	}
	return decodeMatrix(resp.Body, int(r.steps()), p.labels.answer(query), p.recycled.take(query))
}

// errorResponse is the v1.Error client_golang returns for a failed answer: Prometheus's own
// error for 400 and 422, else the status, with the body as detail.
func errorResponse(resp *http.Response) error {
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	typ, msg := v1.ErrServer, fmt.Sprintf("server error: %d", resp.StatusCode)
	if resp.StatusCode/100 == 4 {
		typ, msg = v1.ErrClient, fmt.Sprintf("client error: %d", resp.StatusCode)
	}
	if resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnprocessableEntity {
		var e struct {
			ErrorType v1.ErrorType `json:"errorType"`
			Error     string       `json:"error"`
		}
		if jsoniter.Unmarshal(body, &e) == nil && e.Error != "" {
			if e.ErrorType != "" {
				typ = e.ErrorType
			}
			return &v1.Error{Type: typ, Msg: e.Error}
		}
	}
	return &v1.Error{Type: typ, Msg: msg, Detail: string(body)}
}

// decodeMatrix reads a successful query_range answer from body. steps sizes each series'
// samples; labels holds the label sets already decoded, which the answer's series share. reuse
// is an earlier answer its caller is done with (nil if none), whose memory the answer is
// decoded into where it fits.
func decodeMatrix(body io.Reader, steps int, labels *labelsOf, reuse model.Matrix) (model.Value, v1.Warnings, v1.Infos, error) {
	s := newScanner(body)
	defer s.release()
	if c := s.peek(); c != '{' {
		// What encoding/json says, which names the HTML page a proxy or a login answers with.
		return nil, nil, nil, &v1.Error{Type: v1.ErrBadResponse, Msg: fmt.Sprintf("invalid character %q looking for beginning of value", c)}
	}
	var (
		status, resultType, errType, errMsg string
		warnings                            v1.Warnings
		infos                               v1.Infos
		matrix                              model.Matrix
		sawResult                           bool
	)
	readStrings := func(where string) []string {
		var out []string
		if s.null() {
			return nil
		}
		if !s.expect('[', where) {
			return nil
		}
		for first := true; s.more(']', &first, where); {
			out = append(out, s.text(where))
		}
		return out
	}
	s.pos++
	for first := true; s.more('}', &first, "the answer"); {
		switch s.field("the answer", "status", "errorType", "error", "warnings", "infos", "data") {
		case 0:
			status = s.text("status")
		case 1:
			errType = s.text("errorType")
		case 2:
			errMsg = s.text("error")
		case 3:
			warnings = readStrings("warnings")
		case 4:
			infos = readStrings("infos")
		case 5:
			if s.null() || !s.expect('{', "data") {
				break
			}
			for first := true; s.more('}', &first, "data"); {
				switch f := s.field("data", "resultType", "result"); {
				case f == 0:
					resultType = s.text("resultType")
				case f == 1 && resultType == model.ValMatrix.String():
					sawResult = true
					matrix = readSeries(s, steps, labels, reuse)
				case f == 1:
					// Prometheus writes resultType first; anything else is not a matrix.
					return nil, nil, nil, fmt.Errorf("result is a %s, want a matrix", resultType)
				default:
					s.skip("data")
				}
			}
		default:
			s.skip("the answer")
		}
	}
	if s.err != nil {
		return nil, warnings, infos, badResponse(s.err)
	}
	switch {
	case status == "error":
		return nil, warnings, infos, &v1.Error{Type: v1.ErrorType(errType), Msg: errMsg}
	case status != "success":
		return nil, warnings, infos, &v1.Error{Type: v1.ErrBadResponse, Msg: fmt.Sprintf("status %q, want success", status)}
	case !sawResult:
		return nil, warnings, infos, &v1.Error{Type: v1.ErrBadResponse, Msg: "no matrix in the answer"}
	}
	if matrix == nil {
		matrix = model.Matrix{}
	}
	labels.done()
	return matrix, warnings, infos, nil
}

// Series are allocated in slabs: an incremental step's answer holds one or two samples per
// series, so two allocations per series (its SampleStream and its values) cost more than the
// bytes. streamSlab SampleStreams are 14 KiB; pairSlab samples are 64 KiB, carved into each
// series' steps while a series takes at most a sixteenth of it (a history chunk's long series
// gain nothing from a slab, and are allocated alone). What the last slab of an answer leaves
// unused, at most those 78 KiB, lives as long as the answer.
const (
	streamSlab = 256
	pairSlab   = 4096
)

// readSeries reads the result array of a matrix. Each series' labels come from labels, so a
// label set decoded before is shared rather than built again. The answer's i-th series is
// decoded into reuse's i-th (its SampleStream, and its samples where they fit), and the list
// into reuse's: an answer lists the same series in the same order every time, so a steady
// fleet's cycle allocates nothing for its answers while earlier ones are handed back.
func readSeries(s *scanner, steps int, labels *labelsOf, reuse model.Matrix) model.Matrix {
	if s.null() {
		return nil
	}
	if !s.expect('[', "result") {
		return nil
	}
	r := &seriesReader{
		s:      s,
		labels: labels,
		steps:  steps,
		// raw is the series' "metric" object, reused from series to series; 256 B holds most
		// label sets whole.
		raw: make([]byte, 0, 256),
	}
	// As many series as the query's answer before: appended to from empty, the list grew by a
	// quarter at a time past 256 series, allocating about four times its final size (at
	// 100 000 groups, 36 MB per cycle of the shipped rules).
	out := reuse[:0]
	if cap(out) < labels.series() {
		out = make(model.Matrix, 0, labels.series())
	}
	var streams []model.SampleStream
	for first := true; s.more(']', &first, "result"); {
		r.old = nil
		if i := len(out); i < len(reuse) && reuse[i] != nil {
			// In place: out[i] is reuse[i] where they share their array.
			r.ss, r.old = reuse[i], reuse[i].Values
			*r.ss = model.SampleStream{}
		} else {
			if len(streams) == 0 {
				streams = make([]model.SampleStream, streamSlab)
			}
			r.ss = &streams[0]
			streams = streams[1:]
		}
		r.read()
		if s.err != nil {
			break
		}
		if r.ss.Metric == nil { // a series without labels, as client_golang decodes it
			r.ss.Metric = model.Metric{}
		}
		out = append(out, r.ss)
	}
	if len(out) < len(reuse) && unsafe.SliceData(out) == unsafe.SliceData(reuse) {
		// The series of the earlier answer past this one's end would stay reachable from the
		// list's spare capacity.
		clear(reuse[len(out):])
	}
	return out
}

// seriesReader reads the series of one answer, one at a time into ss.
type seriesReader struct {
	s      *scanner
	ss     *model.SampleStream
	labels *labelsOf
	steps  int
	raw    []byte
	pairs  []model.SamplePair // the slab the next series' samples are carved from
	old    []model.SamplePair // the samples of the earlier answer's series ss is reused from
}

// read reads one series: its "metric" and "values"; other fields (histograms: no rule reads
// native histograms) are skipped.
func (r *seriesReader) read() {
	s := r.s
	if !s.expect('{', "a series") {
		return
	}
	for first := true; s.more('}', &first, "a series"); {
		switch s.field("a series", "metric", "values") {
		case 0:
			r.readMetric()
		case 1:
			r.readValues()
		default:
			s.skip("a series")
		}
	}
}

// readMetric reads the series' "metric" object.
func (r *seriesReader) readMetric() {
	s := r.s
	r.raw = s.rawObject(r.raw[:0], "metric")
	if s.err != nil {
		return
	}
	m, err := r.labels.metric(r.raw)
	if err != nil {
		s.fail("metric: %v", err)
		return
	}
	r.ss.Metric = m
}

// readValues reads the series' "values" array.
func (r *seriesReader) readValues() {
	s, ss, steps := r.s, r.ss, r.steps
	switch {
	case cap(r.old) >= steps && cap(r.old) <= 2*steps:
		// An earlier answer's series of about as many steps (the cycle's one or two): an
		// earlier chunk's history, many times longer, is not kept alive by a short answer.
		ss.Values, r.old = r.old[:0], nil
	case steps > pairSlab/16:
		ss.Values = make([]model.SamplePair, 0, steps)
	default:
		if len(r.pairs) < steps {
			r.pairs = make([]model.SamplePair, pairSlab)
		}
		// Capped at steps, so a series with more samples than steps copies them out instead
		// of running into the next one's.
		ss.Values, r.pairs = r.pairs[:0:steps], r.pairs[steps:]
	}
	if s.null() || !s.expect('[', "values") {
		return
	}
	for first := true; s.more(']', &first, "values"); {
		ss.Values = append(ss.Values, readSample(s))
	}
}

// readSample reads [timestamp, "value"]. The value is parsed from the scanner's buffer without
// a string per sample.
func readSample(s *scanner) model.SamplePair {
	var sp model.SamplePair
	if !s.expect('[', "a sample") {
		return sp
	}
	if s.peek() == ']' {
		s.fail("empty sample")
		return sp
	}
	sp.Timestamp = model.Time(math.Round(s.number("a sample's timestamp") * 1000))
	if c := s.next(); c != ',' {
		if c == ']' {
			s.fail("sample without a value")
		} else {
			s.unexpected(c, "a sample")
		}
		return sp
	}
	raw := s.str("a sample's value")
	if s.err != nil {
		return sp
	}
	v, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(raw), len(raw)), 64) // raw is not kept
	if err != nil {
		s.fail("value %s is not a number", strconv.Quote(string(raw)))
		return sp
	}
	sp.Value = model.SampleValue(v)
	switch c := s.next(); c {
	case ']':
	case ',':
		s.fail("sample with more than two elements")
	default:
		s.unexpected(c, "a sample")
	}
	return sp
}

// badResponse is a decoding failure as client_golang reports one (bad_response); a response
// over the size limit stays ErrResponseTooLarge, for errors.Is.
func badResponse(err error) error {
	if errors.Is(err, ErrResponseTooLarge) {
		return err
	}
	return &v1.Error{Type: v1.ErrBadResponse, Msg: err.Error()}
}

// formatTime writes a time as Prometheus's API takes it, as client_golang does.
func formatTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.Unix())+float64(t.Nanosecond())/1e9, 'f', -1, 64)
}
