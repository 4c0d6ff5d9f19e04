package collector

// The calibration suite: many simulated jobs under the conditions real jobs
// produce, drawn from the binomial model directly (a normal approximation,
// exact enough for n ≥ 10⁶), checking that the dispersion SE, the χ² test
// and the flags mean what they say. Every scenario has a fixed seed, logged;
// job j of a scenario draws from PCG(seed, j). To replay one job, with its
// figures logged:
//
//	go test ./collector -run Calibration/rebuild -calib.job 17 -v
//
// For tighter figures, -calib.scale 10 runs ten times as many jobs.

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/picluster/picluster/mcpi"
)

var (
	calibJob   = flag.Int("calib.job", -1, "replay only this job of each calibration scenario, logging it")
	calibScale = flag.Int("calib.scale", 1, "run this many times as many jobs in each calibration scenario")
)

// scenario runs jobs jobs of a simulation, each with its own generator, and
// returns how many it ran. With -calib.job it runs that one job only and
// the caller skips its aggregate assertions.
func scenario(t *testing.T, seed uint64, jobs int, job func(j int, r *rand.Rand, logf func(string, ...any))) (ran int, replay bool) {
	t.Helper()
	if *calibJob >= 0 {
		t.Logf("replaying job %d of seed %#x", *calibJob, seed)
		job(*calibJob, rand.New(rand.NewPCG(seed, uint64(*calibJob))), t.Logf)
		return 1, true
	}
	jobs *= max(*calibScale, 1)
	t.Logf("seed %#x, jobs 0…%d (replay one with -calib.job J)", seed, jobs-1)
	quiet := func(string, ...any) {}
	for j := range jobs {
		job(j, rand.New(rand.NewPCG(seed, uint64(j))), quiet)
	}
	return jobs, false
}

// draw returns the hits of n samples with hit probability p: the normal
// approximation of the binomial, rounded and clamped.
func draw(r *rand.Rand, n uint64, p float64) uint64 {
	fn := float64(n)
	h := math.Round(fn*p + math.Sqrt(fn*p*(1-p))*r.NormFloat64())
	return uint64(min(max(h, 0), fn))
}

// oldRatio is the dispersion ratio by the formula this suite replaced,
// m/(m−1)·Σ(hⱼ − p̂nⱼ)²/N², exact only for equal chunks.
func oldRatio(d *dispersion) float64 {
	p := d.h / d.n
	delta := p - p0
	ss := d.dd - 2*delta*d.dn + delta*delta*d.nn
	return math.Sqrt(ss*d.m/(d.m-1)) / d.n / math.Sqrt(p*(1-p)/d.n)
}

type mean struct{ sum, n float64 }

func (m *mean) add(x float64) { m.sum, m.n = m.sum+x, m.n+1 }
func (m mean) get() float64   { return m.sum / m.n }

func TestCalibration(t *testing.T) {
	t.Run("unequal chunks", calibUnequalChunks)
	t.Run("rebuild", calibRebuild)
	t.Run("anonymous-heavy", calibAnonymousHeavy)
	t.Run("10k workers", calib10kWorkers)
	t.Run("long job at 4 Hz", calibLongJob)
	t.Run("power", calibPower)
}

// Chunks whose sizes spread over four decades, as adaptive batch sizes and
// workers of different speeds make them.
func calibUnequalChunks(t *testing.T) {
	var newR, oldR mean
	hidden := 0
	jobs, replay := scenario(t, 0xca11b0001, 400, func(j int, r *rand.Rand, logf func(string, ...any)) {
		var d dispersion
		for range 30 {
			n := uint64(math.Pow(10, 6+4*r.Float64()))
			d.add(n, draw(r, n, p0))
		}
		disp, binom := d.stdErr()
		if math.IsNaN(disp) {
			hidden++
			return
		}
		newR.add(disp / binom)
		oldR.add(oldRatio(&d))
		logf("job %d: effective chunks %.2f, ratio %.3f (old formula %.3f)", j, d.effective(), disp/binom, oldRatio(&d))
	})
	if replay {
		return
	}
	t.Logf("mean dispersion ratio %.3f (old formula %.3f) over %d jobs; %d hidden for too few effective chunks",
		newR.get(), oldR.get(), jobs-hidden, hidden)
	if m := newR.get(); math.Abs(m-1) > 0.05 {
		t.Errorf("mean dispersion ratio %.3f, want 1 ± 0.05", m)
	}
	if hidden > jobs/10 {
		t.Errorf("%d of %d jobs had too few effective chunks for a ratio", hidden, jobs)
	}
}

