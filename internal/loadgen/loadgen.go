package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/picluster/picluster/bench"
	"github.com/picluster/picluster/internal/redisbus"
	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

// Config configures a run. Every zero value has a documented default.
type Config struct {
	// RedisURL is the Redis to load, in any form redisbus.Open takes.
	// Empty with StartRedis.
	RedisURL string
	// StartRedis starts a redis-server of the run's own (from PATH, on a
	// free loopback port, persisting nothing) instead of RedisURL.
	StartRedis bool
	// TLS, when not nil, is used for RedisURL and passed on to the collector.
	TLS *redisbus.TLSFiles
	// Channel names the job. Default: loadgen-<8 random hex digits>. A
	// channel that holds a job already is refused: loadgen writes to and
	// then deletes the job's keys.
	Channel string
	// JobKey is the job key the entries are signed with. Default: a new
	// random one.
	JobKey []byte
	// Workers is how many workers are simulated. Default 100.
	Workers int
	// Rates are the total rates to offer, in entries per second, one step
	// each, in order, against the same collector. Default [1000].
	Rates []float64
	// Duration is how long each step lasts. Default 10s.
	Duration time.Duration
	// N is the samples of every entry: its hits are computed for real, so
	// small is cheap. Default 64.
	N uint64
	// Senders is how many goroutines append, each on connections of its
	// own. Default 8.
	Senders int
	// Bare is the bare reader the collector is measured against:
	// BareChannel (the default) or BareLedger.
	Bare string
	// MaxWorkers is the collector's --max-workers. Default 1,000,000, the
	// collector's own default.
	MaxWorkers int
	// FloodPresence and FloodIDs, when either is not zero, make the run a
	// flood instead of the steps: that many presence messages from as many
	// ids that never report, then one entry from each of FloodIDs new
	// workers, while one honest worker appends ten entries a second.
	FloodPresence, FloodIDs int
	// Collector is the command that runs a collector, to which the run
	// adds its flags. Default: this executable, "collector".
	Collector []string
	// Log receives the progress. Default: slog.Default().
	Log *slog.Logger
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.RedisURL == "" && !c.StartRedis:
		return errors.New("no Redis: give --redis URL (or REDIS_URL), or --start-redis")
	case c.RedisURL != "" && c.StartRedis:
		return errors.New("--start-redis and --redis: give one")
	case c.Workers < 0:
		return fmt.Errorf("--workers %d: want 1 or more", c.Workers)
	case c.N > wire.MaxEntryN:
		return fmt.Errorf("--n %d: at most %d", c.N, uint64(wire.MaxEntryN))
	case c.Senders < 0:
		return fmt.Errorf("--senders %d: want 1 or more", c.Senders)
	case c.MaxWorkers < 0 || c.FloodPresence < 0 || c.FloodIDs < 0:
		return errors.New("--max-workers, --flood-presence, --flood-ids: want ≥ 0")
	case c.Bare != "" && c.Bare != BareChannel && c.Bare != BareLedger:
		return fmt.Errorf("--bare %s: want %s or %s", c.Bare, BareChannel, BareLedger)
	case c.JobKey != nil && len(c.JobKey) < wire.MinKeyLen:
		return fmt.Errorf("job key: %d bytes, want at least %d", len(c.JobKey), wire.MinKeyLen)
	}
	for _, r := range c.Rates {
		if !(r > 0 && r < 1e9) {
			return fmt.Errorf("--rate %v: want entries per second > 0", r)
		}
	}
	if c.Channel != "" {
		return redisbus.ValidChannel(c.Channel)
	}
	return nil
}

