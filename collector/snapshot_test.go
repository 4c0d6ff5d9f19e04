package collector

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/picluster/picluster/internal/membus"
	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

// snapJob is the job the snapshot tests credit entries for.
var snapJob = wire.State{Status: wire.Running, Job: "00000000000000c1", Seed: "00000000000000d2", MaxN: wire.MaxEntryN}

func snapCollector(t *testing.T, now *time.Time) (*Collector, *membus.Bus) {
	t.Helper()
	bus := membus.New()
	c, err := New(bus, Config{Channel: "snap", Kernel: mcpi.Generic, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: func() time.Time { return *now }, Name: "snap-test"})
	if err != nil {
		t.Fatal(err)
	}
	c.job = snapJob
	return c, bus
}

// trueEntry is worker's entry seq of n samples with its true hits.
func trueEntry(worker string, seq, n uint64) wire.Entry {
	seed, _ := wire.ParseSeed(snapJob.Seed)
	h := mcpi.Batch{Key: mcpi.Key{Seed: seed, Worker: worker, Seq: seq}, N: n}.Hits(mcpi.Generic)
	return wire.Entry{Job: snapJob.Job, Seed: snapJob.Seed, Worker: worker, Seq: seq, N: n, Hits: h, Kernel: "go", Seconds: 0.01 * float64(1+n%7)}
}

// TestSnapshotMatchesAFullBuild drives a collector through random credits,
// presence, replays (exact and not), quarantines and reloads from the
// checkpoint, and after every step compares the snapshot built from the
// rows changed since the last with one built from scratch: a change that
// does not touch its worker's row shows as a difference.
func TestSnapshotMatchesAFullBuild(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	now := time.Unix(1_800_000_000, 0)
	c, _ := snapCollector(t, &now)
	ctx := context.Background()
	seqs := map[string]uint64{}
	var credited []wire.Entry
	ledger := 0
	for step := range 400 {
		now = now.Add(time.Duration(r.IntN(3000)) * time.Millisecond)
		id := fmt.Sprint("w", r.IntN(40))
		what := r.IntN(10)
		switch {
		case what < 5: // a credit, perhaps of a new worker
			seqs[id]++
			e := trueEntry(id, seqs[id], 1000+uint64(len(id))*100)
			ledger++
			c.creditAll(context.Background(), []wire.LedgerEntry{{Worker: e.Worker, ID: fmt.Sprintf("%d-0", ledger), Payload: wire.EncodeEntry(e)}})
			credited = append(credited, e)
		case what < 7: // a heartbeat or a goodbye
			st := wire.Alive
			if r.IntN(3) == 0 {
				st = wire.Left
			}
			b, _ := json.Marshal(map[string]any{"worker": id, "status": st, "at": now.UTC().Format(time.RFC3339)})
			c.HandlePresence(b)
		case what < 8 && len(credited) > 0: // a replay, exact or (rarely) not
			e := credited[r.IntN(len(credited))]
			if r.IntN(8) == 0 {
				e.Hits++
			}
			c.ver.replay(ctx, e)
		case what < 9: // a quarantine from the bus
			c.mu.Lock()
			c.pool.quarantine(id, wire.QuarantineRecord{Reason: "test", Seq: 1, Job: snapJob.Job})
			c.mu.Unlock()
		case r.IntN(4) == 0: // a reload from the checkpoint
			c.checkpoint(ctx)
			if err := c.load(ctx); err != nil {
				t.Fatal(err)
			}
		}
		incremental := c.refresh()
		kept := c.snaps.table
		c.snaps.table = tableCache{}
		full := c.build()
		c.snaps.table = kept
		got, _ := json.Marshal(incremental.Full())
		want, _ := json.Marshal(full.Full())
		if string(got) != string(want) {
			t.Fatalf("step %d (%d): the snapshot differs from a full build:\n got %s\nwant %s", step, what, got, want)
		}
		checkAgainstReference(t, incremental)
		if step%50 == 0 && incremental.Copied > len(seqs) {
			t.Errorf("step %d: copied %d rows of %d workers", step, incremental.Copied, len(seqs))
		}
	}
}

