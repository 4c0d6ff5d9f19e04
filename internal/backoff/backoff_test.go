package backoff

import (
	"context"
	"errors"
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
		if err := Retry(t.Context(), log, "test", func() error { tries++; return Permanent(final) }); err != final || tries != 1 {
			t.Fatalf("Retry = %v after %d tries, want the permanent error at once", err, tries)
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := Retry(ctx, log, "test", func() error { return errors.New("down") }); err == nil || err.Error() != "test: down" {
			t.Fatalf("Retry on a done context = %v, want \"test: down\"", err)
		}
	})
}
