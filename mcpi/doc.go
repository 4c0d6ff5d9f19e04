// Package mcpi is picluster's sampler and estimate math: the sampling
// kernels, how a batch is seeded, and the Tally that pools samples into an
// estimate of π with its standard error. It does no I/O, starts no
// goroutines and logs nothing; the worker package drives it.
//
// # Points
//
// One 64-bit output of the generator is one point. Its high 32 bits are x and
// its low 32 bits are y, two integer coordinates in [0, 2³²). The point is a
// hit when x² + y² < 2⁶⁴, decided exactly in integer arithmetic: the squares
// are exact 64-bit products and the sum is below 2⁶⁴ exactly when the 64-bit
// addition does not carry. There is no floating point in the sampler.
//
// # Discretisation bias
//
// The points are the M² lattice cells of the square, M = 2³². The number of
// lattice points (x, y) with x, y ≥ 0 and x² + y² < M² is πM²/4 + M + O(M^⅔)
// (the quarter disc plus half of the M points on each axis that the closed
// lower edges add), so the expected hit fraction is
//
//	p = π/4 · (1 + 4/(πM) + O(M^-4/3)),
//
// a relative bias of 4/(πM) ≈ 2.96e-10 at M = 2³², below 1e-9. In absolute
// terms p = π/4 + 1/M, and π̂ = 4H/N is biased by +4/M ≈ 9.31e-10 (PiBias),
// which the collector reports next to the standard error. The tests
// count the lattice exactly at small widths (M = 2⁴ … 2¹²) and check that
// bias·M approaches 4/π.
//
// # Generator and soundness
//
// Each lane is a xoshiro256+ generator (Blackman and Vigna, "Scrambled linear
// pseudorandom number generators", 2021): period 2²⁵⁶ − 1, 3-dimensionally
// equidistributed, no failures in BigCrush or PractRand except the linearity
// tests on its lowest bits. Its 64-bit output is 1-dimensionally
// equidistributed over the period, so the expected fraction of hits over the
// period is exactly the lattice fraction above. The only weak bits, the lowest
// three of each output, are the three least significant bits of y: changing
// them moves a point by less than 8 lattice units, so they decide only the
// points in a band of about 16/M ≈ 3.7e-9 of the square around the arc. No
// serial pattern in them can move the estimate by more than that, a hundred
// times below the standard error of any run that could detect it. We use
// xoshiro256+ rather than xoshiro256++ because its output is one addition,
// which vector units without a 64-bit rotate (AVX2) do in one instruction.
//
// # Seeding: a batch is a pure function of its key
//
// A batch is (Key{Seed, Worker, Seq}, N). The key is hashed (FNV-1a of the
// worker id, then splitmix64's finaliser over seed, id and seq) into a
// splitmix64 state; lane i's 256-bit state is that splitmix64 stream's
// outputs 4i+1 … 4i+4, the seeding Vigna recommends. There are Lanes = 8192
// lanes; lane i draws ⌊N/Lanes⌋ points, plus one when i < N mod Lanes. The
// hits are a sum over lanes, so they do not depend on the order in which the
// lanes run, on the kernel, or on how many threads share them: any batch can
// be replayed from its report (seed, worker, seq, n) and must give the same
// hits. Two lanes' streams overlap only if their random starting points fall
// within one stream's length of each other in the period: for a cluster that
// draws 10²⁰ points in 10¹² lane streams the chance is about 10³²/2²⁵⁶ < 10⁻⁴⁴.
//
// # Stratified batches
//
// A stratified batch (Batch.Cells = K, a power of two from MinCells to
// MaxCells) cuts the square into K×K equal cells of width w = 2³²/K
// lattice units, an integer, and draws one point in each: cell (i, j)'s
// point is (i·w + jx, j·w + jy), N = K². Lane ℓ covers a fixed set of
// cells (cellsOf): for K ≤ Lanes, column ℓ mod K and K²/Lanes consecutive
// rows of it; for K > Lanes, the K/Lanes whole columns ℓ, ℓ + Lanes, … The
// lanes of a group are always in one row, so a vector kernel adds the row
// base once a step for 32 lanes.
//
// Unbiased: the cells partition the lattice exactly (w is an integer), and
// the jitter is uniform on a cell's w² lattice points, so each cell's hit
// probability is its lattice hits over w² and E[H] is the lattice count of
// the whole square: the same expectation, and the same discretisation bias
// +4/M, as plain batches.
//
// Bits: the jitters are the high 32 − k bits of each half of the
// xoshiro256+ output, k = log₂ K ≥ 7: jx = bits 32+k … 63, jy = bits k … 31.
// Bits 0 … k−1, among them the three weak lowest bits, are never used, so
// the argument above for plain batches is not even needed: every bit used is
// one that passes BigCrush and PractRand, and each half's top bits are
// equidistributed over the period like the whole output.
//
// Variance: a cell wholly inside or outside the arc always or never hits;
// only the cells the arc crosses, 2K − 1 of them, vary, cell c with
// variance a_c(1 − a_c), a_c its area fraction inside. So Var(H) =
// Σ a_c(1 − a_c). The estimate takes a_c uniform (mean a(1 − a) =
// 1/6): Var(H) ≈ K/3 and SE(π̂) ≈ 4·√(K/3)/K² (StratifiedSE), falling as
// N^(−3/4). The exact sum is smaller, 0.253·K at K = 2⁷ rising to 0.260·K
// at K = 2¹⁶ (computed in TestStratifiedVariance's cellVariance), so a
// measured per-batch SE runs at about √(0.26·3) ≈ 0.88 of StratifiedSE.
// The batches of a job are independent replicates, and the collector takes
// the error bar from their scatter, not from this formula.
//
// # Kernels
//
// Kernels returns the kernels this CPU can run, fastest first; every kernel
// must count exactly what stepLane, the definition, counts, and its
// stratified twin what stepCell counts. A kernel advances
// a group of GroupLanes lanes whose state is held as a structure of arrays.
//
// # Concurrency
//
// Every function is safe for concurrent use; a Batch's groups may be computed
// on any goroutines. Count and Tally are values.
package mcpi
