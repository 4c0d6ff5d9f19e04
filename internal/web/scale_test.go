//go:build unix

package web

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/internal/membus"
	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

// TestScale is the harness behind README's figures at 10⁵ workers, not a
// check: it runs only when PICLUSTER_SCALE is set (to the number of
// workers, 100000 for the figures) and logs what it measures.
//
//	PICLUSTER_SCALE=100000 go test ./internal/web -run Scale -v -timeout 10m
//
// In one process: a collector over the in-memory bus credits one ledger
// entry of each of the workers, then PICLUSTER_SCALE_RATE entries a second
// (default 2000) of random ones, while 10 event streams read and one client
// polls /api/state and another /metrics, each at 10 Hz, for
// PICLUSTER_SCALE_SECONDS (default 20). Probe workers append an entry every
// 250 ms and time it into the snapshot. It logs the snapshots' build and
// lock times, the endpoints' latency percentiles and sizes, the probes'
// delay, the process's peak RSS and heap, and its CPU (the clients', the
// in-memory Redis's and the collector's together), and how long a stream
// that never reads is kept over loopback TCP.
func TestScale(t *testing.T) {
	env := func(name string, def int) int {
		if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
			return v
		}
		return def
	}
	workers := env("PICLUSTER_SCALE", 0)
	if workers == 0 {
		t.Skip("the scale harness: set PICLUSTER_SCALE=100000 to run it (see README, Performance)")
	}
	rate, seconds := env("PICLUSTER_SCALE_RATE", 2000), env("PICLUSTER_SCALE_SECONDS", 20)
	const n, probes, streams = 4096, 8, 10

	// The job, and every entry the harness appends but the probes', drawn
	// and signed before the collector starts, so that the harness's own
	// sampling neither competes with the collector nor leaves its garbage
	// in the process's RSS.
	bus := membus.New()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	st := wire.State{Status: wire.Running, Job: "00000000000005ca", Seed: wire.FormatSeed(0x5ca1e), MaxN: wire.MaxEntryN}
	if err := bus.SetState(ctx, wire.EncodeState(st)); err != nil {
		t.Fatal(err)
	}
	seed, _ := wire.ParseSeed(st.Seed)
	k := mcpi.Pick()
	signed := func(worker string, seq uint64) wire.Signed {
		h := mcpi.Batch{Key: mcpi.Key{Seed: seed, Worker: worker, Seq: seq}, N: n}.Hits(k)
		return wire.Signed{Payload: wire.EncodeEntry(wire.Entry{Job: st.Job, Seed: st.Seed, Worker: worker, Seq: seq, N: n, Hits: h, Kernel: k.Name(), Seconds: 0.5 + float64(len(worker)%7)/10})}
	}
	id := func(i int) string { return fmt.Sprintf("worker-%06d", i) }
	type entry struct {
		worker string
		e      wire.Signed
	}
	// The load: rate entries a second, of random workers, in batches every 10 ms.
	first, load := make([]entry, workers), make([]entry, 0, rate*seconds+rate)
	{
		for i := range first {
			first[i] = entry{id(i), signed(id(i), 1)}
		}
		r := rand.New(rand.NewPCG(1, 2))
		seqs := make([]uint64, workers)
		for range cap(load) {
			i := r.IntN(workers)
			seqs[i]++
			load = append(load, entry{id(i), signed(id(i), seqs[i]+1)})
		}
	}
	runtime.GC()
	debug.FreeOSMemory()
	t.Logf("%d + %d entries drawn; the process before the collector: %s", len(first), len(load), rss())

	c, err := collector.New(bus, collector.Config{Channel: "scale", MaxWorkers: workers + probes, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-c.Loaded()

	start := time.Now()
	for i, e := range first {
		if err := bus.Append(ctx, e.worker, []wire.Signed{e.e}); err != nil {
			t.Fatal(err)
		}
		first[i] = entry{}
	}
	waitFor(t, func() bool { return c.Snapshot().Workers >= workers })
	t.Logf("%d workers credited and in the snapshot after %v; %s", workers, time.Since(start).Round(time.Millisecond), rss())

	var wg sync.WaitGroup
	defer wg.Wait()

	runCtx, stop := context.WithTimeout(ctx, time.Duration(seconds)*time.Second)
	defer stop()
	wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for next := 0; ; {
			select {
			case <-runCtx.Done():
				return
			case <-tick.C:
			}
			for range max(1, rate/100) {
				if next < len(load) {
					_ = bus.Append(ctx, load[next].worker, []wire.Signed{load[next].e})
					load[next] = entry{}
					next++
				}
			}
		}
	})

	// The server, 10 streams that read, and one that never does.
	h := Handler(c, quiet)
	stalled := make(chan time.Duration, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		began := time.Now()
		h.ServeHTTP(w, r)
		if r.Header.Get("X-Stalled") != "" {
			stalled <- time.Since(began)
		}
	}))
	srv.Config.ConnContext = ConnContext
	srv.Start()
	defer srv.Close()
	var streamed sync.Map
	for i := range streams {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(runCtx, "GET", srv.URL+"/api/events", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 1<<20), 1<<24)
			events, bytes := 0, 0
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "data: ") {
					events++
					bytes += len(sc.Text())
				}
			}
			streamed.Store(i, [2]int{events, bytes})
		})
	}
	{
		req, _ := http.NewRequestWithContext(runCtx, "GET", srv.URL+"/api/events", nil)
		req.Header.Set("X-Stalled", "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close() // never read
	}

	// Pollers: /api/state and /metrics at 10 Hz each.
	type sample struct {
		d    time.Duration
		size int
	}
	poll := func(path string, out *[]sample) {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-tick.C:
			}
			t0 := time.Now()
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				t.Error(err)
				return
			}
			b, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			*out = append(*out, sample{time.Since(t0), int(b)})
		}
	}
	var states, metrics []sample
	wg.Go(func() { poll("/api/state", &states) })
	wg.Go(func() { poll("/metrics", &metrics) })

	// Probes: an entry every 250 ms, timed until the snapshot has it.
	var delays []time.Duration
	wg.Go(func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for p := 0; ; p++ {
			select {
			case <-runCtx.Done():
				return
			case <-tick.C:
			}
			worker, seq := fmt.Sprintf("probe-%d", p%probes), uint64(p/probes+1)
			t0 := time.Now()
			_ = bus.Append(ctx, worker, []wire.Signed{signed(worker, seq)})
			for runCtx.Err() == nil {
				s := c.Snapshot()
				if w, ok := s.Worker(worker); ok && w.Seq >= seq {
					delays = append(delays, time.Since(t0))
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	})

	// The snapshots built meanwhile.
	var builds, locks, sweeps []time.Duration
	var copied []int
	wg.Go(func() {
		var last uint64
		for runCtx.Err() == nil {
			if s := c.Snapshot(); s.Seq != last {
				last = s.Seq
				builds, locks, copied = append(builds, s.Build), append(locks, s.Lock), append(copied, s.Copied)
				if len(sweeps) == 0 || sweeps[len(sweeps)-1] != s.Sweep {
					sweeps = append(sweeps, s.Sweep)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	if path := os.Getenv("PICLUSTER_SCALE_HEAP"); path != "" { // the base for pprof -base: what the run allocates
		if f, err := os.Create(path + ".start"); err == nil {
			_ = pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	wall0 := time.Now()
	<-runCtx.Done()
	wall := time.Since(wall0)
	var ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	wg.Wait()
	cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * time.Nanosecond

	pct := func(ds []time.Duration, p float64) time.Duration {
		if len(ds) == 0 {
			return 0
		}
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[min(len(s)-1, int(p*float64(len(s))))].Round(100 * time.Microsecond)
	}
	lat := func(ss []sample) (ds []time.Duration, size int) {
		for _, s := range ss {
			ds = append(ds, s.d)
			size = max(size, s.size)
		}
		return ds, size
	}
	snap := c.Snapshot()
	t.Logf("%d workers, %d entries/s of load for %v; %d snapshots, seq %d", snap.Workers, rate, wall.Round(time.Millisecond), len(builds), snap.Seq)
	t.Logf("snapshot build: p50 %v p99 %v max %v; lock held: p50 %v p99 %v max %v; rows copied per build p50 %d",
		pct(builds, .5), pct(builds, .99), pct(builds, 1), pct(locks, .5), pct(locks, .99), pct(locks, 1), pctInt(copied, .5))
	t.Logf("sweeps of every stream (the reader's, distinct durations seen): %d, p50 %v max %v", len(sweeps), pct(sweeps, .5), pct(sweeps, 1))
	ds, size := lat(states)
	t.Logf("/api/state (%d B): %d requests, p50 %v p99 %v max %v", size, len(ds), pct(ds, .5), pct(ds, .99), pct(ds, 1))
	ds, size = lat(metrics)
	t.Logf("/metrics (%d B): %d requests, p50 %v p99 %v max %v", size, len(ds), pct(ds, .5), pct(ds, .99), pct(ds, 1))
	streamed.Range(func(k, v any) bool {
		if k.(int) == 0 {
			ev := v.([2]int)
			t.Logf("stream 1 of %d: %d events, %d B each", streams, ev[0], ev[1]/max(ev[0], 1))
		}
		return true
	})
	t.Logf("a probe entry reaches the snapshot in: p50 %v p99 %v max %v (%d probes)", pct(delays, .5), pct(delays, .99), pct(delays, 1), len(delays))
	select {
	case d := <-stalled:
		t.Logf("a stream that never reads was dropped after %v", d.Round(10*time.Millisecond))
	default:
		t.Logf("a stream that never reads was still held after %v", wall.Round(time.Second))
	}
	if path := os.Getenv("PICLUSTER_SCALE_HEAP"); path != "" {
		if f, err := os.Create(path); err == nil {
			runtime.GC()
			_ = pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	runtime.GC()
	heap := heapByOwner()
	t.Logf("live heap by owner (from the heap profile, after a GC): collector and its HTTP server %d MB, in-memory bus %d MB, harness (load, clients) %d MB, unattributed %d MB",
		heap["collector"]>>20, heap["bus"]>>20, heap["harness"]>>20, heap["other"]>>20)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("process CPU %.2f cores over the run (everything in this process, clients too); heap in use %d MB, Go sys %d MB, %s",
		cpu.Seconds()/wall.Seconds(), ms.HeapInuse>>20, ms.Sys>>20, rss())
}

// heapByOwner sums the heap in use by who allocated it, from the runtime's
// heap profile, scaled as pprof scales its samples: "bus" (a frame in
// internal/membus), "collector" (a frame in the collector, its HTTP
// server or its metrics), "harness" (the test's own: its load and
// clients), "other".
func heapByOwner() map[string]uint64 {
	var recs []runtime.MemProfileRecord
	for n := 1024; ; n *= 2 {
		recs = make([]runtime.MemProfileRecord, n)
		if got, ok := runtime.MemProfile(recs, false); ok {
			recs = recs[:got]
			break
		}
	}
	rate := float64(runtime.MemProfileRate)
	out := map[string]uint64{}
	for _, r := range recs {
		count, size := float64(r.InUseObjects()), float64(r.InUseBytes())
		if count == 0 {
			continue
		}
		scale := 1 / (1 - math.Exp(-size/count/rate))
		owner := "other"
		frames := runtime.CallersFrames(r.Stack())
		var names []string
		for {
			f, more := frames.Next()
			names = append(names, f.Function)
			if !more {
				break
			}
		}
		all := strings.Join(names, " ")
		switch {
		case strings.Contains(all, "/internal/membus."):
			owner = "bus"
		case strings.Contains(all, "picluster/collector.") || strings.Contains(all, "net/http.(*conn)") ||
			strings.Contains(all, "/internal/web.(*encoder)") || strings.Contains(all, "prometheus"):
			owner = "collector"
		case strings.Contains(all, "TestScale"):
			owner = "harness"
		}
		out[owner] += uint64(size * scale)
	}
	return out
}

func pctInt(xs []int, p float64) int {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// rss reads the process's resident set, now and at its peak, on Linux.
func rss() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "RSS unknown"
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") || strings.HasPrefix(line, "VmHWM:") {
			out = append(out, strings.Join(strings.Fields(line), " "))
		}
	}
	return strings.Join(out, ", ")
}
