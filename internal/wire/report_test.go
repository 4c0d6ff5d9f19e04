package wire

import (
	"errors"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	long := strings.Repeat("w", MaxWorkerLen+1)
	tests := []struct {
		name   string
		in     string
		want   Report // checked when reason is ""
		reason Reason
	}{
		{name: "seed python report", in: `{"n": 1000000, "pi_approx": 3.141592}`, want: Report{N: 1000000, PiApprox: 3.141592, Hits: 785398, V: 1}},
		{name: "seed report with float n", in: `{"n": 1e6, "pi_approx": 3.141592}`, want: Report{N: 1000000, PiApprox: 3.141592, Hits: 785398, V: 1}},
		{name: "pi_approx canonical", in: `{"n": 3, "pi_approx": 1.3333333334}`, want: Report{N: 3, PiApprox: 4.0 / 3, Hits: 1, V: 1}},
		{name: "full report", in: `{"n": 1000, "pi_approx": 3.2, "hits": 800, "v": 1, "worker": "node7-1-ab", "seq": 2, "total_n": 2000, "total_hits": 1570, "seed": "c0ffee1234567890", "kernel": "go", "seconds": 0.5}`,
			want: Report{N: 1000, PiApprox: 3.2, Hits: 800, V: 1, Worker: "node7-1-ab", Seq: 2, TotalN: 2000, TotalHits: 1570, Seed: "c0ffee1234567890", Kernel: "go", Seconds: 0.5}},
		{name: "unknown fields ignored", in: `{"n": 4, "pi_approx": 3, "host": "x", "obj": {"n": 1}}`, want: Report{N: 4, PiApprox: 3, Hits: 3, V: 1}},
		{name: "zero totals", in: `{"n": 4, "pi_approx": 0, "hits": 0, "worker": "w", "seq": 1, "total_n": 4, "total_hits": 0}`,
			want: Report{N: 4, Hits: 0, V: 1, Worker: "w", Seq: 1, TotalN: 4}},
		{name: "unicode worker", in: `{"n": 4, "pi_approx": 3, "worker": "nœud-7", "seq": 1, "total_n": 4, "total_hits": 3}`,
			want: Report{N: 4, PiApprox: 3, Hits: 3, V: 1, Worker: "nœud-7", Seq: 1, TotalN: 4, TotalHits: 3}},
		{name: "escaped names", in: `{"\u006e": 4, "pi_\u0061pprox": 3}`, want: Report{N: 4, PiApprox: 3, Hits: 3, V: 1}},
		{name: "anonymous n near 2^64", in: `{"n": 18446744073709551615, "pi_approx": 4}`,
			want: Report{N: 1<<64 - 1, PiApprox: 4, Hits: 1<<64 - 1, V: 1}},
		{name: "seconds zero is unknown", in: `{"n": 4, "pi_approx": 3, "seconds": -0}`, want: Report{N: 4, PiApprox: 3, Hits: 3, V: 1}},
		{name: "garbage", in: `hello`, reason: NotJSON},
		{name: "empty", in: ``, reason: NotJSON},
		{name: "array", in: `[1,2]`, reason: NotJSON},
		{name: "null", in: `null`, reason: NotJSON},
		{name: "trailing data", in: `{"n": 4, "pi_approx": 3} x`, reason: NotJSON},
		{name: "truncated", in: `{"n": 4, "pi_appr`, reason: NotJSON},
		{name: "JSON white space around", in: " \t\r\n{\"n\": 4, \"pi_approx\": 3}\n", want: Report{N: 4, PiApprox: 3, Hits: 3, V: 1}},
		{name: "vertical tab before (Python refuses it)", in: "\v{\"n\": 4, \"pi_approx\": 3}", reason: NotJSON},
		{name: "no-break space after (Python refuses it)", in: "{\"n\": 4, \"pi_approx\": 3}\u00a0", reason: NotJSON},
		{name: "missing n", in: `{"pi_approx": 3.14}`, reason: BadN},
		{name: "zero n", in: `{"n": 0, "pi_approx": 3.14}`, reason: BadN},
		{name: "negative n", in: `{"n": -5, "pi_approx": 3.14}`, reason: BadN},
		{name: "fractional n", in: `{"n": 10.5, "pi_approx": 3.2}`, reason: BadN},
		{name: "string n", in: `{"n": "1000", "pi_approx": 3.2}`, reason: BadN},
		{name: "huge n", in: `{"n": 1e30, "pi_approx": 3.2}`, reason: BadN},
		{name: "missing pi", in: `{"n": 100}`, reason: BadPi},
		{name: "pi above 4", in: `{"n": 100, "pi_approx": 4.5}`, reason: BadPi},
		{name: "pi negative", in: `{"n": 100, "pi_approx": -1}`, reason: BadPi},
		{name: "pi NaN string", in: `{"n": 100, "pi_approx": "NaN"}`, reason: BadPi},
		{name: "pi Infinity (Python's json.dumps)", in: `{"n": 100, "pi_approx": Infinity}`, reason: NotJSON},
		{name: "pi overflow", in: `{"n": 100, "pi_approx": 1e999}`, reason: BadPi},
		{name: "pi not a ratio of n", in: `{"n": 10, "pi_approx": 3.14159}`, reason: HitsMismatch},
		{name: "hits disagree", in: `{"n": 100, "pi_approx": 3.14, "hits": 50}`, reason: HitsMismatch},
		{name: "hits above n", in: `{"n": 100, "pi_approx": 4, "hits": 101}`, reason: BadHits},
		{name: "version 2", in: `{"n": 4, "pi_approx": 3, "v": 2}`, reason: BadVersion},
		{name: "empty worker", in: `{"n": 4, "pi_approx": 3, "worker": "", "seq": 1, "total_n": 4, "total_hits": 3}`, reason: BadWorker},
		{name: "long worker", in: `{"n": 4, "pi_approx": 3, "worker": "` + long + `", "seq": 1, "total_n": 4, "total_hits": 3}`, reason: BadWorker},
		{name: "control char worker", in: `{"n": 4, "pi_approx": 3, "worker": "a\nb", "seq": 1, "total_n": 4, "total_hits": 3}`, reason: BadWorker},
		{name: "numeric worker", in: `{"n": 4, "pi_approx": 3, "worker": 7, "seq": 1, "total_n": 4, "total_hits": 3}`, reason: BadWorker},
		{name: "named without totals", in: `{"n": 4, "pi_approx": 3, "worker": "w"}`, reason: BadTotals},
		{name: "seq zero", in: `{"n": 4, "pi_approx": 3, "worker": "w", "seq": 0, "total_n": 4, "total_hits": 3}`, reason: BadTotals},
		{name: "totals below batch", in: `{"n": 4, "pi_approx": 3, "worker": "w", "seq": 1, "total_n": 3, "total_hits": 3}`, reason: BadTotals},
		{name: "earlier hits exceed earlier n", in: `{"n": 4, "pi_approx": 3, "worker": "w", "seq": 2, "total_n": 8, "total_hits": 8}`, reason: BadTotals},
		{name: "totals without worker", in: `{"n": 4, "pi_approx": 3, "total_n": 4}`, reason: BadTotals},
		{name: "bad seconds", in: `{"n": 4, "pi_approx": 3, "seconds": "fast"}`, reason: BadSeconds},
		{name: "seconds denormal", in: `{"n": 4, "pi_approx": 3, "seconds": 5e-324}`, reason: BadSeconds},
		{name: "seconds negative", in: `{"n": 4, "pi_approx": 3, "seconds": -1}`, reason: BadSeconds},
		{name: "seconds over a week", in: `{"n": 4, "pi_approx": 3, "seconds": 604801}`, reason: BadSeconds},
		{name: "seconds too fast", in: `{"n": 1000000000, "pi_approx": 3, "hits": 750000000, "seconds": 1e-7}`, reason: BadSeconds},
		{name: "case-folded keys", in: `{"n": 1000000, "pi_approx": 3.2, "N": 1, "PI_APPROX": 4}`, reason: FoldedKey},
		{name: "case-folded key alone", in: `{"N": 1000000, "pi_approx": 3.2}`, reason: FoldedKey},
		{name: "Kelvin sign folds to k", in: `{"n": 4, "pi_approx": 3, "\u212aernel": "go"}`, reason: FoldedKey},
		{name: "duplicate key", in: `{"n": 1000000, "pi_approx": 3.2, "n": 1}`, reason: DuplicateKey},
		{name: "duplicate escaped key", in: `{"n": 4, "pi_approx": 3, "\u006e": 4}`, reason: DuplicateKey},
		{name: "duplicate nested key", in: `{"n": 4, "pi_approx": 3, "x": {"a": 1, "a": 2}}`, reason: DuplicateKey},
		{name: "invalid UTF-8 in worker", in: "{\"n\": 4, \"pi_approx\": 3, \"worker\": \"w\xff\", \"seq\": 1, \"total_n\": 4, \"total_hits\": 3}", reason: BadUTF8},
		{name: "invalid UTF-8 in an unknown field", in: "{\"n\": 4, \"pi_approx\": 3, \"x\": \"\xc3\"}", reason: BadUTF8},
		{name: "lone surrogate escape", in: `{"n": 4, "pi_approx": 3, "worker": "w\ud800", "seq": 1, "total_n": 4, "total_hits": 3}`, reason: BadUTF8},
		{name: "seed not hex", in: `{"n": 4, "pi_approx": 3, "seed": "c0ffee123456789z"}`, reason: BadField},
		{name: "seed short", in: `{"n": 4, "pi_approx": 3, "seed": "00ff"}`, reason: BadField},
		{name: "seed control char", in: `{"n": 4, "pi_approx": 3, "seed": "c0ffee123456789\n"}`, reason: BadField},
		{name: "kernel control char", in: `{"n": 4, "pi_approx": 3, "kernel": "go\u001b[2J"}`, reason: BadField},
		{name: "kernel empty", in: `{"n": 4, "pi_approx": 3, "kernel": ""}`, reason: BadField},
		{name: "kernel number", in: `{"n": 4, "pi_approx": 3, "kernel": 7}`, reason: BadField},
		{name: "worker format char", in: `{"n": 4, "pi_approx": 3, "worker": "a\u200eb", "seq": 1, "total_n": 4, "total_hits": 3}`, reason: BadWorker},
		{name: "total_n out of range float", in: `{"n": 4, "pi_approx": 3, "worker": "w", "seq": 1, "total_n": 1e20, "total_hits": 3}`, reason: BadTotals},
		{name: "hits out of range float", in: `{"n": 4, "pi_approx": 3, "hits": 1.8446744073709552e19}`, reason: BadHits},
		{name: "seq out of range", in: `{"n": 4, "pi_approx": 3, "worker": "w", "seq": 18446744073709551616, "total_n": 4, "total_hits": 3}`, reason: BadTotals},
		{name: "oversized", in: `{"n": 4, "pi_approx": 3, "pad": "` + strings.Repeat("x", MaxSize) + `"}`, reason: Oversized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode([]byte(tt.in))
			if tt.reason != "" {
				var e *Error
				if !errors.As(err, &e) || e.Reason != tt.reason {
					t.Fatalf("Decode(%.60q) = %+v, %v; want rejection %q", tt.in, got, err, tt.reason)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Decode(%.60q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	r := Report{N: 1 << 30, Hits: 843314856, Worker: "node7-41235-9f2c", Seq: 13,
		TotalN: 13958643712, TotalHits: 10963101522, Seed: "c0ffee1234567890", Kernel: "go", Seconds: 0.107}
	b := Encode(r)
	if !strings.HasPrefix(string(b), `{"n":1073741824,"pi_approx":3.1415926`) {
		t.Errorf("Encode = %s; want n and pi_approx first", b)
	}
	got, err := Decode(b)
	r.V, r.PiApprox = 1, 4*float64(r.Hits)/float64(r.N)
	if err != nil || got != r {
		t.Fatalf("round trip: got %+v, %v; want %+v", got, err, r)
	}
}

// A worker whose every sample so far missed (total_hits 0) is encoded with
// its zero totals and decoded back: it can resume from them.
func TestZeroTotalsRoundTrip(t *testing.T) {
	for _, r := range []Report{
		{N: 4, Hits: 0, V: 1, Worker: "w", Seq: 1, TotalN: 4, TotalHits: 0},
		{N: 1, Hits: 0, V: 1, Worker: "w", Seq: 7, TotalN: 9, TotalHits: 0, Seed: "0000000000000000", Kernel: "go", Seconds: 1e-6},
		{N: 1, Hits: 1, PiApprox: 4, V: 1},
	} {
		b := Encode(r)
		got, err := Decode(b)
		if err != nil || got != r {
			t.Errorf("Decode(%s) = %+v, %v; want %+v", b, got, err, r)
		}
	}
}

func TestState(t *testing.T) {
	s, err := DecodeState(EncodeState(State{Status: Done, Reason: "target", Pi: 3.14}))
	if err != nil || s.Status != Done || s.Reason != "target" {
		t.Fatalf("round trip: %+v, %v", s, err)
	}
	if _, err := DecodeState([]byte(`{"status":"paused"}`)); err == nil {
		t.Error("unknown status accepted")
	}
}

// FuzzDecode checks that Decode never panics, that every rejection has a
// reason, and that whatever it accepts is self-consistent and comes back
// unchanged, field for field, through Encode and Decode.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"n": 1000000, "pi_approx": 3.141592}`,
		`{"n": 1000, "pi_approx": 3.2, "hits": 800, "v": 1, "worker": "w", "seq": 2, "total_n": 2000, "total_hits": 1570}`,
		`{"n": 4, "pi_approx": 0, "hits": 0, "worker": "w", "seq": 1, "total_n": 4, "total_hits": 0}`,
		`{"n": 1e6, "pi_approx": 0}`, `[]`, `{"n": -1}`, `{"n":18446744073709551615,"pi_approx":4,"hits":18446744073709551615}`,
		`{"n":18446744073709551615,"pi_approx":4}`, `{"n": 3, "pi_approx": 1.3333333334}`,
		`{"n": 4, "pi_approx": 3, "seconds": 5e-324}`, `{"n": 4, "pi_approx": 3, "seconds": -0}`,
		`{"n": 1000000, "pi_approx": 3.2, "N": 1, "PI_APPROX": 4}`, `{"n": 1000000, "pi_approx": 3.2, "n": 1}`,
		`{"n": 4, "pi_approx": 3, "seed": "c0ffee1234567890", "kernel": "avx512"}`,
		"{\"n\": 4, \"pi_approx\": 3, \"worker\": \"w\xff\", \"seq\": 1, \"total_n\": 4, \"total_hits\": 3}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Reason == "" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if r.N == 0 || r.Hits > r.N || r.PiApprox < 0 || r.PiApprox > 4 || r.V != Version {
			t.Fatalf("accepted an impossible report: %+v", r)
		}
		if !r.Anonymous() && (r.Seq == 0 || r.TotalN < r.N || r.TotalHits < r.Hits || r.TotalHits > r.TotalN) {
			t.Fatalf("accepted impossible totals: %+v", r)
		}
		if r.Seconds < 0 || r.Seconds > MaxSeconds || r.Seconds > 0 && float64(r.N)/r.Seconds > MaxRate {
			t.Fatalf("accepted implausible seconds: %+v", r)
		}
		enc := Encode(r)
		back, err := Decode(enc)
		if err != nil || back != r {
			t.Fatalf("round trip of %+v through %s: %+v, %v", r, enc, back, err)
		}
		if again := Encode(back); string(again) != string(enc) {
			t.Fatalf("Encode not stable: %s then %s", enc, again)
		}
	})
}
