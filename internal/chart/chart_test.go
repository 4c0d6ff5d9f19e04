package chart

import (
	"bytes"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/picluster/picluster/collector"
)

func TestWritePNG(t *testing.T) {
	var pts []collector.Point
	for i := range 50 {
		n := math.Pow(2, float64(10+i/2))
		se := 1.64 / math.Sqrt(n)
		pts = append(pts, collector.Point{N: n, Pi: math.Pi + se*math.Sin(float64(i)), StdErr: se})
	}
	path := filepath.Join(t.TempDir(), "p.png")
	if err := WritePNG(path, "test", pts); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if r := img.Bounds(); r.Dx() < 500 || r.Dy() < 500 {
		t.Errorf("image %v is too small to read", r)
	}
	if err := WritePNG(path, "test", nil); err == nil {
		t.Error("a plot of nothing succeeded")
	}
}

// A stratified job's first point has no SE yet (one batch, no scatter):
// the plot draws the rest.
func TestWritePNGFirstPointWithoutSE(t *testing.T) {
	pts := []collector.Point{{N: 65536, Pi: 3.1415, StdErr: math.NaN()}}
	for b := 2; b <= 40; b++ {
		n := float64(b) * 65536
		se := 4.9e-4 / math.Sqrt(float64(b))
		pts = append(pts, collector.Point{N: n, Pi: math.Pi + se*math.Sin(float64(b)), StdErr: se})
	}
	if err := WritePNG(filepath.Join(t.TempDir(), "p.png"), "stratified", pts); err != nil {
		t.Fatal(err)
	}
	if s := collector.Slope(pts); math.Abs(s+0.5) > 0.01 {
		t.Errorf("slope %.3f, want −0.5", s)
	}
}
