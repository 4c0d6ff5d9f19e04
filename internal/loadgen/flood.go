package loadgen

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/picluster/picluster/internal/redisbus"
	"github.com/picluster/picluster/internal/wire"
)

// honestEvery is how often the honest worker of a flood appends an entry.
const honestEvery = 100 * time.Millisecond

// flood runs the flood: an honest worker appends throughout; first
// cfg.FloodPresence presence messages from ids that never report, then one
// entry from each of cfg.FloodIDs new workers. It measures the collector's
// RSS after each, and checks that the honest worker's N is exact.
func flood(ctx context.Context, cfg Config, j job, buses []*redisbus.Bus, honestBus *redisbus.Bus, w *watcher, redisPID int) (*Flood, error) {
	log := cfg.Log
	fl := &Flood{Presence: cfg.FloodPresence, IDs: cfg.FloodIDs, MaxWorkers: cfg.MaxWorkers}
	honest, err := startTrickle(ctx, honestBus, j, honestID, honestEvery, nil, w)
	if err != nil {
		return nil, err
	}
	defer honest.end()
	colCPU := startMeter(w.pid)
	settle(ctx, w.pid)
	fl.RSSBefore, _, _ = memory(w.pid)

	log.Info("flooding presence", "ids", cfg.FloodPresence)
	t := time.Now()
	at := time.Now()
	err = fanOut(ctx, buses, cfg.FloodPresence, func(bus *redisbus.Bus, i int) error {
		id := fmt.Sprintf("pr-%07d", i)
		return bus.Heartbeat(ctx, id, wire.EncodePresence(wire.Presence{Worker: id, Status: wire.Alive, At: at}))
	})
	if err != nil {
		return nil, err
	}
	fl.PresenceSeconds = time.Since(t).Seconds()
	settle(ctx, w.pid)
	fl.RSSPresence, _, _ = memory(w.pid)
	log.Info("presence flood done", "seconds", fl.PresenceSeconds, "collector_rss_mb", fl.RSSPresence>>20)

	log.Info("flooding report ids", "ids", cfg.FloodIDs)
	t = time.Now()
	err = fanOut(ctx, buses, cfg.FloodIDs, func(bus *redisbus.Bus, i int) error {
		id := fmt.Sprintf("fl-%07d", i)
		return bus.Append(ctx, id, []wire.Signed{j.entry(id, wire.WorkerKey(j.key, id), 1)})
	})
	if err != nil {
		return nil, err
	}
	fl.IDsSeconds = time.Since(t).Seconds()
	// Every stream is tracked, or refused at the cap (the honest one is
	// tracked already).
	want := min(cfg.FloodIDs+1, cfg.MaxWorkers)
	if _, ok := w.until(ctx, 10*time.Minute, func(s apiState) bool { return s.Page.Total >= want }); !ok {
		log.Warn("the collector did not take every flood id within 10 minutes", "want", want, "tracked", w.state().Page.Total)
	}
	settle(ctx, w.pid)
	fl.RSSIDs, _, _ = memory(w.pid)
	log.Info("report-id flood done", "seconds", fl.IDsSeconds, "collector_rss_mb", fl.RSSIDs>>20)

	seqs, err := honest.end()
	if err != nil {
		return nil, err
	}
	fl.HonestEntries, fl.HonestN = seqs, seqs*cfg.N
	s, _ := w.until(ctx, time.Minute, func(s apiState) bool { r, _ := s.row(honestID); return r.Seq >= seqs })
	r, _ := s.row(honestID)
	fl.HonestCredited = r.N
	fl.HonestExact = r.N == fl.HonestN && r.Entries == seqs && r.Gaps == 0
	fl.Tracked = s.Page.Total
	fl.Refused = s.RejectedBy[string(wire.TooMany)]
	_, fl.RSSPeak, _ = memory(w.pid)
	fl.CollectorCPU = colCPU.cores()
	if redisPID != 0 {
		fl.RedisRSS, _, _ = memory(redisPID)
	}
	return fl, nil
}

// fanOut calls fn(bus, i) for i in [0, count), spread over the buses, one
// goroutine each, and returns the first error.
func fanOut(ctx context.Context, buses []*redisbus.Bus, count int, fn func(*redisbus.Bus, int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, len(buses))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for b, bus := range buses {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < count && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				if err := fn(bus, i); err != nil {
					errs[b] = err
					cancel()
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return ctx.Err()
}

// settle waits until process pid has used less than a tenth of a core for
// a second (it has worked through what it was sent), for at most a minute.
func settle(ctx context.Context, pid int) {
	deadline := time.Now().Add(time.Minute)
	for quiet := 0; quiet < 2 && time.Now().Before(deadline); {
		m := startMeter(pid)
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
		if m.cores() < 0.1 {
			quiet++
		} else {
			quiet = 0
		}
	}
}
