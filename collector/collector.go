package collector

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"slices"
	"sync"
	"time"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/picluster/picluster/internal/backoff"
	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

// Bus is what a collector needs from the job's transport. internal/redisbus
// and internal/membus implement it.
type Bus interface {
	// Subscribe delivers the job's report channel and presence messages
	// until ctx is done, then closes the channel. It reconnects by itself,
	// and sends a KindSubscribed message first and after every reconnect.
	Subscribe(ctx context.Context) <-chan wire.Message
	// ReadLedgers returns up to count entries of each worker's stream of
	// the ledger after its cursor, oldest first within a stream, without
	// waiting.
	ReadLedgers(ctx context.Context, from []wire.Cursor, count int) ([]wire.LedgerEntry, error)
	// ScanLedgers lists the workers whose stream exists, a page at a time:
	// start with cursor 0; a next cursor of 0 ends the pass. A pass returns
	// every stream that exists throughout it.
	ScanLedgers(ctx context.Context, cursor uint64) (workers []string, next uint64, err error)
	// TrimLedgers removes from each worker's stream the entries before its
	// minimum ID.
	TrimLedgers(ctx context.Context, minIDs map[string]string) error
	// DeleteEntries removes entries, by worker and ID, from the workers'
	// streams.
	DeleteEntries(ctx context.Context, ids map[string][]string) error
	// Time returns the bus's clock as a ledger position: every entry
	// appended later has a later ID.
	Time(ctx context.Context) (string, error)
	// Checkpoint returns every field of the checkpoint.
	Checkpoint(ctx context.Context) (map[string][]byte, error)
	// SaveCheckpoint writes fields and the mark pos into the checkpoint,
	// all or nothing, unless it holds a later mark already; it reports
	// whether it wrote (false: the checkpoint holds a later mark).
	SaveCheckpoint(ctx context.Context, pos string, fields map[string][]byte) (bool, error)
	// SetReader records where the collector called name has read to;
	// Readers returns every collector's record.
	SetReader(ctx context.Context, name, value string) error
	Readers(ctx context.Context) (map[string]string, error)
	// Quarantine records that worker was proven wrong; Quarantined returns
	// every such record.
	Quarantine(ctx context.Context, worker string, why []byte) error
	Quarantined(ctx context.Context) (map[string][]byte, error)
	// State returns the job state, nil if none has been written.
	State(ctx context.Context) ([]byte, error)
	// SetState writes the job state and publishes it on the control channel.
	SetState(ctx context.Context, state []byte) error
	// RestoreState writes the job state only if there is none, and reports
	// whether it wrote.
	RestoreState(ctx context.Context, state []byte) (bool, error)
	// Reset deletes the job: ledger, checkpoint, readers, quarantine, state.
	Reset(ctx context.Context) error
}

