package collector_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/internal/faultbus"
	"github.com/picluster/picluster/internal/membus"
	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

var verifySeed = flag.Uint64("verify.seed", 0, "replay one run of TestDetection with this verify seed")

// TestDetection measures how many of its entries a worker that fakes every
// batch (plausibly: its hits are off by one, so no z-score gives it away)
// gets credited before replay catches it, in a pool of honest work that it
// joins with a small share. The first faked entry chosen has the index of
// the first success of the per-entry chances, whose mean the test computes
// from the rule (about 1/f here, where the share term is below f). 200 runs
// with fixed, logged seeds (-verify.seed replays one).
func TestDetection(t *testing.T) {
	const f, runs, honest, fakes, n = 0.05, 200, 1200, 300, 1024
	seeds := make([]uint64, 0, runs)
	if *verifySeed != 0 {
		seeds = append(seeds, *verifySeed)
	} else {
		for i := range uint64(runs) {
			seeds = append(seeds, 20261121+i)
		}
	}
	// The expected index of the first faked entry chosen.
	var want, escape float64
	s1, count := float64(honest*n), float64(honest)
	escape = 1
	const pz = 0.0026998 // P(|z| > 3): an honest-looking entry is also replayed for its z
	for k := range fakes {
		p := 1 - (1-collector.Chance(f, n, s1, count, s1+n, false))*(1-pz)
		want += float64(k+1) * escape * p
		escape *= 1 - p
		s1, count = s1+2*n, count+2 // the faker's entry, then an honest one
	}
	t.Logf("verify seeds %d … %d, f = %v; expected mean %.2f (P(not caught in %d) = %.1e)", seeds[0], seeds[len(seeds)-1], f, want, fakes, escape)
	var sum, sum2 float64
	for _, seed := range seeds {
		bus := membus.New()
		job := seed // a job of its own: the hits, and so the entries chosen for their z, differ from run to run
		c := newCollector(t, bus, collector.Config{VerifyFraction: f, VerifySeed: seed, Seed: &job, Name: fmt.Sprint("run", seed)})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		var st wire.State
		waitFor(t, func() bool { b, _ := bus.State(ctx); st, _ = wire.DecodeState(b); return st.Job != "" })
		var es []wire.Entry
		for seq := uint64(1); seq <= honest; seq++ {
			es = append(es, entry(st, "honest", seq, n, 0))
		}
		for seq := uint64(1); seq <= fakes; seq++ {
			es = append(es, entry(st, "faker", seq, n, 1), entry(st, "honest", honest+seq, n, 0))
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
	m := float64(len(seeds))
	mean := sum / m
	sd := math.Sqrt((sum2/m - mean*mean) / m)
	t.Logf("a worker faking every batch was caught at its entry %.1f ± %.1f on average (expected %.1f)", mean, sd, want)
	if len(seeds) == runs && math.Abs(mean-want) > 4*sd {
		t.Errorf("mean entries before detection %.2f ± %.2f, want %.2f", mean, sd, want)
	}
}

// TestVerificationCost measures the share of the samples replayed on an
// honest job with entries of one size and of unequal sizes, against what
// the rule predicts for the same sequence of entries: the lot (f·E[n²]/E[n]²)
// and the share term (K·(1 + ln(B/K)) entries).
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
			jobSeed := uint64(20261121) // the job's seed: the hits, and so the entries chosen for their z, are the same every run
			c := newCollector(t, bus, collector.Config{VerifyFraction: f, VerifySeed: 7, Seed: &jobSeed})
			st, _ := started(t, c, bus)
			var s1, count, expected float64
			entries := 0
			for seq := uint64(1); seq <= 300; seq++ { // the workers take turns, as in a real job
				for w := range 10 {
					n := tt.sizes[w%len(tt.sizes)]
					// One at a time, each credited before the next: the
					// chance depends on the order of crediting.
					appendEntries(t, bus, nil, entry(st, fmt.Sprint("w", w), seq, n, 0))
					expected += float64(n) * collector.Chance(f, float64(n), s1, count, s1+float64(n), false)
					s1, count = s1+float64(n), count+1
					entries++
					waitFor(t, func() bool { return c.Credited() == uint64(entries) })
				}
			}
			waitFor(t, func() bool { s := c.Summary(); return s.N == mcpi.CountOf(uint64(s1)) && s.Verification.PendingN == 0 })
			v := c.Summary().Verification
			// By the rule's chances; besides, those with an improbable z
			// are replayed for sure.
			want := expected / s1
			extra := float64(v.Forced) * float64(slices.Max(tt.sizes)) / s1
			t.Logf("%s sizes: replayed %d of %d entries (%d for their z), %.4f of the samples (f = %v, expected %.4f + at most %.4f)",
				tt.name, v.Verified, entries, v.Forced, float64(v.Cost), f, want, extra)
			if cost := float64(v.Cost); v.Failed != 0 || cost < 0.65*want || cost > 1.35*want+extra {
				t.Errorf("cost %v, want %.4f ± 35 %% (+ %.4f); %d failed", v.Cost, want, extra, v.Failed)
			}
		})
	}
}

