// Package redisbus is the Redis bus of picluster, and the only package that
// imports go-redis.
//
// One job lives under one channel name C. A worker's ledger entries are
// appended to its own stream {C}:ledger:<worker id> and published on C in
// one MULTI/EXEC, so a Redis user may be given one worker's stream only and
// cannot touch another's (picluster acl --worker). Presence goes on
// {C}:presence, control on {C}:control. The job state is the string
// {C}:state; the collectors' checkpoint is the hash {C}:checkpoint, their
// reading positions the hash {C}:readers, and the quarantined workers the
// hash {C}:quarantine. A worker holds a lease on its id, the string
// {C}:lease:<id> holding its random token, with a TTL it renews. The hash
// tag keeps a job on one Redis Cluster slot.
//
// The URL's scheme chooses the Mode: one server (redis://, rediss://), a
// Redis Cluster (redis+cluster://host:port,host:port…) or the master that
// Redis Sentinel names (redis+sentinel://host:port,…/master). On a
// cluster, pub/sub is sharded: the channel C hashes to the slot of the
// keys {C}:…, so SPUBLISH C goes in the same MULTI/EXEC as XADD {C}:…, and
// the subscription (SSUBSCRIBE) is on the master of that slot. On a cluster
// and under Sentinel a write that must survive a failover (Append,
// SetState) waits until a replica acknowledges it (WAIT 1), since
// replication is asynchronous; when the wait fails the write is reported
// failed and the caller writes again (see write).
//
// Subscriptions reconnect by themselves, with backoff. After every
// (re)subscription the report stream carries a KindSubscribed message. A
// connection silent for Options.PingInterval is pinged; when
// MaxPingsOutstanding pings in a row get no answer (a half-open connection,
// a frozen server) the subscription is dropped and made again on a new
// connection. Reads of the ledger never block: one that gets no answer
// within the read timeout (5 s) fails, and its connection is dropped.
//
// Errors are classified. A refused or reset connection, a timeout, and
// what a failover answers meanwhile (MOVED, ASK, TRYAGAIN, CLUSTERDOWN,
// READONLY, LOADING, MASTERDOWN) are transient: callers retry. What no retry can fix — a wrong password
// (WRONGPASS), none when one is needed (NOAUTH), a missing ACL permission
// (NOPERM), a database that does not exist, a host name that does not
// resolve, a TLS certificate that fails verification, a URL whose mode does
// not fit the server (redis:// to a cluster node, redis+cluster:// to a
// single server, a master name the sentinels do not know) — is marked with
// backoff.Permanent and says what to change; a subscription that meets one
// logs it and closes its channel.
//
// A Bus is safe for concurrent use.
package redisbus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/picluster/picluster/internal/backoff"
	"github.com/picluster/picluster/internal/wire"
)

// DefaultChannel is the report channel of the original Python workers.
const DefaultChannel = "pi_collector"

// Keys are the Redis keys and channels of the job named channel. Ledger is
// the prefix of the workers' streams, {C}:ledger:<worker id>, and Lease the
// prefix of their leases, {C}:lease:<worker id>. OneLedger is the single
// stream of the first v2 layout, deleted by Reset.
type Keys struct {
	Channel, Ledger, State, Checkpoint, Readers, Quarantine, Control, Presence, Totals, Lease, OneLedger string
}

// KeysOf returns the keys of the job named channel.
func KeysOf(channel string) Keys {
	tag := "{" + channel + "}:"
	return Keys{Channel: channel, Ledger: tag + "ledger:", OneLedger: tag + "ledger", State: tag + "state", Checkpoint: tag + "checkpoint",
		Readers: tag + "readers", Quarantine: tag + "quarantine", Control: tag + "control",
		Presence: tag + "presence", Totals: tag + "totals", Lease: tag + "lease:"}
}

