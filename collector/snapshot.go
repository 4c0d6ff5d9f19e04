package collector

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

// SnapshotInterval is how often a running collector builds its Snapshot:
// at most 4 times a second. When a build takes longer than a
// 1/snapshotDuty share of the interval, the next waits snapshotDuty times
// the build's duration instead, up to maxSnapshotWait, so that building
// takes at most about a fifth of a core for builds of up to 125 ms (a
// build's duration is wall time: on a busy machine it is mostly waiting
// for a core), and a snapshot is never more than maxSnapshotWait and a
// build old.
const SnapshotInterval = 250 * time.Millisecond

// snapshotDuty: a tick waits at least this many times the last build, and
// at most maxSnapshotWait.
const (
	snapshotDuty    = 4
	maxSnapshotWait = 2 * SnapshotInterval
)

// MaxListed bounds the ids in a Snapshot's Flagged and the workers in its
// Quarantined (the first by id): a job of any size, or a flood of
// quarantined ids, keeps every view's response small. FlaggedCount and
// WorkersByStatus count all of them; Summary lists all of them.
const MaxListed = 100

// Snapshot is the job at one instant, built once per tick and shared by
// every view: the live view, /api/state, /api/events and /metrics read the
// same one, and none of them takes the lock that crediting takes.
//
// A Snapshot keeps its worker table compact, and makes rows (WorkerStats)
// only for what a view asks: Page, Fastest, Worker, Full. Its Summary's
// WorkerTable holds only the flagged workers' rows, and its Flagged and
// Quarantined at most MaxListed each (the first by id).
//
// A Snapshot is immutable: its slices and maps are shared by every reader,
// who must not change them. A Snapshot made by hand (without a collector)
// serves its Summary's WorkerTable as the whole table.
type Snapshot struct {
	// Summary is the job at At, its lists cut as above.
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
	// Sweep is how long the reader's last sweep of every stream took
	// (Config.SweepEvery); zero before one.
	Sweep time.Duration

	tab *view // the worker table; nil in a Snapshot made by hand
}

// Len returns the rows of the worker table.
func (s *Snapshot) Len() int {
	if s.tab == nil {
		return len(s.WorkerTable)
	}
	return len(s.tab.order)
}

// Page returns the rows offset … offset+limit−1 of the worker table, fewer
// at its end, none past it. The rows are the caller's.
func (s *Snapshot) Page(offset, limit int) []WorkerStats {
	n := s.Len()
	lo := min(max(offset, 0), n)
	hi := min(lo+max(limit, 0), n)
	if s.tab == nil {
		return s.WorkerTable[lo:hi:hi]
	}
	out := make([]WorkerStats, hi-lo)
	for i := range out {
		out[i] = s.tab.stats(s.tab.order[lo+i])
	}
	return out
}

// Full returns the Summary with the whole worker table and every flagged
// and quarantined worker listed: what Collector.Summary returns. It costs a
// row per worker.
func (s *Snapshot) Full() Summary {
	sum := s.Summary
	if s.tab == nil {
		return sum
	}
	t := s.tab
	sum.WorkerTable = s.Page(0, s.Len())
	sum.Flagged = make([]string, len(t.flagged))
	for i, r := range t.flagged {
		sum.Flagged[i] = t.row(r).id
	}
	sum.Quarantined = t.quarantinedInfo(len(t.order))
	return sum
}

// Worker returns worker id's row, if it is in the table.
func (s *Snapshot) Worker(id string) (WorkerStats, bool) {
	if s.tab == nil {
		for _, w := range s.WorkerTable {
			if w.ID == id {
				return w, true
			}
		}
		return WorkerStats{}, false
	}
	t := s.tab
	k := len(t.order) - t.quarantined
	for _, part := range [][]int32{t.order[:k], t.order[k:]} {
		if i, ok := slices.BinarySearchFunc(part, id, func(r int32, id string) int { return strings.Compare(t.row(r).id, id) }); ok {
			return t.stats(part[i]), true
		}
	}
	return WorkerStats{}, false
}

// Fastest returns the k workers with the highest SamplesPerS, fastest
// first, ties by id; workers without a rate come after all those with one.
// Up to fastestKept it is computed with the snapshot; past that it costs
// one pass over the table, O(W·log k).
func (s *Snapshot) Fastest(k int) []WorkerStats {
	if k <= 0 {
		return nil
	}
	if s.tab == nil {
		rows := make([]*WorkerStats, len(s.WorkerTable))
		for i := range rows {
			rows[i] = &s.WorkerTable[i]
		}
		top := topK(rows, k, func(a, b *WorkerStats) bool {
			return faster(float64(a.SamplesPerS), float64(b.SamplesPerS), a.ID, b.ID)
		})
		out := make([]WorkerStats, len(top))
		for i, w := range top {
			out[i] = *w
		}
		return out
	}
	t := s.tab
	top := t.fastest
	if k > len(top) && len(top) < len(t.order) {
		top = topK(t.order, k, t.faster)
	}
	top = top[:min(k, len(top))]
	out := make([]WorkerStats, len(top))
	for i, r := range top {
		out[i] = t.stats(r)
	}
	return out
}

