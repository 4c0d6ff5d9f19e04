package web

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/internal/membus"
	"github.com/picluster/picluster/internal/tui"
)

// badSource serves a summary that cannot be encoded: a time past year 9999.
type badSource struct{}

func (badSource) Snapshot() *collector.Snapshot {
	return &collector.Snapshot{Summary: collector.Summary{WorkerTable: []collector.WorkerStats{{ID: "w", LastSeen: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}}}
}
func (badSource) History() []collector.Point { return nil }

// An encoding error is a 500 with a reason, logged once, never an empty 200;
// the event stream carries it as a "fault" event and goes on.
func TestEncodingErrorIs500(t *testing.T) {
	var logs bytes.Buffer
	h := Handler(badSource{}, slog.New(slog.NewTextHandler(&logs, nil)))
	for range 3 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/state", nil))
		if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "cannot encode") {
			t.Fatalf("/api/state: %d %q, want 500 with a reason", rec.Code, rec.Body)
		}
	}
	if n := strings.Count(logs.String(), "level=ERROR"); n != 1 {
		t.Errorf("%d error lines, want 1:\n%s", n, &logs)
	}

	srv := httptest.NewServer(h)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	faults := 0
	for faults < 2 && sc.Scan() {
		if sc.Text() == "event: fault" {
			faults++
		}
	}
	if faults < 2 {
		t.Errorf("%d fault events, want a stream of them: %v", faults, sc.Err())
	}
}

// An entry claiming a batch took 5e-324 s (an infinite rate) is rejected,
// with its reason, and every output stays up. job() appends one.
func TestInfiniteRateReport(t *testing.T) {
	c := job(t)
	h := Handler(c, quiet)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/state", nil))
	var s collector.Summary
	if err := json.Unmarshal(rec.Body.Bytes(), &s); rec.Code != 200 || err != nil {
		t.Fatalf("/api/state: %d %v %.200s", rec.Code, err, rec.Body)
	}
	if s.RejectedBy["bad_seconds"] != 1 || s.Workers != 2 {
		t.Errorf("rejected_by %v, workers %d; want bad_seconds 1, 2 workers", s.RejectedBy, s.Workers)
	}
}

// FuzzState sends arbitrary sequences of reports and presence messages
// (one per line; a line starting with "!" is a presence message) through
// the collector, then checks that the summary encodes, that /api/state and
// /api/history answer 200 with JSON, and that the live view renders.
func FuzzState(f *testing.F) {
	for _, s := range []string{
		`{"n":4,"pi_approx":3,"hits":3,"worker":"w","seq":1,"total_n":4,"total_hits":3,"seconds":5e-324}`,
		`{"n":4,"pi_approx":3,"hits":3,"worker":"w","seq":1,"total_n":4,"total_hits":3,"seconds":1e-300}` + "\n" +
			`{"n":4,"pi_approx":0,"hits":0,"worker":"w","seq":2,"total_n":8,"total_hits":3}`,
		`{"n":18446744073709551615,"pi_approx":4,"hits":18446744073709551615,"worker":"a","seq":1,"total_n":18446744073709551615,"total_hits":18446744073709551615}` + "\n" +
			`{"n":18446744073709551615,"pi_approx":0,"hits":0,"worker":"b","seq":18446744073709551615,"total_n":18446744073709551615,"total_hits":0}`,
		`{"n":1,"pi_approx":4}` + "\n" + `{"n":1,"pi_approx":0}` + "\n" + `{"n":1,"pi_approx":4}`,
		`{"n":1000000,"pi_approx":3.2,"N":1,"PI_APPROX":4}` + "\n" + `{"n":1000000,"pi_approx":3.2,"n":1}`,
		`!{"worker":"w","status":"left","at":"2026-01-01T00:00:00Z"}` + "\n" + `{"n":4,"pi_approx":3,"hits":3,"worker":"w","seq":1,"total_n":4,"total_hits":3,"seconds":604800}`,
		"garbage\n\n{}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		now := time.Unix(1_800_000_000, 0)
		c, err := collector.New(membus.New(), collector.Config{Channel: "fuzz", TargetSE: 1e-3, Logger: quiet, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		for line := range bytes.SplitSeq(b, []byte("\n")) {
			now = now.Add(time.Second)
			if p, ok := bytes.CutPrefix(line, []byte("!")); ok {
				c.HandlePresence(p)
			} else {
				c.Handle(line)
			}
		}
		s := c.Summary()
		if _, err := json.Marshal(s); err != nil {
			t.Fatalf("json.Marshal(Summary): %v", err)
		}
		h := Handler(c, quiet)
		for _, path := range []string{"/api/state", "/api/history"} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
			if rec.Code != 200 || !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("%s: %d %.300q", path, rec.Code, rec.Body)
			}
		}
		tui.Render(s, c.History(), 80, 24)
	})
}
