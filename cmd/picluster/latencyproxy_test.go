package main

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// latencyProxy relays TCP connections from its listener to one upstream
// address and holds each chunk it reads for a random delay in [lo, hi]
// before writing it on: latency on a link, in user space, for kernels
// without sch_netem. Each direction writes its chunks in the order read, so
// a chunk may wait longer than its draw when the one ahead drew more. With lo = hi = 0 it is a plain
// relay. The delays are drawn from a PCG seeded with seed.
type latencyProxy struct {
	ln       net.Listener
	upstream string
	wg       sync.WaitGroup // the accept loop and every relay goroutine

	mu     sync.Mutex
	lo, hi time.Duration
	rng    *rand.Rand
	conns  map[net.Conn]struct{}
	closed bool
}

// newLatencyProxy listens on addr (port 0: any) and relays to upstream
// until the test ends.
func newLatencyProxy(t testing.TB, addr, upstream string, seed uint64) *latencyProxy {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	p := &latencyProxy{ln: ln, upstream: upstream, rng: rand.New(rand.NewPCG(seed, 0)), conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

// addr is where clients connect.
func (p *latencyProxy) addr() string { return p.ln.Addr().String() }

// setDelay sets the range of the delay of every chunk read from now on.
func (p *latencyProxy) setDelay(lo, hi time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lo, p.hi = lo, hi
}

func (p *latencyProxy) delay() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hi <= p.lo {
		return p.lo
	}
	return p.lo + time.Duration(p.rng.Int64N(int64(p.hi-p.lo)+1))
}

// track records c to be closed by close; false when the proxy is closed.
func (p *latencyProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *latencyProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
	}
}

// close stops accepting, ends every relayed connection and waits for the
// goroutines.
func (p *latencyProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *latencyProxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.wg.Go(func() { p.relay(client) })
	}
}

// relay connects client to the upstream and pumps both directions until
// both have ended, or either side fails.
func (p *latencyProxy) relay(client net.Conn) {
	if !p.track(client) {
		client.Close()
		return
	}
	up, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
	if err != nil || !p.track(up) {
		if up != nil {
			up.Close()
		}
		client.Close()
		p.untrack(client)
		return
	}
	stop := make(chan struct{})
	var once sync.Once
	abort := func() { once.Do(func() { close(stop); client.Close(); up.Close() }) }
	var pair sync.WaitGroup
	pair.Go(func() { p.pump(up, client, stop, abort) })
	pair.Go(func() { p.pump(client, up, stop, abort) })
	pair.Wait()
	abort()
	p.untrack(client, up)
}

// chunk is what one read returned and when it may be written; nil data
// means the source ended.
type chunk struct {
	data []byte
	at   time.Time
}

// pump copies src to dst, each chunk after its delay, in order. When src
// ends it half-closes dst; when writing fails it aborts the pair.
func (p *latencyProxy) pump(dst, src net.Conn, stop <-chan struct{}, abort func()) {
	q := make(chan chunk, 1024)
	var reader sync.WaitGroup
	defer reader.Wait()
	reader.Go(func() {
		defer close(q)
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				select {
				case q <- chunk{bytes.Clone(buf[:n]), time.Now().Add(p.delay())}:
				case <-stop:
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
	for c := range q {
		if wait := time.Until(c.at); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-stop:
				t.Stop()
				return
			}
		}
		if _, err := dst.Write(c.data); err != nil {
			abort()
			return
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite() // the other direction may go on
		return
	}
	abort()
}

// The proxy delivers every byte, in order, each way after at least the
// least delay: an echo's round trip takes at least twice that.
func TestLatencyProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var echo sync.WaitGroup
	t.Cleanup(func() { ln.Close(); echo.Wait() })
	echo.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			echo.Go(func() { defer c.Close(); _, _ = io.Copy(c, c) })
		}
	})
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	const lo, hi = 20 * time.Millisecond, 60 * time.Millisecond
	p := newLatencyProxy(t, "127.0.0.1:0", ln.Addr().String(), seed)
	p.setDelay(lo, hi)
	c, err := net.Dial("tcp", p.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var sent bytes.Buffer
	start := time.Now()
	for i := range 200 { // many chunks, each drawing its own delay
		fmt.Fprintf(&sent, "chunk %d;", i)
		if _, err := fmt.Fprintf(c, "chunk %d;", i); err != nil {
			t.Fatal(err)
		}
	}
	got := make([]byte, sent.Len())
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if rtt := time.Since(start); rtt < 2*lo {
		t.Errorf("the echo came back after %v, under twice the least delay %v", rtt, lo)
	}
	if !bytes.Equal(got, sent.Bytes()) {
		t.Fatalf("echoed %q, sent %q", got, sent.Bytes())
	}
	c.(*net.TCPConn).CloseWrite()
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after a half-close: read %d bytes, %v; want EOF", n, err)
	}
}
