package mcpi

import "testing"

// GroupHits allocates nothing (once its pool holds a block), as its doc says.
func TestGroupHitsAllocatesNothing(t *testing.T) {
	b := Batch{Key: Key{Seed: 1, Worker: "w", Seq: 1}, N: 1 << 16}
	k := Pick()
	b.GroupHits(0, k)
	if got := testing.AllocsPerRun(100, func() { b.GroupHits(0, k) }); got != 0 {
		t.Errorf("GroupHits allocates %v times a call", got)
	}
}
