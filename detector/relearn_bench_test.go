package detector

import (
	"fmt"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/prometheus/common/model"
)

// BenchmarkEvalRelearnStep measures an evaluation step at which every group updates its
// baselines: each iteration is an hour of data time later, so every group refits its learned
// ratios from the whole stored history, and, on the baseline grid, stores a new baseline
// point. That is the baseline work of a whole hour: the daemon spreads it over the hour (each
// group relearns at its own phase), so one live step does about 1/(steps per hour) of it.
// Unlike BenchmarkEvalStep and BenchmarkRelearn (a day of history), the groups hold the
// default history = "7d", as a running daemon does a week after start-up, at the shipped
// baseline_step (15m) and at 5m.
func BenchmarkEvalRelearnStep(b *testing.B) {
	for _, tc := range []struct {
		groups int
		step   time.Duration
	}{{1, 15 * time.Minute}, {10000, 15 * time.Minute}, {1, 5 * time.Minute}, {10000, 5 * time.Minute}} {
		n, step := tc.groups, tc.step
		b.Run(fmt.Sprintf("groups=%d/baseline_step=%s", n, model.Duration(step)), func(b *testing.B) {
			g := global(30 * time.Second)
			g.BaselineStep = model.Duration(step)
			r := NewRule(tokenRule(config.RelationProportional), g)
			keys := make([]string, n)
			groups := make(map[string]map[string]string, n)
			for g := range n {
				keys[g] = fmt.Sprintf(`service="svc-%d"`, g)
				groups[keys[g]] = map[string]string{"service": fmt.Sprintf("svc-%d", g)}
			}
			in := Input{Groups: groups, Inbound: make(Values, n), Signals: []Values{make(Values, n)}}
			set := func(i int) {
				for g, k := range keys {
					x := 10 + float64((g+i)%7)
					in.Inbound[k], in.Signals[0][k] = x, 0.002*x
				}
			}
			points := int(7 * 24 * time.Hour / step) // a week at the baseline step
			for h := range points {
				set(h)
				in.Time = t0.Add(-7*24*time.Hour + time.Duration(h)*step)
				r.AddHistory(in)
			}
			set(0)
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				// Each iteration is one hour of data time later: every group refits.
				in.Time = t0.Add(time.Duration(i) * time.Hour)
				r.Eval(in)
				i++
			}
			b.StopTimer()
			if g := r.groups[keys[0]]; !g.signals[0].fitOK {
				b.Fatal("no ratio learned from a week of history")
			}
		})
	}
}