// Bus is one job on one Redis server, a Redis Cluster, or the master that
// Redis Sentinel names.
type Bus struct {
	rdb      redis.UniversalClient
	mode     Mode
	noRepl   atomic.Bool // whether "no replica" has been logged
	k        Keys
	log      *slog.Logger
	ping     time.Duration // Options.PingInterval
	maxPings int           // Options.MaxPingsOutstanding
}

// ValidChannel reports whether channel can name a job: not empty, at most
// 200 bytes, no braces (they would break the hash tag) and no white space.
func ValidChannel(channel string) error {
	if channel == "" || len(channel) > 200 || strings.ContainsAny(channel, "{} \t\r\n") {
		return fmt.Errorf("channel %q: want 1 to 200 bytes without braces or spaces", channel)
	}
	return nil
}

// Options are how to reach Redis besides its URL.
type Options struct {
	// TLS, when not nil, is used for the connection (rediss:// URLs get a
	// default one).
	TLS *TLSFiles
	Log *slog.Logger
	// PingInterval is how long a subscription may be silent before it is
	// pinged. Default DefaultPingInterval.
	PingInterval time.Duration
	// MaxPingsOutstanding is how many pings in a row may go unanswered
	// before a connection is declared dead. Default DefaultMaxPingsOutstanding.
	MaxPingsOutstanding int
}

// Defaults of Options: a dead connection is found after about
// PingInterval·(MaxPingsOutstanding+1), 6 s.
const (
	DefaultPingInterval        = 2 * time.Second
	DefaultMaxPingsOutstanding = 2
)

// Open connects lazily to the Redis at url: one server, a Redis Cluster or
// the master that Redis Sentinel names, by the URL's scheme (URLForms; user,
// password and database as go-redis's ParseURL reads them). It does not
// wait for the server; the first command does.
func Open(url, channel string, o Options) (*Bus, error) {
	if err := ValidChannel(channel); err != nil {
		return nil, err
	}
	t, err := parseURL(url)
	if err != nil {
		return nil, err
	}
	rdb, err := newClient(t, o.TLS)
	if err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.PingInterval <= 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.MaxPingsOutstanding <= 0 {
		o.MaxPingsOutstanding = DefaultMaxPingsOutstanding
	}
	return &Bus{rdb: rdb, mode: t.mode, k: KeysOf(channel), log: o.Log,
		ping: o.PingInterval, maxPings: o.MaxPingsOutstanding}, nil
}

// silence is how long a connection may stay silent beyond what was asked
// of it before it is declared dead.
func (b *Bus) silence() time.Duration { return b.ping * time.Duration(b.maxPings+1) }

// Close closes the connections.
func (b *Bus) Close() error { return b.rdb.Close() }

// Ping checks that the server answers.
func (b *Bus) Ping(ctx context.Context) error { return classify(b.rdb.Ping(ctx).Err()) }

// Append appends entries to worker's stream of the ledger and publishes
// each on the report channel, in one MULTI/EXEC: all of them or none.
func (b *Bus) Append(ctx context.Context, worker string, entries []wire.Signed) error {
	stream := b.k.Ledger + worker
	cmds, err := b.write(ctx, func(p redis.Pipeliner) error {
		for _, e := range entries {
			values := []any{"e", e.Payload}
			if e.Sig != "" {
				values = append(values, "s", e.Sig)
			}
			p.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: values})
			b.publish(ctx, p, b.k.Channel, e.Payload)
		}
		return nil
	})
	if err != nil {
		return classify(fmt.Errorf("append %d entries to %s: %w", len(entries), stream, txErr(cmds, err)))
	}
	return nil
}

// PublishRaw publishes payload on the report channel only, as a seed-style
// peer does.
func (b *Bus) PublishRaw(ctx context.Context, payload []byte) error {
	if err := b.publish(ctx, b.rdb, b.k.Channel, payload).Err(); err != nil {
		return classify(fmt.Errorf("publish to %s: %w", b.k.Channel, err))
	}
	return nil
}

