package statuspage_test

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/emergent-sh/emergent/detector"
	"github.com/emergent-sh/emergent/engine"
)

// fleet is a Source of n groups, every hundredth firing, with a chart of three hours at the
// chart's resolution: the overview's and a group page's cost at scale without a Prometheus of
// that size, which does not fit this machine.
type fleet struct {
	n   int
	now time.Time
}

func (f fleet) Config() *config.Config {
	return &config.Config{Rules: []config.Rule{{Name: "token-minting", Kind: config.KindSelfGenerated, GroupBy: []string{"service"}}}}
}
func (f fleet) Bootstrapped() bool { return true }
func (f fleet) Blind() []string    { return nil }

func (f fleet) name(i int) string { return fmt.Sprintf("svc-%05d", i) }

func (f fleet) Groups() map[string][]detector.GroupStatus {
	out := make([]detector.GroupStatus, f.n)
	for i := range out {
		st := detector.StateInactive
		if i%100 == 0 {
			st = detector.StateFiring
		}
		out[i] = detector.GroupStatus{Labels: map[string]string{"service": f.name(i)}, State: st,
			Explanation: detector.Explanation{Summary: fmt.Sprintf("service=%q: token mints 0.01/s", f.name(i))}}
	}
	return map[string][]detector.GroupStatus{"token-minting": out}
}

func (f fleet) Active() []detector.Episode                { return nil }
func (f fleet) GraphURL(string, map[string]string) string { return "http://prometheus.example/graph" }
func (f fleet) Resolved() []detector.Episode              { return nil }

func (f fleet) Chart(_ context.Context, rule string, labels map[string]string, span time.Duration, now time.Time) (*engine.Chart, error) {
	c := &engine.Chart{Rule: rule, Kind: config.KindSelfGenerated, Labels: labels, From: now.Add(-span), To: now}
	sig := engine.ChartSignal{Name: "token_mints", Unit: "token mints"}
	onset := now.Add(-span / 3)
	for t := c.From; !t.After(c.To); t = t.Add(span / 240) {
		in := 4 + math.Sin(float64(t.Unix())/600)
		work := 0.01
		if !t.Before(onset) {
			work = 0.95 * in
		}
		c.Inbound = append(c.Inbound, engine.Point{T: t, V: in})
		c.Instances = append(c.Instances, engine.Point{T: t, V: 4})
		sig.Work = append(sig.Work, engine.Point{T: t, V: work})
		sig.Expected = append(sig.Expected, engine.Point{T: t, V: 0.02})
		sig.PageAbove = append(sig.PageAbove, engine.Point{T: t, V: 0.06})
	}
	c.Signals = []engine.ChartSignal{sig}
	c.Episodes = []detector.Episode{{Kind: config.KindSelfGenerated, Rule: rule, Labels: labels, Start: onset.Add(5 * time.Minute)}}
	return c, nil
}
