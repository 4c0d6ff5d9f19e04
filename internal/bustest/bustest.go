// Package bustest is the conformance suite every bus must pass: the same
// tests run against internal/membus and, over a real redis-server,
// internal/redisbus.
package bustest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/worker"
)

// Bus is a bus as both sides see it.
type Bus interface {
	worker.Bus
	collector.Bus
}

// Open returns a new bus for one job named channel; jobs with different
// channels must not see each other.
type Open func(t *testing.T, channel string) Bus

// Run runs the suite.
func Run(t *testing.T, open Open) {
	t.Run("PublishReachesSubscriberAndTotals", func(t *testing.T) { testPublish(t, open) })
	t.Run("LatestAndTotalsKeepTheNewest", func(t *testing.T) { testLatest(t, open) })
	t.Run("StateAndControl", func(t *testing.T) { testState(t, open) })
	t.Run("Reset", func(t *testing.T) { testReset(t, open) })
	t.Run("JobsAreIsolated", func(t *testing.T) { testIsolation(t, open) })
	t.Run("SubscribeEndsWithContext", func(t *testing.T) { testSubscribeEnds(t, open) })
	t.Run("HeartbeatsArePresence", func(t *testing.T) { testHeartbeat(t, open) })
}

func testHeartbeat(t *testing.T, open Open) {
	bus := open(t, "job")
	ctx := t.Context()
	msgs := bus.Subscribe(ctx)
	Subscribed(t, msgs)
	if err := bus.Heartbeat(ctx, "w", []byte("hb")); err != nil {
		t.Fatal(err)
	}
	if err := bus.Publish(ctx, "w", []byte("report")); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for range 2 {
		select {
		case m := <-msgs:
			got[string(m.Payload)] = m.Presence
		case <-time.After(Timeout):
			t.Fatal("no message within", Timeout)
		}
	}
	if p, ok := got["hb"]; !ok || !p || got["report"] {
		t.Fatalf("presence flags %v; want the heartbeat marked presence and the report not", got)
	}
	if b, _ := bus.Latest(ctx, "w"); string(b) != "report" {
		t.Fatalf("a heartbeat changed the latest report: %q", b)
	}
}

// Timeout bounds every wait of the suite; a correct bus answers in milliseconds.
const Timeout = 10 * time.Second

// Receive returns the next report payload from msgs, skipping Subscribed
// markers, or fails after Timeout.
func Receive(t testing.TB, msgs <-chan collector.Message) []byte {
	t.Helper()
	timer := time.NewTimer(Timeout)
	defer timer.Stop()
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatal("subscription closed")
			}
			if !m.Subscribed {
				return m.Payload
			}
		case <-timer.C:
			t.Fatal("no message within", Timeout)
		}
	}
}

// Subscribed waits for the Subscribed marker that starts every subscription.
func Subscribed(t testing.TB, msgs <-chan collector.Message) {
	t.Helper()
	select {
	case m := <-msgs:
		if !m.Subscribed {
			t.Fatalf("first message %q is not the Subscribed marker", m.Payload)
		}
	case <-time.After(Timeout):
		t.Fatal("no Subscribed marker within", Timeout)
	}
}

func testPublish(t *testing.T, open Open) {
	bus := open(t, "job")
	ctx := t.Context()
	msgs := bus.Subscribe(ctx)
	Subscribed(t, msgs)
	for i := range 100 {
		if err := bus.Publish(ctx, "w1", fmt.Appendf(nil, `{"seq":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 { // one publisher's messages arrive in order
		if got, want := string(Receive(t, msgs)), fmt.Sprintf(`{"seq":%d}`, i); got != want {
			t.Fatalf("message %d = %s, want %s", i, got, want)
		}
	}
	totals, err := bus.Totals(ctx)
	if err != nil || len(totals) != 1 || string(totals[0]) != `{"seq":99}` {
		t.Fatalf("Totals = %q, %v; want the last report", totals, err)
	}
}

func testLatest(t *testing.T, open Open) {
	bus := open(t, "job")
	ctx := t.Context()
	if b, err := bus.Latest(ctx, "nobody"); b != nil || err != nil {
		t.Fatalf("Latest(unknown) = %q, %v; want nil, nil", b, err)
	}
	// Published with no subscriber: still recorded.
	for _, p := range []struct{ w, r string }{{"a", "a1"}, {"b", "b1"}, {"a", "a2"}} {
		if err := bus.Publish(ctx, p.w, []byte(p.r)); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := bus.Latest(ctx, "a"); string(b) != "a2" || err != nil {
		t.Fatalf("Latest(a) = %q, %v; want a2", b, err)
	}
	totals, err := bus.Totals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]string, len(totals))
	for i, b := range totals {
		got[i] = string(b)
	}
	slices.Sort(got)
	if want := []string{"a2", "b1"}; !slices.Equal(got, want) {
		t.Fatalf("Totals = %q, want %q", got, want)
	}
}

func testState(t *testing.T, open Open) {
	bus := open(t, "job")
	ctx := t.Context()
	if b, err := bus.State(ctx); b != nil || err != nil {
		t.Fatalf("State of a new job = %q, %v; want nil", b, err)
	}
	ctrl := bus.Control(ctx)
	// A control subscription is only sure to be live once it has delivered
	// something; keep setting the state until a message arrives.
	deadline := time.After(Timeout)
	for got := false; !got; {
		if err := bus.SetState(ctx, []byte(`{"status":"done"}`)); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-ctrl:
			got = string(m) == `{"status":"done"}`
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatal("no control message within", Timeout)
		}
	}
	if b, err := bus.State(ctx); string(b) != `{"status":"done"}` || err != nil {
		t.Fatalf("State = %q, %v", b, err)
	}
}

func testReset(t *testing.T, open Open) {
	bus := open(t, "job")
	ctx := t.Context()
	if err := bus.Publish(ctx, "a", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := bus.SetState(ctx, []byte("s")); err != nil {
		t.Fatal(err)
	}
	if err := bus.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	totals, err := bus.Totals(ctx)
	state, err2 := bus.State(ctx)
	if len(totals) != 0 || state != nil || err != nil || err2 != nil {
		t.Fatalf("after Reset: totals %q state %q (%v, %v)", totals, state, err, err2)
	}
}

func testIsolation(t *testing.T, open Open) {
	a, b := open(t, "job-a"), open(t, "job-b")
	ctx := t.Context()
	msgs := b.Subscribe(ctx)
	Subscribed(t, msgs)
	if err := a.Publish(ctx, "w", []byte("for a")); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, "w", []byte("for b")); err != nil {
		t.Fatal(err)
	}
	if got := string(Receive(t, msgs)); got != "for b" {
		t.Fatalf("job b received %q", got)
	}
	if l, _ := b.Latest(ctx, "w"); string(l) != "for b" {
		t.Fatalf("job b's latest is %q", l)
	}
}

func testSubscribeEnds(t *testing.T, open Open) {
	bus := open(t, "job")
	ctx, cancel := context.WithCancel(t.Context())
	msgs, ctrl := bus.Subscribe(ctx), bus.Control(ctx)
	cancel()
	for _, drain := range []func() bool{
		func() bool { _, ok := <-msgs; return ok },
		func() bool { _, ok := <-ctrl; return ok },
	} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			for drain() {
			}
		}()
		select {
		case <-done:
		case <-time.After(Timeout):
			t.Fatal("channel not closed after cancel")
		}
	}
}
