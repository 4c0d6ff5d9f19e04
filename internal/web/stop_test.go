package web

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/internal/membus"
	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Why the collector stopped shows in /api/state and /metrics: the cause of
// the cancellation of its Run, not a guess.
func TestStoppedByIsServed(t *testing.T) {
	for _, tt := range []struct {
		cause error
		want  string
	}{{collector.StopDuration, "duration"}, {collector.StopWorkers, "workers"}, {nil, "signal"}} {
		t.Run(tt.want, func(t *testing.T) {
			bus := membus.New()
			c, err := collector.New(bus, collector.Config{Channel: "test", Logger: quiet, Kernel: mcpi.Generic})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancelCause(context.Background())
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx) }()
			waitFor(t, func() bool { b, _ := bus.State(ctx); st, _ := wire.DecodeState(b); return st.Job != "" })
			srv := httptest.NewServer(Handler(c, quiet))
			defer srv.Close()
			if _, body := get(t, srv.URL+"/metrics"); strings.Contains(body, "picluster_stopped{") {
				t.Fatalf("/metrics shows a stop while running")
			}
			cancel(tt.cause)
			<-done
			_, body := get(t, srv.URL+"/api/state")
			var s collector.Summary
			if err := json.Unmarshal([]byte(body), &s); err != nil || s.StoppedBy != tt.want {
				t.Errorf("/api/state stopped_by %q (%v), want %q", s.StoppedBy, err, tt.want)
			}
			if _, body := get(t, srv.URL+"/metrics"); !strings.Contains(body, `picluster_stopped{reason="`+tt.want+`"} 1`) ||
				!strings.Contains(body, "picluster_summary_stale 0") {
				t.Errorf("/metrics lacks the stop reason %q:\n%s", tt.want, body)
			}
		})
	}
}
