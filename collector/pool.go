package collector

import (
	"time"

	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

// pool is the exact state of a job: the latest report of every worker and
// the anonymous batches, and the pooled tally that is their sum.
type pool struct {
	total       mcpi.Tally
	workers     map[string]wire.Report
	seen        map[string]time.Time // when each worker last reported or sent a heartbeat
	left        map[string]bool      // whether its last word was goodbye
	disp        dispersion           // the scatter of the accepted chunks
	batches     uint64               // Σ seq over workers + anonymous batches
	anonBatches uint64
	duplicates  uint64
	accepted    uint64 // valid reports received live, duplicates included
}

func newPool() *pool {
	return &pool{workers: make(map[string]wire.Report), seen: make(map[string]time.Time), left: make(map[string]bool)}
}

// add applies r and returns a *wire.Error if it contradicts what the pool
// holds. It reports whether r changed the pool. Repeats of pooled reports
// count as duplicates when live.
func (p *pool) add(r wire.Report, live bool, now time.Time) (changed bool, err error) {
	if r.Anonymous() {
		p.total = p.total.Add(mcpi.TallyOf(r.N, r.Hits))
		p.disp.add(r.N, r.Hits)
		p.anonBatches = sat(p.anonBatches, 1)
		p.batches = sat(p.batches, 1)
		return true, nil
	}
	prev, ok := p.workers[r.Worker]
	if ok {
		switch {
		case r.Seq < prev.Seq:
			p.countDuplicate(live)
			return false, nil
		case r.Seq == prev.Seq:
			if r.TotalN != prev.TotalN || r.TotalHits != prev.TotalHits {
				return false, &wire.Error{Reason: wire.Inconsistent, Detail: "same seq, different totals: two workers share an id?"}
			}
			p.countDuplicate(live)
			return false, nil
		case r.TotalN < prev.TotalN || r.TotalHits < prev.TotalHits:
			return false, &wire.Error{Reason: wire.TotalsBackward, Detail: "totals smaller than at an earlier seq"}
		case r.TotalHits-prev.TotalHits > r.TotalN-prev.TotalN,
			r.TotalN-prev.TotalN < r.N,
			r.Seq == prev.Seq+1 && (r.TotalN-prev.TotalN != r.N || r.TotalHits-prev.TotalHits != r.Hits):
			return false, &wire.Error{Reason: wire.Inconsistent, Detail: "totals do not add up to the previous totals plus this batch"}
		}
	}
	p.total = p.total.Sub(mcpi.TallyOf(prev.TotalN, prev.TotalHits)).Add(mcpi.TallyOf(r.TotalN, r.TotalHits))
	p.disp.add(r.TotalN-prev.TotalN, r.TotalHits-prev.TotalHits)
	p.batches = sat(p.batches, r.Seq-prev.Seq)
	p.workers[r.Worker] = r
	if live {
		p.seen[r.Worker] = now
		p.left[r.Worker] = false
	} else if _, ok := p.seen[r.Worker]; !ok {
		p.seen[r.Worker] = time.Time{} // rebuilt from the bus: not seen yet
	}
	return true, nil
}

func (p *pool) countDuplicate(live bool) {
	if live {
		p.duplicates = sat(p.duplicates, 1)
	}
}

// sat returns a + b, or the largest uint64 when that overflows: a counter
// that saturates says "at least this many", one that wraps says "none".
func sat(a, b uint64) uint64 {
	if a > ^uint64(0)-b {
		return ^uint64(0)
	}
	return a + b
}
