package redisbus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Connection settings of every mode.
const (
	dialTimeout = 5 * time.Second
	ioTimeout   = 5 * time.Second
	poolSize    = 4 // per server
	// replicaWait is how long one WAIT waits for a replica to acknowledge
	// an append before the master is asked whether it has one at all.
	replicaWait = time.Second
)

// newClient returns the go-redis client of t, with files for TLS when they
// are given (to every server of a cluster or a Sentinel setup, sentinels
// included).
func newClient(t target, files *TLSFiles) (redis.UniversalClient, error) {
	// tlsFor is the TLS configuration for a server dialled at host ("": each
	// node verified by the host it is dialled at): the files', or with none
	// the URL's own (rediss://), cur.
	tlsFor := func(cur *tls.Config, host string) (*tls.Config, error) {
		if files == nil || files.empty() {
			return cur, nil
		}
		return files.config(host)
	}
	var hook redis.Hook
	var err error
	switch t.mode {
	case Single:
		opt := t.single
		if opt.TLSConfig, err = tlsFor(opt.TLSConfig, opt.Addr); err != nil {
			return nil, err
		}
		tune(&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.PoolSize, &opt.MaxRetries, &opt.ContextTimeoutEnabled)
		c := redis.NewClient(opt)
		c.AddHook(modeHook{mode: Single})
		return c, nil
	case Cluster:
		opt := t.cluster
		if opt.TLSConfig, err = tlsFor(opt.TLSConfig, ""); err != nil {
			return nil, err
		}
		tune(&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.PoolSize, &opt.MaxRetries, &opt.ContextTimeoutEnabled)
		c := redis.NewClusterClient(opt)
		hook = modeHook{mode: Cluster}
		c.AddHook(hook)
		// The hook of the cluster client sees the commands it routes;
		// those of its nodes' clients see what the Bus sends a node
		// directly (write, scan).
		c.OnNewNode(func(n *redis.Client) { n.AddHook(hook) })
		return c, nil
	default:
		opt := t.failover
		if opt.TLSConfig, err = tlsFor(opt.TLSConfig, ""); err != nil {
			return nil, err
		}
		tune(&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.PoolSize, &opt.MaxRetries, &opt.ContextTimeoutEnabled)
		c := redis.NewFailoverClient(opt)
		c.AddHook(modeHook{mode: Sentinel, master: opt.MasterName})
		return c, nil
	}
}

// tune sets what the three kinds of client share, through pointers to
// their options' fields of those names.
func tune(dial, read, write *time.Duration, pool, retries *int, contextTimeout *bool) {
	*dial, *read, *write = dialTimeout, ioTimeout, ioTimeout
	*pool = poolSize
	*retries = 1           // our own backoff retries; don't hammer a dead server
	*contextTimeout = true // a deadline or a cancellation ends a pending read: see ReadLedger
}

// publish publishes msg on channel through c: SPUBLISH on a cluster, where
// a channel lives on the slot of its name (the job's slot: C and {C}:…
// hash alike), PUBLISH elsewhere.
func (b *Bus) publish(ctx context.Context, c redis.Cmdable, channel string, msg any) *redis.IntCmd {
	if b.mode == Cluster {
		return c.SPublish(ctx, channel, msg)
	}
	return c.Publish(ctx, channel, msg)
}

// subscribe subscribes to channels: SSUBSCRIBE, on the master of their
// slot, on a cluster; SUBSCRIBE elsewhere.
func (b *Bus) subscribe(ctx context.Context, channels ...string) *redis.PubSub {
	if b.mode == Cluster {
		return b.rdb.SSubscribe(ctx, channels...)
	}
	return b.rdb.Subscribe(ctx, channels...)
}

// reload makes a cluster client learn the slots again, after an error that
// may mean a failover.
func (b *Bus) reload(ctx context.Context) {
	if c, ok := b.rdb.(*redis.ClusterClient); ok {
		c.ReloadState(ctx)
	}
}

// master returns a client of the server that holds the job's keys: the
// master of the job's slot on a cluster, the client itself elsewhere.
func (b *Bus) master(ctx context.Context) (*redis.Client, error) {
	switch c := b.rdb.(type) {
	case *redis.ClusterClient:
		return c.MasterForKey(ctx, b.k.State)
	case *redis.Client:
		return c, nil
	}
	return nil, fmt.Errorf("a %T is not a client of one server", b.rdb)
}

