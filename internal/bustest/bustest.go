// Package bustest is the conformance suite every bus must pass: the same
// tests run against internal/membus and, over a real redis-server,
// internal/redisbus.
package bustest

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/worker"
)

// Bus is a bus as both sides see it, and as a seed-style peer uses it.
type Bus interface {
	worker.Bus
	collector.Bus
	PublishRaw(ctx context.Context, payload []byte) error
}

// Open returns a new bus for one job named channel; jobs with different
// channels must not see each other.
type Open func(t *testing.T, channel string) Bus

// Run runs the suite.
func Run(t *testing.T, open Open) {
	t.Run("AppendReachesLedgerAndSubscriber", func(t *testing.T) { testAppend(t, open) })
	t.Run("ReadLedgersPagesEachStream", func(t *testing.T) { testReadLedgers(t, open) })
	t.Run("ScanLedgersFindsEveryStream", func(t *testing.T) { testScan(t, open) })
	t.Run("TimeIsBeforeLaterEntries", func(t *testing.T) { testTime(t, open) })
	t.Run("TrimLedgers", func(t *testing.T) { testTrim(t, open) })
	t.Run("CheckpointOnlyMovesForward", func(t *testing.T) { testCheckpoint(t, open) })
	t.Run("ReadersAndQuarantine", func(t *testing.T) { testReadersQuarantine(t, open) })
	t.Run("StateAndControl", func(t *testing.T) { testState(t, open) })
	t.Run("Reset", func(t *testing.T) { testReset(t, open) })
	t.Run("JobsAreIsolated", func(t *testing.T) { testIsolation(t, open) })
	t.Run("SubscribeEndsWithContext", func(t *testing.T) { testSubscribeEnds(t, open) })
	t.Run("HeartbeatsArePresence", func(t *testing.T) { testHeartbeat(t, open) })
	t.Run("Lease", func(t *testing.T) { testLease(t, open) })
}

// Timeout bounds every wait of the suite; a correct bus answers in milliseconds.
const Timeout = 10 * time.Second

// Receive returns the next report payload from msgs, skipping KindSubscribed
// markers, or fails after Timeout.
func Receive(t testing.TB, msgs <-chan wire.Message) []byte {
	t.Helper()
	timer := time.NewTimer(Timeout)
	defer timer.Stop()
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatal("subscription closed")
			}
			if m.Kind != wire.KindSubscribed {
				return m.Payload
			}
		case <-timer.C:
			t.Fatal("no message within", Timeout)
		}
	}
}

// Subscribed waits for the KindSubscribed marker that starts every subscription.
func Subscribed(t testing.TB, msgs <-chan wire.Message) {
	t.Helper()
	select {
	case m := <-msgs:
		if m.Kind != wire.KindSubscribed {
			t.Fatalf("first message %q is not the Subscribed marker", m.Payload)
		}
	case <-time.After(Timeout):
		t.Fatal("no Subscribed marker within", Timeout)
	}
}

func signed(n int, prefix string) []wire.Signed {
	out := make([]wire.Signed, n)
	for i := range out {
		out[i] = wire.Signed{Payload: fmt.Appendf(nil, "%s%d", prefix, i)}
		if i%2 == 0 {
			out[i].Sig = fmt.Sprintf("sig%d", i)
		}
	}
	return out
}

// Entries returns every entry of every worker's stream of the ledger.
func Entries(t testing.TB, l collector.LedgerReader) []wire.LedgerEntry {
	t.Helper()
	var out []wire.LedgerEntry
	if err := collector.ReadLedger(context.Background(), l, func(le wire.LedgerEntry) { out = append(out, le) }); err != nil {
		t.Fatal(err)
	}
	return out
}

// readAll reads worker's stream after after, seven entries at a time.
func readAll(t *testing.T, bus Bus, worker, after string) []wire.LedgerEntry {
	t.Helper()
	var all []wire.LedgerEntry
	for {
		page, err := bus.ReadLedgers(t.Context(), []wire.Cursor{{Worker: worker, After: after}}, 7)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			if e.Worker != worker {
				t.Fatalf("an entry of stream %q read from %q's", e.Worker, worker)
			}
		}
		all = append(all, page...)
		if len(page) < 7 {
			return all
		}
		after = page[len(page)-1].ID
	}
}

