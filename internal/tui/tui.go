// Package tui renders the collector's live terminal view: the estimate with
// its certain digits set apart, the error bar and the interval, the cluster's
// rate and workers, the ETA to the target, a small convergence graph and the
// flagged workers. Render is a pure function of the summary, the history and
// the terminal's size, so it is tested without a terminal; cmd/picluster
// draws its frames.
package tui

import (
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/picluster/picluster/collector"
)

// ANSI styles. The view uses no colour that a monochrome terminal lacks.
const (
	bold  = "\x1b[1m"
	dim   = "\x1b[2m"
	reset = "\x1b[0m"
)

// Render returns the view as lines, each at most width columns (not
// counting escape sequences) and at most height lines.
func Render(s collector.Summary, hist []collector.Point, width, height int) []string {
	width, height = max(width, 40), max(height, 8)
	var lines []string
	add := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }

	add("%spicluster%s  job %s  %s", bold, reset, s.Channel, elapsed(float64(s.Seconds)))
	if s.N.IsZero() {
		add("")
		add("waiting for reports…  %d rejected", s.Rejected)
		return fit(lines, width, height)
	}
	add("")
	add("  π ≈ %s   ± %.2g   bias %+.2g", Digits(float64(s.Pi), float64(s.CI95[0]), float64(s.CI95[1])), float64(s.StdErr), float64(s.Bias))
	add("  95 %% interval [%.10f, %.10f]", float64(s.CI95[0]), float64(s.CI95[1]))
	if st := s.Stratified; st != nil {
		add("  stratified K=%d: SE from %d batches (t, %d df); batch SE %.2g (4√(K/3)/K² %.2g); MC at this N ± %.2g, %.0f× wider",
			st.Cells, st.Batches, st.DF, float64(st.BatchSE), float64(st.TheorySE), float64(st.BinomialSE), float64(st.Gain))
	} else {
		add("  estimator mc (hit-or-miss, binomial SE)")
	}
	if !math.IsNaN(float64(s.Slope)) {
		add("  convergence slope: SE ∝ N^%.2f (log-log; MC −0.50; stratified batch SE ∝ n^−0.75 across K)", float64(s.Slope))
	}
	add("")
	alive, counted := s.WorkersByStatus["alive"]
	if !counted { // a Summary made by hand
		for _, w := range s.WorkerTable {
			if w.Status == "alive" {
				alive++
			}
		}
	}
	anon := ""
	if s.Anonymous > 0 { // seed-style reports name no worker: count their batches
		anon = fmt.Sprintf(" + %d anonymous batch", s.Anonymous)
		if s.Anonymous > 1 {
			anon += "es"
		}
	}
	add("  N %s   %s samples/s   workers %d alive of %d%s", short(s.N.Float64()), short(float64(s.SamplesPerS)), alive, s.Workers, anon)
	target := "no target"
	if s.TargetSE > 0 {
		target = fmt.Sprintf("target SE %.2g, ETA %s", float64(s.TargetSE), eta(float64(s.ETASeconds)))
	}
	add("  %s   batches %d   rejected %d", target, s.Batches, s.Rejected)
	if r := float64(s.Checks.DispersionRatio); !math.IsNaN(r) {
		add("  checks: dispersion/binomial SE %.2f   χ² across workers p = %s", r, pval(float64(s.Checks.Chi2P)))
	}
	v := s.Verification
	entries := "entries"
	if v.Selected == 1 {
		entries = "entry"
	}
	add("  verified %d of %d %s chosen (%.2g of the samples)   quarantined %d", v.Verified, v.Selected, entries, float64(v.Cost), len(s.Quarantined))
	add("")
	flagged := len(s.Flagged) + len(s.Quarantined)
	graphRows := min(8, height-len(lines)-2-min(flagged, 3))
	if graphRows >= 3 {
		lines = append(lines, graph(hist, width-2, graphRows)...)
	}
	if flagged > 0 {
		add("%sflagged:%s", bold, reset)
		for _, w := range s.WorkerTable {
			if w.Flagged {
				add("  %s  π̂ %.8f  z %+.1f  %s", w.ID, float64(w.Pi), float64(w.Z), w.Why)
			}
		}
		for _, q := range s.Quarantined {
			add("  %s  %s at seq %d: claimed %d hits, replay %d; %d samples out", q.Worker, q.Reason, q.Seq, q.Got, q.Want, q.N)
		}
	}
	add("%sCtrl-C stops and prints the summary%s", dim, reset)
	return fit(lines, width, height)
}

