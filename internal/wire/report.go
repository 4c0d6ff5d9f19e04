package wire

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/go-json-experiment/json/jsontext"
)

// Version is the protocol version this package writes and reads.
const Version = 1

// MaxSize is the largest report accepted, in bytes. A v1 report is under 400.
const MaxSize = 4096

// MaxWorkerLen is the longest worker id accepted, in bytes.
const MaxWorkerLen = 128

// Report is one batch's report. Worker is empty for an anonymous batch, and
// then Seq, TotalN and TotalHits are zero.
type Report struct {
	N         uint64  `json:"n"`
	PiApprox  float64 `json:"pi_approx"`
	Hits      uint64  `json:"hits"`
	V         int     `json:"v"`
	Worker    string  `json:"worker,omitempty"`
	Seq       uint64  `json:"seq,omitempty"`
	TotalN    uint64  `json:"total_n,omitempty"`
	TotalHits uint64  `json:"total_hits,omitempty"`
	Seed      string  `json:"seed,omitempty"`
	Kernel    string  `json:"kernel,omitempty"`
	Seconds   float64 `json:"seconds,omitempty"`
}

// Anonymous reports whether r is a seed-style batch with no worker identity.
func (r Report) Anonymous() bool { return r.Worker == "" }

// Encode returns r as a v1 JSON object. It sets V and derives PiApprox from
// N and Hits, so what is sent always agrees with itself. A named report
// always carries seq, total_n and total_hits, zeros included; an anonymous
// one never does. Seed, Kernel and Seconds are written when set (Seconds
// when a finite number other than 0).
//
// Encode and Decode are inverses: for every report r that Decode returns,
// Decode(Encode(r)) returns r again, field for field.
func Encode(r Report) []byte {
	b := make([]byte, 0, 256)
	b = append(b, `{"n":`...)
	b = strconv.AppendUint(b, r.N, 10)
	b = append(b, `,"pi_approx":`...)
	pi := 0.0
	if r.N > 0 {
		pi = 4 * float64(r.Hits) / float64(r.N)
	}
	b = appendFloat(b, pi)
	b = append(b, `,"hits":`...)
	b = strconv.AppendUint(b, r.Hits, 10)
	b = append(b, `,"v":`...)
	b = strconv.AppendInt(b, Version, 10)
	if r.Worker != "" {
		b = append(b, `,"worker":`...)
		b = appendString(b, r.Worker)
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, r.Seq, 10)
		b = append(b, `,"total_n":`...)
		b = strconv.AppendUint(b, r.TotalN, 10)
		b = append(b, `,"total_hits":`...)
		b = strconv.AppendUint(b, r.TotalHits, 10)
	}
	if r.Seed != "" {
		b = append(b, `,"seed":`...)
		b = appendString(b, r.Seed)
	}
	if r.Kernel != "" {
		b = append(b, `,"kernel":`...)
		b = appendString(b, r.Kernel)
	}
	if r.Seconds != 0 && !math.IsNaN(r.Seconds) && !math.IsInf(r.Seconds, 0) {
		b = append(b, `,"seconds":`...)
		b = appendFloat(b, r.Seconds)
	}
	return append(b, '}')
}

// appendFloat appends a finite f as encoding/json writes it: the shortest
// decimal that reads back as f.
func appendFloat(b []byte, f float64) []byte {
	j, _ := json.Marshal(f) // finite: never fails
	return append(b, j...)
}

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	j, _ := json.Marshal(s) // a string always encodes (invalid UTF-8 as U+FFFD, which Decode's checks then refuse)
	return append(b, j...)
}

// Reason names why a report was rejected.
type Reason string

