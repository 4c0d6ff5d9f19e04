package mcpi

import (
	"fmt"
	"sync"
)

// blocks recycles the lanes' state of GroupHitsStop: a batch of 2³⁰
// samples makes 256 of them.
var blocks = sync.Pool{New: func() any { return new(block) }}

const (
	// Lanes is the number of independent generator streams of every batch.
	// Lane i draws ⌊n/Lanes⌋ points, plus one when i < n mod Lanes.
	Lanes = GroupLanes * Groups // 8192
	// GroupLanes is the number of lanes one kernel call advances together:
	// four AVX-512 registers' worth, so a vector kernel holds them in
	// registers and has enough independent work to hide latency.
	GroupLanes = 32
	// Groups is the unit of parallelism: a batch can use up to Groups threads.
	Groups = 256
)

// block is the state of one group's lanes, structure of arrays, so that a
// vector kernel loads eight lanes' s0 with one instruction.
type block struct {
	s [4][GroupLanes]uint64
}

// Batch is n samples drawn under one Key. Its zero value is invalid.
//
// Cells, when not 0, makes it a stratified batch (the package doc's
// "Stratified batches"): one point in each of the Cells × Cells equal cells
// of the square, so N must be Cells², and Cells must pass ValidCells. Zero
// is plain Monte Carlo.
type Batch struct {
	Key
	N     uint64
	Cells uint64
}

// Estimator returns MC or Stratified.
func (b Batch) Estimator() string {
	if b.Cells != 0 {
		return Stratified
	}
	return MC
}

// GroupHits draws the points of lanes [g·GroupLanes, (g+1)·GroupLanes) of the
// batch with kernel k and returns how many fell inside. The hits of a batch
// are the sum of GroupHits over g in [0, Groups), in any order, on any
// goroutines: that is how a batch is split across threads. It allocates
// nothing.
func (b Batch) GroupHits(g int, k Kernel) uint64 {
	h, _ := b.GroupHitsStop(g, k, nil)
	return h
}

// ChunkSteps is the most steps (GroupLanes points each, 2¹⁹ points in all)
// one kernel call takes: BenchmarkKernel (2¹⁵ steps a call) puts a chunk at
// about 0.2 ms on AVX-512 and 1.3 ms on the pure-Go kernel on a 2026 Xeon
// core, far under 10 ms. An assembly call cannot be preempted,
// so a stop-the-world pause or a cancellation waits for at most one chunk.
const ChunkSteps = 1 << 14

// GroupHitsStop is GroupHits that asks stop, when not nil, before every
// chunk of ChunkSteps steps and gives up, returning false, when it returns
// true. The hits do not depend on the chunking.
func (b Batch) GroupHitsStop(g int, k Kernel, stop func() bool) (uint64, bool) {
	if b.Cells != 0 {
		return b.stratifiedGroupHits(g, k, stop)
	}
	steps, extra := b.N/Lanes, int(b.N%Lanes) // lanes below extra draw one more point
	first := g * GroupLanes
	if steps == 0 && first >= extra {
		return 0, true
	}
	blk := b.seeded(first)
	defer blocks.Put(blk)
	var misses uint64
	for left := steps; left > 0; { // the kernel leaves each lane's state advanced: chunks continue it
		if stop != nil && stop() {
			return 0, false
		}
		c := min(left, ChunkSteps)
		misses += k.fn(blk, c)
		left -= c
	}
	for i := 0; i < GroupLanes && first+i < extra; i++ {
		misses += stepLane(blk, i)
	}
	return uint64(GroupLanes)*steps + uint64(max(0, min(GroupLanes, extra-first))) - misses, true
}

// seeded returns a block from the pool with the lanes first, first+1, …
// of b seeded; put it back when done. (The kernel's indirect call would
// move a local block to the heap.)
func (b Batch) seeded(first int) *block {
	blk := blocks.Get().(*block)
	base := b.base()
	for i := range GroupLanes {
		blk.s[0][i], blk.s[1][i], blk.s[2][i], blk.s[3][i] = seedLane(base, first+i)
	}
	return blk
}

// Hits returns the batch's hits, computed group by group on this goroutine.
func (b Batch) Hits(k Kernel) uint64 {
	var hits uint64
	for g := range Groups {
		hits += b.GroupHits(g, k)
	}
	return hits
}

// String returns the batch's key and size, for logs.
func (b Batch) String() string {
	if b.Cells != 0 {
		return fmt.Sprintf("batch %s#%d seed %016x n %d stratified %d×%d", b.Worker, b.Seq, b.Seed, b.N, b.Cells, b.Cells)
	}
	return fmt.Sprintf("batch %s#%d seed %016x n %d", b.Worker, b.Seq, b.Seed, b.N)
}