// write runs fn's commands in one MULTI/EXEC on the job's master.
//
// On a cluster or under Sentinel, a failover promotes a replica, and
// replication is asynchronous: a write the master acknowledged but had not
// sent to its replica is lost. So there write then waits, on the same
// connection, until a replica holds the write too (WAIT 1): an error in
// between — the master died — is returned, and the caller (a worker's
// queue) writes again, on the new master. Writing twice is harmless: the
// collector credits a worker's seq once. A master that has no replica
// connected is not waited for (nothing could be promoted with the write
// anyway); that is logged once.
func (b *Bus) write(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error) {
	if b.mode == Single {
		return b.rdb.TxPipelined(ctx, fn)
	}
	m, err := b.master(ctx)
	if err != nil {
		return nil, err
	}
	conn := m.Conn()
	defer conn.Close()
	cmds, err := conn.TxPipelined(ctx, fn)
	if err != nil {
		b.reload(ctx)
		return cmds, err
	}
	if err := b.replicated(ctx, conn); err != nil {
		b.reload(ctx)
		return cmds, fmt.Errorf("written, but not known to be on a replica (it is written again): %w", err)
	}
	return cmds, nil
}

// replicated waits until a replica acknowledges every write made on conn,
// or the master says it has no replica.
func (b *Bus) replicated(ctx context.Context, conn *redis.Conn) error {
	for {
		n, err := conn.Wait(ctx, 1, replicaWait).Result()
		if err != nil {
			return err
		}
		if n >= 1 {
			b.noRepl.Store(false)
			return nil
		}
		role, err := conn.Do(ctx, "ROLE").Slice()
		if err != nil {
			return err
		}
		if len(role) < 3 || role[0] != "master" {
			return fmt.Errorf("the server is no master any more (ROLE %v)", role[0])
		}
		if replicas, _ := role[2].([]any); len(replicas) == 0 {
			if !b.noRepl.Swap(true) {
				b.log.Warn("the job's Redis master has no replica: appends are not waited for, and a failover now could lose the last ones")
			}
			return nil
		}
		b.log.Debug("waiting for a replica to acknowledge the append")
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// jobNode returns the client of the server that holds the job, for SCAN
// and TIME: on a cluster, the master of the job's slot.
func (b *Bus) jobNode(ctx context.Context) (redis.Cmdable, error) {
	if b.mode == Cluster {
		return b.master(ctx)
	}
	return b.rdb, nil
}

// GlobEscape quotes what SCAN's MATCH or an ACL key pattern would read as a
// pattern: a channel name or a worker id may hold * ? [ ] or a backslash.
func GlobEscape(s string) string { return globEscaper.Replace(s) }

var globEscaper = strings.NewReplacer(`\`, `\\`, "*", `\*`, "?", `\?`, "[", `\[`, "]", `\]`)

// modeMismatch is an error that says the URL's mode does not fit the
// server: no retry fixes it (see classify).
type modeMismatch struct {
	advice string
	err    error
}

func (e *modeMismatch) Error() string { return e.err.Error() }
func (e *modeMismatch) Unwrap() error { return e.err }

// modeHook recognises, in replies, a server that is not what the URL's
// mode says: a cluster node behind redis:// (it answers MOVED), a single
// server behind redis+cluster://, a master name the sentinels do not know.
type modeHook struct {
	mode   Mode
	master string // Sentinel's
}

func (h modeHook) mismatch(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	switch {
	case h.mode != Cluster && (strings.HasPrefix(msg, "MOVED ") || strings.HasPrefix(msg, "ASK ")):
		return &modeMismatch{"this Redis is a cluster node: give redis+cluster://host:port,… in --redis or REDIS_URL", err}
	case h.mode == Cluster && strings.Contains(msg, "cluster support disabled"):
		return &modeMismatch{"this Redis is not a cluster: give redis://host:port in --redis or REDIS_URL", err}
	case h.mode == Sentinel && strings.Contains(msg, "all sentinels") && errors.Is(err, redis.Nil):
		return &modeMismatch{fmt.Sprintf("the sentinels know no master named %q: check the name after the sentinels in --redis or REDIS_URL", h.master), err}
	case h.mode == Sentinel && strings.Contains(msg, "unknown command") && strings.Contains(strings.ToLower(msg), "sentinel"):
		return &modeMismatch{"a host in --redis or REDIS_URL is not a Redis Sentinel", err}
	}
	return nil
}

func (h modeHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if m := h.mismatch(err); m != nil {
			return c, m
		}
		return c, err
	}
}

func (h modeHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if m := h.mismatch(err); m != nil {
			cmd.SetErr(m)
			return m
		}
		return err
	}
}

func (h modeHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			if m := h.mismatch(c.Err()); m != nil {
				c.SetErr(m)
				if err != nil {
					err = m
				}
			}
		}
		if m := h.mismatch(err); m != nil {
			return m
		}
		return err
	}
}
