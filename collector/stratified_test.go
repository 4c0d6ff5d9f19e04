package collector_test

import (
	"context"
	"math"
	"testing"
	"time"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/internal/membus"
	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

// stratEntry returns worker's stratified entry seq of K×K cells in job st,
// with its true hits plus lie.
func stratEntry(st wire.State, worker string, seq uint64, lie int64) wire.Entry {
	seed, _ := wire.ParseSeed(st.Seed)
	n := st.Cells * st.Cells
	hits := mcpi.Batch{Key: mcpi.Key{Seed: seed, Worker: worker, Seq: seq}, N: n, Cells: st.Cells}.Hits(mcpi.Pick())
	return wire.Entry{Job: st.Job, Worker: worker, Seq: seq, N: n, Hits: uint64(int64(hits) + lie), Seed: st.Seed,
		Kernel: "go", Seconds: 0.001, Cells: st.Cells}
}

// replicateSE is the textbook replicate standard error of the estimates
// 4·hᵢ/n, computed directly.
func replicateSE(es []wire.Entry) (mean, se float64) {
	var s float64
	for _, e := range es {
		s += 4 * float64(e.Hits) / float64(e.N)
	}
	mean = s / float64(len(es))
	var ss float64
	for _, e := range es {
		d := 4*float64(e.Hits)/float64(e.N) - mean
		ss += d * d
	}
	return mean, math.Sqrt(ss/float64(len(es)-1)) / math.Sqrt(float64(len(es)))
}

// A stratified job: the state names it, entries of another estimator or K
// and anonymous batches are refused as wrong_estimator, the error bar is the
// replicates' with a t interval, a faked entry is caught by replay, and a
// restarted collector has the same error bar from the checkpoint.
func TestStratifiedJob(t *testing.T) {
	bus := membus.New()
	cfg := collector.Config{Estimator: mcpi.Stratified, Cells: 128, VerifyFraction: 1, Name: "one"}
	c := newCollector(t, bus, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var st wire.State
	waitFor(t, func() bool {
		b, _ := bus.State(ctx)
		s, err := wire.DecodeState(b)
		st = s
		return err == nil && s.Job != ""
	})
	if st.Estimator != mcpi.Stratified || st.Cells != 128 {
		t.Fatalf("job state: estimator %q cells %d, want stratified 128", st.Estimator, st.Cells)
	}
	var good []wire.Entry
	for seq := uint64(1); seq <= 20; seq++ {
		good = append(good, stratEntry(st, "a", seq, 0), stratEntry(st, "b", seq, 0))
	}
	appendEntries(t, bus, nil, good...)
	plain := entry(st, "p", 1, 128*128, 0) // the right n, the wrong estimator
	other := stratEntry(st, "q", 1, 0)
	other.Cells = 256 // another K
	short := stratEntry(st, "r", 1, 0)
	short.N = 20000 // not K²
	appendEntries(t, bus, nil, plain, other, short, stratEntry(st, "cheat", 1, 3))
	_ = bus.PublishRaw(ctx, []byte(`{"n": 1000, "pi_approx": 3.2}`))
	deadline := time.Now().Add(10 * time.Second)
	for s := c.Summary(); !(s.RejectedBy["wrong_estimator"] == 4 && len(s.Quarantined) == 1 && s.Verification.PendingN == 0); s = c.Summary() {
		if time.Now().After(deadline) {
			t.Fatalf("rejected %v, quarantined %v, pending %d", s.RejectedBy, s.Quarantined, s.Verification.PendingN)
		}
		time.Sleep(time.Millisecond)
	}
	s := c.Summary()
	if s.Estimator != mcpi.Stratified || s.Stratified == nil || s.Stratified.Batches != 40 || s.Stratified.Cells != 128 {
		t.Fatalf("estimator %q, stratified %+v; want stratified, 40 batches of K=128", s.Estimator, s.Stratified)
	}
	mean, se := replicateSE(good)
	if math.Abs(float64(s.Pi)-mean) > 1e-12 || math.Abs(float64(s.StdErr)/se-1) > 1e-9 {
		t.Errorf("π̂ %v ± %v, want the replicates' %v ± %v", float64(s.Pi), float64(s.StdErr), mean, se)
	}
	tq := distuv.StudentsT{Mu: 0, Sigma: 1, Nu: 39}.Quantile(0.975)
	if got := (float64(s.CI95[1]) - float64(s.CI95[0])) / 2; math.Abs(got/(tq*se)-1) > 1e-9 {
		t.Errorf("CI95 half-width %v, want t(39)·SE = %v", got, tq*se)
	}
	if s.Quarantined[0].Worker != "cheat" {
		t.Errorf("quarantined %+v, want the cheat", s.Quarantined)
	}
	t.Logf("K=128, B=40: π̂ = %.6f ± %.2e (t), batch SE %.3e, 4√(K/3)/K² = %.3e, binomial SE %.3e, gain %.1f×",
		float64(s.Pi), float64(s.StdErr), float64(s.Stratified.BatchSE), float64(s.Stratified.TheorySE), float64(s.Stratified.BinomialSE), float64(s.Stratified.Gain))
	cancel()
	<-done

	// A new collector rebuilds the error bar from the checkpoint.
	c2 := newCollector(t, bus, collector.Config{Name: "two"})
	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := make(chan error, 1)
	go func() { done2 <- c2.Run(ctx2) }()
	<-c2.Loaded()
	s2 := c2.Summary()
	cancel2()
	<-done2
	if s2.Stratified == nil || s2.Stratified.Batches != 40 || math.Abs(float64(s2.StdErr)/se-1) > 1e-9 {
		t.Errorf("after a restart: stratified %+v, SE %v; want 40 batches, SE %v", s2.Stratified, float64(s2.StdErr), se)
	}
}

// No target is met before MinReplicates batches, however small the SE.
func TestStratifiedMinReplicates(t *testing.T) {
	bus := membus.New()
	c := newCollector(t, bus, collector.Config{Estimator: mcpi.Stratified, Cells: 128, TargetSE: 1, MinSamples: 1,
		VerifyFraction: 1e-9, MaxUnverified: 1, FinalGrace: time.Millisecond})
	st, done := started(t, c, bus)
	var es []wire.Entry
	for seq := uint64(1); seq < collector.MinReplicates; seq++ {
		es = append(es, stratEntry(st, "a", seq, 0))
	}
	appendEntries(t, bus, nil, es...)
	waitFor(t, func() bool { return c.Summary().Batches == collector.MinReplicates-1 })
	select {
	case err := <-done:
		t.Fatalf("done after %d batches (%v), want at least %d", collector.MinReplicates-1, err, collector.MinReplicates)
	case <-time.After(100 * time.Millisecond):
	}
	appendEntries(t, bus, nil, stratEntry(st, "a", collector.MinReplicates, 0))
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("not done after %d batches", collector.MinReplicates)
	}
}
