package mcpi

import (
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// TestCellKernelsMatchDefinition checks every stratified kernel against
// stepCell, lane by lane, on random states, columns, rows, widths and step
// counts.
func TestCellKernelsMatchDefinition(t *testing.T) {
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 3))
	for _, k := range Kernels() {
		t.Run(k.Name(), func(t *testing.T) {
			for range 40 {
				lg := uint64(7 + r.IntN(10))
				w := uint64(1) << (32 - lg)
				steps := r.Uint64N(min(300, uint64(1)<<lg)) // a run stays in one column, in the square
				var c cellRun
				c.w, c.k = w, lg
				c.y = r.Uint64N((1<<lg)-steps+1) * w
				var a block
				for i := range GroupLanes {
					a.s[0][i], a.s[1][i], a.s[2][i], a.s[3][i] = r.Uint64(), r.Uint64(), r.Uint64(), r.Uint64()
					c.x[i] = r.Uint64N(1<<lg) * w
				}
				b := a
				var want uint64
				for i := range GroupLanes {
					for s := range steps {
						want += stepCell(&a, i, c.x[i], c.y+s*w, lg)
					}
				}
				if got := k.cells(&b, &c, steps); got != want || a != b {
					t.Fatalf("K=2^%d, %d steps: misses %d, want %d; states equal: %v", lg, steps, got, want, a == b)
				}
			}
		})
	}
}

// TestCellsPartition checks that the lanes' cells cover the K×K grid
// exactly once, and that the lanes of a group share their row at every step.
func TestCellsPartition(t *testing.T) {
	for lg := uint64(7); lg <= 14; lg++ { // 2^15 and 2^16 follow the same branch as 2^14
		kk := uint64(1) << lg
		seen := make([]bool, kk*kk)
		steps := kk * kk / Lanes
		for l := range Lanes {
			for s := range steps {
				i, j := cellsOf(l, s, lg)
				if i >= kk || j >= kk || seen[i*kk+j] {
					t.Fatalf("K=2^%d lane %d step %d: cell (%d, %d) out of the grid or seen twice", lg, l, s, i, j)
				}
				seen[i*kk+j] = true
				if _, j0 := cellsOf(l/GroupLanes*GroupLanes, s, lg); j0 != j {
					t.Fatalf("K=2^%d lane %d step %d: row %d, its group's first lane is in row %d", lg, l, s, j, j0)
				}
				if s > 0 && s%min(kk, steps) != 0 {
					if _, jp := cellsOf(l, s-1, lg); jp+1 != j {
						t.Fatalf("K=2^%d lane %d step %d: row %d after %d", lg, l, s, j, jp)
					}
				}
			}
		}
	}
}

// stratifiedReference draws batch b one point at a time with stepCell.
func stratifiedReference(b Batch) uint64 {
	lg := uint64(0)
	for 1<<lg < b.Cells {
		lg++
	}
	base := b.base()
	w := uint64(1) << (32 - lg)
	var misses uint64
	for l := range Lanes {
		var blk block
		blk.s[0][0], blk.s[1][0], blk.s[2][0], blk.s[3][0] = seedLane(base, l)
		for s := range b.Cells * b.Cells / Lanes {
			i, j := cellsOf(l, s, lg)
			misses += stepCell(&blk, 0, i*w, j*w, lg)
		}
	}
	return b.N - misses
}

// TestStratifiedBatches checks every kernel against the one-point-at-a-time
// reference, and against each other on larger K, for random keys.
func TestStratifiedBatches(t *testing.T) {
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 4))
	ks := Kernels()
	for lg := 7; lg <= 15; lg++ {
		kk := uint64(1) << lg
		b := Batch{Key: Key{Seed: r.Uint64(), Worker: fmt.Sprint("w", r.IntN(1000)), Seq: r.Uint64N(1 << 40)}, N: kk * kk, Cells: kk}
		want := b.Hits(ks[0])
		if lg <= 11 || lg == 14 {
			if ref := stratifiedReference(b); ref != want {
				t.Fatalf("%v: kernel %s %d hits, reference %d", b, ks[0], want, ref)
			}
		}
		for _, k := range ks[1:] {
			if lg > 13 && k.Name() == "go" && testing.Short() {
				continue
			}
			if got := b.Hits(k); got != want {
				t.Fatalf("%v: kernel %s %d hits, kernel %s %d", b, k, got, ks[0], want)
			}
		}
	}
}

