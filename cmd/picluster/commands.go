package main

import (
	"context"
	"flag"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/internal/job"
	"github.com/picluster/picluster/internal/membus"
	"github.com/picluster/picluster/internal/redisbus"
	"github.com/picluster/picluster/mcpi"
	"github.com/picluster/picluster/worker"
)

// workerFlags are the flags of a worker, turned into a worker.Config by config.
type workerFlags struct {
	threads    int
	batch      uint64
	batchTime  time.Duration
	maxBatches uint64
	id         string
	kernel     string
}

func (f *workerFlags) register(fs *flag.FlagSet, withID bool) {
	fs.IntVar(&f.threads, "threads", 0, "sampling `threads` per worker (default: every core)")
	fs.Uint64Var(&f.batch, "batch", 0, "`samples` per batch, one ledger entry (default: sized by --batch-time; at most the job's cap, 2³²)")
	fs.DurationVar(&f.batchTime, "batch-time", time.Second, "target `duration` of a batch when --batch is not given")
	fs.Uint64Var(&f.maxBatches, "max-batches", 0, "stop after this many `batches` (default: no limit)")
	fs.StringVar(&f.kernel, "kernel", "auto", "sampling `kernel`: auto, avx512, avx2 or go")
	if withID {
		fs.StringVar(&f.id, "id", "", "worker `id` in the ledger (default: host-pid-random, or the id a worker key file is bound to); a worker restarted under the same id resumes after its last entry")
	}
}

func (f *workerFlags) config(log *slog.Logger) (worker.Config, error) {
	cfg := worker.Config{ID: f.id, Threads: f.threads, Batch: f.batch, BatchTime: f.batchTime,
		MaxBatches: f.maxBatches, Logger: log}
	k, err := mcpi.ParseKernel(f.kernel)
	if err != nil {
		return cfg, badFlag("--kernel %s: %w", f.kernel, err)
	}
	if f.threads < 0 {
		return cfg, badFlag("--threads %d: want 0 (every core) or more", f.threads)
	}
	cfg.Kernel = k
	return cfg, asUsage(cfg.Validate())
}

// collectorFlags are the flags of a collector.
type collectorFlags struct {
	seed         string
	verify       float64
	maxN         uint64
	maxWorkers   int
	anonShare    float64
	targetSE     float64
	targetDigits int
	json         bool
	interval     time.Duration
	reset        bool
	plot         string
	plotEvery    time.Duration
	http         string
	estimator    string
	cells        uint64
}

func (f *collectorFlags) register(fs *flag.FlagSet) {
	fs.Float64Var(&f.targetSE, "target-se", 0, "stop the job when the standard error of π reaches `SE` (default: no target)")
	fs.IntVar(&f.targetDigits, "target-digits", 0, "stop the job when π has this many correct decimal `digits` at 95 % (half-width ≤ ½·10⁻ᴰ); with --target-se, the stricter wins")
	fs.BoolVar(&f.json, "json", false, "print the final summary as one JSON object on stdout (progress goes to stderr)")
	fs.DurationVar(&f.interval, "interval", time.Second, "how often to print the estimate")
	fs.BoolVar(&f.reset, "reset", false, "delete the job's ledger, checkpoint, quarantine and state first: a new job on an old channel")
	fs.StringVar(&f.plot, "plot", "", "write the convergence to this PNG `file` at exit")
	fs.DurationVar(&f.plotEvery, "plot-every", 0, "with --plot, also rewrite the PNG this often while running")
	fs.StringVar(&f.seed, "seed", "", "64-bit `seed` of a new job, decimal or 0x-hex (default: random); with a worker's id and batch number it makes every batch replayable")
	fs.Float64Var(&f.verify, "verify-fraction", 0.01, "share of the samples replayed to check them (`fraction`, 0 … 1); improbable entries are always replayed")
	fs.Uint64Var(&f.maxN, "max-n", 0, "most `samples` one ledger entry of a new job may carry (default 2³²)")
	fs.Float64Var(&f.anonShare, "anon-share", collector.DefaultAnonShare, "open mode: the largest `share` of N that anonymous (seed-style) reports may hold, 0 … 1; 1 lifts the bound, which a job of only anonymous workers needs")
	fs.IntVar(&f.maxWorkers, "max-workers", 1_000_000, "most `workers` a job tracks; entries of further ids are refused (too_many_workers)")
	fs.StringVar(&f.estimator, "estimator", "mc", "`estimator` of a new job: mc (plain hit-or-miss) or stratified (one point in each of K×K cells a batch; the error bar from the batches' scatter)")
	fs.Uint64Var(&f.cells, "cells", 0, "with --estimator stratified, `K`: a power of two from 128 to 65536; every batch is K² points (default 32768)")
	fs.StringVar(&f.http, "http", "", "serve the dashboard, /api/state, /api/events, /metrics and /healthz on `addr` ([host]:port; no host means 127.0.0.1)")
}

