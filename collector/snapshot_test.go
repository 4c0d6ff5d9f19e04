package collector

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

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
			c.creditAll([]wire.LedgerEntry{{ID: fmt.Sprintf("%d-0", ledger), Payload: wire.EncodeEntry(e)}})
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
		got, _ := json.Marshal(incremental.Summary)
		want, _ := json.Marshal(full.Summary)
		if string(got) != string(want) {
			t.Fatalf("step %d (%d): the snapshot differs from a full build:\n got %s\nwant %s", step, what, got, want)
		}
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
				c.creditAll([]wire.LedgerEntry{{ID: fmt.Sprintf("%d-0", ledger), Payload: wire.EncodeEntry(e)}})
				if w%3 == 0 {
					c.Handle([]byte(`{"n": 1000, "pi_approx": 3.2}`))
				}
			}
		}
	})
	defer func() { close(stop); wg.Wait() }()
	for range 200 {
		s := c.refresh()
		var n mcpi.Count
		var batches uint64
		for _, w := range s.WorkerTable {
			n = n.Add(mcpi.CountOf(w.N))
			batches += w.Entries
		}
		if want := s.N.Sub(s.AnonymousN); n != want || batches+s.Anonymous != s.Batches || len(s.WorkerTable) != s.Workers {
			t.Fatalf("snapshot %d: the table sums to N %v in %d+%d batches of %d workers; its aggregates say %v, %d, %d",
				s.Seq, n, batches, s.Anonymous, len(s.WorkerTable), want, s.Batches, s.Workers)
		}
		if !slices.IsSortedFunc(s.WorkerTable, func(a, b WorkerStats) int { return cmpString(a.ID, b.ID) }) {
			t.Fatalf("snapshot %d: the table is not sorted by id", s.Seq)
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
