package collector

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/picluster/picluster/internal/backoff"
	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

// Collector pools a job's ledger. Create one with New.
type Collector struct {
	cfg Config
	bus Bus
	log *slog.Logger
	ver *verifier

	mu       sync.Mutex // guards the fields below
	job      wire.State // the job as this collector runs it: id, seed, cap, mode
	pool     *pool
	dirty    map[string]bool // workers credited since the last checkpoint
	savedPos string          // the mark the checkpoint on the bus holds at least
	refused  map[string]bool // streams not tracked (MaxWorkers), up to maxLogged
	mac      struct {        // the Verifier of the last entry's worker: a read returns a stream's entries together
		worker string
		v      *wire.Verifier
	}
	history  history // its own lock: History never takes mu
	rejected map[wire.Reason]uint64
	logged   map[string]bool
	started  time.Time
	baseN    mcpi.Count // N when the start-up read finished: the rate counts only new samples
	synced   bool
	stopped  string        // a StopCause once stopped
	stale    string        // why the final read failed, "" if it did not
	bye      chan struct{} // poked on every goodbye
	loaded   chan struct{} // closed once the job is loaded
	bell     *bell         // the streams with news, from the channel
	fillBell chan struct{} // poked when a fill is queued (fill.go)
	filled   chan struct{} // poked when a fill is drawn
	swept    time.Duration // how long the last sweep of Run's reader took
	// registered is when this collector last recorded its mark among the
	// readers, or loaded the checkpoint (by this host's clock), registeredAt
	// the bus's clock then (ms, 0 if unknown), and away whether it went
	// longer than awayAfter() without: the ledger may be trimmed past its
	// mark, so it reloads from the checkpoint before it credits more.
	registered   time.Time
	registeredAt uint64
	away         bool

	snaps snapshots // the views' snapshot, built once per tick (snapshot.go)
}

// New returns a collector that reads from bus.
func New(bus Bus, cfg Config) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	c := &Collector{cfg: cfg, bus: bus, log: cfg.Logger, pool: newPool(), dirty: make(map[string]bool),
		rejected: make(map[wire.Reason]uint64), logged: make(map[string]bool), started: cfg.Now(),
		bye: make(chan struct{}, 1), loaded: make(chan struct{}),
		refused: make(map[string]bool), bell: newBell(), fillBell: make(chan struct{}, 1), filled: make(chan struct{}, 1)}
	c.ver = newVerifier(c)
	c.history.se = c.stdErr // called under c.mu, as history.add is
	return c, nil
}

// FinalSyncTimeout bounds the last read of the ledger when Run is
// cancelled, unless the reader's last sweep of every stream took more than
// a third of it: then the last read may take three times that sweep, up to
// maxFinalSync.
const FinalSyncTimeout = 3 * time.Second

// maxFinalSync bounds the last read of the ledger however slow the sweeps.
const maxFinalSync = time.Minute

// ledgerPage is how many entries one read takes from each stream, and
// ledgerKeys how many streams it reads; a careful read takes one entry
// from each of carefulKeys streams.
const (
	ledgerPage  = 32
	ledgerKeys  = 256
	carefulKeys = 64
)

// Run collects until the target is reached (it returns nil) or ctx is done
// (it returns ctx's error), and records why in Summary.StoppedBy: the
// StopCause of ctx's cause, StopSignal for a plain cancellation. At the
// target it waits up to FinalGrace for the workers' last entries; when
// cancelled it reads the rest of the ledger once more, for at most
// FinalSyncTimeout; either way the final Summary includes every entry that
// reached the bus, and is checkpointed. If that final read fails, Run's
// error wraps ErrStale and Summary.Stale says why. Every goroutine Run
// starts has ended when it returns.
func (c *Collector) Run(ctx context.Context) error {
	runCtx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	defer c.refresh() // the final snapshot, once every goroutine has ended
	defer wg.Wait()
	defer cancel(nil)
	wg.Go(func() { c.tick(runCtx) })
	msgs := c.bus.Subscribe(runCtx) // before the job is announced, so no anonymous batch is missed
	wg.Go(func() { c.listen(msgs) })
	if err := c.prepare(ctx); err != nil {
		if ctx.Err() != nil && !backoff.IsPermanent(err) {
			c.stop(causeOf(context.Cause(ctx)))
			return fmt.Errorf("%w: %w", ErrNoJob, err)
		}
		c.stop(StopError)
		return err
	}
	close(c.loaded)
	wg.Go(func() { c.ver.run(runCtx) })
	wg.Go(func() { c.fillLoop(runCtx) })
	wg.Go(func() { c.tend(runCtx, cancel) })

	err := c.read(runCtx)
	switch {
	case errors.Is(context.Cause(runCtx), ErrJobReset):
		c.stop(StopError)
		return ErrJobReset
	case ctx.Err() != nil:
		c.stop(causeOf(context.Cause(ctx)))
		if err := c.finalRead(ctx); err != nil {
			return err
		}
		return ctx.Err()
	case err != nil:
		c.stop(StopError)
		return err
	}
	c.stop(StopTarget)
	c.awaitGoodbyes(ctx)
	return c.finalRead(ctx)
}

