package web

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/internal/membus"
	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// job returns a running collector holding a job of two workers, 20 ledger
// entries of 10⁶ samples each, and one garbage report.
func job(t *testing.T) *collector.Collector {
	t.Helper()
	bus := membus.New()
	c, err := collector.New(bus, collector.Config{Channel: "test", Logger: quiet, Kernel: mcpi.Generic})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	var st wire.State
	waitFor(t, func() bool { b, _ := bus.State(ctx); st, _ = wire.DecodeState(b); return st.Job != "" })
	seed, _ := wire.ParseSeed(st.Seed)
	var es []wire.Signed
	for seq := uint64(1); seq <= 20; seq++ {
		for _, w := range []string{"a", "b"} {
			n := uint64(1_000_000)
			h := mcpi.Batch{Key: mcpi.Key{Seed: seed, Worker: w, Seq: seq}, N: n}.Hits(mcpi.Generic)
			es = append(es, wire.Signed{Payload: wire.EncodeEntry(wire.Entry{Job: st.Job, Seed: st.Seed, Worker: w, Seq: seq, N: n, Hits: h, Seconds: 0.5, Kernel: "go"})})
		}
	}
	// An entry of 5e-324 s, an infinite rate: rejected, and nothing breaks.
	es = append(es, wire.Signed{Payload: wire.EncodeEntry(wire.Entry{Job: st.Job, Seed: st.Seed, Worker: "inf", Seq: 1, N: 4, Hits: 3, Seconds: 5e-324, Kernel: "go"})})
	for _, e := range es {
		w, _ := wire.DecodeEntry(e.Payload)
		if err := bus.Append(ctx, w.Worker, []wire.Signed{e}); err != nil {
			t.Fatal(err)
		}
	}
	_ = bus.PublishRaw(ctx, []byte("garbage"))
	waitFor(t, func() bool { s := c.Snapshot(); return s.N == mcpi.CountOf(40_000_000) && s.Rejected == 2 })
	return c
}

// waitFor polls cond: the collector has no event for "credited".
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 20s")
		}
		time.Sleep(time.Millisecond)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestEndpoints(t *testing.T) {
	c := job(t)
	srv := httptest.NewServer(Handler(c, quiet))
	defer srv.Close()
	if code, body := get(t, srv.URL+"/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	code, body := get(t, srv.URL+"/api/state")
	var s collector.Summary
	if err := json.Unmarshal([]byte(body), &s); code != 200 || err != nil || s.N != c.Summary().N || len(s.WorkerTable) != 2 {
		t.Errorf("/api/state: %d %v %.200s", code, err, body)
	}
	code, body = get(t, srv.URL+"/metrics")
	if code != 200 {
		t.Errorf("/metrics: %d", code)
	}
	for _, want := range []string{"picluster_pi_estimate 3.1", "picluster_workers_quarantined 0", `picluster_verified_entries_total{result="mismatch"} 0`, "picluster_pi_stderr", "picluster_samples_total 4e+07",
		`picluster_reports_total{reason="not_json",result="rejected"} 1`, `picluster_reports_total{reason="",result="accepted"} 40`,
		`picluster_workers{status="alive"} 2`, `picluster_worker_samples_per_second{worker="a"} 2e+06`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, body := get(t, srv.URL+"/"); code != 200 || !strings.Contains(body, "uPlot.iife.min.js") {
		t.Errorf("/: %d %.100s", code, body)
	}
	if code, _ := get(t, srv.URL+"/vendor/uplot/uPlot.iife.min.js"); code != 200 {
		t.Errorf("uPlot not served: %d", code)
	}
	resp, err := http.Post(srv.URL+"/api/state", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /api/state: %d, want 405: nothing is writable", resp.StatusCode)
	}
}

// An event stream sends the state at once and then every EventInterval,
// and a client that stops reading does not hold back another.
func TestEvents(t *testing.T) {
	c := job(t)
	srv := httptest.NewServer(Handler(c, quiet))
	defer srv.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stalled, err := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(stalled) // never read
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()

	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/events", nil)
	live, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Body.Close()
	if ct := live.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	sc := bufio.NewScanner(live.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	start, events := time.Now(), 0
	for events < 5 && sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "data: ") {
			var s collector.Summary
			if err := json.Unmarshal([]byte(line[6:]), &s); err != nil || s.N.IsZero() {
				t.Fatalf("event %q: %v", line, err)
			}
			events++
		}
	}
	if events < 5 {
		t.Fatalf("%d events, want 5: %v", events, sc.Err())
	}
	if d := time.Since(start); d < 4*EventInterval-50*time.Millisecond {
		t.Errorf("5 events in %v: more than 4 a second", d)
	}
}

func TestListenDefaultsToLoopback(t *testing.T) {
	l, err := Listen(":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if ip := l.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		t.Errorf("bound %v, want loopback", ip)
	}
	if _, err := Listen("nonsense"); err == nil {
		t.Error("a bad address was accepted")
	}
}

func TestServeShutsDownWithItsContext(t *testing.T) {
	l, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l, Handler(job(t), quiet)) }()
	if code, _ := get(t, "http://"+l.Addr().String()+"/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("server did not shut down")
	}
}

// The OWASP headers on every response, no directory listing, and on
// loopback no answer to a foreign Host (DNS rebinding).
func TestHardening(t *testing.T) {
	l, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l, Handler(job(t), quiet)) }()
	defer func() { cancel(); <-done }()
	base := "http://" + l.Addr().String()
	for _, path := range []string{"/", "/api/state", "/metrics", "/app.js"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h := resp.Header
		if resp.StatusCode != 200 || h.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") ||
			!strings.Contains(h.Get("Content-Security-Policy"), "default-src 'self'") || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: %d, headers %v", path, resp.StatusCode, h)
		}
	}
	for _, path := range []string{"/vendor/", "/vendor/uplot/"} {
		if code, body := get(t, base+path); code != 404 || strings.Contains(body, "uPlot") {
			t.Errorf("%s: %d %.100q, want 404 and no listing", path, code, body)
		}
	}
	for host, want := range map[string]int{"evil.example:80": 421, "localhost:1234": 200, "127.0.0.1": 200, "[::1]:8080": 200} {
		req, _ := http.NewRequest("GET", base+"/healthz", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %s: %d, want %d", host, resp.StatusCode, want)
		}
	}
}

// On loopback, the host --http names is a Host the server answers, as
// well as localhost and the address (here a name standing for one that
// resolves to 127.0.1.1, as a machine's own name often does).
func TestHostOfHTTPFlag(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = Serve(ctx, named{l, "myhost.test"}, Handler(job(t), quiet)) }()
	base := "http://" + l.Addr().String()
	for host, want := range map[string]int{"myhost.test:8080": 200, "myhost.test": 200, "otherhost.test": 421} {
		req, _ := http.NewRequest("GET", base+"/healthz", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %s: %d, want %d", host, resp.StatusCode, want)
		}
		if want == 421 && strings.Count(string(body), "127.0.0.1") != 1 {
			t.Errorf("Host %s: 421 %q: want each allowed host named once", host, body)
		}
	}
}
