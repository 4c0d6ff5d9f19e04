package faultbus_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/picluster/picluster/internal/faultbus"
	"github.com/picluster/picluster/internal/membus"
	"github.com/picluster/picluster/internal/wire"
)

func entries(t *testing.T, b *faultbus.Bus) []string {
	t.Helper()
	var out []string
	for _, le := range b.Bus.Entries() {
		out = append(out, string(le.Payload))
	}
	return out
}

func one(p string) []wire.Signed { return []wire.Signed{{Payload: []byte(p)}} }

// Each fault does what it says, and only as many times as asked.
func TestFaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		b := faultbus.New(membus.New())
		boom := errors.New("boom")
		b.Fail(faultbus.Append, 1, boom)
		if err := b.Append(ctx, "w", one("a")); !errors.Is(err, boom) {
			t.Fatalf("failed append = %v", err)
		}
		b.Duplicate(1)
		_ = b.Append(ctx, "w", one("b"))
		b.LoseReply(1)
		if err := b.Append(ctx, "w", one("c")); err == nil {
			t.Fatal("a lost reply reported success")
		}
		b.Reorder(2)
		_ = b.Append(ctx, "w", one("d"))
		_ = b.Append(ctx, "w", one("e"))
		if got := entries(t, b); len(got) != 3 || got[0] != "b" || got[1] != "b" || got[2] != "c" {
			t.Fatalf("ledger %q before the reordered appends land", got)
		}
		_ = b.Append(ctx, "w", one("f"))
		if got := entries(t, b); len(got) != 6 || got[3] != "f" || got[4] != "e" || got[5] != "d" {
			t.Fatalf("ledger %q: want f, e, d last", got)
		}
		b.Disconnect()
		if _, err := b.State(ctx); !errors.Is(err, faultbus.ErrDisconnected) {
			t.Fatalf("State while disconnected = %v", err)
		}
		b.Reconnect()
		b.Delay(faultbus.State, time.Second)
		start := time.Now()
		if _, err := b.State(ctx); err != nil || time.Since(start) != time.Second {
			t.Fatalf("delayed State: %v after %v", err, time.Since(start))
		}
		b.Hang(faultbus.Heartbeat, true)
		hctx, cancel := context.WithTimeout(ctx, time.Hour)
		defer cancel()
		if err := b.Heartbeat(hctx, "w", []byte("x")); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("hung Heartbeat = %v", err)
		}
		if b.Calls(faultbus.Append) != 6 || b.Calls(faultbus.Any) != 9 {
			t.Fatalf("calls: %d appends, %d in all", b.Calls(faultbus.Append), b.Calls(faultbus.Any))
		}
		cctx, stop := context.WithCancel(ctx)
		ctl := b.Control(cctx)
		b.DropControl(1)
		_ = b.Bus.SetState(ctx, []byte("1"))
		_ = b.Bus.SetState(ctx, []byte("2"))
		if m := <-ctl; string(m) != "2" {
			t.Fatalf("control %q, want the first dropped", m)
		}
		stop()
		for range ctl {
		}
	})
}
