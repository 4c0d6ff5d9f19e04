//go:build linux

package main

import (
	"bufio"
	"math/rand/v2"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/picluster/picluster/collector"
)

// lossRate is the probability with which a machine drops each packet it
// sends, and each it receives, in TestMultiHostLatencyLoss.
const lossRate = "0.05"

// lossOn makes host name drop each packet it sends or receives with
// probability lossRate (iptables' statistic match, in its namespace). A
// rule without a target ahead of each counts the packets that reach it.
func (s *netSuite) lossOn(name string) {
	s.t.Helper()
	ipt := []string{"ip", "netns", "exec", s.hosts[name].ns, "iptables", "-w"}
	for _, chain := range []string{"INPUT", "OUTPUT"} {
		s.sh(append(ipt, "-A", chain)...)
		s.sh(append(ipt, "-A", chain, "-m", "statistic", "--mode", "random", "--probability", lossRate, "-j", "DROP")...)
	}
}

// lossOff removes host name's rules and returns how many packets they saw
// and how many they dropped.
func (s *netSuite) lossOff(name string) (seen, dropped int) {
	s.t.Helper()
	ipt := []string{"ip", "netns", "exec", s.hosts[name].ns, "iptables", "-w"}
	for _, chain := range []string{"INPUT", "OUTPUT"} {
		out, err := exec.Command(ipt[0], append(ipt[1:], "-L", chain, "-v", "-x", "-n")...).CombinedOutput()
		if err != nil {
			s.t.Fatalf("iptables -L %s in %s: %v\n%s", chain, name, err, out)
		}
		// "Chain …", the column heads, the counting rule, the DROP rule.
		var pkts []int
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for i := 0; sc.Scan(); i++ {
			if f := strings.Fields(sc.Text()); i >= 2 && len(f) > 0 {
				n, err := strconv.Atoi(f[0])
				if err != nil {
					s.t.Fatalf("iptables -L %s in %s: %q\n%s", chain, name, sc.Text(), out)
				}
				pkts = append(pkts, n)
			}
		}
		if len(pkts) != 2 {
			s.t.Fatalf("iptables -L %s in %s: want 2 rules\n%s", chain, name, out)
		}
		seen, dropped = seen+pkts[0], dropped+pkts[1]
		s.sh(append(ipt, "-F", chain)...)
	}
	return seen, dropped
}

// pingRTT returns how long a PING to the Redis at addr takes to answer.
func pingRTT(t *testing.T, addr string) time.Duration {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "+PONG\r\n" {
		t.Fatalf("PING through %s: %q, %v", addr, line, err)
	}
	return time.Since(start)
}

// Latency with loss on every link, for 60 s of a running job: the
// collector and every worker reach Redis through a proxy in user space
// (this kernel has no sch_netem) that holds each chunk 150–250 ms, each
// way, and each of their machines drops 5 % of the packets it sends and of
// those it receives (iptables). The job goes on meanwhile; once the faults
// stop, reports flow again, and N and hits are exactly the ledger's sums.
func TestMultiHostLatencyLoss(t *testing.T) {
	const (
		lo, hi   = 150 * time.Millisecond, 250 * time.Millisecond
		duration = 60 * time.Second
	)
	bin := binary(t)
	s := newNetSuite(t, "redis", "collector", "w1", "w2", "w3")
	rip := s.hosts["redis"].ip
	s.run("redis", "redis-server", "--bind", rip, "--port", "6379", "--dir", s.dir, "--save", "",
		"--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "no")
	until(t, "redis answers", 10*time.Second, func() bool {
		return exec.Command("redis-cli", "-h", rip, "PING").Run() == nil
	})
	seed := rand.Uint64()
	t.Logf("latency seed %d", seed)
	proxy := newLatencyProxy(t, "10.77.0.1:0", rip+":6379", seed) // the bridge's address, on the host
	url := "redis://" + proxy.addr()

	reader := &ledgerReader{seen: map[string]bool{}, last: map[string]uint64{}, pos: map[string]string{}}
	stopReader, readerDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(readerDone); reader.read(t, "redis://"+rip+":6379", stopReader) }() // no proxy, no loss
	defer func() { close(stopReader); <-readerDone }()

	cip := s.hosts["collector"].ip
	api := "http://" + cip + ":8080"
	col := s.run("collector", bin, "collector", "--redis", url, "--json", "--http", cip+":8080")
	until(t, "the collector serves", 20*time.Second, func() bool { _, err := state(api); return err == nil })
	ids := []string{"w1", "w2", "w3"}
	workers := map[string]*proc{}
	for _, id := range ids {
		workers[id] = s.run(id, bin, "worker", "--redis", url, "--id", id, "--threads", "1", "--batch", "20000000")
	}
	until(t, "every worker reports", 30*time.Second, func() bool {
		st, err := state(api)
		return err == nil && seqOf(st, "w1") > 0 && seqOf(st, "w2") > 0 && seqOf(st, "w3") > 0
	})

	var before collector.Summary
	until(t, "the collector's state", 10*time.Second, func() bool { var err error; before, err = state(api); return err == nil })
	seq0 := map[string]uint64{} // each worker's last seq in the ledger
	for _, id := range ids {
		seq0[id] = reader.lastSeq(id)
	}
	lossy := []string{"collector", "w1", "w2", "w3"}
	for _, name := range lossy {
		s.lossOn(name)
	}
	proxy.setDelay(lo, hi)
	start := time.Now()
	if rtt := pingRTT(t, proxy.addr()); rtt < 2*lo {
		t.Errorf("a PING through the proxy took %v, under twice its least delay: the latency is not on", rtt)
	} else {
		t.Logf("a PING through the proxy takes %v", rtt.Round(time.Millisecond))
	}
	time.Sleep(duration - time.Since(start))
	var during collector.Summary
	until(t, "the collector's state under the faults", 30*time.Second, func() bool { var err error; during, err = state(api); return err == nil })
	appended := map[string]uint64{}
	for _, id := range ids {
		appended[id] = reader.lastSeq(id) - seq0[id]
		if appended[id] == 0 {
			t.Errorf("%s appended nothing in %v of latency and loss", id, duration)
		}
	}
	if during.Batches <= before.Batches {
		t.Errorf("the collector credited nothing in %v of latency and loss (%d batches)", duration, during.Batches)
	}

	// The faults stop.
	proxy.setDelay(0, 0)
	for _, name := range lossy {
		seen, dropped := s.lossOff(name)
		if dropped == 0 {
			t.Errorf("%s dropped none of its %d packets", name, seen)
		}
		t.Logf("%-9s dropped %d of %d packets (%.1f %%)", name, dropped, seen, 100*float64(dropped)/float64(max(seen, 1)))
	}
	t.Logf("under the faults, for %v: appended w1 %d, w2 %d, w3 %d entries; the collector credited %d",
		time.Since(start).Round(time.Second), appended["w1"], appended["w2"], appended["w3"], during.Batches-before.Batches)
	for _, id := range ids {
		seq0[id] = reader.lastSeq(id)
	}
	took := until(t, "reports after the latency and loss", time.Minute, func() bool { // an entry of each worker appended from now on is credited
		st, err := state(api)
		return err == nil && seqOf(st, "w1") > seq0["w1"] && seqOf(st, "w2") > seq0["w2"] && seqOf(st, "w3") > seq0["w3"]
	})
	r := recovery{"200 ms ± 50 ms latency, 5 % loss on every link, 60 s", took, loadAvg()}

	settle(t, workers, col, api, reader)
	logRecovery(t, r)
}
