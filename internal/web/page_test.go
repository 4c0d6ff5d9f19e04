package web

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/mcpi"
)

// fixed serves snapshots of a job of w workers, worker i at i samples/s;
// every call is a new snapshot when fresh is set.
type fixed struct {
	snap  *collector.Snapshot
	fresh bool
	seq   atomic.Uint64
}

func newFixed(w int) *fixed {
	ws := make([]collector.WorkerStats, w)
	var n mcpi.Count
	for i := range ws {
		ws[i] = collector.WorkerStats{ID: fmt.Sprintf("w%06d", i), N: 1000, Hits: 785, SamplesPerS: collector.Float(i), Status: "alive"}
		n = n.Add(mcpi.CountOf(1000))
	}
	s := collector.Summary{Channel: "fixed", N: n, Workers: w, WorkerTable: ws, Flagged: []string{}, Quarantined: []collector.QuarantineInfo{},
		WorkersByStatus: map[string]int{"alive": w, "left": 0, "vanished": 0, "quarantined": 0}}
	return &fixed{snap: &collector.Snapshot{Summary: s, Seq: 1}}
}

func (f *fixed) Snapshot() *collector.Snapshot {
	if !f.fresh {
		return f.snap
	}
	s := *f.snap
	s.Seq = f.seq.Add(1)
	return &s
}

func (f *fixed) History() []collector.Point { return nil }

func state(t *testing.T, h http.Handler, query string) (int, State) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/state"+query, nil))
	var s State
	if rec.Code == 200 {
		if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil {
			t.Fatalf("/api/state%s: %v", query, err)
		}
	}
	return rec.Code, s
}

// /api/state serves a page of the worker table, and every aggregate whole.
func TestStatePages(t *testing.T) {
	const workers = 2500
	h := Handler(newFixed(workers), quiet)
	for _, tt := range []struct {
		query       string
		code        int
		first, rows int // the first row's index, the rows served
		limit       int
	}{
		{"", 200, 0, DefaultLimit, DefaultLimit},
		{"?offset=0&limit=100", 200, 0, 100, 100},
		{"?offset=250&limit=10", 200, 250, 10, 10},
		{"?offset=2495&limit=10", 200, 2495, 5, 10},
		{"?offset=2500", 200, 0, 0, DefaultLimit},
		{"?offset=99999999", 200, 0, 0, DefaultLimit},
		{"?limit=5000", 200, 0, MaxLimit, MaxLimit},
		{"?offset=-1", 400, 0, 0, 0},
		{"?limit=0", 400, 0, 0, 0},
		{"?limit=x", 400, 0, 0, 0},
	} {
		code, s := state(t, h, tt.query)
		if code != tt.code {
			t.Errorf("%q: %d, want %d", tt.query, code, tt.code)
			continue
		}
		if code != 200 {
			continue
		}
		if len(s.WorkerTable) != tt.rows || s.Page.Total != workers || s.Page.Limit != tt.limit {
			t.Errorf("%q: %d rows, page %+v; want %d rows of %d, limit %d", tt.query, len(s.WorkerTable), s.Page, tt.rows, workers, tt.limit)
		}
		if tt.rows > 0 && s.WorkerTable[0].ID != fmt.Sprintf("w%06d", tt.first) {
			t.Errorf("%q: first row %s, want w%06d", tt.query, s.WorkerTable[0].ID, tt.first)
		}
		if s.Workers != workers || s.N != mcpi.CountOf(1000*workers) || s.WorkersByStatus["alive"] != workers {
			t.Errorf("%q: aggregates workers %d, N %v, alive %d: not of the whole job", tt.query, s.Workers, s.N, s.WorkersByStatus["alive"])
		}
	}
	// Walking the pages gives every row once, in order.
	var ids []string
	for off := 0; ; off += 700 {
		_, s := state(t, h, fmt.Sprintf("?offset=%d&limit=700", off))
		if len(s.WorkerTable) == 0 {
			break
		}
		for _, w := range s.WorkerTable {
			ids = append(ids, w.ID)
		}
	}
	if len(ids) != workers || ids[0] != "w000000" || ids[workers-1] != fmt.Sprintf("w%06d", workers-1) {
		t.Errorf("the pages hold %d rows, want %d in order", len(ids), workers)
	}
}

