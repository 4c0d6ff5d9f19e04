package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/picluster/picluster/bench"
	"github.com/picluster/picluster/mcpi"
)

func (e *env) benchCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	threads := fs.String("threads", "", "comma-separated thread `counts` to measure, like 1,2,4 (default: 1 and every core)")
	duration := fs.Duration("duration", 3*time.Second, "how long to measure each kernel and thread count")
	kernel := fs.String("kernel", "", "measure only this `kernel`: auto, avx512, avx2 or go (default: every kernel this CPU runs)")
	asJSON := fs.Bool("json", false, `print a JSON array of {"kernel","estimator","threads","samples_per_s","ns_per_sample",…}`)
	estimator := fs.String("estimator", "all", "measure this `estimator`: mc, stratified or all")
	cells := fs.Uint64("cells", 1<<15, "`K` of the stratified batches measured (K² points a batch)")
	if err := e.parse(fs, "Measures the sampler's throughput on this machine, per kernel and thread count,\nwith whole batches as a worker draws them. The speed-up is each kernel's\nsamples/s over its own on the fewest threads measured.", args); err != nil {
		return err
	}
	if *threads == "" {
		*threads = fmt.Sprintf("1,%d", runtime.GOMAXPROCS(0))
	}
	var counts []int
	for f := range strings.SplitSeq(*threads, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return badFlag("--threads %s: want counts ≥ 1 separated by commas, like 1,2,4", *threads)
		}
		if !slices.Contains(counts, n) {
			counts = append(counts, n)
		}
	}
	if *duration <= 0 {
		return badFlag("--duration %v: want a duration > 0, like 3s", *duration)
	}
	var estimators []string
	switch *estimator {
	case "all":
		estimators = []string{mcpi.MC, mcpi.Stratified}
	case mcpi.MC, mcpi.Stratified:
		estimators = []string{*estimator}
	default:
		return badFlag("--estimator %s: want mc, stratified or all", *estimator)
	}
	if err := mcpi.ValidCells(*cells); err != nil {
		return badFlag("--cells: %w", err)
	}
	kernels := mcpi.Kernels()
	if *kernel != "" {
		k, err := mcpi.ParseKernel(*kernel)
		if err != nil {
			return badFlag("--kernel %s: %w", *kernel, err)
		}
		kernels = []mcpi.Kernel{k}
	}
	if !*asJSON {
		fmt.Fprintf(e.stdout, "CPU: %s, %s; auto picks %s\n\n", bench.CPUModel(), plural(runtime.NumCPU(), "logical CPU", "logical CPUs"), mcpi.Pick())
	}
	// The progress redraws one line on a terminal, and is a line per
	// measurement in a log.
	progress, eol := "\r\033[K", ""
	if !isTerminal(e.stderr) {
		progress, eol = "", "\n"
	}
	var results []bench.Result
	total := len(kernels) * len(counts) * len(estimators)
	for _, k := range kernels {
		for _, t := range counts {
			for _, est := range estimators { // mc and stratified back to back: a shared machine's load hits both alike
				fmt.Fprintf(e.stderr, "%smeasuring %d/%d: kernel %s, %s, %s, %v…%s", progress, len(results)+1, total, k, est, plural(t, "thread", "threads"), *duration, eol)
				if est == mcpi.Stratified {
					results = append(results, bench.MeasureCells(ctx, k, t, *duration, *cells))
				} else {
					results = append(results, bench.Measure(ctx, k, t, *duration))
				}
				if ctx.Err() != nil {
					fmt.Fprint(e.stderr, progress)
					return ctx.Err()
				}
			}
		}
	}
	fmt.Fprint(e.stderr, progress)
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(results)
	}
	return printBench(e.stdout, results)
}

// printBench prints the results as a table. A kernel's speed-up is its
// samples/s over its own (same estimator) on the fewest threads measured,
// so each kernel is compared with itself; a stratified row's "vs mc" is its
// samples/s over the plain row of the same kernel and threads.
func printBench(w io.Writer, results []bench.Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "kernel\testimator\tthreads\tsamples/s\tns/sample\tspeed-up\tvs mc\t")
	base := make(map[string]bench.Result)
	plain := make(map[string]bench.Result)
	fewest := 0
	for _, r := range results {
		if b, ok := base[r.Kernel+r.Estimator]; !ok || r.Threads < b.Threads {
			base[r.Kernel+r.Estimator] = r
		}
		if r.Estimator != mcpi.Stratified {
			plain[fmt.Sprint(r.Kernel, r.Threads)] = r
		}
		if fewest == 0 || r.Threads < fewest {
			fewest = r.Threads
		}
	}
	for _, r := range results {
		est, vs := r.Estimator, ""
		if est == "" {
			est = mcpi.MC
		}
		if p, ok := plain[fmt.Sprint(r.Kernel, r.Threads)]; ok && est == mcpi.Stratified && p.SamplesPerS > 0 {
			vs = fmt.Sprintf("%.2f", r.SamplesPerS/p.SamplesPerS)
			est = fmt.Sprintf("strat K=%d", r.Cells)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.3g\t%.4f\t%.2f×\t%s\t\n", r.Kernel, est, r.Threads, r.SamplesPerS, r.NsPerSample, r.SamplesPerS/base[r.Kernel+r.Estimator].SamplesPerS, vs)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if fewest > 1 {
		_, err := fmt.Fprintf(w, "\nspeed-up: over the same kernel on %d threads\n", fewest)
		return err
	}
	return nil
}
