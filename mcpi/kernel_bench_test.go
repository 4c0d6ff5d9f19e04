package mcpi

import "testing"

func BenchmarkKernel(b *testing.B) {
	for _, k := range Kernels() {
		b.Run(k.Name(), func(b *testing.B) {
			var blk block
			for i := range GroupLanes {
				blk.s[0][i], blk.s[1][i], blk.s[2][i], blk.s[3][i] = seedLane(1, i)
			}
			const steps = 1 << 15
			for b.Loop() {
				k.fn(&blk, steps)
			}
			b.ReportMetric(float64(b.N)*steps*GroupLanes/b.Elapsed().Seconds(), "samples/s")
		})
	}
}
