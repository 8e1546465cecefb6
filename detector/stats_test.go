package detector

import (
	"cmp"
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

// nth puts at k the value a sort would, with nothing larger before it and nothing smaller
// after, NaNs first as slices.Sort orders them, at every k of inputs with and without NaNs.
func TestNthMatchesSort(t *testing.T) {
	nan := math.NaN()
	for _, xs := range [][]float64{
		{3, 1, 2},
		{nan},
		{nan, nan, 1},
		{2, nan, 1, nan, 0, 2},
		{5, 5, nan, 5, 5},
		{1, 2, 3, 4, nan, 6, 7, 8, 9, 0, -1, nan, 2, 2},
	} {
		ref := slices.Clone(xs)
		slices.Sort(ref)
		for k := range xs {
			got := slices.Clone(xs)
			v := nth(got, k)
			if same := v == ref[k] || math.IsNaN(v) && math.IsNaN(ref[k]); !same {
				t.Errorf("nth(%v, %d) = %v, want %v", xs, k, v, ref[k])
			}
			for i, x := range got {
				if i < k && cmp.Less(v, x) || i > k && cmp.Less(x, v) {
					t.Errorf("nth(%v, %d) left %v at %d: %v", xs, k, x, i, got)
				}
			}
		}
	}
}

// BenchmarkMedian is a relearn's typical median: a week of 15-minute points, NaN-free.
func BenchmarkMedian(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	src := make([]float64, 672)
	for i := range src {
		src[i] = math.Round(100 + 10*rng.NormFloat64())
	}
	xs := make([]float64, len(src))
	for b.Loop() {
		copy(xs, src)
		median(xs)
	}
}
