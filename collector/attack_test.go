package collector_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/internal/redisbus"
	"github.com/picluster/picluster/internal/redistest"
	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
	"github.com/picluster/picluster/worker"
)

// attackJob is a job on a real redis-server: a collector, honest workers
// and a hand-driven worker, each with a bus of its own.
type attackJob struct {
	t     *testing.T
	srv   *redistest.Server
	key   []byte // the job key; nil in open mode
	col   *collector.Collector
	st    wire.State
	stop  func()
	hand  *redisbus.Bus
	batch uint64
}

const attackBatch = 1 << 20

func newAttackJob(t *testing.T, key []byte) *attackJob {
	t.Helper()
	j := &attackJob{t: t, srv: redistest.Start(t), key: key, batch: attackBatch}
	j.hand = j.bus()
	j.start()
	j.st = jobState(t, j.hand)
	return j
}

// start runs a collector of the job until stop or the test's end.
func (j *attackJob) start() {
	j.t.Helper()
	seed := uint64(0x19_2026_12_04) // the job's: fixed, so that every run draws the same batches
	j.col = newCollector(j.t, j.bus(), collector.Config{Key: j.key, Seed: &seed})
	j.stop = runLoaded(j.t, j.col)
}

func (j *attackJob) bus() *redisbus.Bus {
	b, err := redisbus.Open(j.srv.URL(), "attack", redisbus.Options{Log: quiet})
	if err != nil {
		j.t.Fatal(err)
	}
	j.t.Cleanup(func() { b.Close() })
	return b
}

// honest runs a real worker for batches batches, to the end.
func (j *attackJob) honest(id string, batches uint64) {
	j.t.Helper()
	w, err := worker.New(j.bus(), worker.Config{ID: id, Threads: 1, Batch: j.batch, MaxBatches: batches, JobKey: j.key, Logger: quiet})
	if err != nil {
		j.t.Fatal(err)
	}
	if err := w.Run(context.Background()); err != nil {
		j.t.Fatal(err)
	}
}

// draw returns batch seq of worker id, drawn honestly.
func (j *attackJob) draw(id string, seq uint64) wire.Entry {
	seed, _ := wire.ParseSeed(j.st.Seed)
	hits := mcpi.Batch{Key: mcpi.Key{Seed: seed, Worker: id, Seq: seq}, N: j.batch}.Hits(mcpi.Pick())
	return wire.Entry{Job: j.st.Job, Worker: id, Seq: seq, N: j.batch, Hits: hits, Seed: j.st.Seed, Kernel: "go", Seconds: 0.01}
}

// append appends e to its worker's stream, signed with its key in secure mode.
func (j *attackJob) append(e wire.Entry) {
	j.t.Helper()
	p := wire.EncodeEntry(e)
	s := wire.Signed{Payload: p}
	if j.key != nil {
		s.Sig = wire.Sign(wire.WorkerKey(j.key, e.Worker), p)
	}
	if err := j.hand.Append(context.Background(), e.Worker, []wire.Signed{s}); err != nil {
		j.t.Fatal(err)
	}
}

// at waits until the collector has credited worker id up to seq.
func (j *attackJob) at(id string, seq uint64) {
	j.t.Helper()
	waitFor(j.t, func() bool { w, ok := j.col.Snapshot().Worker(id); return ok && w.Seq >= seq })
}

// zOf is a batch's z against π/4.
func zOf(e wire.Entry) float64 {
	p := math.Pi / 4
	return (float64(e.Hits) - float64(e.N)*p) / math.Sqrt(float64(e.N)*p*(1-p))
}