func (c Config) withDefaults() (Config, error) {
	if c.Channel == "" {
		c.Channel = "loadgen-" + randomHex(4)
	}
	if c.JobKey == nil {
		c.JobKey = []byte(randomHex(32))
	}
	if c.Workers == 0 {
		c.Workers = 100
	}
	if len(c.Rates) == 0 {
		c.Rates = []float64{1000}
	}
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.N == 0 {
		c.N = 64
	}
	if c.Senders == 0 {
		c.Senders = 8
	}
	if c.MaxWorkers == 0 {
		c.MaxWorkers = 1_000_000
	}
	if c.Bare == "" {
		c.Bare = BareChannel
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Collector == nil {
		exe, err := os.Executable()
		if err != nil {
			return c, fmt.Errorf("find the picluster executable for the collector: %w", err)
		}
		c.Collector = []string{exe, "collector"}
	}
	return c, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// Result is what a run measured. Rates are entries per second, times
// seconds, memory bytes, CPU in cores (CPU seconds per second; -1 when
// unknown).
type Result struct {
	CPU      string  `json:"cpu"`      // this machine's CPU model
	CPUs     int     `json:"cpus"`     // logical CPUs
	LoadAvg  float64 `json:"load_avg"` // the 1-minute load average when the run started
	Redis    string  `json:"redis"`    // the Redis URL without its password, or "started" (--start-redis)
	Channel  string  `json:"channel"`  // the job's channel
	Workers  int     `json:"workers"`  // simulated workers
	N        uint64  `json:"n"`        // samples per entry
	Senders  int     `json:"senders"`  // appending goroutines, each with its own connections
	Bare     string  `json:"bare"`     // the bare reader: "channel" (a subscriber) or "ledger" (an XREAD reader of the streams)
	Steps    []Step  `json:"steps"`    // one per offered rate
	Highest  float64 `json:"highest"`  // the highest offered rate sustained (see Step.Sustained); 0 for none
	Appended uint64  `json:"appended"` // entries appended over the run, the probe's included
	// Credited is the collector's N over the samples of an entry at the
	// end, and Exact whether it equals Appended: every entry appended was
	// credited, once.
	Credited   uint64  `json:"credited"`
	Exact      bool    `json:"exact"`
	Rejected   uint64  `json:"rejected"`  // entries the collector refused
	Collector  Process `json:"collector"` // the collector's whole life
	Flood      *Flood  `json:"flood,omitempty"`
	LoadAvgEnd float64 `json:"load_avg_end"` // the 1-minute load average at the end
}

// Process is a child process's resource use over its life.
type Process struct {
	CPUSeconds float64 `json:"cpu_seconds"`
	MaxRSS     uint64  `json:"max_rss"`
	Exit       string  `json:"exit"` // how it ended: "exit status 0", "exit status 1", "signal: killed", …
}

// Step is one offered rate, measured over the same window for everyone.
type Step struct {
	Target float64 `json:"target"` // the offered rate
	Sent   float64 `json:"sent"`   // the rate appended, the probe's entries included
	Bare   float64 `json:"bare"`   // the rate the bare reader received (Result.Bare says which)
	Credit float64 `json:"credit"` // the rate the collector credited (its summary's accepted)
	Ratio  float64 `json:"ratio"`  // Credit / Bare
	Drops  uint64  `json:"drops"`  // the bare subscriber's lost subscriptions (BareChannel)
	// Drain is the time from the step's end until the collector had
	// credited every entry appended: the backlog it built. The next step
	// starts after it.
	Drain  float64 `json:"drain_seconds"`
	LagP50 float64 `json:"lag_p50"` // from a probe entry's append to its seq in /api/state
	LagP99 float64 `json:"lag_p99"`
	LagMax float64 `json:"lag_max"`
	Probes int     `json:"probes"` // probe entries timed
	// CollectorCPU, RedisCPU (when loadgen started Redis, -1 otherwise)
	// and LoadgenCPU are the cores each used during the step; RSS is the
	// collector's largest resident set seen during it.
	CollectorCPU float64 `json:"collector_cpu"`
	RedisCPU     float64 `json:"redis_cpu"`
	LoadgenCPU   float64 `json:"loadgen_cpu"`
	RSS          uint64  `json:"collector_rss"`
	LoadAvg      float64 `json:"load_avg"` // the 1-minute load average at the step's end
	// Sustained says the machine carried the offered rate: at least 95 %
	// of it was appended, and the bare subscriber received at least 95 %
	// of what was appended.
	Sustained bool `json:"sustained"`
}

// Flood is what a flood run measured.
type Flood struct {
	Presence        int     `json:"presence"`         // presence-only ids
	PresenceSeconds float64 `json:"presence_seconds"` // to publish them
	IDs             int     `json:"ids"`              // report ids: one entry each
	IDsSeconds      float64 `json:"ids_seconds"`      // to append them
	MaxWorkers      int     `json:"max_workers"`      // the collector's cap
	Tracked         int     `json:"tracked"`          // the workers the collector credits at the end
	Refused         uint64  `json:"refused"`          // streams refused past the cap (too_many_workers)
	// RSS: the collector's resident set before the flood, after the
	// presence flood, after the report ids, and its peak (VmHWM).
	RSSBefore   uint64 `json:"rss_before"`
	RSSPresence uint64 `json:"rss_presence"`
	RSSIDs      uint64 `json:"rss_ids"`
	RSSPeak     uint64 `json:"rss_peak"`
	// The honest worker: its entries appended, their samples, and what the
	// collector credits it.
	HonestEntries  uint64  `json:"honest_entries"`
	HonestN        uint64  `json:"honest_n"`
	HonestCredited uint64  `json:"honest_credited"`
	HonestExact    bool    `json:"honest_exact"`
	CollectorCPU   float64 `json:"collector_cpu"` // cores, over the flood
	RedisRSS       uint64  `json:"redis_rss"`     // the resident set of the Redis loadgen started, at the end; 0 for another
}

// Run runs the load (the steps, or the flood) and returns what it measured.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	log := cfg.Log
	dir, err := tempDir()
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	res := &Result{CPU: bench.CPUModel(), CPUs: runtime.NumCPU(), LoadAvg: loadAvg(), Channel: cfg.Channel,
		Workers: cfg.Workers, N: cfg.N, Senders: cfg.Senders, Bare: cfg.Bare}

	url := cfg.RedisURL
	var redisPID int
	if cfg.StartRedis {
		srv, u, err := startRedis(ctx, dir)
		if err != nil {
			return nil, err
		}
		defer func() { _, _, _ = srv.stop(5 * time.Second) }()
		url, redisPID, res.Redis = u, srv.pid(), "started"
		log.Info("started redis-server", "url", u, "pid", redisPID)
	} else {
		res.Redis = redisbus.Redact(url)
	}
	open := func() (*redisbus.Bus, error) {
		return redisbus.Open(url, cfg.Channel, redisbus.Options{TLS: cfg.TLS, Log: log})
	}
	ctl, err := open()
	if err != nil {
		return nil, err
	}
	defer ctl.Close()
	if st, err := ctl.State(ctx); err != nil {
		return nil, err
	} else if st != nil {
		return nil, fmt.Errorf("channel %s holds a job already: give --channel a new name (loadgen deletes its job's keys at the end)", cfg.Channel)
	}
	if !cfg.StartRedis {
		defer func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
			defer cancel()
			if err := ctl.Reset(rctx); err != nil {
				log.Warn("delete the job's keys", "channel", cfg.Channel, "err", err)
			}
		}()
	}

	col, addr, err := startCollector(ctx, cfg, url, dir)
	if err != nil {
		return nil, err
	}
	stopped := false
	stopCollector := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cpu, rss, err := col.stop(30 * time.Second)
		res.Collector = Process{CPUSeconds: cpu, MaxRSS: rss, Exit: col.cmd.ProcessState.String()}
		if err == nil && !col.cmd.ProcessState.Success() {
			log.Warn("the collector did not exit cleanly", "exit", res.Collector.Exit, "last_lines", col.tail.String())
		}
		return err
	}
	defer func() { _ = stopCollector() }()
	j, err := awaitJob(ctx, ctl, col, cfg)
	if err != nil {
		return nil, err
	}
	log.Info("collector up", "pid", col.pid(), "http", addr, "job", j.id, "channel", cfg.Channel)

	w := newWatcher(addr, col.pid())
	wctx, stopWatch := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopWatch()
	wg.Go(func() { w.run(wctx) })

	// The senders', and two more: the bare subscriber's and the probe's
	// (or the honest worker's).
	buses := make([]*redisbus.Bus, cfg.Senders+2)
	for i := range buses {
		if buses[i], err = open(); err != nil {
			return nil, err
		}
		defer buses[i].Close()
	}
	if cfg.FloodPresence > 0 || cfg.FloodIDs > 0 {
		res.Workers = 0
		res.Flood, err = flood(ctx, cfg, j, buses[:cfg.Senders], buses[cfg.Senders], w, redisPID)
	} else {
		err = steps(ctx, cfg, j, buses[:cfg.Senders], buses[cfg.Senders], buses[cfg.Senders+1], w, res, redisPID)
	}
	if err != nil {
		return res, err
	}
	res.LoadAvgEnd = loadAvg()
	return res, stopCollector()
}

