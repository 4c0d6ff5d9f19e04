package loadgen

import (
	"testing"
	"time"

	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

func TestParseStat(t *testing.T) {
	// A command name with spaces and parentheses; utime 1234, stime 566.
	stat := "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 1 0 0 0 1234 566 0 0 20 0 9 0 100 2000000 500 18446744073709551615"
	got, err := parseStat([]byte(stat))
	if err != nil || got != 18 {
		t.Errorf("parseStat = %v, %v; want 18 CPU seconds", got, err)
	}
	if _, err := parseStat([]byte("4242 (x) S 1 2")); err == nil {
		t.Error("a short stat parsed")
	}
}

func TestParseStatus(t *testing.T) {
	status := "Name:\tcollector\nVmPeak:\t 9000 kB\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\nThreads:\t9\n"
	rss, peak, err := parseStatus([]byte(status))
	if err != nil || rss != 1<<20 || peak != 2<<20 {
		t.Errorf("parseStatus = %d, %d, %v; want 1 MiB, 2 MiB", rss, peak, err)
	}
	if _, _, err := parseStatus([]byte("Name:\tx\n")); err == nil {
		t.Error("a status without VmRSS parsed")
	}
}

func TestOwnProcess(t *testing.T) {
	cpu, err := cpuSeconds(0)
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	rss, peak, err := memory(0)
	if err != nil || rss == 0 || peak < rss || cpu < 0 {
		t.Errorf("this process: cpu %v, rss %d, peak %d, %v", cpu, rss, peak, err)
	}
}

func TestQuantile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	for _, tt := range []struct {
		name string
		ds   []time.Duration
		q    float64
		want time.Duration
	}{
		{"none", nil, 0.5, 0},
		{"one", ms(7), 0.99, 7 * time.Millisecond},
		{"median of 4, nearest rank", ms(40, 10, 30, 20), 0.5, 20 * time.Millisecond},
		{"p99 of 100 is the 99th", ms(seq(100)...), 0.99, 99 * time.Millisecond},
		{"max", ms(3, 9, 1), 1, 9 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := quantile(tt.ds, tt.q); got != tt.want {
				t.Errorf("quantile(%v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

// TestEntries checks that the simulated workers' entries are what a
// collector credits: they decode, name their worker, seq and job, are
// signed with the worker's key, and carry the batch's true hits.
func TestEntries(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	j := job{id: "00112233445566ff", seed: 0xc0ffee, key: key, n: 64, kernel: mcpi.Pick()}
	f := newFleet(j, "lg-", 3, nil)
	f.draw(30, time.Second) // 10 a second each, for a second: 11 entries drawn each
	for _, w := range f.workers {
		if len(w.ahead) != 11 {
			t.Fatalf("%s: %d entries drawn, want 11", w.id, len(w.ahead))
		}
		for i, s := range w.ahead {
			e, err := wire.DecodeEntry(s.Payload)
			if err != nil {
				t.Fatalf("%s entry %d: %v", w.id, i, err)
			}
			hits := mcpi.Batch{Key: mcpi.Key{Seed: j.seed, Worker: w.id, Seq: e.Seq}, N: e.N}.Hits(mcpi.Generic)
			switch {
			case e.Worker != w.id || e.Seq != uint64(i+1) || e.Job != j.id || e.Seed != wire.FormatSeed(j.seed) || e.N != 64:
				t.Errorf("%s entry %d: %+v", w.id, i, e)
			case e.Hits != hits:
				t.Errorf("%s seq %d: hits %d, a replay gives %d", w.id, e.Seq, e.Hits, hits)
			case !wire.SignatureOK(wire.WorkerKey(key, w.id), s.Payload, s.Sig):
				t.Errorf("%s seq %d: not signed with the worker's key", w.id, e.Seq)
			}
		}
	}
}

func TestValidate(t *testing.T) {
	ok := Config{RedisURL: "redis://127.0.0.1:6379"}
	for _, tt := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", ok, true},
		{"no redis", Config{}, false},
		{"both", Config{RedisURL: ok.RedisURL, StartRedis: true}, false},
		{"bad rate", Config{RedisURL: ok.RedisURL, Rates: []float64{0}}, false},
		{"short key", Config{RedisURL: ok.RedisURL, JobKey: []byte("short")}, false},
		{"bad channel", Config{RedisURL: ok.RedisURL, Channel: "a{b}"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok %v", err, tt.ok)
			}
		})
	}
}
