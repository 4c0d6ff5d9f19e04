package collector_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/internal/membus"
	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newCollector(t testing.TB, bus collector.Bus, cfg collector.Config) *collector.Collector {
	t.Helper()
	cfg.Logger = quiet
	if cfg.Kernel.IsZero() {
		cfg.Kernel = mcpi.Generic // replays of tiny entries; any kernel gives the same hits
	}
	c, err := collector.New(bus, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// started runs c until the test ends and waits until it has written the
// job state, which it returns.
func started(t testing.TB, c *collector.Collector, bus *membus.Bus) (wire.State, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done, fin := make(chan error, 1), make(chan struct{})
	go func() { done <- c.Run(ctx); close(fin) }()
	t.Cleanup(func() { cancel(); <-fin })
	var st wire.State
	waitFor(t, func() bool {
		b, _ := bus.State(ctx)
		s, err := wire.DecodeState(b)
		st = s
		return err == nil && s.Job != ""
	})
	return st, done
}

// entry returns worker's entry seq of n samples in job st, with its true
// hits plus lie.
func entry(st wire.State, worker string, seq, n uint64, lie int64) wire.Entry {
	seed, _ := wire.ParseSeed(st.Seed)
	hits := mcpi.Batch{Key: mcpi.Key{Seed: seed, Worker: worker, Seq: seq}, N: n}.Hits(mcpi.Generic)
	return wire.Entry{Job: st.Job, Worker: worker, Seq: seq, N: n, Hits: uint64(int64(hits) + lie), Seed: st.Seed, Kernel: "go", Seconds: 0.001}
}

// runLoaded runs c until the returned stop (or the test's end) and waits
// until it has loaded the job.
func runLoaded(t testing.TB, c *collector.Collector) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stop = sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(stop)
	select {
	case <-c.Loaded():
	case err := <-done:
		t.Fatalf("Run = %v before the job was loaded", err)
	}
	return stop
}

// jobState reads and decodes the job state on bus.
func jobState(t testing.TB, bus interface {
	State(context.Context) ([]byte, error)
}) wire.State {
	t.Helper()
	b, err := bus.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st, err := wire.DecodeState(b)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func appendEntries(t testing.TB, bus *membus.Bus, key []byte, es ...wire.Entry) {
	t.Helper()
	for _, e := range es {
		p := wire.EncodeEntry(e)
		sig := ""
		if key != nil {
			sig = wire.Sign(wire.WorkerKey(key, e.Worker), p)
		}
		if err := bus.Append(context.Background(), e.Worker, []wire.Signed{{Payload: p, Sig: sig}}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCreditsTheLedger(t *testing.T) {
	bus := membus.New()
	c := newCollector(t, bus, collector.Config{VerifyFraction: 1e-9, AnonShare: 1})
	st, _ := started(t, c, bus)
	a1, a2, b5 := entry(st, "a", 1, 100, 0), entry(st, "a", 2, 100, 0), entry(st, "b", 5, 1000, 0)
	var skipped uint64 // b's seqs 1 … 4, which the collector draws
	for seq := uint64(1); seq < 5; seq++ {
		skipped += entry(st, "b", seq, 1000, 0).Hits
	}
	wrongJob, wrongSeed := entry(st, "a", 3, 100, 0), entry(st, "a", 3, 100, 0)
	wrongJob.Job = "0123456789abcdef"
	wrongSeed.Seed = "0123456789abcdef"
	appendEntries(t, bus, nil,
		a1, a2, a2, // a duplicate
		b5,                  // first seen at seq 5: four gaps, drawn by the collector
		wrongJob, wrongSeed, // not this job's
		entry(st, "a", 3, 200, 0), // n changed
	)
	ctx := context.Background()
	_ = bus.PublishRaw(ctx, []byte(`{"n": 1000, "pi_approx": 3.2}`))                                                              // anonymous: 800 hits
	_ = bus.PublishRaw(ctx, []byte(`garbage`))                                                                                    // not JSON
	_ = bus.PublishRaw(ctx, []byte(`{"n":10,"pi_approx":3.2,"hits":8,"v":1,"worker":"old","seq":1,"total_n":10,"total_hits":8}`)) // a v1 worker
	_ = bus.PublishRaw(ctx, []byte(`{"n": 18446744073709551615, "pi_approx": 3.2}`))                                              // too large
	_ = bus.Append(ctx, "x", []wire.Signed{{Payload: []byte(`{"v":2,"job":"x"}`)}})                                               // not an entry
	want := map[string]uint64{"duplicate": 1, "wrong_job": 1, "wrong_seed": 1, "n_changed": 1, "not_json": 1, "v1_report": 1, "too_large": 1, "not_entry": 1}
	waitFor(t, func() bool { return c.Summary().Rejected == 8 && c.Summary().Anonymous == 1 })
	s := c.Summary()
	if got, want := s.N, mcpi.CountOf(100+100+5*1000+1000); got != want {
		t.Errorf("N = %v, want %v", got, want)
	}
	if got, want := s.Hits, mcpi.CountOf(a1.Hits+a2.Hits+skipped+b5.Hits+800); got != want {
		t.Errorf("Hits = %v, want %v", got, want)
	}
	if s.Workers != 2 || s.Batches != 8 || s.Duplicates != 1 || s.Anonymous != 1 || s.Gaps != 4 || s.AnonymousN != mcpi.CountOf(1000) {
		t.Errorf("workers %d batches %d duplicates %d anonymous %d gaps %d anonymous_n %v; want 2, 8, 1, 1, 4, 1000",
			s.Workers, s.Batches, s.Duplicates, s.Anonymous, s.Gaps, s.AnonymousN)
	}
	if fmt.Sprint(s.RejectedBy) != fmt.Sprint(want) {
		t.Errorf("rejected_by %v, want %v", s.RejectedBy, want)
	}
}

// Totals of a cluster pass 2⁶⁴ and stay exact.
func TestPoolPast64Bits(t *testing.T) {
	bus := membus.New()
	const big = math.MaxUint64 - 1 // even: the hits can be exactly half
	fields := map[string][]byte{}
	for i := range 3 {
		fields[wire.CheckpointWorker+fmt.Sprint("w", i)] = wire.EncodeCredit(wire.Credit{Seq: 1, N: 1, TotalN: big, TotalHits: big / 2, Entries: 1})
	}
	if _, err := bus.SaveCheckpoint(context.Background(), "1-0", fields); err != nil {
		t.Fatal(err)
	}
	c := newCollector(t, bus, collector.Config{})
	started(t, c, bus)
	waitFor(t, func() bool { return !c.Summary().N.IsZero() })
	s := c.Summary()
	if got, want := s.N.String(), "55340232221128654842"; got != want {
		t.Errorf("N = %s, want %s", got, want)
	}
	if got := float64(s.Pi); got != 2 {
		t.Errorf("pi = %v, want 2", got)
	}
}

// A collector killed and restarted resumes from its checkpoint and the
// ledger: it ends with exactly the ledger's sums, and so does a second
// collector reading the same ledger at the same time.
func TestRestartAndTwoCollectorsAgree(t *testing.T) {
	bus := membus.New()
	cfg := collector.Config{CheckpointEvery: 5 * time.Millisecond, SweepEvery: 5 * time.Millisecond, LedgerWindow: time.Millisecond, VerifyFraction: 1e-9, Name: "one"}
	first := newCollector(t, bus, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- first.Run(ctx) }()
	var st wire.State
	waitFor(t, func() bool {
		b, _ := bus.State(ctx)
		st, _ = wire.DecodeState(b)
		return st.Job != ""
	})
	seq := map[string]uint64{}
	feed := func(k int) {
		for i := range k {
			w := fmt.Sprint("w", i%5)
			seq[w]++
			appendEntries(t, bus, nil, entry(st, w, seq[w], 4096, 0))
		}
	}
	feed(200)
	waitFor(t, func() bool { return first.Summary().N == mcpi.CountOf(200*4096) })
	time.Sleep(30 * time.Millisecond) // a few checkpoints and trims
	cancel()
	<-done
	if l := len(bus.Entries()); l >= 200 {
		t.Errorf("the ledger holds %d entries after checkpoints: not trimmed", l)
	}
	feed(100) // while no collector runs
	cfg.Name = "two"
	second := newCollector(t, bus, cfg)
	started(t, second, bus)
	cfg.Name = "three"
	third := newCollector(t, bus, cfg)
	started(t, third, bus)
	feed(100)
	total := uint64(0)
	for _, v := range seq {
		total += v
	}
	want := mcpi.CountOf(total * 4096)
	for _, c := range []*collector.Collector{second, third} {
		waitFor(t, func() bool { return c.Summary().N == want })
	}
	s2, s3 := second.Summary(), third.Summary()
	if s2.N != s3.N || s2.Hits != s3.Hits || s2.N != want {
		t.Errorf("two collectors: N %v / %v hits %v / %v; want N %v for both", s2.N, s3.N, s2.Hits, s3.Hits, want)
	}
}

func TestStopsAtTarget(t *testing.T) {
	bus := membus.New()
	// No worker says goodbye here: the final grace would wait for "w" to
	// vanish (6 s).
	c := newCollector(t, bus, collector.Config{TargetSE: 2e-3, MinSamples: 1, VerifyFraction: 0.01, FinalGrace: time.Second})
	st, done := started(t, c, bus)
	// SE ≈ 1.64/√N reaches 2e-3 at N ≈ 6.7e5.
	for seq := uint64(1); seq <= 200; seq++ {
		appendEntries(t, bus, nil, entry(st, "w", seq, 8192, 0))
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil at the target", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("collector did not stop at the target")
	}
	s := c.Summary()
	if s.StoppedBy != "target" || float64(s.StdErr) > 2e-3 {
		t.Errorf("stopped_by %q stderr %v", s.StoppedBy, s.StdErr)
	}
	b, _ := bus.State(context.Background())
	if st, err := wire.DecodeState(b); err != nil || st.Status != wire.Done {
		t.Errorf("state = %s (%v), want done", b, err)
	}
}

func TestResetStartsANewJob(t *testing.T) {
	bus := membus.New()
	ctx := context.Background()
	old := wire.State{Status: wire.Done, Job: "00000000000000aa", Seed: "00000000000000bb", MaxN: 1 << 20}
	_ = bus.SetState(ctx, wire.EncodeState(old))
	appendEntries(t, bus, nil, entry(old, "w", 1, 100, 0))
	c := newCollector(t, bus, collector.Config{Reset: true})
	started(t, c, bus)
	var st wire.State
	waitFor(t, func() bool {
		b, _ := bus.State(ctx)
		st, _ = wire.DecodeState(b)
		return st.Job != "" && st.Job != old.Job
	})
	if st.Status != wire.Running {
		t.Fatalf("state after --reset: %+v", st)
	}
	appendEntries(t, bus, nil, entry(old, "w", 2, 100, 0)) // a worker left running across the reset
	waitFor(t, func() bool { return c.Summary().RejectedBy["wrong_job"] == 1 })
	if s := c.Summary(); !s.N.IsZero() {
		t.Errorf("N = %v after reset, want 0", s.N)
	}
}

// waitFor polls cond: the collector works on its own goroutines and exposes
// no event for "processed", so the test waits on the observable state.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, cfg := range []collector.Config{
		{TargetSE: -1}, {TargetSE: math.NaN()}, {TargetSE: math.Inf(1)},
		{VerifyFraction: 2}, {AnonShare: 2}, {AnonShare: math.NaN()}, {MaxN: wire.MaxEntryN + 1}, {Key: []byte("short")},
		{ReaderTTL: -time.Minute}, {ReaderTTL: 7 * time.Second}, {CheckpointEvery: 2 * time.Minute}, // a TTL under four checkpoints
	} {
		if err := cfg.Validate(); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

func TestHistoryIsBoundedAndMonotone(t *testing.T) {
	c := newCollector(t, membus.New(), collector.Config{AnonShare: 1})
	for range 3 * collector.MaxHistory {
		c.Handle([]byte(`{"n": 100, "pi_approx": 3.12}`))
	}
	h := c.History()
	if len(h) > collector.MaxHistory || h[len(h)-1].N != 300*collector.MaxHistory {
		t.Fatalf("%d points, last N %v", len(h), h[len(h)-1].N)
	}
	for i := 1; i < len(h); i++ {
		if h[i].N <= h[i-1].N {
			t.Fatalf("history goes back at %d: %v then %v", i, h[i-1].N, h[i].N)
		}
	}
}

func TestPresence(t *testing.T) {
	var clock atomic.Int64 // the collector reads it from its goroutines
	clock.Store(time.Unix(1_000_000, 0).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	bus := membus.New()
	c := newCollector(t, bus, collector.Config{Now: now, VerifyFraction: 1e-9})
	st, _ := started(t, c, bus)
	presence := func(w, status string) []byte {
		return wire.EncodePresence(wire.Presence{Worker: w, Status: status, At: now()})
	}
	for _, w := range []string{"stays", "leaves", "vanishes"} {
		appendEntries(t, bus, nil, entry(st, w, 1, 100, 0))
	}
	waitFor(t, func() bool { return c.Summary().Workers == 3 })
	clock.Add(int64(5 * time.Second))
	c.HandlePresence(presence("stays", wire.Alive))
	c.HandlePresence(presence("leaves", wire.Left))
	c.HandlePresence(presence("never-reported", wire.Alive)) // ignored: not tracked
	c.HandlePresence([]byte(`{"worker": "x", "status": "sleeping"}`))
	clock.Add(int64(4 * time.Second)) // "vanishes" last spoke 9 s ago: more than 3 heartbeats
	got := map[string]string{}
	for _, w := range c.Summary().WorkerTable {
		got[w.ID] = w.Status
	}
	want := map[string]string{"stays": "alive", "leaves": "left", "vanishes": "vanished"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("statuses %v, want %v", got, want)
	}
	if s := c.Summary(); s.Rejected != 1 {
		t.Errorf("a bad presence message: rejected %d, want 1", s.Rejected)
	}
	// A worker says goodbye after its last append: that entry, credited
	// after the goodbye, does not make it alive again.
	appendEntries(t, bus, nil, entry(st, "leaves", 2, 100, 0))
	waitFor(t, func() bool { return c.Summary().N == mcpi.CountOf(400) })
	for _, w := range c.Summary().WorkerTable {
		if w.ID == "leaves" && w.Status != "left" {
			t.Errorf("after an entry credited after its goodbye, leaves is %s, want left", w.Status)
		}
	}
}

// In secure mode a heartbeat or goodbye counts only when signed with its
// worker's key and newer than the last one counted: another worker's key,
// no signature, or a replay of an older message is refused.
func TestSecurePresence(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Unix(1_000_000, 0).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	bus := membus.New()
	key := []byte("0123456789abcdef-job-key")
	c := newCollector(t, bus, collector.Config{Key: key, Now: now, VerifyFraction: 1e-9})
	st, _ := started(t, c, bus)
	appendEntries(t, bus, key, entry(st, "w1", 1, 100, 0), entry(st, "w2", 1, 100, 0))
	waitFor(t, func() bool { return c.Summary().Workers == 2 })
	status := func() string { w, _ := c.Snapshot().Worker("w1"); return w.Status }
	say := func(signer, status string, at time.Time) {
		p := wire.Presence{Worker: "w1", Status: status, At: at, Job: st.Job}
		if signer != "" {
			p = wire.SignPresence(wire.WorkerKey(key, signer), p)
		}
		c.HandlePresence(wire.EncodePresence(p))
		c.Rebuild()
	}
	t0 := now()
	say("w2", wire.Left, t0)                                                                 // w2's user says w1 left
	say("", wire.Left, t0)                                                                   // unsigned
	say("w1", wire.Left, t0.Add(-2*time.Minute))                                             // w1's own goodbye, of long ago
	other := wire.Presence{Worker: "w1", Status: wire.Left, At: t0, Job: "0123456789abcdef"} // of another job
	c.HandlePresence(wire.EncodePresence(wire.SignPresence(wire.WorkerKey(key, "w1"), other)))
	if got := status(); got != wire.Alive {
		t.Fatalf("after goodbyes for w1 signed by w2, unsigned, old, and of another job, w1 is %s, want alive", got)
	}
	heartbeat := t0.Add(time.Second)
	say("w1", wire.Alive, heartbeat)
	say("w1", wire.Left, t0.Add(2*time.Second))
	say("w1", wire.Alive, heartbeat) // a replay of the heartbeat
	if got := status(); got != wire.Left {
		t.Errorf("after w1's goodbye and a replay of its older heartbeat, w1 is %s, want left", got)
	}
	if got := c.Summary().RejectedBy["unauthenticated"]; got != 5 {
		t.Errorf("unauthenticated %d, want 5", got)
	}
}

func TestSecureMode(t *testing.T) {
	bus := membus.New()
	key := []byte("0123456789abcdef-job-key")
	c := newCollector(t, bus, collector.Config{Key: key, VerifyFraction: 1e-9})
	st, _ := started(t, c, bus)
	if !st.Secure {
		t.Fatalf("state %+v: want secure", st)
	}
	good := entry(st, "a", 1, 100, 0)
	appendEntries(t, bus, key, good)
	appendEntries(t, bus, nil, entry(st, "a", 2, 100, 0))                           // unsigned
	appendEntries(t, bus, []byte("another-key-0123456"), entry(st, "a", 3, 100, 0)) // signed with another key
	// b's key signing as a: the worker key is bound to the id.
	p := wire.EncodeEntry(entry(st, "a", 4, 100, 0))
	_ = bus.Append(context.Background(), "a", []wire.Signed{{Payload: p, Sig: wire.Sign(wire.WorkerKey(key, "b"), p)}})
	_ = bus.PublishRaw(context.Background(), []byte(`{"n": 1000, "pi_approx": 3.2}`))
	waitFor(t, func() bool { return c.Summary().Rejected == 4 })
	s := c.Summary()
	want := map[string]uint64{"unsigned": 1, "bad_signature": 2, "anonymous": 1}
	if s.N != mcpi.CountOf(100) || fmt.Sprint(s.RejectedBy) != fmt.Sprint(want) || s.Mode != "secure" {
		t.Errorf("N %v rejected_by %v mode %s; want 100, %v, secure", s.N, s.RejectedBy, s.Mode, want)
	}
}

// A worker whose entries do not replay is quarantined, its whole
// contribution leaves the estimate, and a restarted collector keeps it out.
func TestQuarantine(t *testing.T) {
	bus := membus.New()
	cfg := collector.Config{VerifyFraction: 1e-9, VerifySeed: 1}
	c := newCollector(t, bus, cfg)
	st, _ := started(t, c, bus)
	appendEntries(t, bus, nil, entry(st, "honest", 1, 1000, 0)) // the first entry is always replayed
	// A cheat large enough to matter is improbable, so it is replayed at once.
	appendEntries(t, bus, nil, entry(st, "cheat", 1, 100000, 0), entry(st, "cheat", 2, 100000, +3000))
	waitFor(t, func() bool { return len(c.Summary().Quarantined) == 1 })
	s := c.Summary()
	if s.N != mcpi.CountOf(1000) || s.Quarantined[0].Worker != "cheat" || s.Quarantined[0].Seq != 2 {
		t.Errorf("N %v quarantined %+v; want N 1000 and cheat at seq 2", s.N, s.Quarantined)
	}
	for _, w := range s.WorkerTable {
		if (w.ID == "cheat") != (w.Status == "quarantined") || s.Workers != 1 {
			t.Errorf("worker table %+v, workers %d: want cheat quarantined, one worker counted", s.WorkerTable, s.Workers)
		}
	}
	var q map[string][]byte
	waitFor(t, func() bool { q, _ = bus.Quarantined(context.Background()); return q["cheat"] != nil }) // written after the pool changed
	var rec wire.QuarantineRecord
	if err := json.Unmarshal(q["cheat"], &rec); err != nil || rec.Reason != "replay_mismatch" {
		t.Errorf("quarantine record %s (%v)", q["cheat"], err)
	}
	appendEntries(t, bus, nil, entry(st, "cheat", 3, 100000, 0))
	waitFor(t, func() bool { return c.Summary().RejectedBy["quarantined"] == 1 })
	again := newCollector(t, bus, collector.Config{Name: "again"})
	started(t, again, bus)
	waitFor(t, func() bool { return again.Summary().N == mcpi.CountOf(1000) })
}

// Counters saturate: workers with 2⁶⁴−1 and 2 entries make more batches
// than a uint64 holds, and the count stays at its largest value instead of
// wrapping to a small one.
func TestBatchesSaturate(t *testing.T) {
	bus := membus.New()
	fields := map[string][]byte{
		wire.CheckpointWorker + "a": wire.EncodeCredit(wire.Credit{Seq: math.MaxUint64, N: 1, TotalN: 100, TotalHits: 78, Entries: math.MaxUint64}),
		wire.CheckpointWorker + "b": wire.EncodeCredit(wire.Credit{Seq: 2, N: 50, TotalN: 100, TotalHits: 78, Entries: 2}),
	}
	if _, err := bus.SaveCheckpoint(context.Background(), "1-0", fields); err != nil {
		t.Fatal(err)
	}
	c := newCollector(t, bus, collector.Config{})
	started(t, c, bus)
	waitFor(t, func() bool { return c.Summary().Workers == 2 })
	if s := c.Summary(); s.Batches != math.MaxUint64 {
		t.Errorf("batches %d; want %d", s.Batches, uint64(math.MaxUint64))
	}
}

// The workers a job tracks are capped: entries of a new id past the cap are
// refused by name, tracked workers keep working.
func TestMaxWorkers(t *testing.T) {
	bus := membus.New()
	c := newCollector(t, bus, collector.Config{MaxWorkers: 2, VerifyFraction: 1e-9})
	st, _ := started(t, c, bus)
	appendEntries(t, bus, nil, entry(st, "a", 1, 100, 0), entry(st, "b", 1, 100, 0))
	waitFor(t, func() bool { return c.Summary().Batches == 2 })
	appendEntries(t, bus, nil, entry(st, "c", 1, 100, 0), entry(st, "a", 2, 100, 0))
	waitFor(t, func() bool { return c.Summary().Batches == 3 && c.Summary().Rejected == 1 })
	if s := c.Summary(); s.Workers != 2 || s.RejectedBy["too_many_workers"] != 1 || s.N != mcpi.CountOf(300) {
		t.Errorf("workers %d rejected %v N %v; want 2, one too_many_workers, 300", s.Workers, s.RejectedBy, s.N)
	}
}

// A collector still running when another resets the job stops with
// ErrJobReset: it must not checkpoint or trim the new job with the old
// job's credits.
func TestStopsWhenAnotherCollectorResets(t *testing.T) {
	bus := membus.New()
	c := newCollector(t, bus, collector.Config{CheckpointEvery: 5 * time.Millisecond})
	st, done := started(t, c, bus)
	appendEntries(t, bus, nil, entry(st, "w", 1, 100, 0))
	other := st
	other.Job = "00000000000000ee"
	if err := bus.SetState(context.Background(), wire.EncodeState(other)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, collector.ErrJobReset) {
			t.Fatalf("Run = %v, want ErrJobReset", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the collector went on after the job was reset")
	}
	cp, _ := bus.Checkpoint(context.Background())
	if string(cp["job"]) != "" && string(cp["job"]) != st.Job {
		t.Errorf("checkpoint of job %s", cp["job"])
	}
}

// countingBus records the most entries of one stream a read returned.
type countingBus struct {
	*membus.Bus
	mu   sync.Mutex
	most map[string][]int // per stream, the entries each read returned
}

func (b *countingBus) ReadLedgers(ctx context.Context, from []wire.Cursor, count int) ([]wire.LedgerEntry, error) {
	es, err := b.Bus.ReadLedgers(ctx, from, count)
	per := map[string]int{}
	for _, e := range es {
		per[e.Worker]++
	}
	b.mu.Lock()
	for w, k := range per {
		b.most[w] = append(b.most[w], k)
	}
	b.mu.Unlock()
	return es, err
}

// A stream that held an oversized entry is read one entry at a time from
// then on: a worker appending huge entries to its own stream cannot make
// one read hold many of them.
func TestOversizedStreamsAreReadAlone(t *testing.T) {
	bus := &countingBus{Bus: membus.New(), most: map[string][]int{}}
	c := newCollector(t, bus, collector.Config{VerifyFraction: 1e-9})
	st, _ := started(t, c, bus.Bus)
	big := append([]byte(`{"v":2,`), bytes.Repeat([]byte("x"), wire.MaxSize)...) // an entry's echo on the channel is not counted there
	var es []wire.Signed
	for range 100 {
		es = append(es, wire.Signed{Payload: big})
	}
	if err := bus.Append(context.Background(), "big", es); err != nil {
		t.Fatal(err)
	}
	appendEntries(t, bus.Bus, nil, entry(st, "honest", 1, 100, 0))
	waitFor(t, func() bool { s := c.Summary(); return s.RejectedBy["oversized"] == 100 && s.N == mcpi.CountOf(100) })
	bus.mu.Lock()
	reads := bus.most["big"]
	bus.mu.Unlock()
	if len(reads) < 2 || reads[0] > 32 {
		t.Fatalf("reads of the oversized stream returned %v entries: want at most one page, then one at a time", reads)
	}
	for _, k := range reads[1:] {
		if k > 1 {
			t.Fatalf("reads of the oversized stream returned %v entries: after the first, one at a time", reads)
		}
	}
}

// trimCounter counts the trims of each stream.
type trimCounter struct {
	*membus.Bus
	mu    sync.Mutex
	trims map[string]int
}

func (b *trimCounter) TrimLedgers(ctx context.Context, minIDs map[string]string) error {
	b.mu.Lock()
	for w := range minIDs {
		b.trims[w]++
	}
	b.mu.Unlock()
	return b.Bus.TrimLedgers(ctx, minIDs)
}

// A stream read on and on is trimmed once per quarter of the ledger window,
// not at every checkpoint, and keeps at most about 1.25 windows of entries.
func TestTrimEveryQuarterWindow(t *testing.T) {
	mem := membus.New()
	bus := &trimCounter{Bus: mem, trims: map[string]int{}}
	const window, every = 200 * time.Millisecond, 5 * time.Millisecond
	c := newCollector(t, bus, collector.Config{CheckpointEvery: every, SweepEvery: every, LedgerWindow: window, VerifyFraction: 1e-9})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	var st wire.State
	waitFor(t, func() bool { b, _ := mem.State(ctx); st, _ = wire.DecodeState(b); return st.Job != "" })
	start := time.Now()
	for seq := uint64(1); time.Since(start) < 1500*time.Millisecond; seq++ {
		appendEntries(t, mem, nil, entry(st, "w", seq, 4096, 0))
		time.Sleep(every)
	}
	bus.mu.Lock()
	trims := bus.trims["w"]
	bus.mu.Unlock()
	// 1.3 s of trim points past the window: about 26 quarters, 260 checkpoints.
	if trims < 3 || trims > 60 {
		t.Errorf("the stream was trimmed %d times in 1.5 s with a window of %v: want one per quarter window", trims, window)
	}
	n, _ := mem.LedgerLen(ctx, "w")
	if most := int64((window + window/4 + 100*time.Millisecond) / every); n > most {
		t.Errorf("the stream holds %d entries, one per %v: want at most %d", n, every, most)
	}
	t.Logf("%d trims, %d entries kept", trims, n)
}

// slowBus takes delay over each read of many streams (a sweep's pages).
type slowBus struct {
	*membus.Bus
	delay time.Duration
	pages atomic.Int64
}

func (b *slowBus) ReadLedgers(ctx context.Context, from []wire.Cursor, count int) ([]wire.LedgerEntry, error) {
	if len(from) > 1 {
		b.pages.Add(1)
		time.Sleep(b.delay)
	}
	return b.Bus.ReadLedgers(ctx, from, count)
}

// A sweep of many streams reads the streams announced meanwhile between
// its pages: news does not wait for the sweep's end.
func TestSweepReadsNewsBetweenPages(t *testing.T) {
	mem := membus.New()
	bus := &slowBus{Bus: mem, delay: 30 * time.Millisecond}
	st := wire.State{Status: wire.Running, Job: "00000000000000e1", Seed: "00000000000000e2", MaxN: wire.MaxEntryN}
	if err := mem.SetState(context.Background(), wire.EncodeState(st)); err != nil {
		t.Fatal(err)
	}
	const pages = 20
	for w := range pages * 256 {
		appendEntries(t, mem, nil, entry(st, fmt.Sprint("w", w), 1, 64, 0))
	}
	c := newCollector(t, bus, collector.Config{VerifyFraction: 1e-9})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, func() bool { return bus.pages.Load() >= 2 }) // the start-up sweep is under way
	appendEntries(t, mem, nil, entry(st, "news", 1, 64, 0))
	waitFor(t, func() bool {
		for _, w := range c.Summary().WorkerTable {
			if w.ID == "news" {
				return true
			}
		}
		return false
	})
	if read := bus.pages.Load(); read >= pages {
		t.Errorf("the news was credited after the sweep's %d pages; want between them", read)
	}
}

// A report that does not decode is logged under the worker it claims to
// be from, once per claimed id and reason: one sender's bad report does not
// silence the log of another's. One that claims no id is "(unnamed)". A
// bad presence message is logged as a report is.
func TestRejectionsLoggedBySender(t *testing.T) {
	var logs bytes.Buffer
	c, err := collector.New(membus.New(), collector.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		`{"worker":"mallory","n":-1,"pi_approx":3}`,
		`{"worker":"mallory","n":-2,"pi_approx":3}`, // the same sender and reason: not logged again
		`{"worker":"eve","n":-1,"pi_approx":3}`,
		`{"n":-1,"pi_approx":3}`,
	} {
		c.Handle([]byte(p))
	}
	c.HandlePresence([]byte(`{"worker":"trudy","status":"sleeping"}`)) // a bad presence message is logged too
	out := logs.String()
	for sender, want := range map[string]int{`sender="claimed mallory"`: 1, `sender="claimed eve"`: 1, `sender=(unnamed)`: 1, `sender=trudy reason=bad_field`: 1} {
		if got := strings.Count(out, sender); got != want {
			t.Errorf("%s logged %d times, want %d:\n%s", sender, got, want, out)
		}
	}
	if s := c.Summary(); s.RejectedBy["bad_n"] != 4 {
		t.Errorf("bad_n counted %d times, want 4", s.RejectedBy["bad_n"])
	}
}

// Entries refused for their size or shape are deleted from the ledger at
// once, not left for the trim, and each sender's flood is logged once per
// reason, whatever the number of entries.
func TestJunkIsDeleted(t *testing.T) {
	var logs syncBuffer
	bus := membus.New()
	c, err := collector.New(bus, collector.Config{VerifyFraction: 1e-9, LedgerWindow: time.Hour, Kernel: mcpi.Generic,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := started(t, c, bus)
	ctx := context.Background()
	big := []byte(`{"v":2,"worker":"mallory","pad":"` + strings.Repeat("x", 2*wire.MaxSize) + `"}`)
	for range 5 {
		_ = bus.Append(ctx, "mallory", []wire.Signed{{Payload: big}})
		_ = bus.Append(ctx, "mallory", []wire.Signed{{Payload: []byte(`not json`)}})
	}
	appendEntries(t, bus, nil, entry(st, "mallory", 1, 100, 0))
	waitFor(t, func() bool { return c.Summary().Workers == 1 })
	waitFor(t, func() bool { n, _ := bus.LedgerLen(ctx, "mallory"); return n == 1 }) // the good entry stays for the window
	s := c.Summary()
	if s.RejectedBy["oversized"] != 5 || s.RejectedBy["not_json"] != 10 { // not_json: the ledger's, and the channel's copies
		t.Errorf("rejected %v, want 5 oversized and 10 not_json", s.RejectedBy)
	}
	if got := strings.Count(logs.String(), `sender=mallory`); got != 2 {
		t.Errorf("mallory's rejections logged %d times, want once per reason (2):\n%s", got, logs.String())
	}
}

// syncBuffer is a bytes.Buffer that a logger may write from any goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