// The reasons a report can be rejected for. The collector adds its own for
// reports that are well formed but contradict what it already holds.
const (
	Oversized      Reason = "oversized"       // more than MaxSize bytes
	NotJSON        Reason = "not_json"        // not one JSON object
	BadUTF8        Reason = "bad_utf8"        // invalid UTF-8 anywhere, or an escaped lone surrogate
	DuplicateKey   Reason = "duplicate_key"   // a member name twice in one object, at any depth
	FoldedKey      Reason = "folded_key"      // a member name that is a protocol field's name in another case ("N", "PI_APPROX")
	BadN           Reason = "bad_n"           // n missing, not an integer, or ≤ 0
	BadPi          Reason = "bad_pi"          // pi_approx missing, not finite, or outside [0, 4]
	BadHits        Reason = "bad_hits"        // hits not an integer in [0, n]
	HitsMismatch   Reason = "hits_mismatch"   // pi_approx is not 4·hits/n
	BadVersion     Reason = "bad_version"     // v is not 1
	BadWorker      Reason = "bad_worker"      // worker empty, too long or not printable
	BadTotals      Reason = "bad_totals"      // seq, total_n or total_hits missing, inconsistent, or without a worker
	BadField       Reason = "bad_field"       // seed not 16 hex digits, kernel not 1 to 64 printable characters
	BadSeconds     Reason = "bad_seconds"     // seconds not a number in [0, MaxSeconds], or implying more than MaxRate samples/s
	TotalsBackward Reason = "totals_backward" // a newer report with smaller totals than an older one
	Inconsistent   Reason = "inconsistent"    // the next seq whose totals do not add up to the previous plus this batch
)

// Limits on "seconds", the time a batch took: a week, and a rate of 10¹⁵
// samples/s, a thousand times the fastest machine. A batch that claims to
// be faster would give the collector an infinite or absurd rate.
const (
	MaxSeconds = 7 * 24 * 3600
	MaxRate    = 1e15
)

// Error is a rejected report.
type Error struct {
	Reason Reason
	Detail string
}

func (e *Error) Error() string { return string(e.Reason) + ": " + e.Detail }

