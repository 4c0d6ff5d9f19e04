// Package web serves the collector over HTTP: a dashboard page embedded in
// the binary (working offline, with a vendored uPlot), the live state as
// JSON and as Server-Sent Events, Prometheus metrics from a registry of its
// own, and a health check. WorkerHandler serves a worker's /metrics and
// /healthz. Every registry also has the Go runtime and process collectors
// and picluster_build_info. It only reads: every endpoint is GET or HEAD.
//
// Each event stream reads the collector on its own ticker and writes with a
// deadline, so a slow or stalled client costs only its own connection and
// never slows the collector; at most MaxStreams are open at once. Every
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
	"slices"
	"strconv"
	"strings"
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
	Summary() collector.Summary
	History() []collector.Point
}

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
	mux.HandleFunc("GET /api/state", func(w http.ResponseWriter, r *http.Request) { enc.write(w, r, src.Summary()) })
	mux.HandleFunc("GET /api/history", func(w http.ResponseWriter, r *http.Request) { enc.write(w, r, src.History()) })
	var streams atomic.Int64
	mux.HandleFunc("GET /api/events", func(w http.ResponseWriter, r *http.Request) {
		if streams.Add(1) > MaxStreams {
			streams.Add(-1)
			http.Error(w, "too many event streams; try again later", http.StatusServiceUnavailable)
			return
		}
		defer streams.Add(-1)
		events(w, r, src, enc)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return secure(mux)
}

// MaxStreams bounds the open /api/events streams; past it a new one gets a
// 503. A client that does not read is dropped when an event cannot be
// written within 5 s.
const MaxStreams = 64

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
// dashboard waiting for ever.
type encoder struct {
	log    *slog.Logger
	logged atomic.Bool
}

// marshal encodes v, logging the first failure.
func (e *encoder) marshal(v any, what string) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil && !e.logged.Swap(true) {
		e.log.Error("encode "+what+" (logged once)", "err", err)
	}
	return b, err
}

func (e *encoder) write(w http.ResponseWriter, r *http.Request, v any) {
	w.Header().Set("Cache-Control", "no-store")
	b, err := e.marshal(v, r.URL.Path)
	if err != nil {
		http.Error(w, "cannot encode the state: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(b, '\n'))
}

// events streams the state as Server-Sent Events until the client goes away.
// Every event is the whole state, so a browser that reconnects (EventSource
// does so by itself, after the retry delay we send) resumes with the next
// event, no reload needed.
//
// A state that cannot be encoded is sent as a "fault" event, which the
// dashboard shows, and the stream goes on: closing it would only make the
// browser reconnect to the same fault every second.
func events(w http.ResponseWriter, r *http.Request, src Source, enc *encoder) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	send := func(b []byte) error {
		if err := rc.SetWriteDeadline(time.Now().Add(5 * time.Second)); err != nil {
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
	var id uint64
	for {
		id++
		ev := "state"
		b, err := enc.marshal(src.Summary(), "/api/events")
		if err != nil {
			ev, b = "fault", quote("cannot encode the state: "+err.Error())
		}
		if err := send(fmt.Appendf(nil, "id: %d\nevent: %s\ndata: %s\n\n", id, ev, b)); err != nil {
			return // the client is gone, or too slow to take an event in 5 s
		}
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
	}
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
	return l, nil
}

// Serve serves h on l until ctx is done, then shuts down, giving open
// requests a second. On a loopback address it answers only requests whose
// Host is localhost, 127.0.0.1, ::1 or the address itself.
func Serve(ctx context.Context, l net.Listener, h http.Handler) error {
	if a, ok := l.Addr().(*net.TCPAddr); ok && a.IP.IsLoopback() {
		h = allowHosts(h, "localhost", "127.0.0.1", "::1", a.IP.String())
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second, // /api/events sets its own deadline per event
		IdleTimeout:       60 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
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