func testAppend(t *testing.T, open Open) {
	bus := open(t, "job")
	ctx := t.Context()
	msgs := bus.Subscribe(ctx)
	Subscribed(t, msgs)
	in := signed(100, "e")
	if err := bus.Append(ctx, "w", in[:60]); err != nil {
		t.Fatal(err)
	}
	if err := bus.Append(ctx, "w", in[60:]); err != nil {
		t.Fatal(err)
	}
	for i := range 100 { // entries arrive on the channel in order
		if got, want := string(Receive(t, msgs)), string(in[i].Payload); got != want {
			t.Fatalf("message %d = %s, want %s", i, got, want)
		}
	}
	all := readAll(t, bus, "w", "")
	if len(all) != 100 {
		t.Fatalf("the stream holds %d entries, want 100", len(all))
	}
	var prev wire.ID
	for i, e := range all {
		id, err := wire.ParseID(e.ID)
		if err != nil || !prev.Less(id) {
			t.Fatalf("entry %d has id %q after %v: want increasing stream ids", i, e.ID, prev)
		}
		prev = id
		if string(e.Payload) != string(in[i].Payload) || e.Sig != in[i].Sig {
			t.Fatalf("entry %d = %q/%q, want %q/%q", i, e.Payload, e.Sig, in[i].Payload, in[i].Sig)
		}
	}
	if other := readAll(t, bus, "v", ""); len(other) != 0 {
		t.Fatalf("another worker's stream holds %d entries", len(other))
	}
}

func testReadLedgers(t *testing.T, open Open) {
	bus := open(t, "job")
	ctx := t.Context()
	if got, err := bus.ReadLedgers(ctx, []wire.Cursor{{Worker: "none"}}, 10); len(got) != 0 || err != nil {
		t.Fatalf("a stream that does not exist: %v, %v", got, err)
	}
	if got, err := bus.ReadLedgers(ctx, nil, 10); len(got) != 0 || err != nil {
		t.Fatalf("no streams: %v, %v", got, err)
	}
	must(t, bus.Append(ctx, "a", signed(5, "a")))
	must(t, bus.Append(ctx, "b", signed(3, "b")))
	must(t, bus.Append(ctx, "a:x*", signed(2, "star"))) // a name with a colon and a glob character
	a := readAll(t, bus, "a", "")
	// One read of three streams: up to count of each, each in order, each
	// from its own cursor.
	got, err := bus.ReadLedgers(ctx, []wire.Cursor{{Worker: "a", After: a[1].ID}, {Worker: "b"}, {Worker: "a:x*"}, {Worker: "none"}}, 2)
	must(t, err)
	per := map[string][]string{}
	for _, e := range got {
		per[e.Worker] = append(per[e.Worker], string(e.Payload))
	}
	want := map[string][]string{"a": {"a2", "a3"}, "b": {"b0", "b1"}, "a:x*": {"star0", "star1"}}
	if fmt.Sprint(per) != fmt.Sprint(want) {
		t.Fatalf("ReadLedgers = %v, want %v", per, want)
	}
	if rest := readAll(t, bus, "a", a[4].ID); len(rest) != 0 {
		t.Fatalf("read past the end: %v", rest)
	}
}

