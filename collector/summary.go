package collector

import (
	"encoding/json"
	"math"
	"time"

	"github.com/picluster/picluster/mcpi"
)

// Summary is the state of a job as the collector sees it: the object that
// --json prints and /api/state serves. Every field is documented here, and
// README.md's schema is generated from these comments (go test
// ./cmd/picluster -run ReadmeSchema). Counts of samples are mcpi.Count,
// exact JSON integers of any size; every other number is a Float, null
// when unknown.
type Summary struct {
	// Channel is the job's name (--channel), the prefix of its Redis keys.
	Channel string `json:"channel"`
	// Job is the job's id, new at every --reset.
	Job string `json:"job"`
	// Mode is "secure" (only entries signed with the job key count) or "open".
	Mode string `json:"mode"`
	// N is the pooled samples: the ledger entries credited to workers not
	// quarantined, plus the anonymous batches.
	N mcpi.Count `json:"n"`
	// Hits is the pooled hits (points inside the quarter circle), of the same entries.
	Hits mcpi.Count `json:"hits"`
	// Pi is the estimate π̂ = 4·Hits/N; null before the first sample.
	Pi Float `json:"pi"`
	// StdErr is π̂'s binomial standard error, 4·√(p̂(1−p̂)/N); in a
	// stratified job, the replicates' (Stratified.StdErr).
	StdErr Float `json:"stderr"`
	// CI95 is the 95 % confidence interval of π, [low, high]: normal, or
	// Student-t on B − 1 degrees of freedom in a stratified job.
	CI95 [2]Float `json:"ci95"`
	// Estimator is "mc" (plain hit-or-miss) or "stratified" (one point in
	// each of K×K cells a batch; StdErr and CI95 then come from Stratified).
	Estimator string `json:"estimator"`
	// Stratified is the replicate error bar of a stratified job; absent for mc.
	Stratified *Stratified `json:"stratified,omitempty"`
	// Slope is the convergence slope: the fitted exponent of StdErr against
	// N on log-log axes over the history's last two decades of N (−½ for a
	// job of one batch size); null until it spans a factor of 2.
	Slope Float `json:"slope"`
	// Bias is the sampler's discretisation bias in π̂ (mcpi.PiBias, +4/2³²):
	// reported next to the SE, not subtracted.
	Bias Float `json:"bias"`
	// PiDigits are π̂'s digits that the 95 % interval fixes, and three more.
	PiDigits Digits `json:"pi_digits"`
	// AnonymousN is the part of N from anonymous (seed-style) batches.
	AnonymousN mcpi.Count `json:"anonymous_n"`
	// Workers is how many workers have entries credited, quarantined ones not counted.
	Workers int `json:"workers"`
	// Batches is the batches credited over the whole job (from the
	// checkpoint and since): the ledger entries, the seqs workers skipped
	// (Gaps), and the anonymous batches.
	Batches uint64 `json:"batches"`
	// Anonymous is the anonymous batches counted by this collector: reports
	// with only n and pi_approx, which name no worker.
	Anonymous uint64 `json:"anonymous_batches"`
	// Accepted is the entries and anonymous batches this collector credited
	// since it started.
	Accepted uint64 `json:"accepted"`
	// Rejected is the reports and entries refused, by reason in RejectedBy.
	Rejected uint64 `json:"rejected"`
	// RejectedBy is Rejected by reason ("bad_json", "duplicate", "bad_signature", …).
	RejectedBy map[string]uint64 `json:"rejected_by"`
	// Duplicates is the entries refused because their worker's seq was credited already.
	Duplicates uint64 `json:"duplicates"`
	// Gaps is the seqs workers skipped between their entries, over all
	// workers: the collector drew each (a batch is a function of its key)
	// and credited it to its worker, so withholding a batch changes nothing.
	Gaps uint64 `json:"gaps"`
	// GapsPending is the skipped seqs the collector has still to draw; the
	// entries after them wait, uncredited, until they are.
	GapsPending uint64 `json:"gaps_pending"`
	// LedgerPos is the mark credited up to: every entry appended to the
	// ledger before it (a Redis stream ID, by the server's clock) is counted.
	LedgerPos string `json:"ledger_pos"`
	// Seconds is the time since the collector started.
	Seconds Float `json:"seconds"`
	// SamplesPerS is the rate of the samples credited since the collector
	// started (those it found in Redis at start not counted); null before any.
	SamplesPerS Float `json:"samples_per_s"`
	// StoppedBy is why the collector stopped, a StopCause: "target",
	// "duration", "signal", "workers" or "error"; absent while it runs.
	StoppedBy string `json:"stopped_by,omitempty"`
	// Stale, when not empty, says why the final read of the ledger failed:
	// N may miss entries that reached the bus.
	Stale string `json:"stale,omitempty"`
	// TargetSE is the standard error at which the job stops (--target-se,
	// --target-digits); absent without a target.
	TargetSE Float `json:"target_se,omitempty"`
	// ETASeconds is the time to the target at the current rate; null
	// without a target or a rate.
	ETASeconds Float `json:"eta_seconds"`
	// Checks are the cross-checks of the error bar.
	Checks Checks `json:"checks"`
	// Verification is the replay check of the ledger's entries.
	Verification Verification `json:"verification"`
	// Quarantined are the workers a replay proved wrong, by id; their
	// samples are out of N. WorkersByStatus counts them all.
	Quarantined []QuarantineInfo `json:"quarantined"`
	// Flagged are the ids of the workers whose tally is implausible (see
	// FlagAlpha), by id. /api/state and /api/events list the first 100
	// (collector.MaxListed) of them, and of Quarantined.
	Flagged []string `json:"flagged"`
	// FlaggedCount is how many workers are flagged, all of them however
	// many Flagged lists.
	FlaggedCount int `json:"flagged_count"`
	// WorkersByStatus counts the workers credited by presence status:
	// "alive", "left", "vanished" and "quarantined", every one present.
	// Complete however /api/state pages worker_table.
	WorkersByStatus map[string]int `json:"workers_by_status"`
	// WorkerTable is every worker credited, sorted by id, the quarantined
	// last. /api/state and /api/events serve a page of it (see README).
	WorkerTable []WorkerStats `json:"worker_table"`
}

