package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"unicode"
	"unicode/utf8"
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
	V         int     `json:"v,omitempty"`
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
// N and Hits, so what is sent always agrees with itself.
func Encode(r Report) []byte {
	r.V = Version
	if r.N > 0 {
		r.PiApprox = 4 * float64(r.Hits) / float64(r.N)
	}
	b, err := json.Marshal(r)
	if err != nil { // only for NaN or Inf seconds, which we never write
		panic(fmt.Sprintf("wire: encode report: %v", err))
	}
	return b
}

// Reason names why a report was rejected.
type Reason string

// The reasons a report can be rejected for. The collector adds its own for
// reports that are well formed but contradict what it already holds.
const (
	Oversized      Reason = "oversized"       // more than MaxSize bytes
	NotJSON        Reason = "not_json"        // not one JSON object
	BadN           Reason = "bad_n"           // n missing, not an integer, or ≤ 0
	BadPi          Reason = "bad_pi"          // pi_approx missing, not finite, or outside [0, 4]
	BadHits        Reason = "bad_hits"        // hits not an integer in [0, n]
	HitsMismatch   Reason = "hits_mismatch"   // pi_approx is not 4·hits/n
	BadVersion     Reason = "bad_version"     // v is not 1
	BadWorker      Reason = "bad_worker"      // worker empty, too long or not printable
	BadTotals      Reason = "bad_totals"      // seq, total_n or total_hits missing, inconsistent, or without a worker
	BadField       Reason = "bad_field"       // seed, kernel or seconds of the wrong type
	TotalsBackward Reason = "totals_backward" // a newer report with smaller totals than an older one
	Inconsistent   Reason = "inconsistent"    // the next seq whose totals do not add up to the previous plus this batch
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

// raw is a report as received: every field optional and untyped, so that
// Decode can tell a missing field from a zero and a number from a string.
type raw struct {
	N         json.RawMessage `json:"n"`
	PiApprox  json.RawMessage `json:"pi_approx"`
	Hits      json.RawMessage `json:"hits"`
	V         json.RawMessage `json:"v"`
	Worker    json.RawMessage `json:"worker"`
	Seq       json.RawMessage `json:"seq"`
	TotalN    json.RawMessage `json:"total_n"`
	TotalHits json.RawMessage `json:"total_hits"`
	Seed      json.RawMessage `json:"seed"`
	Kernel    json.RawMessage `json:"kernel"`
	Seconds   json.RawMessage `json:"seconds"`
}

// Decode parses and validates one report. For an anonymous report without
// "hits", Hits is derived from pi_approx and n, exactly for n < 2⁵⁰.
func Decode(b []byte) (Report, error) {
	if len(b) > MaxSize {
		return Report{}, reject(Oversized, "%d bytes, limit %d", len(b), MaxSize)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return Report{}, reject(NotJSON, "not a JSON object")
	}
	var w raw
	if err := json.Unmarshal(b, &w); err != nil {
		return Report{}, reject(NotJSON, "%v", err)
	}
	var r Report
	var ok bool
	if r.N, ok = uintField(w.N); !ok || r.N == 0 {
		return Report{}, reject(BadN, "n = %s", show(w.N))
	}
	if r.PiApprox, ok = floatField(w.PiApprox); !ok || r.PiApprox < 0 || r.PiApprox > 4 {
		return Report{}, reject(BadPi, "pi_approx = %s", show(w.PiApprox))
	}
	if w.Hits != nil {
		if r.Hits, ok = uintField(w.Hits); !ok || r.Hits > r.N {
			return Report{}, reject(BadHits, "hits = %s, n = %d", show(w.Hits), r.N)
		}
	} else {
		r.Hits = uint64(math.Round(r.PiApprox * float64(r.N) / 4))
		r.Hits = min(r.Hits, r.N)
	}
	if d := math.Abs(4*float64(r.Hits)/float64(r.N) - r.PiApprox); d > PiTolerance {
		return Report{}, reject(HitsMismatch, "pi_approx %v but 4·%d/%d = %v", r.PiApprox, r.Hits, r.N, 4*float64(r.Hits)/float64(r.N))
	}
	if w.V != nil {
		v, ok := uintField(w.V)
		if !ok || v != Version {
			return Report{}, reject(BadVersion, "v = %s, this collector speaks %d", show(w.V), Version)
		}
		r.V = Version
	}
	if w.Worker != nil {
		if err := json.Unmarshal(w.Worker, &r.Worker); err != nil || !validWorker(r.Worker) {
			return Report{}, reject(BadWorker, "worker = %s", show(w.Worker))
		}
		if err := r.decodeTotals(w); err != nil {
			return Report{}, err
		}
	} else if w.Seq != nil || w.TotalN != nil || w.TotalHits != nil {
		return Report{}, reject(BadTotals, "seq or totals without a worker")
	}
	if w.Seed != nil && json.Unmarshal(w.Seed, &r.Seed) != nil || len(r.Seed) > 64 {
		return Report{}, reject(BadField, "seed = %s", show(w.Seed))
	}
	if w.Kernel != nil && json.Unmarshal(w.Kernel, &r.Kernel) != nil || len(r.Kernel) > 64 {
		return Report{}, reject(BadField, "kernel = %s", show(w.Kernel))
	}
	if w.Seconds != nil {
		if r.Seconds, ok = floatField(w.Seconds); !ok || r.Seconds < 0 {
			return Report{}, reject(BadField, "seconds = %s", show(w.Seconds))
		}
	}
	return r, nil
}

func (r *Report) decodeTotals(w raw) error {
	var ok1, ok2, ok3 bool
	r.Seq, ok1 = uintField(w.Seq)
	r.TotalN, ok2 = uintField(w.TotalN)
	r.TotalHits, ok3 = uintField(w.TotalHits)
	switch {
	case !ok1 || !ok2 || !ok3:
		return reject(BadTotals, "worker %q: seq, total_n and total_hits must be integers ≥ 0 (got %s, %s, %s)", r.Worker, show(w.Seq), show(w.TotalN), show(w.TotalHits))
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
func uintField(m json.RawMessage) (uint64, bool) {
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
func floatField(m json.RawMessage) (float64, bool) {
	if len(m) == 0 || (m[0] != '-' && (m[0] < '0' || m[0] > '9')) {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(m), 64)
	return f, err == nil && !math.IsInf(f, 0) && !math.IsNaN(f)
}

func validWorker(s string) bool {
	if s == "" || len(s) > MaxWorkerLen || !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		if !unicode.IsPrint(c) {
			return false
		}
	}
	return true
}

// show quotes a field for an error message, briefly.
func show(m json.RawMessage) string {
	if m == nil {
		return "missing"
	}
	if len(m) > 40 {
		return string(m[:40]) + "…"
	}
	return string(m)
}
