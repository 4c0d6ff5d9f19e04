package main

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/picluster/picluster/internal/loadgen"
	"github.com/picluster/picluster/internal/redistest"
)

// loadgenRun runs picluster loadgen with args and --json, and returns its
// result.
func loadgenRun(t *testing.T, srv *redistest.Server, args ...string) loadgen.Result {
	t.Helper()
	cmd := exec.Command(binary(t), append([]string{"loadgen", "--redis", srv.URL(), "--json"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("loadgen %v: %v\n%s", args, err, stderr.String())
	}
	t.Logf("loadgen %v: %v", args, time.Since(start).Round(time.Millisecond))
	var res loadgen.Result
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("loadgen --json: %v\n%s", err, out)
	}
	return res
}

// TestLoadgen runs the load harness in a tiny configuration against a real
// Redis, with each bare reader: what it appended is credited exactly, the
// bare reader and the collector both saw the load, the probe was timed, the
// collector's CPU and RSS were read, and the job's keys are gone at the end.
func TestLoadgen(t *testing.T) {
	srv := redistest.Start(t)
	for _, tt := range []struct {
		bare  string
		rates string
		steps int
	}{
		{"channel", "150,300", 2},
		{"ledger", "300", 1},
	} {
		t.Run(tt.bare, func(t *testing.T) {
			res := loadgenRun(t, srv, "--workers", "3", "--rate", tt.rates, "--duration", "1s", "--senders", "2", "--bare", tt.bare)
			if len(res.Steps) != tt.steps || res.Bare != tt.bare {
				t.Fatalf("%d steps, bare reader %q; want %d, %q: %+v", len(res.Steps), res.Bare, tt.steps, tt.bare, res)
			}
			for _, s := range res.Steps {
				if s.Sent < 0.8*s.Target || s.Bare < 0.8*s.Target || s.Credit <= 0 || s.Ratio <= 0 {
					t.Errorf("step %v: sent %v, bare %v, credited %v, ratio %v: want each near the offered rate", s.Target, s.Sent, s.Bare, s.Credit, s.Ratio)
				}
				if s.Probes < 5 || s.LagP50 <= 0 || s.LagP99 < s.LagP50 {
					t.Errorf("step %v: %d probes, lag p50 %v p99 %v", s.Target, s.Probes, s.LagP50, s.LagP99)
				}
				if s.CollectorCPU <= 0 || s.RSS < 1<<20 || s.LoadgenCPU <= 0 {
					t.Errorf("step %v: collector %v cores, RSS %d, loadgen %v cores: not measured", s.Target, s.CollectorCPU, s.RSS, s.LoadgenCPU)
				}
				if s.RedisCPU != -1 {
					t.Errorf("step %v: redis CPU %v, want -1 (loadgen did not start it)", s.Target, s.RedisCPU)
				}
			}
			// Each step sends its own entries and the probe's, ten a second.
			if res.Appended < uint64(150*tt.steps) || !res.Exact || res.Credited != res.Appended || res.Rejected != 0 {
				t.Errorf("appended %d, credited %d, exact %v, rejected %d: want every entry credited once", res.Appended, res.Credited, res.Exact, res.Rejected)
			}
			if res.Collector.CPUSeconds <= 0 || res.Collector.MaxRSS < 1<<20 || res.Collector.Exit != "exit status 0" {
				t.Errorf("collector over its life: %+v", res.Collector)
			}
			if keys := redisCLI(t, srv, "--scan", "--pattern", "*"+res.Channel+"*"); keys != "" {
				t.Errorf("the job's keys are left behind:\n%s", keys)
			}
		})
	}
}

// TestLoadgenFlood floods a collector capped at 100 workers with presence
// from ids that never report and entries from 300 new ids: it tracks 100
// workers, refuses the rest, and credits the honest worker exactly.
func TestLoadgenFlood(t *testing.T) {
	srv := redistest.Start(t)
	res := loadgenRun(t, srv, "--flood-presence", "3000", "--flood-ids", "300", "--max-workers", "100", "--senders", "4")
	f := res.Flood
	if f == nil {
		t.Fatalf("no flood result: %+v", res)
	}
	if f.Tracked != 100 || f.Refused != 201 {
		t.Errorf("tracked %d, refused %d: want 100 (the cap) and 201 (300 + the honest one − 100)", f.Tracked, f.Refused)
	}
	if !f.HonestExact || f.HonestEntries == 0 || f.HonestCredited != f.HonestN {
		t.Errorf("honest worker: %d entries, N %d, credited %d, exact %v", f.HonestEntries, f.HonestN, f.HonestCredited, f.HonestExact)
	}
	if f.RSSBefore == 0 || f.RSSPresence == 0 || f.RSSIDs == 0 || f.RSSPeak < f.RSSIDs {
		t.Errorf("RSS not measured: %+v", f)
	}
	if res.Collector.Exit != "exit status 0" {
		t.Errorf("the collector ended with %s", res.Collector.Exit)
	}
}
