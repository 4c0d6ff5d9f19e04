package redisbus_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/internal/redisbus"
	"github.com/picluster/picluster/internal/redistest"
	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

// heldBus holds a collector's calls to some methods of the bus while they
// are shut: ReadLedgers for a collector that reads slowly, Time for one
// that is away (its reader and its checkpointer both wait on the bus's
// clock), Readers, and "trimmed" for SetReader of the trim point.
type heldBus struct {
	*redisbus.Bus
	mu      sync.Mutex
	gates   map[string]chan struct{} // by method, while shut
	waiting map[string]int           // calls held now, by method
}

func newHeldBus(b *redisbus.Bus) *heldBus {
	return &heldBus{Bus: b, gates: map[string]chan struct{}{}, waiting: map[string]int{}}
}

// shut holds every call to methods from now on, until open.
func (b *heldBus) shut(methods ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range methods {
		if b.gates[m] == nil {
			b.gates[m] = make(chan struct{})
		}
	}
}

// open lets the calls to methods held go, and those to come.
func (b *heldBus) open(methods ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range methods {
		if g := b.gates[m]; g != nil {
			close(g)
			delete(b.gates, m)
		}
	}
}

// held returns how many calls to method wait now.
func (b *heldBus) held(method string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.waiting[method]
}

func (b *heldBus) hold(ctx context.Context, method string) error {
	b.mu.Lock()
	gate := b.gates[method]
	if gate == nil {
		b.mu.Unlock()
		return nil
	}
	b.waiting[method]++
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.waiting[method]--
		b.mu.Unlock()
	}()
	select {
	case <-gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *heldBus) ReadLedgers(ctx context.Context, from []wire.Cursor, count int) ([]wire.LedgerEntry, error) {
	if err := b.hold(ctx, "ReadLedgers"); err != nil {
		return nil, err
	}
	return b.Bus.ReadLedgers(ctx, from, count)
}

func (b *heldBus) Time(ctx context.Context) (string, error) {
	if err := b.hold(ctx, "Time"); err != nil {
		return "", err
	}
	return b.Bus.Time(ctx)
}

func (b *heldBus) Readers(ctx context.Context) (map[string]string, error) {
	if err := b.hold(ctx, "Readers"); err != nil {
		return nil, err
	}
	return b.Bus.Readers(ctx)
}

func (b *heldBus) SetReader(ctx context.Context, name, value string) error {
	if name == "trimmed" {
		if err := b.hold(ctx, "trimmed"); err != nil {
			return err
		}
	}
	return b.Bus.SetReader(ctx, name, value)
}

// logLines records a logger's messages.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Enabled(context.Context, slog.Level) bool { return true }
func (l *logLines) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, r.Message)
	return nil
}
func (l *logLines) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logLines) WithGroup(string) slog.Handler      { return l }

// count returns how many messages contain s.
func (l *logLines) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := 0
	for _, m := range l.lines {
		if strings.Contains(m, s) {
			k++
		}
	}
	return k
}

// reloaded is in what a collector logs when it reloads from the
// checkpoint: it finds the ledger trimmed past its mark, or itself away
// for longer than the others wait for it.
const reloaded = "reloading from the checkpoint"

// eventually polls cond until it holds, or fails after 15 s saying what
// did not happen.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 15s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// lagJob is a job on a real redis-server read by two collectors, A and B,
// that checkpoint, sweep and trim every 20 ms with a ledger window of
// 300 ms, each on its own connection, which the test can hold. Workers
// w0…w3 append entries of lagN samples with their true hits.
type lagJob struct {
	t          *testing.T
	bus        *redisbus.Bus // the workers' and the test's
	busA, busB *heldBus
	a, b       *collector.Collector
	logB       *logLines
	st         wire.State
	seed       uint64
	seq        map[string]uint64
	n, hits    mcpi.Count // the ledger's sums
	stop       func()
	done       chan error
}

const (
	lagWorkers = 4
	lagN       = 1024
	lagWindow  = 300 * time.Millisecond
	lagEvery   = 20 * time.Millisecond
	lagTTL     = 4 * time.Second // Config.ReaderTTL: a collector held for half of it is away
)