// ReadLedgers returns up to count entries of each worker's stream after its
// cursor, oldest first within a stream, in one XREAD without waiting.
func (b *Bus) ReadLedgers(ctx context.Context, from []wire.Cursor, count int) ([]wire.LedgerEntry, error) {
	if len(from) == 0 {
		return nil, nil
	}
	streams := make([]string, 2*len(from))
	for i, c := range from {
		streams[i] = b.k.Ledger + c.Worker
		streams[len(from)+i] = cmp.Or(c.After, "0")
	}
	res, err := b.rdb.XRead(ctx, &redis.XReadArgs{Streams: streams, Count: int64(count), Block: -1}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, classify(fmt.Errorf("read %d streams of %s*: %w", len(from), b.k.Ledger, err))
	}
	var out []wire.LedgerEntry
	for _, s := range res {
		worker := strings.Clone(strings.TrimPrefix(s.Stream, b.k.Ledger)) // not the whole key: a collector keeps it
		for _, m := range s.Messages {
			e := wire.LedgerEntry{Worker: worker, ID: m.ID}
			if v, ok := m.Values["e"].(string); ok {
				e.Payload = []byte(v)
			}
			if v, ok := m.Values["s"].(string); ok {
				e.Sig = v
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// ScanLedgers returns the workers whose stream of the ledger exists, a page
// of a SCAN at a time: start with cursor 0; a next cursor of 0 ends the
// pass. A worker may appear in more than one page.
func (b *Bus) ScanLedgers(ctx context.Context, cursor uint64) ([]string, uint64, error) {
	c, err := b.jobNode(ctx)
	if err != nil {
		return nil, 0, classify(fmt.Errorf("scan %s*: %w", b.k.Ledger, err))
	}
	keys, next, err := c.ScanType(ctx, cursor, GlobEscape(b.k.Ledger)+"*", 1000, "stream").Result()
	if err != nil {
		b.reload(ctx)
		return nil, 0, classify(fmt.Errorf("scan %s*: %w", b.k.Ledger, err))
	}
	workers := make([]string, len(keys))
	for i, k := range keys {
		workers[i] = strings.TrimPrefix(k, b.k.Ledger)
	}
	return workers, next, nil
}

// TrimLedgers removes from each worker's stream the entries before its
// minimum ID, pipelined.
func (b *Bus) TrimLedgers(ctx context.Context, minIDs map[string]string) error {
	if len(minIDs) == 0 {
		return nil
	}
	_, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for w, id := range minIDs {
			p.XTrimMinID(ctx, b.k.Ledger+w, id)
		}
		return nil
	})
	if err != nil {
		return classify(fmt.Errorf("trim %d streams of %s*: %w", len(minIDs), b.k.Ledger, err))
	}
	return nil
}

// DeleteEntries removes the entries ids names, by worker, from the
// workers' streams: XDEL, in one pipeline.
func (b *Bus) DeleteEntries(ctx context.Context, ids map[string][]string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for w, ids := range ids {
			p.XDel(ctx, b.k.Ledger+w, ids...)
		}
		return nil
	})
	if err != nil {
		return classify(fmt.Errorf("delete entries of %d streams of %s*: %w", len(ids), b.k.Ledger, err))
	}
	return nil
}

// LedgerLen returns the number of entries worker's stream holds.
func (b *Bus) LedgerLen(ctx context.Context, worker string) (int64, error) {
	n, err := b.rdb.XLen(ctx, b.k.Ledger+worker).Result()
	if err != nil {
		return 0, classify(fmt.Errorf("length of %s: %w", b.k.Ledger+worker, err))
	}
	return n, nil
}

// Time returns the clock of the Redis server that holds the job (on a
// cluster, its slot's master) as a ledger position "ms-0": every entry
// appended later has a later ID.
func (b *Bus) Time(ctx context.Context) (string, error) {
	c, err := b.jobNode(ctx) // the clock of the server that stamps the job's entries
	if err != nil {
		return "", classify(fmt.Errorf("time: %w", err))
	}
	t, err := c.Time(ctx).Result()
	if err != nil {
		return "", classify(fmt.Errorf("time: %w", err))
	}
	return wire.ID{Ms: uint64(t.UnixMilli())}.String(), nil
}