// A collector that rebuilds a job sees each worker's history as one chunk.
func calibRebuild(t *testing.T) {
	// The case of the issue: one rebuilt chunk of 10¹² and nine of 10⁹.
	// Its effective number of chunks is 1.02, so the Summary shows no
	// ratio; computed anyway (raw), the variance ratio is unbiased, but the
	// SE ratio, its square root, averages about 0.93: the scatter has about
	// 3 degrees of freedom (Satterthwaite), and E√(χ²₃/3) = 0.92.
	var newR, oldR, newV mean
	_, replay := scenario(t, 0xca11b0002, 1000, func(j int, r *rand.Rand, logf func(string, ...any)) {
		var d dispersion
		d.add(1e12, draw(r, 1e12, p0))
		for range 9 {
			d.add(1e9, draw(r, 1e9, p0))
		}
		disp, binom := d.raw()
		if shown, _ := d.stdErr(); !math.IsNaN(shown) {
			t.Fatalf("job %d: a ratio reported from %.2f effective chunks", j, d.effective())
		}
		newR.add(disp / binom)
		newV.add(disp * disp / binom / binom)
		oldR.add(oldRatio(&d))
		logf("job %d: ratio %.3f (old formula %.3f)", j, disp/binom, oldRatio(&d))
	})
	if !replay {
		t.Logf("10¹² + 9×10⁹ (not reported: effective chunks 1.02): mean SE ratio %.3f (old formula %.3f), mean variance ratio %.3f",
			newR.get(), oldR.get(), newV.get())
		if m := newV.get(); math.Abs(m-1) > 0.05 {
			t.Errorf("rebuild + 9 batches: mean variance ratio %.3f, want 1 ± 0.05", m)
		}
	}

	// A rebuild, then the live batches of a job that goes on: 10¹² then
	// forty of 10¹¹ (effective chunks 17.9), through the reporting rule.
	newR, oldR = mean{}, mean{}
	_, replay = scenario(t, 0xca11b0003, 500, func(j int, r *rand.Rand, logf func(string, ...any)) {
		var d dispersion
		d.add(1e12, draw(r, 1e12, p0))
		for range 40 {
			d.add(1e11, draw(r, 1e11, p0))
		}
		disp, binom := d.stdErr()
		newR.add(disp / binom)
		oldR.add(oldRatio(&d))
		logf("job %d: effective chunks %.2f, ratio %.3f (old formula %.3f)", j, d.effective(), disp/binom, oldRatio(&d))
	})
	if !replay {
		t.Logf("10¹² + 40×10¹¹: mean dispersion ratio %.3f (old formula %.3f)", newR.get(), oldR.get())
		if m := newR.get(); math.Abs(m-1) > 0.05 {
			t.Errorf("rebuild + 40 batches: mean dispersion ratio %.3f, want 1 ± 0.05", m)
		}
	}
}

// ids are worker ids in sorted order, made once.
var ids = func() []string {
	ids := make([]string, 10_000)
	for i := range ids {
		ids[i] = fmt.Sprintf("w%05d", i)
	}
	return ids
}()

// table builds a worker table as Summary does, from the workers' tallies,
// reusing ws.
func table(ws []WorkerStats, ts []mcpi.Tally) []WorkerStats {
	ws = ws[:0]
	for i, t := range ts {
		n, _ := t.N.Uint64()
		h, _ := t.Hits.Uint64()
		ws = append(ws, WorkerStats{ID: ids[i], N: n, Hits: h, tally: t})
	}
	return ws
}

