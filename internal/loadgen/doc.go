// Package loadgen is the load harness behind picluster loadgen: it loads a
// real collector, through a real Redis, with simulated workers, and
// measures what it credits against what a bare reader of the same channel
// receives.
//
// A run starts the collector as a child process (Config.Collector, by
// default this executable's "collector" command, in secure mode with the
// run's job key, serving /api/state on a loopback port), so that its CPU
// and RSS are its own, read from /proc/<pid>/stat and /proc/<pid>/status.
// It waits for the job the collector creates, then simulates
// Config.Workers workers, each with its own stream of the ledger and its
// own worker key, appending valid signed entries through redisbus.Append
// (one MULTI/EXEC of XADD and PUBLISH per worker and append), exactly as
// workers do. Every entry's hits are the batch's true hits (mcpi.Batch of
// Config.N samples, 64 by default: a few microseconds), so the collector's
// replay check passes; a step's entries are drawn and signed before the
// step starts, so that sending costs only the appends.
//
// Each rate of Config.Rates is one step of Config.Duration. Over the same
// window, a step measures the rate appended, the rate a bare go-redis
// subscriber of the channel receives (redisbus.Tap: no decoding), and the
// rate the collector credits (the accepted count of its /api/state), and
// states the collector's as a ratio to the bare subscriber's. A probe
// worker appends an entry every 100 ms; its lag is the time from the start
// of its append until /api/state shows its seq, polled every 25 ms (so it
// includes the collector's snapshot interval, 250 ms). After the last step
// the run waits until the collector's N is every appended entry's samples,
// exactly.
//
// A flood (Config.FloodPresence, Config.FloodIDs) instead publishes
// presence messages from ids that never report, then one entry from each of
// many new workers, while an honest worker appends ten entries a second,
// and measures the collector's RSS after each and the honest worker's N.
//
// Units: rates in entries per second, times in seconds, memory in bytes,
// CPU in cores (CPU seconds per second of wall time). Linux only: the
// figures come from /proc. Run is not safe to call twice at once on one
// channel; it deletes the job's keys at the end (or stops the Redis it
// started).
package loadgen
