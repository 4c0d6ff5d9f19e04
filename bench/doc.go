// Package bench measures picluster's sampler: Go benchmarks of whole batches
// per kernel and thread count, reporting samples/s.
//
//	go test ./bench -run XXX -bench . -benchtime 3s
//
// Compare two builds with benchstat (golang.org/x/perf/cmd/benchstat):
// run the benchmarks with -count 10 on each and pass both outputs to it.
package bench
