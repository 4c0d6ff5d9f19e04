// Package worker runs picluster's sampling loop on all cores and appends
// its batches to the job's ledger.
//
// A Worker waits for the job state a collector writes (job id, seed, cap on
// samples per entry), finds where its entries end (its credit in the
// checkpoint, then its own signed entries in the ledger after it) and draws
// batches (mcpi.Batch) from seq+1 on, each split across Config.Threads
// goroutines. Every batch is one ledger entry: encoded, signed with the
// worker's key (secure mode) and put in a bounded queue that a publisher
// goroutine appends to the bus in order, many entries per MULTI/EXEC. While
// the bus is unreachable it retries with backoff and sampling goes on; past
// Config.QueueLimit entries sampling waits, so no drawn batch is ever
// dropped. A worker keeps one entry size for its life in a job (Config.Batch,
// or what takes about BatchTime, measured at the start on unpublished
// batches): the collector refuses a change, so no worker can pick the size
// of a batch after seeing it.
//
// After each append, and whenever a message arrives on the control
// channel, it reads the state, and leaves when the job is done or was reset
// (another job id), abandoning the batch in flight.
//
// Between appends the publisher sends a heartbeat (wire.Presence "alive")
// every wire.HeartbeatInterval, and after the last entry a goodbye ("left").
//
// On cancellation (SIGINT, --duration, --max-batches) the batch in flight is
// abandoned and the queued entries are flushed, with a grace period of
// Config.FlushTimeout, before Run returns.
//
// Hits is the parallel batch loop itself, shared with the bench harness.
//
// Units: samples are counts, rates are samples per second, times are
// time.Duration. A Worker is used by one Run at a time; Stats may be called
// from any goroutine.
package worker
