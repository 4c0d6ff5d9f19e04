package wire

import (
	"encoding/json"
	"fmt"
	"time"
)

// Job statuses, the "status" of the job state.
const (
	Running = "running"
	Done    = "done"
)

// State is the job state the collector writes to the {channel}:state key and
// publishes on {channel}:control when it changes. Workers read it between
// batches and leave when Status is Done.
type State struct {
	Status string `json:"status"`
	// Job is the job's id, 16 hex digits, made by the collector at the first
	// start or at --reset. Every ledger entry names it; entries of another
	// job are refused.
	Job string `json:"job,omitempty"`
	// Seed is the job's seed, 16 hex digits: every batch of the job is drawn
	// from it (with the worker id and seq), so no worker picks its own.
	Seed string `json:"seed,omitempty"`
	// MaxN is the most samples one ledger entry may carry in this job.
	MaxN uint64 `json:"max_n,omitempty"`
	// Estimator is "stratified" for a job of stratified batches of Cells ×
	// Cells cells (one point in each, n = Cells²); absent, plain Monte
	// Carlo ("mc"). Every worker adopts it; an entry of another estimator
	// or K is refused (WrongEstimator).
	Estimator string `json:"estimator,omitempty"`
	// Cells is K of a stratified job.
	Cells uint64 `json:"cells,omitempty"`
	// Secure is true when the collector holds a job key and refuses
	// unsigned entries.
	Secure bool      `json:"secure,omitempty"`
	Reason string    `json:"reason,omitempty"` // why it is done: "target"
	Pi     float64   `json:"pi,omitempty"`
	StdErr float64   `json:"stderr,omitempty"`
	At     time.Time `json:"at"`
}

// EncodeState returns s as JSON.
func EncodeState(s State) []byte {
	b, _ := json.Marshal(s) // a State always encodes: no NaN is ever stored in it
	return b
}

// DecodeState parses a job state. An unknown status is an error.
func DecodeState(b []byte) (State, error) {
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return State{}, fmt.Errorf("decode job state: %w", err)
	}
	if s.Status != Running && s.Status != Done {
		return State{}, fmt.Errorf("decode job state: unknown status %q", s.Status)
	}
	return s, nil
}