// A worker that arrives after honest work with the largest entries and
// hits faked just under every z alarm (the reviewer's attack: it ended a job
// "by target" 6–9 SE off when the choice was by entry size alone) is
// replayed in proportion to its share of the pool, and caught.
func TestDominantFakerIsCaught(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 4, 5} {
		bus := membus.New()
		key := []byte("a job key of 16+ bytes") // secure mode, where checks follow influence
		c := newCollector(t, bus, collector.Config{VerifySeed: seed, Name: fmt.Sprint("s", seed), Key: key})
		st, _ := started(t, c, bus)
		for seq := uint64(1); seq <= 3; seq++ {
			appendEntries(t, bus, key, entry(st, "honest", seq, 1<<14, 0))
		}
		// 10 entries each 4× an honest one, every one 2σ high: the
		// worker's z against the rest stays under 3 for a while.
		n := uint64(1 << 16)
		sd := math.Sqrt(float64(n) * math.Pi / 4 * (1 - math.Pi/4))
		var es []wire.Entry
		for seq := uint64(1); seq <= 10; seq++ {
			es = append(es, entry(st, "dominant", seq, n, int64(2*sd)))
		}
		appendEntries(t, bus, key, es...)
		waitFor(t, func() bool {
			s := c.Summary()
			return s.Batches+uint64(s.RejectedBy["quarantined"]) >= 3 && s.Verification.PendingN == 0
		})
		waitFor(t, func() bool { return len(c.Summary().Quarantined) == 1 })
		if q := c.Summary().Quarantined[0]; q.Worker != "dominant" {
			t.Errorf("verify seed %d: quarantined %+v", seed, q)
		}
	}
}

// A worker that skips seqs (dropping its unlucky batches; each entry it
// keeps replays exactly) gains nothing: the collector draws the skipped
// seqs and credits them, so the pool is what every batch up to its last
// entry gives, and it is not quarantined.
func TestSkippedSeqsAreDrawn(t *testing.T) {
	bus := membus.New()
	c := newCollector(t, bus, collector.Config{VerifyFraction: 1e-9})
	st, _ := started(t, c, bus)
	var es []wire.Entry
	var want wire.Credit
	const last = 88 // seqs 1, 4, …, 88: 30 entries, 58 seqs skipped
	for seq := uint64(1); seq <= last; seq++ {
		e := entry(st, "picky", seq, 100, 0)
		want.TotalN += e.N
		want.TotalHits += e.Hits
		if seq%3 == 1 {
			es = append(es, e)
		}
	}
	appendEntries(t, bus, nil, append(es, entry(st, "honest", 1, 100, 0), entry(st, "honest", 2, 100, 0))...)
	honest := entry(st, "honest", 1, 100, 0).Hits + entry(st, "honest", 2, 100, 0).Hits
	waitFor(t, func() bool { w, ok := c.Snapshot().Worker("picky"); return ok && w.Seq == last })
	s := c.Summary()
	if len(s.Quarantined) != 0 || s.Gaps != last-30 || s.N != mcpi.CountOf(want.TotalN+200) || s.Hits != mcpi.CountOf(want.TotalHits+honest) {
		t.Errorf("quarantined %v, gaps %d, N %v hits %v; want none, %d, and every batch of picky's: N %d hits %d",
			s.Quarantined, s.Gaps, s.N, s.Hits, last-30, want.TotalN+200, want.TotalHits+honest)
	}
}

