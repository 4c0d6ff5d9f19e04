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
	// Append appends entries to worker's stream of the job's ledger and
	// publishes each on the report channel, in order, all or none.
	Append(ctx context.Context, worker string, entries []wire.Signed) error
	// ReadLedgers returns up to count entries of each worker's stream after
	// its cursor, oldest first, without waiting.
	ReadLedgers(ctx context.Context, from []wire.Cursor, count int) ([]wire.LedgerEntry, error)
	// Credited returns the credit the checkpoint records for worker (nil
	// if none).
	Credited(ctx context.Context, worker string) (credit []byte, err error)
	// State returns the job state, nil if none has been written.
	State(ctx context.Context) ([]byte, error)
	// Heartbeat publishes a presence message (wire.Presence) of worker.
	Heartbeat(ctx context.Context, worker string, msg []byte) error
	// Control returns the messages published on the job's control channel
	// until ctx is done, then closes the channel. It reconnects by itself.
	Control(ctx context.Context) <-chan []byte
	// Lease takes worker's lease for token for ttl if it is free, or renews
	// it if token holds it. It reports whether token holds it and, if
	// another token does, how long that lease has left.
	Lease(ctx context.Context, worker, token string, ttl time.Duration) (held bool, left time.Duration, err error)
	// Release ends token's lease on worker, if token holds it.
	Release(ctx context.Context, worker, token string) error
}

// Worker samples and reports. Create one with New.
type Worker struct {
	cfg   Config
	bus   Bus
	stats stats                 // for Stats
	q     atomic.Pointer[queue] // the queue of the current Run
	// lastSaid is when the worker last told the bus it is alive (an entry
	// or a heartbeat), in Unix nanoseconds.
	lastSaid atomic.Int64
	// stateGone is whether the job state was missing at the last look.
	stateGone atomic.Bool
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
	errJobDone    = errors.New("the job is done")
	errJobChanged = errors.New("the job was reset")
	errDuration   = errors.New("duration reached")
)

// job is what the worker knows of its job and of itself in it.
type job struct {
	state wire.State
	seed  uint64
	seq   uint64 // the last seq in the ledger under this worker's id
	n     uint64 // the entry size this worker draws; 0 until chosen
}

// estimator returns the job's estimator, as --estimator spells it.
func (j job) estimator() string {
	if j.state.Cells != 0 {
		return fmt.Sprintf("%s, %d×%d cells", mcpi.Stratified, j.state.Cells, j.state.Cells)
	}
	return mcpi.MC
}

