package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/alerts"
	"github.com/emergent-sh/emergent/config"
	"github.com/emergent-sh/emergent/engine"
	"github.com/emergent-sh/emergent/sources"
	"github.com/prometheus/client_golang/prometheus"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
)

// soakSource serves the shipped rules' queries for many services from functions of time:
// every service's token cache breaks for an hour every six hours, at its own offset.
type soakSource struct {
	cfg      *config.Config
	services int
}

func (s *soakSource) QueryRange(_ context.Context, q string, r sources.Range) (model.Matrix, sources.Warnings, error) {
	var m model.Matrix
	for i := range s.services {
		svc := model.LabelValue(fmt.Sprintf("svc-%03d", i))
		ss := &model.SampleStream{Metric: model.Metric{"service": svc}}
		for t := r.Start; !t.After(r.End); t = t.Add(r.Step) {
			broken := (t.Unix()/3600+int64(i))%6 == 0
			v := math.NaN()
			switch q {
			case s.cfg.Rules[0].Inbound:
				v = 5 + 3*math.Sin(float64(t.Unix())/7200)
			case s.cfg.Rules[0].Signals[0].Query:
				v = 0.001
				if broken {
					v = 4
				}
			case s.cfg.Rules[0].Signals[1].Query:
				v = 0.002
			}
			if !math.IsNaN(v) {
				ss.Values = append(ss.Values, model.SamplePair{Timestamp: model.TimeFromUnixNano(t.UnixNano()), Value: model.SampleValue(v)})
			}
		}
		if len(ss.Values) > 0 {
			m = append(m, ss)
		}
	}
	return m, nil, nil
}

// TestSoak runs two days of accelerated time through the engine and the delivery manager (with
// real HTTP receivers) and checks that goroutines and heap do not grow from day one to day two.
func TestSoak(t *testing.T) {
	cfg, err := config.Load([]byte(testRules(t, "http://127.0.0.1:9")), "rules.toml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Rules = cfg.Rules[:1] // the token rule; the soak source serves its queries
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}))
	defer sink.Close()
	receivers := []config.Receiver{
		{Name: "am", Type: config.ReceiverAlertmanager, URLs: []string{sink.URL}, QueueSize: 1000, Timeout: model.Duration(5 * time.Second)},
		{Name: "hook", Type: config.ReceiverWebhook, URL: commoncfg.Secret(sink.URL + "/hook"), QueueSize: 1000, Timeout: model.Duration(5 * time.Second)},
	}
	routes := []config.Route{{Receiver: "am"}, {Receiver: "hook"}}
	mgr, err := alerts.NewManager(cfg.Global, receivers, routes, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	eng := engine.New(cfg, &soakSource{cfg: cfg, services: 50}, slog.New(slog.DiscardHandler), nil)
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	if _, err := eng.Bootstrap(context.Background(), start); err != nil {
		t.Fatal(err)
	}
	measure := func() (int, uint64) {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return runtime.NumGoroutine(), ms.HeapAlloc
	}
	var g1, g2 int
	var h1, h2 uint64
	episodes := 0
	for minute := 1; minute <= 48*60; minute++ {
		now := start.Add(time.Duration(minute) * time.Minute)
		events, err := eng.Advance(context.Background(), now)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range events {
			if !ev.Resolved {
				episodes++
			}
		}
		mgr.Update(now, eng.Alerts())
		switch minute {
		case 24 * 60:
			g1, h1 = measure()
		case 48 * 60:
			g2, h2 = measure()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := mgr.Stop(ctx); err != nil {
		t.Errorf("stop: %v", err)
	}
	t.Logf("48 h of 15 s steps, 50 services: %d episodes; goroutines %d → %d; heap %d KiB → %d KiB", episodes, g1, g2, h1>>10, h2>>10)
	if episodes < 50*7 {
		t.Errorf("only %d episodes: the soak did not exercise the lifecycle", episodes)
	}
	if g2 > g1+2 {
		t.Errorf("goroutines grew from %d to %d over the second day", g1, g2)
	}
	if h2 > h1+h1/4+1<<20 {
		t.Errorf("heap grew from %d KiB to %d KiB over the second day", h1>>10, h2>>10)
	}
}