// oldChi2P is the χ² p-value by the rule this suite replaced: the workers
// against the pooled fraction of everything, anonymous batches included.
func oldChi2P(ws []WorkerStats, total mcpi.Tally) float64 {
	p := total.P()
	var x float64
	for _, w := range ws {
		d := float64(w.Hits) - float64(w.N)*p
		x += d * d / (float64(w.N) * p * (1 - p))
	}
	return distuv.ChiSquared{K: float64(len(ws) - 1)}.Survival(x)
}

// ks returns the Kolmogorov–Smirnov distance of xs from the uniform
// distribution on [0, 1] and its asymptotic p-value (with Stephens's
// correction for finite n).
func ks(xs []float64) (d, p float64) {
	xs = slices.Clone(xs)
	slices.Sort(xs)
	n := float64(len(xs))
	for i, x := range xs {
		d = max(d, float64(i+1)/n-x, x-float64(i)/n)
	}
	sn := math.Sqrt(n)
	l := (sn + 0.12 + 0.11/sn) * d
	for k := 1; k <= 100; k++ {
		term := 2 * math.Exp(-2*float64(k*k)*l*l)
		if k%2 == 0 {
			term = -term
		}
		p += term
	}
	return d, min(max(p, 0), 1)
}

// Three workers and thirty anonymous (seed-style) batches of the same
// total size: the χ² test must compare the workers with each other.
func calibAnonymousHeavy(t *testing.T) {
	var ps, oldPs []float64
	var ratio mean
	_, replay := scenario(t, 0xca11b0004, 2000, func(j int, r *rand.Rand, logf func(string, ...any)) {
		var d dispersion
		ts := make([]mcpi.Tally, 3)
		for i := range ts {
			for range 10 {
				h := draw(r, 1e8, p0)
				ts[i] = ts[i].Add(mcpi.TallyOf(1e8, h))
				d.add(1e8, h)
			}
		}
		var total mcpi.Tally
		for _, w := range ts {
			total = total.Add(w)
		}
		for range 30 {
			n := uint64(math.Pow(10, 7+2*r.Float64()))
			h := draw(r, n, p0)
			total = total.Add(mcpi.TallyOf(n, h))
			d.add(n, h)
		}
		ws := table(nil, ts)
		c := workerStats(ws, total)
		ps = append(ps, float64(c.Chi2P))
		oldPs = append(oldPs, oldChi2P(ws, total))
		disp, binom := d.stdErr()
		ratio.add(disp / binom)
		logf("job %d: χ² %.3f on %d df, p %.4f (old rule %.4f); dispersion ratio %.3f", j, c.Chi2, c.Chi2DF, c.Chi2P, oldPs[len(oldPs)-1], disp/binom)
	})
	if replay {
		return
	}
	below := func(xs []float64) float64 {
		n := 0
		for _, x := range xs {
			if x < 0.05 {
				n++
			}
		}
		return float64(n) / float64(len(xs))
	}
	avg := func(xs []float64) float64 {
		var m mean
		for _, x := range xs {
			m.add(x)
		}
		return m.get()
	}
	d, p := ks(ps)
	od, op := ks(oldPs)
	t.Logf("χ² p-values: mean %.3f, P(p < 0.05) = %.3f, KS D = %.4f, KS p = %.3f", avg(ps), below(ps), d, p)
	t.Logf("old rule:    mean %.3f, P(p < 0.05) = %.3f, KS D = %.4f, KS p = %.2g", avg(oldPs), below(oldPs), od, op)
	t.Logf("dispersion ratio over the workers' and anonymous chunks: mean %.3f", ratio.get())
	if p < 0.01 {
		t.Errorf("χ² p-values are not uniform: KS D %.4f, p %.2g", d, p)
	}
	if m := ratio.get(); math.Abs(m-1) > 0.05 {
		t.Errorf("mean dispersion ratio %.3f, want 1 ± 0.05", m)
	}
}

