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

// BenchmarkSnapshot builds the snapshot of a job of 10⁵ workers, 500 of
// them changed since the last build, as a running collector does every
// tick at 2,000 entries a second.
func BenchmarkSnapshot(b *testing.B) {
	const workers, changed = 100_000, 500
	c := newCollector(b, membus.New(), collector.Config{MaxWorkers: workers})
	c.SetJob(statsJob)
	entry := func(w int, seq uint64) wire.LedgerEntry {
		e := wire.Entry{Job: statsJob.Job, Seed: statsJob.Seed, Worker: fmt.Sprint("w", w), Seq: seq, N: 1 << 20, Hits: 823550 + uint64(w%1000), Kernel: "go", Seconds: 0.1}
		return wire.LedgerEntry{Worker: e.Worker, ID: fmt.Sprintf("%d-%d", seq, w), Payload: wire.EncodeEntry(e)}
	}
	es := make([]wire.LedgerEntry, workers)
	for w := range es {
		es[w] = entry(w, 1)
	}
	c.Credit(es...)
	c.Snapshot()
	seq := uint64(1)
	for b.Loop() {
		b.StopTimer()
		seq++
		es = es[:0]
		for i := range changed {
			es = append(es, entry(i*(workers/changed), seq))
		}
		c.Credit(es...)
		b.StartTimer()
		c.Rebuild()
	}
}