// startCollector starts the collector, a child process, with the job key
// in a file of dir and the URL in its environment (not on its command
// line, where ps shows it), and returns it with the address of its HTTP
// server.
// maxWarnings is how many of the collector's warnings loadgen passes on.
const maxWarnings = 20

func startCollector(ctx context.Context, cfg Config, url, dir string) (*child, string, error) {
	keyFile := filepath.Join(dir, "job.key")
	if err := os.WriteFile(keyFile, cfg.JobKey, 0o600); err != nil {
		return nil, "", err
	}
	argv := append(slices.Clone(cfg.Collector), "--channel", cfg.Channel, "--key-file", keyFile,
		"--http", "127.0.0.1:0", "--interval", "1h")
	argv = append(argv, "--max-workers", fmt.Sprint(cfg.MaxWorkers))
	if t := cfg.TLS; t != nil {
		for _, f := range [][2]string{{"--tls-ca", t.CA}, {"--tls-cert", t.Cert}, {"--tls-key", t.Key}} {
			if f[1] != "" {
				argv = append(argv, f[0], f[1])
			}
		}
	}
	addrs := make(chan string, 1)
	dashboard := regexp.MustCompile(`dashboard on http://([^/\s]+)/`)
	warned := 0 // the collector's warnings passed on: a flood makes one per refused id
	c, err := startChild("collector", argv, []string{"REDIS_URL=" + url}, func(line string) {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			switch warned++; {
			case warned <= maxWarnings:
				cfg.Log.Warn("collector: " + line)
			case warned == maxWarnings+1:
				cfg.Log.Warn("collector: further warnings not shown", "shown", maxWarnings)
			}
		}
		if m := dashboard.FindStringSubmatch(line); m != nil {
			select {
			case addrs <- m[1]:
			default:
			}
		}
	})
	if err != nil {
		return nil, "", err
	}
	addr, err := waitFor(ctx, c, addrs, 30*time.Second, "dashboard address")
	if err != nil {
		_, _, _ = c.stop(5 * time.Second)
		return nil, "", err
	}
	return c, addr, nil
}

