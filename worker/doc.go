// Package worker runs picluster's sampling loop on all cores and reports to
// the job's bus.
//
// A Worker draws batches (mcpi.Batch) one after another, each split across
// Config.Threads goroutines, and after each batch hands a cumulative report
// (wire.Report: this batch plus the worker's totals so far) to a publisher
// goroutine. The publisher sends the newest report it has; while the bus is
// unreachable it retries with backoff and sampling goes on, so a reconnect
// loses nothing: the next report carries every sample since the last one
// that got through. Reports are cumulative precisely so that a lost message
// is repaired by the next.
//
// Before sampling, a worker reads the job state (and leaves at once if the
// job is done) and the latest report recorded under its id, and resumes from
// it: seq and totals continue. Between batches and whenever a message arrives
// on the control channel it reads the state again, and leaves when the job is
// done, abandoning the batch in flight.
//
// Between reports the publisher sends a heartbeat (wire.Presence "alive") every
// wire.HeartbeatInterval, and after the last report a goodbye ("left"), so
// collectors can tell a worker that left from one that vanished.
//
// On cancellation (SIGINT, --duration, --max-batches) the batch in flight is
// abandoned and the last report is flushed, with a grace period of
// Config.FlushTimeout, before Run returns.
//
// Hits is the parallel batch loop itself, shared with the bench harness.
//
// Units: samples are counts, rates are samples per second, times are
// time.Duration. A Worker is used by one Run at a time.
package worker
