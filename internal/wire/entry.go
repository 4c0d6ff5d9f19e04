package wire

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// LedgerVersion is the version of the ledger entries this package writes:
// the "v" of an Entry.
const LedgerVersion = 2

// MaxEntryN is the most samples one ledger entry may carry: 2³², a few
// seconds of one core to replay on any kernel. A worker splits larger
// batches into entries of at most this size.
const MaxEntryN = 1 << 32

// Entry is one batch in a job's ledger, in its worker's stream
// {channel}:ledger:<worker>. The same
// JSON is published on the channel, where seed-style readers find "n" and
// "pi_approx" as before. An entry is a claim that can be checked exactly: its
// hits are a pure function of (Seed, Worker, Seq, N) (mcpi.Batch).
type Entry struct {
	V        int     `json:"v"`         // LedgerVersion
	Job      string  `json:"job"`       // the job id of {channel}:state
	Worker   string  `json:"worker"`    // who drew it
	Seq      uint64  `json:"seq"`       // 1, 2, … within the worker's life in the job
	N        uint64  `json:"n"`         // samples, 1 … MaxEntryN
	Hits     uint64  `json:"hits"`      // points inside the quarter circle
	PiApprox float64 `json:"pi_approx"` // 4·hits/n, for seed-style readers
	Seed     string  `json:"seed"`      // the job's seed, 16 hex digits
	Kernel   string  `json:"kernel"`    // the kernel that drew it, for the record
	Seconds  float64 `json:"seconds"`   // how long it took to draw
	// Cells is K of a stratified batch (mcpi.Batch.Cells: n = K², one point
	// in each of K×K cells); absent for a plain one.
	Cells uint64 `json:"cells,omitempty"`
}

// EncodeEntry returns e as JSON, with V and PiApprox set from the rest.
func EncodeEntry(e Entry) []byte {
	e.V = LedgerVersion
	e.PiApprox = 4 * float64(e.Hits) / float64(max(e.N, 1))
	b, err := json.Marshal(e)
	if err != nil { // only for a NaN or Inf Seconds, which a worker never measures
		panic(fmt.Sprintf("wire: encode entry: %v", err))
	}
	return b
}

// Reasons an entry is refused. The collector adds its own for entries that
// are well formed but do not fit the job.
const (
	NotEntry    Reason = "not_entry"     // not a v2 ledger entry
	V1Report    Reason = "v1_report"     // a protocol v1 worker's report: upgrade the worker
	BadSeq      Reason = "bad_seq"       // seq missing or 0
	BadSeed     Reason = "bad_seed"      // seed not 16 hex digits
	Unsigned    Reason = "unsigned"      // no signature, and the job is in secure mode
	BadSig      Reason = "bad_signature" // the signature does not match the worker's key
	WrongJob    Reason = "wrong_job"     // an entry of another job (a worker left running across --reset)
	WrongSeed   Reason = "wrong_seed"    // not drawn from the job's seed
	NChanged    Reason = "n_changed"     // n differs from the worker's earlier entries
	Duplicate   Reason = "duplicate"     // a seq the worker already has
	Quarantined Reason = "quarantined"   // from a worker proven wrong by replay
	TooLarge    Reason = "too_large"     // n above the job's cap
	Anonymous   Reason = "anonymous"     // an anonymous report, refused in secure mode
	TooMany     Reason = "too_many_workers"
	WrongStream Reason = "wrong_stream" // in another worker's stream of the ledger
	// ImplausibleSeq: a seq so far past the worker's last that the seqs
	// between would overrun what the collector draws for one worker
	// (collector.MaxGaps); refused, and nothing else happens to the stream.
	ImplausibleSeq Reason = "implausible_seq"
	// Implausible: an anonymous report that would take the anonymous
	// batches further from the credited entries than chance explains.
	Implausible Reason = "implausible"
	// AnonShare: an anonymous report beyond the anonymous share of N that
	// the collector allows (--anon-share).
	AnonShare Reason = "anon_share"
	// Unauthenticated: a presence message in secure mode that is not
	// signed with its worker's key, or is not newer than the last one.
	Unauthenticated Reason = "unauthenticated"
	// WrongEstimator: an entry whose estimator or cells K differ from the
	// job's, or a stratified entry whose n is not K².
	WrongEstimator Reason = "wrong_estimator"
)