// /metrics has per-worker series for the MetricsTopK fastest workers
// only, and the aggregates of all.
func TestMetricsTopK(t *testing.T) {
	const workers = 500
	h := Handler(newFixed(workers), quiet)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	if n := strings.Count(body, "picluster_worker_samples_per_second{"); n != MetricsTopK {
		t.Errorf("%d per-worker rate series, want %d", n, MetricsTopK)
	}
	if n := strings.Count(body, "picluster_worker_z{"); n != MetricsTopK {
		t.Errorf("%d per-worker z series, want %d", n, MetricsTopK)
	}
	for _, want := range []string{
		fmt.Sprintf(`picluster_worker_samples_per_second{worker="w%06d"} %d`, workers-1, workers-1), // the fastest
		fmt.Sprintf(`picluster_worker_samples_per_second{worker="w%06d"} %d`, workers-MetricsTopK, workers-MetricsTopK),
		fmt.Sprintf(`picluster_workers{status="alive"} %d`, workers),
		"picluster_samples_total 500000",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if slow := fmt.Sprintf(`{worker="w%06d"}`, workers-MetricsTopK-1); strings.Contains(body, slow) {
		t.Errorf("/metrics has a series of %s, not among the %d fastest", slow, MetricsTopK)
	}
}

// The default page is encoded once per snapshot: /api/state and every
// event stream get the same bytes.
func TestEncodedOncePerSnapshot(t *testing.T) {
	src := newFixed(3)
	enc := &encoder{log: quiet}
	a, ea, _ := enc.shared(src.snap)
	b, eb, _ := enc.shared(src.snap)
	if &a[0] != &b[0] || &ea[0] != &eb[0] {
		t.Error("the same snapshot was encoded twice")
	}
	if !strings.Contains(string(ea), "data: "+strings.TrimSuffix(string(a), "\n")+"\n\n") {
		t.Errorf("the event does not carry the default page:\n%s\n%s", ea, a)
	}
	c, _, _ := enc.shared(&collector.Snapshot{Summary: src.snap.Summary, Seq: 2})
	if &c[0] == &a[0] {
		t.Error("a new snapshot was not encoded")
	}
}

// Past MaxStreams open event streams a new one is refused with a 503, and
// a stream closed frees its place.
func TestStreamCap(t *testing.T) {
	srv := httptest.NewServer(Handler(newFixed(2), quiet))
	defer srv.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	open := func(ctx context.Context) *http.Response {
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/events", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	cancels := make([]context.CancelFunc, MaxStreams)
	for i := range MaxStreams {
		var c context.Context
		c, cancels[i] = context.WithCancel(ctx)
		resp := open(c)
		if resp.StatusCode != 200 {
			t.Fatalf("stream %d: %d", i+1, resp.StatusCode)
		}
		defer resp.Body.Close()
	}
	resp := open(ctx)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("stream %d: %d, want 503", MaxStreams+1, resp.StatusCode)
	}
	cancels[0]()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp := open(ctx)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a closed stream did not free its place: %d", resp.StatusCode)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pipes is a listener of in-memory connections, for servers in a synctest
// bubble.
type pipes struct {
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func newPipes() *pipes { return &pipes{conns: make(chan net.Conn), done: make(chan struct{})} }

func (p *pipes) Accept() (net.Conn, error) {
	select {
	case c := <-p.conns:
		return c, nil
	case <-p.done:
		return nil, net.ErrClosed
	}
}
func (p *pipes) Close() error   { p.once.Do(func() { close(p.done) }); return nil }
func (p *pipes) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

func (p *pipes) dial() net.Conn {
	client, server := net.Pipe()
	p.conns <- server
	return client
}

// A client that reads its event stream's first event and then nothing more
// is dropped within StreamWriteTimeout of the first event it fails to
// take, while a client that reads goes on getting events.
func TestStalledStreamIsDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFixed(200) // events of about 30 kB: a pipe takes none of it unread
		src.fresh = true
		h := Handler(src, quiet)
		ended := make(chan string, 2)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r)
			ended <- r.Header.Get("X-Client")
		})}
		l := newPipes()
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()

		stream := func(name string) *bufio.Reader {
			c := l.dial()
			t.Cleanup(func() { c.Close() })
			fmt.Fprintf(c, "GET /api/events HTTP/1.1\r\nHost: localhost\r\nX-Client: %s\r\n\r\n", name)
			br := bufio.NewReaderSize(c, 1<<20)
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if strings.HasPrefix(line, "data: ") {
					return br
				}
			}
		}
		stream("stalled")
		live := stream("live")
		events := make(chan int, 1)
		go func() {
			n := 0
			for {
				line, err := live.ReadString('\n')
				if err != nil {
					events <- n
					return
				}
				if strings.HasPrefix(line, "data: ") {
					n++
				}
			}
		}()

		time.Sleep(StreamWriteTimeout + 2*EventInterval)
		synctest.Wait()
		select {
		case who := <-ended:
			if who != "stalled" {
				t.Errorf("the %s stream ended", who)
			}
		default:
			t.Errorf("a client that does not read still holds its stream after %v", StreamWriteTimeout+2*EventInterval)
		}
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
		if n := <-events; n < int((StreamWriteTimeout+EventInterval)/EventInterval)-1 {
			t.Errorf("the reading client got %d events meanwhile", n)
		}
		<-ended
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
}