// TestStratifiedChunked: GroupHits calls the kernel in chunks, and a stop
// gives up between them.
func TestStratifiedChunked(t *testing.T) {
	b := Batch{Key: Key{Seed: 9, Worker: "w", Seq: 2}, N: 1 << 30, Cells: 1 << 15} // 2^15 steps a column, 4 columns a lane
	calls := 0
	counting := Kernel{name: "count", cells: func(blk *block, c *cellRun, steps uint64) uint64 {
		calls++
		if steps > ChunkSteps {
			t.Fatalf("a call of %d steps, more than ChunkSteps", steps)
		}
		return Generic.cells(blk, c, steps)
	}}
	got := b.GroupHits(3, counting)
	if want := b.GroupHits(3, Pick()); got != want {
		t.Fatalf("chunked hits %d, %s %d", got, Pick(), want)
	}
	if calls != 8 {
		t.Errorf("%d kernel calls, want 8 (4 columns of 2 chunks)", calls)
	}
	asked := 0
	if _, ok := b.GroupHitsStop(0, Generic, func() bool { asked++; return asked == 3 }); ok || asked != 3 {
		t.Errorf("ok %v after %d questions, want false after 3", ok, asked)
	}
}

// TestStratifiedUnbiased: with one point per cell and the cells partitioning
// the lattice, E[H] is the exact lattice count. At small widths it is
// computed exactly, cell by cell (the probability of a hit in a cell is its
// lattice hits over w²), and compared with the count of the whole lattice.
func TestStratifiedUnbiased(t *testing.T) {
	const m = 1 << 10 // lattice width
	for _, kk := range []uint64{4, 16, 64} {
		w := m / kk
		var sum, whole uint64 // Σ over cells of lattice hits, the lattice's hits
		for i := range kk {
			for j := range kk {
				for x := i * w; x < (i+1)*w; x++ {
					for y := j * w; y < (j+1)*w; y++ {
						if hitByCarry(x<<22, y<<22) {
							sum++
						}
					}
				}
			}
		}
		for x := uint64(0); x < m; x++ {
			r := m*m - x*x
			whole += new(big.Int).Sqrt(new(big.Int).SetUint64(r-1)).Uint64() + 1
		}
		if sum != whole {
			t.Errorf("K=%d: E[H]·w² = %d, lattice hits %d", kk, sum, whole)
		}
	}
}

// cellVariance returns Σ a(1 − a) over the K×K cells of the unit square,
// a the area fraction of a cell inside the unit circle: the variance of the
// hits of a stratified batch, up to the lattice's discreteness.
func cellVariance(kk uint64) float64 {
	f := func(x float64) float64 { // ∫₀ˣ √(1 − t²) dt
		x = min(max(x, 0), 1)
		return (x*math.Sqrt(1-x*x) + math.Asin(x)) / 2
	}
	h := 1 / float64(kk)
	var v float64
	for i := range kk {
		x0, x1 := float64(i)*h, float64(i+1)*h
		for j := range kk {
			y0, y1 := float64(j)*h, float64(j+1)*h
			if x0*x0+y0*y0 >= 1 || x1*x1+y1*y1 <= 1 {
				continue // wholly outside or inside
			}
			a1 := math.Sqrt(max(1-y1*y1, 0)) // the circle is above y1 left of a1
			a0 := math.Sqrt(max(1-y0*y0, 0)) // and below y0 right of a0
			lo, hi := max(x0, a1), min(x1, a0)
			area := max(min(x1, a1)-x0, 0) * h
			if hi > lo {
				area += f(hi) - f(lo) - y0*(hi-lo)
			}
			a := area / (h * h)
			v += a * (1 - a)
		}
	}
	return v
}