// Run samples until ctx is done, the job is done, or a limit of the Config is
// reached, and returns nil in all those cases (also when ctx ends while it
// still waits for the bus). It returns an error when it cannot work at all:
// a permanent bus error (backoff.IsPermanent: a wrong password, a missing
// permission, …) ends it at once, even mid-run.
func (w *Worker) Run(ctx context.Context) error {
	cfg := w.cfg
	log := cfg.Logger.With("worker", cfg.ID)
	defer w.stats.stopped()
	token := wire.FormatSeed(randomUint64()) // this run's claim on the id
	if err := w.takeLease(ctx, log, token); err != nil {
		if ctx.Err() != nil && !backoff.IsPermanent(err) {
			log.Info("cancelled while waiting for the bus", "err", err)
			return nil
		}
		return err
	}
	defer func() { // after the goodbye: a restart under this id need not wait for the TTL
		relCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = w.bus.Release(relCtx, cfg.ID, token)
	}()
	j, err := w.start(ctx, log)
	if errors.Is(err, errJobDone) {
		log.Info("the job is already done; leaving")
		return nil
	}
	if err != nil && ctx.Err() != nil && !backoff.IsPermanent(err) {
		log.Info("cancelled while waiting for the bus", "err", err)
		return nil
	}
	if err != nil {
		return err
	}
	resumed := j.seq
	w.stats.started(j.seq)
	sampleCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		sampleCtx, cancel = context.WithTimeoutCause(sampleCtx, cfg.Duration, errDuration)
		defer cancel()
	}
	if j.state.Cells != 0 { // a stratified job: every entry is one batch of K² cells
		j.n = j.state.Cells * j.state.Cells
	}
	if j.n == 0 {
		j.n = w.entrySize(sampleCtx, j)
	}
	log.Info("worker started", "job", j.state.Job, "estimator", j.estimator(), "kernel", cfg.Kernel.Name(), "threads", cfg.Threads,
		"entry_n", j.n, "resumed_at_seq", resumed, "signed", cfg.Key != nil)

	// The publisher outlives cancellation by at most FlushTimeout, so the
	// queued entries still reach the bus after Ctrl-C.
	pubCtx, cancelPub := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelPub()
	q := newQueue(cfg.QueueLimit)
	w.q.Store(q)
	var wg sync.WaitGroup
	var pubErr, kaErr error
	kaCtx, stopKeepalive := context.WithCancel(pubCtx)
	defer stopKeepalive()
	wg.Go(func() { kaErr = w.keepalive(kaCtx, j.state.Job, token, stop, log) })
	wg.Go(func() { pubErr = w.publish(pubCtx, q, j.state.Job, stop, log); stopKeepalive() })

	seq, total, err := w.sample(sampleCtx, j, q, log)
	q.close()
	flush := time.AfterFunc(cfg.FlushTimeout, cancelPub)
	wg.Wait()
	flush.Stop()
	byeCtx, cancelBye := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	w.presence(byeCtx, j.state.Job, wire.Left) // after the last entry: a clean goodbye
	cancelBye()
	pubErr = errors.Join(pubErr, kaErr)

	why := "limit"
	switch cause := context.Cause(sampleCtx); {
	case pubErr != nil:
		why = "bus error"
		err = errors.Join(err, pubErr)
	case errors.Is(cause, errJobDone):
		why = "job done"
	case errors.Is(cause, errJobChanged):
		why = "job reset: this worker's entries belong to the old job"
	case errors.Is(cause, errDuration):
		why = "duration"
	case ctx.Err() != nil:
		why = "cancelled"
		if c := context.Cause(ctx); c != ctx.Err() {
			why = c.Error() // picluster run says why: the target, a duration
		}
	}
	if left := q.len(); left > 0 {
		log.Error("entries did not reach the bus before the flush timeout", "lost_entries", left)
	}
	log.Info("worker stopped", "reason", why, "entries", seq-resumed, "seq", seq, "n_this_run", total)
	return err
}

// start waits for the bus and for the job, leaves if the job is done, and
// finds where this worker's entries in the ledger end, to resume after.
func (w *Worker) start(ctx context.Context, log *slog.Logger) (job, error) {
	var j job
	waiting := false
	err := backoff.Retry(ctx, log, "read the job state and this worker's place in the ledger", func() (err error) {
		j, err = w.resume(ctx)
		switch {
		case errors.Is(err, errNoJob):
			if !waiting {
				log.Info("no job yet: waiting for a collector to create it")
				waiting = true
			}
		case errors.Is(err, errJobDone), errors.As(err, new(*wire.Error)):
			return backoff.Permanent(err)
		}
		return err
	})
	return j, err
}

var errNoJob = errors.New("no job state yet")

