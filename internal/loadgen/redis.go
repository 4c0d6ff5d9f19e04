package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// startRedis starts the redis-server on PATH on a free loopback port, in a
// temporary directory, persisting nothing, and waits until it accepts
// connections. It returns the server and its URL; stop it with child.stop
// and remove dir.
func startRedis(ctx context.Context, dir string) (*child, string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, "", errors.New("--start-redis: no redis-server on PATH (apt-get install redis-server), or give --redis URL")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	argv := []string{bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--protected-mode", "yes", "--maxclients", "10000"}
	c, err := startChild("redis-server", argv, nil, nil)
	if err != nil {
		return nil, "", err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ready(addr) {
			return c, "redis://" + addr, nil
		}
		select {
		case <-c.done:
			return nil, "", c.exited()
		case <-ctx.Done():
			_, _, _ = c.stop(time.Second)
			return nil, "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_, _, _ = c.stop(time.Second)
			return nil, "", fmt.Errorf("redis-server on %s: not ready within 10s", addr)
		}
	}
}

// ready reports whether a Redis at addr answers PING.
func ready(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 16)
	n, _ := conn.Read(buf)
	return strings.HasPrefix(string(buf[:n]), "+PONG")
}

// tempDir makes the directory of a run's files: the job key, Redis's.
func tempDir() (string, error) { return os.MkdirTemp("", "picluster-loadgen-") }
