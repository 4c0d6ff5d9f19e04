package worker_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
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

var testJob = wire.State{Status: wire.Running, Job: "00000000000000a1", Seed: "0000000000000063", MaxN: wire.MaxEntryN}

// newBus returns a bus with a running job, as a collector leaves it.
func newBus(t *testing.T) *membus.Bus {
	bus := membus.New()
	if err := bus.SetState(t.Context(), wire.EncodeState(testJob)); err != nil {
		t.Fatal(err)
	}
	return bus
}

// ledger returns the entries of worker id in the ledger, decoded.
func ledger(t *testing.T, bus *membus.Bus, id string) ([]wire.Entry, []wire.LedgerEntry) {
	t.Helper()
	les := bus.Entries()
	var es []wire.Entry
	var raw []wire.LedgerEntry
	for _, le := range les {
		e, err := wire.DecodeEntry(le.Payload)
		if err != nil {
			t.Fatalf("ledger entry %s: %v", le.Payload, err)
		}
		if e.Worker == id {
			es, raw = append(es, e), append(raw, le)
		}
	}
	return es, raw
}

// contiguous fails unless es are seq first, first+1, … and all of size n.
func contiguous(t *testing.T, es []wire.Entry, first, n uint64) {
	t.Helper()
	for i, e := range es {
		if e.Seq != first+uint64(i) || e.N != n {
			t.Fatalf("entry %d: seq %d n %d, want seq %d n %d", i, e.Seq, e.N, first+uint64(i), n)
		}
	}
}

// A worker's entries are replayable: each one's hits are those of
// mcpi.Batch for its key, whatever the thread count.
func TestEntriesAreReplayable(t *testing.T) {
	seed, _ := wire.ParseSeed(testJob.Seed)
	for _, threads := range []int{1, 2, 5} {
		bus := newBus(t)
		w := newWorker(t, bus, worker.Config{ID: "w", Threads: threads, Batch: 100_003, MaxBatches: 3})
		if err := w.Run(t.Context()); err != nil {
			t.Fatal(err)
		}
		es, _ := ledger(t, bus, "w")
		if len(es) != 3 {
			t.Fatalf("threads %d: %d entries, want 3", threads, len(es))
		}
		contiguous(t, es, 1, 100_003)
		for _, e := range es {
			want := mcpi.Batch{Key: mcpi.Key{Seed: seed, Worker: "w", Seq: e.Seq}, N: 100_003}.Hits(mcpi.Generic)
			if e.Hits != want || e.Job != testJob.Job || e.Seed != testJob.Seed {
				t.Errorf("threads %d: entry %+v, want hits %d of job %s", threads, e, want, testJob.Job)
			}
		}
	}
}

