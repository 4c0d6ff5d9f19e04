package main

import (
	"testing"

	"go.uber.org/goleak"
)

// go-redis, after a failed dial, retries in a goroutine that sleeps a second
// between tries and ends at its next wake once the client is closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}
