package main

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/picluster/picluster/internal/redistest"
)

// TestWorkerServesMetrics: picluster worker --http on an ephemeral port,
// over a real Redis, scraped like Prometheus and a kubelet would.
func TestWorkerServesMetrics(t *testing.T) {
	srv := redistest.Start(t)
	col := start(t, "collector", "--redis", srv.URL(), "--json") // creates the job the worker waits for
	col.waitOutput(t, "job loaded from the ledger", 20*time.Second)
	w := start(t, "worker", "--redis", srv.URL(), "--http", "127.0.0.1:0", "--threads", "1", "--batch", "1048576", "--id", "scraped")
	w.waitOutput(t, "worker metrics on http://", 10*time.Second)
	addr := regexp.MustCompile(`worker metrics on http://(\S+)/metrics`).FindStringSubmatch(w.stderr.String())[1]

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	published := regexp.MustCompile(`(?m)^picluster_worker_reports_published_total (\S+)$`)
	var body string
	deadline := time.Now().Add(20 * time.Second)
	for {
		var code int
		code, body = get("/metrics")
		if code != 200 {
			t.Fatalf("/metrics: %d\n%s", code, body)
		}
		if m := published.FindStringSubmatch(body); m != nil {
			if n, _ := strconv.ParseFloat(m[1], 64); n >= 2 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than 2 reports published in 20s:\n%s", body)
		}
		time.Sleep(50 * time.Millisecond) // polling another process
	}
	if code, h := get("/healthz"); code != 200 || h != "ok sampling\n" {
		t.Errorf("/healthz: %d %q, want 200 ok sampling", code, h)
	}
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for _, want := range []string{`picluster_worker_info{kernel="`, `worker="scraped"} 1`, "picluster_worker_threads 1",
		"picluster_build_info{", "go_goroutines ", "process_resident_memory_bytes "} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	t.Logf("scraped http://%s/metrics: promlint clean, %d lines; /healthz ok sampling", addr, strings.Count(body, "\n"))
}
