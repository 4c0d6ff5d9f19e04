package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	stdpng "image/png"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/internal/bustest"
	"github.com/picluster/picluster/internal/redisbus"
	"github.com/picluster/picluster/internal/redistest"
	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds picluster once for the end-to-end tests.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "picluster-e2e")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "picluster")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// loadAvg returns the load averages of /proc/loadavg (1, 5 and 15
// min), or "unknown" where there is none.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if err != nil || len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// proc is a picluster process whose output the test reads.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func start(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(binary(t), args...), stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	p.cmd.Env = append(os.Environ(), "REDIS_URL=")
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("picluster %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), p.stdout, p.stderr)
		}
	})
	return p
}

// wait waits for the process to exit by itself and fails on a non-zero exit.
func (p *proc) wait(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		if err != nil {
			t.Fatalf("%s: %v\nstderr:\n%s", p.cmd.Args, err, p.stderr)
		}
	case <-time.After(within):
		t.Fatalf("%s did not exit within %v\nstderr:\n%s", p.cmd.Args, within, p.stderr)
	}
}

// waitOutput waits until the process's stderr contains s.
func (p *proc) waitOutput(t *testing.T, s string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(p.stderr.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q on stderr within %v:\n%s", s, within, p.stderr)
		}
		time.Sleep(10 * time.Millisecond) // polling another process's output
	}
}

func (p *proc) summary(t *testing.T) collector.Summary {
	t.Helper()
	var s collector.Summary
	if err := json.Unmarshal([]byte(p.stdout.String()), &s); err != nil {
		t.Fatalf("stdout is not one JSON summary: %v\n%s", err, p.stdout)
	}
	return s
}

