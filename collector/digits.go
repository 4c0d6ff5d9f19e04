package collector

import (
	"math"
	"strconv"
	"strings"
)

// Digits is π̂ as the views show it: Certain, the digits that the 95 %
// interval fixes, and More, the three decimals of π̂ after them.
type Digits struct {
	// Certain is the digits of π̂ that every number in the interval shares.
	Certain string `json:"certain"`
	// More is the next three decimals of π̂, truncated.
	More string `json:"more"`
}

// CertainDigits splits pi for display against its interval [lo, hi]. A digit
// is certain when both ends of the interval agree on it, and on everything
// before it, when truncated (not rounded) to it: every number in the
// interval, π̂ included, then has that digit. Each number is read as its
// shortest decimal that converts back to it (strconv's 'f' with precision
// −1, JavaScript's String(x)), the form in which it is printed.
//
// Certain is the integer part when the ends share it, followed by the
// shared decimals; More is then π̂'s next three decimals, truncated, with
// the point when Certain has none. An interval of zero width (a tally with
// no misses or no hits), an inverted or a non-finite one fixes nothing:
// Certain is empty and More is π̂ to three decimals. A non-finite π̂ gives
// two empty strings.
func CertainDigits(pi, lo, hi float64) Digits {
	if !finite(pi) {
		return Digits{}
	}
	ip, fp := decimal(pi)
	if !finite(lo) || !finite(hi) || !(lo < hi) {
		return Digits{More: ip + "." + pad(fp, 3)[:3]}
	}
	il, fl := decimal(lo)
	ih, fh := decimal(hi)
	if il != ih {
		return Digits{More: ip + "." + pad(fp, 3)[:3]}
	}
	width := max(len(fl), len(fh))
	fl, fh = pad(fl, width), pad(fh, width)
	k := 0
	for k < width && fl[k] == fh[k] {
		k++
	}
	fp = pad(fp, k+3)
	if k == 0 {
		return Digits{Certain: il, More: "." + fp[:3]}
	}
	return Digits{Certain: il + "." + fl[:k], More: fp[k : k+3]}
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// decimal returns the integer part and the decimals of x's shortest decimal.
func decimal(x float64) (integer, fraction string) {
	s := strconv.FormatFloat(x, 'f', -1, 64)
	integer, fraction, _ = strings.Cut(s, ".")
	return integer, fraction
}

// pad appends zeros to s up to n digits.
func pad(s string, n int) string {
	if len(s) >= n {
		return s
	}
	return s + strings.Repeat("0", n-len(s))
}
