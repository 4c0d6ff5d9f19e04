package collector

import (
	"fmt"
	"math"
	"time"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/picluster/picluster/mcpi"
)

// The checks' parameters; doc.go derives the rules they set.
const (
	// FlagAlpha is the family-wise false-alarm rate of the per-worker flags:
	// in a job whose workers are all honest, the probability that any of
	// them is ever flagged, at any of any number of evaluations, is at most
	// FlagAlpha (see doc.go for the exact statement).
	FlagAlpha = 0.01
	// FlagScale is m₀, the mixing scale of the flags' normal-mixture
	// boundary, in samples: for effective sample sizes below it the boundary
	// is wide, above it it grows only as √(ln m).
	FlagScale = 1e7
	// MinEffectiveChunks is the effective number of chunks, (Σnⱼ)²/Σnⱼ²,
	// below which the dispersion SE is not reported.
	MinEffectiveChunks = 3
	minWorkerN         = 1000 // samples below which a worker takes no part in the χ² test
)

// dispersion accumulates the chunks of samples the collector accepted
// (each report's increase of a worker's totals, or an anonymous batch, or a
// ledger entry: disjoint samples (nⱼ, hⱼ)) to estimate the standard error
// from their scatter, independently of the binomial formula:
//
//	Var(p̂) ≈ Σ(hⱼ − p̂nⱼ)² / (N² − Σnⱼ²),
//
// unbiased under the binomial model for chunks of any sizes (doc.go). Sums
// are of d = h − p₀n around p₀ = π/4, so nothing large cancels in
// Σ(hⱼ − p̂nⱼ)², and N² − Σnⱼ² is accumulated as Σᵢ≠ⱼ nᵢnⱼ, a sum of
// positive terms, so it keeps its precision when one chunk holds almost all
// of N.
type dispersion struct {
	m          float64 // chunks
	n, h       float64 // Σn, Σh
	dd, dn, nn float64 // Σd², Σd·n, Σn²
	cross      float64 // Σᵢ≠ⱼ nᵢnⱼ = N² − Σn²
}

const p0 = math.Pi / 4

func (d *dispersion) add(n, h uint64) {
	if n == 0 {
		return
	}
	fn, fh := float64(n), float64(h)
	dev := fh - p0*fn
	d.m++
	d.cross += 2 * fn * d.n
	d.n += fn
	d.h += fh
	d.dd += dev * dev
	d.dn += dev * fn
	d.nn += fn * fn
}

// effective returns the effective number of chunks, N²/Σnⱼ²: m for m equal
// chunks, about 1 when one chunk holds almost all the samples.
func (d *dispersion) effective() float64 {
	if d.nn == 0 {
		return 0
	}
	return d.n / d.nn * d.n
}

// raw returns the standard error of π̂ implied by the scatter of the chunks,
// 4·√(Σ(hⱼ − p̂nⱼ)²/(N² − Σnⱼ²)), and the binomial standard error of the same
// chunks, 4·√(p̂(1−p̂)/N), however little evidence there is: NaN for fewer
// than two chunks.
func (d *dispersion) raw() (disp, binom float64) {
	if d.m < 2 || d.cross <= 0 {
		return math.NaN(), math.NaN()
	}
	p := d.h / d.n
	delta := p - p0
	ss := d.dd - 2*delta*d.dn + delta*delta*d.nn // Σ(hⱼ − p̂nⱼ)²
	disp = 4 * math.Sqrt(max(ss, 0)/d.cross)
	binom = 4 * math.Sqrt(p*(1-p)/d.n)
	return disp, binom
}

// stdErr is raw when the chunks are worth at least MinEffectiveChunks equal
// ones, NaN otherwise.
func (d *dispersion) stdErr() (disp, binom float64) {
	if d.effective() < MinEffectiveChunks {
		return math.NaN(), math.NaN()
	}
	return d.raw()
}

// WorkerStats is one worker as the collector sees it: a row of the
// Summary's worker_table.
type WorkerStats struct {
	// ID is the worker's id (--id), as its ledger entries name it.
	ID string `json:"id"`
	// N is the samples credited to the worker over the whole job.
	N uint64 `json:"n"`
	// Hits is the hits of those samples.
	Hits uint64 `json:"hits"`
	// Pi is the worker's own estimate, 4·Hits/N.
	Pi Float `json:"pi"`
	// Z is the worker's z-score against the pooled estimate of all the
	// others; null when it cannot be computed.
	Z Float `json:"z"`
	// SamplesPerS is the rate of the worker's last entry; null before one.
	SamplesPerS Float `json:"samples_per_s"`
	// Seq is the number of the last entry credited.
	Seq uint64 `json:"seq"`
	// Entries is the ledger entries credited.
	Entries uint64 `json:"entries"`
	// Gaps is the seqs it skipped between them, which the collector drew
	// and credited to it.
	Gaps uint64 `json:"gaps"`
	// Verified is the entries replayed and found exact.
	Verified uint64 `json:"verified"`
	// Kernel is the sampling kernel of the last entry (avx512, avx2 or go).
	Kernel string `json:"kernel,omitempty"`
	// LastSeen is when the worker last reported or sent a heartbeat;
	// absent when this collector has not heard from it (rebuilt from a checkpoint).
	LastSeen time.Time `json:"last_seen,omitzero"`
	// Status is "alive", "left" (said goodbye), "vanished" (silent for
	// three heartbeats, or three batches if longer) or "quarantined".
	Status string `json:"status"`
	// Flagged is whether |Z| crossed the flag boundary.
	Flagged bool `json:"flagged"`
	// Why says why the worker is flagged; absent when it is not.
	Why   string     `json:"why,omitempty"`
	tally mcpi.Tally // the same N and Hits, for the math
}

