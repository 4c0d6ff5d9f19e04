// Package web serves the collector over HTTP: a dashboard page embedded in
// the binary (working offline, with a vendored uPlot), the live state as
// JSON and as Server-Sent Events, Prometheus metrics from a registry of its
// own, and a health check. WorkerHandler serves a worker's /metrics and
// /healthz. Every registry also has the Go runtime and process collectors
// and picluster_build_info. It only reads: every endpoint is GET or HEAD.
//
// Every endpoint reads the collector's Snapshot, built once per tick
// (collector.SnapshotInterval) outside the lock that crediting takes, and
// never the collector itself. /api/state serves a page of the worker table
// (?offset=&limit=, DefaultLimit rows by default, at most MaxLimit) with
// every aggregate complete; the default page is encoded once per snapshot
// and shared by every request and every event stream. /metrics has
// per-worker series for the MetricsTopK fastest workers only, and
// aggregates over all of them.
//
// Each event stream sends the shared encoding of each new snapshot, holding
// at most that one event: a stream that falls behind skips to the newest.
// It writes with a deadline of StreamWriteTimeout on a socket whose send
// buffer is StreamSendBuffer, so a client that does not read is dropped
// within seconds and never slows the collector or another stream; at most
// MaxStreams are open at once, a 503 past that. Every
// response carries the OWASP security headers (a Content-Security-Policy
// that allows only the page's own assets, frame-ancestors 'none', nosniff,
// no referrer); directories are not listed; on loopback, requests for other
// Host names are refused (DNS rebinding). Serve binds loopback unless the address names
// another host, sets read, write and idle timeouts (the event stream extends
// its write deadline per event), and shuts down when its context ends.
package web

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/mcpi"
)

//go:embed static
var static embed.FS

// EventInterval is the period of /api/events: at most 4 events a second.
const EventInterval = 250 * time.Millisecond

// Source is what the server reads: a *collector.Collector.
type Source interface {
	// Snapshot returns the latest snapshot, which the server only reads.
	Snapshot() *collector.Snapshot
	History() []collector.Point
}

// The bounds of what one response carries.
const (
	// DefaultLimit is the rows of the worker table that /api/state serves
	// without ?limit=, and that every /api/events event carries (the first page).
	DefaultLimit = 100
	// MaxLimit is the most rows /api/state serves at once; a larger limit is cut to it.
	MaxLimit = 1000
	// MetricsTopK is how many workers, the fastest by samples/s, have
	// per-worker series in /metrics.
	MetricsTopK = 20
)