func newLagJob(t *testing.T, channel string) *lagJob {
	t.Helper()
	srv := redistest.Start(t)
	j := &lagJob{t: t, bus: open(t, srv, channel), busA: newHeldBus(open(t, srv, channel)), busB: newHeldBus(open(t, srv, channel)),
		logB: &logLines{}, seq: map[string]uint64{}, done: make(chan error, 2)}
	newCollector := func(bus collector.Bus, name string, log slog.Handler) *collector.Collector {
		c, err := collector.New(bus, collector.Config{Channel: channel, Name: name, Logger: slog.New(log),
			CheckpointEvery: lagEvery, SweepEvery: lagEvery, LedgerWindow: lagWindow, ReaderTTL: lagTTL, VerifyFraction: 1e-9, Kernel: mcpi.Generic})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	j.a = newCollector(j.busA, "A", slog.DiscardHandler)
	j.b = newCollector(j.busB, "B", j.logB)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	j.stop = func() {
		j.busA.open("ReadLedgers", "Time", "Readers", "trimmed") // nothing held at the end
		j.busB.open("ReadLedgers", "Time", "Readers", "trimmed")
		stop()
		wg.Wait()
	}
	t.Cleanup(j.stop)
	wg.Go(func() { j.done <- j.a.Run(ctx) })
	<-j.a.Loaded() // A makes the job
	wg.Go(func() { j.done <- j.b.Run(ctx) })
	<-j.b.Loaded()
	b, err := j.bus.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if j.st, err = wire.DecodeState(b); err != nil {
		t.Fatal(err)
	}
	if j.seed, err = wire.ParseSeed(j.st.Seed); err != nil {
		t.Fatal(err)
	}
	return j
}

// feed appends k entries to every worker's stream, adds them to the
// ledger's sums, and returns the bus's time after them.
func (j *lagJob) feed(k int) wire.ID {
	j.t.Helper()
	for i := range lagWorkers {
		w := fmt.Sprint("w", i)
		es := make([]wire.Signed, k)
		for e := range es {
			j.seq[w]++
			hits := mcpi.Batch{Key: mcpi.Key{Seed: j.seed, Worker: w, Seq: j.seq[w]}, N: lagN}.Hits(mcpi.Generic)
			es[e] = wire.Signed{Payload: wire.EncodeEntry(wire.Entry{Job: j.st.Job, Seed: j.st.Seed, Worker: w, Seq: j.seq[w], N: lagN, Hits: hits, Kernel: "go", Seconds: 0.001})}
			j.n, j.hits = j.n.Add(mcpi.CountOf(lagN)), j.hits.Add(mcpi.CountOf(hits))
		}
		if err := j.bus.Append(j.t.Context(), w, es); err != nil {
			j.t.Fatal(err)
		}
	}
	return j.now()
}

// now returns the bus's clock.
func (j *lagJob) now() wire.ID {
	j.t.Helper()
	s, err := j.bus.Time(j.t.Context())
	if err != nil {
		j.t.Fatal(err)
	}
	id, err := wire.ParseID(s)
	if err != nil {
		j.t.Fatal(err)
	}
	return id
}

// readers returns B's mark as recorded among the readers, and the trim
// point.
func (j *lagJob) readers() (markB, trimmed string) {
	j.t.Helper()
	r, err := j.bus.Readers(j.t.Context())
	if err != nil {
		j.t.Fatal(err)
	}
	markB, _, _ = strings.Cut(r["B"], " ")
	return markB, r["trimmed"]
}

// caughtUp waits until B has recorded a mark after at: it has read every
// entry appended before at.
func (j *lagJob) caughtUp(at wire.ID) {
	j.t.Helper()
	eventually(j.t, "B reads the ledger up to "+at.String(), func() bool {
		mark, _ := j.readers()
		return wire.Later(mark, at.String())
	})
}

// lost returns the most entries, over the workers, that the ledger no
// longer holds and B has not credited: what A trimmed before B read it.
func (j *lagJob) lost() int64 {
	j.t.Helper()
	credited := map[string]uint64{}
	for _, w := range j.b.Summary().WorkerTable {
		credited[w.ID] = w.Seq
	}
	most := int64(0)
	for w, seq := range j.seq {
		n, err := j.bus.LedgerLen(j.t.Context(), w)
		if err != nil {
			j.t.Fatal(err)
		}
		most = max(most, int64(seq-credited[w])-n)
	}
	return most
}

// checkpointPast waits until the checkpoint's mark, A's, is d past the
// bus's clock now: A has checkpointed, recorded its mark and trimmed
// since, about d/lagEvery times.
func (j *lagJob) checkpointPast(d time.Duration) {
	j.t.Helper()
	at := j.now()
	eventually(j.t, "A checkpoints on", func() bool {
		cp, err := j.bus.Checkpoint(j.t.Context())
		pos, _ := wire.ParseID(string(cp[wire.CheckpointPos]))
		return err == nil && pos.Ms > at.Ms+uint64(d.Milliseconds())
	})
}

// away keeps B from the bus for longer than half of ReaderTTL, so that it
// is away by its own clock, and makes its record among the readers older
// than ReaderTTL, so that A no longer waits for it. B's reader and
// checkpointer must be held.
func (j *lagJob) away() (mark string) {
	j.t.Helper()
	time.Sleep(lagTTL/2 + 200*time.Millisecond)
	mark, _ = j.readers()
	stale := j.now().Ms - uint64((lagTTL + time.Second).Milliseconds())
	if err := j.bus.SetReader(j.t.Context(), "B", mark+" "+strconv.FormatUint(stale, 10)); err != nil {
		j.t.Fatal(err)
	}
	return mark
}

// awayWhileATrims holds B at the bus's clock, where its reader and its
// checkpointer wait, for longer than half of ReaderTTL, its record aged
// past ReaderTTL, while workers append until A has trimmed entries B has
// not read; it returns B's mark.
func (j *lagJob) awayWhileATrims() (mark string) {
	j.t.Helper()
	j.caughtUp(j.feed(20))
	j.busB.shut("Time")
	eventually(j.t, "B's reader and checkpointer wait", func() bool { return j.busB.held("Time") == 2 })
	mark = j.away()
	for range 5 {
		j.feed(10)
		time.Sleep(lagWindow / 4)
	}
	eventually(j.t, "A trims what B has not read", func() bool { return j.lost() > 0 })
	return mark
}

// agree waits until A has credited the whole ledger and B has too, or
// has read past its end (a sweep after one that was held waits ten times
// as long as that took), stops them, and checks that their final N and
// hits are the ledger's sums.
func (j *lagJob) agree() {
	j.t.Helper()
	end := j.now().String()
	eventually(j.t, "A credits the whole ledger", func() bool { return j.a.Summary().N == j.n })
	eventually(j.t, "B credits the whole ledger or reads past its end", func() bool {
		mark, _ := j.readers()
		return j.b.Summary().N == j.n || wire.Later(mark, end)
	})
	j.stop()
	for range 2 {
		if err := <-j.done; !errors.Is(err, context.Canceled) {
			j.t.Errorf("Run = %v, want context.Canceled", err)
		}
	}
	a, b := j.a.Summary(), j.b.Summary()
	if a.N != j.n || b.N != j.n || a.Hits != j.hits || b.Hits != j.hits {
		j.t.Errorf("A: N %v hits %v; B: N %v hits %v; want the ledger's N %v hits %v for both", a.N, a.Hits, b.N, b.Hits, j.n, j.hits)
	}
	if a.Gaps != 0 || b.Gaps != 0 || len(a.Quarantined) != 0 || len(b.Quarantined) != 0 {
		j.t.Errorf("gaps A %d B %d, quarantined A %v B %v: want none", a.Gaps, b.Gaps, a.Quarantined, b.Quarantined)
	}
}

// A collector that is registered but not reading holds back the trimming
// of what it has not read. A trims what both have read; then, while B's
// reads wait, A checkpoints again and again, far past B's mark and the
// window, yet every entry B has not read stays in the ledger and the trim
// point stays before B's mark. B, reading again, needs no reload and ends
// with the ledger's sums, as A.
func TestLaggingReaderHoldsBackTrim(t *testing.T) {
	j := newLagJob(t, "lag")
	first := j.feed(20)
	eventually(t, "A trims what both have read", func() bool {
		_, trimmed := j.readers()
		return wire.Later(trimmed, first.String())
	})
	j.busB.shut("ReadLedgers")
	eventually(t, "B's reads wait", func() bool { return j.busB.held("ReadLedgers") > 0 })
	mark, _ := j.readers()
	for range 5 {
		j.feed(10) // B reads none of these until its reads go on
		time.Sleep(lagWindow / 4)
	}
	eventually(t, "A credits them", func() bool { return j.a.Summary().N == j.n })
	j.checkpointPast(3 * lagWindow) // without B, A would trim every entry appended so far
	if k := j.lost(); k != 0 {
		t.Errorf("A trimmed %d entries of a worker before B read them", k)
	}
	if _, trimmed := j.readers(); !wire.Later(mark, trimmed) {
		t.Errorf("the ledger was trimmed to %s, not before B's mark %s", trimmed, mark)
	}
	j.busB.open("ReadLedgers")
	j.feed(10)
	j.agree()
	if k := j.logB.count(reloaded); k != 0 {
		t.Errorf("B reloaded from the checkpoint %d times: A trimmed past its mark", k)
	}
}

// A collector away longer than ReaderTTL no longer holds back the
// trimming: A trims past B's mark. When B comes back it reloads from the
// checkpoint, and ends with the ledger's sums, as A. B is away from the
// bus's clock, where its reader and its checkpointer both wait, its record
// aged past ReaderTTL.
func TestAbsentReaderReloads(t *testing.T) {
	j := newLagJob(t, "absent")
	mark := j.awayWhileATrims()
	if _, trimmed := j.readers(); !wire.Later(trimmed, mark) {
		t.Fatalf("the trim point %s is not past B's mark %s", trimmed, mark)
	}
	j.busB.open("Time")
	eventually(t, "B reloads from the checkpoint", func() bool { return j.logB.count(reloaded) > 0 })
	j.feed(10)
	j.agree()
}

// A collector back from an absence records its old mark with a fresh time
// before it reads the readers hash; A trims meanwhile, B's old mark
// among the live ones, yet the trim point does not go back before that
// mark (A trimmed past it already), and B, which knows by its own clock
// that it was away, reloads from the checkpoint, and trims nothing while
// away (its checkpointer does not read the readers hash).
func TestTrimPointNeverGoesBack(t *testing.T) {
	j := newLagJob(t, "back")
	mark := j.awayWhileATrims()
	_, before := j.readers()
	j.busB.shut("Readers")
	j.busB.open("Time")
	eventually(t, "B records its mark again", func() bool { return j.busB.held("Readers") == 1 })
	j.checkpointPast(3 * lagEvery) // A trims again
	if _, after := j.readers(); !wire.Later(after, mark) {
		t.Errorf("the trim point went back from %s to %s, before B's mark %s", before, after, mark)
	}
	j.busB.open("Readers")
	j.feed(10)
	j.agree()
	if j.logB.count(reloaded) == 0 {
		t.Error("B did not reload from the checkpoint")
	}
}

// A collector that comes back in the middle of a sweep, after an absence
// longer than ReaderTTL, reads on from the stale cursors of that sweep
// before the next one finds the ledger trimmed past its mark. Entries were
// trimmed that it had not read: it must not credit across the hole, nor
// take the hole for a worker's gaps (a hole of more than MaxGaps is
// refused as implausible_seq; it reloads, and reads the entry again).
func TestReaderBackMidSweep(t *testing.T) {
	j := newLagJob(t, "midsweep")
	j.caughtUp(j.feed(20))
	j.busB.shut("ReadLedgers")
	eventually(t, "B's reader waits", func() bool { return j.busB.held("ReadLedgers") == 1 })
	j.busB.shut("Time")
	eventually(t, "B's checkpointer waits", func() bool { return j.busB.held("Time") == 1 })
	j.away()
	j.feed(2 * collector.MaxGaps)
	eventually(t, "A trims more of a worker than MaxGaps before B reads it", func() bool { return j.lost() > collector.MaxGaps })
	j.feed(1) // after the hole
	j.busB.open("ReadLedgers", "Time")
	eventually(t, "B reloads from the checkpoint", func() bool { return j.logB.count(reloaded) > 0 })
	if s := j.b.Summary(); len(s.Quarantined) != 0 || s.Gaps != 0 {
		t.Fatalf("B, back, counts %d gaps and quarantined %d honest workers: %v", s.Gaps, len(s.Quarantined), s.Quarantined)
	}
	j.feed(10)
	j.agree()
}
