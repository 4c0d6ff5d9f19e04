package main

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"

	"github.com/picluster/picluster/internal/buildinfo"
	"github.com/picluster/picluster/mcpi"
)

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if err := run(context.Background(), args, func(string) string { return "" }, &stdout, &stderr); err != nil {
				t.Fatalf("picluster %s: %v\n%s", args[0], err, stderr.String())
			}
			out := stdout.String()
			kernels := "kernels   " + mcpi.Pick().Name()
			for _, want := range []string{"picluster " + buildinfo.Read().Version + "\n", "go        " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH, "commit    ", kernels, " go (auto picks " + mcpi.Pick().Name() + ")"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

func TestPrintVersion(t *testing.T) {
	var b bytes.Buffer
	printVersion(&b, buildinfo.Info{Version: "v1.2.0", Commit: "0123abc", Modified: true, Time: "2026-11-21T18:00:00Z",
		GoVersion: "go1.26.8", OS: "linux", Arch: "arm64"}, []mcpi.Kernel{mcpi.Generic})
	got := b.String()
	want := "picluster v1.2.0\ngo        go1.26.8 linux/arm64\ncommit    0123abc (modified) 2026-11-21T18:00:00Z\nkernels   go (auto picks go)\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
