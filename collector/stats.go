package collector

import (
	"math"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/picluster/picluster/mcpi"
)

// Thresholds for flagging a worker whose tally is implausible.
const (
	FlagZ      = 5    // |z| against the pooled estimate of the others
	FlagChi2P  = 1e-6 // χ² homogeneity p-value below which the largest contributor is flagged
	minChunks  = 3    // chunks below which the dispersion SE is not reported
	minWorkerN = 1000 // samples below which a worker takes no part in the χ² test
)

// dispersion accumulates the chunks of samples the collector accepted
// (each report's increase of a worker's totals, or an anonymous batch: disjoint
// samples) to estimate the standard error from their scatter, independently of
// the binomial formula. Sums are of d = h − p₀n around p₀ = π/4, so nothing
// large cancels.
type dispersion struct {
	m          float64 // chunks
	n, h       float64 // Σn, Σh
	dd, dn, nn float64 // Σd², Σd·n, Σn²
}

const p0 = math.Pi / 4

func (d *dispersion) add(n, h uint64) {
	if n == 0 {
		return
	}
	fn, fh := float64(n), float64(h)
	dev := fh - p0*fn
	d.m++
	d.n += fn
	d.h += fh
	d.dd += dev * dev
	d.dn += dev * fn
	d.nn += fn * fn
}

// stdErr returns the standard error of π̂ over the chunks implied by their
// scatter (the ratio estimator's variance, m/(m−1)·Σ(hⱼ − p̂nⱼ)²/(Σn)², times
// 16), and the binomial standard error over the same chunks; NaN for fewer
// than minChunks chunks.
func (d *dispersion) stdErr() (disp, binom float64) {
	if d.m < minChunks {
		return math.NaN(), math.NaN()
	}
	p := d.h / d.n
	delta := p - p0
	ss := d.dd - 2*delta*d.dn + delta*delta*d.nn // Σ(hⱼ − p̂nⱼ)²
	disp = 4 * math.Sqrt(max(ss, 0)*d.m/(d.m-1)) / d.n
	binom = 4 * math.Sqrt(p*(1-p)/d.n)
	return disp, binom
}

// WorkerStats is one worker as the collector sees it.
type WorkerStats struct {
	ID          string     `json:"id"`
	N           uint64     `json:"n"`
	Hits        uint64     `json:"hits"`
	Pi          Float      `json:"pi"`
	Z           Float      `json:"z"` // against the pooled estimate of all the others
	SamplesPerS float64    `json:"samples_per_s"`
	Seq         uint64     `json:"seq"`
	Entries     uint64     `json:"entries"`  // ledger entries credited
	Gaps        uint64     `json:"gaps"`     // seqs missing between them
	Verified    uint64     `json:"verified"` // entries replayed and exact
	Kernel      string     `json:"kernel,omitempty"`
	LastSeen    time.Time  `json:"last_seen"`
	Status      string     `json:"status"` // "alive", "left", "vanished" or "quarantined"
	Flagged     bool       `json:"flagged"`
	Why         string     `json:"why,omitempty"`
	tally       mcpi.Tally // the same N and Hits, for the math
}

// Checks are the cross-checks of the error bar.
type Checks struct {
	// StdErrDispersion is the SE implied by the scatter of the chunks
	// received, scaled to the whole N; DispersionRatio is that SE over the
	// binomial SE of the same chunks: about 1 when the error bar is right.
	StdErrDispersion Float `json:"stderr_dispersion"`
	DispersionRatio  Float `json:"dispersion_ratio"`
	Chunks           int   `json:"chunks"`
	// Chi2 is the homogeneity statistic across workers (those with at least
	// 1000 samples), on Chi2DF degrees of freedom, and Chi2P its p-value.
	Chi2   Float `json:"chi2"`
	Chi2DF int   `json:"chi2_df"`
	Chi2P  Float `json:"chi2_p"`
}

// workerStats computes the per-worker table and the χ² test, and flags the
// implausible. total is the pooled tally of everything, anonymous batches
// included; the workers are compared with each other and with it.
func workerStats(ws []WorkerStats, total mcpi.Tally) Checks {
	c := Checks{Chi2: Float(math.NaN()), Chi2P: Float(math.NaN())}
	p := total.P()
	var chi2 float64
	worst, worstI := -1.0, -1
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
		if math.Abs(z) > FlagZ {
			w.Flagged, w.Why = true, "|z| > 5"
		}
		if w.N >= minWorkerN {
			d := (float64(w.Hits) - ni*p)
			contrib := d * d / (ni * p * (1 - p))
			chi2 += contrib
			c.Chi2DF++
			if contrib > worst {
				worst, worstI = contrib, i
			}
		}
	}
	if c.Chi2DF >= 2 {
		c.Chi2DF--
		c.Chi2 = Float(chi2)
		c.Chi2P = Float(distuv.ChiSquared{K: float64(c.Chi2DF)}.Survival(chi2))
		if float64(c.Chi2P) < FlagChi2P && !ws[worstI].Flagged {
			ws[worstI].Flagged, ws[worstI].Why = true, "drives χ² p < 1e-6"
		}
	} else {
		c.Chi2DF = 0
	}
	slices.SortFunc(ws, func(a, b WorkerStats) int { return strings.Compare(a.ID, b.ID) })
	return c
}
