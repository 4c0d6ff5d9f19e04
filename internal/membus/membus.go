// Package membus is an in-memory bus for one process: picluster run and unit
// tests. It keeps Redis's semantics where they matter: publishing never
// blocks, a subscriber that falls behind loses messages (and is then sent a
// fresh KindSubscribed message, as after a Redis reconnect), the ledger is
// an append-only log with stream IDs as Redis makes them, and the state,
// checkpoint, quarantine, worker leases and control channel behave as their
// Redis keys do (a lease expires on the time.Now clock, so under
// testing/synctest on the bubble's).
//
// A Bus is safe for concurrent use by any number of workers and collectors.
package membus

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/picluster/picluster/internal/wire"
)

// Buffer is how many messages a subscriber may fall behind before it loses some.
const Buffer = 4096

// Bus is one job's transport in memory. The zero value is not usable; call New.
type Bus struct {
	mu         sync.Mutex
	ledger     []wire.LedgerEntry
	ids        []wire.ID // the parsed IDs of ledger, for search
	last       wire.ID
	appended   chan struct{} // closed and replaced at every append
	state      []byte
	checkpoint map[string][]byte
	readers    map[string]string
	quarantine map[string][]byte
	reports    map[*sub[wire.Message]]bool
	controls   map[*sub[[]byte]]bool
	leases     map[string]lease
	now        func() time.Time
}

// lease is one worker id's lease: its holder's token, and when it ends.
type lease struct {
	token string
	until time.Time
}

// New returns an empty bus.
func New() *Bus {
	return &Bus{
		appended:   make(chan struct{}),
		checkpoint: make(map[string][]byte),
		readers:    make(map[string]string),
		quarantine: make(map[string][]byte),
		reports:    make(map[*sub[wire.Message]]bool),
		controls:   make(map[*sub[[]byte]]bool),
		leases:     make(map[string]lease),
		now:        time.Now,
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

// Append appends entries to the ledger and publishes each on the report
// channel, as one transaction.
func (b *Bus) Append(_ context.Context, entries []wire.Signed) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range entries {
		id := wire.ID{Ms: uint64(b.now().UnixMilli())}
		if !b.last.Less(id) {
			id = wire.ID{Ms: b.last.Ms, Seq: b.last.Seq + 1}
		}
		b.last = id
		payload := slices.Clone(e.Payload)
		b.ledger = append(b.ledger, wire.LedgerEntry{ID: id.String(), Payload: payload, Sig: e.Sig})
		b.ids = append(b.ids, id)
		b.publish(wire.Message{Kind: wire.KindReport, Payload: payload})
	}
	close(b.appended)
	b.appended = make(chan struct{})
	return nil
}

// PublishRaw publishes payload on the report channel only, as a seed-style
// peer does: it is not in the ledger.
func (b *Bus) PublishRaw(_ context.Context, payload []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.publish(wire.Message{Kind: wire.KindReport, Payload: slices.Clone(payload)})
	return nil
}

// publish delivers m to every report subscriber; b.mu is held.
func (b *Bus) publish(m wire.Message) {
	for s := range b.reports {
		if s.lost && s.send(wire.Message{Kind: wire.KindSubscribed}) {
			s.lost = false
		}
		if s.lost || !s.send(m) {
			s.lost = true
		}
	}
}

// ReadLedger returns up to count entries after position after, oldest
// first. With block > 0 it waits up to block for one when there is none.
func (b *Bus) ReadLedger(ctx context.Context, after string, count int, block time.Duration) ([]wire.LedgerEntry, error) {
	from, err := wire.ParseID(after)
	if err != nil {
		return nil, err
	}
	var timeout <-chan time.Time
	if block > 0 {
		t := time.NewTimer(block)
		defer t.Stop()
		timeout = t.C
	}
	for {
		b.mu.Lock()
		i, _ := slices.BinarySearchFunc(b.ids, from, func(a, t wire.ID) int {
			if !t.Less(a) {
				return -1 // a ≤ from: before the start
			}
			return 1
		})
		j := min(len(b.ledger), i+count)
		out := slices.Clone(b.ledger[i:j])
		wait := b.appended
		b.mu.Unlock()
		if len(out) > 0 || block <= 0 {
			return out, nil
		}
		select {
		case <-wait:
		case <-timeout:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// TrimLedger removes the entries before minID.
func (b *Bus) TrimLedger(_ context.Context, minID string) error {
	id, err := wire.ParseID(minID)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	i := 0
	for i < len(b.ids) && b.ids[i].Less(id) {
		i++
	}
	b.ledger = slices.Delete(b.ledger, 0, i)
	b.ids = slices.Delete(b.ids, 0, i)
	return nil
}

// LedgerLen returns the number of entries the ledger holds.
func (b *Bus) LedgerLen(context.Context) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return int64(len(b.ledger)), nil
}

// Checkpoint returns every field of the checkpoint.
func (b *Bus) Checkpoint(context.Context) (map[string][]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return cloneMap(b.checkpoint), nil
}

// Credited returns the checkpoint's position and worker's field in it.
func (b *Bus) Credited(_ context.Context, worker string) (string, []byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.checkpoint[wire.CheckpointPos]), slices.Clone(b.checkpoint[wire.CheckpointWorker+worker]), nil
}

// SaveCheckpoint writes fields and pos into the checkpoint unless it holds a
// later position already; it reports whether it wrote.
func (b *Bus) SaveCheckpoint(_ context.Context, pos string, fields map[string][]byte) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !wire.Later(pos, string(b.checkpoint[wire.CheckpointPos])) {
		return false, nil
	}
	for k, v := range fields {
		b.checkpoint[k] = slices.Clone(v)
	}
	b.checkpoint[wire.CheckpointPos] = []byte(pos)
	return true, nil
}

// SetReader records where the collector called name has read to.
func (b *Bus) SetReader(_ context.Context, name, value string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.readers[name] = value
	return nil
}

// Readers returns every collector's reading position.
func (b *Bus) Readers(context.Context) (map[string]string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return maps.Clone(b.readers), nil
}

// Quarantine records that worker was proven wrong.
func (b *Bus) Quarantine(_ context.Context, worker string, why []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.quarantine[worker] = slices.Clone(why)
	return nil
}

// Quarantined returns every quarantined worker and why.
func (b *Bus) Quarantined(context.Context) (map[string][]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return cloneMap(b.quarantine), nil
}

func cloneMap(m map[string][]byte) map[string][]byte {
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		out[k] = slices.Clone(v)
	}
	return out
}