// maxFalseFlags returns the largest count of jobs with a false flag that
// is consistent with a per-job rate of FlagAlpha over jobs jobs: the count
// a Binomial(jobs, FlagAlpha) exceeds with probability below 10⁻³.
func maxFalseFlags(jobs int) int {
	b := distuv.Binomial{N: float64(jobs), P: FlagAlpha}
	k := 0
	for b.Survival(float64(k)) >= 1e-3 { // Survival(k) = P(X > k)
		k++
	}
	return k
}

// flags is a simulated job of honest workers whose table is evaluated after
// every round of batches; it reports whether any worker was ever flagged,
// by the rule and by the old |z| > 5, and the χ² p-value of the last look.
func flags(r *rand.Rand, workers, looks int, batch func(look int) uint64) (flagged, oldFlagged bool, chi2P float64) {
	ts := make([]mcpi.Tally, workers)
	var ws []WorkerStats
	for look := range looks {
		n := batch(look)
		var total mcpi.Tally
		for i := range ts {
			ts[i] = ts[i].Add(mcpi.TallyOf(n, draw(r, n, p0)))
			total = total.Add(ts[i])
		}
		ws = table(ws, ts)
		c := workerStats(ws, total)
		for _, w := range ws {
			flagged = flagged || w.Flagged
			oldFlagged = oldFlagged || math.Abs(float64(w.Z)) > 5
		}
		chi2P = float64(c.Chi2P)
	}
	return flagged, oldFlagged, chi2P
}

// 10⁴ honest workers, evaluated ten times as their samples double from
// 10⁸ to 5·10¹⁰ each: each doubling is a fresh chance of a false alarm.
func calib10kWorkers(t *testing.T) {
	var falseFlags, oldFalse int
	var ps []float64
	jobs, replay := scenario(t, 0xca11b0005, 100, func(j int, r *rand.Rand, logf func(string, ...any)) {
		f, old, p := flags(r, 10_000, 10, func(look int) uint64 { return 1e8 << max(look-1, 0) })
		if f {
			falseFlags++
		}
		if old {
			oldFalse++
		}
		ps = append(ps, p)
		logf("job %d: flagged %v (old rule %v), χ² p %.4f", j, f, old, p)
	})
	if replay {
		return
	}
	d, p := ks(ps)
	t.Logf("10⁴ workers × 10 looks: false-flag rate per job %d/%d = %.3f (documented ≤ %g; old |z| > 5 rule %.3f); χ² p-values KS D %.3f, p %.3f",
		falseFlags, jobs, float64(falseFlags)/float64(jobs), FlagAlpha, float64(oldFalse)/float64(jobs), d, p)
	if limit := maxFalseFlags(jobs); falseFlags > limit {
		t.Errorf("%d of %d jobs falsely flagged a worker: more than the %d a rate of %g allows", falseFlags, jobs, limit, FlagAlpha)
	}
	if p < 0.01 {
		t.Errorf("χ² p-values at 10⁴ workers are not uniform: KS D %.4f, p %.2g", d, p)
	}
}

// A job of an hour, evaluated 4 times a second as the dashboard does, every
// worker adding 2.5·10⁸ samples (10⁹ samples/s) between evaluations.
func calibLongJob(t *testing.T) {
	var falseFlags, oldFalse int
	jobs, replay := scenario(t, 0xca11b0006, 100, func(j int, r *rand.Rand, logf func(string, ...any)) {
		f, old, _ := flags(r, 8, 4*3600, func(int) uint64 { return 2.5e8 })
		if f {
			falseFlags++
		}
		if old {
			oldFalse++
		}
		logf("job %d: flagged %v (old rule %v)", j, f, old)
	})
	if replay {
		return
	}
	t.Logf("8 workers, 14 400 looks: false-flag rate per job %d/%d = %.3f (documented ≤ %g; old rule %.3f)",
		falseFlags, jobs, float64(falseFlags)/float64(jobs), FlagAlpha, float64(oldFalse)/float64(jobs))
	if limit := maxFalseFlags(jobs); falseFlags > limit {
		t.Errorf("%d of %d jobs falsely flagged a worker: more than the %d a rate of %g allows", falseFlags, jobs, limit, FlagAlpha)
	}
}

