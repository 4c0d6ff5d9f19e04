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
	Status string    `json:"status"`
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
