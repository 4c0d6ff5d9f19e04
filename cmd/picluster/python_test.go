package main

import (
	"bufio"
	"encoding/json"
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
	col := start(t, "collector", "--redis", srv.URL(), "--json", "--interval", "100ms")
	col.waitOutput(t, "rebuilt the job from the bus", 20*time.Second)

	out, err := exec.Command(py, filepath.Join(examples, "worker.py"), "--redis", srv.URL(),
		"--batches", "3", "--n", "20000", "--seed", "1").CombinedOutput()
	if err != nil {
		t.Fatalf("worker.py: %v\n%s", err, out)
	}
	col.waitOutput(t, "N=60000 ", 20*time.Second)

	reader := exec.Command(py, filepath.Join(examples, "reader.py"), "--redis", srv.URL(), "--count", "2")
	stdout, _ := reader.StdoutPipe()
	if err := reader.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // let the reader subscribe; the totals hash covers what it misses
	w := start(t, "worker", "--redis", srv.URL(), "--id", "go-peer", "--batch", "100000", "--max-batches", "3", "--threads", "1")
	w.wait(t, 60*time.Second)

	var lines []map[string]any
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("reader.py printed %q: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	_ = reader.Wait()
	if len(lines) != 2 || lines[0]["worker"] != "go-peer" {
		t.Fatalf("reader.py read %v; want 2 reports of go-peer", lines)
	}

	_ = col.cmd.Process.Signal(syscall.SIGINT)
	col.wait(t, 20*time.Second)
	s := col.summary(t)
	if want := mcpi.CountOf(60000 + 300000); s.N != want || s.Anonymous != 3 {
		t.Errorf("collector: n %v anonymous batches %d; want %v and 3\nstderr: %s", s.N, s.Anonymous, want,
			strings.TrimSpace(col.stderr.String()))
	}
}
