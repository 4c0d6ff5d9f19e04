// Package redistest starts real redis-server processes for tests.
//
// Start runs one on a free loopback port in a temporary directory and stops
// it when the test ends. When redis-server is not on PATH the test is
// skipped with a message, unless the CI environment variable is set: then it
// fails, because CI must run the Redis suite, not skip it.
package redistest

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Server is a running redis-server.
type Server struct {
	Addr string // host:port on 127.0.0.1
	Dir  string // its working directory: AOF files, an aclfile, certificates
	tb   testing.TB
	port int
	cmd  *exec.Cmd
	opt  Options
	bus  int // the cluster bus port of a cluster node
}

// Options change how the server runs.
type Options struct {
	// Args are more redis-server arguments, e.g. "--aclfile", path.
	Args []string
	// AppendOnly turns on the AOF with fsync at every write: a restart loses
	// nothing that was acknowledged.
	AppendOnly bool
	// TLS serves TLS only, with this configuration's certificate files
	// (TLSFiles); the readiness check dials with Client.
	TLS *TLS
	// Cluster runs the server as a Redis Cluster node (cluster-enabled, a
	// node timeout of ClusterNodeTimeout, its bus on a free port of its own).
	Cluster bool
	// Sentinel runs a Redis Sentinel (redis-server --sentinel) with this
	// configuration, written once to sentinel.conf in the server's
	// directory, which Sentinel rewrites as it learns.
	Sentinel string
}

// TLS is a server's TLS setup: PEM files, and the client configuration the
// readiness check uses.
type TLS struct {
	CA, Cert, Key string
	Client        *tls.Config
}

// URL returns the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr }

// Start starts a redis-server for tb and stops it at cleanup.
func Start(tb testing.TB) *Server { tb.Helper(); return StartWith(tb, Options{}) }

// StartWith starts a redis-server with opt for tb and stops it at cleanup.
func StartWith(tb testing.TB, opt Options) *Server {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatal("redis-server is not installed, and CI is set: the Redis tests must run (apt-get install redis-server)")
		}
		tb.Skip("redis-server is not installed: skipping the Redis tests (apt-get install redis-server)")
	}
	s := &Server{tb: tb, Dir: tb.TempDir(), port: freePort(tb), opt: opt}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	if opt.Cluster {
		s.bus = freePort(tb)
	}
	if opt.Sentinel != "" {
		if err := os.WriteFile(filepath.Join(s.Dir, "sentinel.conf"), []byte(opt.Sentinel), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	s.Restart()
	tb.Cleanup(s.Stop)
	return s
}

func freePort(tb testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Stop kills the server at once, as a crash would (SIGKILL). Data not
// persisted is lost; without AppendOnly the server persists nothing.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill() // SIGKILL ends a paused server too
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Pause freezes the server (SIGSTOP): connections stay open and accept
// writes, but nothing answers, as with a half-open connection or a hung host.
func (s *Server) Pause() {
	s.tb.Helper()
	if err := signal(s.cmd.Process, true); errors.Is(err, errors.ErrUnsupported) {
		s.tb.Skip("no SIGSTOP on this platform")
	} else if err != nil {
		s.tb.Fatalf("pause redis-server: %v", err)
	}
}

// Resume wakes a paused server (SIGCONT).
func (s *Server) Resume() {
	s.tb.Helper()
	if err := signal(s.cmd.Process, false); err != nil {
		s.tb.Fatalf("resume redis-server: %v", err)
	}
}

// Restart starts the server again on the same port and waits until it
// answers: empty, or with what the AOF kept.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	aof := "no"
	if s.opt.AppendOnly {
		aof = "yes"
	}
	args := []string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--dir", s.Dir, "--save", "", "--appendonly", aof, "--appendfsync", "always", "--protected-mode", "yes"}
	if t := s.opt.TLS; t != nil {
		args = append(args, "--port", "0", "--tls-port", strconv.Itoa(s.port), "--tls-cert-file", t.Cert,
			"--tls-key-file", t.Key, "--tls-ca-cert-file", t.CA, "--tls-auth-clients", "yes")
	}
	if s.opt.Cluster {
		args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.Itoa(int(ClusterNodeTimeout/time.Millisecond)),
			"--cluster-port", strconv.Itoa(s.bus))
	}
	if s.opt.Sentinel != "" {
		args = append([]string{filepath.Join(s.Dir, "sentinel.conf"), "--sentinel"}, args...)
	}
	cmd := exec.Command("redis-server", append(args, s.opt.Args...)...)
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		s.tb.Fatalf("start redis-server: %v", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := s.ping()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("redis-server on %s did not answer within 10s: %v", s.Addr, err)
		}
		time.Sleep(20 * time.Millisecond) // polling a process we started; no event to wait on
	}
}

// ping sends PING over a raw connection, so the helper does not depend on
// the client under test. A server that wants a password answers NOAUTH,
// which is an answer too.
func (s *Server) ping() error {
	var c net.Conn
	var err error
	if s.opt.TLS != nil {
		c, err = tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", s.Addr, s.opt.TLS.Client)
	} else {
		c, err = net.DialTimeout("tcp", s.Addr, time.Second)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") && !strings.HasPrefix(line, "-NOAUTH") {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}
