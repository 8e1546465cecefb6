package detector

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/config"
)

// benchInputs builds one step's input for n groups with a day of history already stored.
func benchRule(b *testing.B, n int) (*Rule, func(i int) Input) {
	b.Helper()
	r := NewRule(tokenRule(config.RelationProportional), global(30*time.Second))
	keys := make([]string, n)
	groups := make(map[string]map[string]string, n)
	for g := range n {
		keys[g] = fmt.Sprintf(`service="svc-%d"`, g)
		groups[keys[g]] = map[string]string{"service": fmt.Sprintf("svc-%d", g)}
	}
	input := func(i int) Input {
		in := Input{Time: t0.Add(time.Duration(i) * 30 * time.Second), Groups: groups,
			Inbound: make(Values, n), Signals: []Values{make(Values, n)}}
		for g, k := range keys {
			x := 10 + float64((g+i)%7)
			in.Inbound[k], in.Signals[0][k] = x, 0.002*x
		}
		return in
	}
	for h := range 24 * 12 { // a day at the 5m baseline step
		in := input(h * 10)
		in.Time = t0.Add(-24*time.Hour + time.Duration(h)*5*time.Minute)
		r.AddHistory(in)
	}
	return r, input
}

// BenchmarkEvalStep measures one evaluation step (no relearning: steps stay within the hour).
func BenchmarkEvalStep(b *testing.B) {
	for _, n := range []int{1, 10000} {
		b.Run(fmt.Sprintf("groups=%d", n), func(b *testing.B) {
			r, input := benchRule(b, n)
			r.Eval(input(0)) // learn once
			in := input(1)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				in.Time = t0.Add(time.Duration(1+i%100) * time.Second) // same hour, off the baseline grid
				r.Eval(in)
			}
		})
	}
}

// BenchmarkRelearn measures the hourly baseline refit of one group with a day of history.
func BenchmarkRelearn(b *testing.B) {
	r, input := benchRule(b, 1)
	r.Eval(input(0))
	g := r.groups[`service="svc-0"`]
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		g.learned = -1
		g.relearn(r, t0)
	}
}

// BenchmarkFitProportional is one fit of a noisy week at the 15-minute step: work follows
// inbound with Poisson-like noise, so the fit's rounds do not settle at once.
func BenchmarkFitProportional(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	inbound, work := make([]float64, 672), make([]float64, 672)
	for i := range inbound {
		inbound[i] = 10 + 5*math.Sin(float64(i)*2*math.Pi/96) + rng.NormFloat64()
		work[i] = 0.5 + 0.02*inbound[i] + 0.05*rng.NormFloat64()
	}
	var sc fitScratch
	for b.Loop() {
		sc.fit(inbound, work, 0)
	}
}