// TestStratifiedVariance checks the variance of the hits of one batch over
// 400 batches at K = 2^7 … 2^9 against Σ a(1 − a) over the cells: the ratio
// must be within 20 %, about 3.5 standard errors of a variance from 400
// draws. It logs the ratio of that variance to the rougher K/3 (package doc).
func TestStratifiedVariance(t *testing.T) {
	for lg := 7; lg <= 9; lg++ {
		kk := uint64(1) << lg
		var s, ss float64
		const reps = 400
		for seq := range uint64(reps) {
			h := Batch{Key: Key{Seed: 0x5eed, Worker: "var", Seq: seq + 1}, N: kk * kk, Cells: kk}.Hits(Pick())
			d := float64(h) - math.Pi/4*float64(kk*kk)
			s += d
			ss += d * d
		}
		v := (ss - s*s/reps) / (reps - 1)
		exact := cellVariance(kk)
		t.Logf("K=2^%d: Var(H) = %.1f, Σa(1−a) = %.1f (%.4f·K), ratio %.3f", lg, v, exact, exact/float64(kk), v/exact)
		if r := v / exact; r < 0.8 || r > 1.2 {
			t.Errorf("K=2^%d: Var(H)/Σa(1−a) = %.3f, want 0.8 … 1.2", lg, r)
		}
	}
}

func TestValidCells(t *testing.T) {
	for _, k := range []uint64{128, 1024, 1 << 15, 1 << 16} {
		if err := ValidCells(k); err != nil {
			t.Errorf("ValidCells(%d): %v", k, err)
		}
	}
	for _, k := range []uint64{0, 1, 64, 100, 1000, 1 << 17} {
		if ValidCells(k) == nil {
			t.Errorf("ValidCells(%d) accepted", k)
		}
	}
}

// TestStratifiedGolden pins the hits of fixed stratified keys (go test ./mcpi
// -run StratifiedGolden -update).
func TestStratifiedGolden(t *testing.T) {
	path := filepath.Join("testdata", "golden_stratified.json")
	type gk struct {
		goldenKey
		Cells uint64 `json:"cells"`
	}
	keys := []gk{
		{goldenKey{Seed: 0, Worker: "", Seq: 0}, 1 << 7},
		{goldenKey{Seed: 1, Worker: "node7-41235-9f2c", Seq: 1}, 1 << 10},
		{goldenKey{Seed: 0xc0ffee1234567890, Worker: "node7-41235-9f2c", Seq: 13}, 1 << 12},
		{goldenKey{Seed: 7, Worker: "python", Seq: 1}, 1 << 14},
	}
	for i := range keys {
		g := &keys[i]
		g.N = g.Cells * g.Cells
		g.Hits = Batch{Key: Key{Seed: g.Seed, Worker: g.Worker, Seq: g.Seq}, N: g.N, Cells: g.Cells}.Hits(Generic)
	}
	checkGolden(t, path, keys)
}

// batchSE returns the standard deviation of the estimate 4H/K² of one
// stratified batch of K = 2^lg, measured over reps batches.
func batchSE(lg int, reps uint64, hits func(Batch) uint64) float64 {
	kk := uint64(1) << lg
	var s, ss float64
	for seq := range reps {
		h := hits(Batch{Key: Key{Seed: 0x4a7e, Worker: "rate", Seq: seq + 1}, N: kk * kk, Cells: kk})
		d := float64(h) - math.Pi/4*float64(kk*kk)
		s += d
		ss += d * d
	}
	v := (ss - s*s/float64(reps)) / float64(reps-1)
	return 4 * math.Sqrt(v) / float64(kk*kk)
}

// TestStratifiedRate measures the per-batch SE at K = 2^7 … 2^11 (300
// batches each, seed 0x4a7e, worker "rate") and checks that its exponent
// in n = K² is −3/4 ± 0.05, as 4·√(K/3)/K² predicts. The full range,
// K = 2^8 … 2^15, is bench's TestStratifiedRate (go test ./bench -run StratifiedRate -strat.rate -v).
func TestStratifiedRate(t *testing.T) {
	var ns, ses []float64
	for lg := 7; lg <= 11; lg++ {
		kk := uint64(1) << lg
		se := batchSE(lg, 300, func(b Batch) uint64 { return b.Hits(Pick()) })
		ns, ses = append(ns, float64(kk*kk)), append(ses, se)
		t.Logf("K=2^%-2d n=%-8d batch SE %.4g, 4√(K/3)/K² %.4g, ratio %.3f", lg, kk*kk, se, StratifiedSE(kk), se/StratifiedSE(kk))
	}
	slope := LogSlope(ns, ses)
	t.Logf("fitted exponent of the batch SE in n: %.3f (want −0.75 ± 0.05)", slope)
	if math.Abs(slope+0.75) > 0.05 {
		t.Errorf("exponent %.3f, want −0.75 ± 0.05", slope)
	}
}
