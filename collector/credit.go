package collector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

// Crediting: whether a ledger entry, an anonymous report or a presence
// message counts (check, creditAll, handle, HandlePresence), and how a
// refusal is counted and logged (reject). The seqs a worker skipped are
// drawn in fill.go; the rules for anonymous reports are in anon.go.

// maxLogged bounds the distinct (sender, reason) pairs logged, so a flood of
// garbage from random senders cannot grow memory; past it, rejections are
// only counted.
const maxLogged = 1000

// signed reports whether le is signed with its worker's key, derived when
// le's worker is not the last entry's; c.mu is held.
func (c *Collector) signed(le wire.LedgerEntry) bool {
	if c.mac.v == nil || c.mac.worker != le.Worker {
		c.mac.worker, c.mac.v = le.Worker, wire.NewVerifier(wire.WorkerKey(c.cfg.Key, le.Worker))
	}
	return c.mac.v.OK(le.Payload, le.Sig)
}

// full reports whether the job tracks as many streams as it may:
// 2·MaxWorkers, the workers credited and as many streams that hold only
// rejected entries. c.mu is held.
func (c *Collector) full() bool { return len(c.pool.cursor) >= 2*c.cfg.MaxWorkers }

// refuse counts a stream found in the ledger and not read because the job
// tracks as many as it may, once per stream (of up to maxLogged); c.mu is
// held.
func (c *Collector) refuse(worker string) {
	if !c.refused[worker] && len(c.refused) < maxLogged {
		c.refused[worker] = true
		c.reject(&wire.Error{Reason: wire.TooMany, Detail: fmt.Sprintf("the job tracks %d streams already", 2*c.cfg.MaxWorkers)}, worker)
	}
}

// creditAll credits entries in order and reports whether the pool changed.
// An entry after seqs its worker skipped waits, unread, while they are
// drawn (fill.go). Entries refused for their size or shape are deleted
// from the ledger at once.
func (c *Collector) creditAll(ctx context.Context, entries []wire.LedgerEntry) bool {
	if len(entries) == 0 {
		return false
	}
	now := c.cfg.Now()
	c.mu.Lock()
	changed := false
	var waste map[string][]string
	for _, le := range entries {
		if _, tracked := c.pool.cursor[le.Worker]; !tracked && c.full() || c.pool.held[le.Worker] != "" {
			continue
		}
		e, err := c.check(le)
		if err == nil && c.gapFill(e, le.ID) {
			continue // read again once the gap is drawn
		}
		c.pool.cursor[le.Worker] = le.ID
		if _, ok := c.pool.moved[le.Worker]; !ok {
			c.pool.moved[le.Worker] = "" // trim it at the next trim
		}
		if len(le.Payload) > wire.MaxSize {
			c.pool.bulky[le.Worker] = true // read carefully from now on
		}
		if err != nil {
			c.reject(err, le.Worker) // the stream's owner: one log line per reason however many entries
			if junk(err) {
				if waste == nil {
					waste = make(map[string][]string)
				}
				waste[le.Worker] = append(waste[le.Worker], le.ID)
			}
			continue
		}
		e.Worker = le.Worker // equal (check), and the string the maps above hold
		c.pool.credit(e, le.ID, now)
		c.dirty[e.Worker] = true
		changed = true
		if p, ok := c.ver.choose(e, c.pool); ok {
			c.ver.enqueue(p) // under c.mu: a Summary never shows an entry credited but not yet queued
		}
	}
	if changed {
		c.history.add(c.pool.total, now)
	}
	c.mu.Unlock()
	if waste != nil {
		if err := c.bus.DeleteEntries(ctx, waste); err != nil {
			c.log.Warn("deleting refused entries failed; the trim removes them later", "err", err)
		}
	}
	return changed
}

// junk reports whether err refuses an entry for its size or for not being
// JSON text at all: no version of an entry is either, so it is deleted at
// once whatever the job's state or this collector's version. Other refused
// entries (a later version's fields, say) stay for the trim.
func junk(err error) bool {
	var e *wire.Error
	return errors.As(err, &e) && (e.Reason == wire.Oversized || e.Reason == wire.NotJSON || e.Reason == wire.BadUTF8)
}

