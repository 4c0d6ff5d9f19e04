package collector

import (
	"time"

	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

// pool is the exact state of a job: what the ledger credited to every
// worker, the anonymous batches, and the pooled tally, which is the sum of
// the credits of the workers not quarantined plus the anonymous batches.
type pool struct {
	total       mcpi.Tally
	anon        mcpi.Tally // the anonymous batches (open mode), live only
	workers     map[string]*wire.Credit
	quarantined map[string]wire.QuarantineRecord
	seen        map[string]time.Time // when each worker last reported or sent a heartbeat
	left        map[string]bool      // whether its last presence message was a goodbye: an entry credited after it does not undo it (a worker says goodbye after its last append)
	disp        dispersion           // the scatter of the credited entries
	strat       replicates           // the credited batches of a stratified job
	batches     uint64               // entries credited + anonymous batches
	anonBatches uint64
	duplicates  uint64
	gaps        uint64
	accepted    uint64 // entries credited and anonymous batches counted
	// mark is the bus's time at the start of the last complete sweep: every
	// entry of every stream with an ID before it has been read.
	mark string
	// cursor is where each tracked worker's stream has been read to.
	cursor map[string]string
	// moved are the streams read past their last trim point, each with
	// that point ("" if none): trim them, each at most every trimEvery.
	moved map[string]string
	// bulky are the streams that held an entry over wire.MaxSize bytes.
	bulky map[string]bool
	// fills are the runs of seqs that workers skipped, waiting to be drawn
	// by the collector (fill.go), oldest first; held the workers with one
	// waiting or being drawn, each with the ID of its entry that waits for
	// it: their streams are not read on meanwhile. At most one fill per
	// worker, and a worker with one is tracked (it has a cursor), so both
	// are bounded by the streams tracked.
	fills   []fill
	held    map[string]string
	drawing uint64 // the seqs of fills, queued or being drawn
	// said is the time of the last presence message counted for each
	// credited worker (secure mode): an older or replayed one is not.
	said map[string]time.Time
	// touched are the workers whose credit, presence or quarantine changed
	// since the last snapshot copied them (snapshot.go): every change of
	// workers, seen, left or quarantined of a worker must touch it.
	touched map[string]struct{}
}

func newPool() *pool {
	return &pool{workers: make(map[string]*wire.Credit), quarantined: make(map[string]wire.QuarantineRecord),
		seen: make(map[string]time.Time), left: make(map[string]bool), held: make(map[string]string), said: make(map[string]time.Time), cursor: make(map[string]string), moved: make(map[string]string), bulky: make(map[string]bool),
		touched: make(map[string]struct{})}
}

// touch marks worker's row for the next snapshot's copy.
func (p *pool) touch(worker string) { p.touched[worker] = struct{}{} }

// credit adds one entry, checked already and at position pos of its
// worker's stream, to the worker's credit, which it returns. The entry's
// seq follows the worker's last (the seqs it skipped are filled first).
func (p *pool) credit(e wire.Entry, pos string, now time.Time) *wire.Credit {
	w := p.batch(e.Worker, e.Seq, e.N, e.Hits, e.Cells != 0)
	w.Entries++
	w.Kernel, w.Seconds, w.Pos = e.Kernel, e.Seconds, pos
	p.accepted = sat(p.accepted, 1)
	p.seen[e.Worker] = now
	return w
}

// batch adds batch seq of worker, n samples with hits, to its credit: an
// entry's, or one the collector drew for a seq the worker skipped (a gap).
// stratified says the job is.
func (p *pool) batch(worker string, seq, n, hits uint64, stratified bool) *wire.Credit {
	w := p.workers[worker]
	if w == nil {
		w = &wire.Credit{}
		p.workers[worker] = w
	}
	w.Seq, w.N = seq, n
	w.TotalN += n
	w.TotalHits += hits
	if stratified {
		w.DevSq += p.strat.add(n, hits)
	}
	p.total = p.total.Add(mcpi.TallyOf(n, hits))
	p.disp.add(n, hits)
	p.batches = sat(p.batches, 1)
	p.touch(worker)
	return w
}

// addAnonymous adds a seed-style batch.
func (p *pool) addAnonymous(n, hits uint64) {
	t := mcpi.TallyOf(n, hits)
	p.anon = p.anon.Add(t)
	p.total = p.total.Add(t)
	p.disp.add(n, hits)
	p.anonBatches = sat(p.anonBatches, 1)
	p.batches = sat(p.batches, 1)
	p.accepted = sat(p.accepted, 1)
}

// quarantine takes worker's whole contribution out of the pool; it reports
// whether the worker was not quarantined yet.
func (p *pool) quarantine(worker string, rec wire.QuarantineRecord) bool {
	if _, ok := p.quarantined[worker]; ok {
		return false
	}
	p.quarantined[worker] = rec
	p.touch(worker)
	if w := p.workers[worker]; w != nil {
		p.total = p.total.Sub(mcpi.TallyOf(w.TotalN, w.TotalHits))
		if w.DevSq != 0 {
			p.strat.addCredit(w, -1)
		}
	}
	return true
}

// sat returns a + b, or the largest uint64 when that overflows: a counter
// that saturates says "at least this many", one that wraps says "none".
func sat(a, b uint64) uint64 {
	if a > ^uint64(0)-b {
		return ^uint64(0)
	}
	return a + b
}
