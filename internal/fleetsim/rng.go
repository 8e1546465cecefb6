package fleetsim

import (
	"math"
	"math/rand/v2"
)

// uniform draws from [lo, hi).
func uniform(r *rand.Rand, lo, hi float64) float64 { return lo + (hi-lo)*r.Float64() }

// logUniform draws from [lo, hi) with a uniform logarithm, the spec's law for scale quantities.
func logUniform(r *rand.Rand, lo, hi float64) float64 {
	return lo * math.Exp(r.Float64()*math.Log(hi/lo))
}

// poisson draws a Poisson count: multiplication of uniforms for small means, Hörmann's PTRS
// rejection sampler (as in numpy) above.
func poisson(r *rand.Rand, mean float64) int64 {
	if !(mean > 0) {
		return 0
	}
	if mean < 10 { // PTRS is only valid from 10 on; below it the product loop is short
		l, k, prod := math.Exp(-mean), int64(0), r.Float64()
		for prod > l {
			k++
			prod *= r.Float64()
		}
		return k
	}
	slam, loglam := math.Sqrt(mean), math.Log(mean)
	b := 0.931 + 2.53*slam
	a := -0.059 + 0.02483*b
	invalpha := 1.1239 + 1.1328/(b-3.4)
	vr := 0.9277 - 3.6224/(b-2)
	for {
		u := r.Float64() - 0.5
		v := r.Float64()
		us := 0.5 - math.Abs(u)
		k := math.Floor((2*a/us+b)*u + mean + 0.43)
		if us >= 0.07 && v <= vr {
			return int64(k)
		}
		if k < 0 || (us < 0.013 && v > us) {
			continue
		}
		lg, _ := math.Lgamma(k + 1)
		if math.Log(v)+math.Log(invalpha)-math.Log(a/(us*us)+b) <= -mean+k*loglam-lg {
			return int64(k)
		}
	}
}

// binomial draws how many of n trials succeed with probability p: exact for small n, the
// Poisson limit for rare successes, the normal limit otherwise.
func binomial(r *rand.Rand, n int64, p float64) int64 {
	switch {
	case n <= 0 || !(p > 0):
		return 0
	case p >= 1:
		return n
	case p > 0.5:
		return n - binomial(r, n, 1-p)
	case n <= 40: // exact Bernoulli trials cost less than the approximations' error here
		var k int64
		for range n {
			if r.Float64() < p {
				k++
			}
		}
		return k
	}
	mean := float64(n) * p
	if mean < 20 { // Poisson limit: p is small here (n > 40, np < 20)
		return min(poisson(r, mean), n)
	}
	k := math.Round(mean + math.Sqrt(mean*(1-p))*r.NormFloat64())
	return int64(math.Max(0, math.Min(float64(n), k)))
}

// k8sAlphabet is the alphabet Kubernetes uses for pod-template hashes and pod name suffixes.
const k8sAlphabet = "bcdfghjklmnpqrstvwxz2456789"

// k8sName draws n characters of a Kubernetes generated name.
func k8sName(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = k8sAlphabet[r.IntN(len(k8sAlphabet))]
	}
	return string(b)
}