// Checks are the cross-checks of the error bar.
type Checks struct {
	// StdErrDispersion is the SE implied by the scatter of the chunks
	// received, scaled to the whole N; DispersionRatio is that SE over the
	// binomial SE of the same chunks: about 1 when the error bar is right.
	// Both are null until the chunks are worth MinEffectiveChunks equal ones.
	StdErrDispersion Float `json:"stderr_dispersion"`
	// DispersionRatio is StdErrDispersion over the binomial SE.
	DispersionRatio Float `json:"dispersion_ratio"`
	// Chunks is how many chunks of samples the dispersion is computed over.
	Chunks int `json:"chunks"`
	// EffectiveChunks is (Σnⱼ)²/Σnⱼ² over the chunks.
	EffectiveChunks Float `json:"effective_chunks"`
	// Chi2 is the homogeneity statistic across workers (those with at least
	// 1000 samples), against their own pooled hit fraction, on Chi2DF
	// degrees of freedom, and Chi2P its p-value at this evaluation. It is a
	// check, not a flag: see FlagAlpha for what flags a worker.
	Chi2 Float `json:"chi2"`
	// Chi2DF is the degrees of freedom of Chi2.
	Chi2DF int `json:"chi2_df"`
	// Chi2P is the p-value of Chi2.
	Chi2P Float `json:"chi2_p"`
	// FlagAlpha is the family-wise false-alarm rate of the flags.
	FlagAlpha Float `json:"flag_alpha"`
}

// workerStats computes the per-worker table and the χ² test, and flags the
// implausible. total is the pooled tally of everything, anonymous batches
// included: each worker is compared with all the rest, and flagged when its
// |z| crosses flagBound at the family-wise rate FlagAlpha over the workers
// in ws. The χ² test compares the tested workers with each other only. ws
// keeps its order (the summary's is by id).
func workerStats(ws []WorkerStats, total mcpi.Tally) Checks {
	c := Checks{Chi2: Float(math.NaN()), Chi2P: Float(math.NaN()), FlagAlpha: FlagAlpha}
	p := total.P()
	var tested mcpi.Tally
	for i := range ws {
		if ws[i].N >= minWorkerN {
			tested = tested.Add(ws[i].tally)
		}
	}
	alpha := FlagAlpha / float64(max(len(ws), 1))
	for i := range ws {
		w := &ws[i]
		w.Pi, w.Z = Float(w.tally.Pi()), Float(math.NaN())
		rest := total.Sub(w.tally)
		if rest.N.IsZero() || w.N == 0 || !(p > 0 && p < 1) {
			continue
		}
		ni, nr := float64(w.N), rest.N.Float64()
		z := (w.tally.P() - rest.P()) / math.Sqrt(p*(1-p)*(1/ni+1/nr))
		w.Z = Float(z)
		if b := flagBound(ni*nr/(ni+nr), alpha); math.Abs(z) >= b {
			w.Flagged, w.Why = true, fmt.Sprintf("|z| %.1f ≥ %.1f, the %g family-wise bound", math.Abs(z), b, FlagAlpha)
		}
	}
	c.Chi2, c.Chi2DF, c.Chi2P = chi2(ws, tested)
	return c
}

// chi2 is Pearson's homogeneity statistic over the workers with at least
// minWorkerN samples, against their own pooled fraction p̃ = tested.P():
// Σ(hᵢ − nᵢp̃)²/(nᵢp̃(1−p̃)) on W − 1 degrees of freedom, and its p-value.
// NaN, 0, NaN for fewer than two such workers.
func chi2(ws []WorkerStats, tested mcpi.Tally) (Float, int, Float) {
	p := tested.P()
	if !(p > 0 && p < 1) {
		return Float(math.NaN()), 0, Float(math.NaN())
	}
	var x float64
	df := -1
	for i := range ws {
		w := &ws[i]
		if w.N < minWorkerN {
			continue
		}
		ni := float64(w.N)
		d := float64(w.Hits) - ni*p
		x += d * d / (ni * p * (1 - p))
		df++
	}
	if df < 1 {
		return Float(math.NaN()), 0, Float(math.NaN())
	}
	return chi2Of(x, df)
}

// chi2Of returns the statistic x on df degrees of freedom and its p-value.
func chi2Of(x float64, df int) (Float, int, Float) {
	return Float(x), df, Float(distuv.ChiSquared{K: float64(df)}.Survival(x))
}

// flagBound is the |z| at which a worker is flagged, for an effective sample
// size m = nᵢn_r/(nᵢ + n_r) (its samples against the rest's) and a
// false-alarm probability a over the whole job:
//
//	√((1 + m₀/m)·(ln(1 + m/m₀) + 2·ln(1/a))),  m₀ = FlagScale,
//
// the normal-mixture boundary: an honest worker's |z| crosses it at some
// evaluation, however many, with probability at most a (doc.go).
func flagBound(m, a float64) float64 {
	r := m / FlagScale
	return math.Sqrt((1 + 1/r) * (math.Log1p(r) + 2*math.Log(1/a)))
}
