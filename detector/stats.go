package detector

import (
	"math"
	"math/bits"
	"slices"
)

// madScale turns a median absolute deviation into a standard-deviation estimate for normal data.
const madScale = 1.4826

// median returns the median of xs (NaN for none). xs is reordered.
func median(xs []float64) float64 {
	n := len(xs)
	if n == 0 {
		return math.NaN()
	}
	hi := nth(xs, n/2)
	if n%2 == 1 {
		return hi
	}
	return (slices.Max(xs[:n/2]) + hi) / 2 // nth leaves the smaller half before n/2
}

// nth reorders xs so that xs[k] is the value a sort would put there, with no larger value
// before it and no smaller after (quickselect: linear on average where a sort is n log n; the
// detector takes a dozen medians per group every time it relearns). NaNs, which a sort puts
// first, are moved there in one pass, so the selection compares with < alone instead of
// testing both sides of every comparison for NaN; without NaNs the pass moves nothing. The
// partition is three-way, so runs of equal values (a quiet series) cost one pass; a bad pivot
// streak falls back to sorting, so the worst case stays n log n.
func nth(xs []float64, k int) float64 {
	nans := 0
	for i, x := range xs {
		if math.IsNaN(x) {
			xs[nans], xs[i] = x, xs[nans]
			nans++
		}
	}
	if k < nans {
		return xs[k]
	}
	lo, hi := nans, len(xs) // the range [lo, hi) holds position k
	for budget := 2 * bits.Len(uint(len(xs))); hi-lo > 1; budget-- {
		if budget == 0 {
			slices.Sort(xs[lo:hi])
			break
		}
		a, b, c := xs[lo], xs[lo+(hi-lo)/2], xs[hi-1]
		pivot := max(min(a, b), min(max(a, b), c)) // median of three
		// xs[lo:lt] < pivot, xs[lt:i] == pivot, xs[gt:hi] > pivot.
		lt, i, gt := lo, lo, hi
		for i < gt {
			switch x := xs[i]; {
			case x < pivot:
				xs[lt], xs[i] = x, xs[lt]
				lt++
				i++
			case pivot < x:
				gt--
				xs[gt], xs[i] = x, xs[gt]
			default:
				i++
			}
		}
		switch {
		case k < lt:
			hi = lt
		case k >= gt:
			lo = gt
		default:
			return pivot
		}
	}
	return xs[k]
}

// medianMAD returns the median and the scaled median absolute deviation of xs. xs is
// overwritten (with the deviations), which saves an allocation on the hot path.
func medianMAD(xs []float64) (med, sigma float64) {
	med = median(xs)
	if math.IsNaN(med) {
		return med, math.NaN()
	}
	for i, x := range xs {
		xs[i] = math.Abs(x - med)
	}
	return med, madScale * median(xs)
}

func isNum(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
