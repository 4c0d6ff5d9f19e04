package collector

import (
	"context"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/picluster/picluster/internal/wire"
)

// SnapshotInterval is how often a running collector builds its Snapshot:
// at most 4 times a second. When a build takes longer than a
// 1/snapshotDuty share of the interval, the next waits snapshotDuty times
// the build's duration instead, so that building never takes more than
// about a fifth of a core.
const SnapshotInterval = 250 * time.Millisecond

// snapshotDuty: a tick waits at least this many times the last build.
const snapshotDuty = 4

// Snapshot is the job at one instant, built once per tick and shared by
// every view: the live view, /api/state, /api/events and /metrics read the
// same one, and none of them takes the lock that crediting takes.
//
// A Snapshot is immutable: its slices and maps are shared by every reader,
// who must not change them.
type Snapshot struct {
	// Summary is the job at At. Its WorkerTable is every worker, sorted by
	// id, the quarantined last.
	Summary
	// At is when it was built, by Config.Now.
	At time.Time
	// Seq numbers the snapshots a collector publishes: 1, 2, …
	Seq uint64
	// Build is how long building it took, waiting for the collector's lock
	// included, and Lock how long it held that lock: to copy the aggregates
	// and the workers changed since the last build (Copied of them).
	Build, Lock time.Duration
	Copied      int
}

// Page returns the rows offset … offset+limit−1 of the worker table, fewer
// at its end, none past it.
func (s *Snapshot) Page(offset, limit int) []WorkerStats {
	n := len(s.WorkerTable)
	lo := min(max(offset, 0), n)
	hi := min(lo+max(limit, 0), n)
	return s.WorkerTable[lo:hi:hi]
}

// Fastest returns the k workers with the highest SamplesPerS, fastest
// first, ties by id; workers without a rate come after all those with one.
// It costs one pass over the table, O(W·log k).
func (s *Snapshot) Fastest(k int) []WorkerStats {
	if k <= 0 {
		return nil
	}
	top := make([]*WorkerStats, 0, k+1)
	for i := range s.WorkerTable {
		w := &s.WorkerTable[i]
		if len(top) == k && !faster(w, top[k-1]) {
			continue
		}
		j, _ := slices.BinarySearchFunc(top, w, func(a, b *WorkerStats) int {
			if faster(a, b) {
				return -1
			}
			return 1
		})
		top = slices.Insert(top, j, w)
		if len(top) > k {
			top = top[:k]
		}
	}
	out := make([]WorkerStats, len(top))
	for i, w := range top {
		out[i] = *w
	}
	return out
}

// faster orders workers by rate, highest first, NaN last, then by id.
func faster(a, b *WorkerStats) bool {
	ra, rb := float64(a.SamplesPerS), float64(b.SamplesPerS)
	na, nb := math.IsNaN(ra), math.IsNaN(rb)
	switch {
	case na != nb:
		return nb
	case !na && ra != rb:
		return ra > rb
	}
	return a.ID < b.ID
}

// snapshots is the collector's snapshot machinery. mu serializes builds,
// so the table cache is used by one build at a time and published
// snapshots follow each other in the order their copies were taken.
type snapshots struct {
	mu      sync.Mutex
	table   tableCache // guarded by mu; its copy also needs the collector's mu
	seq     uint64     // guarded by mu
	last    atomic.Pointer[Snapshot]
	ticking atomic.Bool // Run's tick is building them
}

// Snapshot returns the latest snapshot. While Run runs, it is at most about
// SnapshotInterval old (more when a build takes longer, see
// SnapshotInterval) and Snapshot never waits for a build. Otherwise (before
// Run, after it, or without it) Snapshot builds one when the last is older
// than SnapshotInterval.
func (c *Collector) Snapshot() *Snapshot {
	if s := c.snaps.last.Load(); s != nil && (c.snaps.ticking.Load() || c.fresh(s)) {
		return s
	}
	c.snaps.mu.Lock()
	defer c.snaps.mu.Unlock()
	if s := c.snaps.last.Load(); s != nil && c.fresh(s) { // built while this one waited
		return s
	}
	return c.publishLocked()
}

func (c *Collector) fresh(s *Snapshot) bool {
	age := c.cfg.Now().Sub(s.At)
	return age >= 0 && age < SnapshotInterval
}

