package mcpi

import (
	"flag"
	"math"
	"sync"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"
)

var long = flag.Bool("long", false, "run the long soundness checks (≥ 1e11 samples, minutes)")

// TestLongSoundness draws 1.1e11 samples with the fastest kernel and checks
// that π̂ is within 4 standard errors of π and that no group of lanes is off
// (χ² homogeneity across the 256 groups); then it draws 2¹⁷ points from
// every one of the 8192 lanes one at a time and runs the same test across
// lanes. Run with: go test ./mcpi -run LongSoundness -long -v -timeout 30m
func TestLongSoundness(t *testing.T) {
	if !*long {
		t.Skip("long check: run with -long")
	}
	k := Pick()
	const batches = 13
	const n = 1 << 33 // 8.6e9 a batch, 1.1e11 in all
	var groupHits [Groups]uint64
	var mu sync.Mutex
	var wg sync.WaitGroup
	var batchZ2 float64 // Σ z² of the batches: lanes of one batch must not move together
	var prevHits uint64
	for seq := uint64(1); seq <= batches; seq++ {
		b := Batch{Key: Key{Seed: 0x5eed, Worker: "long", Seq: seq}, N: n}
		next := make(chan int, Groups)
		for g := range Groups {
			next <- g
		}
		close(next)
		for range 2 {
			wg.Go(func() {
				for g := range next {
					h := b.GroupHits(g, k)
					mu.Lock()
					groupHits[g] += h
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		var h uint64
		for g := range Groups {
			h += groupHits[g]
		}
		this := TallyOf(n, h-prevHits)
		prevHits = h
		z := (this.Pi() - math.Pi) / this.StdErr()
		batchZ2 += z * z
	}
	t.Logf("variance of the %d batches' z: %.2f (χ² p = %.3f)", batches, batchZ2/batches, distuv.ChiSquared{K: batches}.Survival(batchZ2))
	var hits uint64
	for _, h := range groupHits {
		hits += h
	}
	total := TallyOf(batches*n, hits)
	z := (total.Pi() - math.Pi) / total.StdErr()
	t.Logf("kernel %s: N = %.3g, π̂ = %.10f ± %.2g, z = %.2f", k, float64(batches*n), total.Pi(), total.StdErr(), z)
	if math.Abs(z) >= 4 {
		t.Errorf("|π̂ − π| = %.2f SE, want < 4", math.Abs(z))
	}
	per := float64(batches * n / Groups)
	chi2Test(t, "groups", groupHits[:], per, total.P())

	// One lane at a time, with the definition itself.
	const steps = 1 << 17
	laneHits := make([]uint64, Lanes)
	base := Key{Seed: 0x5eed, Worker: "lanes", Seq: 1}.base()
	var all uint64
	for i := range Lanes {
		var blk block
		blk.s[0][0], blk.s[1][0], blk.s[2][0], blk.s[3][0] = seedLane(base, i)
		var misses uint64
		for range steps {
			misses += stepLane(&blk, 0)
		}
		laneHits[i] = steps - misses
		all += laneHits[i]
	}
	chi2Test(t, "lanes", laneHits, steps, float64(all)/float64(Lanes*steps))
}

// chi2Test checks that the cells' hit counts, each out of n draws, are
// homogeneous around p: Σ (h − np)² / (np(1−p)) ~ χ²(cells − 1).
func chi2Test(t *testing.T, what string, hits []uint64, n, p float64) {
	t.Helper()
	var chi2, worst float64
	for _, h := range hits {
		d := (float64(h) - n*p) / math.Sqrt(n*p*(1-p))
		chi2 += d * d
		worst = max(worst, math.Abs(d))
	}
	df := float64(len(hits) - 1)
	pv := distuv.ChiSquared{K: df}.Survival(chi2)
	t.Logf("χ² across %d %s: %.1f on %.0f df, p = %.3f; largest |z| = %.2f", len(hits), what, chi2, df, pv, worst)
	if pv < 1e-6 || pv > 1-1e-6 {
		t.Errorf("χ² across %s: p = %g, the %s are not homogeneous", what, pv, what)
	}
}