// A seq far past a worker's last is refused by name, and nothing else
// happens: its owner goes on and is not quarantined. So is a gap past what
// the collector draws for one worker by then (MaxGaps and one in eight of
// its seqs).
func TestImplausibleSeq(t *testing.T) {
	bus := membus.New()
	c := newCollector(t, bus, collector.Config{VerifyFraction: 1e-9})
	st, _ := started(t, c, bus)
	const big = 3 + collector.MaxGaps // after seqs 1 … 3, the first budget's worth skipped
	appendEntries(t, bus, nil, entry(st, "w", 1, 100, 0), entry(st, "w", 2, 100, 0),
		entry(st, "w", 1_000_002, 100, 0), // someone's entry in w's stream (open mode), or a bug
		entry(st, "w", 3, 100, 0), entry(st, "w", big, 100, 0),
		entry(st, "w", big+11, 100, 0), // 10 skipped: one more than the budget has left (64 + 67/8 − 63 = 9)
		entry(st, "w", big+10, 100, 0)) // 9 skipped: drawn
	waitFor(t, func() bool { return c.Summary().RejectedBy["implausible_seq"] == 2 })
	waitFor(t, func() bool { w, ok := c.Snapshot().Worker("w"); return ok && w.Seq == big+10 })
	s := c.Summary()
	if len(s.Quarantined) != 0 || s.Gaps != collector.MaxGaps-1+9 || s.Workers != 1 {
		t.Errorf("quarantined %v, gaps %d, workers %d; want none, %d, 1", s.Quarantined, s.Gaps, s.Workers, collector.MaxGaps-1+9)
	}
}

// An honest worker that loses entries again and again over a long job (ten
// of every fifty, 80 in all, more than MaxGaps) is never refused: the
// budget grows with its seqs, and every lost batch is drawn.
func TestGapBudgetGrows(t *testing.T) {
	bus := membus.New()
	c := newCollector(t, bus, collector.Config{VerifyFraction: 1e-9})
	st, _ := started(t, c, bus)
	var es []wire.Entry
	var want mcpi.Tally
	const last = 400
	for seq := uint64(1); seq <= last; seq++ {
		e := entry(st, "w", seq, 100, 0)
		want = want.Add(mcpi.TallyOf(e.N, e.Hits))
		if seq%50 < 40 || seq == last {
			es = append(es, e)
		}
	}
	appendEntries(t, bus, nil, es...)
	waitFor(t, func() bool { w, ok := c.Snapshot().Worker("w"); return ok && w.Seq == last })
	if s := c.Summary(); s.N != want.N || s.Hits != want.Hits || s.Gaps != 80 || s.Rejected != 0 {
		t.Errorf("N %v hits %v gaps %d rejected %v; want every batch's N %v hits %v, 80 gaps, none", s.N, s.Hits, s.Gaps, s.RejectedBy, want.N, want.Hits)
	}
}

