package collector

import (
	"fmt"
	"math"

	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

// Anonymous reports. In open mode a seed-style report ({"n", "pi_approx"})
// names no worker and cannot be replayed, so nothing ties it to a sampler:
// one publisher could send anything. Two rules bound what such reports can
// do to the estimate, and both are judged against the credited entries,
// which can be replayed:
//
//   - Share: the anonymous batches may hold at most a share s of N
//     (Config.AnonShare, DefaultAnonShare); a report that would pass it is
//     refused as anon_share.
//   - Plausibility: with the report, the anonymous batches' fraction p̂ₐ
//     (over nₐ samples) must stay within the family-wise flag bound of the
//     credited fraction p̂_c (over n_c): |z| < flagBound(m, FlagAlpha),
//     z = (p̂ₐ − p̂_c)/√(p̂_c·q̂_c·(1/nₐ + 1/n_c)), m = nₐn_c/(nₐ + n_c).
//     A report that breaks it is refused as implausible. Honest anonymous
//     batches break it with probability at most FlagAlpha over the whole
//     job (Ville's inequality, as for the flags: doc.go).
//
// Together they bound the shift of π̂: the pooled p̂ moves from p̂_c by
// s·(p̂ₐ − p̂_c), and |p̂ₐ − p̂_c| ≤ Z·SE_p/√(s(1−s)) with Z the bound and
// SE_p the pooled binomial SE of p̂, so the shift is at most Z·√(s/(1−s))
// standard errors, whatever one publisher or many send. Z depends on m;
// at s = 0.05 (m ≈ 0.0475·N) it is 5.5, 3.7 and 4.5 for N of 10⁸, 10¹⁰ and
// 10¹³, and the bound 1.25, 0.84 and 1.03 SE. Anonymous batches are no part of the rest a
// worker is judged against, so junk cannot get an honest worker flagged.
// Before any entry is credited there is nothing to judge against: with
// s < 1 no anonymous report counts yet, and with s = 1 (a job of Python
// peers only) every well-formed one counts, as in the seed.

// DefaultAnonShare is Config.AnonShare's default.
const DefaultAnonShare = 0.05

// anonFits decides whether an anonymous batch t may join the pool; c.mu is
// held.
func (c *Collector) anonFits(t mcpi.Tally) error {
	anon := c.pool.anon.Add(t)
	cred := c.pool.total.Sub(c.pool.anon)
	na, nc := anon.N.Float64(), cred.N.Float64()
	if s := c.cfg.AnonShare; s < 1 && na*(1-s) > s*nc {
		return &wire.Error{Reason: wire.AnonShare, Detail: fmt.Sprintf(
			"anonymous batches would hold %.3g of %.3g samples, above the share %g (--anon-share)", na, na+nc, s)}
	}
	q := cred.P()
	if nc == 0 || !(q > 0 && q < 1) {
		return nil
	}
	z := (anon.P() - q) / math.Sqrt(q*(1-q)*(1/na+1/nc))
	if b := flagBound(na*nc/(na+nc), FlagAlpha); !(math.Abs(z) < b) {
		return &wire.Error{Reason: wire.Implausible, Detail: fmt.Sprintf(
			"with this report (π̂ %.6g, n %v) the anonymous batches would be %.1f standard errors from the credited entries, past the bound %.1f", t.Pi(), t.N, z, b)}
	}
	return nil
}
