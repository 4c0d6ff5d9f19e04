// Package faultbus wraps an in-memory bus (internal/membus) with faults a
// test switches on and off: calls that fail (a disconnect, or errors that
// are transient or permanent), calls that hang until their context ends (a
// silent server), delays, appends that land twice (a reply lost after
// MULTI/EXEC, then retried) or land late and out of order, and control
// messages that are dropped. With testing/synctest the delays and the
// retries run in virtual time, so the worker's and collector's fault paths
// are tested deterministically and fast.
//
// A Bus is safe for concurrent use; every method of membus.Bus goes through
// the faults of its Op.
package faultbus

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/picluster/picluster/internal/membus"
	"github.com/picluster/picluster/internal/wire"
)

// Op names the calls a fault applies to.
type Op string

// The operations; Any matches every one.
const (
	Any       Op = "*"
	Append    Op = "append"
	ReadLedge Op = "read-ledger"
	Credited  Op = "credited"
	State     Op = "state"
	SetState  Op = "set-state"
	Heartbeat Op = "heartbeat"
	Lease     Op = "lease"
	Release   Op = "release"
	Control   Op = "control" // the messages delivered on Control
)

// ErrDisconnected is the error of every call while the bus is disconnected.
var ErrDisconnected = errors.New("faultbus: connection refused")

// Bus is a membus.Bus with faults.
type Bus struct {
	*membus.Bus

	mu      sync.Mutex
	down    bool
	fails   map[Op]*fault
	hang    map[Op]bool
	delay   map[Op]time.Duration
	dups    int    // appends still to land twice
	lost    int    // appends still to land with their reply lost
	held    []held // appends held back for reordering
	holdFor int    // appends still to hold back
	drops   int    // control messages still to drop
	calls   map[Op]int
	changed chan struct{} // closed and replaced at every call
}

// held is an append held back.
type held struct {
	worker  string
	entries []wire.Signed
}

type fault struct {
	n   int // calls still to fail; < 0 for ever
	err error
}

// New wraps bus.
func New(bus *membus.Bus) *Bus {
	return &Bus{Bus: bus, fails: make(map[Op]*fault), hang: make(map[Op]bool), delay: make(map[Op]time.Duration),
		calls: make(map[Op]int), changed: make(chan struct{})}
}

// Disconnect makes every call fail with ErrDisconnected, and control
// messages be lost, until Reconnect.
func (b *Bus) Disconnect() { b.mu.Lock(); b.down = true; b.mu.Unlock() }

// Reconnect ends a Disconnect.
func (b *Bus) Reconnect() { b.mu.Lock(); b.down = false; b.mu.Unlock() }

// Fail makes the next n calls of op fail with err (n < 0: every call).
func (b *Bus) Fail(op Op, n int, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fails[op] = &fault{n: n, err: err}
}

// Hang makes calls of op block until their context ends (on is false:
// answer again), as a silent server does.
func (b *Bus) Hang(op Op, on bool) { b.mu.Lock(); b.hang[op] = on; b.mu.Unlock() }

// Delay makes every call of op wait d first (0: none).
func (b *Bus) Delay(op Op, d time.Duration) { b.mu.Lock(); b.delay[op] = d; b.mu.Unlock() }

// Duplicate makes the next n appends land twice, as a MULTI/EXEC retried
// after its reply was lost.
func (b *Bus) Duplicate(n int) { b.mu.Lock(); b.dups = n; b.mu.Unlock() }

// LoseReply makes the next n appends land but return an error, as when the
// connection drops after EXEC: the caller retries what has landed.
func (b *Bus) LoseReply(n int) { b.mu.Lock(); b.lost = n; b.mu.Unlock() }

// Reorder holds the next n appends back (they report success) and lands
// them, last first, with the append after them.
func (b *Bus) Reorder(n int) { b.mu.Lock(); b.holdFor = n; b.mu.Unlock() }

// DropControl drops the next n control messages, as pub/sub may.
func (b *Bus) DropControl(n int) { b.mu.Lock(); b.drops = n; b.mu.Unlock() }

// Calls returns how many calls of op were made (Any: of every op).
func (b *Bus) Calls(op Op) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if op == Any {
		n := 0
		for _, c := range b.calls {
			n += c
		}
		return n
	}
	return b.calls[op]
}

// Called returns a channel closed at the next call of any op: a test waits
// on it instead of polling.
func (b *Bus) Called() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

