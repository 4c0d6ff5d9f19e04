package collector_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/internal/membus"
	"github.com/picluster/picluster/internal/wire"
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
		seed := base + i
		col := newCollector(t, bus, collector.Config{Seed: &seed})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- col.Run(ctx) }()
		waitFor(t, func() bool { b, _ := bus.State(ctx); return b != nil })
		w, err := worker.New(bus, worker.Config{ID: "w", Threads: 1, Batch: 4099, MaxBatches: 4, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Run(t.Context()); err != nil {
			t.Fatal(err)
		}
		cancel() // Run reads the ledger once more before it returns
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

// statsJob is the job the statistical tests credit entries for.
var statsJob = wire.State{Status: wire.Running, Job: "00000000000000a1", Seed: "00000000000000b2", MaxN: wire.MaxEntryN}

// cluster credits a collector (not running: nothing is replayed) the
// entries of test-double workers, each drawing batches of n samples with
// hits from the binomial's normal approximation; bias adds to one worker's
// estimate.
func cluster(t *testing.T, r *rand.Rand, workers, batches int, n uint64, bias float64) collector.Summary {
	t.Helper()
	c := newCollector(t, membus.New(), collector.Config{})
	c.SetJob(statsJob)
	for seq := 1; seq <= batches; seq++ {
		for w := range workers {
			h := honest(r, n)
			if w == 0 {
				h += uint64(math.Round(float64(n) * bias / 4))
			}
			e := wire.Entry{Job: statsJob.Job, Seed: statsJob.Seed, Worker: fmt.Sprint("w", w), Seq: uint64(seq), N: n, Hits: h, Kernel: "go"}
			c.Credit(wire.LedgerEntry{Worker: e.Worker, ID: fmt.Sprintf("%d-%d", seq, w), Payload: wire.EncodeEntry(e)})
		}
	}
	return c.Summary()
}

// Over 20 jobs of fixed seeds, the worker biased by 10⁻³ is flagged in
// each. The others are flagged seldom: compared with the rest, the biased
// worker included, they stand about 1.4 SE low, so one of seven passes
// 4.2 SE in about 2 % of jobs.
func TestFlagsABiasedWorker(t *testing.T) {
	const jobs, seed0 = 20, 0xf1a90000
	t.Logf("seeds %#x + 0 … %d", seed0, jobs-1)
	others := 0
	for j := range uint64(jobs) {
		r := rand.New(rand.NewPCG(seed0+j, 0))
		s := cluster(t, r, 8, 10, 30_000_000, 1e-3)
		if !slices.Contains(s.Flagged, "w0") {
			t.Fatalf("seed %#x: flagged %v, not w0; table %+v", seed0+j, s.Flagged, s.WorkerTable)
		}
		others += len(s.Flagged) - 1
		if float64(s.Checks.Chi2P) > 1e-6 {
			t.Errorf("seed %#x: χ² p = %v with a biased worker", seed0+j, s.Checks.Chi2P)
		}
	}
	t.Logf("honest workers flagged: %d in %d jobs", others, jobs)
	if others > 2 {
		t.Errorf("%d honest workers flagged in %d jobs, want at most 2 (about 0.4 expected)", others, jobs)
	}
}

func TestHonestClusterIsNotFlagged(t *testing.T) {
	const seed = 0x0f1a9000
	t.Logf("seed %#x", seed)
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
