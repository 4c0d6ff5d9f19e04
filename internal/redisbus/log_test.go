package redisbus

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/picluster/picluster/internal/redistest"
)

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// go-redis's own log lines go through slog once SetLogger is called. A TTL
// under a millisecond makes go-redis log that it rounds it up.
func TestSetLoggerRoutesGoRedisLogs(t *testing.T) {
	srv := redistest.Start(t)
	var buf syncBuffer
	SetLogger(slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(func() { SetLogger(slog.Default()) })
	b, err := Open(srv.URL(), "logs", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.rdb.Set(t.Context(), "k", "v", 500*time.Microsecond).Err(); err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); !strings.Contains(got, "level=WARN msg=go-redis") || !strings.Contains(got, "truncating to 1ms") {
		t.Fatalf("slog got %q, want go-redis's line about the TTL", got)
	}
}
