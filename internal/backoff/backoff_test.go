package backoff

import (
	"context"
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
