package mcpi

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.json from the current kernels")

// inside is the mathematical definition of a hit, computed with big integers.
func inside(x, y uint64) bool {
	bx, by := new(big.Int).SetUint64(x), new(big.Int).SetUint64(y)
	s := new(big.Int).Add(bx.Mul(bx, bx), by.Mul(by, by))
	return s.Cmp(new(big.Int).Lsh(big.NewInt(1), 64)) < 0
}

// hitByCarry is the kernels' test of a point: x² + y² does not carry out of 64 bits.
func hitByCarry(x, y uint64) bool {
	return x*x+y*y >= x*x
}

func TestCarryTestIsExact(t *testing.T) {
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	edge := []uint64{0, 1, 1<<32 - 1, 1 << 31, 3037000499, 3037000500}
	var pts [][2]uint64
	for _, x := range edge {
		for _, y := range edge {
			pts = append(pts, [2]uint64{x, y})
		}
	}
	for range 100000 {
		x := r.Uint64N(1 << 32)
		// y on or near the arc, where an inexact test would go wrong.
		yf := math.Sqrt(math.Max(0, 0x1p64-float64(x)*float64(x)))
		y := uint64(math.Min(yf, 1<<32-1))
		for d := uint64(0); d < 3; d++ {
			if y >= d && y-d < 1<<32 {
				pts = append(pts, [2]uint64{x, y - d})
			}
			if y+d < 1<<32 {
				pts = append(pts, [2]uint64{x, y + d})
			}
		}
		pts = append(pts, [2]uint64{x, r.Uint64N(1 << 32)})
	}
	for _, p := range pts {
		if got, want := hitByCarry(p[0], p[1]), inside(p[0], p[1]); got != want {
			t.Fatalf("point (%d, %d): carry test says %v, exact says %v", p[0], p[1], got, want)
		}
	}
}

// TestDiscretisationBias counts the lattice exactly at small widths with the
// kernels' own test on scaled coordinates, checks the count against an
// independent one (for each x, the y with y² < M² − x²), and checks that the
// relative bias is 4/(πM) up to the lattice error term, |bias − 4/(πM)| ≤
// M^(−4/3); at M = 2³² that bounds the bias below 1e-9.
func TestDiscretisationBias(t *testing.T) {
	for w := 4; w <= 12; w++ {
		m := uint64(1) << w
		shift := 32 - w
		var hits, want uint64
		for x := range m {
			for y := range m {
				if hitByCarry(x<<shift, y<<shift) {
					hits++
				}
			}
			r := m*m - x*x // y² < r: y ≤ isqrt(r−1)
			want += new(big.Int).Sqrt(new(big.Int).SetUint64(r-1)).Uint64() + 1
		}
		if hits != want {
			t.Errorf("M=2^%d: kernel test counts %d lattice hits, exact count %d", w, hits, want)
		}
		bias := float64(hits)/float64(m*m)/(math.Pi/4) - 1
		lead, bound := 4/(math.Pi*float64(m)), math.Pow(float64(m), -4.0/3)
		t.Logf("M=2^%-2d hits=%-8d relative bias=%.4e  4/(πM)=%.4e", w, hits, bias, lead)
		if math.Abs(bias-lead) > bound {
			t.Errorf("M=2^%d: bias %.4e differs from 4/(πM) = %.4e by more than M^(-4/3) = %.1e", w, bias, lead, bound)
		}
	}
	m := 0x1p32
	if b := 4/(math.Pi*m) + math.Pow(m, -4.0/3); b >= 1e-9 {
		t.Errorf("bias bound at M=2^32 = %.3e, want < 1e-9", b)
	}
}

// TestKernelsMatchDefinition checks every kernel against stepLane, lane by
// lane, on random states and step counts.
func TestKernelsMatchDefinition(t *testing.T) {
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	for _, k := range Kernels() {
		t.Run(k.Name(), func(t *testing.T) {
			for range 20 {
				var a block
				for i := range GroupLanes {
					a.s[0][i], a.s[1][i], a.s[2][i], a.s[3][i] = r.Uint64(), r.Uint64(), r.Uint64(), r.Uint64()
				}
				b := a
				steps := r.Uint64N(300)
				var want uint64
				for i := range GroupLanes {
					for range steps {
						want += stepLane(&a, i)
					}
				}
				if got := k.fn(&b, steps); got != want || a != b {
					t.Fatalf("%d steps: misses %d, want %d; states equal: %v", steps, got, want, a == b)
				}
			}
		})
	}
}

func TestBatchSizes(t *testing.T) {
	key := Key{Seed: 42, Worker: "w", Seq: 1}
	for _, n := range []uint64{1, 2, 31, 32, 33, Lanes - 1, Lanes, Lanes + 1, 3*Lanes + 17} {
		b := Batch{Key: key, N: n}
		// The reference: every lane stepped one point at a time with stepLane.
		steps, extra := n/Lanes, n%Lanes
		var misses uint64
		base := key.base()
		for i := range Lanes {
			var blk block
			blk.s[0][0], blk.s[1][0], blk.s[2][0], blk.s[3][0] = seedLane(base, i)
			k := steps
			if uint64(i) < extra {
				k++
			}
			for range k {
				misses += stepLane(&blk, 0)
			}
		}
		for _, k := range Kernels() {
			if got, want := b.Hits(k), n-misses; got != want {
				t.Errorf("n=%d kernel %s: hits %d, want %d", n, k, got, want)
			}
		}
	}
}

