package wire

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strconv"
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
	// Job is the job the worker samples for (the job state's id); in secure
	// mode it is signed, so a message of another job counts for none.
	Job string `json:"job,omitempty"`
	// Sig, in secure mode, signs the rest with the worker's key
	// (SignPresence); a collector of a secure job counts a presence message
	// only when it is signed and newer than the last one it counted.
	Sig string `json:"sig,omitempty"`
}

// presenceText is what a presence message's signature covers: a text no
// entry's JSON can be, so that neither signature stands for the other.
func presenceText(p Presence) []byte {
	b := append([]byte("picluster presence v1\x00"), p.Job...)
	b = append(append(b, 0), p.Worker...)
	b = append(append(b, 0), p.Status...)
	return strconv.AppendInt(append(b, 0), p.At.UnixNano(), 10)
}

// SignPresence returns p signed with key, its worker's key.
func SignPresence(key []byte, p Presence) Presence {
	p.Sig = Sign(key, presenceText(p))
	return p
}

// PresenceSigned reports whether p is signed with key.
func PresenceSigned(key []byte, p Presence) bool {
	return p.Sig != "" && SignatureOK(key, presenceText(p), p.Sig)
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
	w, err := members(b, "worker", "status", "at", "job", "sig")
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
	if v := w.get("job"); v != nil {
		if p.Job, ok = str(v); !ok || !hex16(p.Job) {
			return p, reject(BadField, "presence job %s", show(v))
		}
	}
	if v := w.get("sig"); v != nil {
		if p.Sig, ok = str(v); !ok || len(p.Sig) > 2*sha256.Size {
			return p, reject(BadField, "presence sig %s", show(v))
		}
	}
	return p, nil
}
