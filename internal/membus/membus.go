// Package membus is an in-memory bus for one process: picluster run and unit
// tests. It keeps Redis's semantics where they matter: publishing never
// blocks, a subscriber that falls behind loses messages (and is then sent a
// fresh Subscribed message, as after a Redis reconnect, so a collector
// rebuilds from the totals), and the totals, the state and the control
// channel behave as their Redis keys do.
//
// A Bus is safe for concurrent use by any number of workers and collectors.
package membus

import (
	"context"
	"maps"
	"slices"
	"sync"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/worker"
)

var (
	_ worker.Bus    = (*Bus)(nil)
	_ collector.Bus = (*Bus)(nil)
)

// Buffer is how many messages a subscriber may fall behind before it loses some.
const Buffer = 4096

// Bus is one job's transport in memory. The zero value is not usable; call New.
type Bus struct {
	mu       sync.Mutex
	totals   map[string][]byte
	state    []byte
	reports  map[*sub[collector.Message]]bool
	controls map[*sub[[]byte]]bool
}

// New returns an empty bus.
func New() *Bus {
	return &Bus{
		totals:   make(map[string][]byte),
		reports:  make(map[*sub[collector.Message]]bool),
		controls: make(map[*sub[[]byte]]bool),
	}
}

// sub is one subscriber: a buffered channel, and whether it lost messages.
type sub[T any] struct {
	ch   chan T
	lost bool
}

// send delivers v without blocking; it reports false when the buffer is full.
func (s *sub[T]) send(v T) bool {
	select {
	case s.ch <- v:
		return true
	default:
		return false
	}
}

// Publish records report as worker's latest and delivers it to every subscriber.
func (b *Bus) Publish(_ context.Context, worker string, report []byte) error {
	report = slices.Clone(report)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.totals[worker] = report
	for s := range b.reports {
		if s.lost && s.send(collector.Message{Subscribed: true}) {
			s.lost = false
		}
		if s.lost || !s.send(collector.Message{Payload: report}) {
			s.lost = true
		}
	}
	return nil
}

// Heartbeat delivers a presence message to the report subscribers.
func (b *Bus) Heartbeat(_ context.Context, _ string, msg []byte) error {
	msg = slices.Clone(msg)
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.reports {
		if s.lost || !s.send(collector.Message{Payload: msg, Presence: true}) {
			s.lost = true
		}
	}
	return nil
}

// Latest returns the latest report recorded for worker, nil if none.
func (b *Bus) Latest(_ context.Context, worker string) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.totals[worker]), nil
}

// Totals returns the latest report of every worker.
func (b *Bus) Totals(context.Context) ([][]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([][]byte, 0, len(b.totals))
	for _, k := range slices.Sorted(maps.Keys(b.totals)) {
		out = append(out, slices.Clone(b.totals[k]))
	}
	return out, nil
}

// State returns the job state, nil if none has been written.
func (b *Bus) State(context.Context) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.state), nil
}

// SetState writes the job state and publishes it on the control channel.
func (b *Bus) SetState(_ context.Context, state []byte) error {
	state = slices.Clone(state)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.state = state
	for s := range b.controls {
		s.send(state) // control messages are hints; the state is the truth
	}
	return nil
}

// Reset deletes the totals and the state.
func (b *Bus) Reset(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(b.totals)
	b.state = nil
	return nil
}

// Subscribe delivers reports until ctx is done, starting with a Subscribed message.
func (b *Bus) Subscribe(ctx context.Context) <-chan collector.Message {
	s := &sub[collector.Message]{ch: make(chan collector.Message, Buffer)}
	s.ch <- collector.Message{Subscribed: true}
	return subscribe(ctx, b, b.reports, s)
}

// Control delivers control messages until ctx is done.
func (b *Bus) Control(ctx context.Context) <-chan []byte {
	return subscribe(ctx, b, b.controls, &sub[[]byte]{ch: make(chan []byte, 16)})
}

// subscribe registers s in set until ctx is done, then removes it and closes
// its channel.
func subscribe[T any](ctx context.Context, b *Bus, set map[*sub[T]]bool, s *sub[T]) <-chan T {
	b.mu.Lock()
	set[s] = true
	b.mu.Unlock()
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		delete(set, s)
		close(s.ch)
		b.mu.Unlock()
	})
	return s.ch
}