// detectionSamples is the power calculation: the effective sample size m at
// which a worker whose π is off by bias, among W, is flagged with
// probability at least power. Its z has mean μ(m) = (bias/4)·√(m/(p(1−p)))
// and unit variance, so P(flagged by m) ≥ P(z(m) ≥ b(m)) = Φ(μ(m) − b(m));
// a flag at an earlier evaluation only comes sooner. Solved for
// μ(m) − b(m) = Φ⁻¹(power) by bisection on log m.
func detectionSamples(bias float64, workers int, power float64) float64 {
	zp := distuv.UnitNormal.Quantile(power)
	a := FlagAlpha / float64(workers)
	gap := func(m float64) float64 {
		return bias/4*math.Sqrt(m/(p0*(1-p0))) - flagBound(m, a) - zp
	}
	lo, hi := 1.0, 1e30
	for range 200 {
		mid := math.Sqrt(lo * hi)
		if gap(mid) < 0 {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}

// A worker whose π is off by 10⁻⁴, among 100 honest ones that each add 10⁹
// samples per evaluation, is flagged by the samples the power calculation
// predicts in at least 95 % of jobs (the calculation says 99 %).
func calibPower(t *testing.T) {
	const workers, bias, batch = 100, 1e-4, uint64(1e9)
	mStar := detectionSamples(bias, workers, 0.99)
	// m = n₀·n_r/(n₀ + n_r) with n_r = 99·n₀, so the biased worker's n for
	// m* is m*·100/99; workers are evaluated every batch samples, and the
	// first evaluation at or past it is where the flag is due.
	nStar := math.Ceil(mStar*100/99/float64(batch)) * float64(batch)
	var inTime, honestFlags int
	var firsts []float64
	jobs, replay := scenario(t, 0xca11b0007, 200, func(j int, r *rand.Rand, logf func(string, ...any)) {
		ts := make([]mcpi.Tally, workers)
		first := math.Inf(1)
		for look := 1; float64(look)*float64(batch) <= 2*nStar; look++ {
			var total mcpi.Tally
			for i := range ts {
				p := p0
				if i == 0 {
					p += bias / 4
				}
				ts[i] = ts[i].Add(mcpi.TallyOf(batch, draw(r, batch, p)))
				total = total.Add(ts[i])
			}
			ws := table(nil, ts)
			workerStats(ws, total)
			for _, w := range ws[1:] {
				if w.Flagged {
					honestFlags++
					logf("job %d: honest worker %s flagged at look %d", j, w.ID, look)
				}
			}
			if ws[0].Flagged {
				first = float64(ws[0].N)
				break
			}
		}
		if first <= nStar {
			inTime++
		}
		firsts = append(firsts, first)
		logf("job %d: flagged at n = %.3g (predicted by %.3g)", j, first, nStar)
	})
	if replay {
		return
	}
	slices.Sort(firsts)
	t.Logf("bias 1e-4 among %d workers: predicted flagged by m* = %.3g (n = %.3g, the first evaluation past it) at 99 %% power; flagged by then in %d/%d jobs; median n at the flag %.3g",
		workers, mStar, nStar, inTime, jobs, firsts[len(firsts)/2])
	if float64(inTime) < 0.95*float64(jobs) {
		t.Errorf("flagged in time in %d of %d jobs, want ≥ 95 %%", inTime, jobs)
	}
	if honestFlags > 0 {
		t.Logf("honest workers flagged: %d", honestFlags)
	}
}
