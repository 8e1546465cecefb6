// Package format is the one home of how emergentd writes a number for people: in alerts, the
// Slack message, the API's summaries and the log, the same value reads the same.
package format

import (
	"math"
	"strconv"
)

// Num rounds to three significant digits without an exponent: 1234 → "1230", 0.0012345 →
// "0.00123". Rates span many orders of magnitude; fixed decimals would show 0.00 for a healthy
// token mint rate, and %g would show 1.23e+03 for a busy one. NaN and ±Inf are "n/a".
func Num(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "n/a"
	}
	r, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'g', 3, 64), 64)
	return strconv.FormatFloat(r, 'f', -1, 64)
}
