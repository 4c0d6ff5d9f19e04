package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/picluster/picluster/internal/redistest"
)

// exitWithin waits up to within for p to exit by itself and returns its exit
// status and how long it ran after start.
func (p *proc) exitWithin(t *testing.T, start time.Time, within time.Duration) (int, time.Duration) {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		took := time.Since(start)
		var ee *exec.ExitError
		switch {
		case err == nil:
			return 0, took
		case errors.As(err, &ee):
			return ee.ExitCode(), took
		}
		t.Fatalf("%s: %v", p.cmd.Args, err)
	case <-time.After(within):
		t.Fatalf("%s did not exit within %v\nstderr:\n%s", p.cmd.Args, within, p.stderr)
	}
	return 0, 0
}

// lastLine returns the last line p wrote on stderr.
func (p *proc) lastLine() string {
	lines := strings.Split(strings.TrimSpace(p.stderr.String()), "\n")
	return lines[len(lines)-1]
}

// Errors that no retry can fix end the worker and the collector within 5 s,
// with exit status 1 and a last line that names the cause and what to fix.
func TestPermanentErrorsEndTheCommand(t *testing.T) {
	binary(t) // built before the clocks start
	srv := aclServer(t, redistest.Options{})
	tlsSrv := redistest.StartWith(t, redistest.Options{TLS: redistest.NewTLS(t)})
	otherCA := redistest.NewTLS(t)
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"WRONGPASS", []string{"--redis", userURL(srv, "picluster-worker", "wrong")}, "WRONGPASS"},
		{"NOAUTH", []string{"--redis", srv.URL()}, "NOAUTH"},
		{"bad host", []string{"--redis", "redis://no-such-host.invalid:6379"}, "does not resolve"},
		{"bad CA", []string{"--redis", "rediss://" + tlsSrv.Addr, "--tls-ca", otherCA.CA}, "TLS certificate failed verification"},
		{"bad DB", []string{"--redis", userURL(srv, "picluster-collector", collectorPass) + "/99"}, "no such database"},
	} {
		for _, cmd := range []string{"worker", "collector"} {
			t.Run(tt.name+"/"+cmd, func(t *testing.T) {
				t0 := time.Now()
				p := start(t, append([]string{cmd}, tt.args...)...)
				code, took := p.exitWithin(t, t0, 5*time.Second)
				line := p.lastLine()
				if code == 0 || !strings.HasPrefix(line, "picluster: ") || !strings.Contains(line, tt.want) {
					t.Fatalf("exit %d, last line %q: want a non-zero exit and a line naming %q", code, line, tt.want)
				}
				t.Logf("exit %d after %v: %s", code, took.Round(time.Millisecond), line)
			})
		}
	}
	// NOPERM: the worker's user may not write the job state, which a
	// collector must.
	t.Run("NOPERM/collector", func(t *testing.T) {
		t0 := time.Now()
		p := start(t, "collector", "--redis", userURL(srv, "picluster-worker", workerPass))
		code, took := p.exitWithin(t, t0, 5*time.Second)
		if line := p.lastLine(); code == 0 || !strings.Contains(line, "NOPERM") || !strings.Contains(line, "picluster acl") {
			t.Fatalf("exit %d, last line %q: want a non-zero exit and NOPERM", code, line)
		}
		t.Logf("exit %d after %v: %s", code, took.Round(time.Millisecond), p.lastLine())
	})
	// NOPERM for a worker: a user that may read the job but not append.
	t.Run("NOPERM/worker", func(t *testing.T) {
		acl := filepath.Join(t.TempDir(), "users.acl")
		rules := ACLRules("pi_collector", collectorPass, workerPass, nil) +
			"user reader on >ro resetkeys resetchannels ~{pi_collector}:* &* -@all +get +hget +xread +subscribe +ping +hello +client|setname\n"
		if err := os.WriteFile(acl, []byte(rules), 0o600); err != nil {
			t.Fatal(err)
		}
		srv := redistest.StartWith(t, redistest.Options{Args: []string{"--aclfile", acl}})
		c := start(t, "collector", "--redis", userURL(srv, "picluster-collector", collectorPass))
		c.waitOutput(t, "job loaded from the ledger", 10*time.Second)
		t0 := time.Now()
		p := start(t, "worker", "--redis", userURL(srv, "reader", "ro"), "--batch", "1000000")
		code, took := p.exitWithin(t, t0, 5*time.Second)
		if line := p.lastLine(); code == 0 || !strings.Contains(line, "NOPERM") {
			t.Fatalf("exit %d, last line %q: want a non-zero exit and NOPERM", code, line)
		}
		t.Logf("exit %d after %v: %s", code, took.Round(time.Millisecond), p.lastLine())
	})
}

// Ctrl-C while a command still waits for Redis ends it with exit status 0,
// never 1 with "connection refused".
func TestInterruptWhileWaitingForRedis(t *testing.T) {
	down := redistest.Start(t)
	down.Stop()
	for _, cmd := range []string{"worker", "collector", "run"} {
		t.Run(cmd, func(t *testing.T) {
			p := start(t, cmd, "--redis", down.URL())
			p.waitOutput(t, "bus unavailable; retrying", 10*time.Second)
			t0 := time.Now()
			if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			if code, _ := p.exitWithin(t, t0, 5*time.Second); code != 0 && code != 130 {
				t.Fatalf("exit %d after Ctrl-C, want 0 or 130; last line %q", code, p.lastLine())
			}
		})
	}
}

