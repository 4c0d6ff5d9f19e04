// Package worker runs picluster's sampling loop on all cores and appends its
// batches to the job's ledger.
//
// A Worker draws batches (mcpi.Batch) one after another, each split across
// Config.Threads goroutines, and queues each as a signed ledger entry
// (wire.Entry: worker, seq, n, hits, …) of the job's seed and of one size
// for the worker's life in the job (Config.Batch, or what takes about
// BatchTime, measured on unpublished batches), so that no worker picks a
// batch's size after seeing it. A publisher goroutine appends the
// queue to the bus in order, many entries per append. While the bus is
// unreachable it retries with backoff and sampling goes on, so a reconnect
// loses nothing: the queue catches up. Past Config.QueueLimit entries the
// sampler waits instead of dropping any.
//
// # One worker per id
//
// Before anything else a worker takes a lease on its id ({C}:lease:<id> on
// Redis: its random token, with a TTL of Config.LeaseTTL) and renews it
// every LeaseTTL/3. When another worker holds it, the new one waits once for
// that lease to run out — a dead worker's does, within LeaseTTL — and is
// refused (ErrIDInUse) if it was renewed meanwhile. A worker that finds its
// lease taken by another (it was cut off for longer than the TTL) stops with
// ErrIDInUse, so two workers never append under one id. A worker that ends
// releases its lease.
//
// Then it reads the job state (and leaves at once if the job is done) and
// its place in the ledger (the checkpoint's credit and its own entries after
// it, in its own stream {channel}:ledger:<id>), and resumes after its last
// entry. After every append and whenever a
// message arrives on the control channel it reads the state again, and
// leaves when the job is done or reset, abandoning the batch in flight.
//
// # Presence
//
// Apart from the publisher, so that a slow append never delays them, the
// worker says it is alive (wire.Presence "alive") every Config.Heartbeat
// unless an entry said so meanwhile, and renews its lease. After its last
// entry it says goodbye ("left"), so collectors can tell a worker that left
// from one that vanished, and can wait for a leaving worker's last entries.
//
// # Stopping and errors
//
// On cancellation (SIGINT, --duration, --max-batches) the batch in flight is
// abandoned and the queue is flushed, for at most Config.FlushTimeout,
// before Run returns; entries still queued then are logged as lost. A kernel
// call takes at most mcpi.ChunkSteps steps, so cancellation waits for at
// most a millisecond or so of sampling.
//
// Run returns nil when it stopped for any of those reasons, also when ctx
// ends while it still waits for the bus. It returns an error when the bus
// refuses it for good (backoff.IsPermanent: a wrong password, a missing ACL
// permission, …), at start or mid-run, or when its id is in use.
//
// Hits is the parallel batch loop itself, shared with the bench harness.
//
// Units: samples are counts, rates are samples per second, times are
// time.Duration. A Worker is used by one Run at a time; Stats may be called
// from any goroutine.
package worker
