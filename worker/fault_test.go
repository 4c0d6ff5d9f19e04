package worker_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/picluster/picluster/internal/backoff"
	"github.com/picluster/picluster/internal/faultbus"
	"github.com/picluster/picluster/internal/membus"
	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
	"github.com/picluster/picluster/worker"
)

// logs is a slog handler that keeps every message, for tests that check
// what the worker said.
type logs struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }
func (l *logs) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
	l.mu.Lock()
	l.msgs = append(l.msgs, b.String())
	l.mu.Unlock()
	return nil
}
func (l *logs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logs) WithGroup(string) slog.Handler      { return l }

func (l *logs) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.msgs {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

// faulty returns a fault bus over a bus with a running job.
func faulty(t *testing.T) *faultbus.Bus { return faultbus.New(newBus(t)) }

// newLoggedWorker is newWorker with its logs kept.
func newLoggedWorker(t *testing.T, bus worker.Bus, cfg worker.Config) (*worker.Worker, *logs) {
	t.Helper()
	l := &logs{}
	cfg.Logger = slog.New(l)
	w, err := worker.New(bus, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w, l
}

var errReset = errors.New("connection reset by peer")

// Appends that fail are retried with backoff while sampling goes on; once
// they succeed the queue catches up: every entry, in order, none twice.
func TestRetryAndCatchUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bus := faulty(t)
		bus.Fail(faultbus.Append, 6, errReset)
		w, l := newLoggedWorker(t, bus, worker.Config{ID: "w", Threads: 1, Batch: 1 << 12, MaxBatches: 20})
		if err := w.Run(t.Context()); err != nil {
			t.Fatal(err)
		}
		es, _ := ledger(t, bus.Bus, "w")
		if len(es) != 20 {
			t.Fatalf("%d entries in the ledger, want 20", len(es))
		}
		contiguous(t, es, 1, 1<<12)
		if bus.Calls(faultbus.Append) < 7 || !l.has("append failed") || !l.has("bus is back") {
			t.Fatalf("%d appends; logs %q", bus.Calls(faultbus.Append), l.msgs)
		}
	})
}

// A reply lost after the append landed makes the worker append again: the
// ledger holds the entries twice (the collector credits a seq once), and
// the worker goes on in order.
func TestLostReplyIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bus := faulty(t)
		bus.LoseReply(1)
		w := newWorker(t, bus, worker.Config{ID: "w", Threads: 1, Batch: 1 << 12, MaxBatches: 3})
		if err := w.Run(t.Context()); err != nil {
			t.Fatal(err)
		}
		es, _ := ledger(t, bus.Bus, "w")
		seen := map[uint64]int{}
		for _, e := range es {
			seen[e.Seq]++
		}
		if len(seen) != 3 || len(es) <= 3 {
			t.Fatalf("seqs %v in %d entries: want 1…3, some twice", seen, len(es))
		}
	})
}

// The flush timeout bounds how long a stopping worker waits for a bus that
// does not answer; what did not get through is logged as lost.
func TestFlushTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bus := faulty(t)
		bus.Hang(faultbus.Append, true)
		w, l := newLoggedWorker(t, bus, worker.Config{ID: "w", Threads: 1, Batch: 1 << 12, MaxBatches: 3, FlushTimeout: 7 * time.Second})
		start := time.Now()
		if err := w.Run(t.Context()); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took != 7*time.Second {
			t.Errorf("Run took %v of virtual time, want the flush timeout, 7s", took)
		}
		if !l.has("lost_entries=3") {
			t.Errorf("no log of the 3 lost entries: %q", l.msgs)
		}
	})
}