// hex16 reports whether s is 16 lower-case hex digits, as job ids and seeds
// are written (FormatSeed).
func hex16(s string) bool {
	if len(s) != 16 {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// entryFields are the members of an entry, exactly as spelled; all are required.
var entryFields = []string{"v", "job", "worker", "seq", "n", "hits", "pi_approx", "seed", "kernel", "seconds"}

// entryMembers are the members an entry may have: its fields, and "cells"
// in a stratified job.
var entryMembers = append(entryFields[:len(entryFields):len(entryFields)], "cells")

// DecodeEntry parses and validates one ledger entry, with the strict parser
// of reports (exact, case-sensitive names, no duplicates, valid UTF-8; see
// members); unknown members are skipped, so a later version can add some.
// It checks the entry on its own; whether
// it fits the job (job id, seed, signature, seq order) is the collector's to
// judge.
func DecodeEntry(b []byte) (Entry, error) {
	if len(b) > MaxSize {
		return Entry{}, reject(Oversized, "%d bytes, limit %d", len(b), MaxSize)
	}
	m, err := members(b, entryMembers...)
	if err != nil {
		return Entry{}, err
	}
	var cells uint64
	if c := m.get("cells"); c != nil { // only stratified entries have it
		var ok bool
		if cells, ok = uintField(c); !ok || cells == 0 {
			return Entry{}, reject(WrongEstimator, "cells = %s, want an integer ≥ 1", show(c))
		}
	}
	for i, f := range entryFields { // all but cells: entryMembers starts with entryFields
		if m.vals[i] == nil {
			return Entry{}, reject(NotEntry, "member %q missing", f)
		}
	}
	e := Entry{Cells: cells}
	var ok [8]bool
	var v uint64
	v, ok[0] = uintField(m.get("v"))
	e.V = int(min(v, 1<<16))
	e.Job, ok[1] = str(m.get("job"))
	e.Worker, ok[2] = str(m.get("worker"))
	e.Seq, ok[3] = uintField(m.get("seq"))
	e.N, ok[4] = uintField(m.get("n"))
	e.Hits, ok[5] = uintField(m.get("hits"))
	e.Seed, ok[6] = str(m.get("seed"))
	e.Kernel, ok[7] = str(m.get("kernel"))
	pi, okPi := floatField(m.get("pi_approx"))
	secs, okSecs := floatField(m.get("seconds"))
	switch {
	case !ok[0] || e.V != LedgerVersion:
		return Entry{}, reject(BadVersion, "v = %s, want %d", show(m.get("v")), LedgerVersion)
	case !ok[2] || !validWorker(e.Worker):
		return Entry{}, reject(BadWorker, "worker = %s", show(m.get("worker")))
	case !ok[1] || !hex16(e.Job):
		return e, reject(WrongJob, "job = %s is not a job id", show(m.get("job")))
	case !ok[3] || e.Seq == 0:
		return e, reject(BadSeq, "seq = %s, want an integer ≥ 1", show(m.get("seq")))
	case !ok[4] || e.N == 0 || e.N > MaxEntryN:
		return e, reject(BadN, "n = %s, want 1 … %d", show(m.get("n")), uint64(MaxEntryN))
	case !ok[5] || e.Hits > e.N:
		return e, reject(BadHits, "hits = %s, n = %d", show(m.get("hits")), e.N)
	case !ok[6] || !hex16(e.Seed):
		return e, reject(BadSeed, "seed = %s, want 16 lower-case hex digits", show(m.get("seed")))
	case !ok[7] || !printable(e.Kernel, 32):
		return e, reject(BadField, "kernel = %s, want 1 to 32 printable characters", show(m.get("kernel")))
	case !okSecs || secs < 0 || secs > MaxSeconds || secs > 0 && float64(e.N)/secs > MaxRate:
		return e, reject(BadSeconds, "seconds = %s for %d samples: want [0, %d] and at most %g samples/s", show(m.get("seconds")), e.N, MaxSeconds, MaxRate)
	}
	e.Seconds = secs
	e.PiApprox = 4 * float64(e.Hits) / float64(e.N)
	if d := e.PiApprox - pi; !okPi || d > PiTolerance || d < -PiTolerance {
		return e, reject(HitsMismatch, "pi_approx = %s but 4·%d/%d = %v", show(m.get("pi_approx")), e.Hits, e.N, e.PiApprox)
	}
	return e, nil
}

// ParseSeed reads a seed written as 16 hex digits.
func ParseSeed(s string) (uint64, error) {
	if !hex16(s) {
		return 0, fmt.Errorf("seed %q: want 16 lower-case hex digits", s)
	}
	return strconv.ParseUint(s, 16, 64)
}

// FormatSeed writes a seed as 16 hex digits.
func FormatSeed(s uint64) string { return fmt.Sprintf("%016x", s) }

// Keys. A job key is a secret of at least MinKeyLen bytes that only the
// collector (and whoever sets the job up) holds. From it, WorkerKey derives
// one key per worker id, so a machine given its own worker key can sign
// entries only as itself. Entries are signed with HMAC-SHA256 over the exact
// bytes of the entry's JSON.

// MinKeyLen is the shortest job key accepted, in bytes.
const MinKeyLen = 16

// WorkerKeyPrefix starts a worker key file: "picluster-worker-v1 ID HEX".
const WorkerKeyPrefix = "picluster-worker-v1"

// WorkerKey derives worker id's signing key from the job key.
func WorkerKey(jobKey []byte, worker string) []byte {
	m := hmac.New(sha256.New, jobKey)
	m.Write([]byte("picluster worker key v1\x00"))
	m.Write([]byte(worker))
	return m.Sum(nil)
}

// Sign returns the hex HMAC-SHA256 of entry under key.
func Sign(key, entry []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(entry)
	return hex.EncodeToString(m.Sum(nil))
}

// SignatureOK reports whether sig is entry's signature under key, in
// constant time.
func SignatureOK(key, entry []byte, sig string) bool {
	return NewVerifier(key).OK(entry, sig)
}

// A Verifier checks signatures under one key, keeping the key's HMAC state
// between entries: a reader of many entries of one worker verifies them
// with one Verifier. It is not safe for concurrent use.
type Verifier struct {
	mac hash.Hash
	sum [sha256.Size]byte
}

// NewVerifier returns a Verifier of signatures under key.
func NewVerifier(key []byte) *Verifier { return &Verifier{mac: hmac.New(sha256.New, key)} }

// OK reports whether sig is entry's signature, in constant time.
func (v *Verifier) OK(entry []byte, sig string) bool {
	var got [sha256.Size]byte
	if len(sig) != 2*len(got) {
		return false
	}
	for i := range got {
		hi, ok1 := unhex(sig[2*i])
		lo, ok2 := unhex(sig[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		got[i] = hi<<4 | lo
	}
	v.mac.Reset()
	v.mac.Write(entry)
	return hmac.Equal(got[:], v.mac.Sum(v.sum[:0]))
}

// unhex is one hex digit's value, in either case, as hex.Decode reads it.
func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// FormatWorkerKey writes a worker's key file: one line, the worker's id and
// its key, so the file says whom it signs for.
func FormatWorkerKey(worker string, key []byte) string {
	return WorkerKeyPrefix + " " + worker + " " + hex.EncodeToString(key) + "\n"
}

// ParseKey reads a key file. A worker key file gives the worker id it is
// bound to and its key; anything else is a job key, returned with an empty
// worker.
func ParseKey(b []byte) (worker string, key []byte, err error) {
	s := strings.TrimSpace(string(b))
	if rest, ok := strings.CutPrefix(s, WorkerKeyPrefix+" "); ok {
		id, h, ok := strings.Cut(rest, " ")
		k, err := hex.DecodeString(h)
		if !ok || err != nil || len(k) != sha256.Size || !validWorker(id) {
			return "", nil, fmt.Errorf("worker key: want %q, one line", WorkerKeyPrefix+" ID HEX")
		}
		return id, k, nil
	}
	if len(s) < MinKeyLen {
		return "", nil, fmt.Errorf("job key: %d bytes, want at least %d (e.g. head -c 32 /dev/urandom | base64 > job.key)", len(s), MinKeyLen)
	}
	return "", []byte(s), nil
}