// Checkpoint returns every field of the checkpoint.
func (b *Bus) Checkpoint(ctx context.Context) (map[string][]byte, error) {
	m, err := b.rdb.HGetAll(ctx, b.k.Checkpoint).Result()
	if err != nil {
		return nil, classify(fmt.Errorf("read %s: %w", b.k.Checkpoint, err))
	}
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		out[k] = []byte(v)
	}
	return out, nil
}

// Credited returns worker's field of the checkpoint, nil if it has none.
func (b *Bus) Credited(ctx context.Context, worker string) ([]byte, error) {
	v, err := b.rdb.HGet(ctx, b.k.Checkpoint, wire.CheckpointWorker+worker).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, classify(fmt.Errorf("read %s: %w", b.k.Checkpoint, err))
	}
	return v, nil
}

// SaveCheckpoint writes fields and pos into the checkpoint unless it holds a
// later mark already (WATCH, then MULTI/EXEC); it reports whether it wrote.
// A write that loses the race with another collector's is tried again, so
// false means the checkpoint holds a later mark.
func (b *Bus) SaveCheckpoint(ctx context.Context, pos string, fields map[string][]byte) (bool, error) {
	saved := false
	write := func(tx *redis.Tx) error {
		cur, err := tx.HGet(ctx, b.k.Checkpoint, wire.CheckpointPos).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		if wire.Later(cur, pos) {
			return nil
		}
		values := make([]any, 0, 2*len(fields)+2)
		for k, v := range fields {
			values = append(values, k, v)
		}
		values = append(values, wire.CheckpointPos, pos)
		cmds, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, b.k.Checkpoint, values...)
			return nil
		})
		err = txErr(cmds, err)
		saved = err == nil
		return err
	}
	var err error
	for range 5 {
		if err = b.rdb.Watch(ctx, write, b.k.Checkpoint); !errors.Is(err, redis.TxFailedErr) {
			break
		}
	}
	if err != nil {
		return false, classify(fmt.Errorf("write %s: %w", b.k.Checkpoint, err))
	}
	return saved, nil
}

// SetReader records where the collector called name has read to.
func (b *Bus) SetReader(ctx context.Context, name, value string) error {
	if err := b.rdb.HSet(ctx, b.k.Readers, name, value).Err(); err != nil {
		return classify(fmt.Errorf("write %s: %w", b.k.Readers, err))
	}
	return nil
}

// Readers returns every collector's reading position.
func (b *Bus) Readers(ctx context.Context) (map[string]string, error) {
	m, err := b.rdb.HGetAll(ctx, b.k.Readers).Result()
	if err != nil {
		return nil, classify(fmt.Errorf("read %s: %w", b.k.Readers, err))
	}
	return m, nil
}

// Quarantine records that worker was proven wrong.
func (b *Bus) Quarantine(ctx context.Context, worker string, why []byte) error {
	if err := b.rdb.HSet(ctx, b.k.Quarantine, worker, why).Err(); err != nil {
		return classify(fmt.Errorf("write %s: %w", b.k.Quarantine, err))
	}
	return nil
}

// Quarantined returns every quarantined worker and why.
func (b *Bus) Quarantined(ctx context.Context) (map[string][]byte, error) {
	m, err := b.rdb.HGetAll(ctx, b.k.Quarantine).Result()
	if err != nil {
		return nil, classify(fmt.Errorf("read %s: %w", b.k.Quarantine, err))
	}
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		out[k] = []byte(v)
	}
	return out, nil
}

// Heartbeat publishes a presence message on {channel}:presence.
func (b *Bus) Heartbeat(ctx context.Context, _ string, msg []byte) error {
	if err := b.publish(ctx, b.rdb, b.k.Presence, msg).Err(); err != nil {
		return classify(fmt.Errorf("publish to %s: %w", b.k.Presence, err))
	}
	return nil
}

