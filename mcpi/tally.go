package mcpi

import (
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// Tally is an exact count of samples and of the samples that fell inside the
// quarter circle. Tallies add: pooling a cluster is summing its tallies.
type Tally struct {
	N    Count // samples
	Hits Count // samples inside the quarter circle, Hits ≤ N
}

// TallyOf returns the tally of n samples with hits inside.
func TallyOf(n, hits uint64) Tally { return Tally{N: CountOf(n), Hits: CountOf(hits)} }

// Add returns t + u.
func (t Tally) Add(u Tally) Tally { return Tally{N: t.N.Add(u.N), Hits: t.Hits.Add(u.Hits)} }

// Sub returns t − u; the caller guarantees u ≤ t in both counts.
func (t Tally) Sub(u Tally) Tally { return Tally{N: t.N.Sub(u.N), Hits: t.Hits.Sub(u.Hits)} }

// P returns the fraction of hits, H/N, or NaN when N is 0.
func (t Tally) P() float64 {
	if t.N.IsZero() {
		return math.NaN()
	}
	return t.Hits.Float64() / t.N.Float64()
}

// Pi returns the estimate π̂ = 4H/N, or NaN when N is 0.
func (t Tally) Pi() float64 { return 4 * t.P() }

// StdErr returns the standard error of Pi, 4·√(p̂(1−p̂)/N): the binomial
// standard error of the hit fraction, scaled by 4. NaN when N is 0.
func (t Tally) StdErr() float64 {
	p := t.P()
	return 4 * math.Sqrt(p*(1-p)/t.N.Float64())
}

// CI95 returns the two-sided 95 % normal interval Pi ± z·StdErr, z the
// 0.975 quantile of the unit normal.
func (t Tally) CI95() (lo, hi float64) {
	z := distuv.UnitNormal.Quantile(0.975)
	pi, se := t.Pi(), t.StdErr()
	return pi - z*se, pi + z*se
}

// PiBias is the sampler's discretisation bias in π̂ to first order: the
// lattice of M² points, M = 2³², holds πM²/4 + M + O(M^⅔) hits, so the hit
// fraction is π/4 + 1/M and π̂ = 4H/N is biased by +4/M ≈ 9.3e-10 (see the
// package doc). It is a property of this sampler, stated beside the
// standard error, never subtracted from the estimate.
const PiBias = 4.0 / (1 << 32)