// A snapshot is of one instant: its aggregates agree with its own table,
// however the crediting goes on meanwhile.
func TestSnapshotIsConsistent(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c, _ := snapCollector(t, &now)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		ledger := 0
		for seq := uint64(1); ; seq++ {
			for w := range 200 {
				select {
				case <-stop:
					return
				default:
				}
				ledger++
				e := wire.Entry{Job: snapJob.Job, Seed: snapJob.Seed, Worker: fmt.Sprint("w", w), Seq: seq, N: 1 << 20, Hits: 823550 + uint64(w), Kernel: "go", Seconds: 0.1}
				c.creditAll(context.Background(), []wire.LedgerEntry{{Worker: e.Worker, ID: fmt.Sprintf("%d-0", ledger), Payload: wire.EncodeEntry(e)}})
				if w%3 == 0 {
					c.Handle([]byte(`{"n": 1000, "pi_approx": 3.2}`))
				}
			}
		}
	})
	defer func() { close(stop); wg.Wait() }()
	for range 200 {
		snap := c.refresh()
		s := snap.Full()
		var n mcpi.Count
		var batches uint64
		for _, w := range s.WorkerTable {
			n = n.Add(mcpi.CountOf(w.N))
			batches += w.Entries
		}
		if want := s.N.Sub(s.AnonymousN); n != want || batches+s.Anonymous != s.Batches || len(s.WorkerTable) != s.Workers {
			t.Fatalf("snapshot %d: the table sums to N %v in %d+%d batches of %d workers; its aggregates say %v, %d, %d",
				snap.Seq, n, batches, s.Anonymous, len(s.WorkerTable), want, s.Batches, s.Workers)
		}
		if !slices.IsSortedFunc(s.WorkerTable, func(a, b WorkerStats) int { return cmpString(a.ID, b.ID) }) {
			t.Fatalf("snapshot %d: the table is not sorted by id", snap.Seq)
		}
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestSnapshotPageAndFastest(t *testing.T) {
	ws := make([]WorkerStats, 10)
	for i := range ws {
		ws[i] = WorkerStats{ID: fmt.Sprint("w", i), SamplesPerS: Float(float64((i * 7) % 10))}
	}
	ws[3].SamplesPerS = Float(math.NaN())
	ws[5].SamplesPerS = ws[8].SamplesPerS // a tie, broken by id
	s := &Snapshot{Summary: Summary{WorkerTable: ws}}
	ids := func(ws []WorkerStats) string {
		var out []string
		for _, w := range ws {
			out = append(out, w.ID)
		}
		return fmt.Sprint(out)
	}
	for _, tt := range []struct {
		offset, limit int
		want          string
	}{
		{0, 3, "[w0 w1 w2]"}, {8, 3, "[w8 w9]"}, {10, 3, "[]"}, {11, 3, "[]"}, {-1, 2, "[w0 w1]"}, {2, 0, "[]"}, {0, 100, fmt.Sprint(ids(ws))},
	} {
		if got := ids(s.Page(tt.offset, tt.limit)); got != tt.want {
			t.Errorf("Page(%d, %d) = %s, want %s", tt.offset, tt.limit, got, tt.want)
		}
	}
	// rates: w0 0, w1 7, w2 4, w3 NaN, w4 8, w5 6 (= w8), w6 2, w7 9, w8 6, w9 3
	for k, want := range map[int]string{0: "[]", 1: "[w7]", 4: "[w7 w4 w1 w5]", 5: "[w7 w4 w1 w5 w8]", 10: "[w7 w4 w1 w5 w8 w2 w9 w6 w0 w3]", 20: "[w7 w4 w1 w5 w8 w2 w9 w6 w0 w3]"} {
		if got := ids(s.Fastest(k)); got != want {
			t.Errorf("Fastest(%d) = %s, want %s", k, got, want)
		}
	}
	if got := s.Page(0, 2); cap(got) != 2 {
		t.Errorf("a page has capacity %d: appending to it would write into the snapshot", cap(got))
	}
}

// While Run runs, the snapshot is rebuilt every tick, without a reader
// asking; after it, the last one shows why it stopped.
func TestSnapshotTicks(t *testing.T) {
	bus := membus.New()
	c, err := New(bus, Config{Channel: "snap", Kernel: mcpi.Generic, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	<-c.Loaded()
	first := c.Snapshot()
	deadline := time.Now().Add(10 * time.Second)
	for c.snaps.last.Load().Seq < first.Seq+2 { // not Snapshot(): no reader builds these
		if time.Now().After(deadline) {
			t.Fatal("no new snapshot within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if s := c.Snapshot(); s.StoppedBy != string(StopSignal) {
		t.Errorf("the snapshot after Run says stopped_by %q, want %q", s.StoppedBy, string(StopSignal))
	}
}

// checkAgainstReference recomputes the checks, z-scores, flags and counts
// of a snapshot's table with workerStats, the computation over a whole
// []WorkerStats, and compares.
func checkAgainstReference(t *testing.T, snap *Snapshot) {
	t.Helper()
	full := snap.Full()
	ws := slices.Clone(full.WorkerTable)
	var active []WorkerStats
	counts := map[string]int{wire.Alive: 0, wire.Left: 0, "vanished": 0, "quarantined": 0}
	for _, w := range ws {
		counts[w.Status]++
		if w.Status != "quarantined" {
			active = append(active, w)
		}
	}
	total := mcpi.Tally{N: snap.N, Hits: snap.Hits}
	checks := workerStats(active, total)
	close := func(a, b Float) bool {
		x, y := float64(a), float64(b)
		return x == y || math.IsNaN(x) && math.IsNaN(y) || math.Abs(x-y) <= 1e-9*math.Max(math.Abs(x), math.Abs(y))
	}
	if !close(checks.Chi2, snap.Checks.Chi2) || checks.Chi2DF != snap.Checks.Chi2DF || !close(checks.Chi2P, snap.Checks.Chi2P) {
		t.Fatalf("snapshot %d: χ² %v on %d (p %v), the reference %v on %d (p %v)", snap.Seq,
			snap.Checks.Chi2, snap.Checks.Chi2DF, snap.Checks.Chi2P, checks.Chi2, checks.Chi2DF, checks.Chi2P)
	}
	var flagged []string
	for i, w := range active {
		ref := active[i]
		got, _ := snap.Worker(w.ID)
		if !close(got.Z, ref.Z) || got.Flagged != ref.Flagged || got.Pi != ref.Pi {
			t.Fatalf("snapshot %d: worker %s z %v flagged %v, the reference z %v flagged %v", snap.Seq, w.ID, got.Z, got.Flagged, ref.Z, ref.Flagged)
		}
		if ref.Flagged {
			flagged = append(flagged, w.ID)
		}
	}
	if fmt.Sprint(flagged) != fmt.Sprint(full.Flagged) || full.FlaggedCount != len(flagged) {
		t.Fatalf("snapshot %d: flagged %v (%d), the reference %v", snap.Seq, full.Flagged, full.FlaggedCount, flagged)
	}
	if fmt.Sprint(counts) != fmt.Sprint(snap.WorkersByStatus) {
		t.Fatalf("snapshot %d: workers by status %v, the table's %v", snap.Seq, snap.WorkersByStatus, counts)
	}
}

// A snapshot never changes once published: the builds after it copy the
// chunks they write into, however many workers change meanwhile.
func TestSnapshotIsImmutable(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c, _ := snapCollector(t, &now)
	credit := func(w int, seq uint64) {
		e := wire.Entry{Job: snapJob.Job, Seed: snapJob.Seed, Worker: fmt.Sprintf("w%03d", w), Seq: seq, N: 1 << 20, Hits: 823550 + uint64(w), Kernel: "go", Seconds: 0.1}
		c.creditAll(context.Background(), []wire.LedgerEntry{{Worker: e.Worker, ID: fmt.Sprintf("%d-%d", seq, w), Payload: wire.EncodeEntry(e)}})
	}
	for w := range 100 {
		credit(w, 1)
	}
	first := c.refresh()
	want, _ := json.Marshal(first.Full())
	for seq := uint64(2); seq < 6; seq++ {
		for w := 0; w < 100; w += int(seq) {
			credit(w, seq)
		}
		credit(100+int(seq), 1) // a new worker: a new order
		c.mu.Lock()
		c.pool.quarantine(fmt.Sprintf("w%03d", seq), wire.QuarantineRecord{Reason: "test", Seq: 1})
		c.mu.Unlock()
		now = now.Add(time.Second)
		c.refresh()
	}
	if got, _ := json.Marshal(first.Full()); string(got) != string(want) {
		t.Fatalf("the first snapshot changed after later builds:\n got %s\nwant %s", got, want)
	}
}

// A build allocates for the workers changed since the last, not for the
// whole table: the views make rows only for what they serve.
func TestSnapshotBuildAllocatesPerChange(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c, _ := snapCollector(t, &now)
	const workers = 20_000
	es := make([]wire.LedgerEntry, workers)
	for w := range es {
		e := wire.Entry{Job: snapJob.Job, Seed: snapJob.Seed, Worker: fmt.Sprintf("w%06d", w), Seq: 1, N: 1 << 20, Hits: 823550 + uint64(w%1000), Kernel: "go", Seconds: 0.1}
		es[w] = wire.LedgerEntry{Worker: e.Worker, ID: fmt.Sprintf("1-%d", w), Payload: wire.EncodeEntry(e)}
	}
	c.creditAll(context.Background(), es)
	c.refresh()
	var before, after runtime.MemStats
	seq := uint64(1)
	allocs := func() uint64 {
		seq++
		for w := 0; w < workers; w += workers / 10 { // ten workers change
			e := wire.Entry{Job: snapJob.Job, Seed: snapJob.Seed, Worker: fmt.Sprintf("w%06d", w), Seq: seq, N: 1 << 20, Hits: 823550, Kernel: "go", Seconds: 0.1}
			c.creditAll(context.Background(), []wire.LedgerEntry{{Worker: e.Worker, ID: fmt.Sprintf("%d-%d", seq, w), Payload: wire.EncodeEntry(e)}})
		}
		runtime.ReadMemStats(&before)
		s := c.refresh()
		runtime.ReadMemStats(&after)
		if s.Copied != 10 || s.Len() != workers {
			t.Fatalf("copied %d rows of %d, want 10 of %d", s.Copied, s.Len(), workers)
		}
		return after.TotalAlloc - before.TotalAlloc
	}
	allocs()
	table := uint64(workers) * uint64(unsafe.Sizeof(WorkerStats{}))
	if got := allocs(); got > table/20 {
		t.Errorf("a build after ten changes allocated %d B; the table's rows are %d B", got, table)
	}
}

// A collector's snapshot serves pages, the fastest and single workers as
// a table made by hand does, and cuts Flagged and Quarantined to MaxListed,
// counting them all.
func TestSnapshotOfCollector(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c, _ := snapCollector(t, &now)
	const workers, off = 2300, 115
	for w := range workers {
		hits := uint64(823550)
		if w%20 == 1 { // one in twenty far off: flagged
			hits = 900000
		}
		e := wire.Entry{Job: snapJob.Job, Seed: snapJob.Seed, Worker: fmt.Sprintf("w%04d", w), Seq: 1, N: 1 << 20, Hits: hits, Kernel: "go", Seconds: 0.1 + float64(w%17)/100}
		c.creditAll(context.Background(), []wire.LedgerEntry{{Worker: e.Worker, ID: fmt.Sprintf("1-%d", w), Payload: wire.EncodeEntry(e)}})
	}
	c.mu.Lock()
	for w := 2; w < workers; w += 20 { // as many quarantined
		c.pool.quarantine(fmt.Sprintf("w%04d", w), wire.QuarantineRecord{Reason: "test", Seq: 1})
	}
	c.mu.Unlock()
	snap := c.refresh()
	full := snap.Full()
	hand := &Snapshot{Summary: full}
	if snap.Len() != workers || hand.Len() != workers {
		t.Fatalf("Len %d and %d, want %d", snap.Len(), hand.Len(), workers)
	}
	js := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	for _, pg := range [][2]int{{0, 10}, {2170, 20}, {2290, 50}, {2300, 5}, {-3, 4}} {
		if got, want := js(snap.Page(pg[0], pg[1])), js(hand.Page(pg[0], pg[1])); got != want {
			t.Errorf("Page(%d, %d) = %s, want %s", pg[0], pg[1], got, want)
		}
	}
	for _, k := range []int{1, 20, fastestKept, fastestKept + 1, workers + 5} {
		if got, want := js(snap.Fastest(k)), js(hand.Fastest(k)); got != want {
			t.Errorf("Fastest(%d) = %s, want %s", k, got, want)
		}
	}
	for _, id := range []string{"w0000", "w0001", "w0002", "w2299", "w1502", "nobody"} {
		got, ok := snap.Worker(id)
		want, wok := hand.Worker(id)
		if ok != wok || js(got) != js(want) {
			t.Errorf("Worker(%s) = %s %v, want %s %v", id, js(got), ok, js(want), wok)
		}
	}
	if len(full.Flagged) != off || full.FlaggedCount != off || len(full.Quarantined) != off {
		t.Fatalf("the full summary lists %d flagged (%d) and %d quarantined, want %d each", len(full.Flagged), full.FlaggedCount, len(full.Quarantined), off)
	}
	if len(snap.Flagged) != MaxListed || snap.FlaggedCount != off || len(snap.Quarantined) != MaxListed || snap.WorkersByStatus["quarantined"] != off {
		t.Errorf("the snapshot lists %d flagged (count %d) and %d quarantined (count %d), want %d of %d each",
			len(snap.Flagged), snap.FlaggedCount, len(snap.Quarantined), snap.WorkersByStatus["quarantined"], MaxListed, off)
	}
	if js(snap.Flagged) != js(full.Flagged[:MaxListed]) || js(snap.Quarantined) != js(full.Quarantined[:MaxListed]) {
		t.Error("the snapshot's lists are not the first of the full ones")
	}
	if len(snap.WorkerTable) != MaxListed || !snap.WorkerTable[0].Flagged || snap.WorkerTable[0].ID != full.Flagged[0] {
		t.Errorf("the snapshot's WorkerTable has %d rows, want the %d first flagged", len(snap.WorkerTable), MaxListed)
	}
	checkAgainstReference(t, snap)
}

// Workers whose z-scores span the flag boundary are flagged as workerStats
// flags them, no more, no fewer.
func TestSnapshotFlagsAsReference(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c, _ := snapCollector(t, &now)
	for k := -500; k <= 500; k++ {
		e := wire.Entry{Job: snapJob.Job, Seed: snapJob.Seed, Worker: fmt.Sprintf("w%04d", k+500), Seq: 1, N: 1 << 20, Hits: uint64(823550 + 26*k), Kernel: "go", Seconds: 0.1}
		c.creditAll(context.Background(), []wire.LedgerEntry{{Worker: e.Worker, ID: fmt.Sprintf("1-%d", k+500), Payload: wire.EncodeEntry(e)}})
	}
	snap := c.refresh()
	if snap.FlaggedCount < 100 || snap.FlaggedCount > 900 {
		t.Fatalf("%d of 1001 flagged: the test wants the boundary inside the spread", snap.FlaggedCount)
	}
	checkAgainstReference(t, snap)
}

// A tick waits SnapshotInterval, or snapshotDuty builds if longer, but
// never more than maxSnapshotWait: a snapshot is at most that and a build
// old, however slow the machine.
func TestTickWait(t *testing.T) {
	for build, want := range map[time.Duration]time.Duration{
		0: SnapshotInterval, 10 * time.Millisecond: SnapshotInterval, 100 * time.Millisecond: 400 * time.Millisecond,
		125 * time.Millisecond: 500 * time.Millisecond, time.Second: 500 * time.Millisecond,
	} {
		if got := tickWait(build); got != want {
			t.Errorf("after a build of %v a tick waits %v, want %v", build, got, want)
		}
	}
}

// While Run ticks, what the views call (Snapshot, History, and a
// snapshot's Page, Fastest and Worker) never waits for the lock that
// crediting takes.
func TestViewsNeverTakeTheCreditLock(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c, _ := snapCollector(t, &now)
	e := trueEntry("w", 1, 1000)
	c.creditAll(context.Background(), []wire.LedgerEntry{{Worker: e.Worker, ID: "1-0", Payload: wire.EncodeEntry(e)}})
	c.refresh()
	c.snaps.ticking.Store(true) // as while Run runs
	defer c.snaps.ticking.Store(false)
	c.mu.Lock()
	defer c.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s := c.Snapshot()
		s.Page(0, 10)
		s.Fastest(5)
		s.Worker("w")
		c.History()
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a view waited for the collector's lock")
	}
}
