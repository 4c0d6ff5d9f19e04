package bench

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/picluster/picluster/mcpi"
	"github.com/picluster/picluster/worker"
)

// BenchmarkBatch measures whole batches of 2²⁶ samples, seeding and threads included.
func BenchmarkBatch(b *testing.B) {
	for _, k := range mcpi.Kernels() {
		for _, threads := range []int{1, runtime.GOMAXPROCS(0)} {
			b.Run(fmt.Sprintf("kernel=%s/threads=%d", k, threads), func(b *testing.B) {
				batch := mcpi.Batch{Key: mcpi.Key{Seed: 1, Worker: "bench"}, N: 1 << 26}
				for b.Loop() {
					batch.Seq++
					worker.Hits(context.Background(), batch, k, threads)
				}
				b.ReportMetric(float64(b.N)*float64(batch.N)/b.Elapsed().Seconds(), "samples/s")
				b.ReportMetric(b.Elapsed().Seconds()*1e9/(float64(b.N)*float64(batch.N)), "ns/sample")
			})
		}
	}
}

func TestMeasure(t *testing.T) {
	r := Measure(context.Background(), mcpi.Generic, 1, 0)
	if r.Kernel != "go" || r.Threads != 1 || r.Samples != 0 {
		t.Errorf("zero-length measurement: %+v", r)
	}
	if CPUModel() == "" {
		t.Error("no CPU model")
	}
}
