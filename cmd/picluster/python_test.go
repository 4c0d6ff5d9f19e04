package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/picluster/picluster/internal/redistest"
	"github.com/picluster/picluster/mcpi"
)

// pythonWithRedis returns a python3 that can import redis-py. Without one
// the test skips, except under CI, which installs Debian's python3-redis.
func pythonWithRedis(t *testing.T) string {
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(py, "-c", "import redis").Run() == nil {
			return py
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no python3 with redis-py, and CI is set (apt-get install python3-redis)")
	}
	t.Skip("no python3 with redis-py: skipping the interoperability test (apt-get install python3-redis)")
	return ""
}

// TestPythonPeers: the examples in examples/python speak our protocol. The
// Python worker's seed-style reports count in a Go collector, and the Python
// reader reads a Go worker's reports, live and from the totals hash.
func TestPythonPeers(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	py := pythonWithRedis(t)
	srv := redistest.Start(t)
	examples := filepath.Join("..", "..", "examples", "python")
	// Only anonymous workers at first: --anon-share 1 lets them hold all of N.
	col := start(t, "collector", "--redis", srv.URL(), "--json", "--interval", "100ms", "--anon-share", "1")
	col.waitOutput(t, "job loaded from the ledger", 20*time.Second)

	out, err := exec.Command(py, filepath.Join(examples, "worker.py"), "--redis", srv.URL(),
		"--batches", "3", "--n", "20000", "--seed", "1").CombinedOutput()
	if err != nil {
		t.Fatalf("worker.py: %v\n%s", err, out)
	}
	col.waitOutput(t, "N=60000 ", 20*time.Second)

	// A reader listening while a Go worker runs receives its reports: every
	// batch, in order.
	live := readPython(t, py, filepath.Join(examples, "reader.py"), "--redis", srv.URL(), "--count", "1")
	w := start(t, "worker", "--redis", srv.URL(), "--id", "go-peer", "--batch", "100000", "--max-batches", "3", "--threads", "1")
	w.wait(t, 60*time.Second)
	got := collect(live)
	if len(got) != 1 || got[0]["worker"] != "go-peer" || got[0]["n"] != 100000.0 || got[0]["seq"] != 1.0 {
		t.Fatalf("live reader.py read %v; want one report of go-peer", got)
	}
	// A reader started later reads the worker's entries from the ledger.
	later := readPython(t, py, filepath.Join(examples, "reader.py"), "--redis", srv.URL(), "--count", "0")
	got = collect(later)
	if len(got) != 1 || got[0]["ledger_n"] != 300000.0 {
		t.Fatalf("later reader.py read %v; want the ledger, 300000 samples", got)
	}

	_ = col.cmd.Process.Signal(syscall.SIGINT)
	col.wait(t, 20*time.Second)
	s := col.summary(t)
	if want := mcpi.CountOf(60000 + 300000); s.N != want || s.Anonymous != 3 {
		t.Errorf("collector: n %v anonymous batches %d; want %v and 3\nstderr: %s", s.N, s.Anonymous, want,
			strings.TrimSpace(col.stderr.String()))
	}
}

// readPython starts a reader.py and returns its JSON lines after the first,
// which it waits for: the line that says it is subscribed.
func readPython(t *testing.T, py string, args ...string) <-chan map[string]any {
	t.Helper()
	reader := exec.Command(py, args...)
	stdout, _ := reader.StdoutPipe()
	reader.Stderr = os.Stderr
	if err := reader.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reader.Process.Kill(); _ = reader.Wait() })
	lines := make(chan map[string]any, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				m = map[string]any{"unparsable": sc.Text()}
			}
			lines <- m
		}
	}()
	select {
	case m := <-lines:
		if m["subscribed"] != "pi_collector" {
			t.Fatalf("reader.py first printed %v", m)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("reader.py did not subscribe within 30s")
	}
	return lines
}

// collect reads lines until the reader exits.
func collect(lines <-chan map[string]any) []map[string]any {
	var got []map[string]any
	for m := range lines {
		got = append(got, m)
	}
	return got
}

// TestPythonReaderSumsExactly: a seed-style reader that sums n over every
// report on the channel, in a run without faults, gets exactly the
// collector's N: workers publish every batch, and the collector credits
// every batch.
func TestPythonReaderSumsExactly(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	py := pythonWithRedis(t)
	srv := redistest.Start(t)
	reader := readPython(t, py, filepath.Join("..", "..", "examples", "python", "reader.py"), "--redis", srv.URL(), "--sum", "12")
	col := start(t, "collector", "--redis", srv.URL(), "--json", "--interval", "100ms")
	col.waitOutput(t, "job loaded from the ledger", 20*time.Second)
	var ws []*proc
	for i := range 3 {
		ws = append(ws, start(t, "worker", "--redis", srv.URL(), "--id", fmt.Sprint("sum", i), "--threads", "1",
			"--batch-time", "20ms", "--max-batches", "40"))
	}
	for _, w := range ws {
		w.wait(t, 60*time.Second)
	}
	n, _, _ := totals(t, srv.URL())
	col.waitOutput(t, fmt.Sprintf("N=%s ", n), 20*time.Second)
	_ = col.cmd.Process.Signal(syscall.SIGINT)
	col.wait(t, 20*time.Second)
	s := col.summary(t)
	got := collect(reader)
	if len(got) != 1 {
		t.Fatalf("reader.py printed %v", got)
	}
	t.Logf("reader: %v; collector: N %v over %d batches", got[0], s.N, s.Batches)
	if sum := got[0]["sum_n"].(float64); s.N != n || mcpi.CountOf(uint64(sum)) != s.N || got[0]["reports"] != 120.0 {
		t.Errorf("reader summed %v over %v reports, collector N %v, ledger %v: want all equal and 120 reports", sum, got[0]["reports"], s.N, n)
	}
}
