package sources

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/config"
	commoncfg "github.com/prometheus/common/config"
)

// matrixBody renders a query_range answer as Prometheus 2.x writes it: series of one
// `service` label each, points every step from start, values with a rate's full precision.
func matrixBody(series, points int, start time.Time, step time.Duration) []byte {
	var b bytes.Buffer
	b.WriteString(`{"status":"success","data":{"resultType":"matrix","result":[`)
	for s := range series {
		if s > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"metric":{"service":"svc-%05d"},"values":[`, s)
		for p := range points {
			if p > 0 {
				b.WriteByte(',')
			}
			ts := start.Add(time.Duration(p) * step).Unix()
			v := 10.0/3 + float64(s%97)/7 + float64(p)/11 // e.g. 3.6190476190476195
			b.WriteByte('[')
			b.WriteString(strconv.FormatInt(ts, 10))
			b.WriteString(`,"`)
			b.WriteString(strconv.FormatFloat(v, 'f', -1, 64))
			b.WriteString(`"]`)
		}
		b.WriteString(`]}`)
	}
	b.WriteString(`]}}`)
	return b.Bytes()
}

// BenchmarkQueryRangeDecode measures one range query through the Prometheus source against an
// httptest server answering a 10 000-series matrix: HTTP, (gzip,) JSON decoding into a
// model.Matrix and the source's checks. points=1 is one incremental evaluation step of a
// 10 000-group rule; points=100 is a tenth of a history chunk. The server only writes a
// prepared body, so nearly all the time is the client's. The body is not compressed: the HTTP
// client from prometheus/common sets DisableCompression, so emergentd never asks Prometheus
// for gzip.
func BenchmarkQueryRangeDecode(b *testing.B) {
	start := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	const step = 15 * time.Second
	for _, tc := range []struct{ series, points int }{{10000, 1}, {10000, 100}} {
		b.Run(fmt.Sprintf("series=%d/points=%d", tc.series, tc.points), func(b *testing.B) {
			body := matrixBody(tc.series, tc.points, start, step)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
					b.Error("the source asked for gzip; add a compressed case to this benchmark")
				}
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write(body)
			}))
			defer srv.Close()
			p, err := NewPrometheus(config.Prometheus{URL: srv.URL, HTTPClient: commoncfg.DefaultHTTPClientConfig}, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			r := Range{Start: start, End: start.Add(time.Duration(tc.points-1) * step), Step: step}
			ctx := context.Background()
			b.SetBytes(int64(len(body))) // MB/s of JSON decoded
			b.ReportAllocs()
			for b.Loop() {
				m, _, err := p.QueryRange(ctx, `sum by (service) (rate(http_requests_total[2m]))`, r)
				if err != nil {
					b.Fatal(err)
				}
				if len(m) != tc.series || len(m[0].Values) != tc.points {
					b.Fatalf("got %d series of %d points", len(m), len(m[0].Values))
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*tc.series*tc.points), "ns/sample")
		})
	}
}
