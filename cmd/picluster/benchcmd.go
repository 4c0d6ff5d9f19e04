package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/picluster/picluster/bench"
	"github.com/picluster/picluster/mcpi"
)

func (e *env) benchCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	threads := fs.String("threads", fmt.Sprintf("1,%d", runtime.GOMAXPROCS(0)), "comma-separated thread `counts` to measure")
	duration := fs.Duration("duration", 3*time.Second, "how long to measure each kernel and thread count")
	kernel := fs.String("kernel", "", "measure only this `kernel`: auto, avx512, avx2 or go (default: every kernel this CPU runs)")
	asJSON := fs.Bool("json", false, `print a JSON array of {"kernel","threads","samples_per_s","ns_per_sample",…}`)
	if err := e.parse(fs, "Measures the sampler's throughput on this machine, per kernel and thread count,\nwith whole batches as a worker draws them.", args); err != nil || helped(args) {
		return err
	}
	var counts []int
	for f := range strings.SplitSeq(*threads, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("--threads %q: want positive integers separated by commas", *threads)
		}
		counts = append(counts, n)
	}
	kernels := mcpi.Kernels()
	if *kernel != "" {
		k, err := mcpi.ParseKernel(*kernel)
		if err != nil {
			return fmt.Errorf("--kernel: %w", err)
		}
		kernels = []mcpi.Kernel{k}
	}
	if !*asJSON {
		fmt.Fprintf(e.stdout, "CPU: %s, %d logical CPUs; auto picks %s\n\n", bench.CPUModel(), runtime.NumCPU(), mcpi.Pick())
	}
	var results []bench.Result
	total := len(kernels) * len(counts)
	for _, k := range kernels {
		for _, t := range counts {
			fmt.Fprintf(e.stderr, "\rmeasuring %d/%d: kernel %s, %d threads, %v… ", len(results)+1, total, k, t, *duration)
			results = append(results, bench.Measure(ctx, k, t, *duration))
			if ctx.Err() != nil {
				fmt.Fprintln(e.stderr)
				return ctx.Err()
			}
		}
	}
	fmt.Fprint(e.stderr, "\r\033[K")
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(results)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "kernel\tthreads\tsamples/s\tns/sample\tspeed-up\t")
	var one float64
	for _, r := range results {
		if r.Threads == 1 || one == 0 {
			one = r.SamplesPerS / float64(r.Threads)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.3g\t%.4f\t%.2f×\t\n", r.Kernel, r.Threads, r.SamplesPerS, r.NsPerSample, r.SamplesPerS/one)
	}
	return tw.Flush()
}