// enter applies op's faults and counts the call.
func (b *Bus) enter(ctx context.Context, op Op) error {
	b.mu.Lock()
	b.calls[op]++
	close(b.changed)
	b.changed = make(chan struct{})
	hang, d, down := b.hang[op] || b.hang[Any], b.delay[op]+b.delay[Any], b.down
	var err error
	for _, o := range []Op{op, Any} {
		if f := b.fails[o]; f != nil && f.n != 0 && err == nil {
			err = f.err
			if f.n > 0 {
				f.n--
			}
		}
	}
	b.mu.Unlock()
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	if d > 0 {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	if down {
		return ErrDisconnected
	}
	return err
}

// Append appends entries, with the faults of Append.
func (b *Bus) Append(ctx context.Context, worker string, entries []wire.Signed) error {
	if err := b.enter(ctx, Append); err != nil {
		return err
	}
	b.mu.Lock()
	if b.holdFor > 0 {
		b.holdFor--
		b.held = append(b.held, held{worker, slices.Clone(entries)})
		b.mu.Unlock()
		return nil
	}
	batches := []held{{worker, entries}}
	for i := len(b.held) - 1; i >= 0; i-- {
		batches = append(batches, b.held[i])
	}
	b.held = nil
	twice, lost := b.dups > 0, b.lost > 0
	if twice {
		b.dups--
	}
	if lost {
		b.lost--
	}
	b.mu.Unlock()
	for _, h := range batches {
		if err := b.Bus.Append(ctx, h.worker, h.entries); err != nil {
			return err
		}
		if twice {
			if err := b.Bus.Append(ctx, h.worker, h.entries); err != nil {
				return err
			}
		}
	}
	if lost {
		return errors.New("faultbus: connection reset after EXEC")
	}
	return nil
}

// ReadLedgers reads the ledger, with the faults of ReadLedge.
func (b *Bus) ReadLedgers(ctx context.Context, from []wire.Cursor, count int) ([]wire.LedgerEntry, error) {
	if err := b.enter(ctx, ReadLedge); err != nil {
		return nil, err
	}
	return b.Bus.ReadLedgers(ctx, from, count)
}

// ScanLedgers lists the streams of the ledger, with the faults of ReadLedge.
func (b *Bus) ScanLedgers(ctx context.Context, cursor uint64) ([]string, uint64, error) {
	if err := b.enter(ctx, ReadLedge); err != nil {
		return nil, 0, err
	}
	return b.Bus.ScanLedgers(ctx, cursor)
}

// Credited reads the checkpoint, with the faults of Credited.
func (b *Bus) Credited(ctx context.Context, worker string) ([]byte, error) {
	if err := b.enter(ctx, Credited); err != nil {
		return nil, err
	}
	return b.Bus.Credited(ctx, worker)
}

// State reads the job state, with the faults of State.
func (b *Bus) State(ctx context.Context) ([]byte, error) {
	if err := b.enter(ctx, State); err != nil {
		return nil, err
	}
	return b.Bus.State(ctx)
}

// SetState writes the job state, with the faults of SetState.
func (b *Bus) SetState(ctx context.Context, state []byte) error {
	if err := b.enter(ctx, SetState); err != nil {
		return err
	}
	return b.Bus.SetState(ctx, state)
}

// RestoreState writes the job state if there is none, with the faults of
// SetState.
func (b *Bus) RestoreState(ctx context.Context, state []byte) (bool, error) {
	if err := b.enter(ctx, SetState); err != nil {
		return false, err
	}
	return b.Bus.RestoreState(ctx, state)
}

// Heartbeat publishes presence, with the faults of Heartbeat.
func (b *Bus) Heartbeat(ctx context.Context, worker string, msg []byte) error {
	if err := b.enter(ctx, Heartbeat); err != nil {
		return err
	}
	return b.Bus.Heartbeat(ctx, worker, msg)
}

// Lease takes or renews a lease, with the faults of Lease.
func (b *Bus) Lease(ctx context.Context, worker, token string, ttl time.Duration) (bool, time.Duration, error) {
	if err := b.enter(ctx, Lease); err != nil {
		return false, 0, err
	}
	return b.Bus.Lease(ctx, worker, token, ttl)
}

// Release ends a lease, with the faults of Release.
func (b *Bus) Release(ctx context.Context, worker, token string) error {
	if err := b.enter(ctx, Release); err != nil {
		return err
	}
	return b.Bus.Release(ctx, worker, token)
}

// Control delivers control messages but those dropped (DropControl, or
// while disconnected).
func (b *Bus) Control(ctx context.Context) <-chan []byte {
	in := b.Bus.Control(ctx)
	out := make(chan []byte, 16)
	go func() {
		defer close(out)
		for m := range in {
			b.mu.Lock()
			drop := b.down || b.drops > 0
			if b.drops > 0 {
				b.drops--
			}
			b.calls[Control]++
			b.mu.Unlock()
			if drop {
				continue
			}
			select {
			case out <- m:
			case <-ctx.Done():
			}
		}
	}()
	return out
}
