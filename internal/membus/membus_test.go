package membus_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/picluster/picluster/internal/bustest"
	"github.com/picluster/picluster/internal/membus"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	jobs := map[string]*membus.Bus{}
	bustest.Run(t, func(t *testing.T, channel string) bustest.Bus {
		if jobs[t.Name()+channel] == nil {
			jobs[t.Name()+channel] = membus.New()
		}
		return jobs[t.Name()+channel]
	})
}

// A subscriber that falls behind loses messages, then is told to rebuild.
func TestSlowSubscriberIsToldToRebuild(t *testing.T) {
	bus := membus.New()
	ctx := t.Context()
	msgs := bus.Subscribe(ctx)
	bustest.Subscribed(t, msgs)
	for range membus.Buffer + 10 {
		_ = bus.Publish(ctx, "w", []byte("r"))
	}
	for range membus.Buffer {
		if m := <-msgs; m.Subscribed {
			t.Fatal("marker before the buffer drained")
		}
	}
	_ = bus.Publish(ctx, "w", []byte("after"))
	if m := <-msgs; !m.Subscribed {
		t.Fatalf("got %+v, want the Subscribed marker after a loss", m)
	}
	if m := <-msgs; string(m.Payload) != "after" {
		t.Fatalf("got %+v, want the next report", m)
	}
}
