// Package membus is an in-memory bus for one process: picluster run and unit
// tests. It keeps Redis's semantics where they matter: publishing never
// blocks, a subscriber that falls behind loses messages (and is then sent a
// fresh KindSubscribed message, as after a Redis reconnect), the ledger is
// one append-only log per worker with stream IDs as Redis makes them, and the state,
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
	streams    map[string]*stream // the ledger: each worker's stream
	state      []byte
	checkpoint map[string][]byte
	readers    map[string]string
	quarantine map[string][]byte
	reports    map[*sub[wire.Message]]bool
	controls   map[*sub[[]byte]]bool
	leases     map[string]lease
	now        func() time.Time
}

// stream is one worker's stream of the ledger.
type stream struct {
	entries []wire.LedgerEntry
	ids     []wire.ID // the parsed IDs of entries, for search
	last    wire.ID   // the last ID given, even if trimmed since
}

// lease is one worker id's lease: its holder's token, and when it ends.
type lease struct {
	token string
	until time.Time
}

// New returns an empty bus.
func New() *Bus {
	return &Bus{
		streams:    make(map[string]*stream),
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

// Append appends entries to worker's stream of the ledger and publishes
// each on the report channel, as one transaction.
func (b *Bus) Append(_ context.Context, worker string, entries []wire.Signed) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.streams[worker]
	if st == nil {
		st = &stream{}
		b.streams[worker] = st
	}
	for _, e := range entries {
		id := wire.ID{Ms: uint64(b.now().UnixMilli())}
		if !st.last.Less(id) {
			id = wire.ID{Ms: st.last.Ms, Seq: st.last.Seq + 1}
		}
		st.last = id
		payload := slices.Clone(e.Payload)
		st.entries = append(st.entries, wire.LedgerEntry{Worker: worker, ID: id.String(), Payload: payload, Sig: e.Sig})
		st.ids = append(st.ids, id)
		b.publish(wire.Message{Kind: wire.KindReport, Payload: payload})
	}
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

// ReadLedgers returns up to count entries of each worker's stream after its
// cursor, oldest first within a stream.
func (b *Bus) ReadLedgers(_ context.Context, from []wire.Cursor, count int) ([]wire.LedgerEntry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []wire.LedgerEntry
	for _, c := range from {
		after, err := wire.ParseID(c.After)
		if err != nil {
			return nil, err
		}
		st := b.streams[c.Worker]
		if st == nil {
			continue
		}
		i, _ := slices.BinarySearchFunc(st.ids, after, func(a, t wire.ID) int {
			if !t.Less(a) {
				return -1 // a ≤ after: before the start
			}
			return 1
		})
		out = append(out, st.entries[i:min(len(st.entries), i+count)]...)
	}
	return slices.Clone(out), nil
}

// Entries returns every entry of every stream, the streams in the order of
// their workers' ids.
func (b *Bus) Entries() []wire.LedgerEntry {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []wire.LedgerEntry
	for _, w := range slices.Sorted(maps.Keys(b.streams)) {
		out = append(out, b.streams[w].entries...)
	}
	return slices.Clone(out)
}

// ScanLedgers returns the workers whose stream exists, all in one page.
func (b *Bus) ScanLedgers(context.Context, uint64) ([]string, uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Collect(maps.Keys(b.streams)), 0, nil
}

// TrimLedgers removes from each worker's stream the entries before its
// minimum ID.
func (b *Bus) TrimLedgers(_ context.Context, minIDs map[string]string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for w, minID := range minIDs {
		id, err := wire.ParseID(minID)
		if err != nil {
			return err
		}
		st := b.streams[w]
		if st == nil {
			continue
		}
		i := 0
		for i < len(st.ids) && st.ids[i].Less(id) {
			i++
		}
		st.entries = slices.Delete(st.entries, 0, i)
		st.ids = slices.Delete(st.ids, 0, i)
	}
	return nil
}

// DeleteEntries removes the entries ids names, by worker, from the
// workers' streams.
func (b *Bus) DeleteEntries(_ context.Context, ids map[string][]string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for w, del := range ids {
		st := b.streams[w]
		if st == nil {
			continue
		}
		for i := len(st.ids) - 1; i >= 0; i-- {
			if slices.Contains(del, st.ids[i].String()) {
				st.entries = slices.Delete(st.entries, i, i+1)
				st.ids = slices.Delete(st.ids, i, i+1)
			}
		}
	}
	return nil
}

// LedgerLen returns the number of entries worker's stream holds.
func (b *Bus) LedgerLen(_ context.Context, worker string) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if st := b.streams[worker]; st != nil {
		return int64(len(st.entries)), nil
	}
	return 0, nil
}

// Time returns the bus's clock as a ledger position: every entry appended
// later has a later ID.
func (b *Bus) Time(context.Context) (string, error) {
	return wire.ID{Ms: uint64(b.now().UnixMilli())}.String(), nil
}

// Checkpoint returns every field of the checkpoint.
func (b *Bus) Checkpoint(context.Context) (map[string][]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return cloneMap(b.checkpoint), nil
}

// Credited returns worker's field of the checkpoint, nil if it has none.
func (b *Bus) Credited(_ context.Context, worker string) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.checkpoint[wire.CheckpointWorker+worker]), nil
}

// SaveCheckpoint writes fields and pos into the checkpoint unless it holds a
// later mark already; it reports whether it wrote.
func (b *Bus) SaveCheckpoint(_ context.Context, pos string, fields map[string][]byte) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if wire.Later(string(b.checkpoint[wire.CheckpointPos]), pos) {
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
	clear(b.streams)
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
