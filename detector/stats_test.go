package detector

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// median by selection agrees with the sort it replaced, on random, sorted, reversed and
// constant inputs of odd and even length.
func TestMedianMatchesSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	inputs := map[string]func(n int) []float64{
		"random": func(n int) []float64 {
			xs := make([]float64, n)
			for i := range xs {
				xs[i] = math.Round(rng.NormFloat64() * 10) // ties too
			}
			return xs
		},
		"sorted": func(n int) []float64 {
			xs := make([]float64, n)
			for i := range xs {
				xs[i] = float64(i)
			}
			return xs
		},
		"reversed": func(n int) []float64 {
			xs := make([]float64, n)
			for i := range xs {
				xs[i] = float64(n - i)
			}
			return xs
		},
		"constant": func(n int) []float64 {
			xs := make([]float64, n)
			for i := range xs {
				xs[i] = 7
			}
			return xs
		},
	}
	for name, gen := range inputs {
		for _, n := range []int{1, 2, 3, 4, 5, 10, 11, 100, 2016, 2017} {
			xs := gen(n)
			ref := slices.Clone(xs)
			slices.Sort(ref)
			want := ref[n/2]
			if n%2 == 0 {
				want = (ref[n/2-1] + ref[n/2]) / 2
			}
			if got := median(xs); got != want {
				t.Errorf("%s n=%d: median %v, want %v", name, n, got, want)
			}
		}
	}
}
