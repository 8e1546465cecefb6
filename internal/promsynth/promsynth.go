// Package promsynth serves Prometheus's query API (/api/v1/query and /api/v1/query_range) with
// synthetic answers computed as they are written, so a client can be measured against a fleet
// too large to backfill into a real Prometheus on one machine.
//
// It knows the queries it is given by their exact text and nothing of PromQL: each is answered
// by an Answer, a fixed list of series whose values are functions of time. Answers are streamed
// series by series; the server never holds a whole body or a model.Matrix, so its own CPU and
// memory stay small beside the client's, which is what is measured. It listens on 127.0.0.1
// only.
package promsynth

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// Answer is the result of one query: Series series, each with its labels and a value at any
// evaluation time.
type Answer struct {
	// Series is how many series the answer may hold.
	Series int
	// Labels appends series i's labels to dst (sorted by name, as Prometheus writes them) and
	// returns it; the server reuses dst, so Labels must not keep it.
	Labels func(dst []model.LabelPair, i int) []model.LabelPair
	// Value is series i's value at t; ok is false when the series has no sample then (a
	// filtered or absent series, as `> 0` leaves). A series with no sample in a range is left
	// out of the answer, as Prometheus does.
	Value func(i int, t time.Time) (v float64, ok bool)
}

// maxPointsPerSeries is Prometheus's own limit on a range query's steps (its API refuses more
// than 11 000 points per series), kept so a client that works here works against Prometheus.
const maxPointsPerSeries = 11000

// Handler answers the query API from answers, keyed by the exact query text.
type Handler struct {
	answers map[string]Answer
	mux     *http.ServeMux
	queries atomic.Int64
	samples atomic.Int64
}

// NewHandler returns a handler that answers each query of answers; any other query is refused
// with Prometheus's bad_data error and 400.
func NewHandler(answers map[string]Answer) *Handler {
	h := &Handler{answers: answers, mux: http.NewServeMux()}
	h.mux.HandleFunc("/api/v1/query_range", h.queryRange)
	h.mux.HandleFunc("/api/v1/query", h.query)
	// What emergentd's readiness probe asks (sources.Prometheus.Ready); both are constant.
	h.mux.HandleFunc("/-/ready", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("Prometheus Server is Ready.\n"))
	})
	h.mux.HandleFunc("/api/v1/status/buildinfo", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"success","data":{"version":"promsynth","revision":"","branch":"","buildUser":"","buildDate":"","goVersion":""}}`))
	})
	return h
}

// ServeHTTP routes a request to the endpoint it asks for.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Served returns how many queries were answered successfully and how many samples they held.
func (h *Handler) Served() (queries, samples int64) { return h.queries.Load(), h.samples.Load() }

func (h *Handler) queryRange(w http.ResponseWriter, r *http.Request) {
	a, ok := h.answer(w, r)
	if !ok {
		return
	}
	start, err := parseTime(r.FormValue("start"))
	if err != nil {
		badData(w, fmt.Errorf("invalid parameter \"start\": %w", err))
		return
	}
	end, err := parseTime(r.FormValue("end"))
	if err != nil {
		badData(w, fmt.Errorf("invalid parameter \"end\": %w", err))
		return
	}
	step, err := parseDuration(r.FormValue("step"))
	if err != nil {
		badData(w, fmt.Errorf("invalid parameter \"step\": %w", err))
		return
	}
	// Prometheus's own checks and words (web/api/v1), so clients see the same refusals.
	switch {
	case end.Before(start):
		badData(w, errors.New("end timestamp must not be before start time"))
		return
	case step <= 0:
		badData(w, errors.New("zero or negative query resolution step widths are not accepted. Try a positive integer"))
		return
	case end.Sub(start)/step > maxPointsPerSeries:
		badData(w, errors.New("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"))
		return
	}
	var times []time.Time
	for t := start; !t.After(end); t = t.Add(step) {
		times = append(times, t)
	}
	h.stream(w, a, times, model.ValMatrix)
}

func (h *Handler) query(w http.ResponseWriter, r *http.Request) {
	a, ok := h.answer(w, r)
	if !ok {
		return
	}
	at := time.Now()
	if s := r.FormValue("time"); s != "" {
		t, err := parseTime(s)
		if err != nil {
			badData(w, fmt.Errorf("invalid parameter \"time\": %w", err))
			return
		}
		at = t
	}
	h.stream(w, a, []time.Time{at}, model.ValVector)
}

// answer finds the request's query, or writes the refusal.
func (h *Handler) answer(w http.ResponseWriter, r *http.Request) (Answer, bool) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return Answer{}, false
	}
	q := r.FormValue("query")
	a, ok := h.answers[q]
	if !ok {
		badData(w, fmt.Errorf("promsynth has no synthetic answer for the query %q", q))
	}
	return a, ok
}

// stream writes the answer and counts it once it is whole; a client that goes away ends it.
func (h *Handler) stream(w http.ResponseWriter, a Answer, times []time.Time, typ model.ValueType) {
	w.Header().Set("Content-Type", "application/json")
	samples, err := writeAnswer(w, a, times, typ)
	if err != nil {
		return // the client is gone; nothing can be said to it any more
	}
	h.queries.Add(1)
	h.samples.Add(samples)
}

// badData writes Prometheus's error envelope for a request it cannot answer.
func badData(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	b := []byte(`{"status":"error","errorType":`)
	b = appendJSONString(b, string(v1.ErrBadData))
	b = append(b, `,"error":`...)
	b = appendJSONString(b, err.Error())
	b = append(b, "}\n"...)
	_, _ = w.Write(b)
}

// parseTime reads a time as Prometheus's API takes it: Unix seconds (fractions allowed) or
// RFC 3339.
func parseTime(s string) (time.Time, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(math.Round(frac*1e3))*int64(time.Millisecond)), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", s)
}

// parseDuration reads a step as Prometheus's API takes it: seconds (fractions allowed) or a
// Prometheus duration ("15s", "1m").
func parseDuration(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(math.Round(f*1e3)) * time.Millisecond, nil
	}
	if d, err := model.ParseDuration(s); err == nil {
		return time.Duration(d), nil
	}
	return 0, fmt.Errorf("cannot parse %q to a valid duration", s)
}

// Server is a running Handler on 127.0.0.1.
type Server struct {
	*Handler
	// URL is where it answers, e.g. http://127.0.0.1:40123.
	URL  string
	http *http.Server
	done chan error
}

// Start serves answers on a free port of 127.0.0.1 until Close.
func Start(answers map[string]Answer) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("promsynth: listening on 127.0.0.1: %w", err)
	}
	h := NewHandler(answers)
	s := &Server{Handler: h, URL: "http://" + ln.Addr().String(), http: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}, done: make(chan error, 1)}
	go func() { s.done <- s.http.Serve(ln) }()
	return s, nil
}

// Close stops the server, closing the connections of answers still being written: their
// client (the measured process) is being stopped anyway.
func (s *Server) Close() error {
	err := s.http.Close()
	if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
