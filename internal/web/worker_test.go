package web

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/picluster/picluster/internal/buildinfo"
	"github.com/picluster/picluster/internal/membus"
	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
	"github.com/picluster/picluster/worker"
)

// lint fails t if promlint finds a problem in the exposition body.
func lint(t *testing.T, what, body string) {
	t.Helper()
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("%s: promlint cannot parse the exposition: %v", what, err)
	}
	for _, p := range problems {
		t.Errorf("%s: promlint: %s: %s", what, p.Metric, p.Text)
	}
}

// standard are the series every picluster /metrics has besides its own.
func standard(kernel string) []string {
	return []string{
		fmt.Sprintf(`picluster_build_info{goversion=%q,kernel=%q,version=%q} 1`, runtime.Version(), kernel, buildinfo.Read().Version),
		"go_goroutines ", "go_memstats_heap_alloc_bytes ", "go_gc_duration_seconds",
		"process_resident_memory_bytes ", "process_cpu_seconds_total ", "process_open_fds ",
	}
}

// A real worker on the in-memory bus, scraped while it samples and after
// it stopped.
func TestWorkerEndpoints(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the process collector's series are Linux's")
	}
	bus := membus.New()
	_ = bus.SetState(t.Context(), wire.EncodeState(wire.State{Status: wire.Running, Job: "00000000000000a1", Seed: "0000000000000003", MaxN: wire.MaxEntryN}))
	w, err := worker.New(bus, worker.Config{ID: "scraped", Threads: 2, Batch: 64 * mcpi.Lanes,
		Kernel: mcpi.Generic, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(WorkerHandler(w))
	defer srv.Close()
	if code, body := get(t, srv.URL+"/healthz"); code != 200 || body != "ok starting\n" {
		t.Errorf("/healthz before Run: %d %q, want 200 ok starting", code, body)
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for w.Stats().Published < 3 { // the worker's own progress is the event we wait for
		if time.Now().After(deadline) {
			t.Fatalf("the worker published %d reports in 10s", w.Stats().Published)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if code, body := get(t, srv.URL+"/healthz"); code != 200 || body != "ok sampling\n" {
		t.Errorf("/healthz while sampling: %d %q, want 200 ok sampling", code, body)
	}
	code, body := get(t, srv.URL+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics while sampling: %d", code)
	}
	lint(t, "worker /metrics", body)
	for _, want := range append(standard("go"), `picluster_worker_info{kernel="go",worker="scraped"} 1`,
		"picluster_worker_threads 2", "picluster_worker_sampling 1", "picluster_worker_publish_lag_seconds ",
		"picluster_worker_queue_depth ", "picluster_worker_last_batch_samples_per_second ") {
		if !strings.Contains(body, want) {
			t.Errorf("worker /metrics lacks %q", want)
		}
	}
	t.Logf("worker /metrics while sampling, its own series:\n%s", ours(body))

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s := w.Stats()
	_, body = get(t, srv.URL+"/metrics")
	for _, want := range []string{
		fmt.Sprintf("picluster_worker_samples_total %g\n", float64(s.Samples)),
		fmt.Sprintf("picluster_worker_batches_total %d\n", s.Batches),
		fmt.Sprintf("picluster_worker_seq %d\n", s.Seq),
		"picluster_worker_queue_depth 0\n", "picluster_worker_sampling 0\n", "picluster_worker_publish_errors_total 0\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("worker /metrics after Run lacks %q (stats %+v)", want, s)
		}
	}
	if s.Samples != s.Batches*64*mcpi.Lanes || s.Batches < 3 {
		t.Errorf("stats %+v: want at least 3 batches of %d samples", s, 64*mcpi.Lanes)
	}
	if code, body := get(t, srv.URL+"/healthz"); code != http.StatusServiceUnavailable || body != "down stopped\n" {
		t.Errorf("/healthz after Run: %d %q, want 503 down stopped", code, body)
	}
}

func TestCollectorMetricsHaveRuntimeAndBuildInfo(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the process collector's series are Linux's")
	}
	srv := httptest.NewServer(Handler(job(t), quiet))
	defer srv.Close()
	code, body := get(t, srv.URL+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	lint(t, "collector /metrics", body)
	for _, want := range standard(mcpi.Pick().Name()) {
		if !strings.Contains(body, want) {
			t.Errorf("collector /metrics lacks %q", want)
		}
	}
}

// ours returns the picluster_ lines of an exposition.
func ours(body string) string {
	return strings.Join(regexp.MustCompile(`(?m)^(# (HELP|TYPE) )?picluster_.*$`).FindAllString(body, -1), "\n")
}
