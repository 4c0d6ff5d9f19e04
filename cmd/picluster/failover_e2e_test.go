package main

import (
	"fmt"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/picluster/picluster/internal/redisbus"
	"github.com/picluster/picluster/internal/redistest"
	"github.com/picluster/picluster/mcpi"
)

// failoverJob runs a collector and three workers against url, kills the
// master that holds the job (master returns it) with SIGKILL once entries
// flow, lets promoted wait until its replica serves the job, and checks
// that the job finishes with N exact: every batch of every worker in the
// ledger, and the collector's N and hits equal to the ledger's sums.
func failoverJob(t *testing.T, url string, master func() *redistest.Server, promoted func()) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	col := start(t, "collector", "--redis", url, "--json", "--interval", "100ms")
	col.waitOutput(t, "job loaded from the ledger", 20*time.Second)
	const workers, batches = 3, 100
	var ws []*proc
	for i := range workers {
		ws = append(ws, start(t, "worker", "--redis", url, "--id", fmt.Sprint("w", i), "--threads", "1",
			"--batch-time", "30ms", "--max-batches", strconv.Itoa(batches)))
	}
	m := master()
	ledger := redisbus.KeysOf("pi_collector").Ledger + "w0"
	deadline := time.Now().Add(30 * time.Second)
	for { // mid-job: some entries in, most to come
		out, _ := redistest.Cli(m, "XLEN", ledger)
		if n, _ := strconv.Atoi(out); n >= 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ledger holds %s entries after 30s", out)
		}
		time.Sleep(20 * time.Millisecond) // polling a server
	}
	m.Stop() // SIGKILL
	t0 := time.Now()
	promoted()
	t.Logf("replica promoted %v after the kill (load average %s)", time.Since(t0).Round(time.Millisecond), loadAvg())
	for _, w := range ws {
		w.wait(t, 120*time.Second)
	}
	n, hits, nw := totals(t, url)
	if nw != workers {
		t.Fatalf("the ledger has entries of %d workers, want %d", nw, workers)
	}
	col.waitOutput(t, fmt.Sprintf("N=%s ", n), 30*time.Second)
	_ = col.cmd.Process.Signal(syscall.SIGINT)
	col.wait(t, 20*time.Second)
	s := col.summary(t)
	t.Logf("ledger n %v hits %v; collector n %v hits %v, %d batches, gaps %d, duplicate appends %d",
		n, hits, s.N, s.Hits, s.Batches, s.Gaps, s.Duplicates)
	if s.N != n || s.Hits != hits || s.Gaps != 0 || s.Batches != workers*batches {
		t.Errorf("collector n %v hits %v gaps %d batches %d; want the ledger's %v and %v, no gap, %d batches",
			s.N, s.Hits, s.Gaps, s.Batches, n, hits, workers*batches)
	}
	if n.IsZero() || s.N == mcpi.CountOf(0) {
		t.Error("empty job")
	}
}

// TestClusterFailoverExactN: a job on a Redis Cluster of 3 masters with a
// replica each; the master of the job's slot is killed mid-job (SIGKILL),
// its replica is promoted, and the job finishes with N exact.
func TestClusterFailoverExactN(t *testing.T) {
	c := redistest.StartCluster(t, 3, 1)
	failoverJob(t, c.URL(), func() *redistest.Server { return c.MasterOf("{pi_collector}") },
		func() { c.WaitHealthy(3, 30*time.Second) })
}

// TestSentinelFailoverExactN: the same through Sentinel, the master killed
// and the replica promoted by the sentinels.
func TestSentinelFailoverExactN(t *testing.T) {
	s := redistest.StartSentinel(t)
	failoverJob(t, s.URL(), func() *redistest.Server { return s.Master },
		func() { s.WaitFailover(30 * time.Second) })
}
