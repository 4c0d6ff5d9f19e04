package collector

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"sync"

	"github.com/picluster/picluster/internal/backoff"
	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

// Verification. Every credited entry is a claim that can be checked exactly:
// its hits are a pure function of (seed, worker, seq, n). The collector
// replays a random sample of entries and compares. An entry of n samples is
// chosen with probability
//
//	P = min(1, max(f·n/m, K·n/N))
//
// where f is Config.VerifyFraction, m the mean n of the entries credited
// before it, N the pooled samples with it, and K = ShareChecks in secure
// mode, 0 in open mode (where anyone may write anything under any id, and
// the job is on a network its owner trusts). The first term spends f of the
// cluster's work (f·E[n²]/E[n]² in general) on checks spread over everyone.
// The second makes checks follow influence: an entry
// holding σ of the pool is chosen with probability ≥ min(1, Kσ), so a worker
// that supplies a share s of the job's samples has at least about K·s of its
// entries replayed, whatever the sizes of its entries and of everyone
// else's: a worker faking every batch that ends up with s = 0.5 of N escapes
// with probability about e^(−K·s) = e^(−5). It costs about K·(1 + ln(B/K))
// entries over a job of B entries (125 of 10⁶), and it replays every entry
// while the pool is young (fewer than K entries' worth). K trades that
// start-up cost, which the target waits for (the replays run on one core
// while the cluster samples on all of its), against the odds of a large
// worker escaping.
// An entry whose hits are improbable (|z| > suspectZ against the pool), or
// whose worker's tally is (|z| > suspectZ against the others), is always
// chosen: a cheat large enough to move the estimate is replayed at once, and
// a worker faking plausible hits is caught after about 1/f of its entries.
// The choice is made by the collector after the entry is in the ledger, from
// a generator seeded by crypto/rand, so a worker cannot know which of its
// entries will be checked.
//
// A mismatch is proof: the worker (cheating, or on faulty hardware) is
// quarantined, persistently ({channel}:quarantine), and its whole
// contribution leaves the estimate.
const suspectZ = 3

// ShareChecks is K above: how many replays a worker's share of the pool
// earns, in expectation, per unit of share.
const ShareChecks = 10

// maxQueue bounds the entries waiting for replay; past it an entry that
// would have been chosen is skipped and counted.
const maxQueue = 1 << 16

// pick is an entry chosen for replay.
type pick struct {
	e      wire.Entry
	forced bool // chosen for its z, not by lot
}

type verifier struct {
	c     *Collector
	rng   *rand.Rand // guarded by c.mu, used only in choose
	s1    float64    // Σn of the entries credited
	count float64    // how many
	work  chan pick

	mu       sync.Mutex
	pending  uint64 // Σn waiting for replay
	selected uint64 // entries chosen
	forced   uint64 // of which chosen for their z
	verified uint64 // entries replayed and exact
	verN     float64
	skipped  uint64
	failed   uint64 // entries that did not replay
}

func newVerifier(c *Collector) *verifier {
	seed := c.cfg.VerifySeed
	if seed == 0 {
		seed = randomUint64()
	}
	var s [32]byte
	for j := range 8 {
		s[j] = byte(seed >> (8 * j))
	}
	for i := 8; i < 32; i += 8 {
		u := randomUint64()
		if c.cfg.VerifySeed != 0 {
			u = 0
		}
		for j := range 8 {
			s[i+j] = byte(u >> (8 * j))
		}
	}
	return &verifier{c: c, rng: rand.New(rand.NewChaCha8(s)), work: make(chan pick, maxQueue)}
}

// choose decides whether entry e, just credited to pool, is replayed;
// c.mu is held.
func (v *verifier) choose(e wire.Entry, p *pool) (pick, bool) {
	n := float64(e.N)
	prob := Chance(v.c.cfg.VerifyFraction, n, v.s1, v.count, p.total.N.Float64(), v.c.cfg.Key != nil)
	v.s1 += n
	v.count++
	forced := suspicious(e, p)
	if !forced && v.rng.Float64() >= prob {
		return pick{}, false
	}
	return pick{e: e, forced: forced}, true
}

// Chance is the probability that an entry of n samples is chosen by lot,
// after count entries of sumN samples in all, with the pool at pool samples
// counting it: min(1, max(f·n/m, K·n/N)) as above, the second term in
// secure mode only. The first entry (count 0) is always chosen.
func Chance(f, n, sumN, count, pool float64, secure bool) float64 {
	if count == 0 {
		return 1
	}
	p := f * n * count / sumN
	if secure { // checks follow influence too
		p = max(p, ShareChecks*n/pool)
	}
	return min(1, p)
}

// suspicious reports whether e's hits, or its worker's tally after it, are
// more than suspectZ standard errors from the rest of the pool: the
// two-sample z, (p̂₁ − p̂₂)/√(p̂(1−p̂)(1/n₁ + 1/n₂)) with p̂ the pooled
// fraction, which stays calibrated when the rest is small too.
func suspicious(e wire.Entry, p *pool) bool {
	w := p.workers[e.Worker]
	all := p.total
	if _, q := p.quarantined[e.Worker]; q {
		return false
	}
	z := func(t mcpi.Tally) float64 {
		rest := all.Sub(t)
		if rest.N.IsZero() || t.N.IsZero() {
			return 0
		}
		q := all.P()
		if !(q > 0 && q < 1) {
			return math.Inf(1)
		}
		return (t.P() - rest.P()) / math.Sqrt(q*(1-q)*(1/t.N.Float64()+1/rest.N.Float64()))
	}
	return math.Abs(z(mcpi.TallyOf(e.N, e.Hits))) > suspectZ || math.Abs(z(mcpi.TallyOf(w.TotalN, w.TotalHits))) > suspectZ
}