// finalRead credits the rest of the ledger, for at most FinalSyncTimeout
// (or three sweeps) even when ctx is done, and checkpoints.
func (c *Collector) finalRead(ctx context.Context) error {
	c.mu.Lock()
	bound := min(max(FinalSyncTimeout, 3*c.swept), maxFinalSync)
	c.mu.Unlock()
	syncCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bound)
	defer cancel()
	n, err := c.settle(syncCtx)
	if err != nil {
		return c.staleErr(err)
	}
	c.log.Info("final read of the ledger", "entries", n)
	if seqs := c.gapsPending(); seqs > 0 {
		c.log.Warn("skipped seqs not drawn in time: the summary leaves them out with the entries that wait for them (a collector started later draws them)",
			"seqs", seqs, "within", bound)
	}
	c.checkpoint(syncCtx)
	return nil
}

// Loaded is closed once Run has loaded the job: from then on, cancelling
// Run gives a summary of the job.
func (c *Collector) Loaded() <-chan struct{} { return c.loaded }

// staleErr records that the final read failed and returns the error.
func (c *Collector) staleErr(err error) error {
	c.mu.Lock()
	c.stale = err.Error()
	c.mu.Unlock()
	c.log.Error("the final read of the ledger failed: the summary may miss entries", "err", err)
	return fmt.Errorf("%w: %w", ErrStale, err)
}

// prepare resets the job if asked, adopts the job in the state or creates
// one, and loads the quarantine and the checkpoint.
func (c *Collector) prepare(ctx context.Context) error {
	err := backoff.Retry(ctx, c.log, "prepare the job", func() error {
		if c.cfg.Reset {
			if err := c.bus.Reset(ctx); err != nil {
				return err
			}
			c.cfg.Reset = false // once, even if a later step is retried
		}
		b, err := c.bus.State(ctx)
		if err != nil {
			return err
		}
		var s wire.State
		if b != nil {
			if s, err = wire.DecodeState(b); err != nil {
				return backoff.Permanent(fmt.Errorf("the job state is unreadable (%w); use --reset to start a new job", err))
			}
		}
		if s.Job == "" { // a new job, or one a v1 collector made
			s = c.newJob()
		}
		if s.Status == wire.Done {
			c.log.Warn("the job is already done: workers will leave at once; use --reset to start a new job on this channel",
				"channel", c.cfg.Channel, "since", s.At)
			c.mu.Lock()
			c.job = s
			c.mu.Unlock()
			return nil
		}
		if s.Cells != 0 && mcpi.ValidCells(s.Cells) != nil {
			return backoff.Permanent(fmt.Errorf("the job state's cells %d are not a valid K; use --reset to start a new job", s.Cells))
		}
		if want := c.cfg.Estimator; want != "" && (want == mcpi.Stratified) != (s.Cells != 0) || c.cfg.Cells != 0 && s.Cells != 0 && c.cfg.Cells != s.Cells {
			c.log.Warn("the job has an estimator of its own: --estimator and --cells apply to a new job only (--reset)", "job", s.Job, "estimator", estimatorName(s.Cells))
		}
		if s.Secure && c.cfg.Key == nil {
			c.log.Warn("the job was in secure mode and this collector has no job key: it credits unsigned entries (open mode); give --key-file", "job", s.Job)
		}
		s.Status, s.Secure, s.At = wire.Running, c.cfg.Key != nil, c.cfg.Now()
		if err := c.bus.SetState(ctx, wire.EncodeState(s)); err != nil {
			return err
		}
		c.mu.Lock()
		c.job = s
		c.mu.Unlock()
		return nil
	})
	if err != nil {
		return err
	}
	if err := c.loadQuarantine(ctx); err != nil {
		return err
	}
	if err := c.load(ctx); err != nil {
		return err
	}
	n, err := c.catchUp(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.synced, c.baseN, c.started = true, c.pool.total.N, c.cfg.Now()
	s := c.job
	total, workers := c.pool.total.N, len(c.pool.workers)
	c.mu.Unlock()
	mode := "open"
	if s.Secure {
		mode = "secure"
	}
	c.log.Info("job loaded from the ledger", "channel", c.cfg.Channel, "job", s.Job, "mode", mode,
		"workers", workers, "n", total, "entries_read", n)
	return nil
}

func (c *Collector) newJob() wire.State {
	seed := randomUint64()
	if c.cfg.Seed != nil {
		seed = *c.cfg.Seed
	}
	s := wire.State{Job: wire.FormatSeed(randomUint64()), Seed: wire.FormatSeed(seed), MaxN: c.cfg.MaxN}
	if c.cfg.Estimator == mcpi.Stratified {
		s.Estimator, s.Cells = mcpi.Stratified, c.cfg.Cells
	}
	return s
}

func randomUint64() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return binary.LittleEndian.Uint64(b[:])
}

