package collector

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

// stratJob runs one stratified job of K×K cells on a collector that does
// not Run: worker "w" appends real batches (mcpi, the fastest kernel) drawn
// from seed, and the collector credits them until its target rule says done
// (targetSE > 0) or until maxB batches. It returns the summary at the end.
func stratJob(t *testing.T, seed, cells uint64, targetSE float64, maxB uint64) Summary {
	t.Helper()
	c, err := New(nil, Config{Estimator: mcpi.Stratified, Cells: cells, TargetSE: targetSE, MinSamples: 1,
		VerifyFraction: 1e-9, MaxUnverified: 1, VerifySeed: 1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	c.job = c.newJob()
	c.job.Seed = wire.FormatSeed(seed)
	n := cells * cells
	for seq := uint64(1); seq <= maxB; seq++ {
		h := mcpi.Batch{Key: mcpi.Key{Seed: seed, Worker: "w", Seq: seq}, N: n, Cells: cells}.Hits(mcpi.Pick())
		e := wire.Entry{Job: c.job.Job, Worker: "w", Seq: seq, N: n, Hits: h, Seed: c.job.Seed, Kernel: "avx512", Cells: cells}
		c.creditAll(context.Background(), []wire.LedgerEntry{{Worker: "w", ID: fmt.Sprintf("%d-0", seq), Payload: wire.EncodeEntry(e)}})
		if targetSE > 0 && c.targetReached() {
			break
		}
	}
	return c.Summary()
}

// TestStratifiedCalibration runs 400 independent stratified jobs of K = 2⁷
// (n = 16384) with fixed seeds 0xca1b0000 + j, each until the collector's
// own target rule stops it (SE ≤ 1.8e-4, about 60 batches, never fewer than
// MinReplicates), and checks that the 95 % t-interval covers π in 92.5 … 97.5 %
// of them and that the variance of (π̂ − π)/SE is within 0.8 … 1.2. It logs
// the same figures for jobs stopped at exactly MinReplicates batches. Replay
// job J, logged: go test ./collector -run StratifiedCalibration -calib.job J -v
func TestStratifiedCalibration(t *testing.T) {
	if testing.Short() {
		t.Skip("400 jobs, 20 s: not in -short")
	}
	const jobs, cells, target = 400, 128, 1.8e-4
	if *calibJob >= 0 {
		s := stratJob(t, 0xca1b0000+uint64(*calibJob), cells, target, 1<<20)
		t.Logf("job %d: seed %#x worker w K %d: B %d π̂ %.7f ± %.3g, 95%% t [%.7f, %.7f]", *calibJob, 0xca1b0000+*calibJob, cells,
			s.Stratified.Batches, float64(s.Pi), float64(s.StdErr), float64(s.CI95[0]), float64(s.CI95[1]))
		return
	}
	for _, rule := range []struct {
		name   string
		target float64
		maxB   uint64
	}{
		{"target", target, 1 << 20},
		{"fixed", 0, MinReplicates},
	} {
		var covered, batches int
		var zz float64
		for j := range jobs {
			s := stratJob(t, 0xca1b0000+uint64(j), cells, rule.target, rule.maxB)
			if lo, hi := float64(s.CI95[0]), float64(s.CI95[1]); lo <= math.Pi && math.Pi <= hi {
				covered++
			}
			z := (float64(s.Pi) - math.Pi) / float64(s.StdErr)
			zz += z * z
			batches += int(s.Stratified.Batches)
		}
		cover, vz := float64(covered)/jobs, zz/jobs
		t.Logf("%s rule: %d jobs of K=%d, seeds %#x + j, mean B %.1f: 95%% t-interval covers π in %.1f%%, Var((π̂−π)/SE) = %.3f",
			rule.name, jobs, cells, 0xca1b0000, float64(batches)/jobs, 100*cover, vz)
		if cover < 0.925 || cover > 0.975 {
			t.Errorf("%s rule: coverage %.1f%%, want 92.5 … 97.5 %%", rule.name, 100*cover)
		}
		if vz < 0.8 || vz > 1.2 {
			t.Errorf("%s rule: Var((π̂−π)/SE) = %.3f, want 0.8 … 1.2", rule.name, vz)
		}
	}
	// For reference: a t variable on ν degrees of freedom has variance ν/(ν − 2).
	nu := float64(MinReplicates - 1)
	t.Logf("Var of t(%g) = %.3f; its 0.975 quantile %.3f vs the normal's 1.960", nu, nu/(nu-2), distuv.StudentsT{Mu: 0, Sigma: 1, Nu: nu}.Quantile(0.975))
}