func reject(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// PiTolerance is how far pi_approx may stray from 4·hits/n: far above float64
// rounding, far below any difference that matters.
const PiTolerance = 1e-9

// fields are the members of a v1 report, exactly as spelled.
var fields = []string{"n", "pi_approx", "hits", "v", "worker", "seq", "total_n", "total_hits", "seed", "kernel", "seconds"}

// Decode parses and validates one report (see members for what the parser
// refuses that encoding/json would take). For an anonymous report without
// "hits", Hits is derived from pi_approx and n, exactly for n < 2⁵⁰. The
// Report returned is canonical: V is 1 (a report without "v" is v1) and
// PiApprox is 4·Hits/N, which the report's own pi_approx agrees with to
// within PiTolerance.
func Decode(b []byte) (Report, error) {
	if len(b) > MaxSize {
		return Report{}, reject(Oversized, "%d bytes, limit %d", len(b), MaxSize)
	}
	w, err := members(b, fields...)
	if err != nil {
		return Report{}, err
	}
	var r Report
	var ok bool
	if r.N, ok = uintField(w.get("n")); !ok || r.N == 0 {
		return Report{}, reject(BadN, "n = %s", show(w.get("n")))
	}
	if r.PiApprox, ok = floatField(w.get("pi_approx")); !ok || r.PiApprox < 0 || r.PiApprox > 4 {
		return Report{}, reject(BadPi, "pi_approx = %s", show(w.get("pi_approx")))
	}
	if v := w.get("hits"); v != nil {
		if r.Hits, ok = uintField(v); !ok || r.Hits > r.N {
			return Report{}, reject(BadHits, "hits = %s, n = %d", show(v), r.N)
		}
	} else {
		r.Hits = hitsOf(r.PiApprox, r.N)
	}
	pi := 4 * float64(r.Hits) / float64(r.N)
	if d := math.Abs(pi - r.PiApprox); d > PiTolerance {
		return Report{}, reject(HitsMismatch, "pi_approx %v but 4·%d/%d = %v", r.PiApprox, r.Hits, r.N, pi)
	}
	r.PiApprox = pi
	if v := w.get("v"); v != nil {
		if n, ok := uintField(v); !ok || n != Version {
			return Report{}, reject(BadVersion, "v = %s, this collector speaks %d", show(v), Version)
		}
	}
	r.V = Version
	if v := w.get("worker"); v != nil {
		if r.Worker, ok = str(v); !ok || !validWorker(r.Worker) {
			return Report{}, reject(BadWorker, "worker = %s", show(v))
		}
		if err := r.decodeTotals(&w); err != nil {
			return Report{}, err
		}
	} else if w.get("seq") != nil || w.get("total_n") != nil || w.get("total_hits") != nil {
		return Report{}, reject(BadTotals, "seq or totals without a worker")
	}
	if v := w.get("seed"); v != nil {
		if r.Seed, ok = str(v); !ok || !validSeed(r.Seed) {
			return Report{}, reject(BadField, "seed = %s, want 16 hex digits", show(v))
		}
	}
	if v := w.get("kernel"); v != nil {
		if r.Kernel, ok = str(v); !ok || !printable(r.Kernel, 64) {
			return Report{}, reject(BadField, "kernel = %s, want 1 to 64 printable characters", show(v))
		}
	}
	if v := w.get("seconds"); v != nil {
		r.Seconds, ok = floatField(v)
		switch {
		case !ok || r.Seconds < 0 || r.Seconds > MaxSeconds:
			return Report{}, reject(BadSeconds, "seconds = %s, want a number in [0, %d]", show(v), MaxSeconds)
		case r.Seconds == 0:
			r.Seconds = 0 // not -0: unknown
		case float64(r.N)/r.Seconds > MaxRate:
			return Report{}, reject(BadSeconds, "seconds = %s for %d samples: more than %g samples/s", show(v), r.N, MaxRate)
		}
	}
	return r, nil
}

// hitsOf derives the hits of an anonymous report from its pi_approx: the
// nearest integer to pi·n/4, at most n. The product is rounded, not
// converted out of range: for n near 2⁶⁴, float64(n) is 2⁶⁴ itself.
func hitsOf(pi float64, n uint64) uint64 {
	h := math.Round(pi * float64(n) / 4)
	if h >= float64(n) { // float64(n) ≥ n, so this covers every h ≥ 2⁶⁴
		return n
	}
	return uint64(h)
}

func (r *Report) decodeTotals(w *object) error {
	var ok1, ok2, ok3 bool
	r.Seq, ok1 = uintField(w.get("seq"))
	r.TotalN, ok2 = uintField(w.get("total_n"))
	r.TotalHits, ok3 = uintField(w.get("total_hits"))
	switch {
	case !ok1 || !ok2 || !ok3:
		return reject(BadTotals, "worker %q: seq, total_n and total_hits must be integers ≥ 0 (got %s, %s, %s)", r.Worker, show(w.get("seq")), show(w.get("total_n")), show(w.get("total_hits")))
	case r.Seq == 0:
		return reject(BadTotals, "worker %q: seq 0, numbering starts at 1", r.Worker)
	case r.TotalN < r.N || r.TotalHits < r.Hits || r.TotalHits > r.TotalN:
		return reject(BadTotals, "worker %q seq %d: totals %d/%d do not include this batch %d/%d", r.Worker, r.Seq, r.TotalHits, r.TotalN, r.Hits, r.N)
	case r.TotalN-r.N < r.TotalHits-r.Hits:
		return reject(BadTotals, "worker %q seq %d: earlier hits %d exceed earlier samples %d", r.Worker, r.Seq, r.TotalHits-r.Hits, r.TotalN-r.N)
	}
	return nil
}

// uintField parses a JSON integer ≥ 0. A number written as a float ("1e6",
// "1000000.0", as Python may send) is accepted when it is a whole number
// below 2⁵³, where float64 is exact.
func uintField(m jsontext.Value) (uint64, bool) {
	if len(m) == 0 || (m[0] != '-' && (m[0] < '0' || m[0] > '9')) {
		return 0, false
	}
	if v, err := strconv.ParseUint(string(m), 10, 64); err == nil {
		return v, true
	}
	f, err := strconv.ParseFloat(string(m), 64)
	if err != nil || f < 0 || f >= 1<<53 || f != math.Trunc(f) {
		return 0, false
	}
	return uint64(f), true
}

// floatField parses a finite JSON number.
func floatField(m jsontext.Value) (float64, bool) {
	if len(m) == 0 || (m[0] != '-' && (m[0] < '0' || m[0] > '9')) {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(m), 64)
	return f, err == nil && !math.IsInf(f, 0) && !math.IsNaN(f)
}

func validWorker(s string) bool { return printable(s, MaxWorkerLen) }

// validSeed reports whether s is a seed as workers write it: 16 hex digits.
func validSeed(s string) bool {
	if len(s) != 16 {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// show quotes a field for an error message, briefly.
func show(m jsontext.Value) string {
	if m == nil {
		return "missing"
	}
	if len(m) > 40 {
		return string(m[:40]) + "…"
	}
	return string(m)
}