func TestResumesUnderTheSameID(t *testing.T) {
	bus := newBus(t)
	for range 2 {
		w := newWorker(t, bus, worker.Config{ID: "same", Batch: 1000, MaxBatches: 2})
		if err := w.Run(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	es, raw := ledger(t, bus, "same")
	contiguous(t, es, 1, 1000)
	if len(es) != 4 {
		t.Fatalf("after two runs of 2 batches: %d entries, want 4", len(es))
	}
	// A collector credited the first three and trimmed them away: the
	// worker resumes from the checkpoint, and keeps its entry size even when
	// told another.
	if _, err := bus.SaveCheckpoint(t.Context(), raw[2].ID, map[string][]byte{
		wire.CheckpointWorker + "same": wire.EncodeCredit(wire.Credit{Seq: 3, N: 1000, TotalN: 3000, Entries: 3, Pos: raw[2].ID})}); err != nil {
		t.Fatal(err)
	}
	if err := bus.TrimLedgers(t.Context(), map[string]string{"same": raw[3].ID}); err != nil {
		t.Fatal(err)
	}
	w := newWorker(t, bus, worker.Config{ID: "same", Batch: 5000, MaxBatches: 1})
	if err := w.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	es, _ = ledger(t, bus, "same")
	contiguous(t, es, 4, 1000)
	if len(es) != 2 {
		t.Fatalf("after the trim and one more batch: %d entries, want seq 4 and 5", len(es))
	}
}

// A worker whose credit has no hits (total_hits 0, which an encoder could
// leave out) resumes from it.
func TestResumesFromZeroHits(t *testing.T) {
	bus := newBus(t)
	if _, err := bus.SaveCheckpoint(t.Context(), "1-0", map[string][]byte{
		wire.CheckpointWorker + "zero": wire.EncodeCredit(wire.Credit{Seq: 5, N: 1000, TotalN: 5000, Entries: 5})}); err != nil {
		t.Fatal(err)
	}
	w := newWorker(t, bus, worker.Config{ID: "zero", Batch: 1000, MaxBatches: 1})
	if err := w.Run(t.Context()); err != nil {
		t.Fatalf("resume from total_hits 0: %v", err)
	}
	if es, _ := ledger(t, bus, "zero"); len(es) != 1 || es[0].Seq != 6 {
		t.Errorf("after resuming: %+v, want one entry of seq 6", es)
	}
}

func TestLeavesAtOnceWhenTheJobIsDone(t *testing.T) {
	bus := membus.New()
	done := testJob
	done.Status = wire.Done
	_ = bus.SetState(t.Context(), wire.EncodeState(done))
	w := newWorker(t, bus, worker.Config{ID: "late", Batch: 1000})
	if err := w.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	if es, _ := ledger(t, bus, "late"); len(es) != 0 {
		t.Errorf("a worker of a finished job appended %v", es)
	}
}

// waitEntries waits until worker id has at least k entries in the ledger.
func waitEntries(t *testing.T, bus *membus.Bus, id string, k int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if es, _ := ledger(t, bus, id); len(es) >= k {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d entries of %s within 10s", k, id)
		}
		time.Sleep(time.Millisecond) // the ledger has no event for a test to wait on
	}
}

func runAsync(t *testing.T, w *worker.Worker, ctx context.Context) <-chan error {
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return done
}

func waitDone(t *testing.T, done <-chan error, what string) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal(what)
	}
}

func TestStopsWhenTheJobIsDoneOrResetWhileRunning(t *testing.T) {
	for _, next := range []wire.State{{Status: wire.Done, Job: testJob.Job, Seed: testJob.Seed}, {Status: wire.Running, Job: "00000000000000ff", Seed: testJob.Seed}} {
		bus := newBus(t)
		ctx := t.Context()
		done := runAsync(t, newWorker(t, bus, worker.Config{ID: "w", Batch: 1 << 16}), ctx)
		waitEntries(t, bus, "w", 1)
		_ = bus.SetState(ctx, wire.EncodeState(next))
		waitDone(t, done, "worker did not leave after the job was "+next.Status)
	}
}

// Cancelling flushes every completed batch: nothing sampled and finished
// is lost, and no half batch is reported.
func TestCancelFlushesEveryEntry(t *testing.T) {
	bus := newBus(t)
	ctx, cancel := context.WithCancel(t.Context())
	w := newWorker(t, bus, worker.Config{ID: "w", Batch: 1 << 16})
	done := runAsync(t, w, ctx)
	waitEntries(t, bus, "w", 3)
	cancel()
	waitDone(t, done, "worker did not stop")
	es, _ := ledger(t, bus, "w")
	contiguous(t, es, 1, 1<<16)
}

// flaky is a bus whose appends fail while down is set.
type flaky struct {
	*membus.Bus
	down    atomic.Bool
	appends atomic.Int64
}

func (f *flaky) Append(ctx context.Context, worker string, es []wire.Signed) error {
	if f.down.Load() {
		return errors.New("connection refused")
	}
	f.appends.Add(1)
	return f.Bus.Append(ctx, worker, es)
}

