package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"time"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

// Configuration: the bus a collector reads, its Config with defaults and
// validation.

// Bus is what a collector needs from the job's transport. internal/redisbus
// and internal/membus implement it.
type Bus interface {
	// Subscribe delivers the job's report channel and presence messages
	// until ctx is done, then closes the channel. It reconnects by itself,
	// and sends a KindSubscribed message first and after every reconnect.
	Subscribe(ctx context.Context) <-chan wire.Message
	// ReadLedgers returns up to count entries of each worker's stream of
	// the ledger after its cursor, oldest first within a stream, without
	// waiting.
	ReadLedgers(ctx context.Context, from []wire.Cursor, count int) ([]wire.LedgerEntry, error)
	// ScanLedgers lists the workers whose stream exists, a page at a time:
	// start with cursor 0; a next cursor of 0 ends the pass. A pass returns
	// every stream that exists throughout it.
	ScanLedgers(ctx context.Context, cursor uint64) (workers []string, next uint64, err error)
	// TrimLedgers removes from each worker's stream the entries before its
	// minimum ID.
	TrimLedgers(ctx context.Context, minIDs map[string]string) error
	// DeleteEntries removes entries, by worker and ID, from the workers'
	// streams.
	DeleteEntries(ctx context.Context, ids map[string][]string) error
	// Time returns the bus's clock as a ledger position: every entry
	// appended later has a later ID.
	Time(ctx context.Context) (string, error)
	// Checkpoint returns every field of the checkpoint.
	Checkpoint(ctx context.Context) (map[string][]byte, error)
	// SaveCheckpoint writes fields and the mark pos into the checkpoint,
	// all or nothing, unless it holds a later mark already; it reports
	// whether it wrote (false: the checkpoint holds a later mark).
	SaveCheckpoint(ctx context.Context, pos string, fields map[string][]byte) (bool, error)
	// SetReader records where the collector called name has read to;
	// Readers returns every collector's record.
	SetReader(ctx context.Context, name, value string) error
	Readers(ctx context.Context) (map[string]string, error)
	// Quarantine records that worker was proven wrong; Quarantined returns
	// every such record.
	Quarantine(ctx context.Context, worker string, why []byte) error
	Quarantined(ctx context.Context) (map[string][]byte, error)
	// State returns the job state, nil if none has been written.
	State(ctx context.Context) ([]byte, error)
	// SetState writes the job state and publishes it on the control channel.
	SetState(ctx context.Context, state []byte) error
	// RestoreState writes the job state only if there is none, and reports
	// whether it wrote.
	RestoreState(ctx context.Context, state []byte) (bool, error)
	// Reset deletes the job: ledger, checkpoint, readers, quarantine, state.
	Reset(ctx context.Context) error
}