// A worker that draws every batch honestly and appends only those it
// likes (z ≥ −0.5), as in the attack with one worker's own key,
// moves nothing: the collector draws the seqs it skipped, so the pool is
// exactly what every batch up to its last entry gives. In secure and open
// mode; and an honest worker whose entries were lost (a failover that lost
// acknowledged appends) is not quarantined, its lost batches drawn alike.
func TestWithholdingGainsNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("draws 10⁹ samples")
	}
	for _, mode := range []struct {
		name string
		key  []byte
	}{{"secure", []byte("0123456789abcdef-job-key")}, {"open", nil}} {
		t.Run(mode.name, func(t *testing.T) {
			j := newAttackJob(t, mode.key)
			const batches = 214
			var all, appended mcpi.Tally // mallory's every batch, and those it appended
			skipped, last := 0, uint64(0)
			for seq := uint64(1); seq <= batches; seq++ {
				e := j.draw("mallory", seq)
				all = all.Add(mcpi.TallyOf(e.N, e.Hits))
				// It keeps its last batch, whatever its z, so that every seq
				// before it counts.
				if zOf(e) < -0.5 && seq < batches {
					skipped++
					continue
				}
				appended = appended.Add(mcpi.TallyOf(e.N, e.Hits))
				j.append(e)
				last = seq
			}
			j.honest("h1", batches)
			j.honest("h2", batches)
			j.at("mallory", last)
			j.at("h1", batches)
			j.at("h2", batches)
			s := j.col.Summary()
			var honest mcpi.Tally
			for _, id := range []string{"h1", "h2"} {
				w, _ := j.col.Snapshot().Worker(id)
				honest = honest.Add(mcpi.TallyOf(w.N, w.Hits))
			}
			want := honest.Add(all)
			se := want.StdErr()
			shift := (float64(s.Pi) - want.Pi()) / se
			withheld := honest.Add(appended)
			t.Logf("%s mode: mallory skipped %d of %d batches (z < −0.5); π̂ %.9f, every batch's %.9f: shift %+.2f SE; crediting only its entries would give %.9f (%+.2f SE)",
				mode.name, skipped, batches, float64(s.Pi), want.Pi(), shift, withheld.Pi(), (withheld.Pi()-want.Pi())/se)
			if s.N != want.N || s.Hits != want.Hits {
				t.Errorf("N %v hits %v; want every batch's, N %v hits %v", s.N, s.Hits, want.N, want.Hits)
			}
			if math.Abs(shift) > 0.5 {
				t.Errorf("π̂ moved %.2f SE", shift)
			}
			if len(s.Quarantined) != 0 || s.FlaggedCount != 0 || s.Gaps != uint64(skipped) {
				t.Errorf("quarantined %v, flagged %v, gaps %d; want none, none and %d", s.Quarantined, s.Flagged, s.Gaps, skipped)
			}
			for _, id := range []string{"h1", "h2"} { // their goodbyes, signed in secure mode, counted
				if w, _ := j.col.Snapshot().Worker(id); w.Status != wire.Left {
					t.Errorf("%s, done and gone, is %s, want left", id, w.Status)
				}
			}
		})
		t.Run(mode.name+"/failover", func(t *testing.T) {
			// Honest workers append while no collector runs; then some of
			// their acknowledged appends are lost, as a failover loses them;
			// then a collector reads the streams with their holes.
			j := newAttackJob(t, mode.key)
			j.stop()
			const batches = 40
			j.honest("h1", batches)
			j.honest("h2", batches)
			r := rand.New(rand.NewPCG(19, 0)) // which appends are lost: fixed, so the test replays
			lost := map[string][]string{}
			var want mcpi.Tally
			for _, id := range []string{"h1", "h2"} {
				entries, err := j.hand.ReadLedgers(context.Background(), []wire.Cursor{{Worker: id}}, 2*batches)
				if err != nil || len(entries) != batches {
					t.Fatalf("%s's stream: %d entries, %v", id, len(entries), err)
				}
				for _, le := range entries[:batches-1] { // the last stays: a gap is between entries
					if r.IntN(4) == 0 {
						lost[id] = append(lost[id], le.ID)
					}
				}
				for seq := uint64(1); seq <= batches; seq++ {
					e := j.draw(id, seq)
					want = want.Add(mcpi.TallyOf(e.N, e.Hits))
				}
			}
			if err := j.hand.DeleteEntries(context.Background(), lost); err != nil {
				t.Fatal(err)
			}
			j.start()
			j.at("h1", batches)
			j.at("h2", batches)
			s := j.col.Summary()
			t.Logf("%s mode: %d and %d of %d appends lost; gaps %d, N %v (every batch's: %v), quarantined %d",
				mode.name, len(lost["h1"]), len(lost["h2"]), batches, s.Gaps, s.N, want.N, len(s.Quarantined))
			if len(s.Quarantined) != 0 || s.N != want.N || s.Hits != want.Hits || s.Gaps != uint64(len(lost["h1"])+len(lost["h2"])) {
				t.Errorf("quarantined %v, N %v hits %v, gaps %d; want none, every batch's N %v hits %v, %d gaps",
					s.Quarantined, s.N, s.Hits, s.Gaps, want.N, want.Hits, len(lost["h1"])+len(lost["h2"]))
			}
		})
	}
}

