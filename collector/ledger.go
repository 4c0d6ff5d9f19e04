package collector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/picluster/picluster/internal/wire"
)

// checkpointJob is the checkpoint's field naming the job it belongs to: a
// checkpoint of another job is not loaded.
const checkpointJob = "job"

// trimmedField is the readers hash field where the last trim point is kept,
// so a collector that was away longer than Config.ReaderTTL knows it must reload.
const trimmedField = "trimmed"

// ErrJobReset ends Run when the job state names another job: another
// collector ran --reset. This collector's credits belong to the old job;
// it must neither checkpoint nor trim the new one.
var ErrJobReset = errors.New("the job was reset by another collector (its state names another job): this collector stops")

// tend checkpoints, records this collector's mark among the readers,
// refreshes the quarantine and trims the ledger every CheckpointEvery, until
// ctx is done. When the job state names another job it
// stops Run with ErrJobReset.
func (c *Collector) tend(ctx context.Context, stop context.CancelCauseFunc) {
	t := time.NewTicker(c.cfg.CheckpointEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.restore(ctx) // the state gone (Redis lost its data): write the job again
		if b, err := c.bus.State(ctx); err == nil && b != nil {
			st, err := wire.DecodeState(b)
			c.mu.Lock()
			mine := c.job.Job
			c.mu.Unlock()
			if err == nil && st.Job != mine {
				c.log.Error(ErrJobReset.Error(), "job", mine, "now", st.Job)
				stop(ErrJobReset)
				return
			}
		}
		if err := c.loadQuarantine(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("reading the quarantine failed; retrying at the next checkpoint", "err", err)
		}
		c.checkpoint(ctx)
		now, err := c.busNow(ctx)
		if err == nil {
			err = c.register(ctx, now)
		}
		if err == nil && !c.isAway() { // away, its view is stale: it trims after its reload
			err = c.trim(ctx, now) // each stream at most every LedgerWindow/trimEvery
		}
		if err != nil && ctx.Err() == nil {
			c.log.Warn("recording this collector's mark or trimming the ledger failed; retrying at the next checkpoint", "err", err)
		}
	}
}

// busNow returns the bus's clock: the one that stamps the entries, and
// the readers' records.
func (c *Collector) busNow(ctx context.Context) (wire.ID, error) {
	t, err := c.bus.Time(ctx)
	if err != nil {
		return wire.ID{}, err
	}
	return wire.ParseID(t)
}

// awayAfter is how long a collector may go without recording its mark
// before it takes itself for gone, as the others do after ReaderTTL: half
// of that, a margin for the clocks and the calls in flight.
func (c *Collector) awayAfter() time.Duration { return c.cfg.ReaderTTL / 2 }

// errAway stops a read whose cursors the ledger may have been trimmed past
// (Collector.away): the next sweep reloads from the checkpoint first.
var errAway = errors.New("away from the ledger's readers for longer than they wait: reloading from the checkpoint")

// register records this collector's mark among the ledger's readers,
// stamped with now by the bus's clock: a collector whose record is older
// than ReaderTTL by that clock is taken to be gone. A collector that
// registers after more than awayAfter (it was frozen, cut off, or Redis
// was down) is away until it reloads.
func (c *Collector) register(ctx context.Context, now wire.ID) error {
	start := time.Now() // a duration, not a record: the monotonic clock
	c.mu.Lock()
	mark := c.pool.mark
	c.mu.Unlock()
	if err := c.bus.SetReader(ctx, c.cfg.Name, mark+" "+strconv.FormatUint(now.Ms, 10)); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.registered.IsZero() && elapsed(c.registered, start) > c.awayAfter() ||
		c.registeredAt != 0 && now.Ms > c.registeredAt+uint64(c.awayAfter().Milliseconds()) {
		c.away = true
	}
	c.registered, c.registeredAt = start, now.Ms
	return nil
}

// isAway reports whether this collector is away (register), or has been
// longer than awayAfter since it last registered.
func (c *Collector) isAway() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.away || !c.registered.IsZero() && elapsed(c.registered, time.Now()) > c.awayAfter()
}

