package collector

import (
	"encoding/json"
	"math"

	"github.com/picluster/picluster/mcpi"
)

// Summary is the state of a job as the collector sees it: the object that
// --json prints and /api/state serves.
type Summary struct {
	Channel     string            `json:"channel"`
	N           mcpi.Count        `json:"n"`
	Hits        mcpi.Count        `json:"hits"`
	Pi          Float             `json:"pi"`
	StdErr      Float             `json:"stderr"`
	CI95        [2]Float          `json:"ci95"`
	Bias        Float             `json:"bias"`      // the sampler's discretisation bias in π̂, mcpi.PiBias: reported, not subtracted
	PiDigits    Digits            `json:"pi_digits"` // π̂'s digits that the 95 % interval fixes, and three more
	Workers     int               `json:"workers"`
	Batches     uint64            `json:"batches"`
	Anonymous   uint64            `json:"anonymous_batches"`
	Accepted    uint64            `json:"accepted"` // valid reports received, duplicates included
	Rejected    uint64            `json:"rejected"`
	RejectedBy  map[string]uint64 `json:"rejected_by"`
	Duplicates  uint64            `json:"duplicates"`
	Seconds     Float             `json:"seconds"`
	SamplesPerS Float             `json:"samples_per_s"`
	StoppedBy   string            `json:"stopped_by,omitempty"` // "target", "duration" or "signal"
	TargetSE    Float             `json:"target_se,omitempty"`
	ETASeconds  Float             `json:"eta_seconds"` // to the target at the current rate; null without one
	Checks      Checks            `json:"checks"`
	Flagged     []string          `json:"flagged"` // ids of the workers whose tally is implausible
	WorkerTable []WorkerStats     `json:"worker_table"`
}

// Float is a float64 that encodes NaN and ±Inf as JSON null: an estimate of
// nothing is unknown, not an encoding error. Every float in a Summary is a
// Float, so that no value a report can cause makes the Summary unencodable.
type Float float64

// MarshalJSON writes f, or null when it is not finite.
func (f Float) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(f))
}
