package redistest

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// SentinelMaster is the name the sentinels of StartSentinel monitor.
const SentinelMaster = "picluster"

// SentinelDownAfter is how long the sentinels of StartSentinel wait for a
// silent master before they call it down; the failover follows within a
// few seconds.
const SentinelDownAfter = 1000 * time.Millisecond

// Sentinel is a master, a replica and three sentinels that monitor them.
type Sentinel struct {
	Master, Replica *Server
	Sentinels       []*Server
	tb              testing.TB
}

// StartSentinel starts a master, a replica of it and three sentinels with a
// quorum of 2, and waits until the replica is in sync and every sentinel
// knows the replica and the other two sentinels. It stops them at cleanup.
func StartSentinel(tb testing.TB) *Sentinel {
	tb.Helper()
	need(tb, "redis-cli", "redis-tools")
	s := &Sentinel{tb: tb}
	s.Master = StartWith(tb, Options{})
	host, port := split(s.Master.Addr)
	s.Replica = StartWith(tb, Options{Args: []string{"--replicaof", host, port}})
	conf := fmt.Sprintf("sentinel monitor %s %s %s 2\nsentinel down-after-milliseconds %[1]s %[4]d\nsentinel failover-timeout %[1]s 10000\nsentinel parallel-syncs %[1]s 1\n",
		SentinelMaster, host, port, SentinelDownAfter/time.Millisecond)
	for range 3 {
		s.Sentinels = append(s.Sentinels, StartWith(tb, Options{Sentinel: conf}))
	}
	s.wait(30*time.Second, func() error {
		repl, err := Cli(s.Replica, "INFO", "replication")
		if err != nil || !strings.Contains(repl, "master_link_status:up") {
			return fmt.Errorf("the replica is not in sync: %v", err)
		}
		for _, sn := range s.Sentinels {
			m, err := s.masterInfo(sn)
			if err != nil {
				return err
			}
			if m["num-other-sentinels"] != "2" || m["num-slaves"] != "1" {
				return fmt.Errorf("sentinel %s knows %s other sentinels and %s replicas", sn.Addr, m["num-other-sentinels"], m["num-slaves"])
			}
		}
		return nil
	})
	return s
}

// URL returns the picluster URL of the sentinels and the master's name.
func (s *Sentinel) URL() string {
	addrs := make([]string, len(s.Sentinels))
	for i, sn := range s.Sentinels {
		addrs[i] = sn.Addr
	}
	return "redis+sentinel://" + strings.Join(addrs, ",") + "/" + SentinelMaster
}

// WaitFailover waits until every sentinel names the replica as the master.
func (s *Sentinel) WaitFailover(within time.Duration) {
	s.tb.Helper()
	s.wait(within, func() error {
		for _, sn := range s.Sentinels {
			out, err := Cli(sn, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMaster)
			if err != nil {
				return err
			}
			if got := strings.Join(strings.Fields(out), ":"); got != s.Replica.Addr {
				return fmt.Errorf("sentinel %s names %s the master", sn.Addr, got)
			}
		}
		role, err := Cli(s.Replica, "ROLE")
		if err != nil || !strings.HasPrefix(role, "master") {
			return fmt.Errorf("the replica's role: %q %v", role, err)
		}
		return nil
	})
}

func (s *Sentinel) masterInfo(sn *Server) (map[string]string, error) {
	out, err := Cli(sn, "SENTINEL", "MASTER", SentinelMaster)
	if err != nil {
		return nil, err
	}
	f := strings.Split(out, "\n")
	m := map[string]string{}
	for i := 0; i+1 < len(f); i += 2 {
		m[strings.TrimSpace(f[i])] = strings.TrimSpace(f[i+1])
	}
	return m, nil
}

func (s *Sentinel) wait(within time.Duration, cond func() error) {
	s.tb.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("not within %v: %v", within, err)
		}
		time.Sleep(50 * time.Millisecond) // polling servers we started; no event to wait on
	}
}

func split(addr string) (host, port string) {
	i := strings.LastIndex(addr, ":")
	return addr[:i], addr[i+1:]
}
