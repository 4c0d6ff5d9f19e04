// Package collector pools a picluster job's ledger into one estimate of π,
// checks it by replay, and decides when the job is done.
//
// Run creates the job (or adopts the one in the job state), loads the
// quarantine and the checkpoint, then credits the ledger, one stream per
// worker, from the checkpoint's positions on, as it grows
// (Bus.ReadLedgers): the streams whose entries are announced on the
// channel at once, every stream at each sweep (SweepEvery; Bus.ScanLedgers
// lists them). A sweep's start, by the bus's clock, becomes the collector's
// mark (or the oldest entry that waits for skipped seqs to be drawn, if
// older): every entry appended before it has been read. An entry is credited
// when it fits the job (its own worker's stream, job id, seed, cap,
// signature in secure mode, a seq above the worker's last, the worker's
// entry size) and rejected otherwise, counted by reason and logged once per
// sender (the stream's owner) and reason; an entry refused for its size or
// shape is deleted from the ledger at once. The seqs a worker skipped
// before an entry are drawn by the collector and credited to it, so that
// withholding unlucky batches gains nothing (fill.go). The pooled tally is
// the exact sum of the credits of the workers not quarantined plus the
// anonymous (seed-style) batches heard live on the channel in open mode,
// which are bounded in share and judged against the credited entries
// (anon.go). Counts are 128-bit (mcpi.Count), so the pool never
// overflows. Nothing is credited from what workers say about themselves but
// their entries, and every entry can be replayed.
//
// Every CheckpointEvery, Run saves the credits that changed, each with its
// position in its worker's stream, and the mark (which only moves forward),
// records its mark among the ledger's readers, and trims the streams it has
// read to what every live reader has checkpointed, less LedgerWindow. A
// reader whose record is older than Config.ReaderTTL (by Redis's clock) is
// not waited for; a collector that could not record its mark for half of
// that (by its own monotonic and wall clocks, and Redis's) stops reading,
// and reloads from the checkpoint before it credits or trims more.
// Crediting is deterministic, so any collector's checkpoint is valid for
// every other, and two collectors reading one ledger agree exactly. verify.go describes the replay check and
// the quarantine.
//
// Concurrency: Run owns six goroutines (the ledger reader, the channel
// listener, the checkpointer, the verifier, the drawer of skipped seqs and
// the snapshot's tick), all
// ended when it returns. Summary, Snapshot and History may be called from
// any goroutine at any time. Views read Snapshot: one build per tick
// (SnapshotInterval), outside the lock that crediting takes, shared by all
// of them, its worker table compact and shared with the snapshots before
// it, rows made only for what a view asks (snapshot.go).
//
// Summary also carries the cross-checks of the error bar (the SE implied by
// the scatter of the accepted chunks of samples, a χ² homogeneity test across
// workers), a per-worker table with z-scores, presence (alive, left,
// vanished, from reports and heartbeats; in secure mode a heartbeat or
// goodbye counts only when signed with its worker's key and newer than the
// last) and flags for implausible workers.
// History keeps the estimate after every change of the pool, thinned to
// MaxHistory points, for plots and dashboards.
//
// # The dispersion SE
//
// The pool is made of disjoint chunks j of nⱼ samples with hⱼ hits (the
// increase of a worker's totals, an anonymous batch, a ledger entry), N = Σnⱼ,
// p̂ = Σhⱼ/N. Under the binomial model hⱼ ~ Bin(nⱼ, p), independent; write
// dⱼ = hⱼ − pnⱼ, D = Σdⱼ, so E dⱼ = 0, Var dⱼ = nⱼpq (q = 1 − p). The
// residual hⱼ − p̂nⱼ = dⱼ − (nⱼ/N)·D has
//
//	E(dⱼ − (nⱼ/N)D)² = nⱼpq − 2(nⱼ/N)·nⱼpq + (nⱼ/N)²·Npq = pq·(nⱼ − nⱼ²/N),
//
// so E Σ(hⱼ − p̂nⱼ)² = pq·(N² − Σnⱼ²)/N, and
//
//	Var̂(p̂) = Σ(hⱼ − p̂nⱼ)² / (N² − Σnⱼ²)
//
// is unbiased for Var(p̂) = pq/N whatever the chunk sizes. For m equal chunks
// N² − Σnⱼ² = N²(m−1)/m, the familiar m/(m−1)·Σ(…)²/N²; for unequal ones that
// older formula is biased low, by the factor (1 − Σnⱼ²/N²)·m/(m−1): 0.017 for
// a rebuilt chunk of 10¹² followed by nine of 10⁹. The dispersion SE is
// 4·√Var̂(p̂) and DispersionRatio is it over the binomial 4·√(p̂q̂/N) of the
// same chunks. The ratio of variances is unbiased; the ratio of SEs, its
// square root, is low by about 1/(4ν) for ν degrees of freedom in the
// scatter (Jensen).
//
// How much evidence the scatter holds is judged by the effective number of
// chunks, N²/Σnⱼ² (m for m equal chunks, about 1 when one chunk holds
// nearly all the samples): below MinEffectiveChunks the dispersion SE and
// ratio are null. After a rebuild, which turns each worker's history into
// one chunk, they reappear once the live chunks weigh enough beside it.
//
// # χ² homogeneity
//
// The workers with at least 1000 samples, W of them, are tested against
// their own pooled fraction p̃ = Σhᵢ/Σnᵢ over those W alone: Pearson's
// statistic of the 2×W table of hits and misses, Σ(hᵢ − nᵢp̃)²/(nᵢp̃(1−p̃)),
// χ² on W − 1 degrees of freedom under homogeneity. Anonymous batches are
// not in p̃: with them, p̃ would not be the fraction the W workers share, and
// the p-values come out too small (mean 0.38 instead of 0.5 with three
// workers and as many samples again in anonymous batches). Chi2P is the
// p-value of one evaluation; it is a check on the error bar, not a flag.
//
// # Flags, at a family-wise rate over workers and over time
//
// Worker i, with nᵢ samples, is compared with the rest of the credited
// entries (n_r samples; anonymous batches are left out, so that junk cannot
// get an honest worker flagged): z = (p̂ᵢ − p̂_r)/√(p̂q̂(1/nᵢ + 1/n_r)).
// In information time I = 1/(pq(1/nᵢ + 1/n_r)) = m/(pq), with the effective
// size m = nᵢn_r/(nᵢ + n_r), the score S = z·√I is, under homogeneity and as
// both sides grow in any pattern, a Brownian motion (the canonical joint
// distribution of sequential two-sample comparisons: Jennison and Turnbull,
// "Group Sequential Methods", 2000, ch. 3). Mixing exp(λS − λ²I/2) over
// λ ~ N(0, 1/ρ) gives the martingale
//
//	M(I) = √(ρ/(I + ρ)) · exp(S²/(2(I + ρ))),  M(0) = 1,
//
// and Ville's inequality, P(sup M ≥ 1/a) ≤ a, says that S ever reaches
// √((I + ρ)(ln(1 + I/ρ) + 2 ln(1/a))) with probability at most a: at every
// sample size, however often it is evaluated, even at times chosen by
// looking. In z, with ρ = m₀/(pq), m₀ = FlagScale:
//
//	|z| ≥ √((1 + m₀/m)·(ln(1 + m/m₀) + 2·ln(1/a))).
//
// A worker is flagged when its |z| reaches this bound with a = FlagAlpha/W,
// W the workers in the table at that evaluation. For a job of W honest
// workers the probability that any is ever flagged is then at most
// FlagAlpha (Bonferroni over the workers, Ville over the evaluations), up to
// the normal approximation of the binomial, which is exact enough for the
// sample sizes where a bound near 5 can be reached. Workers that join later
// raise W and so tighten everyone's bound; the bound a worker had while W
// was smaller was looser, so for workers joining one at a time the rate is
// at most FlagAlpha·(1 + ln(W_end/W_start)). The bound is 5.0 for 100
// workers at m = 10¹⁰ samples, 5.9 for 10⁴. The fixed |z| > 5 it replaces
// falsely flagged someone in 6 % of simulated jobs of 10⁴ workers evaluated
// over ten doublings of their samples (calibration_test.go; this rule: in
// none of 100).
//
// The power is what the bound costs: a worker whose π̂ is off by δ has z of
// mean (δ/4)·√(m/(pq)), so it is flagged by the m where that mean exceeds
// the bound by Φ⁻¹(power), or sooner. For δ = 10⁻⁴ among 100 workers, 99 %
// power needs m ≈ 1.5·10¹⁰ samples of it; a fixed-sample test at the same
// rate, good for one look only, would need 1.0·10¹⁰.
//
// # Discretisation bias
//
// The sampler's lattice (mcpi's doc) biases the hit fraction by +1/M to
// first order, M = 2³², so π̂ by +4/M = 9.3·10⁻¹⁰ (LatticeBias). Summary
// reports it next to the standard error, and does not subtract it: it is a
// floor under the error, as large as the SE of a job of 3·10¹⁸ samples.
// Anonymous batches from other samplers have biases of their own.
//
// # Stratified jobs: the error bar from replicates
//
// In a stratified job (Config.Estimator, the job state's estimator and
// cells) every batch is one point in each of K×K cells (mcpi's doc), so
// all batches have n = K² and are independent, identically distributed
// replicates. The binomial formula does not apply: it overstates the error
// by a factor of about 2.6·√K (15 at K = 2⁷, 180 at K = 2¹⁵). The
// estimate is the mean of the B batch estimates (equal to 4H/N, since the
// n are equal), its SE their sample standard deviation over √B, and CI95
// the Student-t interval on B − 1 degrees of freedom. This is the
// dispersion SE above for equal chunks, made primary; it is kept across
// restarts by each worker's Σ(h − n·π/4)² in the checkpoint. Summary.
// Stratified shows beside it the leading-order 4·√(K/3)/K²·1/√B
// per batch (the measured one runs at about 0.88 of it, mcpi's doc), the
// binomial SE plain MC would have with the same N, and their ratio.
//
// MinReplicates = 30. No SE is reported below 2 batches, and no target can
// be met below 30, for three reasons. (1) The SE is itself an estimate:
// its relative standard deviation is about 1/√(2(B − 1)), 13 % at B = 30
// against 50 % at B = 3, and a rule that stops the first time the
// estimated SE is below the target stops preferentially when it is
// underestimated; at 30 the effect on coverage is within the calibration
// test's resolution (below). (2) The t quantile is 2.045 at 29 degrees of
// freedom against the normal's 1.960, so the interval is barely wider than
// the MC one; at B = 5 it would be 2.78. (3) The t interval assumes normal
// batch estimates; H is a sum of about 2K independent Bernoulli cells
// (K ≥ 2⁷), so its skewness is below 0.05 and 30 replicates leave no
// visible departure. The cost is small: at K = 2¹⁵, 30 batches are 3.2·10¹⁰
// samples, a few seconds of this machine. TestStratifiedCalibration runs
// 400 jobs at K = 2⁷ stopped by this rule (target 1.8·10⁻⁴, B ≈ 59): the
// 95 % interval covered π in 95.8 % and Var((π̂ − π)/SE) was 0.933; stopped
// at exactly B = 30, 96.5 % and 1.027 (a t(29) variable has variance 1.074).
//
// The per-worker z-scores, flags and the replay lottery's "suspicious"
// entries still use the binomial variance, which is far larger than a
// stratified batch's: they never flag an honest worker, and a cheat that
// stays within the binomial band is left to the replay lottery.
//
// # Stopping
//
// When Config.TargetSE is set and the pooled standard error reaches it (with
// at least MinSamples, in a stratified job at least MinReplicates batches, at most MaxUnverified of N waiting for replay),
// Run writes the job state "done" and publishes a stop on the control
// channel.
// Then it waits, for at most Config.FinalGrace, until every credited worker
// has said goodbye (a worker publishes its goodbye after its last append)
// or vanished, crediting the ledger as it goes, and reads the ledger once
// more: the final N and hits are the ledger's sums. It returns nil.
//
// Run returns ctx's error when cancelled, after a last read of the ledger
// (at most FinalSyncTimeout, or three times its reader's last sweep of
// every stream when that took longer, up to a minute). Summary.StoppedBy records why it stopped: the
// StopCause carried by ctx's cause (StopDuration, StopWorkers), StopSignal
// for a plain cancellation, StopTarget, or StopError. A final read that
// fails is never silent: Run's error wraps ErrStale and Summary.Stale says
// why. If ctx ends before the job was loaded, the error wraps ErrNoJob. A
// permanent bus error (backoff.IsPermanent) ends Run at once with that
// error, and a job state that names another job (someone ran --reset) with
// ErrJobReset. Every goroutine Run starts has ended when it returns.
//
// # A loss of Redis's data
//
// When the job state vanishes (Redis restarted without persistence), the
// running collector writes it again (only if none was written meanwhile: a
// reset's new job wins), with the quarantine and, at the next checkpoint,
// every worker's credit; workers sample on meanwhile. A collector started
// afterwards loads that checkpoint and converges on the same N. What the
// loss costs: the ledger window kept for picluster verify, and a worker's
// entries appended before it and not yet credited (at most about one read's
// worth) when the worker appends nothing after it; when it appends on, they
// are seqs it skipped, and the collector draws them (up to MaxGaps). A collector started in the CheckpointEvery before the state is
// written again makes a new job instead.
//
// Summary may be called from any goroutine at any time; it is how views
// read the collector, which has no presentation code of its own.
package collector