// Handler returns the server's routes for src.
func Handler(src Source, log *slog.Logger) http.Handler {
	enc := &encoder{log: log}
	reg := newRegistry(mcpi.Pick().Name())
	reg.MustRegister(metrics{src: src})
	files, _ := fs.Sub(static, "static") // the embedded tree always has it
	mux := http.NewServeMux()
	mux.Handle("GET /", noListing(http.FileServerFS(files)))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /api/state", func(w http.ResponseWriter, r *http.Request) { enc.state(w, r, src) })
	mux.HandleFunc("GET /api/history", func(w http.ResponseWriter, r *http.Request) { enc.write(w, r, src.History()) })
	var streams atomic.Int64
	mux.HandleFunc("GET /api/events", func(w http.ResponseWriter, r *http.Request) {
		if streams.Add(1) > MaxStreams {
			streams.Add(-1)
			http.Error(w, "too many event streams; try again later", http.StatusServiceUnavailable)
			return
		}
		defer streams.Add(-1)
		enc.events(w, r, src)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return secure(mux)
}

// MaxStreams bounds the open /api/events streams; past it a new one gets a
// 503.
const MaxStreams = 64

// A client that does not read is dropped when an event cannot be written
// within StreamWriteTimeout. What it leaves unread first fills the send
// buffer of its socket, StreamSendBuffer (on Linux the kernel doubles it),
// and its own receive buffer: at most a few seconds of events.
const (
	StreamWriteTimeout = 2 * time.Second
	StreamSendBuffer   = 16 << 10
)

// keepAlive is how often a stream whose state does not change sends a
// comment, so that proxies and clients see it alive.
const keepAlive = 15 * time.Second

// secure sets the OWASP set of response headers: the page may load only its
// own assets, be framed by nobody, and send no referrer; no response is
// sniffed into another type.
func secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

// noListing serves files but no directory listings: a path that ends in a
// slash, but for the page itself, is not found.
func noListing(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; p != "/" && strings.HasSuffix(p, "/") {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// allowHosts refuses (421) a request whose Host header names none of hosts:
// a server bound to loopback answers only to the names of loopback, so a
// web page elsewhere cannot reach it by DNS rebinding.
func allowHosts(h http.Handler, hosts ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host
		}
		host = strings.Trim(host, "[]")
		if !slices.Contains(hosts, strings.ToLower(host)) {
			http.Error(w, "unknown host "+strconv.Quote(r.Host)+": this server answers to "+strings.Join(hosts, ", "), http.StatusMisdirectedRequest)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// encoder writes JSON responses. A value that cannot be encoded (which a
// Summary, all of whose floats are collector.Float, never is) is answered
// with a 500 and logged, once per server: an empty 200 would leave a
// dashboard waiting for ever. It encodes the first page of each snapshot
// once, for /api/state and every event stream.
type encoder struct {
	log    *slog.Logger
	logged atomic.Bool

	mu    sync.Mutex
	snap  *collector.Snapshot // the snapshot state and event are of
	first []byte              // /api/state's default page
	event []byte              // the event that carries it
	err   error
}

// marshal encodes v, logging the first failure.
func (e *encoder) marshal(v any, what string) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil && !e.logged.Swap(true) {
		e.log.Error("encode "+what+" (logged once)", "err", err)
	}
	return b, err
}

// shared returns the default page of snap, as /api/state serves it and
// as an event, encoding them only for a snapshot not seen yet; concurrent
// callers wait for the one encoding.
func (e *encoder) shared(snap *collector.Snapshot) (first, event []byte, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.snap != snap {
		e.snap = snap
		var b []byte
		b, e.err = e.marshal(page(snap, 0, DefaultLimit), "the state")
		if e.err != nil {
			e.first = nil
			e.event = fmt.Appendf(nil, "id: %d\nevent: fault\ndata: %s\n\n", snap.Seq, quote("cannot encode the state: "+e.err.Error()))
		} else {
			e.first = append(b, '\n')
			e.event = fmt.Appendf(nil, "id: %d\nevent: state\ndata: %s\n\n", snap.Seq, b)
		}
	}
	return e.first, e.event, e.err
}

// State is what /api/state serves: the summary, with a page of its worker
// table, and where that page is.
type State struct {
	collector.Summary
	Page Page `json:"page"`
}

// Page says which rows of the worker table a State carries.
type Page struct {
	// Offset is the index of the first row, Limit the most rows asked for,
	// Total the rows of the whole table.
	Offset int `json:"offset"`
	Limit  int `json:"limit"`
	Total  int `json:"total"`
}

// page returns snap with the rows offset … offset+limit−1 of its table.
func page(snap *collector.Snapshot, offset, limit int) State {
	s := snap.Summary
	s.WorkerTable = snap.Page(offset, limit)
	return State{Summary: s, Page: Page{Offset: offset, Limit: limit, Total: snap.Len()}}
}

// pageOf reads ?offset= (default 0) and ?limit= (default DefaultLimit, cut
// to MaxLimit).
func pageOf(q url.Values) (offset, limit int, err error) {
	offset, limit = 0, DefaultLimit
	if v := q.Get("offset"); v != "" {
		if offset, err = strconv.Atoi(v); err != nil || offset < 0 {
			return 0, 0, fmt.Errorf("offset %q: want an integer ≥ 0", v)
		}
	}
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 {
			return 0, 0, fmt.Errorf("limit %q: want an integer ≥ 1 (at most %d rows are served)", v, MaxLimit)
		}
	}
	return offset, min(limit, MaxLimit), nil
}

// state serves /api/state: a page of the latest snapshot.
func (e *encoder) state(w http.ResponseWriter, r *http.Request, src Source) {
	offset, limit, err := pageOf(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	snap := src.Snapshot()
	var b []byte
	if offset == 0 && limit == DefaultLimit {
		b, _, err = e.shared(snap)
	} else if b, err = e.marshal(page(snap, offset, limit), r.URL.Path); err == nil {
		b = append(b, '\n')
	}
	e.reply(w, b, err)
}

func (e *encoder) write(w http.ResponseWriter, r *http.Request, v any) {
	b, err := e.marshal(v, r.URL.Path)
	e.reply(w, append(b, '\n'), err)
}

// reply writes b, a JSON document, or a 500 for err.
func (e *encoder) reply(w http.ResponseWriter, b []byte, err error) {
	w.Header().Set("Cache-Control", "no-store")
	if err != nil {
		http.Error(w, "cannot encode the state: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// events streams the state as Server-Sent Events until the client goes
// away or stops reading. Every event is the state with the first page of
// the worker table, so a browser that reconnects (EventSource does so by
// itself, after the retry delay we send) resumes with the next event, no
// reload needed. Each snapshot is sent once, when the stream sees it at its
// next EventInterval; one the stream was too slow for is skipped.
//
// A state that cannot be encoded is sent as a "fault" event, which the
// dashboard shows, and the stream goes on: closing it would only make the
// browser reconnect to the same fault every second.
func (e *encoder) events(w http.ResponseWriter, r *http.Request, src Source) {
	rc := http.NewResponseController(w)
	if c, ok := r.Context().Value(connKey{}).(interface{ SetWriteBuffer(int) error }); ok {
		_ = c.SetWriteBuffer(StreamSendBuffer) // a client that does not read fills it soon
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	send := func(b []byte) error {
		if err := rc.SetWriteDeadline(time.Now().Add(StreamWriteTimeout)); err != nil {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	if err := send([]byte("retry: 1000\n\n")); err != nil {
		return
	}
	tick := time.NewTicker(EventInterval)
	defer tick.Stop()
	var last *collector.Snapshot
	quiet := time.Now()
	for {
		var frame []byte
		if snap := src.Snapshot(); snap != last {
			_, frame, _ = e.shared(snap)
			last = snap
		} else if time.Since(quiet) >= keepAlive {
			frame = []byte(": keep-alive\n\n")
		}
		if frame != nil {
			if err := send(frame); err != nil {
				return // the client is gone, or too slow to take an event in StreamWriteTimeout
			}
			quiet = time.Now()
		}
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
	}
}

// connKey is the context key under which Serve keeps each request's
// connection, for the event stream's send buffer.
type connKey struct{}

// ConnContext keeps c in the context of its requests: set it as an
// http.Server's ConnContext so event streams can bound their send buffer
// (Serve does).
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// quote returns s as a JSON string.
func quote(s string) []byte {
	b, _ := json.Marshal(s) // a string always encodes
	return b
}

// Listen returns a listener on addr, on 127.0.0.1 when addr names no host
// (":8080"); "0.0.0.0:8080" or a host name binds what it says.
func Listen(addr string) (net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--http %q: want [host]:port: %w", addr, err)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, fmt.Errorf("--http: %w", err)
	}
	return named{l, host}, nil
}

// named is a listener that keeps the host it was asked for (Listen), which
// Serve allows as a Host.
type named struct {
	net.Listener
	host string
}

// Serve serves h on l until ctx is done, then shuts down, giving open
// requests a second. On a loopback address it answers only requests whose
// Host is localhost, 127.0.0.1, ::1, the address itself or the host Listen
// was given.
func Serve(ctx context.Context, l net.Listener, h http.Handler) error {
	if a, ok := l.Addr().(*net.TCPAddr); ok && a.IP.IsLoopback() {
		hosts := []string{"localhost", "127.0.0.1", "::1", a.IP.String()}
		if n, ok := l.(named); ok {
			hosts = append(hosts, n.host)
		}
		slices.Sort(hosts)
		h = allowHosts(h, slices.Compact(hosts)...) // each once in the 421's message
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second, // /api/events sets its own deadline per event
		IdleTimeout:       60 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ConnContext:       ConnContext,
	}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			_ = srv.Close()
		}
	})
	defer stop()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
