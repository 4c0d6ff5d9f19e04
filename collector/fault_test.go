package collector_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/internal/backoff"
	"github.com/picluster/picluster/internal/faultbus"
	"github.com/picluster/picluster/internal/membus"
	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

// loaded runs c on bus in the bubble and returns the job it created and a
// channel with Run's result.
func loaded(t *testing.T, c *collector.Collector, bus *faultbus.Bus, ctx context.Context) (wire.State, <-chan error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	<-c.Loaded()
	b, _ := bus.Bus.State(ctx)
	st, err := wire.DecodeState(b)
	if err != nil {
		t.Fatal(err)
	}
	return st, done
}

// A ledger that fails to answer for a while is read again with backoff, and
// the collector catches up on everything appended meanwhile.
func TestReadRetriesAndCatchesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bus := faultbus.New(membus.New())
		c := newCollector(t, bus, collector.Config{VerifyFraction: 1e-9})
		ctx, cancel := context.WithCancel(t.Context())
		st, done := loaded(t, c, bus, ctx)
		bus.Fail(faultbus.ReadLedge, 5, errors.New("connection reset"))
		var es []wire.Entry
		for seq := uint64(1); seq <= 10; seq++ {
			es = append(es, entry(st, "w", seq, 1000, 0))
		}
		appendEntries(t, bus.Bus, nil, es...)
		time.Sleep(time.Minute) // the backoff runs in virtual time
		if s := c.Summary(); s.N != mcpi.CountOf(10_000) {
			t.Fatalf("N = %v after the ledger came back, want 10000", s.N)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v", err)
		}
	})
}

// A permanent error reading the ledger ends Run with it, stopped by "error".
func TestPermanentReadErrorEndsRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bus := faultbus.New(membus.New())
		c := newCollector(t, bus, collector.Config{})
		_, done := loaded(t, c, bus, t.Context())
		noperm := backoff.Permanent(errors.New("NOPERM this user has no permissions to run the 'xread' command"))
		bus.Fail(faultbus.ReadLedge, -1, noperm)
		if err := <-done; !errors.Is(err, noperm) || c.Summary().StoppedBy != "error" {
			t.Fatalf("Run = %v, stopped by %q; want the NOPERM, error", err, c.Summary().StoppedBy)
		}
	})
}

// At the target the collector waits for the workers' goodbyes, but not for
// ever: a worker that neither says goodbye nor vanishes is waited for
// FinalGrace. An entry appended during the wait is in the final summary.
func TestFinalGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bus := faultbus.New(membus.New())
		c := newCollector(t, bus, collector.Config{TargetSE: 0.02, MinSamples: 1, VerifyFraction: 1e-9, FinalGrace: 30 * time.Second})
		st, done := loaded(t, c, bus, t.Context())
		alive := func() {
			_ = bus.Bus.Heartbeat(t.Context(), "w", wire.EncodePresence(wire.Presence{Worker: "w", Status: wire.Alive, At: time.Now()}))
		}
		appendEntries(t, bus.Bus, nil, entry(st, "w", 1, 1<<14, 0))
		// The target is reached; the worker keeps saying it is alive.
		late := make(chan struct{})
		go func() {
			defer close(late)
			for i := range 40 { // past the grace
				time.Sleep(time.Second)
				alive()
				if i == 5 {
					appendEntries(t, bus.Bus, nil, entry(st, "w", 2, 1<<14, 0)) // in flight at the target
				}
			}
		}()
		start := time.Now()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took < 30*time.Second || took > 31*time.Second {
			t.Errorf("Run returned %v after the target, want the final grace, 30s", took)
		}
		if s := c.Summary(); s.N != mcpi.CountOf(2<<14) || s.StoppedBy != "target" {
			t.Fatalf("N = %v, stopped by %q; want both entries, target", s.N, s.StoppedBy)
		}
		<-late
	})
}

// MinSamples keeps a lucky first entry from ending the job.
func TestMinSamples(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bus := faultbus.New(membus.New())
		c := newCollector(t, bus, collector.Config{TargetSE: 0.5, MinSamples: 1 << 15, VerifyFraction: 1e-9, FinalGrace: time.Second})
		st, done := loaded(t, c, bus, t.Context())
		appendEntries(t, bus.Bus, nil, entry(st, "w", 1, 1<<14, 0))
		synctest.Wait()
		if s := c.Summary(); s.StoppedBy != "" {
			t.Fatalf("stopped by %q below MinSamples", s.StoppedBy)
		}
		appendEntries(t, bus.Bus, nil, entry(st, "w", 2, 1<<14, 0))
		if err := <-done; err != nil || c.Summary().StoppedBy != "target" {
			t.Fatalf("Run = %v, stopped by %q; want the target at MinSamples", err, c.Summary().StoppedBy)
		}
	})
}

