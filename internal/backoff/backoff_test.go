package backoff

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"
)

func TestNextIsCappedAndGrows(t *testing.T) {
	b := Backoff{Min: time.Millisecond, Max: 50 * time.Millisecond}
	for i := range 100 {
		d := b.Next()
		limit := 50 * time.Millisecond
		if i < 6 {
			limit = time.Millisecond << i
		}
		if d <= 0 || d > limit+1 {
			t.Fatalf("attempt %d: delay %v, want in (0, %v]", i, d, limit)
		}
	}
	b.Reset()
	if d := b.Next(); d > time.Millisecond+1 {
		t.Errorf("after Reset: delay %v, want ≤ 1ms", d)
	}
}

func TestWaitIsInterruptible(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		b := Backoff{Min: time.Hour, Max: time.Hour}
		done := make(chan error)
		go func() { done <- b.Wait(ctx) }()
		synctest.Wait()
		cancel()
		if err := <-done; err != context.Canceled {
			t.Fatalf("Wait = %v, want context.Canceled", err)
		}
	})
}

func TestWaitWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := Backoff{Min: time.Second, Max: time.Second}
		start := time.Now()
		if err := b.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d <= 0 || d > time.Second+time.Nanosecond {
			t.Fatalf("waited %v, want in (0, 1s]", d)
		}
	})
}

func TestRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		tries := 0
		err := Retry(t.Context(), log, "test", func() error {
			if tries++; tries < 3 {
				return errors.New("down")
			}
			return nil
		})
		if err != nil || tries != 3 {
			t.Fatalf("Retry = %v after %d tries, want nil after 3", err, tries)
		}
		final := errors.New("final")
		tries = 0
		err = Retry(t.Context(), log, "test", func() error { tries++; return fmt.Errorf("wrapped: %w", Permanent(final)) })
		if !errors.Is(err, final) || !IsPermanent(err) || tries != 1 {
			t.Fatalf("Retry = %v after %d tries, want the permanent error at once, still marked", err, tries)
		}
		down := errors.New("down")
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		err = Retry(ctx, log, "test", func() error { return down })
		if !errors.Is(err, context.Canceled) || !errors.Is(err, down) || IsPermanent(err) {
			t.Fatalf("Retry on a cancelled context = %v, want it to wrap context.Canceled and the last error", err)
		}
		stop := errors.New("stop cause")
		ctx, cancelCause := context.WithCancelCause(t.Context())
		cancelCause(stop)
		if err := Retry(ctx, log, "test", func() error { return down }); !errors.Is(err, stop) {
			t.Fatalf("Retry on a context cancelled with a cause = %v, want it to wrap the cause", err)
		}
	})
}
