package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/picluster/picluster/internal/backoff"
	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

// Message is one delivery from the report channel. Subscribed marks a fresh
// (re)subscription: what was published before it may have been missed, and
// the collector rebuilds the job from Totals.
type Message struct {
	Payload    []byte
	Subscribed bool
	Presence   bool // a wire.Presence from {channel}:presence, not a report
}

// Bus is what a collector needs from the job's transport. internal/redisbus
// and internal/membus implement it.
type Bus interface {
	// Subscribe delivers the job's reports and presence messages until ctx is done, then closes
	// the channel. It reconnects by itself, and sends a Subscribed message
	// first and after every reconnect.
	Subscribe(ctx context.Context) <-chan Message
	// Totals returns the latest report recorded for every worker.
	Totals(ctx context.Context) ([][]byte, error)
	// State returns the job state, nil if none has been written.
	State(ctx context.Context) ([]byte, error)
	// SetState writes the job state and publishes it on the control channel.
	SetState(ctx context.Context, state []byte) error
	// Reset deletes the job's totals and state.
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
	// Reset deletes the job's totals and state before starting: a new job on
	// an old channel.
	Reset bool
	// Logger receives the collector's logs. Default: slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if c.TargetSE < 0 || math.IsNaN(c.TargetSE) || math.IsInf(c.TargetSE, 0) {
		return fmt.Errorf("target-se: %v, want a finite number ≥ 0", c.TargetSE)
	}
	return nil
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

// Collector pools a job's reports. Create one with New.
type Collector struct {
	cfg Config
	bus Bus
	log *slog.Logger

	mu       sync.Mutex // guards the fields below
	pool     *pool
	history  history
	rejected map[wire.Reason]uint64
	logged   map[string]bool
	started  time.Time
	baseN    mcpi.Count // N when the first rebuild finished: the rate counts only new samples
	synced   bool
	stopped  string
}

// New returns a collector that reads from bus.
func New(bus Bus, cfg Config) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MinSamples == 0 {
		cfg.MinSamples = 1_000_000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Collector{cfg: cfg, bus: bus, log: cfg.Logger, pool: newPool(),
		rejected: make(map[wire.Reason]uint64), logged: make(map[string]bool), started: cfg.Now()}, nil
}

// FinalSyncTimeout bounds the last read of the totals when Run is cancelled.
const FinalSyncTimeout = 3 * time.Second

// Run collects until the target is reached (it returns nil) or ctx is done
// (it returns ctx's error). When cancelled it reads the totals on the bus
// once more, for at most FinalSyncTimeout, so that the final Summary
// includes every report that reached the bus, even one it was not
// subscribed in time to receive.
func (c *Collector) Run(ctx context.Context) error {
	err := c.run(ctx)
	if ctx.Err() != nil {
		syncCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), FinalSyncTimeout)
		defer cancel()
		_ = c.rebuild(syncCtx) // best effort: the summary stands without it
	}
	return err
}

func (c *Collector) run(ctx context.Context) error {
	if err := c.prepare(ctx); err != nil {
		return err
	}
	msgs := c.bus.Subscribe(ctx)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m, ok := <-msgs:
			if !ok {
				return ctx.Err()
			}
			changed := false
			switch {
			case m.Subscribed:
				if err := c.rebuild(ctx); err != nil {
					return err
				}
				changed = true
			case m.Presence:
				c.HandlePresence(m.Payload)
			default:
				changed = c.handle(m.Payload, true)
			}
			if changed && c.targetReached() {
				return c.finish(ctx)
			}
		}
	}
}

// prepare resets the job if asked, and marks it running unless it is done.
func (c *Collector) prepare(ctx context.Context) error {
	return backoff.Retry(ctx, c.log, "prepare the job", func() error {
		if c.cfg.Reset {
			if err := c.bus.Reset(ctx); err != nil {
				return err
			}
		}
		b, err := c.bus.State(ctx)
		if err != nil {
			return err
		}
		if b != nil {
			if s, err := wire.DecodeState(b); err == nil && s.Status == wire.Done {
				c.log.Warn("the job is already done: workers will leave at once; use --reset to start a new job on this channel",
					"channel", c.cfg.Channel, "since", s.At)
				return nil
			}
		}
		return c.bus.SetState(ctx, wire.EncodeState(wire.State{Status: wire.Running, At: c.cfg.Now()}))
	})
}

// rebuild applies the latest report of every worker recorded on the bus.
func (c *Collector) rebuild(ctx context.Context) error {
	var totals [][]byte
	err := backoff.Retry(ctx, c.log, "read the job's totals", func() (err error) {
		totals, err = c.bus.Totals(ctx)
		return err
	})
	if err != nil {
		return err
	}
	for _, b := range totals {
		c.handle(b, false)
	}
	c.mu.Lock()
	if !c.synced {
		c.synced, c.baseN, c.started = true, c.pool.total.N, c.cfg.Now()
	}
	n, workers := c.pool.total.N, len(c.pool.workers)
	c.mu.Unlock()
	c.log.Info("rebuilt the job from the bus", "channel", c.cfg.Channel, "workers", workers, "n", n)
	return nil
}

// Handle validates and pools one report payload. It never fails: a bad
// report is counted and logged.
func (c *Collector) Handle(payload []byte) { _ = c.handle(payload, true) }

