package worker

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

// Config configures a Worker. Every zero value has a documented default.
type Config struct {
	// ID names the worker in reports and in the job's totals. A worker
	// started with an ID that already has totals resumes from them. Default:
	// host-pid-random.
	ID string
	// Key signs every entry (HMAC-SHA256): the worker's own key, derived
	// from the job key by wire.WorkerKey. Nil means unsigned entries, which
	// only a job in open mode accepts.
	Key []byte
	// JobKey, when Key is nil, is the job key the worker derives its own
	// key from (wire.WorkerKey), for setups that trust the machine with it.
	JobKey []byte
	// Threads is the number of goroutines a batch is split across. Default:
	// runtime.GOMAXPROCS(0). At most mcpi.Groups are used.
	Threads int
	// Batch is the number of samples per batch: one ledger entry, at most
	// the job's cap (wire.MaxEntryN by default). Zero means a size that
	// takes about BatchTime, measured at the start. A worker keeps one size
	// for its whole life in a job: restarted under its id, it resumes with
	// the size it had.
	Batch uint64
	// BatchTime is the target duration of a batch when Batch is zero.
	// Default 1s.
	BatchTime time.Duration
	// MaxBatches stops the worker after that many batches of this run.
	// Zero means no limit.
	MaxBatches uint64
	// Duration stops the worker after that long. Zero means no limit.
	Duration time.Duration
	// Kernel is the sampling kernel. The zero Kernel means mcpi.Pick().
	Kernel mcpi.Kernel
	// QueueLimit bounds the entries waiting for the bus; past it sampling
	// waits. Default 65536 (about 16 MB, and at one entry a second 18 hours
	// of outage).
	QueueLimit int
	// FlushTimeout bounds how long the queued entries may take to reach the
	// bus when the worker stops. Default 10s.
	FlushTimeout time.Duration
	// LeaseTTL is how long the worker's lease on its id lasts unless
	// renewed; it is renewed every LeaseTTL/3. A worker killed without a
	// goodbye blocks its id for at most this long. Default DefaultLeaseTTL.
	LeaseTTL time.Duration
	// Heartbeat is how long the publisher may stay silent (no entry, no
	// heartbeat) before it says it is alive. Default wire.HeartbeatInterval.
	Heartbeat time.Duration
	// Logger receives the worker's logs. Default: slog.Default().
	Logger *slog.Logger
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case len(c.ID) > wire.MaxWorkerLen:
		return fmt.Errorf("worker id: %d bytes, at most %d", len(c.ID), wire.MaxWorkerLen)
	case c.Threads < 0:
		return errors.New("threads: must be ≥ 0")
	case c.BatchTime < 0:
		return errors.New("batch-time: must be ≥ 0")
	case c.Duration < 0:
		return errors.New("duration: must be ≥ 0")
	case c.QueueLimit < 0:
		return errors.New("queue limit: must be ≥ 0")
	case c.FlushTimeout < 0:
		return errors.New("flush timeout: must be ≥ 0")
	case c.LeaseTTL < 0 || c.Heartbeat < 0:
		return errors.New("lease TTL and heartbeat: must be ≥ 0")
	}
	return nil
}

// withDefaults returns c with every zero value replaced by its default.
func (c Config) withDefaults() Config {
	if c.ID == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "worker"
		}
		c.ID = fmt.Sprintf("%s-%d-%04x", host, os.Getpid(), randomUint64()&0xffff)
	}
	if c.Key == nil && c.JobKey != nil {
		c.Key = wire.WorkerKey(c.JobKey, c.ID)
	}
	if c.QueueLimit == 0 {
		c.QueueLimit = 1 << 16
	}
	if c.Threads == 0 {
		c.Threads = runtime.GOMAXPROCS(0)
	}
	c.Threads = min(c.Threads, mcpi.Groups)
	if c.BatchTime == 0 {
		c.BatchTime = time.Second
	}
	if c.Kernel.IsZero() {
		c.Kernel = mcpi.Pick()
	}
	if c.FlushTimeout == 0 {
		c.FlushTimeout = 10 * time.Second
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = wire.HeartbeatInterval
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// DefaultLeaseTTL is Config.LeaseTTL's default: five heartbeats.
const DefaultLeaseTTL = 5 * wire.HeartbeatInterval

func randomUint64() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return binary.LittleEndian.Uint64(b[:])
}