func (w *Worker) resume(ctx context.Context) (job, error) {
	b, err := w.bus.State(ctx)
	if err != nil {
		return job{}, err
	}
	if b == nil {
		return job{}, errNoJob
	}
	s, err := wire.DecodeState(b)
	if err != nil {
		return job{}, fmt.Errorf("job state: %w", err)
	}
	if s.Status == wire.Done {
		return job{}, errJobDone
	}
	if s.Job == "" {
		return job{}, errNoJob // a v1 collector's state: wait for a v2 one
	}
	j := job{state: s}
	if j.seed, err = wire.ParseSeed(s.Seed); err != nil {
		return job{}, fmt.Errorf("job state: %w", err)
	}
	if s.MaxN == 0 || s.MaxN > wire.MaxEntryN {
		j.state.MaxN = wire.MaxEntryN
	}
	if s.Cells != 0 || s.Estimator != "" && s.Estimator != mcpi.MC {
		if err := mcpi.ValidCells(s.Cells); err != nil || s.Estimator != mcpi.Stratified {
			return job{}, &wire.Error{Reason: wire.WrongEstimator, Detail: fmt.Sprintf("job state: estimator %q with %d cells: this worker draws mc, or stratified with cells a power of two from %d to %d", s.Estimator, s.Cells, mcpi.MinCells, mcpi.MaxCells)}
		}
	}
	credit, err := w.bus.Credited(ctx, w.cfg.ID)
	if err != nil {
		return job{}, err
	}
	pos := ""
	if credit != nil {
		cr, err := wire.DecodeCredit(credit)
		if err != nil {
			return job{}, fmt.Errorf("this worker's checkpoint: %w", err)
		}
		j.seq, j.n, pos = cr.Seq, cr.N, cr.Pos
	}
	// Entries appended after the checkpoint are not credited yet: find
	// them in this worker's stream. With a key, only entries it signed are
	// its own: with a shared Redis user another worker could append here.
	for {
		entries, err := w.bus.ReadLedgers(ctx, []wire.Cursor{{Worker: w.cfg.ID, After: pos}}, 1000)
		if err != nil {
			return job{}, err
		}
		for _, le := range entries {
			e, err := wire.DecodeEntry(le.Payload)
			mine := err == nil && e.Worker == w.cfg.ID && e.Job == s.Job && e.Seq > j.seq &&
				(w.cfg.Key == nil || wire.SignatureOK(w.cfg.Key, le.Payload, le.Sig))
			if mine {
				j.seq, j.n = e.Seq, e.N
			}
			pos = le.ID
		}
		if len(entries) < 1000 {
			return j, nil
		}
	}
}

// entrySize returns the samples per entry: Config.Batch, or what takes about
// BatchTime on this machine, measured on a few unpublished batches; at most
// the job's cap.
func (w *Worker) entrySize(ctx context.Context, j job) uint64 {
	cfg := w.cfg
	if cfg.Batch > 0 {
		return min(cfg.Batch, j.state.MaxN)
	}
	n := uint64(64 * mcpi.Lanes)
	for {
		start := time.Now()
		// seq 0 is never in the ledger: this batch only measures the speed.
		if _, ok := Hits(ctx, mcpi.Batch{Key: mcpi.Key{Seed: j.seed, Worker: cfg.ID}, N: n}, cfg.Kernel, cfg.Threads); !ok {
			return min(n, j.state.MaxN)
		}
		took := time.Since(start)
		if took >= 50*time.Millisecond || n >= j.state.MaxN {
			want := float64(n) * float64(cfg.BatchTime) / float64(took)
			return max(mcpi.Lanes, min(uint64(want)/mcpi.Lanes*mcpi.Lanes, j.state.MaxN))
		}
		n *= 4
	}
}

// sample draws entries until ctx is done or MaxBatches, queueing each. It
// returns the last seq drawn and the samples drawn in this run.
func (w *Worker) sample(ctx context.Context, j job, q *queue, log *slog.Logger) (uint64, uint64, error) {
	cfg := w.cfg
	seq, total := j.seq, uint64(0)
	seed := wire.FormatSeed(j.seed)
	lastLog := time.Now()
	for b := uint64(0); cfg.MaxBatches == 0 || b < cfg.MaxBatches; b++ {
		if seq == math.MaxUint64 {
			return seq, total, fmt.Errorf("worker %q: no seq left after %d (in open mode anyone can append under an id); start it under a new --id", cfg.ID, seq)
		}
		start := time.Now()
		batch := mcpi.Batch{Key: mcpi.Key{Seed: j.seed, Worker: cfg.ID, Seq: seq + 1}, N: j.n, Cells: j.state.Cells}
		hits, ok := Hits(ctx, batch, cfg.Kernel, cfg.Threads)
		if !ok {
			return seq, total, nil // cancelled mid-batch: the batch is dropped, never half-reported
		}
		end := time.Now()
		took := end.Sub(start)
		seq++
		total += j.n
		payload := wire.EncodeEntry(wire.Entry{Job: j.state.Job, Worker: cfg.ID, Seq: seq, N: j.n, Hits: hits,
			Seed: seed, Kernel: cfg.Kernel.Name(), Seconds: took.Seconds(), Cells: j.state.Cells})
		s := wire.Signed{Payload: payload}
		if cfg.Key != nil {
			s.Sig = wire.Sign(cfg.Key, payload)
		}
		w.stats.batch(seq, j.n, end, took) // before the publisher can see it
		if err := q.put(ctx, item{s, seq}, log); err != nil {
			return seq - 1, total - j.n, nil // stopped while the queue was full: the entry is dropped
		}
		rate := float64(j.n) / took.Seconds()
		log.Debug("entry", "seq", seq, "n", j.n, "hits", hits, "samples_per_s", rate)
		if time.Since(lastLog) >= 10*time.Second {
			log.Info("sampling", "seq", seq, "n_this_run", total, "samples_per_s", rate, "queued", q.len())
			lastLog = time.Now()
		}
	}
	return seq, total, nil
}

