package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/picluster/picluster/bench"
	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/mcpi"
)

// golden compares got with testdata/name.golden; -update rewrites it.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./cmd/picluster -run Golden -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test ./cmd/picluster -run Golden -update rewrites it after a deliberate change)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// TestGoldenHelp: the -h of every command, and picluster's own help.
func TestGoldenHelp(t *testing.T) {
	for _, cmd := range append([]string{"help"}, commands...) {
		t.Run(cmd, func(t *testing.T) {
			if cmd == "help" {
				var out, errb bytes.Buffer
				if err := run(context.Background(), []string{"help"}, func(string) string { return "" }, &out, &errb); err != nil {
					t.Fatal(err)
				}
				golden(t, "help", out.String())
				return
			}
			golden(t, "help-"+cmd, helpOf(t, cmd))
		})
	}
}

// TestGoldenErrors: what a person sees on stderr for a few mistakes, with
// the exit code, as main prints them.
func TestGoldenErrors(t *testing.T) {
	var all strings.Builder
	for _, args := range [][]string{
		{},
		{"fly"},
		{"run", "--targt-se", "1e-4"},
		{"run", "--duration", "5"},
		{"run", "--duration=-1s"},
		{"run", "--target-se", "-1"},
		{"run", "--json=maybe"},
		{"run", "--workers"},
		{"run", "--workers", "0"},
		{"run", "extra"},
		{"worker", "--id", "-h"},
		{"worker", "--redis", "localhost:6379"},
		{"worker"},
		{"collector", "--redis", "redis://h:1", "--interval", "0s"},
		{"bench", "--threads", "2,x"},
		{"key"},
		{"version", "now"},
	} {
		var out, errb bytes.Buffer
		err := run(context.Background(), args, func(string) string { return "" }, &out, &errb)
		code := 0
		if err != nil {
			code = explain(&errb, err)
		}
		if out.Len() > 0 {
			t.Errorf("%q: stdout %q, want nothing", args, out.String())
		}
		if code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
		stderr := errb.String()
		if len(args) > 0 && strings.Count(stderr, "\n") != 2 {
			t.Errorf("%q: %d lines on stderr, want the error and where to look", args, strings.Count(stderr, "\n"))
		}
		all.WriteString("$ picluster " + strings.Join(args, " ") + "\n" + stderr + "\n")
	}
	golden(t, "errors", all.String())
}

// TestGoldenSummary: the lines the collector prints, live and at the end,
// with count words that agree with their numbers.
func TestGoldenSummary(t *testing.T) {
	tally := mcpi.TallyOf(1_000_000_000, 785_398_163)
	lo, hi := tally.CI95()
	s := collector.Summary{Channel: "pi_collector", N: tally.N, Hits: tally.Hits, Pi: collector.Float(tally.Pi()),
		StdErr: collector.Float(tally.StdErr()), CI95: [2]collector.Float{collector.Float(lo), collector.Float(hi)},
		Seconds: 12.34, SamplesPerS: 8.1e7, StoppedBy: "target"}
	var out bytes.Buffer
	for _, c := range []struct {
		workers  int
		batches  uint64
		anon     uint64
		rejected uint64
	}{{1, 1, 0, 0}, {2, 5, 0, 1}, {0, 1, 1, 0}, {1, 9, 3, 2}} {
		s.Workers, s.Batches, s.Anonymous, s.Rejected = c.workers, c.batches, c.anon, c.rejected
		printLine(&out, s)
		printStopped(&out, s)
	}
	printLine(&out, collector.Summary{Workers: 1})
	golden(t, "summary", out.String())
}

// TestGoldenBench: the speed-up is per kernel, against its own fewest threads.
func TestGoldenBench(t *testing.T) {
	var out bytes.Buffer
	for _, rs := range [][]bench.Result{
		{{Kernel: "avx2", Threads: 1, SamplesPerS: 3e9, NsPerSample: 1 / 3.0}, {Kernel: "avx2", Threads: 2, SamplesPerS: 5.8e9, NsPerSample: 1 / 5.8},
			{Kernel: "go", Threads: 1, SamplesPerS: 8e8, NsPerSample: 1 / 0.8}, {Kernel: "go", Threads: 2, SamplesPerS: 1.5e9, NsPerSample: 1 / 1.5}},
		{{Kernel: "avx2", Threads: 2, SamplesPerS: 6e9, NsPerSample: 1 / 6.0}, {Kernel: "avx2", Threads: 4, SamplesPerS: 1.1e10, NsPerSample: 1 / 11.0},
			{Kernel: "go", Threads: 2, SamplesPerS: 1.6e9, NsPerSample: 1 / 1.6}, {Kernel: "go", Threads: 4, SamplesPerS: 3.2e9, NsPerSample: 1 / 3.2}},
	} {
		if err := printBench(&out, rs); err != nil {
			t.Fatal(err)
		}
		out.WriteString("\n")
	}
	golden(t, "bench", out.String())
}
