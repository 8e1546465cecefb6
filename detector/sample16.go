package detector

import "math"

// sample16 is one history value in 16 bits: a sign, a 6-bit exponent and 9 bits of mantissa,
// so three significant digits (a relative error under 2^-10) from 2^-30 to 2^32, where float32
// spends 32 bits on 24 and a range no rate needs. The history is most of what a group costs
// (78 % at 100 000 groups, BENCHMARKS.md); half its bytes is half of that. IEEE half precision
// stops at 65 504, under a busy service's requests per second; bfloat16 keeps two digits.
// Values under 2^-30 (a billionth per second) are zero, values past the range are the largest.
type sample16 uint16

const (
	s16Sign     = 1 << 15
	s16MantBits = 9
	s16ExpBias  = 31     // stored exponent 1..62 is 2^(e-31); 0 is zero, 63 is NaN
	s16NaN      = 0x7fff // exponent 63, any mantissa
	s16Max      = 0x7dff // exponent 62, mantissa all ones: just under 2^32
	s16Shift    = 23 - s16MantBits
	s16Half     = 1 << (s16Shift - 1)
	f32ExpBias  = 127
	f32MantMask = 1<<23 - 1
)

func packSample(v float64) sample16 {
	if math.IsNaN(v) {
		return s16NaN
	}
	bits := math.Float32bits(float32(v))
	sign := sample16(bits>>16) & s16Sign
	exp := int(bits>>23&0xff) - f32ExpBias + s16ExpBias
	// Round the mantissa to nearest; a carry moves into the exponent, as it should.
	mant := (bits&f32MantMask + s16Half) >> s16Shift
	if mant == 1<<s16MantBits {
		mant, exp = 0, exp+1
	}
	switch {
	case exp <= 0:
		return sign // under 2^-30 (or ±0): zero
	case exp >= 63 || bits>>23&0xff == 0xff: // past the range, or ±Inf
		return sign | s16Max
	}
	return sign | sample16(exp)<<s16MantBits | sample16(mant)
}

func (s sample16) value() float64 {
	exp := int(s>>s16MantBits) & 0x3f
	switch exp {
	case 0:
		if s&s16Sign != 0 {
			return math.Copysign(0, -1)
		}
		return 0
	case 63:
		return math.NaN()
	}
	bits := uint32(s&s16Sign)<<16 | uint32(exp-s16ExpBias+f32ExpBias)<<23 | uint32(s&(1<<s16MantBits-1))<<s16Shift
	return float64(math.Float32frombits(bits))
}

// isNaN16 reports whether s is a NaN (exponent 63), without decoding it.
func isNaN16(s sample16) bool { return s>>s16MantBits&0x3f == 63 }
