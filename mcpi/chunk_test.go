package mcpi

import "testing"

// GroupHits calls the kernel in chunks of at most ChunkSteps steps, and the
// hits are those of one call over every step.
func TestChunkedKernelCalls(t *testing.T) {
	for _, k := range Kernels() {
		t.Run(k.Name(), func(t *testing.T) {
			var calls []uint64
			counting := Kernel{name: k.name, fn: func(b *block, steps uint64) uint64 {
				calls = append(calls, steps)
				return k.fn(b, steps)
			}}
			b := Batch{Key: Key{Seed: 7, Worker: "w", Seq: 3}, N: Lanes*(2*ChunkSteps+5) + 17}
			got := b.GroupHits(0, counting)
			if len(calls) != 3 || calls[0] != ChunkSteps || calls[1] != ChunkSteps || calls[2] != 5 {
				t.Fatalf("kernel calls of %v steps, want %d, %d, 5", calls, ChunkSteps, ChunkSteps)
			}
			// One call over every step, as before chunking.
			steps := b.N / Lanes
			var blk block
			base := b.base()
			for i := range GroupLanes {
				blk.s[0][i], blk.s[1][i], blk.s[2][i], blk.s[3][i] = seedLane(base, i)
			}
			misses := k.fn(&blk, steps)
			for i := 0; i < GroupLanes && i < 17; i++ {
				misses += stepLane(&blk, i)
			}
			if want := GroupLanes*steps + 17 - misses; got != want {
				t.Fatalf("chunked hits %d, one call %d", got, want)
			}
		})
	}
}

// GroupHitsStop asks stop before every chunk and gives up when told.
func TestGroupHitsStop(t *testing.T) {
	b := Batch{Key: Key{Seed: 7, Worker: "w", Seq: 3}, N: Lanes * 3 * ChunkSteps}
	asked := 0
	if _, ok := b.GroupHitsStop(0, Generic, func() bool { asked++; return asked == 2 }); ok || asked != 2 {
		t.Fatalf("ok %v after %d questions, want false after 2", ok, asked)
	}
	h, ok := b.GroupHitsStop(0, Generic, func() bool { return false })
	if !ok || h != b.GroupHits(0, Generic) {
		t.Fatalf("GroupHitsStop = %d, %v; GroupHits = %d", h, ok, b.GroupHits(0, Generic))
	}
}
