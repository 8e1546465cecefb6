package engine

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"

	"github.com/emergent-sh/emergent/sources"
)

// FuzzQueryResponse feeds arbitrary bytes as Prometheus's answer to every range query, through
// the whole decoding path: the real HTTP source (client_golang's decoder, the size limit), the
// engine's grouping into steps and the detector. Nothing may panic, and a response the source
// refuses must never fire an alert: missing data is unknown, not an incident.
func FuzzQueryResponse(f *testing.F) {
	at := func(d time.Duration) float64 { return float64(now.Add(d).Unix()) }
	f.Add([]byte(fmt.Sprintf(`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"service":"checkout"},"values":[[%v,"3"],[%v,"2.5"]]}]}}`,
		at(-time.Minute), at(-30*time.Second))))
	f.Add([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"service":"a"},"value":[1,"1"]}]}}`))
	f.Add([]byte(`{"status":"success","warnings":["partial"],"data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"NaN"],[1,"+Inf"]]}]}}`))
	f.Add([]byte(`{"status":"error","errorType":"bad_data","error":"boom"}`))
	f.Add([]byte(`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"service":"checkout"},"histograms":[[1,{"count":"1","sum":"1"}]]}]}}`))
	f.Add([]byte(`{"status":"succ`))

	var body atomic.Pointer[[]byte]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(*body.Load())
	}))
	defer srv.Close()

	f.Fuzz(func(t *testing.T, data []byte) {
		body.Store(&data)
		cfg := testConfig()
		cfg.Prometheus.URL = srv.URL
		cfg.Prometheus.Timeout = model.Duration(5 * time.Second)
		cfg.Prometheus.HTTPClient = commoncfg.DefaultHTTPClientConfig
		src, err := sources.NewPrometheus(cfg.Prometheus, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _, refused := src.QueryRange(context.Background(), inboundQ,
			sources.Range{Start: now.Add(-time.Minute), End: now, Step: 30 * time.Second})

		e := New(cfg, src, slog.New(slog.DiscardHandler), nil)
		events, _ := e.Bootstrap(context.Background(), now)
		more, _ := e.Advance(context.Background(), now.Add(30*time.Second))
		events = append(events, more...)
		if refused != nil {
			for _, ev := range events {
				if !ev.Resolved {
					t.Errorf("an unreadable response (%v) fired %s for %v", refused, ev.Episode.Kind, ev.Episode.Labels)
				}
			}
		}
	})
}
