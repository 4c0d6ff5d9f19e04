package collector

import (
	"context"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/picluster/picluster/internal/backoff"
	"github.com/picluster/picluster/internal/wire"
)

// Reading the ledger: the reader's loop (read), a sweep of every stream
// (sweep, catchUp), the reload when the ledger was trimmed past this
// collector (ensureAhead), and the reads themselves (readStreams).

// read credits the ledger as it grows until ctx is done or the target is
// reached: the streams whose entries were announced on the channel at once,
// every stream at each sweep.
func (c *Collector) read(ctx context.Context) error {
	tick := time.NewTicker(c.cfg.SweepEvery)
	defer tick.Stop()
	var bo backoff.Backoff
	last, took := time.Now(), time.Duration(0) // scheduling, not a record: the real (or synctest's) clock
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.bell.ring:
		case <-tick.C:
		}
		hot := c.bell.take()
		// A sweep reads every stream; at most a tenth of the time goes to them.
		sweep := time.Since(last) >= max(c.cfg.SweepEvery, 10*took)
		var err error
		if sweep {
			start := time.Now()
			if err = c.sweep(ctx); err == nil {
				last, took = time.Now(), time.Since(start)
				c.mu.Lock()
				c.swept = took
				c.mu.Unlock()
			}
		} else {
			_, err = c.readStreams(ctx, hot, false)
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, errAway) {
				last = time.Time{} // sweep now: it reloads first
				continue
			}
			if backoff.IsPermanent(err) {
				return err
			}
			if bo.Failures() == 0 {
				c.log.Warn("reading the ledger failed; retrying", "err", err)
			}
			if bo.Wait(ctx) != nil { // what was announced meanwhile is read at the next sweep
				break
			}
			continue
		}
		if bo.Failures() > 0 {
			c.log.Info("the ledger answers again")
		}
		bo.Reset()
		if c.targetReached() { // anonymous batches and replays can bring it too
			return c.finish(ctx)
		}
	}
	return ctx.Err()
}

// catchUp credits the ledger up to its end: one sweep, retried.
func (c *Collector) catchUp(ctx context.Context) (int, error) {
	c.mu.Lock()
	before := c.pool.accepted
	c.mu.Unlock()
	err := backoff.Retry(ctx, c.log, "read the ledger", func() error { return c.sweep(ctx) })
	c.mu.Lock()
	defer c.mu.Unlock()
	return int(c.pool.accepted - before), err
}

