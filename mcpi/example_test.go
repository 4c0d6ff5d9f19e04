package mcpi_test

import (
	"fmt"

	"github.com/picluster/picluster/mcpi"
)

// A batch is a pure function of its key and size: replaying it on any kernel
// gives the same hits.
func ExampleBatch() {
	b := mcpi.Batch{Key: mcpi.Key{Seed: 1, Worker: "node7", Seq: 1}, N: 1_000_000}
	hits := b.Hits(mcpi.Generic)
	t := mcpi.TallyOf(b.N, hits)
	fmt.Printf("hits %d, π ≈ %.4f ± %.4f\n", hits, t.Pi(), t.StdErr())
	fmt.Println(b.Hits(mcpi.Pick()) == hits)
	// Output:
	// hits 785268, π ≈ 3.1411 ± 0.0016
	// true
}

// Tallies add exactly, past 2⁶⁴.
func ExampleTally_Add() {
	big := mcpi.TallyOf(1<<63, 1<<62)
	sum := big.Add(big).Add(big)
	fmt.Println(sum.N, sum.Hits)
	// Output: 27670116110564327424 13835058055282163712
}
