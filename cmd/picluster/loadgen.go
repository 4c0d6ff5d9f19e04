package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/picluster/picluster/internal/loadgen"
	"github.com/picluster/picluster/internal/redisbus"
)

func (e *env) loadgenCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	var c common
	e.commonFlags(fs, &c, "the Redis to load")
	fs.Lookup("channel").Usage = "the job's `channel` (default: loadgen-<random>); one that holds a job is refused, and the run deletes its keys at the end"
	fs.Lookup("channel").DefValue = ""
	c.channel = ""
	fs.Lookup("key-file").Usage = "sign with the job key of this `file` (default: a new random key)"
	var cfg loadgen.Config
	rates := fs.String("rate", "1000", "total `rates` to offer, entries/s, comma-separated: one step each, in order")
	fs.BoolVar(&cfg.StartRedis, "start-redis", false, "start a redis-server of its own (from PATH, on a free loopback port) instead of --redis")
	fs.IntVar(&cfg.Workers, "workers", 100, "simulated `workers`, each with its own stream and key")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long each rate is offered")
	fs.Uint64Var(&cfg.N, "n", 64, "`samples` per entry (their hits are computed, so small is cheap)")
	fs.IntVar(&cfg.Senders, "senders", 8, "appending `goroutines`, each on connections of its own")
	fs.IntVar(&cfg.MaxWorkers, "max-workers", 1_000_000, "the collector's --max-workers: most `workers` it tracks")
	fs.IntVar(&cfg.FloodPresence, "flood-presence", 0, "instead of the rates: publish presence from this many `ids` that never report, then --flood-ids")
	fs.IntVar(&cfg.FloodIDs, "flood-ids", 0, "instead of the rates: one entry from each of this many new worker `ids`, while an honest worker runs")
	fs.StringVar(&cfg.Bare, "bare", loadgen.BareChannel, "the bare `reader` the collector is measured against: channel (a subscriber of the channel) or ledger (XREAD of the workers' streams, as the collector reads them)")
	asJSON := fs.Bool("json", false, "print the result as one JSON object on stdout")
	if err := e.parse(fs, "Loads a collector (a child process) through a real Redis with simulated workers\n"+
		"appending valid signed entries at the offered rates, and reports what it\n"+
		"credits next to what a bare subscriber of the channel receives, the lag from\n"+
		"append to /api/state, and the collector's CPU and RSS. With --flood-presence\n"+
		"or --flood-ids it floods the collector instead and checks an honest worker's N.", args); err != nil {
		return err
	}
	e.fill(&c)
	if c.envURL && cfg.StartRedis {
		c.redis = "" // --start-redis wins over $REDIS_URL
	}
	for f := range strings.SplitSeq(*rates, ",") {
		r, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || !(r > 0) {
			return badFlag("--rate %s: want entries/s > 0 separated by commas, like 1000,5000", *rates)
		}
		cfg.Rates = append(cfg.Rates, r)
	}
	if cfg.Workers < 1 {
		return badFlag("--workers %d: want 1 or more", cfg.Workers)
	}
	if cfg.Senders < 1 {
		return badFlag("--senders %d: want 1 or more", cfg.Senders)
	}
	if cfg.N < 1 {
		return badFlag("--n %d: want 1 or more", cfg.N)
	}
	if cfg.Duration <= 0 {
		return badFlag("--duration %v: want a duration > 0, like 10s", cfg.Duration)
	}
	key, err := e.jobKey(c)
	if err != nil {
		return err
	}
	cfg.RedisURL, cfg.Channel, cfg.JobKey, cfg.Log = c.redis, c.channel, key, e.logger(c)
	if c.tls != (redisbus.TLSFiles{}) {
		cfg.TLS = &c.tls
	}
	if err := cfg.Validate(); err != nil {
		return asUsage(err)
	}
	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(res)
	}
	return printLoad(e.stdout, res)
}

