package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/picluster/picluster/internal/buildinfo"
	"github.com/picluster/picluster/mcpi"
)

// versionCmd prints what "picluster version" and "picluster --version" print:
// the build, and the kernels this CPU can run.
func (e *env) versionCmd(args []string) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	if err := e.parse(fs, "Prints the version, the Go version, the commit and the kernels this CPU can run.", args); err != nil {
		return err
	}
	printVersion(e.stdout, buildinfo.Read(), mcpi.Kernels())
	return nil
}

func printVersion(w io.Writer, in buildinfo.Info, kernels []mcpi.Kernel) {
	commit := in.Commit
	if commit == "" {
		commit = "unknown"
	}
	if in.Modified {
		commit += " (modified)"
	}
	if in.Time != "" {
		commit += " " + in.Time
	}
	names := make([]string, len(kernels))
	for i, k := range kernels {
		names[i] = k.Name()
	}
	fmt.Fprintf(w, "picluster %s\ngo        %s %s/%s\ncommit    %s\nkernels   %s (auto picks %s)\n",
		in.Version, in.GoVersion, in.OS, in.Arch, commit, strings.Join(names, " "), names[0])
}