// Heartbeats go on while the publisher waits for a slow bus, every
// Heartbeat that no entry said alive; after the last entry comes a goodbye.
func TestHeartbeatsAndGoodbye(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mb := newBus(t)
		bus := faultbus.New(mb)
		bus.Delay(faultbus.Append, 10*time.Second) // each append takes 10 s: 5 heartbeats due
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		msgs := mb.Subscribe(ctx)
		w := newWorker(t, bus, worker.Config{ID: "w", Threads: 1, Batch: 1 << 12, QueueLimit: 1, MaxBatches: 3})
		if err := w.Run(ctx); err != nil {
			t.Fatal(err)
		}
		var kinds []string // "entry", "alive", "left" in the order received
		for len(msgs) > 0 {
			m := <-msgs
			switch m.Kind {
			case wire.KindReport:
				kinds = append(kinds, "entry")
			case wire.KindPresence:
				p, err := wire.DecodePresence(m.Payload)
				if err != nil || p.Worker != "w" {
					t.Fatalf("presence %s: %v", m.Payload, err)
				}
				kinds = append(kinds, p.Status)
			}
		}
		got := strings.Join(kinds, " ")
		// 3 entries, one append each (the queue holds one), 10 s apart;
		// a heartbeat every 2 s in between (one may fall at the very
		// instant the last entry lands), then the goodbye.
		tail := got[strings.LastIndex(got, "entry")+len("entry"):]
		if strings.Count(got, "entry") != 3 || strings.Count(got, wire.Alive) < 10 || tail != " "+wire.Left && tail != " "+wire.Alive+" "+wire.Left {
			t.Fatalf("messages %q: want 3 entries with heartbeats between, and a goodbye after the last", got)
		}
		t.Logf("%s", got)
	})
}

// slowBus makes time pass in a synctest bubble: each append takes a
// second, and the queue holds one entry, so the sampler waits for it.
func slowBus(t *testing.T) *faultbus.Bus {
	bus := faulty(t)
	bus.Delay(faultbus.Append, time.Second)
	return bus
}

// Duration stops the worker.
func TestDuration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bus := slowBus(t)
		w, l := newLoggedWorker(t, bus, worker.Config{ID: "w", Threads: 1, Batch: 1 << 12, QueueLimit: 1, Duration: 10 * time.Second})
		start := time.Now()
		if err := w.Run(t.Context()); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took < 10*time.Second || took > 12*time.Second {
			t.Errorf("Run took %v of virtual time, want 10s and a last append", took)
		}
		if !l.has("reason=duration") {
			t.Errorf("logs %q: want reason=duration", l.msgs)
		}
	})
}

// A stop on the control channel that is lost still stops the worker: it
// reads the state after every append.
func TestLostControlMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bus := slowBus(t)
		bus.DropControl(100)
		w, l := newLoggedWorker(t, bus, worker.Config{ID: "w", Threads: 1, Batch: 1 << 12, QueueLimit: 1})
		done := make(chan error, 1)
		go func() { done <- w.Run(t.Context()) }()
		time.Sleep(5 * time.Second)
		done1 := testJob
		done1.Status = wire.Done
		if err := bus.Bus.SetState(t.Context(), wire.EncodeState(done1)); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("left %v after the job was done, want within an append or two", took)
		}
		if !l.has("reason=job done") || bus.Calls(faultbus.Control) == 0 {
			t.Errorf("logs %q, %d control messages: want reason job done, the message dropped", l.msgs, bus.Calls(faultbus.Control))
		}
	})
}

var errNoPerm = backoff.Permanent(errors.New("NOPERM this user has no permissions to run the 'xadd' command"))

// A permanent error ends the worker with that error, at start or mid-run.
func TestPermanentErrorsEndTheWorker(t *testing.T) {
	for _, op := range []faultbus.Op{faultbus.Lease, faultbus.State, faultbus.Append} {
		t.Run(string(op), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				bus := faulty(t)
				bus.Fail(op, -1, errNoPerm)
				if op == faultbus.State {
					bus.Fail(op, -1, errNoPerm)
				}
				w := newWorker(t, bus, worker.Config{ID: "w", Threads: 1, Batch: 1 << 12})
				if err := w.Run(t.Context()); !errors.Is(err, errNoPerm) {
					t.Fatalf("Run = %v, want the NOPERM", err)
				}
			})
		})
	}
}