// topK returns the k first of xs by less, in order: O(len(xs)·log k).
func topK[T any](xs []T, k int, less func(a, b T) bool) []T {
	top := make([]T, 0, k+1)
	for _, x := range xs {
		if len(top) == k && !less(x, top[k-1]) {
			continue
		}
		j, _ := slices.BinarySearchFunc(top, x, func(a, b T) int {
			if less(a, b) {
				return -1
			}
			return 1
		})
		top = slices.Insert(top, j, x)
		if len(top) > k {
			top = top[:k]
		}
	}
	return top
}

// faster orders workers by rate, highest first, NaN last, then by id.
func faster(ra, rb float64, a, b string) bool {
	na, nb := math.IsNaN(ra), math.IsNaN(rb)
	switch {
	case na != nb:
		return nb
	case !na && ra != rb:
		return ra > rb
	}
	return a < b
}

// snapshots is the collector's snapshot machinery. mu serializes builds,
// so the table cache is used by one build at a time and published
// snapshots follow each other in the order their copies were taken.
type snapshots struct {
	mu      sync.Mutex
	table   tableCache // guarded by mu; its capture also needs the collector's mu
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
// the last build, if longer, up to maxSnapshotWait) until ctx is done.
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
		t.Reset(tickWait(s.Build))
	}
}

// tickWait is how long a tick waits after a build that took build.
func tickWait(build time.Duration) time.Duration {
	return min(max(SnapshotInterval, snapshotDuty*build), maxSnapshotWait)
}

// row is what a snapshot keeps of one worker, copied under the collector's
// lock: a WorkerStats is made of it only when a view asks.
type row struct {
	id                                              string
	n, totalN, totalHits, seq, entries, gaps, verif uint64
	seconds                                         float64
	kernel                                          string
	seen                                            time.Time
	rec                                             *wire.QuarantineRecord // nil unless quarantined
	left                                            bool
}

// chunkRows is the rows of a chunk: the unit that a build copies when one
// of its rows changed, so that a build allocates about a chunk per worker
// changed, not a table.
const chunkRows = 16

type chunk [chunkRows]row

// tableCache keeps every worker's row between builds, in chunks of
// chunkRows by order of arrival (a row's index never changes), shared with
// the snapshots published: a build copies under the collector's lock only
// the workers changed since the last (pool.touched), each into its chunk,
// which it copies first if a snapshot holds it (copy on write). The order by
// id is a slice of row indices, rebuilt (a merge) only when workers are new
// or their quarantine changed.
type tableCache struct {
	pool    *pool            // the pool the rows are of: another (a reload) means a full copy
	index   map[string]int32 // id → row
	chunks  []*chunk
	owned   []bool // chunks[i] was copied since the last snapshot took them: writable
	n       int    // rows
	order   []int32
	qs      int                // the quarantined rows, at the end of order
	reorder map[int32]struct{} // rows new, or whose quarantine changed, since order was made
	moved   []bool             // sort's: the rows of reorder
}

func (t *tableCache) row(i int32) *row { return &t.chunks[i/chunkRows][i%chunkRows] }

// capture brings the rows up to date with p and reports how many it
// copied; the collector's mu is held.
func (t *tableCache) capture(p *pool) int {
	if t.pool != p {
		*t = tableCache{pool: p, index: make(map[string]int32, len(p.workers)), reorder: make(map[int32]struct{})}
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
		i = int32(t.n)
		t.n++
		t.index[id] = i
		if int(i)%chunkRows == 0 {
			t.chunks, t.owned = append(t.chunks, new(chunk)), append(t.owned, true)
		}
		t.reorder[i] = struct{}{}
	}
	k := i / chunkRows
	if !t.owned[k] {
		fresh := *t.chunks[k]
		t.chunks[k], t.owned[k] = &fresh, true
	}
	r := &t.chunks[k][i%chunkRows]
	wasQ := ok && r.rec != nil
	*r = row{id: id, n: cr.N, totalN: cr.TotalN, totalHits: cr.TotalHits, seq: cr.Seq, entries: cr.Entries,
		gaps: cr.Gaps, verif: cr.Verified, seconds: cr.Seconds, kernel: cr.Kernel, seen: p.seen[id], left: p.left[id], rec: r.rec}
	if rec, q := p.quarantined[id]; !q {
		r.rec = nil
	} else if r.rec == nil || *r.rec != rec {
		r.rec = &rec
	}
	if (r.rec != nil) != wasQ {
		t.reorder[i] = struct{}{}
	}
}