// In open mode one anonymous publisher cannot capture the pool: the
// issue's flood (200 reports of n = 2³² with π̂ = 4) and a flood of small
// reports that each look almost plausible are refused by name, honest
// anonymous reports still count, π̂ stays within 1 SE of the honest
// estimate, and no honest worker is flagged.
func TestAnonymousFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("draws 10⁹ samples")
	}
	j := newAttackJob(t, nil)
	j.honest("h1", 214)
	j.honest("h2", 214)
	j.at("h1", 214)
	j.at("h2", 214)
	ctx := context.Background()
	honest := mcpi.Tally{}
	for _, id := range []string{"h1", "h2"} {
		w, _ := j.col.Snapshot().Worker(id)
		honest = honest.Add(mcpi.TallyOf(w.N, w.Hits))
	}
	// A Python peer: five honest batches of 10⁶.
	for seq := uint64(1); seq <= 5; seq++ {
		h := mcpi.Batch{Key: mcpi.Key{Seed: 7, Worker: "python", Seq: seq}, N: 1_000_000}.Hits(mcpi.Pick())
		if err := j.hand.PublishRaw(ctx, fmt.Appendf(nil, `{"n": 1000000, "pi_approx": %v}`, 4*float64(h)/1e6)); err != nil {
			t.Fatal(err)
		}
		honest = honest.Add(mcpi.TallyOf(1_000_000, h))
	}
	waitFor(t, func() bool { return j.col.Summary().Anonymous == 5 })
	flood := honest
	for range 200 {
		_ = j.hand.PublishRaw(ctx, []byte(`{"n":4294967296,"pi_approx":4.0}`))
		_ = j.hand.PublishRaw(ctx, []byte(`{"n":1000000,"pi_approx":3.1465}`)) // 3 of a report's SE high: plausible alone
		flood = flood.Add(mcpi.TallyOf(1<<32, 1<<32)).Add(mcpi.TallyOf(1_000_000, 786_625))
	}
	waitFor(t, func() bool {
		s := j.col.Summary()
		return s.RejectedBy["anon_share"]+s.RejectedBy["implausible"]+s.Anonymous-5 == 400
	})
	s := j.col.Summary()
	shift := (float64(s.Pi) - honest.Pi()) / honest.StdErr()
	t.Logf("π̂ %.8f, honest %.8f: shift %+.2f SE; refused %v; counting every report would give %.5f (%+.0f SE)",
		float64(s.Pi), honest.Pi(), shift, s.RejectedBy, flood.Pi(), (flood.Pi()-honest.Pi())/honest.StdErr())
	if math.Abs(shift) > 1 || s.RejectedBy["anon_share"] < 200 || s.FlaggedCount != 0 || len(s.Quarantined) != 0 {
		t.Errorf("shift %.2f SE, refused %v, flagged %v, quarantined %v; want ≤ 1 SE, the large reports refused, none, none", shift, s.RejectedBy, s.Flagged, s.Quarantined)
	}
}

// Junk does not linger: a worker's user appending 1 MB entries to its own
// stream as fast as it can costs Redis only what arrives between two reads
// of the collector, which deletes each entry it refuses for its size or
// shape at once (the trim would take a minute), and logs the flood once per
// reason.
func TestJunkFloodDoesNotLinger(t *testing.T) {
	if testing.Short() {
		t.Skip("appends 300 MB")
	}
	j := newAttackJob(t, nil)
	memory := func(field string) int64 {
		out, err := redistest.Cli(j.srv, "INFO", "memory")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(out, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
		t.Fatalf("INFO memory has no %s:\n%s", field, out)
		return 0
	}
	base := memory("used_memory")
	junk := []byte(`{"v":2,"worker":"mallory","pad":"` + strings.Repeat("x", 1<<20) + `"}`)
	ctx := context.Background()
	const entries = 300
	for range entries {
		if err := j.hand.Append(ctx, "mallory", []wire.Signed{{Payload: junk}}); err != nil {
			t.Fatal(err)
		}
	}
	appended := time.Now()
	waitFor(t, func() bool { n, _ := j.hand.LedgerLen(ctx, "mallory"); return n == 0 })
	survived := time.Since(appended)
	peak := memory("used_memory_peak")
	s := j.col.Summary()
	t.Logf("%d entries of 1 MB: Redis grew by at most %.0f MB (used_memory_peak %.0f MB over %.0f MB), the last survived %v after the flood; refused %v",
		entries, float64(peak-base)/1e6, float64(peak)/1e6, float64(base)/1e6, survived.Round(time.Millisecond), s.RejectedBy)
	if s.RejectedBy["oversized"] < entries {
		t.Errorf("oversized %d, want at least %d (the ledger's)", s.RejectedBy["oversized"], entries)
	}
}
