// Package backoff is the one reconnect policy of picluster: capped,
// exponential, fully jittered delays that reset after a success and give way
// at once to cancellation.
//
// A Backoff is used by one goroutine at a time; its zero value is ready to
// use with the defaults.
package backoff

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"
)

// Defaults for a zero Backoff.
const (
	DefaultMin = 100 * time.Millisecond
	DefaultMax = 10 * time.Second
)

// Backoff hands out retry delays: the n-th consecutive failure waits a uniform
// random time in [0, min(Max, Min·2ⁿ)] ("full jitter"), so that ten thousand
// workers that lost the same Redis do not come back in step.
type Backoff struct {
	Min, Max time.Duration // zero means DefaultMin, DefaultMax
	failures int
}

// Next returns the delay before the next attempt and counts a failure.
func (b *Backoff) Next() time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = DefaultMin
	}
	if hi <= 0 {
		hi = DefaultMax
	}
	d := hi
	if b.failures < 32 && lo<<b.failures < hi {
		d = lo << b.failures
	}
	b.failures++
	return rand.N(d) + 1
}

// Wait sleeps for Next, or until ctx is done, whichever comes first; it
// returns ctx's error when cancelled.
func (b *Backoff) Wait(ctx context.Context) error {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Reset forgets the failures: call it after a success.
func (b *Backoff) Reset() { b.failures = 0 }

// Failures returns the number of consecutive failures so far.
func (b *Backoff) Failures() int { return b.failures }

// permanent marks an error that retrying cannot fix.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent wraps err so that Retry returns it at once instead of retrying.
// The wrapper survives further wrapping with %w: IsPermanent still sees it.
func Permanent(err error) error { return permanent{err} }

// IsPermanent reports whether err, or an error it wraps, was marked by
// Permanent.
func IsPermanent(err error) bool { return errors.As(err, new(permanent)) }

// Retry calls f until it succeeds, returns an error wrapped by Permanent, or
// ctx is done, waiting with a fresh Backoff between tries. It logs the first
// failure of a run and the recovery after it, not every try. It returns nil,
// the permanent error (still marked: IsPermanent holds), or, when ctx ended,
// "what: cause (last error: …)" which wraps both ctx's cause and the last
// error, so errors.Is(err, context.Canceled) holds after Ctrl-C.
func Retry(ctx context.Context, log *slog.Logger, what string, f func() error) error {
	var b Backoff
	for {
		err := f()
		var p permanent
		switch {
		case err == nil:
			if b.Failures() > 0 {
				log.Info("bus is back", "did", what)
			}
			return nil
		case errors.As(err, &p):
			return err
		}
		if b.Failures() == 0 {
			log.Warn("bus unavailable; retrying", "doing", what, "err", err)
		}
		if b.Wait(ctx) != nil {
			return fmt.Errorf("%s: %w (last error: %w)", what, context.Cause(ctx), err)
		}
	}
}