// check decides whether ledger entry le may be credited; c.mu is held.
func (c *Collector) check(le wire.LedgerEntry) (wire.Entry, error) {
	e, err := wire.DecodeEntry(le.Payload)
	if err != nil {
		return e, err
	}
	fail := func(r wire.Reason, format string, args ...any) (wire.Entry, error) {
		return e, &wire.Error{Reason: r, Detail: fmt.Sprintf(format, args...)}
	}
	job := c.job
	switch {
	case e.Worker != le.Worker:
		return fail(wire.WrongStream, "an entry of %q in the stream of %q", e.Worker, le.Worker)
	case e.Job != job.Job:
		return fail(wire.WrongJob, "job %s, this job is %s", e.Job, job.Job)
	case e.Seed != job.Seed:
		return fail(wire.WrongSeed, "seed %s, the job's is %s", e.Seed, job.Seed)
	case e.N > job.MaxN:
		return fail(wire.TooLarge, "n %d above the job's cap %d", e.N, job.MaxN)
	}
	if err := checkEstimator(e, job); err != nil {
		return e, err
	}
	if c.cfg.Key != nil {
		if le.Sig == "" {
			return fail(wire.Unsigned, "entry %d of %q has no signature and the job is in secure mode", e.Seq, e.Worker)
		}
		if !c.signed(le) {
			return fail(wire.BadSig, "entry %d of %q is not signed with its key", e.Seq, e.Worker)
		}
	}
	if _, q := c.pool.quarantined[e.Worker]; q {
		return fail(wire.Quarantined, "worker %q is quarantined", e.Worker)
	}
	w := c.pool.workers[e.Worker]
	switch {
	case w == nil && len(c.pool.workers) >= c.cfg.MaxWorkers:
		return fail(wire.TooMany, "the job credits %d workers already", c.cfg.MaxWorkers)
	case w == nil:
	case e.Seq <= w.Seq:
		c.pool.duplicates = sat(c.pool.duplicates, 1)
		return fail(wire.Duplicate, "seq %d, worker %q is at %d", e.Seq, e.Worker, w.Seq)
	case e.N != w.N:
		return fail(wire.NChanged, "n %d, worker %q draws %d", e.N, e.Worker, w.N)
	}
	var last, drawn uint64
	if w != nil {
		last, drawn = w.Seq, w.Gaps
	}
	if gap, budget := e.Seq-last-1, gapBudget(last); gap > budget-min(drawn, budget) {
		return fail(wire.ImplausibleSeq, "seq %d of %q: %d seqs past its last (%d), and the collector draws at most %d skipped seqs for it by now (%d drawn already); its entries are refused until one follows seq %d",
			e.Seq, e.Worker, gap, last, budget, drawn, last)
	}
	if w != nil && w.TotalN > math.MaxUint64-(e.Seq-last)*e.N { // ≤ (MaxGaps+1)·MaxEntryN: no overflow
		return fail(wire.TooLarge, "worker %q would pass 2⁶⁴ samples", e.Worker)
	}
	return e, nil
}

// reject counts a refused entry or report and logs it once per sender and
// reason; c.mu is held.
func (c *Collector) reject(err error, sender string) {
	var e *wire.Error
	if !errors.As(err, &e) {
		e = &wire.Error{Reason: wire.NotJSON, Detail: err.Error()}
	}
	c.rejected[e.Reason] = sat(c.rejected[e.Reason], 1)
	if sender == "" {
		sender = "(unnamed)"
	}
	key := sender + "\x00" + string(e.Reason)
	if !c.logged[key] && len(c.logged) < maxLogged {
		c.logged[key] = true
		c.log.Warn("rejected (logged once per sender and reason)", "sender", sender, "reason", e.Reason, "detail", e.Detail)
	}
}

// listen reads the report channel for anonymous batches and the presence
// channel, until ctx is done.
func (c *Collector) listen(msgs <-chan wire.Message) {
	for m := range msgs {
		switch m.Kind {
		case wire.KindPresence:
			c.HandlePresence(m.Payload)
		case wire.KindReport:
			c.Handle(m.Payload)
		}
		// After a KindSubscribed, what was announced while unsubscribed is
		// read at the next sweep.
	}
}

// echoPrefix starts every ledger entry's JSON (EncodeEntry writes "v"
// first): the channel's copy of an entry is credited from the ledger, not here.
var echoPrefix = []byte(`{"v":2,`)

// workerMember starts the worker's id in a payload: EncodeEntry writes it
// so, and so do the README's Python peers.
var workerMember = []byte(`"worker":"`)

// claimedWorker returns the worker id a payload names, found without
// decoding it: the first "worker" member's, if it has no escapes and is at
// most wire.MaxWorkerLen bytes. It is only what the payload claims.
func claimedWorker(payload []byte) (string, bool) {
	if _, rest, ok := bytes.Cut(payload, workerMember); ok {
		if id, _, ok := bytes.Cut(rest, []byte{'"'}); ok && len(id) > 0 && len(id) <= wire.MaxWorkerLen && bytes.IndexByte(id, '\\') < 0 {
			return string(id), true
		}
	}
	return "", false
}

// claimedSender is the sender a rejection is logged under: worker, the
// decoded id, or else the id payload claims ("claimed ID"), or "".
func claimedSender(worker string, payload []byte) string {
	if worker != "" {
		return worker
	}
	if id, ok := claimedWorker(payload); ok {
		return "claimed " + id
	}
	return ""
}

