// Package wire is picluster's wire protocol: the ledger entry a worker
// appends for each batch (v2, Entry), the seed-style and v1 reports that may
// still arrive on the channel (Report), the job state the collector writes,
// the checkpoint's per-worker Credit, presence messages, the signing keys,
// and their validation. It is the only place that encodes or decodes them,
// and it is the contract for peers in other languages: README.md's protocol
// section says the same in prose.
//
// An Entry is one JSON object with ten required members (v, job, worker,
// seq, n, hits, pi_approx, seed, kernel, seconds), appended to the worker's
// own stream of the ledger, {channel}:ledger:<worker>, with its signature,
// and published on the channel.
// DecodeEntry checks it on its own (shape and ranges); whether it belongs to
// the job is the collector's judgement. In secure mode an entry is signed
// with HMAC-SHA256 under WorkerKey(jobKey, worker), so a machine given its
// own worker key signs only as itself.
//
// A report is one JSON object of at most MaxSize bytes. "n" (samples, an
// integer > 0) and "pi_approx" (4·hits/n, in [0, 4]) are required; a report
// with only those two is an anonymous batch, the format of the original
// Python worker. A named report also carries "worker", "seq" (1, 2, …) and
// the worker's cumulative "total_n" and "total_hits"; "hits", "v", "seed",
// "kernel" and "seconds" are optional. Unknown fields are ignored, so a later
// version can add fields that v1 readers skip.
//
// The parser is strict so that every reader agrees on what a message says
// (a Python json.loads, a Go encoding/json, this package): the whole message
// must be valid UTF-8 with no escaped lone surrogate (bad_utf8); member names
// are exact and case-sensitive, and a name that is a field's name in another
// case ("N", "PI_APPROX") is rejected (folded_key), not skipped; no name may
// appear twice in an object, at any depth (duplicate_key). "worker" and
// "kernel" are printable text (no control or format characters), "seed" is
// 16 hex digits, "seconds" is in [0, MaxSeconds] and implies at most MaxRate
// samples/s (bad_seconds).
//
// Encode writes what Decode reads: for every report Decode accepts,
// Decode(Encode(r)) is r, zero totals included. Decode returns reports in
// canonical form (V = 1, PiApprox = 4·Hits/N).
//
// Decode never panics: anything it cannot accept is an *Error whose Reason is
// one of the Reason constants, stable strings meant for counters and metrics.
// Functions are safe for concurrent use.
package wire
