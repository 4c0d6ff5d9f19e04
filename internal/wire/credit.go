package wire

import (
	"encoding/json"
	"fmt"
)

// Credit is what the collectors have credited to one worker from its
// stream of the ledger, as the checkpoint records it: everything up to Pos.
// A worker restarted under its id resumes after Seq.
type Credit struct {
	Seq       uint64  `json:"seq"`        // the highest seq credited
	N         uint64  `json:"n"`          // the worker's entry size: every entry of a worker has the same n
	TotalN    uint64  `json:"total_n"`    // Σ n of the credited entries
	TotalHits uint64  `json:"total_hits"` // Σ hits of the credited entries
	Entries   uint64  `json:"entries"`    // how many entries were credited
	Gaps      uint64  `json:"gaps"`       // seqs skipped between credited entries
	Verified  uint64  `json:"verified"`   // entries replayed and found exact
	Kernel    string  `json:"kernel,omitempty"`
	Seconds   float64 `json:"seconds,omitempty"` // how long its last entry took
	// Pos is the ID of the last entry credited, in the worker's stream: a
	// reader of the ledger goes on after it.
	Pos string `json:"pos,omitempty"`
	// DevSq is Σ(hits − n·π/4)² over the credited entries of a stratified
	// job, for the replicates' standard error after a restart.
	DevSq float64 `json:"dev_sq,omitempty"`
}

// EncodeCredit returns c as JSON.
func EncodeCredit(c Credit) []byte {
	b, _ := json.Marshal(c) // integers, a short string and a finite float
	return b
}

// DecodeCredit parses a checkpoint's worker field.
func DecodeCredit(b []byte) (Credit, error) {
	var c Credit
	if err := json.Unmarshal(b, &c); err != nil {
		return Credit{}, fmt.Errorf("decode credit: %w", err)
	}
	if _, err := ParseID(c.Pos); c.TotalHits > c.TotalN || c.Entries > c.Seq || err != nil {
		return Credit{}, fmt.Errorf("decode credit: inconsistent %+v", c)
	}
	return c, nil
}

// Quarantine is why a worker was quarantined, the value of its field in
// {channel}:quarantine.
type QuarantineRecord struct {
	Reason string `json:"reason"`        // "replay_mismatch" or "gaps"
	Job    string `json:"job,omitempty"` // the job it was found in
	Seq    uint64 `json:"seq"`           // the entry that did not replay
	Want   uint64 `json:"want"`          // the hits a replay gives
	Got    uint64 `json:"got"`           // the hits the worker claimed
	By     string `json:"by"`            // the collector or verifier that found it
	At     string `json:"at"`            // RFC 3339
}
