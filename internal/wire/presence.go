package wire

import (
	"encoding/json"
	"fmt"
	"time"
)

// Presence statuses.
const (
	Alive = "alive" // a heartbeat: the worker is there, between reports
	Left  = "left"  // the worker stopped cleanly; its last report is final
)

// HeartbeatInterval is how often a worker that has published nothing else
// says it is alive. A collector counts a worker as vanished after three
// intervals (or three batches, if longer) without a word.
const HeartbeatInterval = 2 * time.Second

// Presence is a worker's heartbeat or goodbye, published on {channel}:presence.
type Presence struct {
	Worker string    `json:"worker"`
	Status string    `json:"status"`
	At     time.Time `json:"at"`
}

// EncodePresence returns p as JSON.
func EncodePresence(p Presence) []byte {
	b, _ := json.Marshal(p) // strings and a time always encode
	return b
}

// DecodePresence parses and validates a presence message, as strictly as
// Decode parses a report.
func DecodePresence(b []byte) (Presence, error) {
	var p Presence
	if len(b) > MaxSize {
		return p, reject(Oversized, "%d bytes", len(b))
	}
	w, err := members(b, "worker", "status", "at")
	if err != nil {
		return p, err
	}
	var ok bool
	if p.Worker, ok = str(w.get("worker")); !ok || !validWorker(p.Worker) {
		return p, reject(BadWorker, "worker %s", show(w.get("worker")))
	}
	if p.Status, _ = str(w.get("status")); p.Status != Alive && p.Status != Left {
		return p, &Error{Reason: BadField, Detail: fmt.Sprintf("presence status %s", show(w.get("status")))}
	}
	if v := w.get("at"); v != nil {
		if err := json.Unmarshal(v, &p.At); err != nil {
			return p, reject(BadField, "presence at %s", show(v))
		}
	}
	return p, nil
}
