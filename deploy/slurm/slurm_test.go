// Package slurm_test runs deploy/slurm's batch scripts on a real single-node
// Slurm cluster that the test starts itself: munged, slurmctld and slurmd on
// localhost, with proctrack/linuxproc and task/none, from a temporary
// directory and on free ports, so it disturbs no Slurm already installed.
//
// It needs root (slurmd launches jobs as their user) and Debian's slurm-wlm
// and munge (apt-get install slurm-wlm munge). Without them it skips with a
// message, unless CI is set: then it fails.
package slurm_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/internal/redistest"
	"github.com/picluster/picluster/mcpi"
)

// TestPiclusterSbatch submits picluster.sbatch (a collector and two workers
// via srun), waits for the collector to reach its target, and checks its N
// and hits exactly: every batch of every worker is replayed here. Once with
// REDIS_URL given, once with the redis-server the job starts itself.
func TestPiclusterSbatch(t *testing.T) {
	sl := startSlurm(t)
	redis := redistest.Start(t)
	bin := buildPicluster(t, t.TempDir())
	const (
		batch    = 1 << 22
		seed     = 42
		targetSE = 5e-5
	)
	for _, tt := range []struct {
		name  string
		redis []string
	}{
		{"REDIS_URL", []string{"REDIS_URL=" + redis.URL()}},
		{"own redis-server", []string{"REDIS_URL=", "PICLUSTER_REDIS_PORT=" + fmt.Sprint(freePort(t))}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			result := filepath.Join(dir, "result.json")
			submitted := time.Now()
			id := sl.sbatch(t, dir, append(tt.redis, "PICLUSTER="+bin, "PICLUSTER_RESULT="+result,
				fmt.Sprintf("PICLUSTER_WORKER_FLAGS=--batch %d", batch)),
				"--ntasks-per-node=2", "picluster.sbatch", "--target-se", fmt.Sprint(targetSE), "--seed", fmt.Sprint(seed))
			t.Logf("submitted job %s", id)

			s := waitSummary(t, sl, id, result, 3*time.Minute)
			elapsed := time.Since(submitted)
			sl.cancel(t, id)

			checkExact(t, s, targetSE, seed, batch, "slurm-"+id+"-")
			if !t.Failed() {
				t.Logf("job %s: target SE %g reached with exactly N = %v samples (%d batches of %d), hits %v replayed exactly, from %d workers, π = %.9f ± %.2g; collector %.2fs, %.1fs from sbatch to the summary",
					id, targetSE, s.N, s.Batches, batch, s.Hits, len(s.WorkerTable), float64(s.Pi), float64(s.StdErr), s.Seconds, elapsed.Seconds())
			}
		})
	}
}

// TestWorkersArray submits workers.sbatch as a job array of two workers
// reporting to a collector started here, as on a login node.
func TestWorkersArray(t *testing.T) {
	sl := startSlurm(t)
	redis := redistest.Start(t)
	dir := t.TempDir()
	bin := buildPicluster(t, dir)

	const (
		batch    = 1 << 21
		seed     = 7
		targetSE = 1e-4
	)
	col := exec.Command(bin, "collector", "--redis", redis.URL(), "--channel", "pi_array", "--target-se", fmt.Sprint(targetSE), "--seed", fmt.Sprint(seed), "--json")
	var stdout, stderr strings.Builder
	col.Stdout, col.Stderr = &stdout, &stderr
	if err := col.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- col.Wait() }()
	t.Cleanup(func() {
		_ = col.Process.Kill()
		<-exited
	})
	submitted := time.Now()
	id := sl.sbatch(t, dir, []string{"PICLUSTER=" + bin, "REDIS_URL=" + redis.URL()},
		"--array=0-1", "workers.sbatch", "--channel", "pi_array", "--batch", fmt.Sprint(batch))
	t.Logf("submitted array job %s", id)
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			sl.dump(t, id)
			t.Fatalf("collector: %v\n%s", err, stderr.String())
		}
	case <-time.After(3 * time.Minute):
		sl.dump(t, id)
		t.Fatalf("the collector did not reach its target in 3 minutes:\n%s", stderr.String())
	}
	elapsed := time.Since(submitted)
	// A task that starts after the target finds the job done and leaves:
	// wait for both before cancelling, or the scancel kills a late one
	// while it takes its lease.
	ran := func() bool {
		outs := sl.outputs()
		for _, f := range outs {
			if !workerRan(f) {
				return false
			}
		}
		return len(outs) == 2
	}
	for deadline := time.Now().Add(2 * time.Minute); !ran() && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	sl.cancel(t, id)
	var s collector.Summary
	if err := json.Unmarshal([]byte(stdout.String()), &s); err != nil {
		t.Fatalf("collector --json: %v\n%s", err, stdout.String())
	}
	checkExact(t, s, targetSE, seed, batch, "slurm-"+id+"-")
	// Both array tasks ran a worker, even if one came after the target.
	if outs := sl.outputs(); len(outs) != 2 {
		t.Errorf("array of 2 tasks, %d outputs: %v", len(outs), outs)
	}
	for _, f := range sl.outputs() {
		if !workerRan(f) {
			b, _ := os.ReadFile(f)
			t.Errorf("%s: no worker ran:\n%s", f, b)
		}
	}
	if !t.Failed() {
		t.Logf("array job %s: target SE %g reached with exactly N = %v samples (%d batches of %d) from %d array tasks, hits replayed exactly; %.1fs from sbatch to the target",
			id, targetSE, s.N, s.Batches, batch, len(s.WorkerTable), elapsed.Seconds())
	}
}