// Heartbeat delivers a presence message to the report subscribers.
func (b *Bus) Heartbeat(_ context.Context, _ string, msg []byte) error {
	msg = slices.Clone(msg)
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.reports {
		if s.lost || !s.send(wire.Message{Kind: wire.KindPresence, Payload: msg}) {
			s.lost = true
		}
	}
	return nil
}

// State returns the job state, nil if none has been written.
func (b *Bus) State(context.Context) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.state), nil
}

// RestoreState writes the job state only if there is none, and reports
// whether it wrote.
func (b *Bus) RestoreState(_ context.Context, state []byte) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state != nil {
		return false, nil
	}
	b.state = slices.Clone(state)
	return true, nil
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

// Reset deletes the job: its ledger, checkpoint, readers, quarantine and state.
func (b *Bus) Reset(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ledger, b.ids = nil, nil
	clear(b.checkpoint)
	clear(b.readers)
	clear(b.quarantine)
	b.state = nil
	return nil
}

// Subscribe delivers reports and presence until ctx is done, starting with
// a KindSubscribed message.
func (b *Bus) Subscribe(ctx context.Context) <-chan wire.Message {
	s := &sub[wire.Message]{ch: make(chan wire.Message, Buffer)}
	s.ch <- wire.Message{Kind: wire.KindSubscribed}
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

// Lease takes worker's lease for token for ttl if it is free or has
// expired, or renews it if token holds it; it reports whether token holds
// it, and otherwise how long the other holder's lease has left.
func (b *Bus) Lease(_ context.Context, worker, token string, ttl time.Duration) (bool, time.Duration, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	l, ok := b.leases[worker]
	if ok && l.token != token && now.Before(l.until) {
		return false, l.until.Sub(now), nil
	}
	b.leases[worker] = lease{token: token, until: now.Add(ttl)}
	return true, 0, nil
}

// Release ends token's lease on worker, if it holds it.
func (b *Bus) Release(_ context.Context, worker, token string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if l, ok := b.leases[worker]; ok && l.token == token {
		delete(b.leases, worker)
	}
	return nil
}
