package detector

import (
	"math"
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
	slices.Sort(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
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