type goldenKey struct {
	Seed   uint64 `json:"seed"`
	Worker string `json:"worker"`
	Seq    uint64 `json:"seq"`
	N      uint64 `json:"n"`
	Hits   uint64 `json:"hits"`
}

// TestGolden pins the hits of fixed keys: a change here changes every replayed
// batch, and must be deliberate (go test ./mcpi -run Golden -update).
func TestGolden(t *testing.T) {
	path := filepath.Join("testdata", "golden.json")
	keys := []goldenKey{
		{Seed: 0, Worker: "", Seq: 0, N: 1},
		{Seed: 1, Worker: "node7-41235-9f2c", Seq: 1, N: 1000},
		{Seed: 0xc0ffee1234567890, Worker: "node7-41235-9f2c", Seq: 13, N: 1 << 20},
		{Seed: 0xc0ffee1234567890, Worker: "node7-41235-9f2c", Seq: 14, N: 1<<20 + 12345},
		{Seed: 7, Worker: "python", Seq: 1, N: 10_000_000},
	}
	for i := range keys {
		g := &keys[i]
		g.Hits = Batch{Key: Key{Seed: g.Seed, Worker: g.Worker, Seq: g.Seq}, N: g.N}.Hits(Generic)
	}
	checkGolden(t, path, keys)
}

// checkGolden compares got with the JSON array in path, key by key, or writes
// it there with -update.
func checkGolden[K comparable](t *testing.T, path string, got []K) {
	t.Helper()
	if *update {
		b, _ := json.MarshalIndent(got, "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want []K
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if len(want) != len(got) {
		t.Fatalf("%s has %d keys, the test %d; run with -update", path, len(want), len(got))
	}
	for i, w := range want {
		if got[i] != w {
			t.Errorf("key %d: got %+v, want %+v", i, got[i], w)
			continue
		}
		t.Logf("%s/%s: %+v, as golden", runtime.GOOS, runtime.GOARCH, w)
	}
}

func TestCount(t *testing.T) {
	max := CountOf(math.MaxUint64)
	sum := max.Add(max).Add(CountOf(2)) // 2⁶⁵
	if got, want := sum.String(), "36893488147419103232"; got != want {
		t.Errorf("2^65 = %s, want %s", got, want)
	}
	if got := sum.Sub(max).Sub(max); got != CountOf(2) {
		t.Errorf("sub: got %v, want 2", got)
	}
	if got, want := sum.Float64(), 0x1p65; got != want {
		t.Errorf("Float64 = %g, want %g", got, want)
	}
	b, _ := json.Marshal(sum)
	var back Count
	if err := json.Unmarshal(b, &back); err != nil || back != sum {
		t.Errorf("JSON round trip: %s -> %v (%v)", b, back, err)
	}
	for _, bad := range []string{"-1", "1.5", "340282366920938463463374607431768211456", `"1"`} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("Unmarshal(%s) accepted", bad)
		}
	}
	if sum.Cmp(max) != 1 || max.Cmp(sum) != -1 || sum.Cmp(sum) != 0 {
		t.Error("Cmp is wrong")
	}
}

func TestTally(t *testing.T) {
	tt := TallyOf(1000000, 785398)
	if got, want := tt.Pi(), 3.141592; math.Abs(got-want) > 1e-12 {
		t.Errorf("Pi = %v, want %v", got, want)
	}
	p := 0.785398
	if got, want := tt.StdErr(), 4*math.Sqrt(p*(1-p)/1e6); math.Abs(got-want) > 1e-15 {
		t.Errorf("StdErr = %v, want %v", got, want)
	}
	lo, hi := tt.CI95()
	if math.Abs((hi-lo)/2-1.959963984540054*tt.StdErr()) > 1e-12 {
		t.Errorf("CI95 half-width %v, want 1.96 SE", (hi-lo)/2)
	}
	if !math.IsNaN(Tally{}.Pi()) {
		t.Error("empty tally should have NaN estimate")
	}
}

// TestKernelsAgreeOnBatches draws random keys and sizes (1, around the lane
// count, and up to tens of millions) and checks that every kernel gives the
// same hits.
func TestKernelsAgreeOnBatches(t *testing.T) {
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 2))
	sizes := []uint64{1, 2, Lanes - 1, Lanes + 1, 1 << 25}
	for range 40 {
		sizes = append(sizes, r.Uint64N(1<<r.IntN(22)+1)+1)
	}
	ks := Kernels()
	for _, n := range sizes {
		b := Batch{Key: Key{Seed: r.Uint64(), Worker: fmt.Sprint("w", r.IntN(1000)), Seq: r.Uint64N(1 << 40)}, N: n}
		want := b.Hits(ks[0])
		for _, k := range ks[1:] {
			if got := b.Hits(k); got != want {
				t.Fatalf("%v: kernel %s %d hits, kernel %s %d", b, k, got, ks[0], want)
			}
		}
	}
}

func TestParseKernel(t *testing.T) {
	for _, name := range []string{"auto", "", "go"} {
		if _, err := ParseKernel(name); err != nil {
			t.Errorf("ParseKernel(%q): %v", name, err)
		}
	}
	if _, err := ParseKernel("sse9"); err == nil {
		t.Error("unknown kernel accepted")
	}
	for _, k := range Kernels() {
		if got, err := ParseKernel(k.Name()); err != nil || got.Name() != k.Name() {
			t.Errorf("ParseKernel(%q) = %v, %v", k.Name(), got, err)
		}
	}
}
