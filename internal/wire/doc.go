// Package wire is picluster's wire protocol v1: the JSON report a worker
// publishes, the job state the collector writes, and their validation. It is
// the only place that encodes or decodes them.
//
// A report is one JSON object of at most MaxSize bytes. "n" (samples, an
// integer > 0) and "pi_approx" (4·hits/n, in [0, 4]) are required; a report
// with only those two is an anonymous batch, the format of the original
// Python worker. A named report also carries "worker", "seq" (1, 2, …) and
// the worker's cumulative "total_n" and "total_hits"; "hits", "v", "seed",
// "kernel" and "seconds" are optional. Unknown fields are ignored, so a later
// version can add fields that v1 readers skip.
//
// Decode never panics: anything it cannot accept is an *Error whose Reason is
// one of the Reason constants, stable strings meant for counters and metrics.
// Functions are safe for concurrent use.
package wire