// target returns the target SE the flags ask for, 0 for none.
func (f *collectorFlags) target() (float64, error) {
	if f.targetDigits < 0 || f.targetDigits > 15 {
		return 0, badFlag("--target-digits %d: want 1 to 15", f.targetDigits)
	}
	se := f.targetSE
	if f.targetDigits > 0 {
		d := collector.TargetSEForDigits(f.targetDigits)
		if se == 0 || d < se {
			se = d
		}
	}
	return se, nil
}

// config returns the collector's config the flags describe, checked.
func (f *collectorFlags) config(c common, jobKey []byte, log *slog.Logger) (collector.Config, error) {
	se, err := f.target()
	if err != nil {
		return collector.Config{}, err
	}
	if f.interval <= 0 {
		return collector.Config{}, badFlag("--interval %v: want a duration > 0, like 1s", f.interval)
	}
	cfg := collector.Config{Channel: c.channel, TargetSE: se, Reset: f.reset, Key: jobKey,
		VerifyFraction: f.verify, MaxN: f.maxN, MaxWorkers: f.maxWorkers, Logger: log, Estimator: f.estimator, Cells: f.cells,
		AnonShare: f.anonShare}
	if f.verify == 0 {
		cfg.VerifyFraction = 1e-300 // 0 means the default to Config; the flag means none by lot
	}
	if f.anonShare == 0 {
		cfg.AnonShare = 1e-300 // none: 0 means the default to Config
	}
	if f.seed != "" {
		s, err := strconv.ParseUint(f.seed, 0, 64)
		if err != nil {
			return cfg, badFlag("--seed %s: want a 64-bit unsigned integer, decimal or 0x-hex", f.seed)
		}
		cfg.Seed = &s
	}
	return cfg, asUsage(cfg.Validate()) // every field comes from a flag
}

func (e *env) workerCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	var c common
	var wf workerFlags
	var duration time.Duration
	var httpAddr string
	e.commonFlags(fs, &c, "the Redis to report to")
	wf.register(fs, true)
	fs.DurationVar(&duration, "duration", 0, "stop after this long (default: until the job is done or Ctrl-C)")
	fs.StringVar(&httpAddr, "http", "", "serve /healthz and /metrics (Prometheus) on `addr` ([host]:port; no host means 127.0.0.1)")
	if err := e.parse(fs, "Samples on every core and reports to the job's channel until the job is done,\na limit is reached, or Ctrl-C (which still delivers the queued entries).", args); err != nil {
		return err
	}
	e.fill(&c)
	log := e.logger(c)
	cfg, err := wf.config(log)
	if err != nil {
		return err
	}
	cfg.Duration = duration
	if err := e.workerKey(c, &cfg); err != nil {
		return err
	}
	bus, err := e.openRedis(c, log)
	if err != nil {
		return err
	}
	defer bus.Close()
	w, err := worker.New(bus, cfg)
	if err != nil {
		return err
	}
	stopHTTP, err := e.serveWorker(ctx, httpAddr, w)
	if err != nil {
		return err
	}
	defer stopHTTP()
	return w.Run(ctx)
}