// totals sums the entries of the ledger in Redis that a collector credits:
// those of the job in the state, from workers not quarantined.
func totals(t *testing.T, url string, opts ...string) (n, hits mcpi.Count, workers int) {
	t.Helper()
	channel := "pi_collector"
	if len(opts) > 0 {
		channel = opts[0]
	}
	st := jobState(t, url, channel)
	bus, err := redisbus.Open(url, channel, redisbus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	q, err := bus.Quarantined(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	seen := map[string]bool{} // an append retried after a lost reply may be in the ledger twice; it counts once
	for _, le := range bustest.Entries(t, bus) {
		e, err := wire.DecodeEntry(le.Payload)
		key := fmt.Sprintf("%s\x00%d", e.Worker, e.Seq)
		if err != nil || e.Worker != le.Worker || e.Job != st.Job || q[e.Worker] != nil || seen[key] {
			continue
		}
		seen[key] = true
		n, hits = n.Add(mcpi.CountOf(e.N)), hits.Add(mcpi.CountOf(e.Hits))
		ids[e.Worker] = true
	}
	return n, hits, len(ids)
}

func redisCLI(t *testing.T, srv *redistest.Server, args ...string) string {
	t.Helper()
	port := srv.Addr[strings.LastIndex(srv.Addr, ":")+1:]
	out, err := exec.Command("redis-cli", append([]string{"-p", port}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestClusterOverRedis: a collector and two worker processes over a real
// redis-server; the collector's N is exactly the ledger's sum plus a
// seed-style report, garbage is counted and survived; and collectors started
// late, or again after kill -9, find the same N in the checkpoint and the
// ledger.
func TestClusterOverRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	srv := redistest.Start(t)
	col := start(t, "collector", "--redis", srv.URL(), "--json", "--interval", "100ms")
	col.waitOutput(t, "job loaded from the ledger", 20*time.Second)

	var workers []*proc
	for i := range 2 {
		workers = append(workers, start(t, "worker", "--redis", srv.URL(), "--id", fmt.Sprint("w", i),
			"--threads", "1", "--batch", "3000017", "--max-batches", "4"))
	}
	for _, w := range workers {
		w.wait(t, 60*time.Second)
	}
	if got := redisCLI(t, srv, "PUBLISH", "pi_collector", "garbage"); got != "1" {
		t.Fatalf("PUBLISH reached %s subscribers, want the collector", got)
	}
	redisCLI(t, srv, "PUBLISH", "pi_collector", `{"n": -5, "pi_approx": 3.1}`)
	redisCLI(t, srv, "PUBLISH", "pi_collector", `{"n":18446744073709551615,"pi_approx":3.2}`) // one report to swamp the job: capped
	redisCLI(t, srv, "PUBLISH", "pi_collector", `{"n": 1000000, "pi_approx": 3.141592}`)
	// An infinite rate, keys in another case, a key twice: rejected by name,
	// and --json still prints the summary.
	redisCLI(t, srv, "PUBLISH", "pi_collector", `{"n":4,"pi_approx":3,"hits":3,"worker":"inf","seq":1,"total_n":4,"total_hits":3,"seconds":5e-324}`)
	redisCLI(t, srv, "PUBLISH", "pi_collector", `{"n":1000000,"pi_approx":3.2,"N":1,"PI_APPROX":4}`)
	redisCLI(t, srv, "PUBLISH", "pi_collector", `{"n":1000000,"pi_approx":3.2,"n":1}`)

	n, hits, nw := totals(t, srv.URL())
	if want := mcpi.CountOf(2 * 4 * 3000017); n != want || nw != 2 {
		t.Fatalf("Redis totals: %v samples from %d workers, want %v from 2", n, nw, want)
	}
	wantN := n.Add(mcpi.CountOf(1_000_000))
	col.waitOutput(t, fmt.Sprintf("N=%s ", wantN), 20*time.Second)
	col.waitOutput(t, "6 rejected", 20*time.Second)
	_ = col.cmd.Process.Signal(syscall.SIGINT)
	col.wait(t, 20*time.Second)
	s := col.summary(t)
	if s.N != wantN || s.Hits != hits.Add(mcpi.CountOf(785398)) || s.Rejected != 6 || s.AnonymousN != mcpi.CountOf(1_000_000) || s.StoppedBy != "signal" || s.Workers != 2 || s.Batches != 9 {
		t.Errorf("summary %+v; want n %v, hits %v, 6 rejected, 10⁶ anonymous, 2 workers, 9 batches, stopped by signal", s, wantN, hits.Add(mcpi.CountOf(785398)))
	}
	for _, reason := range []string{"not_json", "bad_n", "too_large", "bad_seconds", "folded_key", "duplicate_key"} {
		if s.RejectedBy[reason] != 1 {
			t.Errorf("rejected_by %v, want one %s", s.RejectedBy, reason)
		}
	}

	// A collector started after the workers finished rebuilds their totals.
	late := start(t, "collector", "--redis", srv.URL(), "--json", "--duration", "1s")
	late.wait(t, 20*time.Second)
	if s := late.summary(t); s.N != n || s.StoppedBy != "duration" {
		t.Errorf("late collector: n %v stopped by %q, want %v and duration", s.N, s.StoppedBy, n)
	}

	// Killed with SIGKILL and started again: the same N.
	killed := start(t, "collector", "--redis", srv.URL(), "--json")
	killed.waitOutput(t, "job loaded from the ledger", 20*time.Second)
	_ = killed.cmd.Process.Kill()
	again := start(t, "collector", "--redis", srv.URL(), "--json", "--duration", "1s")
	again.wait(t, 20*time.Second)
	if s := again.summary(t); s.N != n {
		t.Errorf("collector after kill -9: n %v, want %v", s.N, n)
	}
}

// TestRunInMemory is README's first command: no Redis, π within 5 SE.
func TestRunInMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	p := start(t, "run", "--duration", "2s", "--json")
	p.wait(t, 30*time.Second)
	s := p.summary(t)
	if s.N.IsZero() || s.StoppedBy != "duration" {
		t.Fatalf("summary %+v", s)
	}
	if z := math.Abs(float64(s.Pi)-math.Pi) / float64(s.StdErr); z > 5 {
		t.Errorf("π̂ = %v ± %v is %.1f SE from π", s.Pi, s.StdErr, z)
	}
}

func TestRunStopsAtTarget(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	png := filepath.Join(t.TempDir(), "p.png")
	p := start(t, "run", "--target-se", "5e-5", "--json", "--plot", png, "--batch", "20000000")
	p.wait(t, 60*time.Second)
	if s := p.summary(t); s.StoppedBy != "target" || float64(s.StdErr) > 5e-5 {
		t.Errorf("stopped by %q with SE %v, want target and ≤ 5e-5", s.StoppedBy, s.StdErr)
	}
	f, err := os.Open(png)
	if err != nil {
		t.Fatalf("no plot: %v", err)
	}
	defer f.Close()
	if img, err := stdpng.Decode(f); err != nil || img.Bounds().Dx() < 500 {
		t.Errorf("plot is not a readable PNG: %v", err)
	}
}

// A stratified run: the summary says so, the SE comes from at least
// collector.MinReplicates batches of K², and π is inside the t interval's
// reach.
func TestRunStratified(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	png := filepath.Join(t.TempDir(), "p.png")
	p := start(t, "run", "--estimator", "stratified", "--cells", "256", "--target-se", "1e-4", "--json", "--plot", png)
	p.wait(t, 60*time.Second)
	s := p.summary(t)
	if s.StoppedBy != "target" || s.Estimator != "stratified" || s.Stratified == nil || s.Stratified.Cells != 256 ||
		s.Stratified.Batches < collector.MinReplicates || float64(s.StdErr) > 1e-4 {
		t.Fatalf("stopped by %q, estimator %q, stratified %+v, SE %v", s.StoppedBy, s.Estimator, s.Stratified, s.StdErr)
	}
	if n, _ := s.N.Uint64(); n != s.Stratified.Batches*256*256 {
		t.Errorf("N = %d, want %d batches of 256²", n, s.Stratified.Batches)
	}
	if z := math.Abs(float64(s.Pi)-math.Pi) / float64(s.StdErr); z > 5 {
		t.Errorf("π̂ = %v ± %v is %.1f SE from π", s.Pi, s.StdErr, z)
	}
	if _, err := os.Stat(png); err != nil {
		t.Errorf("no plot: %v", err)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"worker"}, "no Redis"},
		{[]string{"fly"}, "unknown command"},
		{[]string{"run", "--kernel", "sse9"}, "unknown kernel"},
		{[]string{"run", "--seed", "x"}, "--seed"},
		{[]string{"run", "--estimator", "qmc"}, "--estimator"},
		{[]string{"run", "--estimator", "stratified", "--cells", "100"}, "power of two"},
		{[]string{"run", "--cells", "256"}, "only with --estimator stratified"},
		{[]string{"run", "--bogus"}, "unknown flag --bogus"},
	} {
		var out, errb bytes.Buffer
		err := run(context.Background(), tt.args, func(string) string { return "" }, &out, &errb)
		if err == nil || !strings.Contains(err.Error()+errb.String(), tt.want) {
			t.Errorf("%v: err %v, stderr %q; want %q", tt.args, err, errb.String(), tt.want)
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"worker", "-h"}, func(string) string { return "" }, &out, &out); err != nil || !strings.Contains(out.String(), "--max-batches") && !strings.Contains(out.String(), "-max-batches") {
		t.Errorf("worker -h: %v\n%s", err, out.String())
	}
}

// TestTargetStopsTheClusterOverRedis: a collector with a target and two
// workers with no limit of their own all exit by themselves once the target
// is reached; a worker started after that leaves at once.
func TestTargetStopsTheClusterOverRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	srv := redistest.Start(t)
	col := start(t, "collector", "--redis", srv.URL(), "--json", "--target-se", "2e-5")
	col.waitOutput(t, "job loaded from the ledger", 20*time.Second)
	w1 := start(t, "worker", "--redis", srv.URL(), "--threads", "1", "--batch-time", "200ms")
	w2 := start(t, "worker", "--redis", srv.URL(), "--threads", "1", "--batch-time", "200ms")
	col.wait(t, 120*time.Second)
	if s := col.summary(t); s.StoppedBy != "target" || float64(s.StdErr) > 2e-5 {
		t.Errorf("collector: stopped by %q with SE %v", s.StoppedBy, s.StdErr)
	}
	w1.wait(t, 20*time.Second)
	w2.wait(t, 20*time.Second)
	for _, w := range []*proc{w1, w2} {
		if !strings.Contains(w.stderr.String(), "reason=\"job done\"") {
			t.Errorf("worker did not stop for the job: %s", w.stderr)
		}
	}
	late := start(t, "worker", "--redis", srv.URL(), "--threads", "1")
	late.wait(t, 10*time.Second)
	if !strings.Contains(late.stderr.String(), "already done") {
		t.Errorf("late worker: %s", late.stderr)
	}
}

