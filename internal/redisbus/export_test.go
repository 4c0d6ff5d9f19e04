package redisbus

import "context"

// Scan exposes scan to the tests.
func (b *Bus) Scan(ctx context.Context, prefix string, fn func([]string) error) error {
	return b.scan(ctx, prefix, fn)
}
