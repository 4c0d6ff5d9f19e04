package redisbus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Lease takes worker's lease for token for ttl if it is free (SET NX PX),
// or renews it if token holds it (WATCH, GET, then PEXPIRE in MULTI/EXEC:
// never another's). It reports whether token holds the lease, and otherwise
// how long the other holder's lease has left.
func (b *Bus) Lease(ctx context.Context, worker, token string, ttl time.Duration) (bool, time.Duration, error) {
	key := b.k.Lease + worker
	for range 2 { // a lease that expires between SET NX and GET is tried once more
		ok, err := b.rdb.SetNX(ctx, key, token, ttl).Result()
		if err != nil {
			return false, 0, classify(fmt.Errorf("take %s: %w", key, err))
		}
		if ok {
			return true, 0, nil
		}
		var held, gone bool
		var left time.Duration
		err = b.rdb.Watch(ctx, func(tx *redis.Tx) error {
			v, err := tx.Get(ctx, key).Result()
			if errors.Is(err, redis.Nil) {
				gone = true
				return nil
			}
			if err != nil {
				return err
			}
			if v != token {
				left, err = tx.PTTL(ctx, key).Result()
				return err
			}
			cmds, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.PExpire(ctx, key, ttl)
				return nil
			})
			held = err == nil
			return txErr(cmds, err)
		}, key)
		switch {
		case errors.Is(err, redis.TxFailedErr):
			continue // changed under our WATCH: look again
		case err != nil:
			return false, 0, classify(fmt.Errorf("renew %s: %w", key, err))
		case gone:
			continue
		}
		return held, left, nil
	}
	return false, 0, fmt.Errorf("take %s: it changed under every try", key)
}

// Release ends token's lease on worker, if it holds it, so that a worker
// restarted under the same id need not wait for the TTL.
func (b *Bus) Release(ctx context.Context, worker, token string) error {
	key := b.k.Lease + worker
	err := b.rdb.Watch(ctx, func(tx *redis.Tx) error {
		v, err := tx.Get(ctx, key).Result()
		if errors.Is(err, redis.Nil) || err == nil && v != token {
			return nil
		}
		if err != nil {
			return err
		}
		cmds, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Del(ctx, key)
			return nil
		})
		return txErr(cmds, err)
	}, key)
	if err != nil && !errors.Is(err, redis.TxFailedErr) {
		return classify(fmt.Errorf("release %s: %w", key, err))
	}
	return nil
}
