package redisbus_test

import (
	"fmt"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/picluster/picluster/internal/backoff"
	"github.com/picluster/picluster/internal/bustest"
	"github.com/picluster/picluster/internal/redisbus"
	"github.com/picluster/picluster/internal/redistest"
)

// go-redis, after a failed dial, retries in a goroutine that sleeps a second
// between tries and ends at its next wake once the client is closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}

func open(t *testing.T, srv *redistest.Server, channel string) *redisbus.Bus {
	t.Helper()
	bus, err := redisbus.Open(srv.URL(), channel, redisbus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bus.Close() })
	return bus
}

func TestConformance(t *testing.T) {
	srv := redistest.Start(t)
	n := 0
	bustest.Run(t, func(t *testing.T, channel string) bustest.Bus {
		n++ // every bus gets its own job on the shared server
		return open(t, srv, fmt.Sprintf("%s-%d", channel, n))
	})
}

// After Redis restarts, a subscription comes back by itself, announces it
// with a Subscribed marker, and delivers again.
func TestSubscriptionSurvivesRestart(t *testing.T) {
	srv := redistest.Start(t)
	bus := open(t, srv, "restart")
	ctx := t.Context()
	msgs := bus.Subscribe(ctx)
	bustest.Subscribed(t, msgs)
	if err := bus.PublishRaw(ctx, []byte("before")); err != nil {
		t.Fatal(err)
	}
	if got := string(bustest.Receive(t, msgs)); got != "before" {
		t.Fatalf("got %q", got)
	}
	srv.Restart()
	bustest.Subscribed(t, msgs)
	if err := bus.PublishRaw(ctx, []byte("after")); err != nil {
		t.Fatal(err)
	}
	if got := string(bustest.Receive(t, msgs)); got != "after" {
		t.Fatalf("got %q", got)
	}
}

func TestValidChannel(t *testing.T) {
	for _, tt := range []struct {
		channel string
		ok      bool
	}{{"pi_collector", true}, {"", false}, {"a{b}", false}, {"a b", false}} {
		if err := redisbus.ValidChannel(tt.channel); (err == nil) != tt.ok {
			t.Errorf("ValidChannel(%q) = %v, want ok=%v", tt.channel, err, tt.ok)
		}
	}
}

// A cluster URL to a server that is no cluster node is a permanent error
// that says what to give instead; so is SCAN's glob in a channel name
// taken literally.
func TestSingleServer(t *testing.T) {
	srv := redistest.Start(t)
	t.Run("ClusterURLIsPermanent", func(t *testing.T) {
		bus, err := redisbus.Open("redis+cluster://"+srv.Addr, "job", redisbus.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer bus.Close()
		err = bus.SetState(t.Context(), []byte("x"))
		if !backoff.IsPermanent(err) || !strings.Contains(err.Error(), "not a cluster") {
			t.Fatalf("redis+cluster:// to a single server: %v; want a permanent error", err)
		}
	})
	t.Run("ScanTakesTheChannelLiterally", func(t *testing.T) {
		for _, k := range []string{"{s*[1]}:ledger:1", "{sZ1}:ledger:2"} {
			if _, err := redistest.Cli(srv, "XADD", k, "*", "e", "x"); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := redistest.Cli(srv, "SET", "{s*[1]}:ledger:3", "not a stream"); err != nil {
			t.Fatal(err)
		}
		got, _, err := open(t, srv, "s*[1]").ScanLedgers(t.Context(), 0)
		if err != nil || len(got) != 1 || got[0] != "1" {
			t.Fatalf("ScanLedgers of job s*[1] found %q, %v; want worker 1 alone", got, err)
		}
	})
}