// checkExact checks that the collector stopped at the target with workers
// whose ids start with prefix (one or two: the target can be reached before
// the second reports), and replays every batch of theirs: each worker's N is
// its batches times batch, its hits those of mcpi for the seed, and the
// summary's N and hits their sums.
func checkExact(t *testing.T, s collector.Summary, targetSE float64, seed, batch uint64, prefix string) {
	t.Helper()
	if s.StoppedBy != "target" || float64(s.StdErr) > targetSE {
		t.Fatalf("the collector stopped by %q at SE %g, want the target %g", s.StoppedBy, float64(s.StdErr), targetSE)
	}
	if len(s.WorkerTable) < 1 || len(s.WorkerTable) > 2 {
		t.Fatalf("%d workers in the summary, want those of the job's 2 tasks: %+v", len(s.WorkerTable), s.WorkerTable)
	}
	var n, hits mcpi.Count
	for _, w := range s.WorkerTable {
		if !strings.HasPrefix(w.ID, prefix) {
			t.Errorf("worker %q: want an id starting %q", w.ID, prefix)
		}
		var wh uint64
		for seq := uint64(1); seq <= w.Seq; seq++ {
			wh += mcpi.Batch{Key: mcpi.Key{Seed: seed, Worker: w.ID, Seq: seq}, N: batch}.Hits(mcpi.Pick())
		}
		if w.N != w.Seq*batch || w.Hits != wh {
			t.Errorf("worker %s: n %d hits %d, want %d batches of %d: n %d, replayed hits %d", w.ID, w.N, w.Hits, w.Seq, batch, w.Seq*batch, wh)
		}
		n, hits = n.Add(mcpi.CountOf(w.N)), hits.Add(mcpi.CountOf(w.Hits))
	}
	if s.N != n || s.Hits != hits {
		t.Errorf("summary n %v hits %v, want the workers' sums n %v hits %v", s.N, s.Hits, n, hits)
	}
}

// waitSummary waits until the collector of job id has written its summary
// to path, and returns it.
func waitSummary(t *testing.T, sl *slurm, id, path string, within time.Duration) collector.Summary {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 && b[len(b)-1] == '\n' {
			var s collector.Summary
			if err := json.Unmarshal(b, &s); err != nil {
				t.Fatalf("summary %s: %v\n%s", path, err, b)
			}
			return s
		}
		if time.Now().After(deadline) {
			sl.dump(t, id)
			t.Fatalf("no summary in %s within %v", path, within)
		}
		if st := sl.state(t, id); st == "FAILED" || st == "CANCELLED" || st == "TIMEOUT" || st == "NODE_FAIL" {
			sl.dump(t, id)
			t.Fatalf("job %s ended %s without a summary", id, st)
		}
		time.Sleep(200 * time.Millisecond) // polling Slurm and a file
	}
}

// buildPicluster builds the binary the jobs run.
func buildPicluster(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "picluster")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/picluster/picluster/cmd/picluster").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// slurm is a running single-node cluster.
type slurm struct {
	dir  string
	conf string
	node string
	dirs []string // where the jobs write their output, slurm-<job id>.out
}

func need(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s, and CI is set: the Slurm test must run (as root, apt-get install slurm-wlm munge)", why)
	}
	t.Skipf("%s: skipping the Slurm test (it needs root and apt-get install slurm-wlm munge)", why)
}

