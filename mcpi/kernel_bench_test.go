package mcpi

import (
	"testing"
	"time"
)

func BenchmarkKernel(b *testing.B) {
	for _, k := range Kernels() {
		b.Run(k.Name(), func(b *testing.B) {
			blk := benchBlock()
			const steps = 1 << 15
			for b.Loop() {
				k.fn(&blk, steps)
			}
			b.ReportMetric(float64(b.N)*steps*GroupLanes/b.Elapsed().Seconds(), "samples/s")
		})
	}
}

// BenchmarkCells is BenchmarkKernel for the stratified kernels, at K = 2¹⁵.
func BenchmarkCells(b *testing.B) {
	for _, k := range Kernels() {
		b.Run(k.Name(), func(b *testing.B) {
			blk := benchBlock()
			const steps = 1 << 15
			c := cellRun{w: 1 << 17, k: 15}
			for i := range GroupLanes {
				c.x[i] = uint64(i) << 17
			}
			for b.Loop() {
				k.cells(&blk, &c, steps)
			}
			b.ReportMetric(float64(b.N)*steps*GroupLanes/b.Elapsed().Seconds(), "samples/s")
		})
	}
}

// BenchmarkCellsRatio alternates the plain and the stratified kernel (K =
// 2¹⁵) call by call, so that a machine shared with other work slows both
// alike, and reports the stratified kernel's samples/s over the plain one's.
func BenchmarkCellsRatio(b *testing.B) {
	for _, k := range Kernels() {
		b.Run(k.Name(), func(b *testing.B) {
			blk := benchBlock()
			const steps = 1 << 13
			c := cellRun{w: 1 << 17, k: 15}
			var plain, cells time.Duration
			for b.Loop() {
				t0 := time.Now()
				k.fn(&blk, steps)
				t1 := time.Now()
				k.cells(&blk, &c, steps)
				t2 := time.Now()
				plain += t1.Sub(t0)
				cells += t2.Sub(t1)
			}
			b.ReportMetric(plain.Seconds()/cells.Seconds(), "cells/plain")
			b.ReportMetric(float64(b.N)*steps*GroupLanes/cells.Seconds(), "cells-samples/s")
			b.ReportMetric(float64(b.N)*steps*GroupLanes/plain.Seconds(), "plain-samples/s")
		})
	}
}

// benchBlock returns a group of lanes seeded as by seed 1.
func benchBlock() block {
	var blk block
	for i := range GroupLanes {
		blk.s[0][i], blk.s[1][i], blk.s[2][i], blk.s[3][i] = seedLane(1, i)
	}
	return blk
}
