package collector

import (
	"context"
	"fmt"

	"github.com/picluster/picluster/internal/wire"
)

// Gaps. A batch is a pure function of (seed, worker, seq, n), so a seq that
// a worker skipped is not unknown: the collector draws it. When the next
// entry a worker appends is not its last seq plus one, the entry waits (its
// stream is not read on) while the collector draws the seqs between, with
// the worker's n, and credits them to the worker; then the entry is read
// again and credited in order. Withholding batches therefore gains a worker
// nothing: every seq up to the last it appended counts, with the hits its
// batch has, whichever it chose to append. An honest gap (Redis lost
// acknowledged appends in a failover, or the ledger was trimmed past a
// collector that was away) is filled with the very batches that were lost,
// and quarantines no one.
//
// What is drawn is bounded (gapBudget): for a worker at seq s, at most
// MaxGaps + s/8 seqs over the job, each at most the job's cap on n, so the
// draws cost at most 64 batches and an eighth of the worker's own work. An
// entry whose gap would pass that is refused as implausible_seq (a seq 10⁶
// past the last, say), which changes nothing else: the stream's owner is
// not quarantined, and its next entry in order is credited as usual. A
// worker whose stream lost more than that (no failover loses so much) has
// its later entries refused, by name, until it is restarted under a new id.
//
// While a fill is drawn (one at a time, on one core, oldest first) the rest
// of the job goes on: the waiting stream is not read again, other streams
// are, and the mark moves up to the oldest waiting entry, no further, so
// that no collector trims what waits. A fill does not hold the target back: until it is
// drawn its worker's credit is a whole prefix of its seqs, which biases
// nothing; the final read draws what is left in its time bound, and what
// it cannot is left out together with the entries after it (GapsPending),
// for a later collector to draw.
//
// What silence can still do: a worker may stop appending for good at a
// moment it likes (the batches after its last entry are not drawn, since
// no one knows how many there were). That is one optional stop of one
// random walk: it moves π̂ by about √s standard errors at most in
// expectation, s the worker's share of N (0.8·√s for the best stopping time
// of a Brownian path); choosing its n in its first entry as well (a smaller
// n draws a prefix of a larger batch's points) about doubles that (+0.69 SE
// in expectation at s = 0.5, in a simulation). README.md says so.

// MaxGaps is how many skipped seqs the collector draws for a worker
// whatever its seq (gapBudget).
const MaxGaps = 64

// gapBudget is how many skipped seqs, in all, the collector draws for a
// worker whose last seq is seq: MaxGaps and one in eight of its seqs.
func gapBudget(seq uint64) uint64 { return MaxGaps + seq/8 }

// fill is a run of seqs that a worker skipped: from … to, n samples each,
// found in pool p (a reload makes a new pool, and the fill is dropped).
type fill struct {
	worker   string
	from, to uint64
	n        uint64
}

// gapFill queues the seqs before entry e, at id in its stream, that its
// worker skipped, and reports whether there were any: then e waits for
// them, and the stream is tracked from now on. c.mu is held.
func (c *Collector) gapFill(e wire.Entry, id string) bool {
	last := uint64(0)
	if w := c.pool.workers[e.Worker]; w != nil {
		last = w.Seq
	}
	if e.Seq <= last+1 {
		return false
	}
	c.pool.fills = append(c.pool.fills, fill{worker: e.Worker, from: last + 1, to: e.Seq - 1, n: e.N})
	c.pool.held[e.Worker] = id
	c.pool.drawing += e.Seq - 1 - last
	if _, tracked := c.pool.cursor[e.Worker]; !tracked {
		c.pool.cursor[e.Worker] = "" // counted by full(), and read from its start after the fill
	}
	select {
	case c.fillBell <- struct{}{}:
	default:
	}
	return true
}

// fillLoop draws the queued fills until ctx is done.
func (c *Collector) fillLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.fillBell:
		}
		for c.fillOne(ctx) {
		}
	}
}

// fillOne draws the oldest queued fill and credits it, outside c.mu; it
// reports whether there was one.
func (c *Collector) fillOne(ctx context.Context) bool {
	c.mu.Lock()
	if len(c.pool.fills) == 0 {
		c.mu.Unlock()
		return false
	}
	p, f := c.pool, c.pool.fills[0]
	p.fills = p.fills[1:]
	job, kernel := c.job, c.cfg.Kernel
	c.mu.Unlock()

	defer func() { // the final read waits for it
		select {
		case c.filled <- struct{}{}:
		default:
		}
	}()
	hits := make([]uint64, 0, f.to-f.from+1)
	for seq := f.from; seq <= f.to; seq++ {
		if ctx.Err() != nil {
			c.mu.Lock()
			if c.pool == p { // first in line again: the final read draws it
				p.fills = append([]fill{f}, p.fills...)
			}
			c.mu.Unlock()
			return false
		}
		h, _ := Replay(wire.Entry{Worker: f.worker, Seq: seq, N: f.n, Seed: job.Seed, Cells: job.Cells}, kernel)
		hits = append(hits, h)
	}

	c.mu.Lock()
	credited := c.pool == p
	if credited {
		delete(p.held, f.worker)
		p.drawing -= f.to - f.from + 1
		_, q := p.quarantined[f.worker]
		w := p.workers[f.worker]
		switch {
		case q: // quarantined meanwhile: its contribution is out
			credited = false
		case w == nil && f.from != 1, w != nil && w.Seq != f.from-1:
			credited = false // cannot happen: the stream is not read while it fills
		default:
			for i, h := range hits {
				p.batch(f.worker, f.from+uint64(i), f.n, h, job.Cells != 0)
			}
			w = p.workers[f.worker]
			w.Gaps = sat(w.Gaps, uint64(len(hits)))
			p.gaps = sat(p.gaps, uint64(len(hits)))
			c.dirty[f.worker] = true
			c.history.add(p.total, c.cfg.Now())
		}
	}
	c.mu.Unlock()
	if credited {
		c.log.Info("drew the seqs a worker skipped and credited them to it", "worker", f.worker,
			"seqs", fmt.Sprintf("%d…%d", f.from, f.to), "n", f.n)
	}
	c.bell.poke(f.worker) // its stream is read on from the entry that waited
	return true
}

// gapsPending returns how many skipped seqs wait to be drawn.
func (c *Collector) gapsPending() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pool.drawing
}

// settle credits the ledger to its end with every gap in it drawn: a
// catch-up, then the fills it found, until none is left or ctx is done.
// Fills left when ctx is done are no error: the pool holds every worker's
// batches up to its gap, and none after it.
func (c *Collector) settle(ctx context.Context) (int, error) {
	total := 0
	for {
		n, err := c.catchUp(ctx)
		total += n
		if err != nil || c.gapsPending() == 0 {
			return total, err
		}
		if !c.fillOne(ctx) { // the fill loop draws it: wait for it
			select {
			case <-c.filled:
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			return total, nil
		}
	}
}