// awaitJob waits until the collector has created the job, and returns it.
func awaitJob(ctx context.Context, bus *redisbus.Bus, col *child, cfg Config) (job, error) {
	states := make(chan wire.State, 1)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for pctx.Err() == nil {
			if b, err := bus.State(pctx); err == nil && b != nil {
				if st, err := wire.DecodeState(b); err == nil && st.Job != "" {
					states <- st
					return
				}
			}
			select {
			case <-pctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	st, err := waitFor(ctx, col, states, 30*time.Second, "job state")
	if err != nil {
		return job{}, err
	}
	seed, err := wire.ParseSeed(st.Seed)
	if err != nil {
		return job{}, err
	}
	if !st.Secure {
		return job{}, fmt.Errorf("the collector's job is not in secure mode")
	}
	return job{id: st.Job, seed: seed, key: cfg.JobKey, n: cfg.N, kernel: mcpi.Pick()}, nil
}

// probeEvery is how often the probe worker appends an entry to time.
const probeEvery = 100 * time.Millisecond

// steps offers each rate in turn, while a bare subscriber counts what the
// channel carries and the probe worker times entries into the summary;
// then it waits until the collector has credited every entry.
func steps(ctx context.Context, cfg Config, j job, buses []*redisbus.Bus, probeBus, tapBus *redisbus.Bus, w *watcher, res *Result, redisPID int) error {
	log := cfg.Log
	f := newFleet(j, "lg-", cfg.Workers, buses)
	var received, drops atomic.Uint64
	tctx, stopTap := context.WithCancel(ctx)
	defer stopTap()
	tapErr := make(chan error, 1)
	if cfg.Bare == BareLedger {
		ids := []string{probeID}
		for _, w := range f.workers {
			ids = append(ids, w.id)
		}
		go func() { tapErr <- readLedger(tctx, tapBus, ids, &received) }()
	} else {
		go func() { tapErr <- tapBus.Tap(tctx, &received, &drops) }()
	}

	w.mu.Lock()
	w.probe = &probe{}
	w.mu.Unlock()
	probe, err := startTrickle(ctx, probeBus, j, probeID, probeEvery, w.appended, w)
	if err != nil {
		return err
	}
	defer probe.end()

	sent := func() uint64 { p, _ := w.probed(); return f.appended() + p }
	for i, rate := range cfg.Rates {
		log.Info("drawing entries", "step", i+1, "rate", rate, "duration", cfg.Duration)
		f.draw(rate, cfg.Duration)
		log.Info("offering", "step", i+1, "of", len(cfg.Rates), "rate", rate, "workers", cfg.Workers)
		colCPU, redisCPU, selfCPU := startMeter(w.pid), startMeter(redisPID), startMeter(0)
		w.resetMax()
		t0, sent0, bare0, acc0 := time.Now(), sent(), received.Load(), w.state().Accepted
		drops0 := drops.Load()
		if err := f.send(ctx, rate, cfg.Duration); err != nil {
			return err
		}
		t1, sent1, bare1, acc1 := time.Now(), sent(), received.Load(), w.state().Accepted
		secs := t1.Sub(t0).Seconds()
		st := Step{Target: rate, Sent: float64(sent1-sent0) / secs, Bare: float64(bare1-bare0) / secs,
			Credit: float64(acc1-acc0) / secs, Drops: drops.Load() - drops0,
			CollectorCPU: colCPU.cores(), RedisCPU: -1, LoadgenCPU: selfCPU.cores(), RSS: w.resetMax(), LoadAvg: loadAvg()}
		if redisPID != 0 {
			st.RedisCPU = redisCPU.cores()
		}
		if st.Bare > 0 {
			st.Ratio = st.Credit / st.Bare
		}
		// The next step starts once the collector has credited this one's
		// entries, and timed every probe entry of the window.
		want := new(big.Int).SetUint64(sent1 * cfg.N)
		probes, _ := w.probed()
		_, ok := w.until(ctx, 2*time.Minute, func(s apiState) bool {
			_, seen := w.probed()
			return s.n().Cmp(want) >= 0 && seen >= probes
		})
		st.Drain = time.Since(t1).Seconds()
		if !ok {
			return fmt.Errorf("step %v/s: the collector did not credit its entries within 2 minutes of its end", rate)
		}
		lags := w.lagsIn(t0, t1)
		st.Probes = len(lags)
		st.LagP50, st.LagP99, st.LagMax = quantile(lags, 0.5).Seconds(), quantile(lags, 0.99).Seconds(), quantile(lags, 1).Seconds()
		st.Sustained = st.Sent >= 0.95*rate && st.Bare >= 0.95*st.Sent
		if st.Sustained {
			res.Highest = max(res.Highest, rate)
		}
		res.Steps = append(res.Steps, st)
		log.Info("step done", "rate", rate, "sent", math.Round(st.Sent), "bare", math.Round(st.Bare), "credited", math.Round(st.Credit),
			"ratio", fmt.Sprintf("%.3f", st.Ratio), "lag_p50", st.LagP50, "lag_p99", st.LagP99,
			"collector_cpu", fmt.Sprintf("%.2f", st.CollectorCPU), "collector_rss_mb", st.RSS>>20, "backlog", st.Drain) // rounded as the table is
	}
	probeSeqs, err := probe.end()
	if err != nil {
		return err
	}
	stopTap()
	if err := <-tapErr; err != nil {
		return fmt.Errorf("bare reader: %w", err)
	}

	res.Appended = f.appended() + probeSeqs
	want := new(big.Int).SetUint64(res.Appended * cfg.N)
	s, ok := w.until(ctx, time.Minute, func(s apiState) bool { return s.n().Cmp(want) >= 0 })
	res.Credited = s.n().Uint64() / cfg.N
	res.Exact = ok && s.n().Cmp(want) == 0 && s.Gaps == 0
	res.Rejected = s.Rejected
	if !ok {
		log.Warn("the collector did not credit every entry within a minute", "appended", res.Appended, "credited", res.Credited)
	}
	return nil
}
