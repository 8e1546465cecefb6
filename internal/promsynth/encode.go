package promsynth

import (
	"bufio"
	"io"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/prometheus/common/model"
)

// writeBuffer is how much of an answer is held before it is written to the connection.
const writeBuffer = 64 << 10

// writeAnswer writes a successful answer in Prometheus's envelope, series by series: a matrix
// (each series' values at times) or a vector (each series' sample at times[0]). Only one series
// is held at a time, so a series without a sample can be left out once it is known to be
// empty. It returns the samples written. No library streams a matrix (client_golang and
// prometheus/common build a whole model.Value and marshal it), hence the hand-written
// encoder; its output is decoded by client_golang in the tests.
func writeAnswer(out io.Writer, a Answer, times []time.Time, typ model.ValueType) (int64, error) {
	w := bufio.NewWriterSize(out, writeBuffer)
	_, _ = w.WriteString(`{"status":"success","data":{"resultType":"` + typ.String() + `","result":[`)
	var (
		series  []byte // the series being written
		labels  []model.LabelPair
		samples int64
		first   = true
	)
	for i := range a.Series {
		series = append(series[:0], `{"metric":{`...)
		labels = a.Labels(labels[:0], i)
		for j, l := range labels {
			if j > 0 {
				series = append(series, ',')
			}
			series = appendJSONString(series, string(l.Name))
			series = append(series, ':')
			series = appendJSONString(series, string(l.Value))
		}
		if typ == model.ValMatrix {
			series = append(series, `},"values":[`...)
		} else {
			series = append(series, `},"value":`...)
		}
		n := 0
		for _, t := range times {
			v, ok := a.Value(i, t)
			if !ok {
				continue
			}
			if n > 0 {
				series = append(series, ',')
			}
			series = appendSample(series, t, v)
			n++
		}
		if n == 0 {
			continue
		}
		if typ == model.ValMatrix {
			series = append(series, ']')
		}
		series = append(series, '}')
		if !first {
			_ = w.WriteByte(',')
		}
		first = false
		if _, err := w.Write(series); err != nil {
			return samples, err
		}
		samples += int64(n)
	}
	_, _ = w.WriteString("]}}\n")
	return samples, w.Flush()
}

// appendSample appends [seconds, "value"] as Prometheus writes a sample: the time in seconds
// with its milliseconds, the value as the shortest decimal that reads back the same ("NaN",
// "+Inf" and "-Inf" as such).
func appendSample(b []byte, t time.Time, v float64) []byte {
	b = append(b, '[')
	b = strconv.AppendFloat(b, float64(t.UnixMilli())/1000, 'f', -1, 64)
	b = append(b, ',', '"')
	b = strconv.AppendFloat(b, v, 'f', -1, 64)
	return append(b, '"', ']')
}

// appendJSONString appends s as a JSON string. Label names and values are UTF-8 (Prometheus
// refuses others); an invalid byte is written as U+FFFD, as encoding/json does.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
