package worker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/picluster/picluster/internal/membus"
	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
	"github.com/picluster/picluster/worker"
)

func TestStats(t *testing.T) {
	bus := newBus(t)
	cfg := worker.Config{ID: "s", Threads: 2, Batch: 100_003, MaxBatches: 3, Kernel: mcpi.Generic}
	w := newWorker(t, bus, cfg)
	if got := w.Stats(); got.State != "starting" || got.Batches != 0 || got.ID != "s" || got.Kernel != "go" || got.Threads != 2 {
		t.Errorf("before Run: %+v, want state starting, no batches, id s, kernel go, 2 threads", got)
	}
	if err := w.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := w.Stats()
	if got.State != "stopped" || got.Samples != 300_009 || got.Batches != 3 || got.Seq != 3 ||
		got.PublishedSeq != 3 || got.QueueDepth != 0 || got.Published == 0 || got.PublishErrors != 0 ||
		got.SamplesPerS <= 0 || got.PublishLag <= 0 {
		t.Errorf("after 3 batches: %+v, want stopped, 300009 samples, 3 batches, seq 3 all published, a rate and a lag", got)
	}

	// A worker resumed from its totals counts this run's batches only.
	w = newWorker(t, bus, cfg)
	if err := w.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := w.Stats(); got.Samples != 300_009 || got.Batches != 3 || got.Seq != 6 || got.PublishedSeq != 6 || got.QueueDepth != 0 {
		t.Errorf("resumed at seq 3: %+v, want 300009 samples in 3 batches, seq 6 published", got)
	}
}

// refusingBus refuses every report, as an unreachable Redis would.
type refusingBus struct{ *membus.Bus }

func (refusingBus) Append(context.Context, string, []wire.Signed) error {
	return errors.New("connection refused")
}

func TestStatsQueueGrowsWhileTheBusRefuses(t *testing.T) {
	w := newWorker(t, refusingBus{newBus(t)}, worker.Config{ID: "q", Threads: 1, Batch: 100_003,
		MaxBatches: 4, FlushTimeout: 50 * time.Millisecond})
	if err := w.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := w.Stats(); got.Seq != 4 || got.PublishedSeq != 0 || got.QueueDepth != 4 || got.Published != 0 || got.PublishErrors == 0 {
		t.Errorf("bus refusing: %+v, want seq 4, none published, queue depth 4, publish errors", got)
	}
}
