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
	// Seed seeds every batch together with ID and seq. Nil means a random
	// seed from crypto/rand. It is carried in every report, so any batch can
	// be replayed.
	Seed *uint64
	// Threads is the number of goroutines a batch is split across. Default:
	// runtime.GOMAXPROCS(0). At most mcpi.Groups are used.
	Threads int
	// Batch is the number of samples per batch. Zero means batches sized to
	// take about BatchTime.
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
	// FlushTimeout bounds how long the last report may take to reach the bus
	// when the worker stops. Default 10s.
	FlushTimeout time.Duration
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
	case c.FlushTimeout < 0:
		return errors.New("flush timeout: must be ≥ 0")
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
	if c.Seed == nil {
		s := randomUint64()
		c.Seed = &s
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
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func randomUint64() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return binary.LittleEndian.Uint64(b[:])
}
