package redisbus

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/redis/go-redis/v9"
)

// SetLogger routes go-redis's own log lines (pool and connection notices,
// which it would print straight to stderr) to log, at warning level, so they
// go where every other log goes and wait while the live view holds the
// logs. go-redis has one logger per process: main calls this once.
func SetLogger(log *slog.Logger) { redis.SetLogger(printf{log}) }

// printf is go-redis's logging interface over slog.
type printf struct{ log *slog.Logger }

func (p printf) Printf(ctx context.Context, format string, v ...any) {
	detail := strings.TrimSpace(fmt.Sprintf(format, v...))
	switch {
	case strings.HasPrefix(detail, "sentinel: new master"):
		// A failover, or the first master found: worth a line.
		p.log.InfoContext(ctx, "go-redis", "detail", detail)
	case strings.HasPrefix(detail, "sentinel: "):
		// Which sentinel answered, on every new connection.
		p.log.DebugContext(ctx, "go-redis", "detail", detail)
	default:
		p.log.WarnContext(ctx, "go-redis", "detail", detail)
	}
}
