package detector

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkLifecycleStep measures the episode state machine alone, driven round a whole
// episode (inactive → pending → firing → clearing → resolved) again and again.
func BenchmarkLifecycleStep(b *testing.B) {
	const step = 15 * time.Second
	const forDur, resolveFor = 2 * time.Minute, 2 * time.Minute
	// 12 breaching steps fire after `for` (8 steps); 12 clear ones resolve after resolve_for.
	pattern := make([]bool, 24)
	for i := range 12 {
		pattern[i] = true
	}
	var l lifecycle
	transitions := 0
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if l.step(t0.Add(time.Duration(i)*step), pattern[i%len(pattern)], pattern[i%len(pattern)], false, false, forDur, resolveFor, 0) != noChange {
			transitions++
		}
		i++
	}
	if i >= len(pattern) && transitions == 0 {
		b.Fatal("the pattern never fired")
	}
}

// BenchmarkEvalFiring measures one evaluation step of 10 000 groups while some of them are in
// an episode: those are explained (words and numbers) at every step, the others are not. It is
// BenchmarkEvalStep with episodes under way.
func BenchmarkEvalFiring(b *testing.B) {
	const n = 10000
	for _, firingPct := range []int{1, 100} {
		b.Run(fmt.Sprintf("groups=%d/firing=%d%%", n, firingPct), func(b *testing.B) {
			r, input := benchRule(b, n)
			firing := n * firingPct / 100
			// The first `firing` groups (in key order) mint one token per request: far above the
			// learned ratio and max_ratio.
			bad := map[string]bool{}
			for _, g := range r.sorted[:firing] {
				bad[g.key] = true
			}
			at := func(i int) Input {
				in := input(i)
				for k := range bad {
					in.Signals[0][k] = in.Inbound[k]
				}
				return in
			}
			// Fire: past `for` (2m) at the 30s interval benchRule uses.
			for i := range 10 {
				r.Eval(at(i))
			}
			if got := len(r.Active()); got != firing {
				b.Fatalf("%d groups firing, want %d", got, firing)
			}
			in := at(10)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				in.Time = t0.Add(5*time.Minute + time.Duration(1+i%100)*time.Second) // same hour: no relearning
				r.Eval(in)
			}
			b.StopTimer()
			if got := len(r.Active()); got != firing {
				b.Fatalf("%d groups firing after the benchmark, want %d", got, firing)
			}
		})
	}
}
