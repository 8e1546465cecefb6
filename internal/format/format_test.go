package format

import (
	"math"
	"testing"
)

func TestNum(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want string
	}{
		{1234, "1230"}, {0.0012345, "0.00123"}, {2.5, "2.5"}, {0, "0"}, {1e7, "10000000"},
		{-0.5, "-0.5"}, {math.NaN(), "n/a"}, {math.Inf(1), "n/a"},
	} {
		if got := Num(tc.in); got != tc.want {
			t.Errorf("Num(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