// TestRunServesHTTP: picluster run --http on an ephemeral port serves every
// endpoint, bound to loopback, while it runs.
func TestRunServesHTTP(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	p := start(t, "run", "--http", "127.0.0.1:0", "--duration", "6s", "--json", "--batch-time", "100ms")
	p.waitOutput(t, "dashboard on http://", 20*time.Second)
	out := p.stderr.String()
	addr := strings.Fields(out[strings.Index(out, "dashboard on http://")+len("dashboard on http://"):])[0]
	addr = strings.TrimSuffix(addr, "/")
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("bound %s, want loopback", addr)
	}
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for { // the first entries in: polling another process
		resp, err := http.Get(base + "/api/state")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), `"pi":3.1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no estimate within 30s: %.300s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, tt := range []struct{ path, want string }{
		{"/healthz", "ok"},
		{"/api/state", `"pi":3.14`},
		{"/metrics", "picluster_pi_estimate 3.14"},
		{"/", "<title>picluster</title>"},
	} {
		resp, err := http.Get(base + tt.path)
		if err != nil {
			t.Fatalf("%s: %v", tt.path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), tt.want) {
			t.Errorf("%s: %d, body lacks %q: %.200s", tt.path, resp.StatusCode, tt.want, b)
		}
	}
	resp, err := http.Get(base + "/api/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	last, events := time.Now(), 0
	for events < 4 && sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data: ") {
			if gap := time.Since(last); gap > 5*time.Second { // 4 a second when the machine is not loaded
				t.Errorf("%v between events: the stream stalled", gap)
			}
			last = time.Now()
			events++
		}
	}
	if events < 4 {
		t.Fatalf("%d events", events)
	}
	p.wait(t, 30*time.Second)
}
