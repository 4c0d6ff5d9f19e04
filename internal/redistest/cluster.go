package redistest

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ClusterNodeTimeout is the cluster-node-timeout of the nodes StartCluster
// starts: a master that stops answering is failed over a second or two
// later.
const ClusterNodeTimeout = 1000 * time.Millisecond

// Cluster is a running Redis Cluster: Masters masters with Replicas
// replicas each, on loopback.
type Cluster struct {
	Nodes []*Server
	tb    testing.TB
}

// StartCluster starts masters·(1+replicas) cluster nodes, joins them with
// redis-cli --cluster create, and waits until every node sees every slot
// served and every replica in sync. It stops them at cleanup. Without
// redis-server or redis-cli it skips (fails when CI is set).
func StartCluster(tb testing.TB, masters, replicas int) *Cluster {
	tb.Helper()
	need(tb, "redis-cli", "redis-tools")
	c := &Cluster{tb: tb}
	args := []string{"--cluster", "create"}
	for range masters * (1 + replicas) {
		s := StartWith(tb, Options{Cluster: true})
		c.Nodes = append(c.Nodes, s)
		args = append(args, s.Addr)
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy(masters, 30*time.Second)
	return c
}

// URL returns the picluster URL of the cluster, every node named.
func (c *Cluster) URL() string {
	addrs := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		addrs[i] = s.Addr
	}
	return "redis+cluster://" + strings.Join(addrs, ",")
}

// node is a line of CLUSTER NODES.
type node struct {
	addr, id, master string
	isMaster, failed bool
	slots            [][2]int
}

// nodes returns the view of the cluster that the live node s has.
func (c *Cluster) nodes(s *Server) ([]node, error) {
	out, err := Cli(s, "CLUSTER", "NODES")
	if err != nil {
		return nil, err
	}
	var ns []node
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			return nil, fmt.Errorf("CLUSTER NODES line %q", line)
		}
		addr, _, _ := strings.Cut(f[1], "@")
		n := node{addr: addr, id: f[0], master: f[3], isMaster: strings.Contains(f[2], "master"),
			failed: strings.Contains(f[2], "fail") || f[7] != "connected"}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				continue // a slot being migrated
			}
			lo, hi, ok := strings.Cut(r, "-")
			if !ok {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("CLUSTER NODES slots %q", r)
			}
			n.slots = append(n.slots, [2]int{a, b})
		}
		ns = append(ns, n)
	}
	return ns, nil
}

// live returns the nodes that run.
func (c *Cluster) live() []*Server {
	var out []*Server
	for _, s := range c.Nodes {
		if s.cmd != nil {
			out = append(out, s)
		}
	}
	return out
}

func (c *Cluster) byAddr(addr string) *Server {
	for _, s := range c.Nodes {
		if s.Addr == addr {
			return s
		}
	}
	return nil
}

// MasterOf returns the node that serves key's slot, as the live nodes see it.
func (c *Cluster) MasterOf(key string) *Server {
	c.tb.Helper()
	live := c.live()
	out, err := Cli(live[0], "CLUSTER", "KEYSLOT", key)
	if err != nil {
		c.tb.Fatal(err)
	}
	slot, err := strconv.Atoi(out)
	if err != nil {
		c.tb.Fatalf("CLUSTER KEYSLOT %s: %q", key, out)
	}
	ns, err := c.nodes(live[0])
	if err != nil {
		c.tb.Fatal(err)
	}
	for _, n := range ns {
		for _, r := range n.slots {
			if n.isMaster && r[0] <= slot && slot <= r[1] {
				return c.byAddr(n.addr)
			}
		}
	}
	c.tb.Fatalf("no master serves slot %d of %s", slot, key)
	return nil
}

// WaitHealthy waits until every live node reports cluster_state:ok, sees
// masters masters not failed that serve all 16384 slots between them, and
// every replica's link to its master is up.
func (c *Cluster) WaitHealthy(masters int, within time.Duration) {
	c.tb.Helper()
	deadline := time.Now().Add(within)
	for {
		err := c.healthy(masters)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("the cluster is not healthy within %v: %v", within, err)
		}
		time.Sleep(50 * time.Millisecond) // polling servers we started; no event to wait on
	}
}

func (c *Cluster) healthy(masters int) error {
	for _, s := range c.live() {
		info, err := Cli(s, "CLUSTER", "INFO")
		if err != nil {
			return err
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("%s: cluster_state is not ok", s.Addr)
		}
		ns, err := c.nodes(s)
		if err != nil {
			return err
		}
		served, ms := 0, 0
		for _, n := range ns {
			if n.isMaster && !n.failed && len(n.slots) > 0 {
				ms++
				for _, r := range n.slots {
					served += r[1] - r[0] + 1
				}
			}
		}
		if ms != masters || served != 16384 {
			return fmt.Errorf("%s sees %d masters serving %d slots", s.Addr, ms, served)
		}
		repl, err := Cli(s, "INFO", "replication")
		if err != nil {
			return err
		}
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
			return fmt.Errorf("%s: replica not in sync", s.Addr)
		}
	}
	return nil
}

// Cli runs redis-cli against s and returns its output, trimmed; a Redis
// error reply is an error.
func Cli(s *Server, args ...string) (string, error) {
	port := s.Addr[strings.LastIndex(s.Addr, ":")+1:]
	out, err := exec.Command("redis-cli", append([]string{"-p", port}, args...)...).CombinedOutput()
	o := strings.TrimSpace(string(out))
	if err == nil && strings.HasPrefix(o, "ERR") {
		err = fmt.Errorf("redis-cli %v: %s", args, o)
	}
	if err != nil {
		return o, fmt.Errorf("redis-cli -p %s %v: %w: %s", port, args, err, o)
	}
	return o, nil
}

// need skips tb, or fails it when CI is set, without the program name of
// the Debian package pkg.
func need(tb testing.TB, name, pkg string) {
	tb.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("%s is not installed, and CI is set: the Redis tests must run (apt-get install %s)", name, pkg)
		}
		tb.Skipf("%s is not installed: skipping (apt-get install %s)", name, pkg)
	}
}

// ReplicaOf returns a replica of the master m.
func (c *Cluster) ReplicaOf(m *Server) *Server {
	c.tb.Helper()
	ns, err := c.nodes(m)
	if err != nil {
		c.tb.Fatal(err)
	}
	var id string
	for _, n := range ns {
		if n.addr == m.Addr {
			id = n.id
		}
	}
	for _, n := range ns {
		if !n.isMaster && n.master == id {
			return c.byAddr(n.addr)
		}
	}
	c.tb.Fatalf("%s has no replica", m.Addr)
	return nil
}
