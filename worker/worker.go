package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/picluster/picluster/internal/backoff"
	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

// Bus is what a worker needs from the job's transport. internal/redisbus and
// internal/membus implement it.
type Bus interface {
	// Publish sends report to the collectors and records it as the latest
	// report of worker, both or neither.
	Publish(ctx context.Context, worker string, report []byte) error
	// Latest returns the latest report recorded for worker, nil if none.
	Latest(ctx context.Context, worker string) ([]byte, error)
	// State returns the job state, nil if none has been written.
	State(ctx context.Context) ([]byte, error)
	// Heartbeat publishes a presence message (wire.Presence) of worker.
	Heartbeat(ctx context.Context, worker string, msg []byte) error
	// Control returns the messages published on the job's control channel
	// until ctx is done, then closes the channel. It reconnects by itself.
	Control(ctx context.Context) <-chan []byte
}

// Worker samples and reports. Create one with New.
type Worker struct {
	cfg   Config
	bus   Bus
	stats stats // for Stats
}

// New returns a worker that reports to bus.
func New(bus Bus, cfg Config) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Worker{cfg: cfg.withDefaults(), bus: bus}, nil
}

// ID returns the worker's id, chosen by New when Config.ID was empty.
func (w *Worker) ID() string { return w.cfg.ID }

var (
	errJobDone  = errors.New("the job is done")
	errDuration = errors.New("duration reached")
)

// Run samples until ctx is done, the job is done, or a limit of the Config is
// reached, and returns nil in all those cases. It returns an error only when
// it cannot work at all: unreadable totals under its id, or totals that would
// pass 2⁶⁴.
func (w *Worker) Run(ctx context.Context) error {
	cfg := w.cfg
	log := cfg.Logger.With("worker", cfg.ID)
	defer w.stats.stopped()
	prev, err := w.start(ctx, log)
	if errors.Is(err, errJobDone) {
		log.Info("the job is already done; leaving")
		return nil
	}
	if err != nil {
		return err
	}
	w.stats.started(prev.Seq)
	log.Info("worker started", "kernel", cfg.Kernel.Name(), "threads", cfg.Threads,
		"seed", fmt.Sprintf("%016x", *cfg.Seed), "resumed_at_seq", prev.Seq)

	sampleCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		sampleCtx, cancel = context.WithTimeoutCause(sampleCtx, cfg.Duration, errDuration)
		defer cancel()
	}
	// The publisher outlives cancellation by at most FlushTimeout, so the
	// last report still reaches the bus after Ctrl-C.
	pubCtx, cancelPub := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelPub()
	box := newMailbox()
	var wg sync.WaitGroup
	wg.Go(func() { w.publish(pubCtx, box, stop, log) })

	last, err := w.sample(sampleCtx, prev, box, log)
	box.close()
	flush := time.AfterFunc(cfg.FlushTimeout, cancelPub)
	wg.Wait()
	flush.Stop()

	why := "limit"
	switch cause := context.Cause(sampleCtx); {
	case errors.Is(cause, errJobDone):
		why = "job done"
	case errors.Is(cause, errDuration):
		why = "duration"
	case ctx.Err() != nil:
		why = "cancelled"
	}
	log.Info("worker stopped", "reason", why, "batches", last.Seq-prev.Seq, "seq", last.Seq,
		"total_n", last.TotalN, "pi", mcpi.TallyOf(last.TotalN, last.TotalHits).Pi())
	return err
}

// start waits for the bus, leaves if the job is done, and returns the latest
// report recorded under the worker's id (zero if none), to resume from.
func (w *Worker) start(ctx context.Context, log *slog.Logger) (wire.Report, error) {
	var prev wire.Report
	err := backoff.Retry(ctx, log, "read the job state and this worker's totals", func() (err error) {
		prev, err = w.resume(ctx)
		if errors.Is(err, errJobDone) || errors.As(err, new(*wire.Error)) {
			return backoff.Permanent(err)
		}
		return err
	})
	return prev, err
}

func (w *Worker) resume(ctx context.Context) (wire.Report, error) {
	if done, err := w.jobDone(ctx); err != nil || done {
		if done {
			return wire.Report{}, errJobDone
		}
		return wire.Report{}, err
	}
	b, err := w.bus.Latest(ctx, w.cfg.ID)
	if err != nil || b == nil {
		return wire.Report{}, err
	}
	r, err := wire.Decode(b)
	if err != nil {
		return wire.Report{}, fmt.Errorf("resume worker %q from its recorded totals: %w", w.cfg.ID, err)
	}
	return r, nil
}

func (w *Worker) jobDone(ctx context.Context) (bool, error) {
	b, err := w.bus.State(ctx)
	if err != nil || b == nil {
		return false, err
	}
	s, err := wire.DecodeState(b)
	return err == nil && s.Status == wire.Done, nil // an unreadable state is not a stop
}