// A permanent error when the state is read again mid-run ends the worker.
func TestPermanentErrorInCheckState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bus := faulty(t)
		w := newWorker(t, bus, worker.Config{ID: "w", Threads: 1, Batch: 1 << 12, QueueLimit: 1})
		bus.Delay(faultbus.Append, time.Second)
		done := make(chan error, 1)
		go func() { done <- w.Run(t.Context()) }()
		time.Sleep(3 * time.Second) // started: the state was read
		bus.Fail(faultbus.State, -1, errNoPerm)
		if err := <-done; !errors.Is(err, errNoPerm) {
			t.Fatalf("Run = %v, want the NOPERM", err)
		}
	})
}

// A silent bus at start: Ctrl-C ends the wait, and that is no error.
func TestCancelWhileTheBusIsSilent(t *testing.T) {
	for _, op := range []faultbus.Op{faultbus.Lease, faultbus.State} {
		t.Run(string(op), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				bus := faulty(t)
				bus.Hang(op, true)
				ctx, cancel := context.WithCancel(t.Context())
				w := newWorker(t, bus, worker.Config{ID: "w", Threads: 1, Batch: 1 << 12})
				done := make(chan error, 1)
				go func() { done <- w.Run(ctx) }()
				time.Sleep(time.Minute)
				cancel()
				if err := <-done; err != nil {
					t.Fatalf("Run = %v after Ctrl-C while waiting, want nil", err)
				}
			})
		})
	}
}

// A second worker under an id whose lease is held and renewed is refused
// after one TTL; one whose holder died (never renewed) resumes after it.
func TestLease(t *testing.T) {
	t.Run("live id refused", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			bus := faulty(t)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			renewed := make(chan struct{})
			go func() { // a live holder renews every 3 s
				defer close(renewed)
				tick := time.NewTicker(3 * time.Second)
				defer tick.Stop()
				for {
					if held, _, _ := bus.Bus.Lease(ctx, "w", "holder", 10*time.Second); !held {
						t.Error("the holder lost its lease")
					}
					select {
					case <-ctx.Done():
						return
					case <-tick.C:
					}
				}
			}()
			synctest.Wait()
			w := newWorker(t, bus, worker.Config{ID: "w", Threads: 1, Batch: 1 << 12, LeaseTTL: 10 * time.Second})
			start := time.Now()
			err := w.Run(ctx)
			if !errors.Is(err, worker.ErrIDInUse) || !strings.Contains(err.Error(), `worker id "w"`) {
				t.Fatalf("Run = %v, want the id refused", err)
			}
			if took := time.Since(start); took > 12*time.Second {
				t.Errorf("refused after %v, want within a TTL", took)
			}
			if es, _ := ledger(t, bus.Bus, "w"); len(es) != 0 {
				t.Fatalf("a refused worker appended %d entries", len(es))
			}
			cancel()
			<-renewed
		})
	})
	t.Run("dead holder's id resumed", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			bus := faulty(t)
			first := newWorker(t, bus, worker.Config{ID: "w", Threads: 1, Batch: 1 << 12, MaxBatches: 2})
			if err := first.Run(t.Context()); err != nil {
				t.Fatal(err)
			}
			if held, _, _ := bus.Bus.Lease(t.Context(), "w", "dead", 10*time.Second); !held { // then dies without a goodbye
				t.Fatal("the first worker did not release its lease")
			}
			w, l := newLoggedWorker(t, bus, worker.Config{ID: "w", Threads: 1, Batch: 1 << 12, MaxBatches: 2})
			start := time.Now()
			if err := w.Run(t.Context()); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took < 10*time.Second {
				t.Errorf("resumed after %v, before the dead lease ran out", took)
			}
			es, _ := ledger(t, bus.Bus, "w")
			contiguous(t, es, 1, 1<<12)
			if len(es) != 4 || !l.has("waiting for it to run out") {
				t.Fatalf("%d entries, logs %q: want 4 and the wait logged", len(es), l.msgs)
			}
		})
	})
	t.Run("lost lease stops the worker", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			bus := slowBus(t)
			w := newWorker(t, bus, worker.Config{ID: "w", Threads: 1, Batch: 1 << 12, QueueLimit: 1, LeaseTTL: 9 * time.Second})
			done := make(chan error, 1)
			go func() { done <- w.Run(t.Context()) }()
			time.Sleep(2 * time.Second)
			bus.Fail(faultbus.Lease, -1, errReset) // cut off: renewals fail, and the lease runs out at 9 s
			time.Sleep(10 * time.Second)
			if held, _, _ := bus.Bus.Lease(t.Context(), "w", "thief", time.Hour); !held {
				t.Fatal("the expired lease was not free")
			}
			bus.Fail(faultbus.Lease, 0, nil) // back: the next renewal finds the thief
			err := <-done
			if !errors.Is(err, worker.ErrIDInUse) {
				t.Fatalf("Run = %v, want the lease lost", err)
			}
		})
	})
}

