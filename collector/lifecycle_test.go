package collector_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/internal/membus"
	"github.com/picluster/picluster/internal/redisbus"
	"github.com/picluster/picluster/internal/redistest"
	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/worker"
)

// On a real Redis, Run at the target leaves nothing behind: no
// subscription goroutine, no connection (goleak checks right after Close).
func TestRunAtTargetLeavesNothingRunning(t *testing.T) {
	srv := redistest.Start(t)
	bus, err := redisbus.Open(srv.URL(), "leak", redisbus.Options{Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	c := newCollector(t, bus, collector.Config{TargetSE: 1e-3, MinSamples: 1, FinalGrace: time.Second})
	w, err := worker.New(bus, worker.Config{ID: "w", Threads: 1, Batch: 1 << 20, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	if err := w.Run(context.Background()); err != nil { // until the job is done
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s := c.Summary(); s.StoppedBy != "target" || s.Stale != "" {
		t.Fatalf("stopped by %q, stale %q", s.StoppedBy, s.Stale)
	}
	bus.Close()
	goleak.VerifyNone(t)
}

// deadAfterCancel is a bus whose ledger stops answering once told to: a
// frozen connection at the final read.
type deadAfterCancel struct {
	*membus.Bus
	dead atomic.Bool
}

var errFrozen = errors.New("i/o timeout")

func (d *deadAfterCancel) ReadLedgers(ctx context.Context, from []wire.Cursor, count int) ([]wire.LedgerEntry, error) {
	if d.dead.Load() {
		return nil, errFrozen
	}
	return d.Bus.ReadLedgers(ctx, from, count)
}

func (d *deadAfterCancel) ScanLedgers(ctx context.Context, cursor uint64) ([]string, uint64, error) {
	if d.dead.Load() {
		return nil, 0, errFrozen
	}
	return d.Bus.ScanLedgers(ctx, cursor)
}

// A final read that fails is never silent: Run's error wraps ErrStale and
// the Summary says why.
func TestStaleFinalSummarySaysSo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bus := &deadAfterCancel{Bus: membus.New()}
		c := newCollector(t, bus, collector.Config{})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		<-c.Loaded()
		bus.dead.Store(true)
		cancel()
		err := <-done
		s := c.Summary()
		if !errors.Is(err, collector.ErrStale) || !errors.Is(err, errFrozen) || s.Stale == "" || s.StoppedBy != "signal" {
			t.Fatalf("Run = %v, stale %q, stopped by %q: want ErrStale and a stale summary", err, s.Stale, s.StoppedBy)
		}
	})
}

// heldAppends is a worker's bus whose appends the test can hold: hold
// waits for the append in flight, if any, and stops the next ones until
// release. It records the last seq appended.
type heldAppends struct {
	worker.Bus
	token chan struct{} // whoever has it may append
	last  atomic.Uint64
}

func newHeldAppends(bus worker.Bus) *heldAppends {
	h := &heldAppends{Bus: bus, token: make(chan struct{}, 1)}
	h.token <- struct{}{}
	return h
}

func (h *heldAppends) Append(ctx context.Context, id string, entries []wire.Signed) error {
	select {
	case <-h.token:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { h.token <- struct{}{} }()
	err := h.Bus.Append(ctx, id, entries)
	if err == nil && len(entries) > 0 {
		if e, derr := wire.DecodeEntry(entries[len(entries)-1].Payload); derr == nil {
			h.last.Store(e.Seq)
		}
	}
	return err
}

func (h *heldAppends) hold()    { <-h.token }
func (h *heldAppends) release() { h.token <- struct{}{} }

// credited returns the seq the collector has credited to worker id.
func credited(c *collector.Collector, id string) uint64 {
	for _, w := range c.Summary().WorkerTable {
		if w.ID == id {
			return w.Seq
		}
	}
	return 0
}

// After Redis loses its data (a restart without persistence) the running
// collector writes the job and its whole checkpoint again, the workers
// sample on, and a collector started afterwards converges on the same N.
//
// The worker's appends are held over the loss, from the moment the
// collector has credited all of them: an entry lost uncredited is a gap,
// and under load the worker (tiny entries, thousands a second) outran the
// collector by more than MaxGaps entries at the loss, so that it was
// quarantined and the test waited for credits in vain. What a loss of
// uncredited entries costs is TestMultiHostRedisLosesItsData's subject.
func TestConvergesAfterRedisLosesItsData(t *testing.T) {
	srv := redistest.Start(t)
	open := func() *redisbus.Bus {
		b, err := redisbus.Open(srv.URL(), "wipe", redisbus.Options{Log: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
	bus1, wbus, probe := open(), open(), open()
	cfg := collector.Config{CheckpointEvery: 50 * time.Millisecond, VerifyFraction: 1e-9, Name: "first"}
	c1 := newCollector(t, bus1, cfg)
	ctx1, stop1 := context.WithCancel(context.Background())
	done1 := make(chan error, 1)
	go func() { done1 <- c1.Run(ctx1) }()
	<-c1.Loaded()
	held := newHeldAppends(wbus)
	w, err := worker.New(held, worker.Config{ID: "w", Threads: 1, Batch: 1 << 16, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWorker := context.WithCancel(context.Background())
	wdone := make(chan error, 1)
	go func() { wdone <- w.Run(wctx) }()
	t.Cleanup(stopWorker)
	waitFor(t, func() bool { return c1.Summary().Batches >= 5 })

	held.hold()
	waitFor(t, func() bool { return credited(c1, "w") >= held.last.Load() })
	srv.Restart() // empty: no persistence
	waitFor(t, func() bool { b, _ := probe.State(context.Background()); return b != nil })
	after := c1.Summary().Batches
	held.release()
	waitFor(t, func() bool { return c1.Summary().Batches >= after+5 }) // the worker sampled on
	select {
	case err := <-wdone:
		t.Fatalf("the worker stopped at the loss: %v", err)
	default:
	}
	stopWorker()
	if err := <-wdone; err != nil {
		t.Fatal(err)
	}

	cfg.Name = "second"
	c2 := newCollector(t, open(), cfg)
	ctx2, stop2 := context.WithCancel(context.Background())
	done2 := make(chan error, 1)
	go func() { done2 <- c2.Run(ctx2) }()
	<-c2.Loaded()
	waitFor(t, func() bool {
		s1, s2 := c1.Summary(), c2.Summary()
		return s1.Job == s2.Job && s1.N == s2.N && s1.Hits == s2.Hits
	})
	t.Logf("both collectors: job %s, N %v", c1.Summary().Job, c1.Summary().N)
	stop1()
	stop2()
	<-done1
	<-done2
}
