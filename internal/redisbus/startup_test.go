package redisbus_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/internal/redistest"
	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

// TestStartupScale measures how long a collector takes to load a job of K
// workers from a real redis-server: first with no checkpoint (every
// stream read from its start), then restarted from the checkpoint the
// first one saved. It runs only when PICLUSTER_STARTUP=K is set:
//
//	PICLUSTER_STARTUP=100000 go test ./internal/redisbus -run StartupScale -v
func TestStartupScale(t *testing.T) {
	k, _ := strconv.Atoi(os.Getenv("PICLUSTER_STARTUP"))
	if k <= 0 {
		t.Skip("set PICLUSTER_STARTUP=K to measure a collector's start with K workers' history")
	}
	srv := redistest.Start(t)
	bus := open(t, srv, "startup")
	ctx := t.Context()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	newCollector := func(name string) *collector.Collector {
		c, err := collector.New(bus, collector.Config{Channel: "startup", Name: name, VerifyFraction: 1e-9, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// A collector makes the job; then K workers append two entries each.
	first := newCollector("first")
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- first.Run(runCtx) }()
	<-first.Loaded()
	stop()
	<-done
	b, err := bus.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st, err := wire.DecodeState(b)
	if err != nil {
		t.Fatal(err)
	}
	seed, err := wire.ParseSeed(st.Seed)
	if err != nil {
		t.Fatal(err)
	}
	const n = 1024
	t0 := time.Now()
	var wg sync.WaitGroup
	work := make(chan int)
	for range 32 {
		wg.Go(func() {
			for i := range work {
				id := fmt.Sprintf("worker-%06d", i)
				var es []wire.Signed
				for seq := uint64(1); seq <= 2; seq++ { // true hits: the collector replays the job's first entry
					hits := mcpi.Batch{Key: mcpi.Key{Seed: seed, Worker: id, Seq: seq}, N: n}.Hits(mcpi.Pick())
					es = append(es, wire.Signed{Payload: wire.EncodeEntry(wire.Entry{Job: st.Job, Seed: st.Seed, Worker: id, Seq: seq, N: n, Hits: hits, Kernel: "go", Seconds: 0.1})})
				}
				if err := bus.Append(ctx, id, es); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for i := range k {
		work <- i
	}
	close(work)
	wg.Wait()
	t.Logf("%d workers' streams written in %v", k, time.Since(t0).Round(time.Millisecond))

	load := func(name string) time.Duration {
		c := newCollector(name)
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- c.Run(runCtx) }()
		<-c.Loaded()
		took := time.Since(start)
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		for c.Snapshot().Sweep == 0 { // the final read's time follows the reader's sweeps
			time.Sleep(100 * time.Millisecond)
		}
		t1 := time.Now()
		stop()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("%s: Run returned %v, want context.Canceled after a complete final read", name, err)
		}
		final := time.Since(t1)
		if s := c.Summary(); s.Workers != k || s.N != mcpi.CountOf(uint64(2*k*n)) {
			t.Fatalf("%s: %d workers, N %v; want %d and %d", name, s.Workers, s.N, k, 2*k*n)
		}
		t.Logf("%s: job loaded after %v (heap %d MB); stopped, with its final read, in %v", name, took.Round(time.Millisecond), after.HeapAlloc>>20, final.Round(time.Millisecond))
		return took
	}
	load("fresh")           // no checkpoint of these entries: every stream read from its start
	load("from-checkpoint") // the fresh collector's final checkpoint holds every credit
}