// Digits formats pi with its certain decimal digits in bold and three more,
// dim, by collector.CertainDigits: the rule and the test table
// (collector/testdata/digits.json) the dashboard shares. "—" when pi is not
// a number.
func Digits(pi, lo, hi float64) string {
	d := collector.CertainDigits(pi, lo, hi)
	if d.Certain == "" && d.More == "" {
		return "—"
	}
	out := dim + d.More + reset
	if d.Certain != "" {
		out = bold + d.Certain + reset + out
	}
	return out
}

// graph draws |π̂ − π| (*) and the standard error (·) against log N, on a
// log scale: converging means the stars fall with the dots.
func graph(hist []collector.Point, width, rows int) []string {
	cols := width - 10
	if len(hist) < 2 || cols < 10 {
		return nil
	}
	lo, hi := math.Log10(hist[0].N), math.Log10(hist[len(hist)-1].N)
	if hi <= lo {
		return nil
	}
	errs, ses := make([]float64, cols), make([]float64, cols)
	for i := range cols {
		errs[i], ses[i] = math.NaN(), math.NaN()
	}
	ymin, ymax := math.Inf(1), math.Inf(-1)
	for _, p := range hist {
		c := min(cols-1, int(float64(cols-1)*(math.Log10(p.N)-lo)/(hi-lo)))
		e, se := math.Log10(math.Abs(p.Pi-math.Pi)), math.Log10(p.StdErr)
		if math.IsInf(e, 0) || math.IsNaN(se) {
			continue
		}
		errs[c], ses[c] = e, se
		ymin, ymax = math.Min(ymin, math.Min(e, se)), math.Max(ymax, math.Max(e, se))
	}
	if math.IsInf(ymin, 0) || ymax <= ymin {
		return nil
	}
	grid := make([][]rune, rows)
	for r := range grid {
		grid[r] = []rune(strings.Repeat(" ", cols))
	}
	row := func(v float64) int { return int(math.Round(float64(rows-1) * (ymax - v) / (ymax - ymin))) }
	for c := range cols {
		if !math.IsNaN(ses[c]) {
			grid[row(ses[c])][c] = '·'
		}
		if !math.IsNaN(errs[c]) {
			grid[row(errs[c])][c] = '*'
		}
	}
	out := make([]string, 0, rows+1)
	for r, g := range grid {
		label := "        "
		switch r {
		case 0:
			label = fmt.Sprintf("%8.0e", math.Pow(10, ymax))
		case rows - 1:
			label = fmt.Sprintf("%8.0e", math.Pow(10, ymin))
		}
		out = append(out, label+" │"+string(g))
	}
	out = append(out, fmt.Sprintf("%s└ N %s … %s   * |π̂−π|   · SE", strings.Repeat(" ", 9), short(hist[0].N), short(hist[len(hist)-1].N)))
	return out
}

// fit cuts lines to height and each line to width visible columns.
func fit(lines []string, width, height int) []string {
	if len(lines) > height {
		lines = lines[:height]
	}
	for i, l := range lines {
		lines[i] = cut(l, width)
	}
	return lines
}

// cut shortens s to width visible columns, keeping escape sequences.
func cut(s string, width int) string {
	var b strings.Builder
	visible := 0
	for i := 0; i < len(s); {
		if s[i] == '\x1b' {
			j := strings.IndexByte(s[i:], 'm')
			if j < 0 {
				break
			}
			b.WriteString(s[i : i+j+1])
			i += j + 1
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if visible == width {
			b.WriteString(reset)
			break
		}
		b.WriteRune(r)
		visible++
		i += n
	}
	return b.String()
}

// Width returns the visible columns of s.
func Width(s string) int {
	n := 0
	for i := 0; i < len(s); {
		if s[i] == '\x1b' {
			j := strings.IndexByte(s[i:], 'm')
			if j < 0 {
				return n
			}
			i += j + 1
			continue
		}
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
		n++
	}
	return n
}

func short(x float64) string {
	switch {
	case math.IsNaN(x):
		return "—"
	case x >= 1e4:
		return fmt.Sprintf("%.3g", x)
	}
	return fmt.Sprintf("%.0f", x)
}

func elapsed(secs float64) string {
	return time.Duration(secs * float64(time.Second)).Round(time.Second).String()
}

func eta(secs float64) string {
	switch {
	case math.IsNaN(secs):
		return "—"
	case secs < 1:
		return "now"
	}
	return (time.Duration(secs * float64(time.Second))).Round(time.Second).String()
}

func pval(p float64) string {
	if math.IsNaN(p) {
		return "—"
	}
	return fmt.Sprintf("%.3g", p)
}
