// Package ssh_test runs the README's fan-out commands for plain machines,
// GNU parallel --sshlogin and pssh, exactly as written there, against a
// collector and a real Redis. The machines are simulated: an ssh (and scp)
// on PATH that runs the command here, in an environment as empty as a fresh
// ssh session's, under the host name it was given. What is tested is the
// tools' command lines and the workers they start, not ssh itself.
//
// It needs parallel and pssh (apt-get install parallel pssh); without them
// it skips with a message, unless CI is set: then it fails.
package ssh_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/internal/redistest"
	"github.com/picluster/picluster/mcpi"
)

// fakeSSH is ssh for machines that are this one: it drops ssh's options and
// the host, and runs the command with sh -c, as sshd does, in a clean
// environment with REMOTE_PATH as PATH.
const fakeSSH = `#!/bin/sh
host=
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; break ;;
    -[bcDEeFIiJLlmOopQRSWw]) shift 2 ;;
    -*) shift ;;
    *) if [ -z "$host" ]; then host=$1; shift; else break; fi ;;
  esac
done
exec env -i PATH="$REMOTE_PATH" HOME="$HOME" SHELL=/bin/sh USER="$USER" SSH_HOST="$host" sh -c "$*"
`

// fakeSCP copies its sources to the path after "host:" of its last
// argument, dropping scp's options. (Paths without spaces.)
const fakeSCP = `#!/bin/sh
args=
while [ $# -gt 0 ]; do
  case "$1" in
    -[cFiJloPS]) shift 2 ;;
    -*) shift ;;
    *) args="$args $1"; shift ;;
  esac
done
set -- $args
src=
while [ $# -gt 1 ]; do src="$src $1"; shift; done
exec cp $src "${1#*:}"
`

func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed, and CI is set: the fan-out test must run (apt-get install parallel pssh)", tool)
			}
			t.Skipf("%s is not installed: skipping the fan-out test (apt-get install parallel pssh)", tool)
		}
	}
}

// machines returns a directory with hosts.txt (two hosts), a PATH whose ssh
// and scp reach them, and the remote PATH, where picluster is.
func machines(t *testing.T) (dir, path, remote string) {
	t.Helper()
	dir = t.TempDir()
	local, remote := filepath.Join(dir, "local"), filepath.Join(dir, "remote")
	for _, d := range []string{local, remote} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range map[string]string{"ssh": fakeSSH, "scp": fakeSCP} {
		if err := os.WriteFile(filepath.Join(local, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "hosts.txt"), []byte("node1\nnode2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "picluster"), "github.com/picluster/picluster/cmd/picluster").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir, local + ":" + os.Getenv("PATH"), remote + ":/usr/local/bin:/usr/bin:/bin"
}

func TestFanOut(t *testing.T) {
	need(t, "parallel", "parallel-ssh", "parallel-scp")
	dir, path, remote := machines(t)
	remoteBin := filepath.Join(dir, "remote")
	// The README's commands, with the binary's name in the pssh one.
	for _, tt := range []struct {
		name    string
		install string // copies picluster to the machines; "" when it is on their PATH already
		fanout  string
		done    []string // what the fan-out's output must say of each host
	}{
		{
			name:    "GNU parallel",
			install: "cp picluster remote/picluster",
			fanout:  "parallel --nonall --sshloginfile hosts.txt --env REDIS_URL --tag --line-buffer picluster worker",
			done:    []string{"node1\t", "node2\t"},
		},
		{
			name:    "pssh",
			install: "parallel-scp -h hosts.txt picluster " + remoteBin + "/picluster",
			fanout:  `parallel-ssh -h hosts.txt -t 0 -P "REDIS_URL=$REDIS_URL ` + remoteBin + `/picluster worker"`,
			done:    []string{"[SUCCESS] node1", "[SUCCESS] node2"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(filepath.Join(remoteBin, "picluster"))
			redis := redistest.Start(t)
			env := append(os.Environ(), "PATH="+path, "REMOTE_PATH="+remote, "REDIS_URL="+redis.URL())
			shell := func(ctx context.Context, line string) *exec.Cmd {
				c := exec.CommandContext(ctx, "sh", "-c", line)
				c.Dir, c.Env = dir, env
				return c
			}
			if out, err := shell(t.Context(), tt.install).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", tt.install, err, out)
			}

			const targetSE = 5e-5
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			col := shell(ctx, fmt.Sprintf("./picluster collector --target-se %g --json", targetSE))
			var colOut, colErr strings.Builder
			col.Stdout, col.Stderr = &colOut, &colErr
			if err := col.Start(); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			fan := shell(ctx, tt.fanout)
			out, err := fan.CombinedOutput()
			took := time.Since(start)
			if err != nil {
				t.Fatalf("%s: %v\n%s", tt.fanout, err, out)
			}
			if err := col.Wait(); err != nil {
				t.Fatalf("collector: %v\n%s", err, colErr.String())
			}
			for _, want := range tt.done {
				if !strings.Contains(string(out), want) {
					t.Errorf("%s: output lacks %q:\n%s", tt.fanout, want, out)
				}
			}
			var s collector.Summary
			if err := json.Unmarshal([]byte(colOut.String()), &s); err != nil {
				t.Fatalf("collector --json: %v\n%s", err, colOut.String())
			}
			var n mcpi.Count
			for _, w := range s.WorkerTable {
				n = n.Add(mcpi.CountOf(w.N))
			}
			if s.StoppedBy != "target" || float64(s.StdErr) > targetSE || len(s.WorkerTable) == 0 || n != s.N {
				t.Fatalf("collector stopped by %q at SE %g with %d workers, N %v (workers' sum %v): want the target %g",
					s.StoppedBy, float64(s.StdErr), len(s.WorkerTable), s.N, n, targetSE)
			}
			t.Logf("%s: 2 machines, %d workers reported, target SE %g at N = %v; the fan-out returned by itself after %.1fs",
				tt.name, len(s.WorkerTable), targetSE, s.N, took.Seconds())
		})
	}
}