func (v *verifier) enqueue(p pick) {
	v.mu.Lock()
	defer v.mu.Unlock()
	select {
	case v.work <- p:
		v.pending += p.e.N
		v.selected++
		if p.forced {
			v.forced++
		}
	default:
		v.skipped++
	}
}

func (v *verifier) pendingN() uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.pending
}

// run replays chosen entries on VerifyThreads goroutines until ctx is done.
func (v *verifier) run(ctx context.Context) {
	var wg sync.WaitGroup
	for range v.c.cfg.VerifyThreads {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case p := <-v.work:
					v.replay(ctx, p.e)
				}
			}
		})
	}
	wg.Wait()
}

// Replay returns the hits entry e must have: its batch drawn again with
// kernel k, stratified when e names cells (the collector has checked them
// against the job state's). ok is false when e's seed is unreadable, or its
// cells are not a valid K for its n.
func Replay(e wire.Entry, k mcpi.Kernel) (hits uint64, ok bool) {
	seed, err := wire.ParseSeed(e.Seed)
	if err != nil {
		return 0, false
	}
	if e.Cells != 0 && (mcpi.ValidCells(e.Cells) != nil || e.N != e.Cells*e.Cells) {
		return 0, false
	}
	return mcpi.Batch{Key: mcpi.Key{Seed: seed, Worker: e.Worker, Seq: e.Seq}, N: e.N, Cells: e.Cells}.Hits(k), true
}

func (v *verifier) replay(ctx context.Context, e wire.Entry) {
	v.c.mu.Lock()
	_, caught := v.c.pool.quarantined[e.Worker]
	v.c.mu.Unlock()
	if caught { // its contribution is out already: a queue of its fakes costs nothing
		v.mu.Lock()
		v.pending -= e.N
		v.mu.Unlock()
		return
	}
	want, _ := Replay(e, v.c.cfg.Kernel) // the collector checked the seed against the job's
	v.mu.Lock()
	v.pending -= e.N
	if want == e.Hits {
		v.verified++
		v.verN += float64(e.N)
	} else {
		v.failed++
	}
	v.mu.Unlock()
	c := v.c
	if want == e.Hits {
		c.mu.Lock()
		if w := c.pool.workers[e.Worker]; w != nil {
			w.Verified++
			c.dirty[e.Worker] = true
			c.pool.touch(e.Worker)
		}
		c.mu.Unlock()
		return
	}
	c.mu.Lock()
	rec := wire.QuarantineRecord{Reason: "replay_mismatch", Seq: e.Seq, Want: want, Got: e.Hits, Job: c.job.Job, By: c.cfg.Name, At: c.cfg.Now().UTC().Format("2006-01-02T15:04:05Z")}
	fresh := c.pool.quarantine(e.Worker, rec)
	if fresh {
		c.history.add(c.pool.total, c.cfg.Now())
	}
	c.mu.Unlock()
	if !fresh {
		return
	}
	c.log.Error("an entry did not replay: worker quarantined, its whole contribution leaves the estimate",
		"worker", e.Worker, "seq", e.Seq, "claimed_hits", e.Hits, "replayed_hits", want)
	v.persist(ctx, e.Worker, rec)
}

// persist records a quarantine on the bus, so a restarted collector keeps
// the worker out.
func (v *verifier) persist(ctx context.Context, worker string, rec wire.QuarantineRecord) {
	b, _ := json.Marshal(rec)
	_ = backoff.Retry(ctx, v.c.log, "record the quarantine", func() error { return v.c.bus.Quarantine(ctx, worker, b) })
}

// Verification is the replay check in the Summary.
type Verification struct {
	// Fraction is the share of samples chosen by lot for replay (--verify-fraction).
	Fraction float64 `json:"fraction"`
	// Selected is the entries chosen for replay.
	Selected uint64 `json:"selected"`
	// Forced is the selected entries chosen for an improbable z, not by lot.
	Forced uint64 `json:"forced"`
	// Verified is the entries replayed and found exact.
	Verified uint64 `json:"verified"`
	// VerifiedN is their samples.
	VerifiedN float64 `json:"verified_n"`
	// Failed is the entries that did not replay: their workers are quarantined.
	Failed uint64 `json:"failed"`
	// PendingN is the samples waiting for replay.
	PendingN uint64 `json:"pending_n"`
	// Skipped is the entries chosen but dropped because the queue was full.
	Skipped uint64 `json:"skipped"`
	// Cost is VerifiedN over the samples credited: the share of the job replayed.
	Cost Float `json:"cost"`
}

// QuarantineInfo is one quarantined worker.
type QuarantineInfo struct {
	// Worker is the quarantined worker's id.
	Worker string `json:"worker"`
	// QuarantineRecord is why: its fields are inline.
	wire.QuarantineRecord
	// N is the samples it had been credited, now out of the estimate.
	N uint64 `json:"n"`
}

func (v *verifier) summary() Verification {
	v.mu.Lock()
	defer v.mu.Unlock()
	return Verification{Fraction: v.c.cfg.VerifyFraction, Selected: v.selected, Forced: v.forced, Verified: v.verified,
		VerifiedN: v.verN, Failed: v.failed, PendingN: v.pending, Skipped: v.skipped}
}