// sample draws batches until ctx is done or MaxBatches, handing each
// cumulative report to box. It returns the last report.
func (w *Worker) sample(ctx context.Context, prev wire.Report, box *mailbox, log *slog.Logger) (wire.Report, error) {
	cfg := w.cfg
	last := prev
	n := cfg.Batch
	if n == 0 {
		n = 64 * mcpi.Lanes // a first batch of a few milliseconds measures the speed
	}
	lastLog := time.Now()
	for b := uint64(0); cfg.MaxBatches == 0 || b < cfg.MaxBatches; b++ {
		if last.TotalN > math.MaxUint64-n {
			return last, fmt.Errorf("worker %q: totals would pass 2⁶⁴ samples; start it under a new --id", cfg.ID)
		}
		start := time.Now()
		batch := mcpi.Batch{Key: mcpi.Key{Seed: *cfg.Seed, Worker: cfg.ID, Seq: last.Seq + 1}, N: n}
		hits, ok := Hits(ctx, batch, cfg.Kernel, cfg.Threads)
		if !ok {
			return last, nil // cancelled mid-batch: the batch is dropped, never half-reported
		}
		end := time.Now()
		took := end.Sub(start)
		last = wire.Report{N: n, Hits: hits, Worker: cfg.ID, Seq: batch.Seq,
			TotalN: last.TotalN + n, TotalHits: last.TotalHits + hits,
			Seed: fmt.Sprintf("%016x", *cfg.Seed), Kernel: cfg.Kernel.Name(), Seconds: took.Seconds()}
		w.stats.batch(last.Seq, n, end, took) // before the publisher can see it
		box.put(last)
		rate := float64(n) / took.Seconds()
		log.Debug("batch", "seq", last.Seq, "n", n, "hits", hits, "samples_per_s", rate)
		if time.Since(lastLog) >= 10*time.Second {
			log.Info("sampling", "seq", last.Seq, "total_n", last.TotalN, "samples_per_s", rate)
			lastLog = time.Now()
		}
		if cfg.Batch == 0 {
			n = nextBatch(n, took, cfg.BatchTime)
		}
	}
	return last, nil
}

// nextBatch sizes the next batch to take about target, from how long a batch
// of n took. It grows at most 16-fold and shrinks at most 4-fold a step.
func nextBatch(n uint64, took, target time.Duration) uint64 {
	f := float64(target) / float64(max(took, time.Microsecond))
	f = min(max(f, 0.25), 16)
	next := float64(n) * f
	if next >= 1<<62 {
		return 1 << 62
	}
	return max(uint64(next), mcpi.Lanes)
}

// Hits computes batch b with kernel k on threads goroutines, each taking the
// next undone group of lanes, and returns its hits. It returns false if ctx
// was cancelled before every group was done. The hits do not depend on
// threads.
func Hits(ctx context.Context, b mcpi.Batch, k mcpi.Kernel, threads int) (uint64, bool) {
	var next, done atomic.Int64
	var total atomic.Uint64
	var wg sync.WaitGroup
	for range max(1, min(threads, mcpi.Groups)) {
		wg.Go(func() {
			var h uint64
			for ctx.Err() == nil {
				g := next.Add(1) - 1
				if g >= mcpi.Groups {
					break
				}
				h += b.GroupHits(int(g), k)
				done.Add(1)
			}
			total.Add(h)
		})
	}
	wg.Wait()
	return total.Load(), done.Load() == mcpi.Groups
}

// publish sends the newest report in box until box is closed and its last
// report sent, or ctx is done. After each publish, and on every control
// message, it reads the job state and stops sampling when the job is done.
func (w *Worker) publish(ctx context.Context, box *mailbox, stop context.CancelCauseFunc, log *slog.Logger) {
	ctrlCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	control := w.bus.Control(ctrlCtx)
	heartbeat := time.NewTicker(wire.HeartbeatInterval)
	defer heartbeat.Stop()
	defer w.presence(ctx, wire.Left) // after the last report: a clean goodbye
	var bo backoff.Backoff
	for {
		select {
		case <-ctx.Done():
			return
		case <-heartbeat.C:
			w.presence(ctx, wire.Alive)
			continue
		case _, ok := <-control:
			if !ok {
				control = nil
			}
			w.checkState(ctx, stop)
			continue
		case <-box.ready:
		}
		r, closed := box.take()
		for r != nil {
			err := w.bus.Publish(ctx, w.cfg.ID, wire.Encode(*r))
			if err == nil {
				w.stats.published(r.Seq, time.Now())
				heartbeat.Reset(wire.HeartbeatInterval) // a report says alive too
				if bo.Failures() > 0 {
					log.Info("bus is back; reports go through again", "seq", r.Seq)
				}
				bo.Reset()
				break
			}
			w.stats.publishFailed()
			if bo.Failures() == 0 {
				log.Warn("publish failed; sampling goes on and the totals catch up on reconnect", "seq", r.Seq, "err", err)
			}
			if bo.Wait(ctx) != nil {
				log.Error("the last report did not reach the bus", "seq", r.Seq, "err", err)
				return
			}
			if newer, c := box.take(); newer != nil { // publish the newest, it includes r
				r, closed = newer, c
			}
		}
		if closed {
			return
		}
		w.checkState(ctx, stop)
	}
}

// presence publishes the worker's status; a lost heartbeat is harmless.
func (w *Worker) presence(ctx context.Context, status string) {
	_ = w.bus.Heartbeat(ctx, w.cfg.ID, wire.EncodePresence(wire.Presence{Worker: w.cfg.ID, Status: status, At: time.Now()}))
}

func (w *Worker) checkState(ctx context.Context, stop context.CancelCauseFunc) {
	if done, _ := w.jobDone(ctx); done { // an error here is retried at the next report
		stop(errJobDone)
	}
}

// mailbox holds the newest report not yet published. Reports are
// cumulative, so an unpublished older one is never needed.
type mailbox struct {
	ready  chan struct{} // holds a token while there is something to take
	mu     sync.Mutex
	r      *wire.Report
	closed bool
}

func newMailbox() *mailbox { return &mailbox{ready: make(chan struct{}, 1)} }

func (m *mailbox) put(r wire.Report) {
	m.mu.Lock()
	m.r = &r
	m.mu.Unlock()
	m.signal()
}

func (m *mailbox) close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.signal()
}

func (m *mailbox) signal() {
	select {
	case m.ready <- struct{}{}:
	default:
	}
}

// take returns the newest report (nil if none) and whether the box is closed.
func (m *mailbox) take() (*wire.Report, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.r
	m.r = nil
	return r, m.closed
}