// startSlurm starts munged, slurmctld and slurmd for t and stops them at
// cleanup.
func startSlurm(t *testing.T) *slurm {
	t.Helper()
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		need(t, "not root on Linux")
	}
	for _, c := range []string{"munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo", "sacct"} {
		if _, err := exec.LookPath(c); err != nil {
			need(t, c+" is not installed")
		}
	}
	// Unix sockets want short paths, so not t.TempDir's.
	dir, err := os.MkdirTemp("", "slurm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, d := range []string{"munge", "state", "spool", "log"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "munge"), 0o711); err != nil { // clients reach the socket
		t.Fatal(err)
	}
	key, sock := filepath.Join(dir, "munge", "munge.key"), filepath.Join(dir, "munge", "munge.sock")
	run(t, "mungekey", "--create", "--keyfile="+key)
	daemon(t, dir, "munged", "--foreground", "--force", "--socket="+sock, "--key-file="+key,
		"--log-file="+filepath.Join(dir, "log", "munged.log"), "--pid-file="+filepath.Join(dir, "munge", "munged.pid"),
		"--seed-file="+filepath.Join(dir, "munge", "seed"))
	waitFor(t, "munged's socket", 10*time.Second, func() bool { _, err := os.Stat(sock); return err == nil })

	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	node := strings.SplitN(host, ".", 2)[0]
	conf := filepath.Join(dir, "slurm.conf")
	cfg := fmt.Sprintf(`ClusterName=picluster
SlurmctldHost=%[2]s(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=%[3]d
SlurmdPort=%[4]d
AuthType=auth/munge
AuthInfo=socket=%[1]s/munge/munge.sock
CredType=cred/munge
StateSaveLocation=%[1]s/state
SlurmdSpoolDir=%[1]s/spool
SlurmctldPidFile=%[1]s/slurmctld.pid
SlurmdPidFile=%[1]s/slurmd.pid
SlurmctldLogFile=%[1]s/log/slurmctld.log
SlurmdLogFile=%[1]s/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
NodeName=%[2]s NodeAddr=127.0.0.1 CPUs=%[5]d State=UNKNOWN
PartitionName=test Nodes=%[2]s Default=YES MaxTime=INFINITE State=UP
`, dir, node, freePort(t), freePort(t), runtime.NumCPU())
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	sl := &slurm{dir: dir, conf: conf, node: node}
	daemon(t, dir, "slurmctld", "-D", "-i", "-f", conf)
	daemon(t, dir, "slurmd", "-D", "-N", node, "-f", conf)
	waitFor(t, "the node to be idle", 60*time.Second, func() bool {
		out, _ := sl.cmd("sinfo", "-h", "-o", "%t").Output()
		return strings.TrimSpace(string(out)) == "idle"
	})
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range []string{"slurmctld.log", "slurmd.log"} {
				b, _ := os.ReadFile(filepath.Join(dir, "log", f))
				t.Logf("%s (tail):\n%s", f, tail(string(b), 30))
			}
		}
	})
	return sl
}

// cmd returns a Slurm client command for this cluster.
func (sl *slurm) cmd(name string, args ...string) *exec.Cmd {
	c := exec.Command(name, args...)
	c.Env = append(os.Environ(), "SLURM_CONF="+sl.conf)
	return c
}

// sbatch submits a batch script of deploy/slurm from dir with env added, and
// returns the job id.
func (sl *slurm) sbatch(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	for i, a := range args {
		if strings.HasSuffix(a, ".sbatch") { // the test runs in deploy/slurm
			abs, err := filepath.Abs(a)
			if err != nil {
				t.Fatal(err)
			}
			args[i] = abs
		}
	}
	c := sl.cmd("sbatch", append([]string{"--parsable", "--chdir=" + dir, "--output=" + filepath.Join(dir, "slurm-%j.out")}, args...)...)
	c.Env = append(c.Env, env...)
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("sbatch %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	id := strings.TrimSpace(string(out))
	sl.dirs = append(sl.dirs, dir)
	return id
}

// state returns the job's state as squeue shows it, "" once it has left the queue.
func (sl *slurm) state(t *testing.T, id string) string {
	t.Helper()
	out, _ := sl.cmd("squeue", "-h", "-j", id, "-o", "%T").Output()
	return strings.TrimSpace(string(out))
}

// cancel cancels the job and waits until it has left the queue.
func (sl *slurm) cancel(t *testing.T, id string) {
	t.Helper()
	if out, err := sl.cmd("scancel", id).CombinedOutput(); err != nil {
		t.Errorf("scancel %s: %v\n%s", id, err, out)
	}
	waitFor(t, "job "+id+" to leave the queue", 60*time.Second, func() bool { return sl.state(t, id) == "" })
}

// outputs returns the output files of the jobs submitted so far.
func (sl *slurm) outputs() []string {
	var all []string
	for _, d := range sl.dirs {
		fs, _ := filepath.Glob(filepath.Join(d, "slurm-*.out"))
		all = append(all, fs...)
	}
	return all
}

// dump logs the jobs' output.
func (sl *slurm) dump(t *testing.T, id string) {
	t.Helper()
	for _, f := range sl.outputs() {
		b, _ := os.ReadFile(f)
		t.Logf("%s:\n%s", f, tail(string(b), 40))
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
}

// daemon starts a foreground daemon and kills it at cleanup.
func daemon(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	log, err := os.Create(filepath.Join(dir, "log", name+".out"))
	if err != nil {
		t.Fatal(err)
	}
	c := exec.Command(name, args...)
	c.Stdout, c.Stderr = log, log
	if err := c.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = c.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = c.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = c.Process.Kill()
			<-done
		}
		log.Close()
	})
}

func waitFor(t *testing.T, what string, within time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", within, what)
		}
		time.Sleep(100 * time.Millisecond) // polling daemons we started
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-lines):], "\n")
}

// workerRan reports whether the output file of a task shows a worker that
// started, or found the job done and left.
func workerRan(file string) bool {
	b, _ := os.ReadFile(file)
	return strings.Contains(string(b), "worker started") || strings.Contains(string(b), "the job is already done")
}