// Hits computes batch b with kernel k on threads goroutines, each taking the
// next undone group of lanes, and returns its hits. It returns false if ctx
// was cancelled before every group was done. The hits do not depend on
// threads.
func Hits(ctx context.Context, b mcpi.Batch, k mcpi.Kernel, threads int) (uint64, bool) {
	var next, done atomic.Int64
	var total atomic.Uint64
	var wg sync.WaitGroup
	stop := func() bool { return ctx.Err() != nil } // between chunks: a cancellation waits for one chunk at most
	for range max(1, min(threads, mcpi.Groups)) {
		wg.Go(func() {
			var h uint64
			for ctx.Err() == nil {
				g := next.Add(1) - 1
				if g >= mcpi.Groups {
					break
				}
				gh, ok := b.GroupHitsStop(int(g), k, stop)
				if !ok {
					break
				}
				h += gh
				done.Add(1)
			}
			total.Add(h)
		})
	}
	wg.Wait()
	return total.Load(), done.Load() == mcpi.Groups
}

// appendMax is the most entries one Append carries.
const appendMax = 512

// publish appends the queued entries in order, many at a time, until the
// queue is closed and empty, or ctx is done. After each append, and on every
// control message, it reads the job state and stops sampling when the job is
// done or was reset. A permanent bus error stops sampling and is returned.
func (w *Worker) publish(ctx context.Context, q *queue, jobID string, stop context.CancelCauseFunc, log *slog.Logger) error {
	ctrlCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	control := w.bus.Control(ctrlCtx)
	var bo backoff.Backoff
	fail := func(err error) error {
		log.Error("the bus refuses this worker for good", "err", err)
		stop(err)
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-control:
			if !ok {
				control = nil
			}
			if err := w.checkState(ctx, jobID, stop); err != nil {
				return fail(err)
			}
			continue
		case <-q.ready:
		}
		for {
			batch, closed := q.peek(appendMax)
			if len(batch) == 0 {
				if closed {
					return nil
				}
				break
			}
			err := w.bus.Append(ctx, w.cfg.ID, signed(batch))
			if err == nil {
				q.drop(len(batch))
				w.lastSaid.Store(time.Now().UnixNano()) // an entry says alive too
				w.stats.published(batch[len(batch)-1].seq, time.Now())
				if bo.Failures() > 0 {
					log.Info("bus is back; the queued entries go through", "queued", q.len())
				}
				bo.Reset()
				continue
			}
			w.stats.publishFailed()
			if backoff.IsPermanent(err) {
				return fail(err)
			}
			if bo.Failures() == 0 {
				log.Warn("append failed; sampling goes on and the queue catches up on reconnect", "queued", q.len(), "err", err)
			}
			if bo.Wait(ctx) != nil {
				return nil
			}
		}
		if err := w.checkState(ctx, jobID, stop); err != nil {
			return fail(err)
		}
	}
}

// ErrIDInUse refuses a second worker under a live id.
var ErrIDInUse = errors.New("another live worker holds this id's lease and renews it")

// takeLease takes the lease on the worker's id, retrying transient errors.
// When another worker holds it, it waits once for that lease to run out (a
// dead worker's does, within LeaseTTL) and refuses if it was renewed.
func (w *Worker) takeLease(ctx context.Context, log *slog.Logger, token string) error {
	id, ttl := w.cfg.ID, w.cfg.LeaseTTL
	waited := false
	return backoff.Retry(ctx, log, "take the lease on this worker's id", func() error {
		for {
			held, left, err := w.bus.Lease(ctx, id, token, ttl)
			switch {
			case err != nil:
				return err
			case held:
				return nil
			case waited:
				return backoff.Permanent(fmt.Errorf("worker id %q: %w; start this one under another --id", id, ErrIDInUse))
			}
			waited = true
			log.Warn("another worker holds this id's lease; waiting for it to run out, as a dead worker's does", "left", left)
			t := time.NewTimer(left + ttl/10)
			select {
			case <-ctx.Done():
				t.Stop()
				return context.Cause(ctx)
			case <-t.C:
			}
		}
	})
}

