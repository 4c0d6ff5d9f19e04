package tui

import (
	"encoding/json"
	"math"
	"os"
	"strconv"
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

// The live view renders the shared digits table (collector/testdata/digits.json):
// the certain digits bold, the next three dim.
func TestDigits(t *testing.T) {
	b, err := os.ReadFile("../../collector/testdata/digits.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Why           string
		Pi, Lo, Hi    any
		Certain, More string
	}
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatal(err)
	}
	num := func(v any) float64 {
		if s, ok := v.(string); ok {
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
		return v.(float64)
	}
	for _, tt := range cases {
		want := dim + tt.More + reset
		if tt.Certain != "" {
			want = bold + tt.Certain + reset + want
		}
		if tt.Certain == "" && tt.More == "" {
			want = "—"
		}
		if got := Digits(num(tt.Pi), num(tt.Lo), num(tt.Hi)); got != want {
			t.Errorf("%s: Digits(%v, %v, %v) = %q, want %q", tt.Why, tt.Pi, tt.Lo, tt.Hi, got, want)
		}
	}
}

// Anonymous (seed-style) reporters name no worker; the view counts their
// batches beside the workers.
func TestRenderAnonymous(t *testing.T) {
	s, hist := summary()
	for _, tt := range []struct {
		anon uint64
		want string
	}{{0, "workers 2 alive of 2\n"}, {1, "workers 2 alive of 2 + 1 anonymous batch\n"}, {7, "workers 2 alive of 2 + 7 anonymous batches\n"},
		{1, "of 1 entry chosen"}, {7, "of 7 entries chosen"}} {
		s.Anonymous = tt.anon
		s.Verification.Selected = tt.anon // the count words agree here too
		if view := strings.Join(Render(s, hist, 120, 24), "\n"); !strings.Contains(view, tt.want) {
			t.Errorf("%d anonymous batches: the view lacks %q:\n%s", tt.anon, tt.want, view)
		}
	}
}