// key orders rows: the quarantined last, each part by id.
func (t *tableCache) cmp(a, b int32) int {
	ra, rb := t.row(a), t.row(b)
	if qa, qb := ra.rec != nil, rb.rec != nil; qa != qb {
		if qa {
			return 1
		}
		return -1
	}
	return strings.Compare(ra.id, rb.id)
}

// sort brings the order up to date: the rows kept in place, the new and
// moved ones sorted and merged in, O(W + k·log k) for k of them, into a
// new slice (the old one is a published snapshot's). The collector's lock
// is not needed: only builds use the cache.
func (t *tableCache) sort() {
	if len(t.reorder) == 0 {
		return
	}
	fresh := make([]int32, 0, len(t.reorder))
	for i := range t.reorder {
		fresh = append(fresh, i)
	}
	clear(t.reorder)
	slices.SortFunc(fresh, t.cmp)
	t.moved = slices.Grow(t.moved[:0], t.n)[:t.n]
	for _, i := range fresh {
		t.moved[i] = true
	}
	merged := make([]int32, 0, t.n)
	j := 0
	for _, i := range t.order {
		if t.moved[i] {
			continue
		}
		for j < len(fresh) && t.cmp(fresh[j], i) < 0 {
			merged = append(merged, fresh[j])
			j++
		}
		merged = append(merged, i)
	}
	merged = append(merged, fresh[j:]...)
	for _, i := range fresh {
		t.moved[i] = false
	}
	t.order = merged
	t.qs = 0
	for k := len(merged) - 1; k >= 0 && t.row(merged[k]).rec != nil; k-- {
		t.qs++
	}
}

// table is a snapshot's worker table: chunks shared with the cache and
// other snapshots, which nobody writes once a snapshot holds them, and what
// a row of it needs to become a WorkerStats.
type view struct {
	chunks      []*chunk
	order       []int32 // by id, the quarantined last
	quarantined int     // at the end of order
	flagged     []int32 // by id
	fastest     []int32 // the fastestKept fastest, fastest first
	now         time.Time
	total       mcpi.Tally
	p           float64 // total.P()
	alpha       float64 // FlagAlpha over the workers in the table, quarantined ones not
	minZ        float64 // below it no |z| reaches flagBound
}

// fastestKept is how many of the fastest workers a build ranks (Fastest).
const fastestKept = 100

func (t *view) row(i int32) *row { return &t.chunks[i/chunkRows][i%chunkRows] }

func (t *view) faster(a, b int32) bool {
	ra, rb := t.row(a), t.row(b)
	return faster(rate(ra), rate(rb), ra.id, rb.id)
}

// rate is a row's SamplesPerS: 0 before a rate is known.
func rate(r *row) float64 {
	if r.seconds > 0 {
		return float64(r.n) / r.seconds
	}
	return 0
}

// judge returns a worker's z against the rest of the pool and whether it
// is flagged, as workerStats does.
func (t *view) judge(r *row) (z float64, flagged bool, bound float64) {
	if r.totalN == 0 || !(t.p > 0 && t.p < 1) {
		return math.NaN(), false, 0
	}
	w := mcpi.TallyOf(r.totalN, r.totalHits)
	rest := t.total.Sub(w)
	if rest.N.IsZero() {
		return math.NaN(), false, 0
	}
	ni, nr := float64(r.totalN), rest.N.Float64()
	z = (w.P() - rest.P()) / math.Sqrt(t.p*(1-t.p)*(1/ni+1/nr))
	if !(math.Abs(z) >= t.minZ) {
		return z, false, 0
	}
	b := flagBound(ni*nr/(ni+nr), t.alpha)
	return z, math.Abs(z) >= b, b
}

// stats makes row i's WorkerStats.
func (t *view) stats(i int32) WorkerStats {
	r := t.row(i)
	w := WorkerStats{ID: r.id, N: r.totalN, Hits: r.totalHits, Seq: r.seq, Kernel: r.kernel,
		Entries: r.entries, Gaps: r.gaps, Verified: r.verif, LastSeen: r.seen,
		Status: presence(t.now, r.seen, r.seconds, r.left), SamplesPerS: Float(rate(r)),
		tally: mcpi.TallyOf(r.totalN, r.totalHits)}
	w.Pi, w.Z = Float(w.tally.Pi()), Float(math.NaN())
	if r.rec != nil {
		w.Status, w.Why = "quarantined", fmt.Sprintf("quarantined: %s at seq %d", r.rec.Reason, r.rec.Seq)
		return w
	}
	z, flagged, b := t.judge(r)
	w.Z = Float(z)
	if flagged {
		w.Flagged, w.Why = true, fmt.Sprintf("|z| %.1f ≥ %.1f, the %g family-wise bound", math.Abs(z), b, FlagAlpha)
	}
	return w
}

