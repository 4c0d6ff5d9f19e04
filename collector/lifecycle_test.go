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

func (d *deadAfterCancel) ReadLedger(ctx context.Context, after string, count int, block time.Duration) ([]wire.LedgerEntry, error) {
	if d.dead.Load() {
		return nil, errFrozen
	}
	return d.Bus.ReadLedger(ctx, after, count, block)
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