// printLoad prints a run's result as tables.
func printLoad(w io.Writer, r *loadgen.Result) error {
	fmt.Fprintf(w, "CPU: %s, %d logical CPUs; load average %.2f at the start, %.2f at the end\n", r.CPU, r.CPUs, r.LoadAvg, r.LoadAvgEnd)
	if f := r.Flood; f != nil {
		fmt.Fprintf(w, "Redis %s, channel %s: %d samples per entry, %d senders\n", r.Redis, r.Channel, r.N, r.Senders)
		fmt.Fprintf(w, "\nflood: %d presence-only ids in %.1fs, then %d report ids in %.1fs; --max-workers %d\n",
			f.Presence, f.PresenceSeconds, f.IDs, f.IDsSeconds, f.MaxWorkers)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "collector RSS\tbefore\tafter presence\tafter ids\tpeak\t")
		fmt.Fprintf(tw, "MB\t%.0f\t%.0f\t%.0f\t%.0f\t\n", mb(f.RSSBefore), mb(f.RSSPresence), mb(f.RSSIDs), mb(f.RSSPeak))
		if err := tw.Flush(); err != nil {
			return err
		}
		verdict := "exact"
		if !f.HonestExact {
			verdict = "NOT exact"
		}
		fmt.Fprintf(w, "tracked %d workers, %d streams refused (too_many_workers, counted for the first 1000); collector %.2f cores over the flood\n",
			f.Tracked, f.Refused, f.CollectorCPU)
		fmt.Fprintf(w, "honest worker: %d entries, N = %d appended, %d credited: %s\n", f.HonestEntries, f.HonestN, f.HonestCredited, verdict)
		if f.RedisRSS > 0 {
			fmt.Fprintf(w, "redis-server RSS at the end: %.0f MB\n", mb(f.RedisRSS))
		}
		_, err := fmt.Fprintf(w, "collector: %.1f CPU s, peak RSS %.0f MB over its life; %s\n", r.Collector.CPUSeconds, mb(r.Collector.MaxRSS), r.Collector.Exit)
		return err
	}
	fmt.Fprintf(w, "Redis %s, channel %s: %d workers, %d samples per entry, %d senders; the bare reader reads the %s\n\n", r.Redis, r.Channel, r.Workers, r.N, r.Senders, r.Bare)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "offered/s\tsent/s\tbare/s\tcredited/s\tratio\tlag p50\tlag p99\tbacklog\tcollector CPU\tRSS MB\tredis CPU\tloadgen CPU\tload\tsustained\t")
	for _, s := range r.Steps {
		redis := "-"
		if s.RedisCPU >= 0 {
			redis = fmt.Sprintf("%.2f", s.RedisCPU)
		}
		fmt.Fprintf(tw, "%.0f\t%.0f\t%.0f\t%.0f\t%.3f\t%.0fms\t%.0fms\t%.1fs\t%.2f\t%.0f\t%s\t%.2f\t%.2f\t%s\t\n",
			s.Target, s.Sent, s.Bare, s.Credit, s.Ratio, s.LagP50*1000, s.LagP99*1000, s.Drain, s.CollectorCPU,
			mb(s.RSS), redis, s.LoadgenCPU, s.LoadAvg, yesNo(s.Sustained))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nratio = credited/s ÷ bare/s (what a bare go-redis reader received), over the same window; lag = a probe entry's append → its seq in /api/state;\nbacklog = from the step's end until every entry is credited (the next step starts then);\nsustained = ≥ 95 % of the offered rate sent, and ≥ 95 % of that received by the bare reader")
	if r.Highest > 0 {
		fmt.Fprintf(w, "highest sustained: %.0f entries/s\n", r.Highest)
	} else {
		fmt.Fprintln(w, "highest sustained: none of the rates")
	}
	verdict := "exact"
	if !r.Exact {
		verdict = "NOT exact"
	}
	_, err := fmt.Fprintf(w, "appended %d entries, the collector credited %d (%s); %d rejected; collector %.1f CPU s, peak RSS %.0f MB over its life; %s\n",
		r.Appended, r.Credited, verdict, r.Rejected, r.Collector.CPUSeconds, mb(r.Collector.MaxRSS), r.Collector.Exit)
	return err
}

func mb(b uint64) float64 { return float64(b) / (1 << 20) }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