// quarantinedInfo lists the first max quarantined workers, by id.
func (t *view) quarantinedInfo(most int) []QuarantineInfo {
	qs := t.order[len(t.order)-t.quarantined:]
	out := make([]QuarantineInfo, 0, min(most, len(qs)))
	for _, i := range qs[:min(most, len(qs))] {
		r := t.row(i)
		out = append(out, QuarantineInfo{Worker: r.id, QuarantineRecord: *r.rec, N: r.totalN})
	}
	return out
}

// freeze hands the cache's rows to a new view, which shares them: the
// next capture copies a chunk before it writes into it. It computes what
// needs every row: the χ² test, the flagged, the counts by status and the
// fastest. Only builds use the
// cache; the collector's lock is not needed.
func (tc *tableCache) freeze(now time.Time, total mcpi.Tally, s *Summary) *view {
	tc.sort()
	t := &view{chunks: slices.Clone(tc.chunks), order: tc.order, quarantined: tc.qs, now: now, total: total, p: total.P()}
	clear(tc.owned)
	workers := len(t.order) - t.quarantined
	t.alpha = FlagAlpha / float64(max(workers, 1))
	t.minZ = math.Sqrt(2 * math.Log(1/t.alpha))

	var tested mcpi.Tally
	for k, ch := range t.chunks {
		for j := range min(chunkRows, tc.n-k*chunkRows) {
			if r := &ch[j]; r.rec == nil && r.totalN >= minWorkerN {
				tested = tested.Add(mcpi.TallyOf(r.totalN, r.totalHits))
			}
		}
	}
	pt := tested.P()
	var x float64
	df := -1
	counts := map[string]int{wire.Alive: 0, wire.Left: 0, "vanished": 0, "quarantined": t.quarantined}
	var alive, left, vanished int
	top := make([]int32, 0, fastestKept+1)
	slowest := math.Inf(-1)     // the rate of top's last once it is full: a slower row cannot enter
	for _, i := range t.order { // by id, so that the sums are the same in every collector
		r := t.row(i)
		// Past top's last when faster, or as fast and before it by id: the
		// rows are in order of id but for the quarantined, after the rest.
		if rr := rate(r); len(top) < fastestKept || rr > slowest || rr == slowest && r.rec != nil && t.faster(i, top[len(top)-1]) {
			j, _ := slices.BinarySearchFunc(top, i, func(a, b int32) int {
				if t.faster(a, b) {
					return -1
				}
				return 1
			})
			top = slices.Insert(top, j, i)
			if len(top) > fastestKept {
				top = top[:fastestKept]
			}
			if len(top) == fastestKept {
				slowest = rate(t.row(top[len(top)-1]))
			}
		}
		if r.rec != nil {
			continue
		}
		switch presence(now, r.seen, r.seconds, r.left) {
		case wire.Alive:
			alive++
		case wire.Left:
			left++
		default:
			vanished++
		}
		if _, flagged, _ := t.judge(r); flagged {
			t.flagged = append(t.flagged, i)
		}
		if r.totalN >= minWorkerN && pt > 0 && pt < 1 {
			ni := float64(r.totalN)
			d := float64(r.totalHits) - ni*pt
			x += d * d / (ni * pt * (1 - pt))
			df++
		}
	}
	t.fastest = top
	counts[wire.Alive], counts[wire.Left], counts["vanished"] = alive, left, vanished

	s.Checks = Checks{Chi2: Float(math.NaN()), Chi2P: Float(math.NaN()), FlagAlpha: FlagAlpha}
	if df >= 1 {
		s.Checks.Chi2, s.Checks.Chi2DF, s.Checks.Chi2P = chi2Of(x, df)
	}
	s.WorkersByStatus = counts
	s.FlaggedCount = len(t.flagged)
	s.Flagged = make([]string, 0, min(len(t.flagged), MaxListed))
	s.WorkerTable = make([]WorkerStats, 0, min(len(t.flagged), MaxListed))
	for _, i := range t.flagged[:min(len(t.flagged), MaxListed)] {
		s.Flagged = append(s.Flagged, t.row(i).id)
		s.WorkerTable = append(s.WorkerTable, t.stats(i))
	}
	s.Quarantined = t.quarantinedInfo(MaxListed)
	return t
}