// Config configures a Collector. Every zero value has a documented default.
type Config struct {
	// Channel names the job in the Summary.
	Channel string
	// TargetSE ends the job when the pooled standard error of π̂ reaches it.
	// Zero means no target: run until cancelled.
	TargetSE float64
	// MinSamples is the least N at which a target can be met, so that a
	// lucky first batch cannot end a job. Default 10⁶.
	MinSamples uint64
	// Reset deletes the job before starting: a new job on an old channel.
	Reset bool
	// Key is the job key. With a key the job is in secure mode: only
	// entries signed with a worker key derived from it count, and anonymous
	// reports are refused. Nil means open mode.
	Key []byte
	// Seed is the seed of a new job. Nil means a random one. A running job
	// keeps the seed it has.
	Seed *uint64
	// MaxN is the most samples one entry of a new job may carry. Default
	// wire.MaxEntryN.
	MaxN uint64
	// Estimator is the estimator of a new job: mcpi.MC ("" too) or
	// mcpi.Stratified. A running job keeps the one it has.
	Estimator string
	// Cells is K of a new stratified job: a power of two from mcpi.MinCells
	// to mcpi.MaxCells; every batch is one point in each of K×K cells.
	// Default DefaultCells.
	Cells uint64
	// AnonMaxN is the most samples one anonymous report may carry (open
	// mode). Default 2³².
	AnonMaxN uint64
	// AnonShare is the largest share of N that anonymous reports may hold
	// (open mode): a report that would pass it is refused (anon_share).
	// Default DefaultAnonShare; 1 lifts the bound, which a job of only
	// anonymous (seed-style) workers needs.
	AnonShare float64
	// MaxWorkers bounds the workers a job credits: entries of further
	// workers are refused (too_many_workers). The collector reads at most
	// 2·MaxWorkers streams of the ledger, those credited and as many that
	// hold only rejected entries; further streams are not read (counted
	// as too_many_workers once each). Default 1,000,000.
	MaxWorkers int
	// VerifyFraction is the share of the credited samples that is replayed
	// to check it, chosen entry by entry with probability proportional to n.
	// Default 0.01. Entries whose hits, or whose worker's, look improbable
	// are always replayed.
	VerifyFraction float64
	// VerifySeed seeds the choice of the entries replayed, for tests that
	// must be replayable. Zero, the default, means a secret seed from
	// crypto/rand: workers must not be able to predict which entries are
	// checked.
	VerifySeed uint64
	// VerifyThreads is how many entries are replayed at once, one core each.
	// Default 1.
	VerifyThreads int
	// MaxUnverified is the largest share of N that may wait in the
	// verification queue when the target is declared. Default 0.005.
	MaxUnverified float64
	// Kernel replays entries. The zero Kernel means mcpi.Pick().
	Kernel mcpi.Kernel
	// Name identifies this collector among the ledger's readers. Default:
	// host-pid.
	Name string
	// CheckpointEvery is how often the credits are checkpointed and the
	// ledger trimmed. Default 2s.
	CheckpointEvery time.Duration
	// LedgerWindow is how long credited entries stay in the ledger for
	// `picluster verify`, at least (at most about 1.25 times as long: a
	// stream is trimmed at most every quarter window). Default 60s.
	LedgerWindow time.Duration
	// ReaderTTL is how long a collector's mark holds back the trimming of
	// the ledger after its last update: a collector silent for longer is
	// taken to be gone. One that was silent for half of it reloads from
	// the checkpoint before it credits more. It must be the same for every
	// collector of a job. Default 5 minutes.
	ReaderTTL time.Duration
	// SweepEvery is how often every worker's stream is read, and the target
	// looked at; streams whose entries are announced on the channel are read
	// at once. A sweep waits, besides, for ten times as long as the last one
	// took. Default 1s.
	SweepEvery time.Duration
	// FinalGrace bounds how long, once the target is reached, the
	// collector waits for the workers' last entries (until each has said
	// goodbye) before its final summary. Default DefaultFinalGrace.
	FinalGrace time.Duration
	// Logger receives the collector's logs. Default: slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.TargetSE < 0 || math.IsNaN(c.TargetSE) || math.IsInf(c.TargetSE, 0):
		return fmt.Errorf("--target-se %v: want a finite number ≥ 0", c.TargetSE)
	case c.MaxN > wire.MaxEntryN:
		return fmt.Errorf("--max-n %d: at most %d", c.MaxN, uint64(wire.MaxEntryN))
	case !(c.VerifyFraction >= 0 && c.VerifyFraction <= 1):
		return fmt.Errorf("--verify-fraction %v: want 0 … 1", c.VerifyFraction)
	case !(c.AnonShare >= 0 && c.AnonShare <= 1):
		return fmt.Errorf("--anon-share %v: want 0 … 1", c.AnonShare)
	case !(c.MaxUnverified >= 0 && c.MaxUnverified <= 1):
		return fmt.Errorf("max unverified %v: want 0 … 1", c.MaxUnverified)
	case c.Key != nil && len(c.Key) < wire.MinKeyLen:
		return fmt.Errorf("job key: %d bytes, want at least %d", len(c.Key), wire.MinKeyLen)
	case c.VerifyThreads < 0 || c.MaxWorkers < 0:
		return errors.New("verify threads and max workers: want ≥ 0")
	case c.Estimator != "" && c.Estimator != mcpi.MC && c.Estimator != mcpi.Stratified:
		return fmt.Errorf("--estimator %q: want mc or stratified", c.Estimator)
	case c.Cells != 0 && c.Estimator != mcpi.Stratified:
		return fmt.Errorf("--cells %d: only with --estimator stratified", c.Cells)
	}
	if d := c.withDefaults(); d.ReaderTTL < 4*d.CheckpointEvery {
		return fmt.Errorf("reader TTL %v: want at least four checkpoint intervals (%v)", d.ReaderTTL, 4*d.CheckpointEvery)
	}
	if c.Estimator == mcpi.Stratified && c.Cells != 0 {
		if err := mcpi.ValidCells(c.Cells); err != nil {
			return fmt.Errorf("--cells: %w", err)
		}
		if c.MaxN != 0 && c.Cells*c.Cells > c.MaxN {
			return fmt.Errorf("--cells %d: a batch of %d points is above --max-n %d", c.Cells, c.Cells*c.Cells, c.MaxN)
		}
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.MinSamples == 0 {
		c.MinSamples = 1_000_000
	}
	if c.MaxN == 0 {
		c.MaxN = wire.MaxEntryN
	}
	if c.Estimator == mcpi.Stratified && c.Cells == 0 {
		c.Cells = DefaultCells
	}
	if c.AnonMaxN == 0 {
		c.AnonMaxN = 1 << 32
	}
	if c.AnonShare == 0 {
		c.AnonShare = DefaultAnonShare
	}
	if c.MaxWorkers == 0 {
		c.MaxWorkers = 1_000_000
	}
	if c.VerifyFraction == 0 {
		c.VerifyFraction = 0.01
	}
	if c.VerifyThreads == 0 {
		c.VerifyThreads = 1
	}
	if c.MaxUnverified == 0 {
		c.MaxUnverified = 0.005
	}
	if c.Kernel.IsZero() {
		c.Kernel = mcpi.Pick()
	}
	if c.Name == "" {
		host, _ := os.Hostname()
		c.Name = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if c.CheckpointEvery == 0 {
		c.CheckpointEvery = 2 * time.Second
	}
	if c.LedgerWindow == 0 {
		c.LedgerWindow = time.Minute
	}
	if c.ReaderTTL == 0 {
		c.ReaderTTL = 5 * time.Minute
	}
	if c.SweepEvery == 0 {
		c.SweepEvery = time.Second
	}
	if c.FinalGrace == 0 {
		c.FinalGrace = DefaultFinalGrace
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// TargetSEForDigits returns the standard error at which the 95 % interval
// is narrow enough for d correct decimal digits: half-width z·SE ≤ ½·10⁻ᵈ.
func TargetSEForDigits(d int) float64 {
	return 0.5 * math.Pow(10, -float64(d)) / distuv.UnitNormal.Quantile(0.975)
}
