package collector_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/internal/membus"
	"github.com/picluster/picluster/mcpi"
	"github.com/picluster/picluster/worker"
)

// TestCoverage runs 2000 independent small jobs, each a real worker and
// collector over the in-memory bus, and checks that the 95 % interval covers
// π in 95 ± 1.5 % of them and that the standardised errors (π̂ − π)/SE have
// variance 1 ± 0.15.
func TestCoverage(t *testing.T) {
	const jobs = 2000
	base := uint64(20261121)
	t.Logf("seeds %d … %d", base, base+jobs-1)
	var covered int
	var sumZ2 float64
	for i := range uint64(jobs) {
		bus := membus.New()
		col := newCollector(t, bus, collector.Config{})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- col.Run(ctx) }()
		seed := base + i
		w, err := worker.New(bus, worker.Config{ID: "w", Seed: &seed, Threads: 1, Batch: 4099, MaxBatches: 4, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Run(t.Context()); err != nil {
			t.Fatal(err)
		}
		cancel() // Run reads the totals once more before it returns
		<-done
		s := col.Summary()
		if s.N != mcpi.CountOf(4*4099) {
			t.Fatalf("job %d: N = %v", i, s.N)
		}
		if float64(s.CI95[0]) <= math.Pi && math.Pi <= float64(s.CI95[1]) {
			covered++
		}
		z := (float64(s.Pi) - math.Pi) / float64(s.StdErr)
		sumZ2 += z * z
	}
	coverage, variance := float64(covered)/jobs, sumZ2/jobs
	t.Logf("coverage %.4f, variance of z %.4f", coverage, variance)
	if math.Abs(coverage-0.95) > 0.015 {
		t.Errorf("the 95 %% interval covers π in %.2f %% of %d jobs", 100*coverage, jobs)
	}
	if math.Abs(variance-1) > 0.15 {
		t.Errorf("standardised errors have variance %.3f", variance)
	}
}

// honest returns the hits of n samples of a correct sampler, drawn from the
// normal approximation of the binomial.
func honest(r *rand.Rand, n uint64) uint64 {
	p := math.Pi / 4
	return uint64(math.Round(float64(n)*p + math.Sqrt(float64(n)*p*(1-p))*r.NormFloat64()))
}

// cluster feeds a collector the reports of workers test doubles, each
// reporting batches of n samples; bias adds to one worker's estimate.
func cluster(t *testing.T, r *rand.Rand, workers, batches int, n uint64, bias float64) collector.Summary {
	t.Helper()
	c := newCollector(t, membus.New(), collector.Config{})
	totals := make([][2]uint64, workers)
	for seq := 1; seq <= batches; seq++ {
		for w := range workers {
			h := honest(r, n)
			if w == 0 {
				h += uint64(math.Round(float64(n) * bias / 4))
			}
			totals[w][0] += n
			totals[w][1] += h
			c.Handle(report(fmt.Sprint("w", w), uint64(seq), n, h, totals[w][0], totals[w][1]))
		}
	}
	return c.Summary()
}

func TestFlagsABiasedWorker(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	s := cluster(t, r, 8, 10, 30_000_000, 1e-3)
	if len(s.Flagged) != 1 || s.Flagged[0] != "w0" {
		t.Fatalf("flagged %v, want [w0]; table %+v", s.Flagged, s.WorkerTable)
	}
	if float64(s.Checks.Chi2P) > 1e-6 {
		t.Errorf("χ² p = %v with a biased worker", s.Checks.Chi2P)
	}
}

func TestHonestClusterIsNotFlagged(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	var ratios float64
	for run := range 100 {
		s := cluster(t, r, 8, 10, 30_000_000, 0)
		if len(s.Flagged) != 0 {
			t.Fatalf("run %d: honest workers flagged: %v (χ² p = %v)", run, s.Flagged, s.Checks.Chi2P)
		}
		ratios += float64(s.Checks.DispersionRatio)
	}
	// The scatter of the 80 chunks of each run agrees with the binomial SE.
	if mean := ratios / 100; math.Abs(mean-1) > 0.05 {
		t.Errorf("mean dispersion/binomial SE ratio %.3f, want 1 ± 0.05", mean)
	}
}