// refresh builds and publishes a snapshot.
func (c *Collector) refresh() *Snapshot {
	c.snaps.mu.Lock()
	defer c.snaps.mu.Unlock()
	return c.publishLocked()
}

func (c *Collector) publishLocked() *Snapshot {
	s := c.build()
	c.snaps.seq++
	s.Seq = c.snaps.seq
	c.snaps.last.Store(s)
	return s
}

// tick publishes a snapshot every SnapshotInterval (or snapshotDuty times
// the last build, if longer) until ctx is done.
func (c *Collector) tick(ctx context.Context) {
	c.snaps.ticking.Store(true)
	defer c.snaps.ticking.Store(false)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s := c.refresh()
		t.Reset(max(SnapshotInterval, snapshotDuty*s.Build))
	}
}

// tableCache keeps a copy of every worker's row between builds, so that a
// build copies under the collector's lock only the workers changed since
// the last (pool.touched), and sorts only the workers new since then. The
// rows are kept in order of id, but for the new ones at the end until the
// next sort, so a build reads them in order, from contiguous memory.
type tableCache struct {
	pool   *pool            // the pool the rows are of: another (a reload) means a full copy
	index  map[string]int32 // id → row
	rows   []workerRow
	spare  []workerRow // the merge's buffer, the rows' before the last sort
	sorted int         // rows[:sorted] are in order of id
}

// workerRow is what a build needs of one worker, copied under the lock.
type workerRow struct {
	id          string
	cr          wire.Credit
	seen        time.Time
	left        bool
	quarantined bool
	rec         wire.QuarantineRecord
}

// capture brings the rows up to date with p and reports how many it
// copied; the collector's mu is held.
func (t *tableCache) capture(p *pool) int {
	if t.pool != p {
		t.pool = p
		t.index = make(map[string]int32, len(p.workers))
		t.rows, t.sorted = t.rows[:0], 0
		for id := range p.workers {
			t.copy(p, id)
		}
		clear(p.touched)
		return len(p.workers)
	}
	n := len(p.touched)
	for id := range p.touched {
		t.copy(p, id)
	}
	clear(p.touched)
	return n
}

func (t *tableCache) copy(p *pool, id string) {
	cr := p.workers[id]
	if cr == nil {
		return // a quarantine record of a worker without credit: not in the table
	}
	i, ok := t.index[id]
	if !ok {
		i = int32(len(t.rows))
		t.index[id] = i
		t.rows = append(t.rows, workerRow{id: id})
	}
	r := &t.rows[i]
	r.cr, r.seen, r.left = *cr, p.seen[id], p.left[id]
	r.rec, r.quarantined = p.quarantined[id]
}

// sort puts the rows in order of id, merging the new ones in: O(k·log k)
// for k new rows, and an O(W) merge and re-index only when there are any.
// The collector's lock is not needed: only builds use the cache.
func (t *tableCache) sort() {
	if t.sorted == len(t.rows) {
		return
	}
	byID := func(a, b workerRow) int { return strings.Compare(a.id, b.id) }
	old, fresh := t.rows[:t.sorted], t.rows[t.sorted:]
	slices.SortFunc(fresh, byID)
	merged := slices.Grow(t.spare[:0], len(t.rows))
	i, j := 0, 0
	for i < len(old) && j < len(fresh) {
		if byID(old[i], fresh[j]) <= 0 {
			merged = append(merged, old[i])
			i++
		} else {
			merged = append(merged, fresh[j])
			j++
		}
	}
	merged = append(append(merged, old[i:]...), fresh[j:]...)
	for k := range merged {
		t.index[merged[k].id] = int32(k)
	}
	clear(merged[len(merged):cap(merged)]) // no stale ids kept alive
	t.rows, t.spare, t.sorted = merged, t.rows[:0], len(merged)
}

// countStatus counts the table's workers by Status, every status present.
func countStatus(ws []WorkerStats) map[string]int {
	var alive, left, vanished, quarantined int
	for i := range ws {
		switch ws[i].Status {
		case wire.Alive:
			alive++
		case wire.Left:
			left++
		case "vanished":
			vanished++
		default:
			quarantined++
		}
	}
	return map[string]int{wire.Alive: alive, wire.Left: left, "vanished": vanished, "quarantined": quarantined}
}
