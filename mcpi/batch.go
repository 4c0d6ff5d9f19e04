package mcpi

import "fmt"

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
type Batch struct {
	Key
	N uint64
}

// GroupHits draws the points of lanes [g·GroupLanes, (g+1)·GroupLanes) of the
// batch with kernel k and returns how many fell inside. The hits of a batch
// are the sum of GroupHits over g in [0, Groups), in any order, on any
// goroutines: that is how a batch is split across threads. It allocates
// nothing.
func (b Batch) GroupHits(g int, k Kernel) uint64 {
	steps, extra := b.N/Lanes, int(b.N%Lanes) // lanes below extra draw one more point
	first := g * GroupLanes
	if steps == 0 && first >= extra {
		return 0
	}
	var blk block
	base := b.base()
	for i := range GroupLanes {
		blk.s[0][i], blk.s[1][i], blk.s[2][i], blk.s[3][i] = seedLane(base, first+i)
	}
	var misses uint64
	if steps > 0 {
		misses = k.fn(&blk, steps)
	}
	for i := 0; i < GroupLanes && first+i < extra; i++ {
		misses += stepLane(&blk, i)
	}
	return uint64(GroupLanes)*steps + uint64(max(0, min(GroupLanes, extra-first))) - misses
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
	return fmt.Sprintf("batch %s#%d seed %016x n %d", b.Worker, b.Seq, b.Seed, b.N)
}
