package detector

import (
	"math"
	"math/rand/v2"
	"testing"
)

// A history value comes back within 2^-10 of itself across the range rates take, instance
// counts come back exact, and NaN (not learned from) stays NaN.
func TestSample16KeepsThreeDigits(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100_000 {
		v := math.Exp(rng.Float64()*39 - 18) // 1.5e-8 … 1.3e9
		if rng.IntN(4) == 0 {
			v = -v
		}
		got := packSample(v).value()
		if rel := math.Abs(got-v) / math.Abs(v); rel > 1.0/1024 {
			t.Fatalf("%g came back %g: %.2g off", v, got, rel)
		}
	}
	exact := []float64{0, 1, 2, 3, 100, 256, 300, 1023, 0.5, 0.25} // instance counts are exact
	for _, v := range exact {
		if got := packSample(v).value(); got != v {
			t.Errorf("%g came back %g", v, got)
		}
	}
	if got := packSample(1e-10).value(); got != 0 {
		t.Errorf("1e-10 came back %g, want 0", got)
	}
	if got := packSample(1e12).value(); got < 4.2e9 || got > 4.3e9 {
		t.Errorf("1e12 came back %g, want the largest value, about 4.29e9", got)
	}
	if got := packSample(math.Inf(1)).value(); got < 4.2e9 {
		t.Errorf("+Inf came back %g", got)
	}
	if got := packSample(math.NaN()).value(); !math.IsNaN(got) {
		t.Errorf("NaN came back %g", got)
	}
}