// load replaces the pool's credits with the checkpoint's.
func (c *Collector) load(ctx context.Context) error {
	var cp map[string][]byte
	var read time.Time
	err := backoff.Retry(ctx, c.log, "read the checkpoint", func() (err error) {
		read = time.Now()
		cp, err = c.bus.Checkpoint(ctx)
		return err
	})
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.registered = read // the state is the checkpoint's as of then: away if the next registration is long after
	old := c.pool
	c.pool = newPool()
	c.pool.anon, c.pool.total = old.anon, old.anon
	c.pool.anonBatches, c.pool.quarantined, c.pool.seen, c.pool.left, c.pool.said = old.anonBatches, old.quarantined, old.seen, old.left, old.said
	if job := string(cp[checkpointJob]); job != "" && job != c.job.Job {
		c.log.Warn("the checkpoint is of another job: reading the ledger from its start", "checkpoint_job", job, "job", c.job.Job)
		clear(cp)
	}
	c.pool.mark = string(cp[wire.CheckpointPos])
	for k, v := range cp {
		id, ok := bytes.CutPrefix([]byte(k), []byte(wire.CheckpointWorker))
		if !ok {
			continue
		}
		w := string(id) // one string for the maps' keys
		cr, err := wire.DecodeCredit(v)
		if err != nil {
			c.log.Warn("checkpoint: skipped a worker's unreadable credit", "worker", w, "err", err)
			continue
		}
		c.pool.workers[w] = &cr
		c.pool.cursor[w] = cr.Pos
		c.pool.batches = sat(c.pool.batches, sat(cr.Entries, cr.Gaps))
		c.pool.gaps = sat(c.pool.gaps, cr.Gaps)
		if _, q := c.pool.quarantined[w]; !q {
			c.pool.total = c.pool.total.Add(mcpi.TallyOf(cr.TotalN, cr.TotalHits))
		}
		c.pool.disp.add(cr.TotalN, cr.TotalHits)
		if _, q := c.pool.quarantined[w]; !q && c.job.Cells != 0 {
			c.pool.strat.addCredit(&cr, 1)
		}
	}
	clear(c.dirty)
	c.history.add(c.pool.total, c.cfg.Now())
	return nil
}

// targetReached reports whether the job can be declared done: the SE is at
// the target, N is at least MinSamples, and at most MaxUnverified of N waits
// for replay.
func (c *Collector) targetReached() bool {
	if c.cfg.TargetSE <= 0 {
		return false
	}
	c.mu.Lock()
	t := c.pool.total
	c.mu.Unlock()
	n, fits := t.N.Uint64()
	if fits && n < c.cfg.MinSamples {
		return false
	}
	se, ok := c.targetSE()
	if !ok || !(se > 0 && se <= c.cfg.TargetSE) {
		return false
	}
	return float64(c.ver.pendingN()) <= c.cfg.MaxUnverified*t.N.Float64()
}

// finish marks the job done and tells the workers.
func (c *Collector) finish(ctx context.Context) error {
	s := c.Summary()
	c.mu.Lock()
	state := c.job
	c.mu.Unlock()
	state.Status, state.Reason, state.Pi, state.StdErr, state.At = wire.Done, "target", float64(s.Pi), float64(s.StdErr), c.cfg.Now()
	if err := backoff.Retry(ctx, c.log, "mark the job done", func() error { return c.bus.SetState(ctx, wire.EncodeState(state)) }); err != nil {
		return err
	}
	c.mu.Lock()
	c.job = state
	c.mu.Unlock()
	c.log.Info("target reached; the job is done", "pi", float64(s.Pi), "stderr", float64(s.StdErr), "target_se", c.cfg.TargetSE)
	return nil
}

// presence tells whether a worker last seen at seen is still there: left if
// it said so, alive while its next heartbeat or report is due (three
// heartbeat intervals, or three batches if longer), vanished after that.
func presence(now, seen time.Time, batchSeconds float64, left bool) string {
	if left {
		return wire.Left
	}
	due := max(3*wire.HeartbeatInterval, time.Duration(3*batchSeconds*float64(time.Second)))
	if now.Sub(seen) <= due {
		return wire.Alive
	}
	return "vanished"
}

// History returns the estimate after each change of the pool, oldest
// first, thinned to at most MaxHistory points.
func (c *Collector) History() []Point { return c.history.points() }