// Float is a float64 that encodes NaN and ±Inf as JSON null: an estimate of
// nothing is unknown, not an encoding error. Every float in a Summary is a
// Float, so that no value a report can cause makes the Summary unencodable.
type Float float64

// MarshalJSON writes f, or null when it is not finite.
func (f Float) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(f))
}

// Summary returns the job as the collector sees it now: a snapshot built
// for the caller alone, whose slices and maps it owns. Views read Snapshot
// instead, which shares one build among them all.
func (c *Collector) Summary() Summary {
	c.snaps.mu.Lock()
	defer c.snaps.mu.Unlock()
	return c.build().Full()
}

// build copies, under c.mu, the aggregates and the workers changed since
// the last build, and computes the rest outside it: the checks, the flags,
// the counts and the rates. The rows of the table are made when a view
// asks for them (Snapshot.Page). c.snaps.mu is held.
func (c *Collector) build() *Snapshot {
	start := time.Now()
	now := c.cfg.Now()
	c.mu.Lock()
	acquired := time.Now()
	ver := c.ver.summary() // under c.mu, with the credits: entries are queued under it too
	p := c.pool
	t, anon, disp := p.total, p.anon, p.disp
	s := Summary{
		Channel: c.cfg.Channel, Job: c.job.Job, N: t.N, Hits: t.Hits, AnonymousN: anon.N,
		Workers: len(p.workers) - len(p.quarantined), Batches: p.batches, Anonymous: p.anonBatches,
		RejectedBy: make(map[string]uint64, len(c.rejected)), Duplicates: p.duplicates, Gaps: p.gaps, GapsPending: p.drawing,
		LedgerPos: p.mark, StoppedBy: c.stopped, Stale: c.stale, TargetSE: Float(c.cfg.TargetSE), Accepted: p.accepted,
		Verification: ver,
	}
	lo, hi := t.CI95()
	s.Pi, s.StdErr, s.CI95 = Float(t.Pi()), Float(t.StdErr()), [2]Float{Float(lo), Float(hi)}
	s.PiDigits = CertainDigits(t.Pi(), lo, hi)
	c.stratifiedSummary(&s) // in a stratified job, the error bar is the replicates' one
	for r, n := range c.rejected {
		s.Rejected = sat(s.Rejected, n)
		s.RejectedBy[string(r)] = n
	}
	started, synced, baseN, swept := c.started, c.synced, c.baseN, c.swept
	copied := c.snaps.table.capture(p)
	c.mu.Unlock()
	locked := time.Since(acquired)

	secs := now.Sub(started).Seconds()
	s.Mode = "open"
	if c.cfg.Key != nil {
		s.Mode = "secure"
	}
	s.Bias, s.Seconds = mcpi.PiBias, Float(secs)

	tab := c.snaps.table.freeze(now, t.Sub(anon), &s) // workers are judged against the credited entries only
	dse, binom := disp.stdErr()
	s.Checks.Chunks = int(disp.m)
	s.Checks.EffectiveChunks = Float(disp.effective())
	s.Checks.DispersionRatio = Float(dse / binom)
	s.Checks.StdErrDispersion = Float(float64(s.StdErr) * dse / binom)
	if credited := t.N.Sub(anon.N).Float64(); credited > 0 {
		s.Verification.Cost = Float(ver.VerifiedN / credited)
	} else {
		s.Verification.Cost = Float(math.NaN())
	}
	if secs > 0 && synced && baseN.Cmp(t.N) < 0 {
		s.SamplesPerS = Float(t.N.Sub(baseN).Float64() / secs)
	}
	s.ETASeconds = Float(math.NaN())
	if se, rate := float64(s.StdErr), float64(s.SamplesPerS); c.cfg.TargetSE > 0 && se > 0 && rate > 0 {
		// SE ∝ 1/√N: the target needs N·(SE/target)² samples in all.
		need := t.N.Float64() * (se / c.cfg.TargetSE) * (se / c.cfg.TargetSE)
		s.ETASeconds = Float(max(0, need-t.N.Float64()) / rate)
	}
	return &Snapshot{Summary: s, At: now, Build: time.Since(start), Lock: locked, Copied: copied, Sweep: swept, tab: tab}
}