// The first Ctrl-C lets a collector read the ledger once more, which may
// take seconds when Redis does not answer; a second one ends it at once.
func TestSecondInterruptEndsAtOnce(t *testing.T) {
	srv := redistest.Start(t)
	c := start(t, "collector", "--redis", srv.URL())
	c.waitOutput(t, "job loaded from the ledger", 10*time.Second)
	srv.Pause() // the final read waits for it
	defer srv.Resume()
	if err := c.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the first is handled
	t0 := time.Now()
	if err := c.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.done:
		c.done <- err
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() {
			t.Fatalf("after the second Ctrl-C: %v, want the process killed by SIGINT\nstderr:\n%s", err, c.stderr)
		}
		t.Logf("ended %v after the second Ctrl-C: %v", time.Since(t0).Round(time.Millisecond), err)
	case <-time.After(time.Second):
		t.Fatalf("still running a second after the second Ctrl-C\nstderr:\n%s", c.stderr)
	}
}

// picluster run ends by itself when its workers do: --max-batches, or a job
// that is done already; the summary says "workers".
func TestRunEndsWithItsWorkers(t *testing.T) {
	p := start(t, "run", "--max-batches", "3", "--batch", "100000", "--workers", "2", "--json")
	p.wait(t, time.Minute)
	if s := p.summary(t); s.StoppedBy != "workers" || s.Batches != 6 {
		t.Fatalf("stopped by %q after %d batches, want workers after 6", s.StoppedBy, s.Batches)
	}
	srv := redistest.Start(t)
	first := start(t, "run", "--redis", srv.URL(), "--target-se", "1e-3", "--json")
	first.wait(t, time.Minute)
	again := start(t, "run", "--redis", srv.URL(), "--json")
	again.wait(t, time.Minute)
	if s := again.summary(t); s.StoppedBy != "workers" {
		t.Fatalf("run on a done job: stopped by %q, want workers", s.StoppedBy)
	}
}

// picluster run whose workers and collector never reach Redis fails, rather
// than exit 0 "stopped by duration".
func TestRunWithoutRedisFails(t *testing.T) {
	binary(t)
	p := start(t, "run", "--redis", "redis://127.0.0.1:1", "--duration", "1s", "--json")
	code, _ := p.exitWithin(t, time.Now(), time.Minute)
	if code == 0 || strings.Contains(p.stdout.String(), `"stopped_by":"duration"`) {
		t.Fatalf("exit %d, stdout %q: want a failure", code, p.stdout)
	}
	t.Logf("exit %d: %s", code, p.lastLine())
}

// picluster run in this process, to its end by itself, with its dashboard:
// the summary is printed and nothing keeps running (TestMain's goleak).
func TestRunInProcessLeavesNothingRunning(t *testing.T) {
	var stdout, stderr syncBuffer
	getenv := func(string) string { return "" }
	err := run(t.Context(), []string{"run", "--max-batches", "2", "--batch", "4096", "--workers", "2", "--json", "--http", "127.0.0.1:0"}, getenv, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), `"stopped_by":"workers"`) {
		t.Fatalf("stdout %q: want stopped_by workers", stdout.String())
	}
}

// One worker per id, with the workers' real ACL user: a second worker
// started under a live id is refused (the first renews its lease); one
// started after the first was killed (kill -9, no goodbye) waits for the
// lease to run out and resumes after the first's last entry.
func TestOneWorkerPerID(t *testing.T) {
	srv := aclServer(t, redistest.Options{})
	wURL, cURL := userURL(srv, "picluster-worker", workerPass), userURL(srv, "picluster-collector", collectorPass)
	col := start(t, "collector", "--redis", cURL)
	col.waitOutput(t, "job loaded from the ledger", 10*time.Second)
	first := start(t, "worker", "--redis", wURL, "--id", "dup", "--batch", "1000000", "--verbose")
	first.waitOutput(t, "seq=2", 20*time.Second) // its second entry is drawn: the first is on its way
	second := start(t, "worker", "--redis", wURL, "--id", "dup", "--batch", "1000000")
	code, took := second.exitWithin(t, time.Now(), time.Minute)
	if line := second.lastLine(); code == 0 || !strings.Contains(line, `worker id "dup"`) || !strings.Contains(line, "holds this id's lease") {
		t.Fatalf("second worker: exit %d, last line %q; want it refused", code, line)
	}
	t.Logf("second worker refused after %v: %s", took.Round(time.Millisecond), second.lastLine())
	if err := first.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	third := start(t, "worker", "--redis", wURL, "--id", "dup", "--batch", "1000000")
	third.waitOutput(t, "worker started", time.Minute)
	if s := third.stderr.String(); strings.Contains(s, "resumed_at_seq=0 ") {
		t.Fatalf("the third worker did not resume:\n%s", s)
	}
}