// handle pools payload and reports whether the pool changed; live is false
// for the totals read back from the bus, whose repeats of reports already
// pooled are not duplicates.
func (c *Collector) handle(payload []byte, live bool) (changed bool) {
	r, err := wire.Decode(payload)
	now := c.cfg.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		changed, err = c.pool.add(r, live, now)
	}
	if err == nil && live {
		c.pool.accepted = sat(c.pool.accepted, 1)
	}
	if changed {
		c.history.add(c.pool.total, now)
	}
	if err == nil {
		return changed
	}
	var e *wire.Error
	if !errors.As(err, &e) {
		e = &wire.Error{Reason: wire.NotJSON, Detail: err.Error()}
	}
	c.rejected[e.Reason] = sat(c.rejected[e.Reason], 1)
	sender := r.Worker
	if sender == "" {
		sender = "(unnamed)"
	}
	key := sender + "\x00" + string(e.Reason)
	if !c.logged[key] && len(c.logged) < maxLogged {
		c.logged[key] = true
		c.log.Warn("rejected a report (logged once per sender and reason)", "sender", sender, "reason", e.Reason, "detail", e.Detail)
	}
	return false
}

// HandlePresence records a worker's heartbeat or goodbye. Malformed ones are
// counted with the rejected reports.
func (c *Collector) HandlePresence(payload []byte) {
	p, err := wire.DecodePresence(payload)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		var e *wire.Error
		if errors.As(err, &e) {
			c.rejected[e.Reason] = sat(c.rejected[e.Reason], 1)
		}
		return
	}
	c.pool.seen[p.Worker] = c.cfg.Now()
	c.pool.left[p.Worker] = p.Status == wire.Left
}

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
	se := t.StdErr()
	return se > 0 && se <= c.cfg.TargetSE
}

// finish marks the job done and tells the workers.
func (c *Collector) finish(ctx context.Context) error {
	s := c.Summary()
	state := wire.EncodeState(wire.State{Status: wire.Done, Reason: "target", Pi: float64(s.Pi), StdErr: float64(s.StdErr), At: c.cfg.Now()})
	if err := backoff.Retry(ctx, c.log, "mark the job done", func() error { return c.bus.SetState(ctx, state) }); err != nil {
		return err
	}
	c.mu.Lock()
	c.stopped = "target"
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
func (c *Collector) History() []Point {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Point(nil), c.history.pts...)
}

// Summary returns the job as the collector sees it now.
func (c *Collector) Summary() Summary {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.pool.total
	lo, hi := t.CI95()
	secs := c.cfg.Now().Sub(c.started).Seconds()
	s := Summary{
		Channel: c.cfg.Channel, N: t.N, Hits: t.Hits,
		Pi: Float(t.Pi()), StdErr: Float(t.StdErr()), CI95: [2]Float{Float(lo), Float(hi)},
		Bias: mcpi.PiBias, PiDigits: CertainDigits(t.Pi(), lo, hi),
		Workers: len(c.pool.workers), Batches: c.pool.batches, Anonymous: c.pool.anonBatches,
		RejectedBy: make(map[string]uint64, len(c.rejected)), Duplicates: c.pool.duplicates,
		Seconds: Float(secs), StoppedBy: c.stopped, TargetSE: Float(c.cfg.TargetSE), Accepted: c.pool.accepted,
	}
	for r, n := range c.rejected {
		s.Rejected = sat(s.Rejected, n)
		s.RejectedBy[string(r)] = n
	}
	now := c.cfg.Now()
	s.WorkerTable = make([]WorkerStats, 0, len(c.pool.workers))
	for id, r := range c.pool.workers {
		w := WorkerStats{ID: id, N: r.TotalN, Hits: r.TotalHits, Seq: r.Seq, Kernel: r.Kernel,
			LastSeen: c.pool.seen[id], Status: presence(now, c.pool.seen[id], r.Seconds, c.pool.left[id]),
			tally: mcpi.TallyOf(r.TotalN, r.TotalHits)}
		if r.Seconds > 0 {
			w.SamplesPerS = Float(float64(r.N) / r.Seconds)
		}
		s.WorkerTable = append(s.WorkerTable, w)
	}
	s.Checks = workerStats(s.WorkerTable, t)
	disp, binom := c.pool.disp.stdErr()
	s.Checks.Chunks = int(c.pool.disp.m)
	s.Checks.EffectiveChunks = Float(c.pool.disp.effective())
	s.Checks.DispersionRatio = Float(disp / binom)
	s.Checks.StdErrDispersion = Float(float64(s.StdErr) * disp / binom)
	s.Flagged = []string{}
	for _, w := range s.WorkerTable {
		if w.Flagged {
			s.Flagged = append(s.Flagged, w.ID)
		}
	}
	if secs > 0 && c.synced {
		s.SamplesPerS = Float(t.N.Sub(c.baseN).Float64() / secs)
	}
	s.ETASeconds = Float(math.NaN())
	if se, rate := float64(s.StdErr), float64(s.SamplesPerS); c.cfg.TargetSE > 0 && se > 0 && rate > 0 {
		// SE ∝ 1/√N: the target needs N·(SE/target)² samples in all.
		need := t.N.Float64() * (se / c.cfg.TargetSE) * (se / c.cfg.TargetSE)
		s.ETASeconds = Float(max(0, need-t.N.Float64()) / rate)
	}
	return s
}
