package mcpi

import (
	"math"
	"math/big"
	"math/bits"
	"strconv"
)

// Count is an unsigned 128-bit sample or hit count. One worker's totals fit in
// a uint64 for centuries, but the pooled totals of a whole cluster can pass
// 2⁶⁴, so every sum of totals is a Count. The zero value is 0.
type Count struct{ hi, lo uint64 }

// CountOf returns x as a Count.
func CountOf(x uint64) Count { return Count{lo: x} }

// Add returns c + x. It wraps at 2¹²⁸, which no cluster reaches.
func (c Count) Add(x Count) Count {
	lo, carry := bits.Add64(c.lo, x.lo, 0)
	hi, _ := bits.Add64(c.hi, x.hi, carry)
	return Count{hi, lo}
}

// Sub returns c − x; the caller guarantees x ≤ c.
func (c Count) Sub(x Count) Count {
	lo, borrow := bits.Sub64(c.lo, x.lo, 0)
	hi, _ := bits.Sub64(c.hi, x.hi, borrow)
	return Count{hi, lo}
}

// Cmp returns −1, 0 or +1 as c is less than, equal to or greater than x.
func (c Count) Cmp(x Count) int {
	switch {
	case c.hi < x.hi || c.hi == x.hi && c.lo < x.lo:
		return -1
	case c == x:
		return 0
	}
	return 1
}

// IsZero reports whether c is 0.
func (c Count) IsZero() bool { return c == Count{} }

// Float64 returns c rounded to the nearest float64.
func (c Count) Float64() float64 {
	return float64(c.hi)*(1<<64) + float64(c.lo)
}

// Uint64 returns c and whether it fits in a uint64.
func (c Count) Uint64() (uint64, bool) { return c.lo, c.hi == 0 }

// Big returns c as a new big.Int.
func (c Count) Big() *big.Int {
	z := new(big.Int).SetUint64(c.hi)
	z.Lsh(z, 64)
	return z.Or(z, new(big.Int).SetUint64(c.lo))
}

// String returns c in decimal.
func (c Count) String() string {
	if c.hi == 0 {
		return strconv.FormatUint(c.lo, 10)
	}
	return c.Big().String()
}

// MarshalJSON writes c as a JSON integer, exact at any size.
func (c Count) MarshalJSON() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalJSON reads a JSON integer in [0, 2¹²⁸).
func (c *Count) UnmarshalJSON(b []byte) error {
	z, ok := new(big.Int).SetString(string(b), 10)
	if !ok || z.Sign() < 0 || z.BitLen() > 128 {
		return &strconv.NumError{Func: "Count.UnmarshalJSON", Num: string(b), Err: strconv.ErrRange}
	}
	lo := new(big.Int).And(z, new(big.Int).SetUint64(math.MaxUint64))
	c.hi = new(big.Int).Rsh(z, 64).Uint64()
	c.lo = lo.Uint64()
	return nil
}
