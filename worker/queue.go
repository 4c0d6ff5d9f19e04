package worker

import (
	"context"
	"log/slog"
	"sync"

	"github.com/picluster/picluster/internal/wire"
)

// item is a queued entry and its seq.
type item struct {
	wire.Signed
	seq uint64
}

// signed returns the entries of items.
func signed(items []item) []wire.Signed {
	out := make([]wire.Signed, len(items))
	for i, it := range items {
		out[i] = it.Signed
	}
	return out
}

// queue holds the signed entries not yet appended, oldest first, up to a
// limit. Every entry is a checkable claim and the ledger credits entries, not
// totals, so none may be dropped: past the limit the sampler waits for room
// instead, which costs time on a very long outage but never samples.
type queue struct {
	ready  chan struct{} // holds a token while there is something to take
	room   chan struct{} // holds a token after entries were dropped from the front
	mu     sync.Mutex
	items  []item
	limit  int
	full   bool // the sampler is waiting for room (for the log)
	closed bool
}

func newQueue(limit int) *queue {
	return &queue{ready: make(chan struct{}, 1), room: make(chan struct{}, 1), limit: limit}
}

// put appends s, waiting for room while the queue is full; it fails only
// when ctx is done.
func (q *queue) put(ctx context.Context, s item, log *slog.Logger) error {
	for {
		q.mu.Lock()
		if len(q.items) < q.limit {
			q.items = append(q.items, s)
			q.full = false
			q.mu.Unlock()
			signal(q.ready)
			return nil
		}
		if !q.full {
			log.Warn("the entry queue is full: sampling waits until the bus takes entries again", "queued", len(q.items))
			q.full = true
		}
		q.mu.Unlock()
		select {
		case <-q.room:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// peek returns up to max entries from the front, and whether the queue is
// closed.
func (q *queue) peek(max int) ([]item, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.items[:min(max, len(q.items)):min(max, len(q.items))], q.closed
}

// drop removes the first k entries, which the bus has taken.
func (q *queue) drop(k int) {
	q.mu.Lock()
	q.items = append(q.items[:0:0], q.items[k:]...)
	q.mu.Unlock()
	signal(q.room)
}

func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	signal(q.ready)
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
