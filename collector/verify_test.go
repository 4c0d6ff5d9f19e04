package collector_test

import (
	"context"
	"flag"
	"fmt"
	"math"
	"testing"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/internal/membus"
	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

var verifySeed = flag.Uint64("verify.seed", 0, "replay one run of TestDetection with this verify seed")

// TestDetection measures how many of its entries a worker that fakes every
// batch (plausibly: its hits are off by one, so no z-score gives it away)
// gets credited before replay catches it. With every entry of one size each
// is chosen with probability f, so the first caught has seq ~ Geometric(f),
// of mean 1/f. 300 runs with fixed, logged seeds (-verify.seed replays one).
func TestDetection(t *testing.T) {
	const f, runs, entries = 0.05, 300, 400
	seeds := make([]uint64, 0, runs)
	if *verifySeed != 0 {
		seeds = append(seeds, *verifySeed)
	} else {
		for i := range uint64(runs) {
			seeds = append(seeds, 20261121+i)
		}
	}
	t.Logf("verify seeds %d … %d, f = %v", seeds[0], seeds[len(seeds)-1], f)
	var sum, sum2 float64
	for _, seed := range seeds {
		bus := membus.New()
		c := newCollector(t, bus, collector.Config{VerifyFraction: f, VerifySeed: seed, Name: fmt.Sprint("run", seed)})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		var st wire.State
		waitFor(t, func() bool { b, _ := bus.State(ctx); st, _ = wire.DecodeState(b); return st.Job != "" })
		appendEntries(t, bus, nil, entry(st, "honest", 1, 1024, 0)) // the first entry of a job is always replayed
		var es []wire.Entry
		for seq := uint64(1); seq <= entries; seq++ {
			es = append(es, entry(st, "faker", seq, 1024, 1))
		}
		appendEntries(t, bus, nil, es...)
		waitFor(t, func() bool { return len(c.Summary().Quarantined) == 1 })
		cancel()
		<-done
		q := c.Summary().Quarantined[0]
		if q.Worker != "faker" || q.Want+1 != q.Got {
			t.Fatalf("seed %d: quarantined %+v", seed, q)
		}
		k := float64(q.Seq)
		sum, sum2 = sum+k, sum2+k*k
	}
	n := float64(len(seeds))
	mean := sum / n
	sd := math.Sqrt((sum2/n - mean*mean) / n)
	t.Logf("a worker faking every batch was caught at its entry %.1f ± %.1f on average (expected 1/f = %.0f)", mean, sd, 1/f)
	if len(seeds) == runs && math.Abs(mean-1/f) > 4*math.Sqrt(1-f)/f/math.Sqrt(n) {
		t.Errorf("mean entries before detection %.2f, want %.0f ± %.1f", mean, 1/f, 4*math.Sqrt(1-f)/f/math.Sqrt(n))
	}
}

// TestVerificationCost measures the share of the samples replayed on an
// honest job with entries of one size and of unequal sizes, against the
// fraction asked for and the documented f·E[n²]/E[n]².
func TestVerificationCost(t *testing.T) {
	const f = 0.02
	for _, tt := range []struct {
		name  string
		sizes []uint64
	}{
		{"equal", []uint64{4096}},
		{"unequal", []uint64{1024, 4096, 16384}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bus := membus.New()
			jobSeed := uint64(20261121) // the entries' hits too are fixed: the test is replayable
			c := newCollector(t, bus, collector.Config{VerifyFraction: f, VerifySeed: 7, Seed: &jobSeed})
			st, _ := started(t, c, bus)
			var es []wire.Entry
			var s1, s2 float64
			for seq := uint64(1); seq <= 300; seq++ { // the workers take turns, as in a real job
				for w := range 10 {
					n := tt.sizes[w%len(tt.sizes)]
					es = append(es, entry(st, fmt.Sprint("w", w), seq, n, 0))
					s1, s2 = s1+float64(n), s2+float64(n)*float64(n)
				}
			}
			appendEntries(t, bus, nil, es...)
			waitFor(t, func() bool { s := c.Summary(); return s.N == mcpi.CountOf(uint64(s1)) && s.Verification.PendingN == 0 })
			v := c.Summary().Verification
			want := f * s2 * float64(len(es)) / (s1 * s1)
			t.Logf("%s sizes: replayed %d of %d entries, %.4f of the samples (f = %v, expected %.4f)", tt.name, v.Verified, len(es), float64(v.Cost), f, want)
			if v.Failed != 0 || math.Abs(float64(v.Cost)-want) > 0.35*want {
				t.Errorf("cost %v, want %.4f ± 35 %%; %d failed", v.Cost, want, v.Failed)
			}
		})
	}
}
