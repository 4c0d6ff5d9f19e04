package redisbus_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/picluster/picluster/internal/backoff"
	"github.com/picluster/picluster/internal/bustest"
	"github.com/picluster/picluster/internal/redisbus"
	"github.com/picluster/picluster/internal/redistest"
	"github.com/picluster/picluster/internal/wire"
)

func openURL(t *testing.T, url, channel string) *redisbus.Bus {
	t.Helper()
	bus, err := redisbus.Open(url, channel, redisbus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bus.Close() })
	return bus
}

// One Redis Cluster of 3 masters with a replica each: the conformance
// suite (sharded pub/sub, the job's keys on its slot), many jobs spread
// over the masters, then the failover of a job's master.
func TestCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3, 1)
	n := 0
	t.Run("Conformance", func(t *testing.T) {
		bustest.Run(t, func(t *testing.T, channel string) bustest.Bus {
			n++
			return openURL(t, c.URL(), fmt.Sprintf("%s-%d", channel, n))
		})
	})
	t.Run("JobsSpreadAcrossShards", func(t *testing.T) { testJobsSpread(t, c) })
	t.Run("ScanOnTheJobsMaster", func(t *testing.T) { testScan(t, c) })
	t.Run("WrongModeIsPermanent", func(t *testing.T) {
		for _, node := range c.Nodes { // some node does not serve the job's slot
			bus := open(t, node, "job")
			if err := bus.SetState(t.Context(), []byte("x")); err != nil {
				if !backoff.IsPermanent(err) || !strings.Contains(err.Error(), "redis+cluster://") {
					t.Fatalf("redis:// to a cluster node: %v; want a permanent error that names redis+cluster://", err)
				}
				return
			}
		}
		t.Fatal("every node took a write to the job's slot over redis://")
	})
	// The master of the job's slot is killed (SIGKILL): its replica is
	// promoted, every acknowledged append is in the ledger (appends wait
	// for the replica), and the sharded subscription and appends resume
	// on the new master.
	t.Run("Failover", func(t *testing.T) {
		paused := func() (*redistest.Server, *redistest.Server) {
			m := c.MasterOf(redisbus.KeysOf("job").Ledger + "w")
			return m, c.ReplicaOf(m)
		}
		failover(t, c.URL(), paused, func() {
			t0 := time.Now()
			c.WaitHealthy(3, 30*time.Second)
			t.Logf("replica promoted %v after the kill", time.Since(t0).Round(time.Millisecond))
		})
	})
}

// A master, a replica and 3 sentinels: the conformance suite through
// Sentinel, then the master killed and the replica promoted.
func TestSentinel(t *testing.T) {
	s := redistest.StartSentinel(t)
	n := 0
	t.Run("Conformance", func(t *testing.T) {
		bustest.Run(t, func(t *testing.T, channel string) bustest.Bus {
			n++
			return openURL(t, s.URL(), fmt.Sprintf("%s-%d", channel, n))
		})
	})
	t.Run("UnknownMasterIsPermanent", func(t *testing.T) {
		url := strings.Replace(s.URL(), "/"+redistest.SentinelMaster, "/nosuchmaster", 1)
		err := openURL(t, url, "job").Ping(t.Context())
		if !backoff.IsPermanent(err) || !strings.Contains(err.Error(), `no master named "nosuchmaster"`) {
			t.Fatalf("an unknown master: %v; want a permanent error that names it", err)
		}
	})
	t.Run("Failover", func(t *testing.T) {
		paused := func() (*redistest.Server, *redistest.Server) { return s.Master, s.Replica }
		failover(t, s.URL(), paused, func() {
			t0 := time.Now()
			s.WaitFailover(30 * time.Second)
			t.Logf("replica promoted %v after the kill", time.Since(t0).Round(time.Millisecond))
		})
	})
}

