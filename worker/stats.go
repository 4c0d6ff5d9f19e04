package worker

import (
	"sync"
	"time"
)

// Stats is a snapshot of a worker for the tools that watch machines: the
// worker's /metrics and /healthz. Counts are of this Run only (a worker that
// resumed its totals from the bus counts from zero again).
type Stats struct {
	ID      string
	Kernel  string
	Threads int
	// State is "starting" (waiting for the bus, reading the job state and
	// the totals to resume from), "sampling" or "stopped".
	State string
	// Samples and Batches are what this run has drawn.
	Samples, Batches uint64
	// Published counts the reports the bus accepted, PublishErrors the
	// attempts it refused (each retried with backoff).
	Published, PublishErrors uint64
	// Seq is the last batch drawn, PublishedSeq the last one the bus has.
	Seq, PublishedSeq uint64
	// QueueDepth is the number of entries drawn and not yet on the bus. It
	// grows while the bus is unreachable.
	QueueDepth uint64
	// PublishLag is the time from the end of the last published batch to
	// the bus's acknowledgement of its report.
	PublishLag time.Duration
	// SamplesPerS is the rate of the last batch, on all threads.
	SamplesPerS float64
}

// Stats returns a snapshot of the worker. It is safe to call at any time,
// from any goroutine, also while Run runs.
func (w *Worker) Stats() Stats {
	w.stats.mu.Lock()
	defer w.stats.mu.Unlock()
	s := w.stats.s
	s.ID, s.Kernel, s.Threads = w.cfg.ID, w.cfg.Kernel.Name(), w.cfg.Threads
	if s.State == "" {
		s.State = "starting"
	}
	s.QueueDepth = uint64(w.Queued())
	return s
}

// stats is what the sampler and the publisher record for Stats: a mutex
// taken once per batch and once per publish, never per sample.
type stats struct {
	mu   sync.Mutex
	s    Stats
	ends [16]batchEnd // when the last batches ended, by seq mod 16
}

type batchEnd struct {
	seq uint64
	at  time.Time
}

// started records that the worker resumed at seq and samples now.
func (st *stats) started(seq uint64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.s.State, st.s.Seq, st.s.PublishedSeq = "sampling", seq, seq
}

// stopped records that Run returned.
func (st *stats) stopped() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.s.State = "stopped"
}

// batch records batch seq of n samples that ended at end and took took.
func (st *stats) batch(seq, n uint64, end time.Time, took time.Duration) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.s.Samples += n
	st.s.Batches++
	st.s.Seq = seq
	st.s.SamplesPerS = float64(n) / max(took, time.Nanosecond).Seconds()
	st.ends[seq%uint64(len(st.ends))] = batchEnd{seq: seq, at: end}
}

// published records that the bus accepted the report of batch seq at at.
func (st *stats) published(seq uint64, at time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.s.Published++
	st.s.PublishedSeq = max(st.s.PublishedSeq, seq)
	if e := st.ends[seq%uint64(len(st.ends))]; e.seq == seq {
		st.s.PublishLag = at.Sub(e.at)
	}
}

// publishFailed records a publish the bus refused.
func (st *stats) publishFailed() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.s.PublishErrors++
}
