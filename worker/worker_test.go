package worker_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/picluster/picluster/internal/membus"
	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
	"github.com/picluster/picluster/worker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newWorker(t *testing.T, bus worker.Bus, cfg worker.Config) *worker.Worker {
	t.Helper()
	cfg.Logger = quiet
	w, err := worker.New(bus, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func latest(t *testing.T, bus *membus.Bus, id string) wire.Report {
	t.Helper()
	b, _ := bus.Latest(t.Context(), id)
	r, err := wire.Decode(b)
	if err != nil {
		t.Fatalf("latest report of %s: %v (%s)", id, err, b)
	}
	return r
}

// A worker's reports are replayable: each batch's hits are those of
// mcpi.Batch for its key, whatever the thread count.
func TestReportsAreReplayable(t *testing.T) {
	for _, threads := range []int{1, 2, 5} {
		bus := membus.New()
		seed := uint64(99)
		w := newWorker(t, bus, worker.Config{ID: "w", Seed: &seed, Threads: threads, Batch: 100_003, MaxBatches: 3})
		if err := w.Run(t.Context()); err != nil {
			t.Fatal(err)
		}
		r := latest(t, bus, "w")
		var want uint64
		for seq := uint64(1); seq <= 3; seq++ {
			want += mcpi.Batch{Key: mcpi.Key{Seed: seed, Worker: "w", Seq: seq}, N: 100_003}.Hits(mcpi.Generic)
		}
		if r.Seq != 3 || r.TotalN != 300_009 || r.TotalHits != want || r.Seed != "0000000000000063" {
			t.Errorf("threads %d: latest %+v, want seq 3, total_n 300009, total_hits %d", threads, r, want)
		}
	}
}

func TestResumesUnderTheSameID(t *testing.T) {
	bus := membus.New()
	for range 2 {
		w := newWorker(t, bus, worker.Config{ID: "same", Batch: 1000, MaxBatches: 2})
		if err := w.Run(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if r := latest(t, bus, "same"); r.Seq != 4 || r.TotalN != 4000 {
		t.Errorf("after two runs of 2 batches: seq %d total_n %d, want 4 and 4000", r.Seq, r.TotalN)
	}
}

// A worker whose recorded totals have no hits (total_hits 0, which the
// encoder once left out) resumes from them.
func TestResumesFromZeroHits(t *testing.T) {
	bus := membus.New()
	if err := bus.Publish(t.Context(), "zero", wire.Encode(wire.Report{N: 1, Hits: 0, Worker: "zero", Seq: 5, TotalN: 3, TotalHits: 0})); err != nil {
		t.Fatal(err)
	}
	w := newWorker(t, bus, worker.Config{ID: "zero", Batch: 1000, MaxBatches: 1})
	if err := w.Run(t.Context()); err != nil {
		t.Fatalf("resume from total_hits 0: %v", err)
	}
	if r := latest(t, bus, "zero"); r.Seq != 6 || r.TotalN != 1003 || r.TotalHits != r.Hits {
		t.Errorf("after resuming: %+v, want seq 6, total_n 1003, total_hits = this batch's hits", r)
	}
}

func TestLeavesAtOnceWhenTheJobIsDone(t *testing.T) {
	bus := membus.New()
	_ = bus.SetState(t.Context(), wire.EncodeState(wire.State{Status: wire.Done}))
	w := newWorker(t, bus, worker.Config{ID: "late", Batch: 1000})
	if err := w.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	if b, _ := bus.Latest(t.Context(), "late"); b != nil {
		t.Errorf("a worker of a finished job published %s", b)
	}
}

func TestStopsWhenTheJobIsDoneWhileRunning(t *testing.T) {
	bus := membus.New()
	ctx := t.Context()
	w := newWorker(t, bus, worker.Config{ID: "w", Batch: 1 << 16})
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	for b, _ := bus.Latest(ctx, "w"); b == nil; b, _ = bus.Latest(ctx, "w") {
		time.Sleep(time.Millisecond) // wait until the worker has reported once
	}
	_ = bus.SetState(ctx, wire.EncodeState(wire.State{Status: wire.Done}))
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("worker did not leave after the job was done")
	}
}

// Cancelling flushes the last completed batch: nothing sampled and finished
// is lost, and no half batch is reported.
func TestCancelFlushesTheLastReport(t *testing.T) {
	bus := membus.New()
	ctx, cancel := context.WithCancel(t.Context())
	w := newWorker(t, bus, worker.Config{ID: "w", Batch: 1 << 16})
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	for b, _ := bus.Latest(ctx, "w"); b == nil; b, _ = bus.Latest(ctx, "w") {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	r := latest(t, bus, "w")
	if r.TotalN != r.Seq<<16 {
		t.Errorf("seq %d total_n %d: totals are not whole batches", r.Seq, r.TotalN)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []worker.Config{{Threads: -1}, {BatchTime: -1}, {Duration: -1}, {ID: string(make([]byte, 200))}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
