// Package redisbus is the Redis bus of picluster, and the only package that
// imports go-redis.
//
// One job lives under one channel name C: reports are published on C, the
// latest report of every worker is the field of the hash {C}:totals named by
// the worker id, the job state is the string {C}:state, and control messages
// go on {C}:control. The hash tag keeps a job on one Redis Cluster slot. A
// worker's PUBLISH and its HSET are one MULTI/EXEC, so whatever a collector
// missed on the channel it finds in the hash.
//
// Subscriptions reconnect by themselves, with backoff. After every
// (re)subscription the report stream carries a Subscribed message, so the
// collector rebuilds the job from the hash. A silent connection is pinged,
// so a half-open TCP connection is found within a few seconds.
//
// A Bus is safe for concurrent use.
package redisbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/internal/backoff"
	"github.com/picluster/picluster/worker"
)

var (
	_ worker.Bus    = (*Bus)(nil)
	_ collector.Bus = (*Bus)(nil)
)

// DefaultChannel is the report channel of the original Python workers.
const DefaultChannel = "pi_collector"

// Bus is one job on one Redis server.
type Bus struct {
	rdb      *redis.Client
	channel  string
	totals   string
	state    string
	control  string
	presence string
	log      *slog.Logger
}

// ValidChannel reports whether channel can name a job: not empty, at most
// 200 bytes, no braces (they would break the hash tag) and no white space.
func ValidChannel(channel string) error {
	if channel == "" || len(channel) > 200 || strings.ContainsAny(channel, "{} \t\r\n") {
		return fmt.Errorf("channel %q: want 1 to 200 bytes without braces or spaces", channel)
	}
	return nil
}

// Open connects lazily to the Redis at url (redis:// or rediss://, with
// user, password and database as go-redis's ParseURL reads them). It does not
// wait for the server; the first command does.
func Open(url, channel string, log *slog.Logger) (*Bus, error) {
	if err := ValidChannel(channel); err != nil {
		return nil, err
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	opt.DialTimeout = 5 * time.Second
	opt.ReadTimeout = 5 * time.Second
	opt.WriteTimeout = 5 * time.Second
	opt.PoolSize = 4
	opt.MaxRetries = 1 // our own backoff retries; don't hammer a dead server
	if log == nil {
		log = slog.Default()
	}
	tag := "{" + channel + "}:"
	return &Bus{rdb: redis.NewClient(opt), channel: channel,
		totals: tag + "totals", state: tag + "state", control: tag + "control", presence: tag + "presence", log: log}, nil
}

// Close closes the connections.
func (b *Bus) Close() error { return b.rdb.Close() }

// Ping checks that the server answers.
func (b *Bus) Ping(ctx context.Context) error { return b.rdb.Ping(ctx).Err() }

// Publish records report as worker's latest and publishes it, in one
// MULTI/EXEC.
func (b *Bus) Publish(ctx context.Context, worker string, report []byte) error {
	_, err := b.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, b.totals, worker, report)
		p.Publish(ctx, b.channel, report)
		return nil
	})
	if err != nil {
		return fmt.Errorf("publish to %s: %w", b.channel, err)
	}
	return nil
}

// Heartbeat publishes a presence message on {channel}:presence.
func (b *Bus) Heartbeat(ctx context.Context, _ string, msg []byte) error {
	if err := b.rdb.Publish(ctx, b.presence, msg).Err(); err != nil {
		return fmt.Errorf("publish to %s: %w", b.presence, err)
	}
	return nil
}

// Latest returns the latest report recorded for worker, nil if none.
func (b *Bus) Latest(ctx context.Context, worker string) ([]byte, error) {
	v, err := b.rdb.HGet(ctx, b.totals, worker).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s[%s]: %w", b.totals, worker, err)
	}
	return v, nil
}

// Totals returns the latest report of every worker.
func (b *Bus) Totals(ctx context.Context) ([][]byte, error) {
	m, err := b.rdb.HGetAll(ctx, b.totals).Result()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", b.totals, err)
	}
	out := make([][]byte, 0, len(m))
	for _, v := range m {
		out = append(out, []byte(v))
	}
	return out, nil
}

// State returns the job state, nil if none has been written.
func (b *Bus) State(ctx context.Context) ([]byte, error) {
	v, err := b.rdb.Get(ctx, b.state).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", b.state, err)
	}
	return v, nil
}

// SetState writes the job state and publishes it on the control channel, in
// one MULTI/EXEC.
func (b *Bus) SetState(ctx context.Context, state []byte) error {
	_, err := b.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, b.state, state, 0)
		p.Publish(ctx, b.control, state)
		return nil
	})
	if err != nil {
		return fmt.Errorf("write %s: %w", b.state, err)
	}
	return nil
}

// Reset deletes the job's totals and state.
func (b *Bus) Reset(ctx context.Context) error {
	if err := b.rdb.Del(ctx, b.totals, b.state).Err(); err != nil {
		return fmt.Errorf("reset %s: %w", b.channel, err)
	}
	return nil
}

// Subscribe delivers the job's reports and presence messages until ctx is done.
func (b *Bus) Subscribe(ctx context.Context) <-chan collector.Message {
	return forward(ctx, b, []string{b.channel, b.presence}, 1024,
		func(m collector.Message) collector.Message { return m })
}

// Control delivers the job's control messages until ctx is done. A
// (re)subscription is delivered as an empty message: a reconnect may have
// missed a stop, so the worker should look at the state.
func (b *Bus) Control(ctx context.Context) <-chan []byte {
	return forward(ctx, b, []string{b.control}, 16,
		func(m collector.Message) []byte { return append([]byte{}, m.Payload...) })
}

// forward listens on channels and sends every message, converted, on a
// channel of the given buffer, which it closes when ctx is done.
func forward[T any](ctx context.Context, b *Bus, channels []string, buffer int, convert func(collector.Message) T) <-chan T {
	out := make(chan T, buffer)
	go func() {
		defer close(out)
		b.listen(ctx, channels, func(m collector.Message) bool {
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

// idle is how long a subscription may be silent before it is pinged.
const idle = 5 * time.Second

// listen subscribes to channels and hands every message to deliver until
// ctx is done or deliver returns false. A (re)subscription to the first
// channel is delivered as a Subscribed message; messages on the others are
// marked Presence. Errors are retried with backoff: go-redis reconnects and
// resubscribes on the next receive.
func (b *Bus) listen(ctx context.Context, channels []string, deliver func(collector.Message) bool) {
	channel := channels[0]
	ps := b.rdb.Subscribe(ctx, channels...)
	defer ps.Close()
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() }) // unblocks a pending receive
	defer stop()
	var bo backoff.Backoff
	for ctx.Err() == nil {
		msg, err := ps.ReceiveTimeout(ctx, idle)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				_ = ps.Ping(ctx) // the reply, or the error, comes through ReceiveTimeout
				continue
			}
			if bo.Failures() == 0 {
				b.log.Warn("subscription lost; reconnecting", "channel", channel, "err", err)
			}
			if bo.Wait(ctx) != nil {
				return
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == channel {
				if bo.Failures() > 0 {
					b.log.Info("subscription restored", "channel", channel)
				}
				bo.Reset()
				if !deliver(collector.Message{Subscribed: true}) {
					return
				}
			}
		case *redis.Message:
			if !deliver(collector.Message{Payload: []byte(m.Payload), Presence: m.Channel != channel}) {
				return
			}
		}
	}
}