// State returns the job state, nil if none has been written.
func (b *Bus) State(ctx context.Context) ([]byte, error) {
	v, err := b.rdb.Get(ctx, b.k.State).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, classify(fmt.Errorf("read %s: %w", b.k.State, err))
	}
	return v, nil
}

// SetState writes the job state and publishes it on the control channel, in
// one MULTI/EXEC.
func (b *Bus) SetState(ctx context.Context, state []byte) error {
	cmds, err := b.write(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, b.k.State, state, 0)
		b.publish(ctx, p, b.k.Control, state)
		return nil
	})
	if err != nil {
		return classify(fmt.Errorf("write %s: %w", b.k.State, txErr(cmds, err)))
	}
	return nil
}

// RestoreState writes the job state only if there is none (SET NX), and
// reports whether it wrote: after Redis lost its data, a concurrent reset's
// new job wins over the old one restored.
func (b *Bus) RestoreState(ctx context.Context, state []byte) (bool, error) {
	ok, err := b.rdb.SetNX(ctx, b.k.State, state, 0).Result()
	if err != nil {
		return false, classify(fmt.Errorf("restore %s: %w", b.k.State, err))
	}
	return ok, nil
}

// Reset deletes the job: its state, checkpoint, readers, quarantine and
// every worker's stream of the ledger (and a v1 job's totals, a v2.0 job's
// single ledger stream).
func (b *Bus) Reset(ctx context.Context) error {
	if err := b.rdb.Del(ctx, b.k.State, b.k.Checkpoint, b.k.Readers, b.k.Quarantine, b.k.Totals, b.k.OneLedger).Err(); err != nil {
		return classify(fmt.Errorf("reset %s: %w", b.k.Channel, err))
	}
	// The state went first: a worker that appends meanwhile waits for a job.
	var cursor uint64
	for {
		workers, next, err := b.ScanLedgers(ctx, cursor)
		if err != nil {
			return err
		}
		keys := make([]string, len(workers))
		for i, w := range workers {
			keys[i] = b.k.Ledger + w
		}
		if len(keys) > 0 {
			if err := b.rdb.Unlink(ctx, keys...).Err(); err != nil {
				return classify(fmt.Errorf("reset %s: %w", b.k.Channel, err))
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// Subscribe delivers the job's reports and presence messages until ctx is done.
func (b *Bus) Subscribe(ctx context.Context) <-chan wire.Message {
	return forward(ctx, b, []string{b.k.Channel, b.k.Presence}, 1024,
		func(m wire.Message) wire.Message { return m })
}

// Control delivers the job's control messages until ctx is done. A
// (re)subscription is delivered as an empty message: a reconnect may have
// missed a stop, so the worker should look at the state.
func (b *Bus) Control(ctx context.Context) <-chan []byte {
	return forward(ctx, b, []string{b.k.Control}, 16,
		func(m wire.Message) []byte { return append([]byte{}, m.Payload...) })
}

// forward listens on channels and sends every message, converted, on a
// channel of the given buffer, which it closes when ctx is done.
func forward[T any](ctx context.Context, b *Bus, channels []string, buffer int, convert func(wire.Message) T) <-chan T {
	out := make(chan T, buffer)
	go func() {
		defer close(out)
		b.listen(ctx, channels, func(m wire.Message) bool {
			select {
			case out <- convert(m):
				return true
			case <-ctx.Done():
				return false
			}
		})
	}()
	return out
}

// txErr returns the error of a MULTI/EXEC: the first queued command's own
// error when there is one (EXECABORT hides a NOPERM behind "previous
// errors"), else err.
func txErr(cmds []redis.Cmder, err error) error {
	for _, c := range cmds {
		if e := c.Err(); e != nil && !errors.Is(e, err) && strings.Contains(err.Error(), "EXECABORT") {
			return fmt.Errorf("%w (%w)", err, e)
		}
	}
	return err
}

// listen subscribes to channels and hands every message to deliver until
// ctx is done, deliver returns false, or a permanent error. A
// (re)subscription to the first channel is delivered as a KindSubscribed
// message; messages on the others are KindPresence. Transient errors are
// retried with backoff: go-redis reconnects and resubscribes on the next
// receive. A connection that leaves maxPings pings in a row unanswered is
// closed and the subscription made again on a new one.
func (b *Bus) listen(ctx context.Context, channels []string, deliver func(wire.Message) bool) {
	channel := channels[0]
	var mu sync.Mutex // guards ps against the AfterFunc
	ps := b.subscribe(ctx, channels...)
	closePS := func() {
		mu.Lock()
		defer mu.Unlock()
		_ = ps.Close()
	}
	defer closePS()
	stop := context.AfterFunc(ctx, closePS) // unblocks a pending receive
	defer stop()
	var bo backoff.Backoff
	pings := 0 // unanswered in a row
	for ctx.Err() == nil {
		msg, err := ps.ReceiveTimeout(ctx, b.ping)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if pings < b.maxPings {
					pings++
					_ = ps.Ping(ctx) // the reply, or the error, comes through ReceiveTimeout
					continue
				}
				b.log.Warn("subscription silent: pings unanswered; reconnecting on a new connection",
					"channel", channel, "pings", pings, "silent_for", b.silence())
				pings = 0
				mu.Lock()
				_ = ps.Close()
				ps = b.subscribe(ctx, channels...)
				mu.Unlock()
				bo.Next() // count a failure: the restore is logged
				continue
			}
			if err := classify(err); backoff.IsPermanent(err) {
				b.log.Error("subscription failed for good", "channel", channel, "err", err)
				return
			}
			if bo.Failures() == 0 {
				b.log.Warn("subscription lost; reconnecting", "channel", channel, "err", err)
			}
			b.reload(ctx) // a cluster's slot may have a new master
			if bo.Wait(ctx) != nil {
				return
			}
			continue
		}
		pings = 0
		switch m := msg.(type) {
		case *redis.Subscription:
			if (m.Kind == "subscribe" || m.Kind == "ssubscribe") && m.Channel == channel {
				if bo.Failures() > 0 {
					b.log.Info("subscription restored", "channel", channel)
				}
				bo.Reset()
				if !deliver(wire.Message{Kind: wire.KindSubscribed}) {
					return
				}
			}
		case *redis.Message:
			kind := wire.KindReport
			if m.Channel != channel {
				kind = wire.KindPresence
			}
			if !deliver(wire.Message{Kind: kind, Payload: []byte(m.Payload)}) {
				return
			}
		}
	}
}

// Tap counts the messages published on the job's report channel, as a bare
// go-redis subscriber receives them, until ctx is done: the baseline that
// picluster loadgen measures the collector against. It decodes nothing. A
// lost subscription (Redis drops a subscriber that overflows its output
// buffer) is counted in drops and made again, after a backoff when it
// fails again and again. It returns nil when ctx is done, and a permanent
// error (a wrong password, a missing permission) at once.
func (b *Bus) Tap(ctx context.Context, received, drops *atomic.Uint64) error {
	ps := b.subscribe(ctx, b.k.Channel)
	defer ps.Close()
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	if _, err := ps.Receive(ctx); err != nil { // the confirmation: from now on nothing published is missed
		return classify(fmt.Errorf("subscribe to %s: %w", b.k.Channel, err))
	}
	var bo backoff.Backoff
	for {
		msg, err := ps.Receive(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			if err := classify(err); backoff.IsPermanent(err) {
				return err
			}
			drops.Add(1) // go-redis subscribes again at the next Receive
			if bo.Wait(ctx) != nil {
				return nil
			}
			continue
		}
		if _, ok := msg.(*redis.Message); ok {
			received.Add(1)
			if bo.Failures() > 0 {
				bo.Reset()
			}
		}
	}
}
