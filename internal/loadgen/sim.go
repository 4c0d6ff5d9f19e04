package loadgen

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/picluster/picluster/internal/redisbus"
	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

// job is what a simulated worker needs to draw valid entries: the job's
// id and seed from its state, the job key, the entry size.
type job struct {
	id     string
	seed   uint64
	key    []byte
	n      uint64
	kernel mcpi.Kernel
}

// entry returns worker's entry seq, signed with key (the worker's key):
// its hits are the batch's true hits, so it replays exactly.
func (j job) entry(worker string, key []byte, seq uint64) wire.Signed {
	hits := mcpi.Batch{Key: mcpi.Key{Seed: j.seed, Worker: worker, Seq: seq}, N: j.n}.Hits(j.kernel)
	p := wire.EncodeEntry(wire.Entry{Job: j.id, Worker: worker, Seq: seq, N: j.n, Hits: hits,
		Seed: wire.FormatSeed(j.seed), Kernel: j.kernel.Name(), Seconds: 1e-3})
	return wire.Signed{Payload: p, Sig: wire.Sign(key, p)}
}

// simWorker is one simulated worker: its id, key and the entries it has
// appended, and those drawn ahead for the current step.
type simWorker struct {
	id    string
	key   []byte
	phase float64 // in [0, 1): spreads the workers' appends over time
	seq   uint64  // the last seq appended
	ahead []wire.Signed
	sent  int // of ahead, in this step
}

// fleet is the simulated workers, split among senders, each with a bus
// (a connection pool) of its own.
type fleet struct {
	job     job
	workers []*simWorker
	buses   []*redisbus.Bus
	sent    atomic.Uint64 // entries appended, over every step
}

func newFleet(j job, prefix string, k int, buses []*redisbus.Bus) *fleet {
	f := &fleet{job: j, buses: buses}
	for i := range k {
		id := fmt.Sprintf("%s%06d", prefix, i)
		f.workers = append(f.workers, &simWorker{id: id, key: wire.WorkerKey(j.key, id), phase: float64(i) / float64(k)})
	}
	return f
}

// draw draws, on every core, the entries each worker appends in a step of
// d at rate (entries/s, all workers together), so that sending costs no
// sampling or signing. Entries drawn and not sent are drawn again for the
// next step.
func (f *fleet) draw(rate float64, d time.Duration) {
	per := int(math.Ceil(rate/float64(len(f.workers))*d.Seconds())) + 1
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(f.workers); i = int(next.Add(1) - 1) {
				w := f.workers[i]
				w.ahead, w.sent = w.ahead[:0], 0
				for s := range uint64(per) {
					w.ahead = append(w.ahead, f.job.entry(w.id, w.key, w.seq+1+s))
				}
			}
		})
	}
	wg.Wait()
}

// maxAppend is the most entries one append carries: a worker that fell
// behind catches up in steps of this many.
const maxAppend = 64

// send appends the drawn entries at rate for d: worker w's i-th entry of
// the step is due at (i − phase_w)/r, r = rate/K. Each sender goroutine owns
// the workers i ≡ s (mod senders), and appends each one's due entries in
// one Append (MULTI/EXEC) every few milliseconds. It returns when d is
// over, or at the first failed append: an append whose outcome is unknown
// makes the run's counts unknown.
func (f *fleet) send(ctx context.Context, rate float64, d time.Duration) error {
	r := rate / float64(len(f.workers))
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(f.buses))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for s, bus := range f.buses {
		wg.Go(func() {
			t := time.NewTicker(2 * time.Millisecond)
			defer t.Stop()
			for {
				el := time.Since(start)
				if el >= d {
					return
				}
				for i := s; i < len(f.workers); i += len(f.buses) {
					w := f.workers[i]
					due := min(int(r*el.Seconds()+w.phase), len(w.ahead)) - w.sent
					if due <= 0 {
						continue
					}
					batch := w.ahead[w.sent : w.sent+min(due, maxAppend)]
					if err := bus.Append(ctx, w.id, batch); err != nil {
						errs[s] = fmt.Errorf("worker %s: %w", w.id, err)
						cancel()
						return
					}
					w.sent += len(batch)
					w.seq += uint64(len(batch))
					f.sent.Add(uint64(len(batch)))
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return ctx.Err()
}

// appended returns the entries every worker has appended.
func (f *fleet) appended() uint64 { return f.sent.Load() }

// probeID is the probe worker's id: it sorts before every simulated
// worker's, so the collector's table shows it on its first page.
const probeID = "0-probe"

// honestID is the honest worker of a flood, which sorts first too.
const honestID = "0-honest"

// trickle appends one entry of worker id every period until ctx is done,
// calling sent after each with its seq and the time the append began. It
// returns the seqs appended.
func trickle(ctx context.Context, bus *redisbus.Bus, j job, id string, period time.Duration, sent func(seq uint64, at time.Time)) (uint64, error) {
	key := wire.WorkerKey(j.key, id)
	t := time.NewTicker(period)
	defer t.Stop()
	var seq uint64
	for {
		e := j.entry(id, key, seq+1)
		at := time.Now()
		if err := bus.Append(context.WithoutCancel(ctx), id, []wire.Signed{e}); err != nil {
			return seq, fmt.Errorf("worker %s: %w", id, err)
		}
		seq++
		if sent != nil {
			sent(seq, at)
		}
		select {
		case <-ctx.Done():
			return seq, nil
		case <-t.C:
		}
	}
}

// trickler is a worker appending in the background (trickle).
type trickler struct {
	stop context.CancelFunc
	done chan trickled
}

type trickled struct {
	seqs uint64
	err  error
}

// startTrickle starts trickle of worker id and waits, up to 30 s, until
// the collector's table shows it.
func startTrickle(ctx context.Context, bus *redisbus.Bus, j job, id string, period time.Duration, sent func(seq uint64, at time.Time), w *watcher) (*trickler, error) {
	tctx, stop := context.WithCancel(ctx)
	t := &trickler{stop: stop, done: make(chan trickled, 1)}
	go func() {
		n, err := trickle(tctx, bus, j, id, period, sent)
		t.done <- trickled{n, err}
	}()
	if _, ok := w.until(ctx, 30*time.Second, func(s apiState) bool { _, ok := s.row(id); return ok }); !ok {
		t.end()
		return nil, fmt.Errorf("the collector credited no entry of worker %s within 30s", id)
	}
	return t, nil
}

// end stops the worker and returns the seqs it appended.
func (t *trickler) end() (uint64, error) {
	t.stop()
	r := <-t.done
	t.done <- r // end again returns the same
	return r.seqs, r.err
}