// The entry size is measured to take about BatchTime, a whole number of
// lanes, and capped by the job's MaxN.
func TestEntrySize(t *testing.T) {
	bus := newBus(t)
	w := newWorker(t, bus, worker.Config{ID: "timed", Threads: 1, BatchTime: 5 * time.Millisecond, MaxBatches: 1})
	if err := w.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	es, _ := ledger(t, bus, "timed")
	if len(es) != 1 || es[0].N%mcpi.Lanes != 0 || es[0].N < mcpi.Lanes {
		t.Fatalf("entries %+v: want one of a positive multiple of %d samples", es, mcpi.Lanes)
	}
	capped := membus.New()
	job := testJob
	job.MaxN = 4 * mcpi.Lanes
	if err := capped.SetState(t.Context(), wire.EncodeState(job)); err != nil {
		t.Fatal(err)
	}
	w = newWorker(t, capped, worker.Config{ID: "capped", Threads: 1, BatchTime: time.Hour, MaxBatches: 1})
	if err := w.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	if es, _ := ledger(t, capped, "capped"); len(es) != 1 || es[0].N != 4*mcpi.Lanes {
		t.Fatalf("entries %+v: want one of the cap, %d", es, 4*mcpi.Lanes)
	}
}

// A worker started before its collector waits for the job, then works;
// a transient error reading the state is retried.
func TestWaitsForTheJob(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bus := faultbus.New(membus.New())
		bus.Fail(faultbus.State, 2, errReset)
		w, l := newLoggedWorker(t, bus, worker.Config{ID: "early", Threads: 1, Batch: 1 << 12, MaxBatches: 2})
		done := make(chan error, 1)
		go func() { done <- w.Run(t.Context()) }()
		time.Sleep(time.Minute)
		if err := bus.Bus.SetState(t.Context(), wire.EncodeState(testJob)); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if es, _ := ledger(t, bus.Bus, "early"); len(es) != 2 || !l.has("no job yet") {
			t.Fatalf("%d entries, logs %q: want 2 after waiting for the job", len(es), l.msgs)
		}
	})
}

// When Redis loses its data the job state is gone: the worker samples on
// (the collector writes the state again) and stops only for another job.
func TestSamplesOnWhenTheStateIsGone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bus := slowBus(t)
		w, l := newLoggedWorker(t, bus, worker.Config{ID: "w", Threads: 1, Batch: 1 << 12, QueueLimit: 1})
		done := make(chan error, 1)
		go func() { done <- w.Run(t.Context()) }()
		time.Sleep(3 * time.Second)
		if err := bus.Bus.Reset(t.Context()); err != nil { // the loss
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		if ok, err := bus.Bus.RestoreState(t.Context(), wire.EncodeState(testJob)); !ok || err != nil {
			t.Fatal("restore", ok, err)
		}
		time.Sleep(5 * time.Second)
		select {
		case err := <-done:
			t.Fatalf("the worker stopped when the state was gone: %v", err)
		default:
		}
		if es, _ := ledger(t, bus.Bus, "w"); len(es) < 8 || !l.has("the job state is gone") || !l.has("the job state is back") {
			t.Fatalf("%d entries since the loss, logs %q", len(es), l.msgs)
		}
		other := testJob
		other.Job = "00000000000000ff"
		if err := bus.Bus.SetState(t.Context(), wire.EncodeState(other)); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if !l.has("reason=job reset") {
			t.Fatalf("logs %q: want reason job reset", l.msgs)
		}
	})
}
