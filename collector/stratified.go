package collector

import (
	"math"
	"strconv"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

// MinReplicates is the fewest batches of a stratified job from which its
// standard error is reported and a target can be met; doc.go says why 30.
const MinReplicates = 30

// DefaultCells is Config.Cells' default for a stratified job: K = 2¹⁵,
// n = 2³⁰ points a batch.
const DefaultCells = 1 << 15

// replicates accumulates the batches of a stratified job, each an
// independent replicate of the same n = K² cells, as deviations d = h − n·π/4
// of their hits, so that nothing large cancels in the sum of squares.
type replicates struct {
	b      float64 // batches
	s1, s2 float64 // Σd, Σd²
}

// dev is the deviation of h hits out of n from n·π/4.
func dev(n, h uint64) float64 { return float64(h) - float64(n)*p0 }

// add counts one batch of n samples with h hits and returns its d².
func (r *replicates) add(n, h uint64) float64 {
	d := dev(n, h)
	r.b++
	r.s1 += d
	r.s2 += d * d
	return d * d
}

// addCredit adds (sign +1) or takes out (sign −1) a worker's credited
// batches.
func (r *replicates) addCredit(cr *wire.Credit, sign float64) {
	r.b += sign * float64(cr.Entries)
	r.s1 += sign * dev(cr.TotalN, cr.TotalHits)
	r.s2 += sign * cr.DevSq
}

// Stratified is the error bar of a stratified job, from its replicates.
type Stratified struct {
	// Cells is K: every batch is one point in each of K×K cells, n = K².
	Cells uint64 `json:"cells"`
	// Batches is B, the batches (replicates) pooled.
	Batches uint64 `json:"batches"`
	// StdErr is the sample standard deviation of the B batch estimates
	// over √B: the job's standard error. Null below 2 batches.
	StdErr Float `json:"stderr"`
	// DF is the degrees of freedom of the Student-t interval, B − 1.
	DF uint64 `json:"df"`
	// BatchSE is the standard deviation of one batch's estimate, measured:
	// StdErr·√B.
	BatchSE Float `json:"batch_se"`
	// TheorySE is 4·√(K/3)/K², the leading-order batch SE; the exact
	// Σa(1−a) over the cells makes BatchSE about 0.88 of it (mcpi's doc).
	TheorySE Float `json:"theory_se"`
	// BinomialSE is the SE plain Monte Carlo would have with the same N,
	// 4·√(p̂(1−p̂)/N).
	BinomialSE Float `json:"binomial_se"`
	// Gain is BinomialSE over StdErr: how much smaller the error bar is than
	// plain MC's for the same samples; its square is the factor in samples.
	Gain Float `json:"gain"`
	// Ready is whether B ≥ MinReplicates, so that the error bar counts for
	// a target.
	Ready bool `json:"ready"`
}

// stratified returns the job's replicate statistics and its 95 % t-interval;
// c.mu is held.
func (c *Collector) stratified() (Stratified, [2]float64) {
	k := c.job.Cells
	r := c.pool.strat
	st := Stratified{Cells: k, Batches: uint64(max(r.b, 0)), StdErr: Float(math.NaN()), BatchSE: Float(math.NaN()),
		TheorySE: Float(mcpi.StratifiedSE(k)), BinomialSE: Float(c.pool.total.StdErr()), Gain: Float(math.NaN())}
	ci := [2]float64{math.NaN(), math.NaN()}
	if r.b < 2 {
		return st, ci
	}
	n := float64(k * k)
	mean := r.s1 / r.b
	v := max(r.s2-r.b*mean*mean, 0) / (r.b - 1) // the sample variance of d
	st.BatchSE = Float(4 * math.Sqrt(v) / n)
	st.StdErr = Float(float64(st.BatchSE) / math.Sqrt(r.b))
	st.DF = st.Batches - 1
	st.Gain = st.BinomialSE / st.StdErr
	st.Ready = r.b >= MinReplicates
	pi := c.pool.total.Pi()
	t := distuv.StudentsT{Mu: 0, Sigma: 1, Nu: r.b - 1}.Quantile(0.975)
	ci = [2]float64{pi - t*float64(st.StdErr), pi + t*float64(st.StdErr)}
	return st, ci
}

// stdErr is the standard error of the pool: the binomial one, or for a
// stratified job the replicates' (NaN below two batches); c.mu is held.
func (c *Collector) stdErr(t mcpi.Tally) float64 {
	if c.job.Cells == 0 {
		return t.StdErr()
	}
	st, _ := c.stratified()
	return float64(st.StdErr)
}

// stratifiedSummary puts the replicate error bar into s in a stratified
// job: StdErr, CI95 and the digits come from the replicates; c.mu is held.
func (c *Collector) stratifiedSummary(s *Summary) {
	s.Estimator = mcpi.MC
	s.Slope = Float(Slope(c.history.points()))
	if c.job.Cells == 0 {
		return
	}
	st, ci := c.stratified()
	s.Estimator, s.Stratified = mcpi.Stratified, &st
	s.StdErr, s.CI95 = st.StdErr, [2]Float{Float(ci[0]), Float(ci[1])}
	s.PiDigits = CertainDigits(float64(s.Pi), ci[0], ci[1])
}

// targetSE returns the SE a target is judged by, and false while it cannot
// count: a stratified job needs MinReplicates batches.
func (c *Collector) targetSE() (float64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.job.Cells == 0 {
		return c.pool.total.StdErr(), true
	}
	st, _ := c.stratified()
	return float64(st.StdErr), st.Ready
}

// Slope is the convergence slope: the least-squares exponent of the
// standard error against N, on log-log axes, over the points of pts in the
// last two decades of N. Plain MC falls at −½. A stratified job of one K
// falls at −½ too, as its B replicates grow, but from a level far below
// MC's: its batch SE falls as n^(−¾) across K (mcpi.StratifiedSE), the
// choice of K sets how far below, and Stratified.Gain says. NaN until the
// points span a factor of 2 in N.
func Slope(pts []Point) float64 {
	if len(pts) == 0 {
		return math.NaN()
	}
	last := pts[len(pts)-1].N
	var ns, ses []float64
	for _, p := range pts {
		if p.N < last/100 || !(p.StdErr > 0) || math.IsInf(p.StdErr, 0) {
			continue
		}
		ns, ses = append(ns, p.N), append(ses, p.StdErr)
	}
	if len(ns) < 3 || last < 2*ns[0] {
		return math.NaN()
	}
	return mcpi.LogSlope(ns, ses)
}

// checkEstimator refuses an entry that is not of the job's estimator: plain
// in a stratified job or the other way round, another K, or a stratified
// entry whose n is not K².
func checkEstimator(e wire.Entry, job wire.State) error {
	switch {
	case e.Cells != job.Cells:
		return &wire.Error{Reason: wire.WrongEstimator, Detail: "entry of " + estimatorName(e.Cells) + ", the job is " + estimatorName(job.Cells)}
	case e.Cells != 0 && e.N != e.Cells*e.Cells:
		return &wire.Error{Reason: wire.WrongEstimator, Detail: "a stratified entry's n must be cells²"}
	}
	return nil
}

func estimatorName(cells uint64) string {
	if cells == 0 {
		return mcpi.MC
	}
	return mcpi.Stratified + " K=" + strconv.FormatUint(cells, 10)
}
