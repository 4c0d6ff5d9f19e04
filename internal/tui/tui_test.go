package tui

import (
	"math"
	"strings"
	"testing"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/mcpi"
)

func summary() (collector.Summary, []collector.Point) {
	t := mcpi.TallyOf(1e10, 7853981634)
	lo, hi := t.CI95()
	s := collector.Summary{Channel: "pi_collector", N: t.N, Hits: t.Hits, Pi: collector.Float(t.Pi()),
		StdErr: collector.Float(t.StdErr()), CI95: [2]collector.Float{collector.Float(lo), collector.Float(hi)},
		Workers: 2, Seconds: 12, SamplesPerS: 8e9, TargetSE: 1e-6, ETASeconds: 42,
		Checks:      collector.Checks{DispersionRatio: 1.01, Chi2P: 0.4},
		Flagged:     []string{"bad"},
		WorkerTable: []collector.WorkerStats{{ID: "good", Status: "alive"}, {ID: "bad", Status: "alive", Flagged: true, Why: "|z| > 5", Pi: 3.2, Z: 9}},
	}
	var hist []collector.Point
	for i := range 100 {
		n := math.Pow(10, 4+6*float64(i)/99)
		se := 1.64 / math.Sqrt(n)
		hist = append(hist, collector.Point{N: n, Pi: math.Pi + se*math.Sin(float64(i)), StdErr: se})
	}
	return s, hist
}

func TestRenderFits(t *testing.T) {
	s, hist := summary()
	for _, size := range [][2]int{{80, 24}, {40, 8}, {200, 60}, {10, 3}} {
		lines := Render(s, hist, size[0], size[1])
		w, h := max(size[0], 40), max(size[1], 8)
		if len(lines) > h {
			t.Errorf("%v: %d lines", size, len(lines))
		}
		for _, l := range lines {
			if Width(l) > w {
				t.Errorf("%v: line of %d columns: %q", size, Width(l), l)
			}
		}
	}
	view := strings.Join(Render(s, hist, 80, 24), "\n")
	for _, want := range []string{"π ≈", "95 % interval", "samples/s", "ETA 42s", "flagged", "bad", "|π̂−π|"} {
		if !strings.Contains(view, want) {
			t.Errorf("80×24 view lacks %q:\n%s", want, view)
		}
	}
}

func TestDigits(t *testing.T) {
	got := Digits(3.14159265, 3.141581, 3.141599) // both ends read 3.1415…
	if want := bold + "3.1415" + reset + dim + "927" + reset; got != want {
		t.Errorf("Digits = %q, want %q", got, want)
	}
	if got := Digits(3.1, 2.9, 3.3); !strings.HasPrefix(got, bold+"3"+reset) {
		t.Errorf("no certain decimal: %q", got)
	}
}