// A worker that vanishes (silent for three heartbeats) is not waited for
// to the end of the final grace.
func TestFinalGraceEndsWhenWorkersVanish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bus := faultbus.New(membus.New())
		c := newCollector(t, bus, collector.Config{TargetSE: 0.02, MinSamples: 1, VerifyFraction: 1e-9, FinalGrace: time.Minute})
		st, done := loaded(t, c, bus, t.Context())
		start := time.Now()
		appendEntries(t, bus.Bus, nil, entry(st, "w", 1, 1<<14, 0))
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > 3*wire.HeartbeatInterval+time.Second {
			t.Errorf("Run returned %v after the target, want once the worker vanished (%v)", took, 3*wire.HeartbeatInterval)
		}
	})
}

// A ledger whose every sweep takes longer than FinalSyncTimeout (10⁶
// streams; here each read of the ledger takes 2 s, and a sweep makes two)
// still gets its complete final read: three sweeps' time.
func TestFinalReadOfASlowLedger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bus := faultbus.New(membus.New())
		c := newCollector(t, bus, collector.Config{VerifyFraction: 1e-9})
		ctx, cancel := context.WithCancel(t.Context())
		st, done := loaded(t, c, bus, ctx)
		appendEntries(t, bus.Bus, nil, entry(st, "w", 1, 1000, 0))
		bus.Delay(faultbus.ReadLedge, 2*collector.FinalSyncTimeout/3)
		time.Sleep(time.Minute) // sweeps, each as slow
		appendEntries(t, bus.Bus, nil, entry(st, "w", 2, 1000, 0))
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want context.Canceled after a complete final read", err)
		}
		if s := c.Summary(); s.N != mcpi.CountOf(2000) || s.Stale != "" {
			t.Fatalf("N = %v, stale %q; want both entries, and no stale", s.N, s.Stale)
		}
	})
}

// However slow the sweeps, a final read against a Redis that refuses every
// call ends within a minute, stale.
func TestFinalReadIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bus := faultbus.New(membus.New())
		c := newCollector(t, bus, collector.Config{VerifyFraction: 1e-9})
		ctx, cancel := context.WithCancel(t.Context())
		_, done := loaded(t, c, bus, ctx)
		bus.Delay(faultbus.ReadLedge, 2*time.Minute)
		for c.Snapshot().Sweep < 2*time.Minute {
			time.Sleep(time.Minute)
		}
		bus.Delay(faultbus.ReadLedge, 0)
		bus.Disconnect()
		start := time.Now()
		cancel()
		if err := <-done; !errors.Is(err, collector.ErrStale) {
			t.Fatalf("Run = %v, want ErrStale", err)
		}
		if took := time.Since(start); took > time.Minute+time.Second {
			t.Fatalf("the final read took %v, want at most a minute", took)
		}
	})
}

// With MaxWorkers 2 and seven workers, the first two are credited and keep
// being credited; the rest are refused as too_many_workers. The refusals
// are counted as check and refuse count them: the collector tracks
// 2·MaxWorkers = 4 streams, so two of the five late workers' streams are
// read and each of their entries is rejected by check (the job credits 2
// workers already), while the other three are not read at all and are
// counted once each, however many entries they hold and however many
// sweeps find them. Which two of the five are read depends on the order
// the collector hears of them; the counts do not.
func TestMaxWorkersRefusesTheRest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bus := faultbus.New(membus.New())
		c := newCollector(t, bus, collector.Config{MaxWorkers: 2, VerifyFraction: 1e-9})
		ctx, cancel := context.WithCancel(t.Context())
		st, done := loaded(t, c, bus, ctx)
		const n = 1000
		seq := map[string]uint64{}
		feed := func(k int, workers ...string) {
			for _, w := range workers {
				for range k {
					seq[w]++
					appendEntries(t, bus.Bus, nil, entry(st, w, seq[w], n, 0))
				}
			}
		}
		credited, late := []string{"a", "b"}, []string{"c", "d", "e", "f", "g"}
		feed(3, credited...)
		time.Sleep(5 * time.Second) // sweeps
		feed(3, late...)
		time.Sleep(5 * time.Second)
		feed(2, append(credited, late...)...) // after the refusals
		time.Sleep(time.Minute)               // sixty sweeps more: a refused stream is counted once
		// Rejected: the two late streams read, 3 + 2 entries each, and the
		// three not read, once each: 2·5 + 3 = 13.
		const rejected = 2*(3+2) + 3
		s := c.Summary()
		if got := s.RejectedBy["too_many_workers"]; got != rejected || s.Rejected != rejected {
			t.Errorf("too_many_workers %d of %d rejections (%v); want %d and nothing else", got, s.Rejected, s.RejectedBy, rejected)
		}
		if s.Workers != 2 || s.Batches != 10 || s.N != mcpi.CountOf(10*n) {
			t.Errorf("workers %d batches %d N %v; want a and b with 5 entries each: 2, 10, %d", s.Workers, s.Batches, s.N, 10*n)
		}
		for _, w := range s.WorkerTable {
			if (w.ID != "a" && w.ID != "b") || w.Entries != 5 || w.Seq != 5 {
				t.Errorf("worker %s credited with %d entries up to seq %d; want a and b alone, each 5 up to 5", w.ID, w.Entries, w.Seq)
			}
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v", err)
		}
	})
}
