package bench

import (
	"context"
	"flag"
	"math"
	"runtime"
	"testing"
	"time"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/picluster/picluster/mcpi"
	"github.com/picluster/picluster/worker"
)

var (
	rate = flag.Bool("strat.rate", false, "measure the stratified batch SE for K = 2^8 … 2^15 (about a minute)")
	race = flag.Bool("strat.race", false, "time MC to SE 1e-6 and stratified to 1e-7 and 1e-8 (about 15 minutes of every core)")
)

// TestStratifiedRate measures the per-batch SE of stratified batches for
// K = 2^8 … 2^15, 64 batches each (seed 0x4a7e, worker "rate"), on every
// core with the fastest kernel, against 4·√(K/3)/K², and fits its
// exponent in n = K²: −0.75 ± 0.05.
//
//	go test ./bench -run StratifiedRate -strat.rate -v -timeout 30m
func TestStratifiedRate(t *testing.T) {
	if !*rate {
		t.Skip("run with -strat.rate")
	}
	const reps = 64
	k, threads := mcpi.Pick(), runtime.GOMAXPROCS(0)
	t.Logf("CPU %s, kernel %s, %d threads, %d batches per K", CPUModel(), k, threads, reps)
	var ns, ses []float64
	for lg := 8; lg <= 15; lg++ {
		kk := uint64(1) << lg
		var s, ss float64
		for seq := uint64(1); seq <= reps; seq++ {
			h, _ := worker.Hits(context.Background(), mcpi.Batch{Key: mcpi.Key{Seed: 0x4a7e, Worker: "rate", Seq: seq}, N: kk * kk, Cells: kk}, k, threads)
			d := float64(h) - math.Pi/4*float64(kk*kk)
			s, ss = s+d, ss+d*d
		}
		se := 4 * math.Sqrt((ss-s*s/reps)/(reps-1)) / float64(kk*kk)
		ns, ses = append(ns, float64(kk*kk)), append(ses, se)
		t.Logf("K=2^%-2d n=2^%-2d batch SE %.4g  4√(K/3)/K² %.4g  ratio %.3f  (MC at the same n: %.3g)", lg, 2*lg, se, mcpi.StratifiedSE(kk), se/mcpi.StratifiedSE(kk), 1.642/math.Sqrt(float64(kk*kk)))
	}
	slope := mcpi.LogSlope(ns, ses)
	t.Logf("fitted exponent of the batch SE in n: %.3f (want −0.75 ± 0.05; plain MC −0.5)", slope)
	if math.Abs(slope+0.75) > 0.05 {
		t.Errorf("exponent %.3f, want −0.75 ± 0.05", slope)
	}
}

// TestRaceToSE times, in one run on every core with the fastest kernel:
// plain MC to a binomial SE of 1e-6 (batches of 2³²), extrapolating 1e-7 as
// 100× that time (SE ∝ N^−½); and stratified jobs of K = 2¹⁶ (n = 2³²) to a
// replicate SE of 1e-7 and of 1e-8, each stopped as the collector stops:
// SE ≤ target with at least 30 batches. Every time is also given as a ratio.
//
//	go test ./bench -run RaceToSE -strat.race -v -timeout 60m
func TestRaceToSE(t *testing.T) {
	if !*race {
		t.Skip("run with -strat.race")
	}
	k, threads := mcpi.Pick(), runtime.GOMAXPROCS(0)
	t.Logf("CPU %s, kernel %s, %d threads", CPUModel(), k, threads)
	ctx := context.Background()

	start := time.Now()
	var n, hits uint64
	for seq := uint64(1); ; seq++ {
		b := mcpi.Batch{Key: mcpi.Key{Seed: 0x4ace, Worker: "mc", Seq: seq}, N: 1 << 32}
		h, _ := worker.Hits(ctx, b, k, threads)
		n, hits = n+b.N, hits+h
		if mcpi.TallyOf(n, hits).StdErr() <= 1e-6 {
			break
		}
	}
	mc := time.Since(start)
	tl := mcpi.TallyOf(n, hits)
	t.Logf("MC: SE %.3g after N = %.3g in %.1fs (%.3g samples/s); π̂ = %.9f", tl.StdErr(), float64(n), mc.Seconds(), float64(n)/mc.Seconds(), tl.Pi())
	t.Logf("MC: SE 1e-7 extrapolated: %.0fs (100×)", 100*mc.Seconds())

	strat := func(target float64, seed uint64) (time.Duration, uint64, float64, float64) {
		const cells = 1 << 16
		start := time.Now()
		var b, s, ss float64
		for seq := uint64(1); ; seq++ {
			h, _ := worker.Hits(ctx, mcpi.Batch{Key: mcpi.Key{Seed: seed, Worker: "strat", Seq: seq}, N: cells * cells, Cells: cells}, k, threads)
			d := float64(h) - math.Pi/4*cells*cells
			b, s, ss = b+1, s+d, ss+d*d
			if b < 30 {
				continue
			}
			se := 4 * math.Sqrt((ss-s*s/b)/(b-1)/b) / (cells * cells)
			if se <= target {
				tq := distuv.StudentsT{Mu: 0, Sigma: 1, Nu: b - 1}.Quantile(0.975)
				pi := math.Pi + 4*(s/b)/(cells*cells)
				t.Logf("stratified K=2^16: SE %.3g ≤ %g after B = %.0f batches, N = %.3g, in %.1fs; π̂ = %.10f, 95%% t [%.10f, %.10f]",
					se, target, b, b*cells*cells, time.Since(start).Seconds(), pi, pi-tq*se, pi+tq*se)
				return time.Since(start), uint64(b), se, pi
			}
		}
	}
	s7, _, _, _ := strat(1e-7, 0x5e7)
	s8, _, _, _ := strat(1e-8, 0x5e8)
	t.Logf("time to SE: MC 1e-6 %.1fs (measured), MC 1e-7 %.0fs (extrapolated); stratified 1e-7 %.1fs, 1e-8 %.1fs", mc.Seconds(), 100*mc.Seconds(), s7.Seconds(), s8.Seconds())
	t.Logf("ratios: MC(1e-6)/strat(1e-7) = %.1f; MC(1e-7, extrapolated)/strat(1e-7) = %.0f; MC(1e-7)/strat(1e-8) = %.1f",
		mc.Seconds()/s7.Seconds(), 100*mc.Seconds()/s7.Seconds(), 100*mc.Seconds()/s8.Seconds())
}