func (e *env) openRedis(c common, log *slog.Logger) (*redisbus.Bus, error) {
	if c.redis == "" {
		return nil, badFlag("no Redis: give --redis redis://host:6379 or set REDIS_URL (picluster run needs none)")
	}
	if err := redisbus.CheckURL(c.redis); err != nil {
		if c.envURL { // the error names --redis
			return nil, badFlag("%s", strings.Replace(err.Error(), "--redis ", "REDIS_URL=", 1))
		}
		return nil, asUsage(err)
	}
	redisbus.SetLogger(log) // go-redis's own lines too go through slog
	bus, err := redisbus.Open(c.redis, c.channel, redisbus.Options{TLS: &c.tls, Log: log})
	if err != nil {
		return nil, err
	}
	log.Info("using Redis", "url", redisbus.Redact(c.redis), "mode", redisbus.ModeOf(c.redis), "channel", c.channel)
	return bus, nil
}

func (e *env) collectorCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("collector", flag.ContinueOnError)
	var c common
	var cf collectorFlags
	var duration time.Duration
	e.commonFlags(fs, &c, "the Redis to collect from")
	cf.register(fs)
	fs.DurationVar(&duration, "duration", 0, "stop after this long (default: until the target or Ctrl-C)")
	if err := e.parse(fs, "Pools every report of the job into one estimate of π with its standard error,\nand ends the job when --target-se is reached.", args); err != nil {
		return err
	}
	e.fill(&c)
	log := e.logger(c)
	jobKey, err := e.jobKey(c)
	if err != nil {
		return err
	}
	colCfg, err := cf.config(c, jobKey, log)
	if err != nil {
		return err
	}
	bus, err := e.openRedis(c, log)
	if err != nil {
		return err
	}
	defer bus.Close()
	col, err := collector.New(bus, colCfg)
	if err != nil {
		return err
	}
	ctx, cancel := withDuration(ctx, duration)
	defer cancel()
	return e.watch(ctx, col, cf, func(ctx context.Context) error { return col.Run(ctx) })
}

func (e *env) runCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var c common
	var cf collectorFlags
	var wf workerFlags
	var duration time.Duration
	var workers int
	e.commonFlags(fs, &c, "use this Redis instead of the in-memory bus")
	cf.register(fs)
	wf.register(fs, false)
	fs.DurationVar(&duration, "duration", 0, "stop after this long (default: until the target or Ctrl-C)")
	fs.IntVar(&workers, "workers", 1, "`number` of workers, sharing --threads cores each")
	if err := e.parse(fs, "Runs workers and a collector in one process, on an in-memory bus unless --redis\n(or REDIS_URL) is given, and shows the estimate converging.", args); err != nil {
		return err
	}
	e.fill(&c)
	if workers < 1 {
		return badFlag("--workers %d: want 1 or more", workers)
	}
	log := e.logger(c)
	jobKey, err := e.jobKey(c)
	if err != nil {
		return err
	}
	colCfg, err := cf.config(c, jobKey, log)
	if err != nil {
		return err
	}
	var bus interface {
		worker.Bus
		collector.Bus
	}
	if c.redis != "" {
		rb, err := e.openRedis(c, log)
		if err != nil {
			return err
		}
		defer rb.Close()
		bus = rb
	} else {
		bus = membus.New()
	}
	col, err := collector.New(bus, colCfg)
	if err != nil {
		return err
	}
	var ws []*worker.Worker
	for range workers {
		cfg, err := wf.config(log)
		if err != nil {
			return err
		}
		cfg.JobKey = jobKey
		w, err := worker.New(bus, cfg)
		if err != nil {
			return err
		}
		ws = append(ws, w)
	}

	runCtx, cancel := withDuration(ctx, duration)
	defer cancel()
	return e.watch(runCtx, col, cf, job.Job{Collector: col, Workers: ws}.Run)
}