// Config configures a Collector. Every zero value has a documented default.
type Config struct {
	// Channel names the job in the Summary.
	Channel string
	// TargetSE ends the job when the pooled standard error of π̂ reaches it.
	// Zero means no target: run until cancelled.
	TargetSE float64
	// MinSamples is the least N at which a target can be met, so that a
	// lucky first batch cannot end a job. Default 10⁶.
	MinSamples uint64
	// Reset deletes the job before starting: a new job on an old channel.
	Reset bool
	// Key is the job key. With a key the job is in secure mode: only
	// entries signed with a worker key derived from it count, and anonymous
	// reports are refused. Nil means open mode.
	Key []byte
	// Seed is the seed of a new job. Nil means a random one. A running job
	// keeps the seed it has.
	Seed *uint64
	// MaxN is the most samples one entry of a new job may carry. Default
	// wire.MaxEntryN.
	MaxN uint64
	// Estimator is the estimator of a new job: mcpi.MC ("" too) or
	// mcpi.Stratified. A running job keeps the one it has.
	Estimator string
	// Cells is K of a new stratified job: a power of two from mcpi.MinCells
	// to mcpi.MaxCells; every batch is one point in each of K×K cells.
	// Default DefaultCells.
	Cells uint64
	// AnonMaxN is the most samples one anonymous report may carry (open
	// mode). Default 2³².
	AnonMaxN uint64
	// AnonShare is the largest share of N that anonymous reports may hold
	// (open mode): a report that would pass it is refused (anon_share).
	// Default DefaultAnonShare; 1 lifts the bound, which a job of only
	// anonymous (seed-style) workers needs.
	AnonShare float64
	// MaxWorkers bounds the workers a job credits: entries of further
	// workers are refused (too_many_workers). The collector reads at most
	// 2·MaxWorkers streams of the ledger, those credited and as many that
	// hold only rejected entries; further streams are not read (counted
	// as too_many_workers once each). Default 1,000,000.
	MaxWorkers int
	// VerifyFraction is the share of the credited samples that is replayed
	// to check it, chosen entry by entry with probability proportional to n.
	// Default 0.01. Entries whose hits, or whose worker's, look improbable
	// are always replayed.
	VerifyFraction float64
	// VerifySeed seeds the choice of the entries replayed, for tests that
	// must be replayable. Zero, the default, means a secret seed from
	// crypto/rand: workers must not be able to predict which entries are
	// checked.
	VerifySeed uint64
	// VerifyThreads is how many entries are replayed at once, one core each.
	// Default 1.
	VerifyThreads int
	// MaxUnverified is the largest share of N that may wait in the
	// verification queue when the target is declared. Default 0.005.
	MaxUnverified float64
	// Kernel replays entries. The zero Kernel means mcpi.Pick().
	Kernel mcpi.Kernel
	// Name identifies this collector among the ledger's readers. Default:
	// host-pid.
	Name string
	// CheckpointEvery is how often the credits are checkpointed and the
	// ledger trimmed. Default 2s.
	CheckpointEvery time.Duration
	// LedgerWindow is how long credited entries stay in the ledger for
	// `picluster verify`, at least (at most about 1.25 times as long: a
	// stream is trimmed at most every quarter window). Default 60s.
	LedgerWindow time.Duration
	// ReaderTTL is how long a collector's mark holds back the trimming of
	// the ledger after its last update: a collector silent for longer is
	// taken to be gone. One that was silent for half of it reloads from
	// the checkpoint before it credits more. It must be the same for every
	// collector of a job. Default 5 minutes.
	ReaderTTL time.Duration
	// SweepEvery is how often every worker's stream is read, and the target
	// looked at; streams whose entries are announced on the channel are read
	// at once. A sweep waits, besides, for ten times as long as the last one
	// took. Default 1s.
	SweepEvery time.Duration
	// FinalGrace bounds how long, once the target is reached, the
	// collector waits for the workers' last entries (until each has said
	// goodbye) before its final summary. Default DefaultFinalGrace.
	FinalGrace time.Duration
	// Logger receives the collector's logs. Default: slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.TargetSE < 0 || math.IsNaN(c.TargetSE) || math.IsInf(c.TargetSE, 0):
		return fmt.Errorf("--target-se %v: want a finite number ≥ 0", c.TargetSE)
	case c.MaxN > wire.MaxEntryN:
		return fmt.Errorf("--max-n %d: at most %d", c.MaxN, uint64(wire.MaxEntryN))
	case !(c.VerifyFraction >= 0 && c.VerifyFraction <= 1):
		return fmt.Errorf("--verify-fraction %v: want 0 … 1", c.VerifyFraction)
	case !(c.AnonShare >= 0 && c.AnonShare <= 1):
		return fmt.Errorf("--anon-share %v: want 0 … 1", c.AnonShare)
	case !(c.MaxUnverified >= 0 && c.MaxUnverified <= 1):
		return fmt.Errorf("max unverified %v: want 0 … 1", c.MaxUnverified)
	case c.Key != nil && len(c.Key) < wire.MinKeyLen:
		return fmt.Errorf("job key: %d bytes, want at least %d", len(c.Key), wire.MinKeyLen)
	case c.VerifyThreads < 0 || c.MaxWorkers < 0:
		return errors.New("verify threads and max workers: want ≥ 0")
	case c.Estimator != "" && c.Estimator != mcpi.MC && c.Estimator != mcpi.Stratified:
		return fmt.Errorf("--estimator %q: want mc or stratified", c.Estimator)
	case c.Cells != 0 && c.Estimator != mcpi.Stratified:
		return fmt.Errorf("--cells %d: only with --estimator stratified", c.Cells)
	}
	if d := c.withDefaults(); d.ReaderTTL < 4*d.CheckpointEvery {
		return fmt.Errorf("reader TTL %v: want at least four checkpoint intervals (%v)", d.ReaderTTL, 4*d.CheckpointEvery)
	}
	if c.Estimator == mcpi.Stratified && c.Cells != 0 {
		if err := mcpi.ValidCells(c.Cells); err != nil {
			return fmt.Errorf("--cells: %w", err)
		}
		if c.MaxN != 0 && c.Cells*c.Cells > c.MaxN {
			return fmt.Errorf("--cells %d: a batch of %d points is above --max-n %d", c.Cells, c.Cells*c.Cells, c.MaxN)
		}
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.MinSamples == 0 {
		c.MinSamples = 1_000_000
	}
	if c.MaxN == 0 {
		c.MaxN = wire.MaxEntryN
	}
	if c.Estimator == mcpi.Stratified && c.Cells == 0 {
		c.Cells = DefaultCells
	}
	if c.AnonMaxN == 0 {
		c.AnonMaxN = 1 << 32
	}
	if c.AnonShare == 0 {
		c.AnonShare = DefaultAnonShare
	}
	if c.MaxWorkers == 0 {
		c.MaxWorkers = 1_000_000
	}
	if c.VerifyFraction == 0 {
		c.VerifyFraction = 0.01
	}
	if c.VerifyThreads == 0 {
		c.VerifyThreads = 1
	}
	if c.MaxUnverified == 0 {
		c.MaxUnverified = 0.005
	}
	if c.Kernel.IsZero() {
		c.Kernel = mcpi.Pick()
	}
	if c.Name == "" {
		host, _ := os.Hostname()
		c.Name = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if c.CheckpointEvery == 0 {
		c.CheckpointEvery = 2 * time.Second
	}
	if c.LedgerWindow == 0 {
		c.LedgerWindow = time.Minute
	}
	if c.ReaderTTL == 0 {
		c.ReaderTTL = 5 * time.Minute
	}
	if c.SweepEvery == 0 {
		c.SweepEvery = time.Second
	}
	if c.FinalGrace == 0 {
		c.FinalGrace = DefaultFinalGrace
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// TargetSEForDigits returns the standard error at which the 95 % interval
// is narrow enough for d correct decimal digits: half-width z·SE ≤ ½·10⁻ᵈ.
func TargetSEForDigits(d int) float64 {
	return 0.5 * math.Pow(10, -float64(d)) / distuv.UnitNormal.Quantile(0.975)
}

// maxLogged bounds the distinct (sender, reason) pairs logged, so a flood of
// garbage from random senders cannot grow memory; past it, rejections are
// only counted.
const maxLogged = 1000

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
