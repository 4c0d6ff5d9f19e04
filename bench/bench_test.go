package bench

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/picluster/picluster/mcpi"
)

// hits computes b on threads goroutines, as a worker does.
func hits(b mcpi.Batch, k mcpi.Kernel, threads int) uint64 {
	var next atomic.Int64
	var total atomic.Uint64
	var wg sync.WaitGroup
	for range threads {
		wg.Go(func() {
			var h uint64
			for g := next.Add(1) - 1; g < mcpi.Groups; g = next.Add(1) - 1 {
				h += b.GroupHits(int(g), k)
			}
			total.Add(h)
		})
	}
	wg.Wait()
	return total.Load()
}

// BenchmarkBatch measures whole batches of 2²⁶ samples, seeding included.
func BenchmarkBatch(b *testing.B) {
	for _, k := range mcpi.Kernels() {
		for _, threads := range []int{1, runtime.GOMAXPROCS(0)} {
			b.Run(fmt.Sprintf("kernel=%s/threads=%d", k, threads), func(b *testing.B) {
				batch := mcpi.Batch{Key: mcpi.Key{Seed: 1, Worker: "bench"}, N: 1 << 26}
				for b.Loop() {
					batch.Seq++
					hits(batch, k, threads)
				}
				b.ReportMetric(float64(b.N)*float64(batch.N)/b.Elapsed().Seconds(), "samples/s")
				b.ReportMetric(b.Elapsed().Seconds()*1e9/(float64(b.N)*float64(batch.N)), "ns/sample")
			})
		}
	}
}
