package bench

import (
	"context"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/picluster/picluster/mcpi"
	"github.com/picluster/picluster/worker"
)

// Result is one measurement, in the shape `picluster bench --json` prints.
type Result struct {
	Kernel string `json:"kernel"`
	// Estimator is mcpi.MC or mcpi.Stratified (then Cells is K).
	Estimator   string  `json:"estimator"`
	Cells       uint64  `json:"cells,omitempty"`
	Threads     int     `json:"threads"`
	SamplesPerS float64 `json:"samples_per_s"`
	NsPerSample float64 `json:"ns_per_sample"`
	Samples     uint64  `json:"samples"`
	Seconds     float64 `json:"seconds"`
}

// BatchSize is the size of the batches Measure draws: large enough that
// seeding and thread start-up are below 0.1 % of the time.
const BatchSize = 1 << 28

// Measure draws whole batches with k on threads goroutines, as a worker
// does, until d has passed, and returns the rate. It stops early, with what
// it has, when ctx is done.
func Measure(ctx context.Context, k mcpi.Kernel, threads int, d time.Duration) Result {
	return measure(ctx, mcpi.Batch{Key: mcpi.Key{Seed: 1, Worker: "bench"}, N: BatchSize}, k, threads, d)
}

// MeasureCells is Measure for stratified batches of cells × cells points
// (mcpi.ValidCells).
func MeasureCells(ctx context.Context, k mcpi.Kernel, threads int, d time.Duration, cells uint64) Result {
	return measure(ctx, mcpi.Batch{Key: mcpi.Key{Seed: 1, Worker: "bench"}, N: cells * cells, Cells: cells}, k, threads, d)
}

func measure(ctx context.Context, b mcpi.Batch, k mcpi.Kernel, threads int, d time.Duration) Result {
	warm := b
	if warm.Cells == 0 {
		warm.N /= 16
	}
	worker.Hits(ctx, warm, k, threads) // warm up: page in, spin up the threads
	var n uint64
	start := time.Now()
	for time.Since(start) < d {
		b.Seq++
		if _, ok := worker.Hits(ctx, b, k, threads); !ok {
			break
		}
		n += b.N
	}
	secs := time.Since(start).Seconds()
	r := Result{Kernel: k.Name(), Estimator: b.Estimator(), Cells: b.Cells, Threads: threads, Samples: n, Seconds: secs}
	if n > 0 {
		r.SamplesPerS = float64(n) / secs
		r.NsPerSample = secs * 1e9 / float64(n)
	}
	return r
}

// CPUModel returns the processor's name as the OS reports it, or the
// architecture when it cannot tell.
func CPUModel() string {
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				return strings.TrimSpace(v)
			}
		}
	}
	return runtime.GOARCH
}
