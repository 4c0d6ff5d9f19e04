package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
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

// Every way of asking for help prints it on stdout and succeeds.
func TestHelpForms(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}, {"help", "-h"}, {"-h", "--help"}, {"help", "help"}, {"help", "worker"}, {"worker", "--help"}, {"version", "-h"}} {
		var out, errb bytes.Buffer
		if err := run(context.Background(), args, func(string) string { return "" }, &out, &errb); err != nil || out.Len() == 0 || errb.Len() > 0 {
			t.Errorf("%q: err %v, %d bytes on stdout, stderr %q; want the help on stdout", args, err, out.Len(), errb.String())
		}
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
		{"collector"}, // with REDIS_URL
		{"collector", "--redis", "redis://h:1", "--interval", "0s"},
		{"bench", "--threads", "2,x"},
		{"key"},
		{"key", "--id", "node7"},
		{"version", "now"},
	} {
		var out, errb bytes.Buffer
		getenv, prompt := func(string) string { return "" }, "$ "
		if slices.Equal(args, []string{"collector"}) {
			prompt = "$ REDIS_URL=redis:/h:6379 "
			getenv = func(k string) string { return map[string]string{"REDIS_URL": "redis:/h:6379"}[k] }
		}
		err := run(context.Background(), args, getenv, &out, &errb)
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
		all.WriteString(prompt + "picluster " + strings.Join(args, " ") + "\n" + stderr + "\n")
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
		{{Kernel: "avx512", Estimator: "mc", Threads: 1, SamplesPerS: 4e9, NsPerSample: 0.25},
			{Kernel: "avx512", Estimator: "stratified", Cells: 1 << 15, Threads: 1, SamplesPerS: 3.4e9, NsPerSample: 1 / 3.4},
			{Kernel: "avx512", Estimator: "mc", Threads: 2, SamplesPerS: 8e9, NsPerSample: 0.125},
			{Kernel: "avx512", Estimator: "stratified", Cells: 1 << 15, Threads: 2, SamplesPerS: 6.8e9, NsPerSample: 1 / 6.8}},
	} {
		if err := printBench(&out, rs); err != nil {
			t.Fatal(err)
		}
		out.WriteString("\n")
	}
	golden(t, "bench", out.String())
}

// Off a terminal, bench's progress is plain lines: no carriage return, no
// escape sequence, and the count words agree.
func TestBenchProgressPlain(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"bench", "--threads", "1", "--duration", "1ms"}, func(string) string { return "" }, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if got := errb.String(); strings.ContainsAny(got, "\r\x1b") || !strings.Contains(got, ", 1 thread, 1ms…\n") {
		t.Errorf("progress %q: want plain lines", got)
	}
	if !strings.Contains(out.String(), "speed-up") {
		t.Errorf("no table:\n%s", out.String())
	}
}

// Help is what the flag parser finds where a flag may stand, never the
// value of another flag.
func TestParse(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string // "help", "" for success, or the start of the error
	}{
		{[]string{"-h"}, "help"},
		{[]string{"--help"}, "help"},
		{[]string{"--json", "-h"}, "help"},
		{[]string{"--id", "x", "-help"}, "help"},
		{[]string{"--id", "-h"}, "--id -h: missing value (-h is a flag)"},
		{[]string{"--id", "--json"}, "--id --json: missing value (--json is a flag)"},
		{[]string{"--id=-h"}, ""},
		{[]string{"--n", "-h"}, "--n -h: want an integer"},
		{[]string{"-n=x"}, "-n=x: want an integer"},
		{[]string{"--id", "x", "--", "-h"}, `unexpected argument "-h"`},
		{[]string{"--id", "a", "--ib", "b"}, "unknown flag --ib; did you mean --id?"},
		{[]string{"--id"}, "--id: missing value (name)"},
		{[]string{"---id"}, "---id: bad flag syntax"},
		{[]string{"--n", "5", "-=x"}, "-=x: bad flag syntax"},
		{[]string{"--n", "x", "---y"}, "--n x: want an integer"},
		{[]string{"--wait", "-1s"}, "--wait -1s: want a duration ≥ 0"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out bytes.Buffer
			e := &env{stdout: &out, stderr: &out}
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.String("id", "", "the `name`")
			fs.Int("n", 0, "a number")
			fs.Bool("json", false, "JSON")
			fs.Duration("wait", 0, "a wait")
			err := e.parse(fs, "Tests.", tt.args)
			var got string
			switch {
			case errors.Is(err, errHelp):
				got = "help"
				if !strings.Contains(out.String(), "  --id name\n") {
					t.Errorf("help %q lacks --id name", out.String())
				}
			case err != nil:
				got = err.Error()
				var u *usageError
				if !errors.As(err, &u) || u.cmd != "test" {
					t.Errorf("%v: not a usage error of test", err)
				}
			}
			if !strings.HasPrefix(got, tt.want) || tt.want == "" && got != "" {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