// elapsed is the longer of the monotonic and the wall clock's time from
// t to u: the monotonic clock stops while the host is suspended.
func elapsed(t, u time.Time) time.Duration { return max(u.Sub(t), u.Round(0).Sub(t.Round(0))) }

// restore writes the job state, the quarantine and, at the next checkpoint,
// every credit again when the state has vanished: Redis lost its data (a
// restart without persistence). Every collector then converges on this
// one's credits; ledger entries appended before the loss and not yet
// credited are lost. A state written meanwhile (a reset's new job) wins.
func (c *Collector) restore(ctx context.Context) {
	b, err := c.bus.State(ctx)
	if err != nil || b != nil {
		return
	}
	c.mu.Lock()
	s := c.job
	quarantined := maps.Clone(c.pool.quarantined)
	c.mu.Unlock()
	if s.Job == "" {
		return
	}
	ok, err := c.bus.RestoreState(ctx, wire.EncodeState(s))
	if err != nil || !ok {
		return
	}
	c.log.Warn("the job state was gone (Redis lost its data?): wrote the job and its whole checkpoint again; entries not yet credited are lost",
		"job", s.Job)
	for id, rec := range quarantined {
		if b, err := json.Marshal(rec); err == nil {
			_ = c.bus.Quarantine(ctx, id, b)
		}
	}
	c.mu.Lock()
	for id := range c.pool.workers {
		c.dirty[id] = true
	}
	c.mu.Unlock()
}

