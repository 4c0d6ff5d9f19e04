package collector

import (
	"math"
	"sync"
	"time"

	"github.com/picluster/picluster/mcpi"
)

// Point is the pooled estimate after N samples.
type Point struct {
	N      float64   `json:"n"`
	Pi     float64   `json:"pi"`
	StdErr float64   `json:"stderr"`
	At     time.Time `json:"at"`
}

// MaxHistory bounds the history: past it, every other point is dropped, so a
// job of a week keeps a history of the same size, denser at its end.
const MaxHistory = 2000

// history is the estimate after every change of the pool, thinned. It has
// a lock of its own, so that History (/api/history) never waits for the
// collector's: add is called with the collector's mu held, and takes mu
// inside it.
type history struct {
	mu  sync.Mutex
	pts []Point
	se  func(mcpi.Tally) float64 // the pool's standard error; nil: binomial
}

// points returns a copy of the history.
func (h *history) points() []Point {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Point(nil), h.pts...)
}

func (h *history) add(t mcpi.Tally, at time.Time) {
	p := Point{N: t.N.Float64(), Pi: t.Pi(), StdErr: t.StdErr(), At: at}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.se != nil {
		p.StdErr = h.se(t)
	}
	if p.N <= 0 || math.IsNaN(p.Pi) || len(h.pts) > 0 && p.N <= h.pts[len(h.pts)-1].N {
		return
	}
	if len(h.pts) >= MaxHistory {
		kept := h.pts[:0]
		for i, q := range h.pts {
			if i%2 == 1 {
				kept = append(kept, q)
			}
		}
		h.pts = kept
	}
	h.pts = append(h.pts, p)
}