func testScan(t *testing.T, open Open) {
	bus := open(t, "job")
	other := open(t, "job*") // a job whose name is a glob matching this one's keys
	ctx := t.Context()
	want := map[string]bool{}
	for i := range 1500 { // more than one SCAN page
		w := fmt.Sprintf("w%d", i)
		want[w] = true
		must(t, bus.Append(ctx, w, signed(1, w)))
	}
	must(t, other.Append(ctx, "intruder", signed(1, "x")))
	got := map[string]bool{}
	var cursor uint64
	for {
		ws, next, err := bus.ScanLedgers(ctx, cursor)
		must(t, err)
		for _, w := range ws {
			got[w] = true
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	if !maps.Equal(got, want) {
		t.Fatalf("ScanLedgers found %d workers (intruder: %v), want the 1500 of this job", len(got), got["intruder"])
	}
}

func testTime(t *testing.T, open Open) {
	bus := open(t, "job")
	ctx := t.Context()
	must(t, bus.Append(ctx, "w", signed(1, "before")))
	time.Sleep(2 * time.Millisecond)
	mark, err := bus.Time(ctx)
	must(t, err)
	time.Sleep(2 * time.Millisecond)
	must(t, bus.Append(ctx, "v", signed(1, "after")))
	before, after := readAll(t, bus, "w", ""), readAll(t, bus, "v", "")
	if !wire.Later(mark, before[0].ID) || !wire.Later(after[0].ID, mark) {
		t.Fatalf("Time = %s between entries %s and %s: want it after the first and before the second", mark, before[0].ID, after[0].ID)
	}
}

func testTrim(t *testing.T, open Open) {
	bus := open(t, "job")
	ctx := t.Context()
	must(t, bus.Append(ctx, "a", signed(10, "a")))
	must(t, bus.Append(ctx, "b", signed(3, "b")))
	a, b := readAll(t, bus, "a", ""), readAll(t, bus, "b", "")
	must(t, bus.TrimLedgers(ctx, map[string]string{"a": a[6].ID, "b": b[1].ID, "none": "1-0"}))
	ra, rb := readAll(t, bus, "a", ""), readAll(t, bus, "b", "")
	if len(ra) != 4 || ra[0].ID != a[6].ID || len(rb) != 2 || rb[0].ID != b[1].ID {
		t.Fatalf("after trimming a to entry 6 and b to 1: %d entries from %v, %d from %v", len(ra), ra, len(rb), rb)
	}
}

func testCheckpoint(t *testing.T, open Open) {
	bus := open(t, "job")
	ctx := t.Context()
	if c, err := bus.Credited(ctx, "w"); c != nil || err != nil {
		t.Fatalf("Credited on a new job = %q, %v", c, err)
	}
	ok, err := bus.SaveCheckpoint(ctx, "5-0", map[string][]byte{wire.CheckpointWorker + "w": []byte("c5"), wire.CheckpointWorker + "v": []byte("v5")})
	if !ok || err != nil {
		t.Fatalf("first save: %v, %v", ok, err)
	}
	ok, err = bus.SaveCheckpoint(ctx, "4-9", map[string][]byte{wire.CheckpointWorker + "w": []byte("c4")})
	if ok || err != nil {
		t.Fatalf("a save behind the checkpoint wrote: %v, %v", ok, err)
	}
	ok, err = bus.SaveCheckpoint(ctx, "10-1", map[string][]byte{wire.CheckpointWorker + "w": []byte("c10")})
	if !ok || err != nil {
		t.Fatalf("a later save: %v, %v", ok, err)
	}
	ok, err = bus.SaveCheckpoint(ctx, "10-1", map[string][]byte{wire.CheckpointWorker + "v": []byte("v10")})
	if !ok || err != nil {
		t.Fatalf("a save at the same mark: %v, %v", ok, err)
	}
	if c, err := bus.Credited(ctx, "w"); string(c) != "c10" || err != nil {
		t.Fatalf("Credited = %q, %v; want c10", c, err)
	}
	cp, err := bus.Checkpoint(ctx)
	want := map[string]string{wire.CheckpointPos: "10-1", wire.CheckpointWorker + "w": "c10", wire.CheckpointWorker + "v": "v10"}
	got := map[string]string{}
	for k, v := range cp {
		got[k] = string(v)
	}
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("Checkpoint = %v, %v; want %v", got, err, want)
	}
}

func testReadersQuarantine(t *testing.T, open Open) {
	bus := open(t, "job")
	ctx := t.Context()
	for _, r := range []struct{ k, v string }{{"c1", "1-0 5"}, {"c2", "2-0 6"}, {"c1", "3-0 7"}} {
		if err := bus.SetReader(ctx, r.k, r.v); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := bus.Readers(ctx); err != nil || !maps.Equal(got, map[string]string{"c1": "3-0 7", "c2": "2-0 6"}) {
		t.Fatalf("Readers = %v, %v", got, err)
	}
	if err := bus.Quarantine(ctx, "bad", []byte(`{"reason":"x"}`)); err != nil {
		t.Fatal(err)
	}
	q, err := bus.Quarantined(ctx)
	if err != nil || len(q) != 1 || string(q["bad"]) != `{"reason":"x"}` {
		t.Fatalf("Quarantined = %q, %v", q, err)
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
	if ok, err := bus.RestoreState(ctx, []byte(`{"status":"old"}`)); ok || err != nil {
		t.Fatalf("RestoreState over a state = %v, %v; want false: it writes only where there is none", ok, err)
	}
	must(t, bus.Reset(ctx))
	if ok, err := bus.RestoreState(ctx, []byte(`{"status":"old"}`)); !ok || err != nil {
		t.Fatalf("RestoreState where there is none = %v, %v; want true", ok, err)
	}
	if b, err := bus.State(ctx); string(b) != `{"status":"old"}` || err != nil {
		t.Fatalf("State after RestoreState = %q, %v", b, err)
	}
}

func testReset(t *testing.T, open Open) {
	bus := open(t, "job")
	ctx := t.Context()
	must(t, bus.Append(ctx, "a", signed(3, "x")))
	must(t, bus.Append(ctx, "b", signed(3, "x")))
	must(t, bus.SetState(ctx, []byte("s")))
	_, err := bus.SaveCheckpoint(ctx, "1-0", map[string][]byte{"w:a": []byte("c")})
	must(t, err)
	must(t, bus.SetReader(ctx, "c", "1-0 1"))
	must(t, bus.Quarantine(ctx, "a", []byte("q")))
	must(t, bus.Reset(ctx))
	state, err1 := bus.State(ctx)
	cp, err2 := bus.Checkpoint(ctx)
	rd, err3 := bus.Readers(ctx)
	q, err4 := bus.Quarantined(ctx)
	ledger := len(readAll(t, bus, "a", "")) + len(readAll(t, bus, "b", ""))
	if state != nil || len(cp) != 0 || len(rd) != 0 || len(q) != 0 || ledger != 0 {
		t.Fatalf("after Reset: state %q checkpoint %v readers %v quarantine %v ledger %d (%v %v %v %v)",
			state, cp, rd, q, ledger, err1, err2, err3, err4)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testIsolation(t *testing.T, open Open) {
	a, b := open(t, "job-a"), open(t, "job-b")
	ctx := t.Context()
	msgs := b.Subscribe(ctx)
	Subscribed(t, msgs)
	must(t, a.Append(ctx, "w", signed(1, "for a")))
	must(t, b.Append(ctx, "w", signed(1, "for b")))
	if got := string(Receive(t, msgs)); got != "for b0" {
		t.Fatalf("job b received %q", got)
	}
	if l := readAll(t, b, "w", ""); len(l) != 1 || string(l[0].Payload) != "for b0" {
		t.Fatalf("job b's ledger is %v", l)
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

func testHeartbeat(t *testing.T, open Open) {
	bus := open(t, "job")
	ctx := t.Context()
	msgs := bus.Subscribe(ctx)
	Subscribed(t, msgs)
	must(t, bus.Heartbeat(ctx, "w", []byte("hb")))
	must(t, bus.PublishRaw(ctx, []byte("report")))
	got := map[string]wire.Kind{}
	for range 2 {
		select {
		case m := <-msgs:
			got[string(m.Payload)] = m.Kind
		case <-time.After(Timeout):
			t.Fatal("no message within", Timeout)
		}
	}
	if got["hb"] != wire.KindPresence || got["report"] != wire.KindReport {
		t.Fatalf("kinds %v; want the heartbeat marked presence and the report not", got)
	}
	if ws, _, err := bus.ScanLedgers(ctx, 0); len(ws) != 0 || err != nil {
		t.Fatalf("a heartbeat or a raw publish reached the ledger: %v, %v", ws, err)
	}
}

// testLease: a free id is leased; the holder renews it; another token is
// refused while it lasts and told how long is left; after Release, or once
// it has expired, another takes it.
func testLease(t *testing.T, open Open) {
	bus := open(t, "job")
	ctx := t.Context()
	lease := func(worker, token string, ttl time.Duration) (bool, time.Duration) {
		t.Helper()
		held, left, err := bus.Lease(ctx, worker, token, ttl)
		must(t, err)
		return held, left
	}
	if held, _ := lease("w", "a", time.Minute); !held {
		t.Fatal("a free id was not leased")
	}
	if held, _ := lease("w", "a", time.Minute); !held {
		t.Fatal("the holder could not renew")
	}
	if held, left := lease("w", "b", time.Minute); held || left <= 0 || left > time.Minute {
		t.Fatalf("another token: held %v, %v left; want refused with (0, 1m] left", held, left)
	}
	if held, _ := lease("other", "b", time.Minute); !held {
		t.Fatal("a lease on one id blocked another id")
	}
	must(t, bus.Release(ctx, "w", "b")) // not the holder: nothing happens
	if held, _ := lease("w", "b", time.Minute); held {
		t.Fatal("a Release by a non-holder freed the lease")
	}
	must(t, bus.Release(ctx, "w", "a"))
	if held, _ := lease("w", "b", 20*time.Millisecond); !held {
		t.Fatal("a released lease was not free")
	}
	deadline := time.Now().Add(Timeout)
	for { // expiry is the server's clock: wait for it
		if held, _ := lease("w", "c", time.Minute); held {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("an expired lease was not free within", Timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