// While the collector draws a worker's skipped seqs, the rest of the job
// goes on: other workers are credited, and the waiting stream is not read
// again and again. (The mark stays at the waiting entry, so that no
// collector trims it.)
func TestFillDoesNotFreezeTheLedger(t *testing.T) {
	bus := faultbus.New(membus.New())
	c := newCollector(t, bus, collector.Config{VerifyFraction: 1e-9, SweepEvery: 20 * time.Millisecond})
	st, _ := started(t, c, bus.Bus)
	// 64 seqs of 2²⁴ samples to draw: a second or more on one core.
	es := []wire.Entry{entry(st, "gappy", 1+collector.MaxGaps, 1<<24, 0)}
	for seq := uint64(2 + collector.MaxGaps); seq < 2+collector.MaxGaps+40; seq++ {
		es = append(es, wire.Entry{Job: st.Job, Worker: "gappy", Seq: seq, N: 1 << 24, Hits: 1, Seed: st.Seed, Kernel: "go", Seconds: 1})
	}
	appendEntries(t, bus.Bus, nil, es...)
	waitFor(t, func() bool { return c.Summary().GapsPending == collector.MaxGaps })
	reads := bus.Calls(faultbus.ReadLedge)
	appendEntries(t, bus.Bus, nil, entry(st, "other", 1, 100, 0))
	credited := false // the other worker, while the fill is drawn
	waitFor(t, func() bool {
		s := c.Summary()
		credited = credited || s.GapsPending > 0 && s.Workers == 1
		return credited || s.GapsPending == 0
	})
	if !credited {
		t.Error("the other worker was not credited while the fill was drawn")
	}
	if n := bus.Calls(faultbus.ReadLedge) - reads; n > 200 {
		t.Errorf("%d reads of the ledger while one stream waited for its fill: it is read again and again", n)
	}
}

// A collector stopped while it draws a fill finishes the fill in its final
// read, and credits the entries that waited for it; one started on a
// ledger whose first entry skips seqs loads (the entry waits, the loading
// does not).
func TestFillAtTheEnds(t *testing.T) {
	bus := membus.New()
	first := newCollector(t, bus, collector.Config{VerifyFraction: 1e-9})
	runLoaded(t, first)()
	st := jobState(t, bus)
	// Before the next collector starts: a first entry at seq 3, then a
	// full page and more after it.
	var want mcpi.Tally
	var es []wire.Entry
	for seq := uint64(1); seq <= 3+40; seq++ {
		e := entry(st, "late", seq, 1<<16, 0)
		want = want.Add(mcpi.TallyOf(e.N, e.Hits))
		if seq >= 3 {
			es = append(es, e)
		}
	}
	appendEntries(t, bus, nil, es...)
	c := newCollector(t, bus, collector.Config{VerifyFraction: 1e-9})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-c.Loaded():
	case err := <-done:
		t.Fatalf("Run = %v before the job was loaded", err)
	}
	waitFor(t, func() bool { w, ok := c.Snapshot().Worker("late"); return ok && w.Seq == 43 })
	if s := c.Summary(); s.N != want.N || s.Hits != want.Hits {
		t.Errorf("N %v hits %v, want %v and %v", s.N, s.Hits, want.N, want.Hits)
	}

	// Stopped mid-fill: 64 seqs of 2²² samples, about half a second to draw.
	for seq := uint64(1); seq <= 1+collector.MaxGaps; seq++ { // before the append: each takes as long as a fill's
		e := entry(st, "cut", seq, 1<<22, 0)
		want = want.Add(mcpi.TallyOf(e.N, e.Hits))
	}
	appendEntries(t, bus, nil, entry(st, "cut", 1+collector.MaxGaps, 1<<22, 0))
	waitFor(t, func() bool { return c.Summary().GapsPending > 0 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v", err)
	}
	done <- nil
	if s := c.Summary(); s.N != want.N || s.Hits != want.Hits || s.GapsPending != 0 || s.Stale != "" {
		t.Errorf("after a stop mid-fill: N %v hits %v, %d seqs pending, stale %q; want N %v hits %v, none, not stale", s.N, s.Hits, s.GapsPending, s.Stale, want.N, want.Hits)
	}
}