// keepalive says the worker is alive every Heartbeat unless an entry said
// so meanwhile, and renews the lease on its id every LeaseTTL/3, until ctx
// is done; apart from the publisher, so that neither waits for an append.
// A lease lost, or a permanent error, stops sampling and is returned.
func (w *Worker) keepalive(ctx context.Context, job, token string, stop context.CancelCauseFunc, log *slog.Logger) error {
	heartbeat := time.NewTicker(w.cfg.Heartbeat)
	defer heartbeat.Stop()
	renew := time.NewTicker(w.cfg.LeaseTTL / 3)
	defer renew.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-heartbeat.C:
			if now.Sub(time.Unix(0, w.lastSaid.Load())) >= w.cfg.Heartbeat {
				w.presence(ctx, job, wire.Alive)
			}
		case <-renew.C:
			if err := w.renewLease(ctx, token); err != nil {
				log.Error("stopping: the lease on this worker's id is lost", "err", err)
				stop(err)
				return err
			}
		}
	}
}

// renewLease renews the lease on the worker's id. A transient error is no
// harm (the next renewal comes well before the TTL); a lease that another
// worker has taken meanwhile (this one was cut off for longer than the TTL)
// ends the worker, so that two never append under one id.
func (w *Worker) renewLease(ctx context.Context, token string) error {
	held, _, err := w.bus.Lease(ctx, w.cfg.ID, token, w.cfg.LeaseTTL)
	switch {
	case backoff.IsPermanent(err):
		return err
	case err == nil && !held:
		return fmt.Errorf("worker id %q: the lease was taken by another worker while this one was cut off; %w", w.cfg.ID, ErrIDInUse)
	}
	return nil
}

// presence publishes the worker's status in job, signed with its key in
// secure mode; a lost heartbeat is harmless.
func (w *Worker) presence(ctx context.Context, job, status string) {
	now := time.Now()
	w.lastSaid.Store(now.UnixNano())
	p := wire.Presence{Worker: w.cfg.ID, Status: status, At: now, Job: job}
	if w.cfg.Key != nil {
		p = wire.SignPresence(w.cfg.Key, p)
	}
	_ = w.bus.Heartbeat(ctx, w.cfg.ID, wire.EncodePresence(p))
}

// checkState stops sampling when the job is done or is another job now. An
// unreadable or missing state is no stop: it is read again at the next
// append (after a loss of Redis's data the collector writes it again, and a
// reset writes a new job's); only a permanent error is returned.
func (w *Worker) checkState(ctx context.Context, jobID string, stop context.CancelCauseFunc) error {
	b, err := w.bus.State(ctx)
	if backoff.IsPermanent(err) {
		return err
	}
	if err != nil {
		return nil
	}
	if b == nil { // Redis lost its data, or a reset is under way: the collector writes the state again
		if !w.stateGone.Swap(true) {
			w.cfg.Logger.Warn("the job state is gone (Redis lost its data?): sampling goes on until a collector writes it again", "worker", w.cfg.ID)
		}
		return nil
	}
	if w.stateGone.Swap(false) {
		w.cfg.Logger.Info("the job state is back", "worker", w.cfg.ID)
	}
	s, err := wire.DecodeState(b)
	switch {
	case err != nil:
	case s.Job != jobID:
		stop(errJobChanged)
	case s.Status == wire.Done:
		stop(errJobDone)
	}
	return nil
}

// Queued returns how many entries wait for the bus.
func (w *Worker) Queued() int {
	if q := w.q.Load(); q != nil {
		return q.len()
	}
	return 0
}

// Drawn returns how many entries the worker has drawn in this run.
func (w *Worker) Drawn() uint64 { return w.Stats().Batches }
