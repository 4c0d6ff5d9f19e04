package redisbus_test

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/picluster/picluster/internal/backoff"
	"github.com/picluster/picluster/internal/bustest"
	"github.com/picluster/picluster/internal/redisbus"
	"github.com/picluster/picluster/internal/redistest"
	"github.com/picluster/picluster/internal/wire"
)

// events is a slog handler that sends every record's message on a channel.
type events chan string

func (e events) Enabled(context.Context, slog.Level) bool { return true }
func (e events) Handle(_ context.Context, r slog.Record) error {
	select {
	case e <- r.Message:
	default:
	}
	return nil
}
func (e events) WithAttrs([]slog.Attr) slog.Handler { return e }
func (e events) WithGroup(string) slog.Handler      { return e }

// waitFor waits for a log message containing want, or fails after
// bustest.Timeout.
func waitFor(t *testing.T, ev events, want string) {
	t.Helper()
	timer := time.NewTimer(bustest.Timeout)
	defer timer.Stop()
	for {
		select {
		case m := <-ev:
			if strings.Contains(m, want) {
				return
			}
		case <-timer.C:
			t.Fatalf("no log %q within %v", want, bustest.Timeout)
		}
	}
}

// A frozen server (SIGSTOP) leaves the subscription's connection open and
// silent. Unanswered pings declare it dead; the subscription is made again
// on a new connection, which the server answers once it wakes: a second
// Subscribed marker. Without the ping limit the old connection would simply
// resume and no marker would come.
func TestSubscriptionPingLimit(t *testing.T) {
	srv := redistest.Start(t)
	ev := make(events, 100)
	bus, err := redisbus.Open(srv.URL(), "pings", redisbus.Options{Log: slog.New(ev),
		PingInterval: 20 * time.Millisecond, MaxPingsOutstanding: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	msgs := bus.Subscribe(ctx)
	bustest.Subscribed(t, msgs)
	srv.Pause()
	waitFor(t, ev, "subscription silent")
	srv.Resume()
	bustest.Subscribed(t, msgs)
	if err := bus.PublishRaw(ctx, []byte("after")); err != nil {
		t.Fatal(err)
	}
	if got := string(bustest.Receive(t, msgs)); got != "after" {
		t.Fatalf("got %q", got)
	}
	cancel()
	for range msgs { // the subscription ends with ctx: no goroutine left for goleak
	}
}

// A read of the ledger on a frozen server fails with a transient error
// once the read timeout has passed, and the next read, once the server is
// back, works on a fresh connection.
func TestReadFrozenServer(t *testing.T) {
	srv := redistest.Start(t)
	bus, err := redisbus.Open(srv.URL(), "xread", redisbus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	from := []wire.Cursor{{Worker: "w"}}
	if _, err := bus.ReadLedgers(t.Context(), from, 10); err != nil {
		t.Fatal(err)
	}
	srv.Pause()
	_, err = bus.ReadLedgers(t.Context(), from, 10)
	srv.Resume()
	if err == nil || backoff.IsPermanent(err) {
		t.Fatalf("ReadLedgers on a frozen server = %v, want a transient error", err)
	}
	if _, err := bus.ReadLedgers(t.Context(), from, 10); err != nil {
		t.Fatalf("after the server woke: %v", err)
	}
}

// Errors that no retry can fix are marked permanent and say what to fix;
// a refused connection is not.
func TestPermanentErrors(t *testing.T) {
	acl := filepath.Join(t.TempDir(), "users.acl")
	rules := "user default on >sesame ~* &* +@all\nuser weak on >weakpass ~other:* -@all +ping\n"
	if err := os.WriteFile(acl, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := redistest.StartWith(t, redistest.Options{Args: []string{"--aclfile", acl}})
	tlsSrv := redistest.StartWith(t, redistest.Options{TLS: redistest.NewTLS(t)})
	otherCA := redistest.NewTLS(t) // signed nothing the server has
	down := redistest.Start(t)
	down.Stop()
	host := srv.Addr
	for _, tt := range []struct {
		name, url string
		tls       *redisbus.TLSFiles
		want      string // in the message; "" for a transient error
	}{
		{"WRONGPASS", "redis://default:wrong@" + host, nil, "WRONGPASS"},
		{"NOAUTH", "redis://" + host, nil, "NOAUTH"},
		{"NOPERM", "redis://weak:weakpass@" + host, nil, "NOPERM"},
		{"bad DB", "redis://default:sesame@" + host + "/99", nil, "no such database"},
		{"bad host", "redis://no-such-host.invalid:6379", nil, "does not resolve"},
		{"bad CA", "rediss://" + tlsSrv.Addr, &redisbus.TLSFiles{CA: otherCA.CA}, "TLS certificate failed verification"},
		{"refused", down.URL(), nil, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bus, err := redisbus.Open(tt.url, "perm", redisbus.Options{TLS: tt.tls})
			if err != nil {
				t.Fatal(err)
			}
			defer bus.Close()
			_, err = bus.State(t.Context())
			if err == nil {
				t.Fatal("State succeeded")
			}
			if got := backoff.IsPermanent(err); got != (tt.want != "") {
				t.Fatalf("IsPermanent(%v) = %v, want %v", err, got, tt.want != "")
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q: want one line containing %q", err, tt.want)
			}
			t.Logf("%s", err)
		})
	}
}

// A ledger whose last ID was set to the largest possible takes no entry
// any more: the append's error is permanent and says to reset the job.
func TestExhaustedLedgerIsPermanent(t *testing.T) {
	srv := redistest.Start(t)
	bus, err := redisbus.Open(srv.URL(), "exhausted", redisbus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	port := srv.Addr[strings.LastIndex(srv.Addr, ":")+1:]
	if out, err := exec.Command("redis-cli", "-p", port, "XADD", "{exhausted}:ledger:w", "18446744073709551615-18446744073709551615", "e", "x").CombinedOutput(); err != nil {
		t.Fatalf("redis-cli: %v %s", err, out)
	}
	err = bus.Append(t.Context(), "w", []wire.Signed{{Payload: []byte("e")}})
	if !backoff.IsPermanent(err) || !strings.Contains(err.Error(), "reset the job") {
		t.Errorf("Append to an exhausted ledger: %v (permanent %v), want a permanent error that says to reset", err, backoff.IsPermanent(err))
	}
}
