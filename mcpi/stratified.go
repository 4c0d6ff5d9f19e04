package mcpi

import (
	"fmt"
	"math"
	"math/bits"

	"gonum.org/v1/gonum/stat"
)

// Estimators, as --estimator spells them.
const (
	// MC is plain hit-or-miss Monte Carlo: every point uniform on the square.
	MC = "mc"
	// Stratified is jittered sampling: the square cut into K×K equal cells,
	// one uniform point in each (the package doc's "Stratified batches").
	Stratified = "stratified"
)

// The cells K of a stratified batch: a power of two in [MinCells, MaxCells],
// so that the cell width 2³²/K is an integer and the K² points split evenly
// over the lanes.
const (
	MinCells = 1 << 7  // K² = 2·Lanes: every lane has cells
	MaxCells = 1 << 16 // K² = 2³² = wire.MaxEntryN
)

// ValidCells reports why k cannot be a stratified batch's K, or nil.
func ValidCells(k uint64) error {
	if k < MinCells || k > MaxCells || k&(k-1) != 0 {
		return fmt.Errorf("cells %d: want a power of two from %d to %d", k, MinCells, MaxCells)
	}
	return nil
}

// StratifiedSE is the standard error of one stratified batch of K×K cells
// to leading order, 4·√(K/3)/K²: about 2K of the cells meet the arc, and a
// cell the arc crosses at area fraction a contributes a(1 − a), 1/6 on
// average over a uniform, so Var(H) ≈ 2K/6 = K/3 (package doc). The
// collector shows it beside the measured SE as a cross-check.
func StratifiedSE(k uint64) float64 {
	kf := float64(k)
	return 4 * math.Sqrt(kf/3) / (kf * kf)
}

// LogSlope returns the least-squares slope of log y against log x: the
// exponent of a standard error's fall with N, −½ for plain Monte Carlo,
// −¾ across the K of stratified batches.
func LogSlope(x, y []float64) float64 {
	lx, ly := make([]float64, len(x)), make([]float64, len(y))
	for i := range x {
		lx[i], ly[i] = math.Log(x[i]), math.Log(y[i])
	}
	_, slope := stat.LinearRegression(lx, ly, nil, false)
	return slope
}

// cellRun is what a stratified kernel call needs besides the lanes' states:
// each lane's column base x[ℓ] = i·w, the row base y = j·w shared by the
// group at the call's first step, the cell width w = 2³²/K and k = log₂ K.
type cellRun struct {
	x    [GroupLanes]uint64
	y, w uint64
	k    uint64
}

// stepCell draws lane i's point in the cell with bases (xb, yb) of width
// 2³²/2ᵏ and returns 1 if it fell outside. It is the definition every
// stratified kernel must match. The jitters are the output's high 32 − k
// bits for x (bits 32+k … 63) and the high 32 − k bits of its low half for
// y (bits k … 31); bits 0 … k−1 and 32 … 31+k are not used.
func stepCell(b *block, i int, xb, yb, k uint64) uint64 {
	out := next(b, i)
	return outside(xb|out>>(32+k), yb|uint64(uint32(out)>>k))
}

// genericCells is the pure-Go stratified kernel: every lane of b draws steps
// points, lane ℓ in column c.x[ℓ], all lanes in rows c.y, c.y + w, …
func genericCells(b *block, c *cellRun, steps uint64) (misses uint64) {
	s := &b.s
	for i := 0; i < GroupLanes; i += 2 {
		var h uint64
		s[0][i], s[1][i], s[2][i], s[3][i], s[0][i+1], s[1][i+1], s[2][i+1], s[3][i+1], h =
			genericCellPair(s[0][i], s[1][i], s[2][i], s[3][i], s[0][i+1], s[1][i+1], s[2][i+1], s[3][i+1],
				c.x[i], c.x[i+1], c.y, c.k, steps)
		misses += h
	}
	return misses
}

// genericCellPair is genericPair with the points put in their cells: the
// jitters are the two halves of the output, each shifted right by k. The
// xoshiro step is written out here: through xoshiro, inlined, this loop
// runs 3 % slower (BenchmarkCellsRatio/go, 0.61 → 0.59 of the plain one).
//
//go:noinline
func genericCellPair(a0, a1, a2, a3, c0, c1, c2, c3, xa, xc, y, k, steps uint64) (_, _, _, _, _, _, _, _, misses uint64) {
	k &= 31
	end := y + steps<<(32-k)
	for ; y != end; y += 1 << (32 - k) {
		o := a0 + a3
		t := a1 << 17
		a2 ^= a0
		a3 ^= a1
		a1 ^= a2
		a0 ^= a3
		a2 ^= t
		a3 = bits.RotateLeft64(a3, 45)
		x, yy := xa|uint64(uint32(o>>32)>>k), y|uint64(uint32(o)>>k)
		_, c := bits.Add64(x*x, yy*yy, 0)
		misses, _ = bits.Add64(misses, 0, c)

		o = c0 + c3
		t = c1 << 17
		c2 ^= c0
		c3 ^= c1
		c1 ^= c2
		c0 ^= c3
		c2 ^= t
		c3 = bits.RotateLeft64(c3, 45)
		x, yy = xc|uint64(uint32(o>>32)>>k), y|uint64(uint32(o)>>k)
		_, c = bits.Add64(x*x, yy*yy, 0)
		misses, _ = bits.Add64(misses, 0, c)
	}
	return a0, a1, a2, a3, c0, c1, c2, c3, misses
}

// cellsOf returns lane ℓ's column i and first row j of a stratified batch
// of K = 2ᵏ cells a side, at the lane's step t (0 ≤ t < K²/Lanes):
//
//	q = ℓ + Lanes·⌊t/K⌋,  i = q mod K,  j = ⌊q/K⌋·K²/Lanes + t mod K.
//
// For K ≤ Lanes a lane stays in column ℓ mod K and walks K²/Lanes rows
// of it; for K > Lanes it walks K/Lanes whole columns ℓ, ℓ + Lanes, …
// The lanes of a group are in one row at every step (K ≥ GroupLanes).
func cellsOf(lane int, t, k uint64) (i, j uint64) {
	kk := uint64(1) << k
	per := kk * kk / Lanes
	q := uint64(lane) + Lanes*(t>>k)
	return q & (kk - 1), (q>>k)*per + t&(kk-1)
}

// stratifiedGroupHits is GroupHitsStop for a stratified batch.
func (b Batch) stratifiedGroupHits(g int, k Kernel, stop func() bool) (uint64, bool) {
	kk := b.Cells
	lg := uint64(bits.TrailingZeros64(kk))
	steps := kk * kk / Lanes // every lane's cells
	run := min(steps, kk)    // steps in one column before a lane moves to the next
	first := g * GroupLanes
	blk := b.seeded(first)
	defer blocks.Put(blk)
	c := cellRun{w: 1 << (32 - lg), k: lg}
	var misses uint64
	for t := uint64(0); t < steps; t += run {
		for l := range GroupLanes {
			i, _ := cellsOf(first+l, t, lg)
			c.x[l] = i << (32 - lg)
		}
		_, j := cellsOf(first, t, lg)
		c.y = j << (32 - lg)
		for left := run; left > 0; {
			if stop != nil && stop() {
				return 0, false
			}
			n := min(left, ChunkSteps)
			misses += k.cells(blk, &c, n)
			c.y += n * c.w
			left -= n
		}
	}
	return GroupLanes*steps - misses, true
}
