package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/internal/chart"
)

// errDuration is the cause of a context that ended at --duration.
var errDuration = errors.New("duration reached")

func withDuration(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeoutCause(ctx, d, errDuration)
}

// watch runs collect (which returns nil at the target and ctx's error when
// cancelled), prints a progress line every interval meanwhile, and the final
// summary at the end: JSON on stdout with --json, a line otherwise.
func (e *env) watch(ctx context.Context, col *collector.Collector, f collectorFlags, collect func() error) error {
	progress := e.stdout
	if f.json {
		progress = e.stderr // stdout carries only the JSON
	}
	redraw := isTerminal(progress) // one line rewritten in place, not a scroll
	done := make(chan error, 1)
	go func() { done <- collect() }()
	tick := time.NewTicker(f.interval)
	defer tick.Stop()
	var replot <-chan time.Time
	if f.plot != "" && f.plotEvery > 0 {
		t := time.NewTicker(f.plotEvery)
		defer t.Stop()
		replot = t.C
	}
	var err error
loop:
	for {
		select {
		case err = <-done:
			break loop
		case <-replot:
			if perr := chart.WritePNG(f.plot, "π by picluster, job "+col.Summary().Channel, col.History()); perr != nil {
				fmt.Fprintln(e.stderr, "picluster:", perr)
			}
		case <-tick.C:
			if redraw {
				fmt.Fprint(progress, "\r\033[K")
				printLine(noNewline{progress}, col.Summary())
			} else {
				printLine(progress, col.Summary())
			}
		}
	}
	if redraw {
		fmt.Fprint(progress, "\r\033[K")
	}
	s := col.Summary()
	if f.plot != "" {
		if perr := chart.WritePNG(f.plot, "π by picluster, job "+s.Channel, col.History()); perr != nil {
			fmt.Fprintln(e.stderr, "picluster:", perr)
		}
	}
	switch {
	case err == nil:
		s.StoppedBy = "target"
	case errors.Is(context.Cause(ctx), errDuration):
		s.StoppedBy, err = "duration", nil
	case ctx.Err() != nil:
		s.StoppedBy, err = "signal", nil
	default:
		return err
	}
	if f.json {
		enc := json.NewEncoder(e.stdout)
		return enc.Encode(s)
	}
	printLine(e.stdout, s)
	fmt.Fprintf(e.stdout, "stopped by %s after %.1fs: %d workers, %d batches, %d rejected\n",
		s.StoppedBy, s.Seconds, s.Workers, s.Batches, s.Rejected)
	return nil
}

// printLine prints the estimate on one line.
func printLine(w io.Writer, s collector.Summary) {
	if s.N.IsZero() {
		fmt.Fprintf(w, "waiting for reports… (%d workers, %d rejected)\n", s.Workers, s.Rejected)
		return
	}
	fmt.Fprintf(w, "π ≈ %.10f ± %.2g  95%% [%.8f, %.8f]  N=%s  %.3g samples/s  %d workers  %d rejected\n",
		float64(s.Pi), float64(s.StdErr), float64(s.CI95[0]), float64(s.CI95[1]), s.N, s.SamplesPerS, s.Workers, s.Rejected)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// noNewline drops the final newline of each write, for a line redrawn in place.
type noNewline struct{ w io.Writer }

func (n noNewline) Write(p []byte) (int, error) {
	if len(p) > 0 && p[len(p)-1] == '\n' {
		_, err := n.w.Write(p[:len(p)-1])
		return len(p), err
	}
	return n.w.Write(p)
}
