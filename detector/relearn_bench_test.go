package detector

import (
	"fmt"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/config"
)

// BenchmarkEvalRelearnStep measures the evaluation step at which every group updates its
// baselines: the first step of an hour of data time, where each group refits its learned
// ratios from the whole stored history, on the baseline grid, where each group also stores a
// new baseline point. Unlike BenchmarkEvalStep and BenchmarkRelearn (a day of history), the
// groups hold the default history = "7d" at the 5m baseline step, as a running daemon does a
// week after start-up. It is the most expensive step of the hour.
func BenchmarkEvalRelearnStep(b *testing.B) {
	for _, n := range []int{1, 10000} {
		b.Run(fmt.Sprintf("groups=%d", n), func(b *testing.B) {
			r := NewRule(tokenRule(config.RelationProportional), global(30*time.Second))
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
			const points = 7 * 24 * 12 // a week at the 5m baseline step
			for h := range points {
				set(h)
				in.Time = t0.Add(-7*24*time.Hour + time.Duration(h)*5*time.Minute)
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
			if g := r.groups[keys[0]]; !g.fitOK[0] {
				b.Fatal("no ratio learned from a week of history")
			}
		})
	}
}
