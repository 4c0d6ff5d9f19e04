package membus_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/picluster/picluster/internal/bustest"
	"github.com/picluster/picluster/internal/membus"
	"github.com/picluster/picluster/internal/wire"
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

// A subscriber that falls behind loses messages, then is told it did.
func TestSlowSubscriberIsToldItLost(t *testing.T) {
	bus := membus.New()
	ctx := t.Context()
	msgs := bus.Subscribe(ctx)
	bustest.Subscribed(t, msgs)
	for range membus.Buffer + 10 {
		_ = bus.PublishRaw(ctx, []byte("r"))
	}
	for range membus.Buffer {
		if m := <-msgs; m.Kind == wire.KindSubscribed {
			t.Fatal("marker before the buffer drained")
		}
	}
	_ = bus.PublishRaw(ctx, []byte("after"))
	if m := <-msgs; m.Kind != wire.KindSubscribed {
		t.Fatalf("got %+v, want the Subscribed marker after a loss", m)
	}
	if m := <-msgs; string(m.Payload) != "after" {
		t.Fatalf("got %+v, want the next report", m)
	}
}