// sweep reads every stream of the ledger to its end, then moves the mark to
// the bus's time at its start. It first records the mark among the
// ledger's readers, so that no other collector trims what this one has not
// read, and reloads from the checkpoint when the ledger was trimmed past it
// already (this collector was away, or had not registered yet).
func (c *Collector) sweep(ctx context.Context) error {
	start, err := c.busNow(ctx)
	if err != nil {
		return err
	}
	if err := c.ensureAhead(ctx, start); err != nil {
		return err
	}
	c.mu.Lock()
	ids := slices.Collect(maps.Keys(c.pool.cursor))
	c.mu.Unlock()
	fresh := make(map[string]bool) // the untracked streams found, each once: at most as many as the job may yet track
	err = scanLedgers(ctx, c.bus, func(workers []string) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, w := range workers {
			switch _, tracked := c.pool.cursor[w]; {
			case tracked, fresh[w]: // read already, or to read
			case c.full():
				c.refuse(w)
			case len(fresh) < 2*c.cfg.MaxWorkers-len(c.pool.cursor):
				fresh[w] = true
				ids = append(ids, w)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if _, err := c.readStreams(ctx, ids, true); err != nil {
		return err
	}
	c.mu.Lock()
	mark := start.String()
	for _, id := range c.pool.held { // an entry waiting for its fill is not credited yet: the mark stays at it
		if wire.Later(mark, id) {
			mark = id
		}
	}
	if wire.Later(mark, c.pool.mark) {
		c.pool.mark = mark
	}
	c.mu.Unlock()
	return nil
}

// ensureAhead records this collector's mark among the ledger's readers and
// reloads from the checkpoint when the ledger was trimmed past it.
func (c *Collector) ensureAhead(ctx context.Context, now wire.ID) error {
	if err := c.register(ctx, now); err != nil {
		return err
	}
	readers, err := c.bus.Readers(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	mark, away := c.pool.mark, c.away
	c.mu.Unlock()
	trimmed := readers[trimmedField]
	switch {
	case away:
		c.log.Warn("this collector did not record its mark for longer than the others wait for it: reloading from the checkpoint",
			"mark", mark, "after", c.awayAfter())
	case trimmed != "" && wire.Later(trimmed, mark):
		c.log.Warn("the ledger was trimmed past this collector's mark; reloading from the checkpoint", "mark", mark, "trimmed", trimmed)
	default:
		return nil
	}
	c.mu.Lock()
	c.away = false // latched again if this collector is away while it loads
	c.mu.Unlock()
	if err := c.load(ctx); err != nil {
		c.mu.Lock()
		c.away = c.away || away
		c.mu.Unlock()
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if wire.Later(trimmed, c.pool.mark) {
		c.log.Error("the checkpoint is behind the trimmed ledger too: entries between them are lost to this collector", "checkpoint", c.pool.mark, "trimmed", trimmed)
	}
	return nil
}

// readStreams reads the streams of workers to their ends and credits what
// they hold; it returns how many entries it read. A stream not tracked yet
// is read from its start, and tracked if it holds entries and the job
// tracks fewer streams than it may. Streams not tracked yet, and those that
// held an oversized entry, are read carefully: one entry each, carefulKeys
// streams at a time, so that no read holds more than carefulKeys entries
// of unknown size (each at most Redis's proto-max-bulk-len). With hot (a
// sweep), it reads the streams announced meanwhile between two pages of
// workers, so that a sweep of many streams does not hold up the news.
func (c *Collector) readStreams(ctx context.Context, workers []string, hot bool) (int, error) {
	type read struct {
		from  []wire.Cursor
		count int
	}
	total := 0
	for len(workers) > 0 {
		if hot {
			if news := c.bell.take(); len(news) > 0 {
				n, err := c.readStreams(ctx, news, false)
				total += n
				if err != nil {
					return total, err
				}
			}
		}
		chunk := workers[:min(len(workers), ledgerKeys)]
		workers = workers[len(chunk):]
		reads := []read{{count: ledgerPage}}
		c.mu.Lock()
		for _, w := range chunk {
			pos, tracked := c.pool.cursor[w]
			if !tracked && c.full() {
				continue // counted by the sweep that finds it, if it exists
			}
			cur := wire.Cursor{Worker: w, After: pos}
			if tracked && !c.pool.bulky[w] {
				reads[0].from = append(reads[0].from, cur)
				continue
			}
			// Unknown, or it held an oversized entry: one entry at a time.
			if last := &reads[len(reads)-1]; len(reads) > 1 && len(last.from) < carefulKeys {
				last.from = append(last.from, cur)
			} else {
				reads = append(reads, read{[]wire.Cursor{cur}, 1})
			}
		}
		c.mu.Unlock()
		for _, r := range reads {
			entries, err := c.bus.ReadLedgers(ctx, r.from, r.count)
			if err != nil {
				return total, err
			}
			if c.isAway() { // read from cursors the ledger may have been trimmed past
				return total, errAway
			}
			total += len(entries)
			c.creditAll(ctx, entries)
			c.mu.Lock()
			for i := 0; i < len(entries); {
				j := i + 1
				for j < len(entries) && entries[j].Worker == entries[i].Worker {
					j++
				}
				// A full page: there may be more, unless the stream waits
				// for a fill (it is read again when the fill is drawn).
				if w := entries[i].Worker; j-i >= r.count && c.pool.held[w] == "" {
					workers = append(workers, w)
				}
				i = j
			}
			c.mu.Unlock()
		}
	}
	return total, nil
}