// echoWorker returns the worker an entry's echo on the channel names, only
// a hint of which stream to read: the ledger's copy is checked. It finds
// the id without decoding the whole entry (claimedWorker), falling back to
// DecodeEntry when the id holds escapes.
func echoWorker(payload []byte) (string, bool) {
	if id, ok := claimedWorker(payload); ok {
		return id, true
	}
	e, err := wire.DecodeEntry(payload)
	return e.Worker, err == nil
}

// Handle counts one payload from the report channel: an anonymous batch in
// open mode. It never fails: a bad payload is counted and logged.
func (c *Collector) Handle(payload []byte) { _ = c.handle(payload) }

func (c *Collector) handle(payload []byte) (changed bool) {
	if bytes.HasPrefix(payload, echoPrefix) {
		if w, ok := echoWorker(payload); ok {
			c.bell.poke(w) // the reader credits it from the worker's stream
		}
		return false
	}
	r, err := wire.Decode(payload)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case err != nil:
	case !r.Anonymous():
		err = &wire.Error{Reason: wire.V1Report, Detail: "a protocol v1 worker's report: upgrade the worker; v2 credits only ledger entries"}
	case c.cfg.Key != nil:
		err = &wire.Error{Reason: wire.Anonymous, Detail: "anonymous reports do not count in secure mode"}
	case c.job.Cells != 0:
		err = &wire.Error{Reason: wire.WrongEstimator, Detail: "an anonymous batch is plain Monte Carlo; this job is stratified"}
	case r.N > c.cfg.AnonMaxN:
		err = &wire.Error{Reason: wire.TooLarge, Detail: fmt.Sprintf("anonymous n %d above the cap %d", r.N, c.cfg.AnonMaxN)}
	default:
		err = c.anonFits(mcpi.TallyOf(r.N, r.Hits))
	}
	if err != nil {
		c.reject(err, claimedSender(r.Worker, payload))
		return false
	}
	c.pool.addAnonymous(r.N, r.Hits)
	c.history.add(c.pool.total, c.cfg.Now())
	c.bell.signal() // the reader looks at the target
	return true
}

// MaxPresenceAge is how old, by the collector's clock, a presence message
// of a secure job may be: an older one is taken for a replay.
const MaxPresenceAge = time.Minute

// HandlePresence records a worker's heartbeat or goodbye. Presence of ids
// that have no credit is ignored, so it cannot grow memory; malformed
// messages are counted with the rejected reports. In secure mode a message
// counts only when signed with its worker's key, of this job, at most
// MaxPresenceAge old and newer than the last one counted (so a replayed
// heartbeat cannot undo a goodbye, nor an old goodbye end a worker); one
// that is not is refused as unauthenticated. In open mode presence is a
// hint anyone can give.
func (c *Collector) HandlePresence(payload []byte) {
	p, err := wire.DecodePresence(payload)
	c.mu.Lock()
	if err != nil {
		c.reject(err, claimedSender(p.Worker, payload))
		c.mu.Unlock()
		return
	}
	credited := c.pool.workers[p.Worker] != nil
	c.mu.Unlock()
	if !credited {
		return
	}
	if c.cfg.Key != nil && !wire.PresenceSigned(wire.WorkerKey(c.cfg.Key, p.Worker), p) { // outside the lock: two HMACs
		err = &wire.Error{Reason: wire.Unauthenticated, Detail: fmt.Sprintf("a %s message for %q not signed with its key", p.Status, p.Worker)}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil && c.cfg.Key != nil {
		last, said := c.pool.said[p.Worker]
		switch now := c.cfg.Now(); {
		case p.Job != c.job.Job:
			err = &wire.Error{Reason: wire.Unauthenticated, Detail: fmt.Sprintf("a %s message for %q of job %q, not this job", p.Status, p.Worker, p.Job)}
		case said && !p.At.After(last):
			err = &wire.Error{Reason: wire.Unauthenticated, Detail: fmt.Sprintf("a %s message for %q from %v, not after its last (%v): replayed", p.Status, p.Worker, p.At, last)}
		case p.At.Before(now.Add(-MaxPresenceAge)):
			err = &wire.Error{Reason: wire.Unauthenticated, Detail: fmt.Sprintf("a %s message for %q from %v, more than %v old: replayed, or the clocks differ", p.Status, p.Worker, p.At, MaxPresenceAge)}
		}
	}
	if err != nil {
		c.reject(err, "claimed "+p.Worker)
		return
	}
	if c.pool.workers[p.Worker] == nil { // a reload meanwhile
		return
	}
	if c.cfg.Key != nil {
		c.pool.said[p.Worker] = p.At
	}
	c.pool.seen[p.Worker] = c.cfg.Now()
	c.pool.left[p.Worker] = p.Status == wire.Left
	c.pool.touch(p.Worker)
	if p.Status == wire.Left {
		select {
		case c.bye <- struct{}{}:
		default:
		}
	}
}
