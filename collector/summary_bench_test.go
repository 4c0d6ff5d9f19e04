package collector_test

import (
	"fmt"
	"testing"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/internal/membus"
	"github.com/picluster/picluster/internal/wire"
)

// BenchmarkSummary builds the summary of a job of 10⁵ workers, as every
// view does several times a second.
func BenchmarkSummary(b *testing.B) {
	for _, workers := range []int{1000, 100_000} {
		b.Run(fmt.Sprint(workers, "workers"), func(b *testing.B) {
			c := newCollector(b, membus.New(), collector.Config{MaxWorkers: workers})
			c.SetJob(statsJob)
			es := make([]wire.LedgerEntry, workers)
			for w := range es {
				e := wire.Entry{Job: statsJob.Job, Seed: statsJob.Seed, Worker: fmt.Sprint("w", w), Seq: 1, N: 1 << 20, Hits: 823550 + uint64(w%1000), Kernel: "go", Seconds: 0.1}
				es[w] = wire.LedgerEntry{Worker: e.Worker, ID: fmt.Sprintf("1-%d", w), Payload: wire.EncodeEntry(e)}
			}
			c.Credit(es...)
			if s := c.Summary(); s.Workers != workers {
				b.Fatalf("%d workers credited", s.Workers)
			}
			for b.Loop() {
				_ = c.Summary()
			}
		})
	}
}
