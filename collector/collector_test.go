package collector_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
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

func newCollector(t *testing.T, bus collector.Bus, cfg collector.Config) *collector.Collector {
	t.Helper()
	cfg.Logger = quiet
	c, err := collector.New(bus, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func report(worker string, seq, n, hits, totalN, totalHits uint64) []byte {
	return wire.Encode(wire.Report{N: n, Hits: hits, Worker: worker, Seq: seq, TotalN: totalN, TotalHits: totalHits})
}

func TestHandle(t *testing.T) {
	c := newCollector(t, membus.New(), collector.Config{})
	for _, p := range []string{
		string(report("a", 1, 100, 80, 100, 80)),
		string(report("a", 2, 100, 70, 200, 150)),
		string(report("a", 2, 100, 70, 200, 150)), // duplicate
		string(report("a", 1, 100, 80, 100, 80)),  // older
		string(report("b", 5, 10, 9, 1000, 790)),  // first seen at seq 5
		`{"n": 1000, "pi_approx": 3.2}`,           // anonymous: 800 hits
		`garbage`,
		`{"n": -1, "pi_approx": 3}`,
		string(report("a", 3, 100, 70, 150, 100)), // backwards
		string(report("a", 3, 100, 70, 300, 200)), // does not add up
		string(report("b", 5, 10, 9, 1000, 791)),  // same seq, other totals
	} {
		c.Handle([]byte(p))
	}
	s := c.Summary()
	if got, want := s.N, mcpi.CountOf(200+1000+1000); got != want {
		t.Errorf("N = %v, want %v", got, want)
	}
	if got, want := s.Hits, mcpi.CountOf(150+790+800); got != want {
		t.Errorf("Hits = %v, want %v", got, want)
	}
	if s.Workers != 2 || s.Batches != 2+5+1 || s.Duplicates != 2 || s.Anonymous != 1 {
		t.Errorf("workers %d batches %d duplicates %d anonymous %d; want 2, 8, 2, 1", s.Workers, s.Batches, s.Duplicates, s.Anonymous)
	}
	want := map[string]uint64{"not_json": 1, "bad_n": 1, "totals_backward": 1, "inconsistent": 2}
	if s.Rejected != 5 || fmt.Sprint(s.RejectedBy) != fmt.Sprint(want) {
		t.Errorf("rejected %d %v, want 5 %v", s.Rejected, s.RejectedBy, want)
	}
}

// Totals of a cluster pass 2⁶⁴ and stay exact.
func TestPoolPast64Bits(t *testing.T) {
	c := newCollector(t, membus.New(), collector.Config{})
	const big = math.MaxUint64 - 1 // even: the hits can be exactly half
	for i := range 3 {
		c.Handle(report(fmt.Sprint("w", i), 1, big, big/2, big, big/2))
	}
	s := c.Summary()
	if got, want := s.N.String(), "55340232221128654842"; got != want {
		t.Errorf("N = %s, want %s", got, want)
	}
	if got := float64(s.Pi); got != 2 {
		t.Errorf("pi = %v, want 2", got)
	}
}

func run(t *testing.T, c *collector.Collector, ctx context.Context) <-chan error {
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	return done
}

func TestRebuildsFromTotalsAndStopsAtTarget(t *testing.T) {
	bus := membus.New()
	ctx := t.Context()
	// A job that ran before the collector started.
	_ = bus.Publish(ctx, "early", report("early", 3, 1000, 785, 3000, 2356))
	c := newCollector(t, bus, collector.Config{TargetSE: 1e-3, MinSamples: 1})
	done := run(t, c, ctx)
	waitFor(t, func() bool { return c.Summary().N == mcpi.CountOf(3000) })

	// Enough samples to reach SE ≤ 1e-3: SE ≈ 1.64/√N, so N ≥ 2.7e6.
	n := uint64(4_000_000)
	h := uint64(float64(n) * math.Pi / 4)
	_ = bus.Publish(ctx, "late", report("late", 1, n, h, n, h))
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil at the target", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("collector did not stop at the target")
	}
	s := c.Summary()
	if s.StoppedBy != "target" || float64(s.StdErr) > 1e-3 {
		t.Errorf("stopped_by %q stderr %v", s.StoppedBy, s.StdErr)
	}
	b, _ := bus.State(ctx)
	if st, err := wire.DecodeState(b); err != nil || st.Status != wire.Done {
		t.Errorf("state = %s (%v), want done", b, err)
	}
}

func TestResetStartsANewJob(t *testing.T) {
	bus := membus.New()
	ctx, cancel := context.WithCancel(t.Context())
	_ = bus.Publish(ctx, "old", report("old", 1, 10, 8, 10, 8))
	_ = bus.SetState(ctx, wire.EncodeState(wire.State{Status: wire.Done}))
	c := newCollector(t, bus, collector.Config{Reset: true})
	done := run(t, c, ctx)
	waitFor(t, func() bool {
		b, _ := bus.State(ctx)
		st, err := wire.DecodeState(b)
		return err == nil && st.Status == wire.Running
	})
	cancel()
	<-done
	if s := c.Summary(); !s.N.IsZero() {
		t.Errorf("N = %v after reset, want 0", s.N)
	}
}

// waitFor polls cond: the collector works on its own goroutine and exposes
// no event for "processed", so the test waits on the observable state.
func waitFor(t *testing.T, cond func() bool) {
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
	for _, se := range []float64{-1, math.NaN(), math.Inf(1)} {
		if err := (collector.Config{TargetSE: se}).Validate(); err == nil {
			t.Errorf("TargetSE %v accepted", se)
		}
	}
}

func TestHistoryIsBoundedAndMonotone(t *testing.T) {
	c := newCollector(t, membus.New(), collector.Config{})
	for seq := uint64(1); seq <= 3*collector.MaxHistory; seq++ {
		c.Handle(report("w", seq, 100, 78, 100*seq, 78*seq))
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
	now := time.Unix(1_000_000, 0)
	c, err := collector.New(membus.New(), collector.Config{Logger: quiet, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	presence := func(w, status string) []byte {
		return wire.EncodePresence(wire.Presence{Worker: w, Status: status, At: now})
	}
	c.Handle(report("stays", 1, 100, 78, 100, 78))
	c.Handle(report("leaves", 1, 100, 78, 100, 78))
	c.Handle(report("vanishes", 1, 100, 78, 100, 78))
	now = now.Add(5 * time.Second)
	c.HandlePresence(presence("stays", wire.Alive))
	c.HandlePresence(presence("leaves", wire.Left))
	c.HandlePresence([]byte(`{"worker": "x", "status": "sleeping"}`))
	now = now.Add(4 * time.Second) // "vanishes" last spoke 9 s ago: more than 3 heartbeats
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
}

// Counters saturate: workers at seq 2⁶⁴−1 and 2 make more batches than a
// uint64 holds, and the count stays at its largest value instead of
// wrapping to a small one.
func TestBatchesSaturate(t *testing.T) {
	c := newCollector(t, membus.New(), collector.Config{})
	c.Handle(report("a", math.MaxUint64, 10, 8, 100, 78))
	c.Handle(report("b", 2, 10, 8, 100, 78))
	c.Handle([]byte(`{"n": 4, "pi_approx": 3}`))
	if s := c.Summary(); s.Batches != math.MaxUint64 || s.Workers != 2 {
		t.Errorf("batches %d, workers %d; want %d, 2", s.Batches, s.Workers, uint64(math.MaxUint64))
	}
}
