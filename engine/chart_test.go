package engine

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/emergent-sh/emergent/config"
	"github.com/emergent-sh/emergent/sources"
)

// chartSource answers the chart's one query with a series for each tag in tags, and records it.
type chartSource struct {
	tags  []string
	query string
}

func (c *chartSource) QueryRange(_ context.Context, q string, r sources.Range) (model.Matrix, sources.Warnings, error) {
	c.query = q
	var m model.Matrix
	for _, tag := range c.tags {
		m = append(m, &model.SampleStream{
			Metric: model.Metric{"service": "checkout", seriesLabel: model.LabelValue(tag)},
			Values: []model.SamplePair{{Timestamp: model.TimeFromUnixNano(r.End.UnixNano()), Value: 1}},
		})
	}
	return m, nil, nil
}

// TestChartLeavesOutOptionalSignalsAGroupDoesNotExport: a service without a local cache exports
// no cache misses, and its page has no empty panel for them; an empty required signal is a
// data problem and keeps its panel.
func TestChartLeavesOutOptionalSignalsAGroupDoesNotExport(t *testing.T) {
	const missesQ = `sum by (service) (rate(cache_misses_total[2m]))`
	tests := []struct {
		name     string
		optional bool
		want     []string
	}{
		{"optional and empty: left out", true, []string{"mints"}},
		{"required and empty: kept", false, []string{"mints", "cache_misses"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Rules[0].Signals = append(cfg.Rules[0].Signals, config.Signal{Name: "cache_misses", Unit: "cache misses",
				Query: missesQ, Relation: config.RelationProportional, Optional: tc.optional})
			src := &chartSource{tags: []string{"inbound", "0"}} // inbound and the mints; no misses
			e := New(cfg, src, slog.New(slog.DiscardHandler), nil)
			ch, err := e.Chart(context.Background(), "token-minting", map[string]string{"service": "checkout"}, 3*time.Hour, now)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(src.query, "cache_misses_total") {
				t.Errorf("the chart query does not ask for the optional signal: %s", src.query)
			}
			var got []string
			for _, s := range ch.Signals {
				got = append(got, s.Name)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("chart signals %v, want %v", got, tc.want)
			}
		})
	}
}
