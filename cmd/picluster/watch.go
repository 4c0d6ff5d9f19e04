package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/internal/chart"
	"github.com/picluster/picluster/internal/tui"
	"github.com/picluster/picluster/internal/web"
)

// errDuration is the cause of a context that ended at --duration; the
// collector records it as its reason to stop.
var errDuration error = collector.StopDuration

func withDuration(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeoutCause(ctx, d, errDuration)
}

// watch runs collect (which returns nil at the target and ctx's error when
// cancelled) and shows the estimate meanwhile, then the final summary: JSON
// on stdout with --json, a line otherwise. On a terminal without --json it
// draws the live view (internal/tui) in the alternate screen, at most 4
// frames a second: each frame is one write (home, the lines each ending in
// clear-to-end-of-line, clear-below), so nothing flickers, and the size is
// read every frame, so a resize is harmless. Otherwise it prints a line every
// --interval, rewritten in place on a terminal.
func (e *env) watch(ctx context.Context, col *collector.Collector, f collectorFlags, collect func(context.Context) error) error {
	if f.http != "" {
		l, err := web.Listen(f.http)
		if err != nil {
			return err
		}
		srvCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
		served := make(chan error, 1)
		go func() { served <- web.Serve(srvCtx, l, web.Handler(col, slog.New(slog.NewTextHandler(e.logs, nil)))) }()
		defer func() { stop(); <-served }() // the server ends with the command
		fmt.Fprintf(e.logs, "dashboard on http://%s/\n", l.Addr())
	}
	progress := e.stdout
	if f.json {
		progress = e.stderr // stdout carries only the JSON
	}
	every, draw := f.interval, func() { printLine(progress, col.Snapshot().Summary) }
	var restore string
	switch {
	case !f.json && isTerminal(e.stdout):
		fd := int(e.stdout.(*os.File).Fd())
		every, draw = frameInterval, func() {
			w, h, err := term.GetSize(fd)
			if err != nil {
				w, h = 80, 24
			}
			lines := tui.Render(col.Snapshot().Summary, col.History(), w, h)
			fmt.Fprint(e.stdout, "\x1b[H"+strings.Join(lines, "\x1b[K\r\n")+"\x1b[K\x1b[J")
		}
		e.logs.hold()                                // logs would scribble on the view
		fmt.Fprint(e.stdout, "\x1b[?1049h\x1b[?25l") // alternate screen, no cursor
		restore = "\x1b[?25h\x1b[?1049l"
	case isTerminal(progress):
		draw = func() {
			fmt.Fprint(progress, "\r\033[K")
			printLine(noNewline{progress}, col.Snapshot().Summary)
		}
		restore = "\r\033[K"
	}

	done := make(chan error, 1)
	go func() { done <- collect(ctx) }()
	tick := time.NewTicker(every)
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
			if perr := chart.WritePNG(f.plot, "π by picluster, job "+col.Snapshot().Channel, col.History()); perr != nil {
				fmt.Fprintln(e.logs, "picluster:", perr)
			}
		case <-tick.C:
			draw()
		}
	}
	fmt.Fprint(progress, restore)
	e.logs.release()
	return e.final(ctx, col, f, err)
}

// frameInterval is the live view's redraw period: at most 4 frames a second.
const frameInterval = 250 * time.Millisecond

// final writes the plot and prints the summary, whose StoppedBy the
// collector recorded. An error of collect is returned, but for the end of
// ctx (a signal or --duration) once the job was loaded; a stale final read
// (collector.ErrStale) still prints the summary, which says so.
func (e *env) final(ctx context.Context, col *collector.Collector, f collectorFlags, err error) error {
	s := col.Summary()
	if f.plot != "" {
		if perr := chart.WritePNG(f.plot, "π by picluster, job "+s.Channel, col.History()); perr != nil {
			fmt.Fprintln(e.stderr, "picluster:", perr)
		}
	}
	switch {
	case err == nil, errors.Is(err, collector.ErrStale):
	case errors.Is(err, collector.ErrNoJob) && !errors.Is(context.Cause(ctx), errDuration):
		return nil // Ctrl-C while waiting for Redis
	case ctx.Err() != nil && !errors.Is(err, collector.ErrNoJob) && errors.Is(err, ctx.Err()):
		err = nil // stopped by a signal or --duration, as the summary says
	default:
		return err
	}
	if s.StoppedBy == "" {
		s.StoppedBy = string(collector.StopSignal)
	}
	if f.json {
		return errors.Join(writeSummary(e.stdout, s), err)
	}
	printLine(e.stdout, s)
	printStopped(e.stdout, s)
	if s.Stale != "" {
		fmt.Fprintf(e.stdout, "stale: the final read of the ledger failed (%s): N may miss entries\n", s.Stale)
	}
	return err
}

// printStopped prints the final line: why and when the collector stopped,
// and what it counted.
func printStopped(w io.Writer, s collector.Summary) {
	fmt.Fprintf(w, "stopped by %s after %.1fs: %s, %s, %d rejected\n",
		s.StoppedBy, float64(s.Seconds), reporters(s), plural(s.Batches, "batch", "batches"), s.Rejected)
}

// writeSummary prints s on w as one JSON object and a newline. No Summary
// fails to encode (its floats are collector.Float, which writes null for
// NaN and ±Inf), but if one ever did, w still gets an object: the fields
// that always encode and "error", and the error is returned (exit 1).
func writeSummary(w io.Writer, s collector.Summary) error {
	b, err := json.Marshal(s)
	if err != nil {
		err = fmt.Errorf("encode the summary: %w", err)
		b, _ = json.Marshal(map[string]any{"channel": s.Channel, "n": s.N, "hits": s.Hits, "workers": s.Workers,
			"batches": s.Batches, "rejected": s.Rejected, "stopped_by": s.StoppedBy, "error": err.Error()})
	}
	if _, werr := w.Write(append(b, '\n')); werr != nil {
		return errors.Join(err, werr)
	}
	return err
}

// printLine prints the estimate on one line.
func printLine(w io.Writer, s collector.Summary) {
	if s.N.IsZero() {
		fmt.Fprintf(w, "waiting for reports… (%s, %d rejected)\n", reporters(s), s.Rejected)
		return
	}
	est := ""
	if st := s.Stratified; st != nil {
		est = fmt.Sprintf("  stratified K=%d B=%d (t, %.0f× below MC)", st.Cells, st.Batches, float64(st.Gain))
	}
	fmt.Fprintf(w, "π ≈ %.10f ± %.2g  95%% [%.8f, %.8f]  N=%s  %.3g samples/s  %s  %d rejected%s\n",
		float64(s.Pi), float64(s.StdErr), float64(s.CI95[0]), float64(s.CI95[1]), s.N, float64(s.SamplesPerS), reporters(s), s.Rejected, est)
}

// reporters counts who reported: the workers, and the anonymous batches
// (seed-style reports, which name no worker) when there are any.
func reporters(s collector.Summary) string {
	out := plural(s.Workers, "worker", "workers")
	if s.Anonymous > 0 {
		out += " + " + plural(s.Anonymous, "anonymous batch", "anonymous batches")
	}
	return out
}

// plural writes n with the word that agrees with it: "1 worker", "2 workers".
func plural[N int | uint64](n N, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
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
