package job_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/internal/backoff"
	"github.com/picluster/picluster/internal/bustest"
	"github.com/picluster/picluster/internal/job"
	"github.com/picluster/picluster/internal/membus"
	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
	"github.com/picluster/picluster/worker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// bus is the bus of both sides.
type bus interface {
	worker.Bus
	collector.Bus
}

// newJob returns a job of n workers with wcfg on b, and its collector.
func newJob(t *testing.T, b bus, ccfg collector.Config, n int, wcfg worker.Config) job.Job {
	t.Helper()
	ccfg.Logger, ccfg.Kernel = quiet, mcpi.Generic
	col, err := collector.New(b, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	j := job.Job{Collector: col}
	for range n {
		wcfg.Logger, wcfg.Threads = quiet, 1
		w, err := worker.New(b, wcfg)
		if err != nil {
			t.Fatal(err)
		}
		j.Workers = append(j.Workers, w)
	}
	return j
}

// run runs j and returns its error; a run that does not end by itself
// within a minute fails the test (it would otherwise hang).
func run(t *testing.T, ctx context.Context, j job.Job) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- j.Run(ctx) }()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Minute):
		t.Fatal("the run did not end by itself")
		return nil
	}
}

// ledgerSum returns N and hits summed over every entry in the ledger.
func ledgerSum(t *testing.T, b bus) (n, hits uint64) {
	t.Helper()
	for _, le := range bustest.Entries(t, b) {
		e, err := wire.DecodeEntry(le.Payload)
		if err != nil {
			t.Fatal(err)
		}
		n, hits = n+e.N, hits+e.Hits
	}
	return n, hits
}

// With --max-batches every worker ends by itself, and so does the run:
// stopped by "workers", with every entry counted.
func TestRunEndsWhenTheWorkersEnd(t *testing.T) {
	b := membus.New()
	j := newJob(t, b, collector.Config{}, 2, worker.Config{Batch: 4096, MaxBatches: 3})
	if err := run(t, t.Context(), j); err != nil {
		t.Fatal(err)
	}
	s := j.Collector.Summary()
	if s.StoppedBy != "workers" || s.N != mcpi.CountOf(2*3*4096) || s.Batches != 6 {
		t.Fatalf("stopped by %q with N %v in %d batches, want workers, 24576 in 6", s.StoppedBy, s.N, s.Batches)
	}
}

// On a job that is done already the workers leave at once, and the run ends.
func TestRunEndsOnAJobAlreadyDone(t *testing.T) {
	b := membus.New()
	st := wire.State{Job: "0000000000000001", Seed: "0000000000000002", Status: wire.Done, MaxN: 1 << 20}
	if err := b.SetState(t.Context(), wire.EncodeState(st)); err != nil {
		t.Fatal(err)
	}
	j := newJob(t, b, collector.Config{}, 2, worker.Config{Batch: 4096})
	if err := run(t, t.Context(), j); err != nil {
		t.Fatal(err)
	}
	if s := j.Collector.Summary(); s.StoppedBy != "workers" || !s.N.IsZero() {
		t.Fatalf("stopped by %q with N %v, want workers and 0", s.StoppedBy, s.N)
	}
}

// The cause of the end of ctx is the reason recorded: a duration, or a
// signal for a plain cancellation; neither is an error.
func TestRunRecordsTheCause(t *testing.T) {
	for _, tt := range []struct {
		cause error
		want  string
	}{{collector.StopDuration, "duration"}, {context.Canceled, "signal"}} {
		t.Run(tt.want, func(t *testing.T) {
			b := membus.New()
			j := newJob(t, b, collector.Config{}, 2, worker.Config{Batch: 4096})
			ctx, cancel := context.WithCancelCause(t.Context())
			done := make(chan error, 1)
			go func() { done <- j.Run(ctx) }()
			waitFor(t, func() bool { return j.Collector.Summary().Batches >= 4 })
			cancel(tt.cause)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			s := j.Collector.Summary()
			n, hits := ledgerSum(t, b)
			if s.StoppedBy != tt.want || s.N != mcpi.CountOf(n) || s.Hits != mcpi.CountOf(hits) {
				t.Fatalf("stopped by %q, N %v hits %v; want %s, the ledger's %d and %d", s.StoppedBy, s.N, s.Hits, tt.want, n, hits)
			}
		})
	}
}

// At the target the collector waits for the workers' last entries: its
// final N and hits are exactly the ledger's sums.
func TestFinalAnswerIsTheLedgerAtTheTarget(t *testing.T) {
	for i := range 5 {
		b := membus.New()
		j := newJob(t, b, collector.Config{TargetSE: 2e-4, MinSamples: 1}, 3, worker.Config{Batch: 1 << 16})
		if err := run(t, t.Context(), j); err != nil {
			t.Fatal(err)
		}
		s := j.Collector.Summary()
		n, hits := ledgerSum(t, b)
		if s.StoppedBy != "target" || s.N != mcpi.CountOf(n) || s.Hits != mcpi.CountOf(hits) {
			t.Fatalf("trial %d: stopped by %q, N %v hits %v; the ledger holds %d and %d", i, s.StoppedBy, s.N, s.Hits, n, hits)
		}
		t.Logf("trial %d: N = ledger N = %d, %d entries", i, n, s.Batches)
	}
}

// failing is a bus whose appends fail for good, as with NOPERM.
type failing struct{ *membus.Bus }

var errNoPerm = errors.New("NOPERM this user has no permissions to run the 'xadd' command")

func (failing) Append(context.Context, string, []wire.Signed) error {
	return backoff.Permanent(errNoPerm)
}

// A worker's real error is the run's error, and the run ends.
func TestRunReturnsWorkerErrors(t *testing.T) {
	b := failing{membus.New()}
	j := newJob(t, b, collector.Config{}, 2, worker.Config{Batch: 4096})
	err := run(t, t.Context(), j)
	if !errors.Is(err, errNoPerm) || !strings.Contains(err.Error(), "worker ") {
		t.Fatalf("Run = %v, want the workers' NOPERM", err)
	}
	if s := j.Collector.Summary(); s.StoppedBy != "workers" {
		t.Fatalf("stopped by %q, want workers", s.StoppedBy)
	}
}

// unreachable is a bus that never answers: every call is refused.
type unreachable struct{ *membus.Bus }

var errRefused = errors.New("dial tcp 127.0.0.1:1: connect: connection refused")

func (unreachable) State(context.Context) ([]byte, error) { return nil, errRefused }
func (unreachable) Reset(context.Context) error           { return errRefused }

// With a bus that never answers, a run stopped by its duration is an error
// (it never loaded the job); stopped by a signal it is not.
func TestRunWithoutABus(t *testing.T) {
	for _, tt := range []struct {
		cause   error
		wantErr bool
	}{{collector.StopDuration, true}, {context.Canceled, false}} {
		b := unreachable{membus.New()}
		j := newJob(t, b, collector.Config{}, 1, worker.Config{Batch: 4096})
		ctx, cancel := context.WithCancelCause(t.Context())
		cancel(tt.cause) // before the bus ever answered
		err := run(t, ctx, j)
		if got := err != nil; got != tt.wantErr || (got && !errors.Is(err, collector.ErrNoJob)) {
			t.Errorf("cause %v: Run = %v, want an error: %v", tt.cause, err, tt.wantErr)
		}
	}
}

// waitFor polls cond: the collector has no event for "credited".
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 30s")
		}
		time.Sleep(time.Millisecond)
	}
}