// checkpoint saves the credits changed since the last checkpoint with the
// mark they stand at.
func (c *Collector) checkpoint(ctx context.Context) {
	c.mu.Lock()
	pos, job := c.pool.mark, c.job.Job
	credits := make(map[string]wire.Credit, len(c.dirty))
	for id := range c.dirty {
		credits[id] = *c.pool.workers[id]
	}
	c.mu.Unlock()
	if pos == "" {
		return
	}
	fields := make(map[string][]byte, len(credits)+1)
	fields[checkpointJob] = []byte(job)
	for id, cr := range credits {
		fields[wire.CheckpointWorker+id] = wire.EncodeCredit(cr)
	}
	saved, err := c.bus.SaveCheckpoint(ctx, pos, fields)
	if err != nil {
		c.log.Warn("checkpoint failed; retrying at the next one", "err", err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.savedPos = pos // saved, or the checkpoint holds a later mark already
	if saved {
		for id, cr := range credits {
			if w := c.pool.workers[id]; w != nil && *w == cr { // not credited again since
				delete(c.dirty, id)
			}
		}
	}
}

// trimEvery: a stream is trimmed at most once every LedgerWindow/trimEvery
// (of the trim point's advance), so that a job of many workers, each
// appending every few seconds, costs a trim per stream per 15 s (by
// default), not per checkpoint. Credited entries stay in the ledger for at
// least LedgerWindow and at most about (1 + 1/trimEvery)·LedgerWindow +
// CheckpointEvery.
const trimEvery = 4

// trim removes from the streams read on since their last trim what every
// live collector has credited and checkpointed, but for the last
// LedgerWindow, and records where it trimmed; a stream trimmed less than
// LedgerWindow/trimEvery ago waits (trimEvery). A collector that finds that
// point past its own mark (it was away longer than ReaderTTL) reloads from
// the checkpoint before it reads on (ensureAhead).
func (c *Collector) trim(ctx context.Context, now wire.ID) error {
	readers, err := c.bus.Readers(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	saved := c.savedPos
	c.mu.Unlock()
	low, err := wire.ParseID(saved) // never past what the checkpoint holds
	if err != nil || saved == "" {
		return err
	}
	for name, v := range readers {
		if name == trimmedField {
			continue
		}
		pos, ms, ok := strings.Cut(v, " ")
		at, err1 := strconv.ParseUint(ms, 10, 64)
		id, err2 := wire.ParseID(pos)
		if !ok || err1 != nil || err2 != nil || now.Ms > at+uint64(c.cfg.ReaderTTL.Milliseconds()) { // both by the bus's clock
			continue
		}
		if id.Less(low) {
			low = id
		}
	}
	window := uint64(c.cfg.LedgerWindow.Milliseconds())
	if low.Ms <= window {
		return nil
	}
	minID := wire.ID{Ms: low.Ms - window}.String()
	again := wire.ID{Ms: low.Ms - window - min(low.Ms-window, window/trimEvery)}.String() // streams trimmed at or after it wait
	c.mu.Lock()
	streams := make([]string, 0, len(c.pool.moved))
	for w, at := range c.pool.moved {
		if at == "" || wire.Later(again, at) {
			streams = append(streams, w)
		}
	}
	c.mu.Unlock()
	for len(streams) > 0 {
		chunk := streams[:min(len(streams), ledgerKeys)]
		streams = streams[len(chunk):]
		trims := make(map[string]string, len(chunk))
		for _, w := range chunk {
			trims[w] = minID
		}
		if err := c.bus.TrimLedgers(ctx, trims); err != nil {
			return err
		}
		// A stream read no further than the trim point needs no trim
		// until it moves again.
		c.mu.Lock()
		for _, w := range chunk {
			if !wire.Later(c.pool.cursor[w], minID) {
				delete(c.pool.moved, w)
			} else if _, ok := c.pool.moved[w]; ok {
				c.pool.moved[w] = minID
			}
		}
		c.mu.Unlock()
	}
	if !wire.Later(minID, readers[trimmedField]) {
		return nil // the trim point never goes back (as far as this collector saw)
	}
	return c.bus.SetReader(ctx, trimmedField, minID)
}

// loadQuarantine applies the quarantine records on the bus, some perhaps
// written by another collector or by picluster verify.
func (c *Collector) loadQuarantine(ctx context.Context) error {
	m, err := c.bus.Quarantined(ctx)
	if err != nil {
		return fmt.Errorf("read the quarantine: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, b := range m {
		var rec wire.QuarantineRecord
		if json.Unmarshal(b, &rec) != nil {
			rec.Reason = "unreadable record"
		}
		if rec.Job != "" && rec.Job != c.job.Job {
			continue // another job's record, left by a collector that had not seen a --reset
		}
		if c.pool.quarantine(id, rec) {
			c.log.Warn("worker quarantined: its whole contribution leaves the estimate", "worker", id, "reason", rec.Reason, "seq", rec.Seq, "by", rec.By)
			c.history.add(c.pool.total, c.cfg.Now())
		}
	}
	return nil
}

// LedgerReader is what reading a whole ledger takes: a part of Bus.
type LedgerReader interface {
	ScanLedgers(ctx context.Context, cursor uint64) (workers []string, next uint64, err error)
	ReadLedgers(ctx context.Context, from []wire.Cursor, count int) ([]wire.LedgerEntry, error)
}

// ReadLedger hands every entry of every worker's stream of the ledger to
// fn, each stream in order, page by page: picluster verify and the tests
// read a ledger with it.
func ReadLedger(ctx context.Context, l LedgerReader, fn func(wire.LedgerEntry)) error {
	seen := make(map[string]bool)
	return scanLedgers(ctx, l, func(workers []string) error {
		var from []wire.Cursor
		for _, w := range workers {
			if !seen[w] {
				seen[w] = true
				from = append(from, wire.Cursor{Worker: w})
			}
		}
		for len(from) > 0 {
			page, err := l.ReadLedgers(ctx, from[:min(len(from), ledgerKeys)], ledgerPage)
			if err != nil {
				return err
			}
			from = from[min(len(from), ledgerKeys):]
			count, last := make(map[string]int), make(map[string]string)
			for _, le := range page {
				fn(le)
				count[le.Worker]++
				last[le.Worker] = le.ID
			}
			for w, k := range count {
				if k == ledgerPage { // a full page: there may be more
					from = append(from, wire.Cursor{Worker: w, After: last[w]})
				}
			}
		}
		return nil
	})
}

// scanLedgers hands fn, a SCAN page at a time, the workers whose stream of
// the ledger exists; a SCAN may return a worker twice in a pass, which fn
// must bear.
func scanLedgers(ctx context.Context, l LedgerReader, fn func(workers []string) error) error {
	var cursor uint64
	for {
		workers, next, err := l.ScanLedgers(ctx, cursor)
		if err != nil {
			return err
		}
		if err := fn(workers); err != nil {
			return err
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}