// While the bus is down the worker keeps sampling and queues its entries;
// when it comes back every entry is appended, in order; past the queue's
// limit sampling waits instead of dropping anything.
func TestQueueCatchesUpAfterAnOutage(t *testing.T) {
	bus := &flaky{Bus: newBus(t)}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	w := newWorker(t, bus, worker.Config{ID: "w", Batch: 1 << 14, QueueLimit: 50})
	bus.down.Store(true)
	done := runAsync(t, w, ctx)
	deadline := time.Now().Add(10 * time.Second)
	for w.Queued() < 50 { // the queue fills while the bus is down
		if time.Now().After(deadline) {
			t.Fatalf("queue at %d, never full", w.Queued())
		}
		time.Sleep(time.Millisecond)
	}
	drawn := w.Drawn()
	time.Sleep(50 * time.Millisecond) // would draw dozens more entries if sampling went on
	if d := w.Drawn(); d > drawn+1 {
		t.Errorf("sampling went on with a full queue: %d entries drawn, then %d", drawn, d)
	}
	if es, _ := ledger(t, bus.Bus, "w"); len(es) != 0 {
		t.Fatalf("%d entries reached a bus that was down", len(es))
	}
	bus.down.Store(false)
	waitEntries(t, bus.Bus, "w", 120)
	cancel()
	waitDone(t, done, "worker did not stop")
	es, _ := ledger(t, bus.Bus, "w")
	contiguous(t, es, 1, 1<<14)
	// The 50 queued entries went through in a few appends, not one each.
	if a := bus.appends.Load(); a > int64(len(es))-40 {
		t.Errorf("%d appends for %d entries: the queue was not pipelined", a, len(es))
	}
}

func TestSignsWithItsKey(t *testing.T) {
	bus := newBus(t)
	jobKey := []byte("a job key of 16+ bytes")
	w := newWorker(t, bus, worker.Config{ID: "node7", JobKey: jobKey, Batch: 1000, MaxBatches: 2})
	if err := w.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, raw := ledger(t, bus, "node7")
	for _, le := range raw {
		if !wire.SignatureOK(wire.WorkerKey(jobKey, "node7"), le.Payload, le.Sig) {
			t.Errorf("entry %s: signature %q does not verify", le.Payload, le.Sig)
		}
		if wire.SignatureOK(wire.WorkerKey(jobKey, "node8"), le.Payload, le.Sig) {
			t.Errorf("node8's key verifies node7's entry")
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []worker.Config{{Threads: -1}, {BatchTime: -1}, {Duration: -1}, {QueueLimit: -1}, {FlushTimeout: -1}, {LeaseTTL: -1}, {Heartbeat: -1}, {ID: string(make([]byte, 200))}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// Anyone can append an entry under a worker's id. A worker with a key
// resumes only from entries it signed, so a forged seq 2⁶⁴−1 under its id
// does not move it; without a key it refuses to wrap around.
func TestResumeIgnoresForgedEntries(t *testing.T) {
	jobKey := []byte("a job key of 16+ bytes")
	forged := wire.EncodeEntry(wire.Entry{Job: testJob.Job, Seed: testJob.Seed, Worker: "w", Seq: 1<<64 - 1, N: 1000, Hits: 1, Kernel: "go"})
	for _, key := range [][]byte{jobKey, nil} {
		bus := newBus(t)
		sig := wire.Sign(wire.WorkerKey(jobKey, "mallory"), forged)
		if err := bus.Append(t.Context(), "w", []wire.Signed{{Payload: forged, Sig: sig}}); err != nil {
			t.Fatal(err)
		}
		w := newWorker(t, bus, worker.Config{ID: "w", JobKey: key, Batch: 1000, MaxBatches: 2})
		err := w.Run(t.Context())
		es, _ := ledger(t, bus, "w")
		if key != nil {
			if err != nil || len(es) != 3 || es[1].Seq != 1 || es[2].Seq != 2 {
				t.Errorf("with a key: %v, entries %+v; want the forged one, then seq 1 and 2", err, es)
			}
		} else if err == nil || len(es) != 1 {
			t.Errorf("without a key: %v, %d entries; want a refusal and no entry of seq 0", err, len(es))
		}
	}
}