// Many jobs on one cluster spread over its masters: each job's keys and
// channels live on the master of its slot, and each job's subscriber hears
// its own entries only.
func testJobsSpread(t *testing.T, c *redistest.Cluster) {
	ctx := t.Context()
	const jobs = 24
	perMaster := map[string]int{}
	type job struct {
		bus  *redisbus.Bus
		msgs <-chan wire.Message
	}
	var js []job
	for i := range jobs {
		channel := fmt.Sprintf("job%d", i)
		bus := openURL(t, c.URL(), channel)
		msgs := bus.Subscribe(ctx)
		bustest.Subscribed(t, msgs)
		js = append(js, job{bus, msgs})
	}
	for i, j := range js {
		if err := j.bus.Append(ctx, "w", []wire.Signed{{Payload: fmt.Appendf(nil, "entry of job%d", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	for i, j := range js {
		channel := fmt.Sprintf("job%d", i)
		if got, want := string(bustest.Receive(t, j.msgs)), "entry of job"+fmt.Sprint(i); got != want {
			t.Fatalf("%s heard %q, want %q", channel, got, want)
		}
		k := redisbus.KeysOf(channel)
		m := c.MasterOf(k.Ledger + "w")
		if m != c.MasterOf(channel) {
			t.Fatalf("%s: the channel and the ledger are on different masters", channel)
		}
		// The entry is on the master of the job's slot, and nowhere else.
		for _, node := range c.Nodes {
			got, err := redistest.Cli(node, "XLEN", k.Ledger+"w")
			if node == m && (err != nil || got != "1") {
				t.Fatalf("%s: XLEN on its master %s = %q, %v; want 1", channel, node.Addr, got, err)
			}
			if node != m && got == "1" {
				t.Fatalf("%s: XLEN on %s, not its master, = 1", channel, node.Addr)
			}
		}
		perMaster[m.Addr]++
	}
	if len(perMaster) != 3 {
		t.Fatalf("%d jobs on %d masters (%v), want all 3", jobs, len(perMaster), perMaster)
	}
	t.Logf("jobs per master: %v", perMaster)
}

// testScan: the job's streams are found on the master of its slot, and
// only the job's. The job's name has a glob character, escaped in SCAN's
// pattern, where go-redis would read a hash tag of another slot.
func testScan(t *testing.T, c *redistest.Cluster) {
	var channel string
	for i := 0; channel == ""; i++ {
		if name := fmt.Sprintf("scan*%d", i); c.MasterOf("{"+name+"}") != c.MasterOf(`{`+strings.ReplaceAll(name, "*", `\*`)+`}`) {
			channel = name
		}
	}
	tag := "{" + channel + "}"
	args := []string{"MSET"}
	for i := range 2500 {
		args = append(args, fmt.Sprintf("%s:y:%d", tag, i), "v") // not streams of the ledger
	}
	if _, err := redistest.Cli(c.MasterOf(tag), args...); err != nil {
		t.Fatal(err)
	}
	bus := openURL(t, c.URL(), channel)
	for i := range 1500 { // more than one page
		if err := bus.Append(t.Context(), fmt.Sprint(i), []wire.Signed{{Payload: []byte("e")}}); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	var cursor uint64
	for {
		ws, next, err := bus.ScanLedgers(t.Context(), cursor)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range ws {
			seen[w] = true
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	if len(seen) != 1500 {
		t.Fatalf("ScanLedgers found %d workers; want 1500", len(seen))
	}
}

// appendUntil retries an append as a worker's queue does, until it is
// acknowledged.
func appendUntil(t *testing.T, bus *redisbus.Bus, e []wire.Signed, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := bus.Append(t.Context(), "w", e)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("append not acknowledged within %v: %v", within, err)
		}
		time.Sleep(100 * time.Millisecond) // a worker's backoff, shortened
	}
}

// resubscribed skips the messages before the next Subscribed marker.
func resubscribed(t *testing.T, msgs <-chan wire.Message) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case m := <-msgs:
			if m.Kind == wire.KindSubscribed {
				return
			}
		case <-timeout:
			t.Fatal("no new subscription within 30s")
		}
	}
}

// failover checks one job's bus across the failover that kill causes
// (it kills the master and waits until the replica is promoted): what was
// acknowledged before is in the ledger after, the subscription comes back
// by itself, and appends go on. One append is made while the replica is
// frozen (paused returns it, and the master): the master has it, the
// replica does not, and the master is killed before it could send it.
// Such an append is not acknowledged (it waits for the replica), so it is
// made again on the new master, as a worker's queue does: it is in the
// ledger after the failover.
func failover(t *testing.T, url string, paused func() (master, replica *redistest.Server), kill func()) {
	ctx := t.Context()
	bus := openURL(t, url, "job")
	msgs := bus.Subscribe(ctx)
	bustest.Subscribed(t, msgs)
	for i := range 50 {
		appendUntil(t, bus, []wire.Signed{{Payload: fmt.Appendf(nil, "before%d", i)}}, 10*time.Second)
	}
	master, replica := paused()
	replica.Pause()
	during := make(chan struct{})
	go func() {
		defer close(during)
		appendUntil(t, bus, []wire.Signed{{Payload: []byte("during")}}, 60*time.Second)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for { // the master has it
		got, _ := redistest.Cli(master, "XLEN", redisbus.KeysOf("job").Ledger+"w")
		if got == "51" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the append did not reach the master: XLEN %s", got)
		}
		time.Sleep(5 * time.Millisecond) // polling a server
	}
	select { // it is not acknowledged: it waits for the replica
	case <-during:
		t.Fatal("an append the replica cannot have was acknowledged")
	case <-time.After(300 * time.Millisecond): // well under the failure detection's 1 s
	}
	master.Stop()
	replica.Resume()
	t0 := time.Now()
	kill()
	resubscribed(t, msgs)
	t.Logf("subscribed again %v after the failover", time.Since(t0).Round(time.Millisecond))
	<-during
	appendUntil(t, bus, []wire.Signed{{Payload: []byte("after")}}, 30*time.Second)
	// "during" may have been appended again before the subscription was
	// back: pub/sub is at most once, the ledger is the record.
	for got := ""; got != "after"; {
		if got = string(bustest.Receive(t, msgs)); got != "during" && got != "after" {
			t.Fatalf("after the failover the subscriber heard %q, want during and after", got)
		}
	}
	all := bustest.Entries(t, bus)
	// "during" is there once, or twice when the replica had it after all
	// (the master had written it to the socket before it died): the
	// collector credits a worker's seq once.
	var got []string
	for _, e := range all[min(50, len(all)):] {
		got = append(got, string(e.Payload))
	}
	if g := strings.Join(got, " "); len(all) < 52 || g != "during after" && g != "during during after" {
		t.Fatalf("the ledger holds %d entries after the failover, ending %q; want the 50 acknowledged before, then during (once or twice) and after", len(all), got)
	}
	t.Logf("after the 50 entries acknowledged before the failover: %q", got)
	for i, e := range all[:50] {
		if want := fmt.Sprintf("before%d", i); string(e.Payload) != want {
			t.Fatalf("entry %d = %q, want %q", i, e.Payload, want)
		}
	}
}
