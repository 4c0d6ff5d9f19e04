package collector

import (
	"context"
	"errors"
	"time"

	"github.com/picluster/picluster/internal/wire"
)

// StopCause is why a collector stopped, recorded in Summary.StoppedBy. Give
// one as the cause when cancelling Run's context (context.WithCancelCause,
// context.WithTimeoutCause); a cancellation without one is StopSignal.
type StopCause string

func (s StopCause) Error() string { return "stopped by " + string(s) }

// The causes a collector records.
const (
	StopTarget   StopCause = "target"   // the target SE was reached
	StopDuration StopCause = "duration" // a time limit (--duration)
	StopSignal   StopCause = "signal"   // Ctrl-C, SIGTERM, or a cancellation without a cause
	StopWorkers  StopCause = "workers"  // every worker of the run ended by itself (picluster run)
	StopError    StopCause = "error"    // the collector failed: see Run's error
)

// causeOf returns the StopCause that cause carries, StopSignal if none.
func causeOf(cause error) StopCause {
	var s StopCause
	if errors.As(cause, &s) {
		return s
	}
	return StopSignal
}

// ErrStale is wrapped by Run's error when the final read of the ledger
// failed: the Summary may miss entries that reached the bus, and says so in
// its Stale field.
var ErrStale = errors.New("the final summary may be stale")

// ErrNoJob is wrapped by Run's error when ctx ended before the job was
// loaded: the bus never answered.
var ErrNoJob = errors.New("stopped before the job was loaded")

// DefaultFinalGrace is Config.FinalGrace's default: the workers' flush
// timeout.
const DefaultFinalGrace = 10 * time.Second

// stop records why the collector stopped, once.
func (c *Collector) stop(why StopCause) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped == "" {
		c.stopped = string(why)
	}
}

// awaitGoodbyes waits, after the job was marked done, until every credited
// worker has said goodbye (its last entries are in the ledger before its
// goodbye is published) or has vanished, for at most FinalGrace or until
// ctx is done, crediting the ledger after each goodbye. The final read comes
// after it.
func (c *Collector) awaitGoodbyes(ctx context.Context) {
	timer := time.NewTimer(c.cfg.FinalGrace)
	defer timer.Stop()
	for {
		if _, err := c.catchUp(ctx); err != nil {
			return
		}
		waiting, due := c.stillWorking()
		if waiting == 0 {
			return
		}
		vanish := time.NewTimer(max(0, due.Sub(c.cfg.Now())) + time.Millisecond)
		select {
		case <-vanish.C: // a worker silent for so long has vanished: count again
		case <-c.bye:
		case <-timer.C:
			c.log.Warn("workers still sampling after the final grace; their last entries come too late for this summary",
				"workers", waiting, "grace", c.cfg.FinalGrace)
			return
		case <-ctx.Done():
			vanish.Stop()
			return
		}
		vanish.Stop()
	}
}

// stillWorking counts the credited workers that have neither said goodbye
// nor vanished, and returns when the first of them will have vanished if
// it stays silent.
func (c *Collector) stillWorking() (int, time.Time) {
	now := c.cfg.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	n, first := 0, time.Time{}
	for id, cr := range c.pool.workers {
		if _, q := c.pool.quarantined[id]; q || c.pool.left[id] {
			continue
		}
		seen := c.pool.seen[id]
		if presence(now, seen, cr.Seconds, false) == "alive" {
			n++
			due := seen.Add(max(3*wire.HeartbeatInterval, time.Duration(3*cr.Seconds*float64(time.Second))))
			if first.IsZero() || due.Before(first) {
				first = due
			}
		}
	}
	return n, first
}
