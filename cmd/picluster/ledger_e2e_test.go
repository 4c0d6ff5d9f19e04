package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/picluster/picluster/internal/redisbus"
	"github.com/picluster/picluster/internal/redistest"
	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

const (
	collectorPass = "collector-secret-1"
	workerPass    = "worker-secret-2"
	node7Pass     = "node7-secret-3"
	malloryPass   = "mallory-secret-4"
)

// ownUsers are the workers with a Redis user of their own on aclServer.
var ownUsers = map[string]string{"node7": node7Pass, "mallory": malloryPass, "a": "a-secret-5", "b": "b-secret-6"}

// aclServer starts a redis-server whose users are those of picluster acl.
func aclServer(t *testing.T, opt redistest.Options) *redistest.Server {
	t.Helper()
	acl := filepath.Join(t.TempDir(), "users.acl")
	if err := os.WriteFile(acl, []byte(ACLRules("pi_collector", collectorPass, workerPass, ownUsers)), 0o600); err != nil {
		t.Fatal(err)
	}
	opt.Args = append(opt.Args, "--aclfile", acl)
	return redistest.StartWith(t, opt)
}

// cli runs redis-cli against srv as user (none: no AUTH) and returns what it
// printed, errors included.
func cli(t *testing.T, srv *redistest.Server, user, pass string, args ...string) string {
	t.Helper()
	port := srv.Addr[strings.LastIndex(srv.Addr, ":")+1:]
	base := []string{"-p", port, "--no-auth-warning"}
	if user != "" {
		base = append(base, "--user", user, "--pass", pass)
	}
	out, _ := exec.Command("redis-cli", append(base, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out))
}

func userURL(srv *redistest.Server, user, pass string) string {
	return fmt.Sprintf("redis://%s:%s@%s", user, pass, srv.Addr)
}

// TestACLRules: the users of picluster acl, on a real redis-server. Workers
// append, publish and read; they cannot write the state, the checkpoint or
// the quarantine, delete or trim anything, nor touch another job; the
// collector cannot run admin commands; nobody gets in without a password.
func TestACLRules(t *testing.T) {
	srv := aclServer(t, redistest.Options{})
	if got := cli(t, srv, "", "", "PING"); !strings.Contains(got, "NOAUTH") {
		t.Errorf("PING without a user: %q, want NOAUTH", got)
	}
	w := func(args ...string) string { return cli(t, srv, "picluster-worker", workerPass, args...) }
	c := func(args ...string) string { return cli(t, srv, "picluster-collector", collectorPass, args...) }
	for _, ok := range [][]string{
		{"XADD", "{pi_collector}:ledger:w1", "*", "e", "x"},
		{"PUBLISH", "pi_collector", "x"},
		{"PUBLISH", "{pi_collector}:presence", "x"},
		{"GET", "{pi_collector}:state"},
		{"HGET", "{pi_collector}:checkpoint", "w:a"},
		{"XREAD", "COUNT", "1", "STREAMS", "{pi_collector}:ledger:w1", "0"},
		{"SET", "{pi_collector}:lease:w1", "token", "NX", "PX", "10000"},
		{"GET", "{pi_collector}:lease:w1"},
		{"PTTL", "{pi_collector}:lease:w1"},
		{"PEXPIRE", "{pi_collector}:lease:w1", "10000"},
		{"DEL", "{pi_collector}:lease:w1"},
		{"SPUBLISH", "pi_collector", "x"},
		{"SPUBLISH", "{pi_collector}:presence", "x"},
		{"WAIT", "0", "1"},
		{"ROLE"},
	} {
		if got := w(ok...); strings.Contains(got, "NOPERM") || strings.Contains(got, "ERR") {
			t.Errorf("worker %v: %q, want allowed", ok, got)
		}
	}
	for _, denied := range [][]string{
		{"SET", "{pi_collector}:state", `{"status":"done"}`},
		{"HSET", "{pi_collector}:checkpoint", "w:a", "x"},
		{"HSET", "{pi_collector}:quarantine", "a", "x"},
		{"HDEL", "{pi_collector}:quarantine", "a"},
		{"HSET", "{pi_collector}:totals", "a", "x"},
		{"DEL", "{pi_collector}:ledger:w1"},
		{"XTRIM", "{pi_collector}:ledger:w1", "MAXLEN", "0"},
		{"XDEL", "{pi_collector}:ledger:w1", "0-1"},
		{"XADD", "{other}:ledger:w1", "*", "e", "x"},
		{"XADD", "{pi_collector}:state", "*", "e", "x"},
		{"SET", "{other}:lease:w1", "token"},
		{"PEXPIRE", "{pi_collector}:ledger:w1", "1"},
		{"DEL", "{pi_collector}:checkpoint"},
		{"SET", "{pi_collector}:ledger:w2", "x"},
		{"PUBLISH", "other", "x"},
		{"SPUBLISH", "other", "x"},
		{"SET", "x", "y"},
		{"FLUSHALL"},
		{"CONFIG", "GET", "*"},
		{"KEYS", "*"},
		{"ACL", "LIST"},
	} {
		if got := w(denied...); !strings.Contains(got, "NOPERM") {
			t.Errorf("worker %v: %q, want NOPERM", denied, got)
		}
	}
	for _, ok := range [][]string{
		{"SET", "{pi_collector}:state", `{"status":"running"}`},
		{"HSET", "{pi_collector}:checkpoint", "pos", "0-1"},
		{"HSET", "{pi_collector}:quarantine", "a", "x"},
		{"XTRIM", "{pi_collector}:ledger:w1", "MINID", "0-1"},
		{"PUBLISH", "{pi_collector}:control", "x"},
		{"DEL", "{pi_collector}:readers"},
		{"TIME"},
		{"SCAN", "0", "MATCH", "{pi_collector}:ledger:*", "TYPE", "stream"},
		{"UNLINK", "{pi_collector}:ledger:w1"},
	} {
		if got := c(ok...); strings.Contains(got, "NOPERM") || strings.Contains(got, "ERR") {
			t.Errorf("collector %v: %q, want allowed", ok, got)
		}
	}
	for _, denied := range [][]string{{"FLUSHALL"}, {"CONFIG", "SET", "maxmemory", "1"}, {"SET", "{other}:state", "x"}, {"ACL", "SETUSER", "eve", "on"}, {"SHUTDOWN"}} {
		if got := c(denied...); !strings.Contains(got, "NOPERM") {
			t.Errorf("collector %v: %q, want NOPERM", denied, got)
		}
	}
	// A job whose channel is a glob: its users reach its keys only.
	globRules := filepath.Join(t.TempDir(), "glob.acl")
	if err := os.WriteFile(globRules, []byte(ACLRules("pi*", "gc", "gw", map[string]string{"n": "gn"})), 0o600); err != nil {
		t.Fatal(err)
	}
	glob := redistest.StartWith(t, redistest.Options{Args: []string{"--aclfile", globRules}})
	for _, u := range []struct{ user, pass string }{{"picluster-collector", "gc"}, {"picluster-worker", "gw"}, {WorkerUser("n"), "gn"}} {
		for _, denied := range [][]string{{"GET", "{pi_collector}:state"}, {"PUBLISH", "pi_collector", "x"}, {"XADD", "{pi_collector}:ledger:n", "*", "e", "x"}} {
			if got := cli(t, glob, u.user, u.pass, denied...); !strings.Contains(got, "NOPERM") {
				t.Errorf("%s of job pi* %v: %q, want NOPERM", u.user, denied, got)
			}
		}
	}
	if got := cli(t, glob, "picluster-worker", "gw", "XADD", "{pi*}:ledger:n", "*", "e", "x"); strings.Contains(got, "NOPERM") {
		t.Errorf("the worker of job pi* cannot append to its own ledger: %q", got)
	}
	// A worker's own user (acl --worker node7) reaches its own stream and
	// lease, and nothing of another worker's: it can neither erase nor
	// block their entries.
	n7 := func(args ...string) string { return cli(t, srv, WorkerUser("node7"), node7Pass, args...) }
	for _, ok := range [][]string{
		{"XADD", "{pi_collector}:ledger:node7", "*", "e", "x"},
		{"XREAD", "COUNT", "1", "STREAMS", "{pi_collector}:ledger:node7", "0"},
		{"PUBLISH", "pi_collector", "x"},
		{"GET", "{pi_collector}:state"},
		{"HGET", "{pi_collector}:checkpoint", "w:node7"},
		{"SET", "{pi_collector}:lease:node7", "token", "NX", "PX", "10000"},
		{"DEL", "{pi_collector}:lease:node7"},
	} {
		if got := n7(ok...); strings.Contains(got, "NOPERM") || strings.Contains(got, "ERR") {
			t.Errorf("node7 %v: %q, want allowed", ok, got)
		}
	}
	for _, denied := range [][]string{
		{"XADD", "{pi_collector}:ledger:node8", "MAXLEN", "0", "*", "e", "x"},
		{"XADD", "{pi_collector}:ledger:node8", "18446744073709551615-18446744073709551615", "e", "x"},
		{"XADD", "{pi_collector}:ledger:node7x", "*", "e", "x"},
		{"XREAD", "COUNT", "1", "STREAMS", "{pi_collector}:ledger:node8", "0"},
		{"DEL", "{pi_collector}:lease:node8"},
		{"SET", "{pi_collector}:state", "x"},
		{"HSET", "{pi_collector}:checkpoint", "w:node7", "x"},
	} {
		if got := n7(denied...); !strings.Contains(got, "NOPERM") {
			t.Errorf("node7 %v: %q, want NOPERM", denied, got)
		}
	}
}

// keys writes a job key and the worker keys of ids (picluster key) and
// returns their paths.
func keys(t *testing.T, ids ...string) (job string, workers map[string]string) {
	t.Helper()
	dir := t.TempDir()
	job = filepath.Join(dir, "job.key")
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"key", "--new"}, func(string) string { return "" }, &out, &errb); err != nil {
		t.Fatal(err, errb.String())
	}
	if err := os.WriteFile(job, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	workers = map[string]string{}
	for _, id := range ids {
		out.Reset()
		if err := run(t.Context(), []string{"key", "--key-file", job, "--id", id}, func(string) string { return "" }, &out, &errb); err != nil {
			t.Fatal(err, errb.String())
		}
		workers[id] = filepath.Join(dir, id+".key")
		if err := os.WriteFile(workers[id], out.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return job, workers
}

// jobState reads the state of the job on channel as a worker may.
func jobState(t *testing.T, url, channel string) wire.State {
	t.Helper()
	bus, err := redisbus.Open(url, channel, redisbus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	b, err := bus.State(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	st, err := wire.DecodeState(b)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// signedEntry returns the JSON and signature of worker's entry seq in job
// st: n samples, its true hits plus lie (or hits when fake ≥ 0, uncomputed).
func signedEntry(t *testing.T, st wire.State, keyFile, worker string, seq, n uint64, lie int64, fake int64) (string, string) {
	t.Helper()
	b, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	_, key, err := wire.ParseKey(b)
	if err != nil {
		t.Fatal(err)
	}
	hits := uint64(fake)
	if fake < 0 {
		seed, _ := wire.ParseSeed(st.Seed)
		hits = uint64(int64(mcpi.Batch{Key: mcpi.Key{Seed: seed, Worker: worker, Seq: seq}, N: n}.Hits(mcpi.Pick())) + lie)
	}
	p := wire.EncodeEntry(wire.Entry{Job: st.Job, Seed: st.Seed, Worker: worker, Seq: seq, N: n, Hits: hits, Kernel: "avx512", Seconds: 0.1})
	return string(p), wire.Sign(key, p)
}

// entryOf pairs an entry's JSON and signature.
func entryOf(p, sig string) [2]string { return [2]string{p, sig} }

// TestAttacksOverRedis scripts the attacks of a holder of worker
// credentials (and of anyone who can publish) against a job in secure mode
// on a real redis-server with the ACL users, and checks each outcome: the
// write is refused (NOPERM), the entry is rejected with a named reason, or
// the cheater is quarantined. In every case the job is not stopped early and
// the final estimate is within 4 SE of π.
func TestAttacksOverRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	srv := aclServer(t, redistest.Options{})
	jobKey, wkeys := keys(t, "honest0", "honest1", "mallory", "mallory2")
	colURL, wURL := userURL(srv, "picluster-collector", collectorPass), userURL(srv, "picluster-worker", workerPass)
	col := start(t, "collector", "--redis", colURL, "--key-file", jobKey, "--json", "--interval", "200ms", "--target-se", "2e-5")
	col.waitOutput(t, "job loaded from the ledger", 20*time.Second)
	st := jobState(t, wURL, "pi_collector")
	w := func(args ...string) string { return cli(t, srv, "picluster-worker", workerPass, args...) }
	xadd := func(stream string, e [2]string) string {
		return w("XADD", "{pi_collector}:ledger:"+stream, "*", "e", e[0], "s", e[1])
	}

	// 1. One huge anonymous report: refused in secure mode (and capped in open mode).
	w("PUBLISH", "pi_collector", `{"n":18446744073709551615,"pi_approx":3.2}`)
	// 2. A forged seq on another worker's id, signed with mallory's own key.
	p, sig := signedEntry(t, st, wkeys["mallory"], "honest0", math.MaxUint32, 1<<20, 0, -1)
	_, malloryKey, _ := wire.ParseKey(must(os.ReadFile(wkeys["mallory"])))
	forged := strings.Replace(p, `"seq":4294967295`, `"seq":18446744073709551615`, 1)
	xadd("honest0", [2]string{forged, wire.Sign(malloryKey, []byte(forged))})
	xadd("honest0", [2]string{p, sig})
	// 3. A credentialed worker biased at z = 4 in every batch.
	const n = 1 << 22
	sd := math.Sqrt(n * math.Pi / 4 * (1 - math.Pi/4))
	for seq := uint64(1); seq <= 5; seq++ {
		xadd("mallory", entryOf(signedEntry(t, st, wkeys["mallory"], "mallory", seq, n, int64(4*sd), -1)))
	}
	// 4. A credentialed worker claiming samples it never drew: the largest
	// entries, with plausible hits.
	plausible := int64(math.Round(float64(uint64(wire.MaxEntryN)) * math.Pi / 4))
	for seq := uint64(1); seq <= 3; seq++ {
		xadd("mallory2", entryOf(signedEntry(t, st, wkeys["mallory2"], "mallory2", seq, wire.MaxEntryN, 0, plausible)))
	}
	// 5. Writing the state, the control channel, another's totals or the checkpoint.
	for _, denied := range [][]string{
		{"SET", "{pi_collector}:state", `{"status":"done","job":"` + st.Job + `"}`},
		{"HSET", "{pi_collector}:totals", "honest0", `{"n":1}`},
		{"HSET", "{pi_collector}:checkpoint", "w:honest0", `{"seq":99}`},
		{"DEL", "{pi_collector}:ledger:honest0"},
		{"FLUSHALL"},
	} {
		if got := w(denied...); !strings.Contains(got, "NOPERM") {
			t.Errorf("worker %v: %q, want NOPERM", denied[:2], got)
		}
	}
	// 5b. With a user of its own (acl --worker), a worker cannot erase
	// another's entries (XADD … MAXLEN 0) nor block its stream (XADD with
	// the largest ID): ACLs cannot restrict XADD's options, but they keep
	// it to its own stream.
	m := func(args ...string) string { return cli(t, srv, WorkerUser("mallory"), malloryPass, args...) }
	for _, denied := range [][]string{
		{"XADD", "{pi_collector}:ledger:honest0", "MAXLEN", "0", "*", "e", "x"},
		{"XADD", "{pi_collector}:ledger:honest1", "18446744073709551615-18446744073709551615", "e", "x"},
		{"DEL", "{pi_collector}:lease:honest0"},
	} {
		if got := m(denied...); !strings.Contains(got, "NOPERM") {
			t.Errorf("mallory's own user %v: %q, want NOPERM", denied[:2], got)
		}
	}
	w("PUBLISH", "{pi_collector}:control", `{"status":"done"}`) // allowed, and only a hint: workers read the state
	// 6. A 30 MB message, on the channel and in the ledger.
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("x"), 30<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	port := srv.Addr[strings.LastIndex(srv.Addr, ":")+1:]
	for _, cmd := range [][]string{{"PUBLISH", "pi_collector"}, {"XADD", "{pi_collector}:ledger:mallory", "*", "e"}} {
		c := exec.Command("redis-cli", append([]string{"-p", port, "--no-auth-warning", "--user", "picluster-worker", "--pass", workerPass, "-x"}, cmd...)...)
		c.Stdin = bytes.NewReader(must(os.ReadFile(big)))
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("redis-cli -x %v: %v %s", cmd, err, out)
		}
	}

	// Now the honest workers. A fake "done" on the control channel did not stop them.
	var ws []*proc
	for _, id := range []string{"honest0", "honest1"} {
		ws = append(ws, start(t, "worker", "--redis", wURL, "--key-file", wkeys[id], "--threads", "1", "--batch-time", "100ms"))
	}
	col.wait(t, 180*time.Second)
	s := col.summary(t)
	t.Logf("summary: n %v pi %v ± %v stopped by %s; rejected %v; quarantined %+v; verification %+v",
		s.N, s.Pi, s.StdErr, s.StoppedBy, s.RejectedBy, s.Quarantined, s.Verification)
	if s.StoppedBy != "target" || float64(s.StdErr) > 2e-5 {
		t.Errorf("stopped by %q at SE %v: want the target", s.StoppedBy, s.StdErr)
	}
	if z := math.Abs(float64(s.Pi)-math.Pi) / float64(s.StdErr); z > 4 {
		t.Errorf("π̂ = %v is %.1f SE from π", s.Pi, z)
	}
	var q []string
	for _, r := range s.Quarantined {
		q = append(q, r.Worker)
	}
	if fmt.Sprint(q) != "[mallory mallory2]" {
		t.Errorf("quarantined %v, want mallory and mallory2", q)
	}
	// The 30 MB entry is refused; the 30 MB message on the channel may
	// instead overflow the subscription's output buffer, which costs
	// nothing since entries are credited from the ledger.
	for reason, least := range map[string]uint64{"anonymous": 1, "bad_signature": 2, "oversized": 1} {
		if s.RejectedBy[reason] < least {
			t.Errorf("rejected_by[%s] = %d, want ≥ %d", reason, s.RejectedBy[reason], least)
		}
	}
	for _, wk := range ws {
		wk.wait(t, 30*time.Second)
		if !strings.Contains(wk.stderr.String(), `reason="job done"`) {
			t.Errorf("honest worker did not stop for the job's end: %s", wk.stderr)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestNothingLost: the subscription dropped by an output-buffer overflow,
// the collector killed (-9) and restarted, and Redis restarted with the AOF
// on, all in one job: the final N and hits equal the ledger's sums exactly.
func TestNothingLost(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	srv := redistest.StartWith(t, redistest.Options{AppendOnly: true,
		Args: []string{"--client-output-buffer-limit", "pubsub 64kb 32kb 1"}})
	col := start(t, "collector", "--redis", srv.URL(), "--json", "--interval", "100ms")
	col.waitOutput(t, "job loaded from the ledger", 20*time.Second)
	var ws []*proc
	for i := range 3 {
		ws = append(ws, start(t, "worker", "--redis", srv.URL(), "--id", fmt.Sprint("w", i), "--threads", "1",
			"--batch-time", "30ms", "--max-batches", "150"))
	}
	// A flood of large messages overflows the collector's pub/sub buffer:
	// Redis drops its subscription.
	big := strings.Repeat("x", 100<<10)
	for range 5 {
		redisCLI(t, srv, "PUBLISH", "pi_collector", big)
	}
	col.waitOutput(t, "subscription lost", 20*time.Second)
	time.Sleep(500 * time.Millisecond)
	_ = col.cmd.Process.Kill() // kill -9
	again := start(t, "collector", "--redis", srv.URL(), "--json", "--interval", "100ms")
	again.waitOutput(t, "job loaded from the ledger", 20*time.Second)
	time.Sleep(500 * time.Millisecond)
	srv.Restart() // SIGKILL and start again: the AOF (fsync always) keeps every acknowledged write
	for _, w := range ws {
		w.wait(t, 120*time.Second)
	}
	n, hits, _ := totals(t, srv.URL())
	if want := mcpi.CountOf(0); n == want {
		t.Fatal("empty ledger")
	}
	again.waitOutput(t, fmt.Sprintf("N=%s ", n), 30*time.Second)
	_ = again.cmd.Process.Signal(syscall.SIGINT)
	again.wait(t, 20*time.Second)
	s := again.summary(t)
	t.Logf("ledger n %v hits %v; collector n %v hits %v, %d batches, gaps %d, duplicate appends %d", n, hits, s.N, s.Hits, s.Batches, s.Gaps, s.Duplicates)
	if s.N != n || s.Hits != hits || s.Gaps != 0 || s.Batches != 450 {
		t.Errorf("collector n %v hits %v gaps %d batches %d; want the ledger's %v and %v, no gap, 450 batches", s.N, s.Hits, s.Gaps, s.Batches, n, hits)
	}
}

// TestSecureEndToEnd: TLS with a CA the test makes (mutual TLS), the ACL
// users and a job key: a collector, two workers holding only their own keys
// and Redis users, and picluster verify run a job to its target.
func TestSecureEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	tlsFiles := redistest.NewTLS(t)
	srv := aclServer(t, redistest.Options{TLS: tlsFiles})
	cert, key := tlsFiles.ClientFiles()
	tlsArgs := []string{"--tls-ca", tlsFiles.CA, "--tls-cert", cert, "--tls-key", key}
	jobKey, wkeys := keys(t, "a", "b")
	colURL := "rediss://picluster-collector:" + collectorPass + "@" + srv.Addr
	wURL := func(id string) string { return "rediss://" + WorkerUser(id) + ":" + ownUsers[id] + "@" + srv.Addr }
	col := start(t, append([]string{"collector", "--redis", colURL, "--key-file", jobKey, "--json", "--target-se", "3e-5"}, tlsArgs...)...)
	col.waitOutput(t, "job loaded from the ledger", 20*time.Second)
	var ws []*proc
	for _, id := range []string{"a", "b"} {
		ws = append(ws, start(t, append([]string{"worker", "--redis", wURL(id), "--key-file", wkeys[id], "--threads", "1", "--batch-time", "100ms"}, tlsArgs...)...))
	}
	col.wait(t, 120*time.Second)
	s := col.summary(t)
	if s.StoppedBy != "target" || s.Mode != "secure" || s.Workers != 2 || s.Rejected != 0 {
		t.Errorf("summary: stopped by %q, mode %s, %d workers, rejected %v", s.StoppedBy, s.Mode, s.Workers, s.RejectedBy)
	}
	for _, w := range ws {
		w.wait(t, 30*time.Second)
	}
	v := start(t, append([]string{"verify", "--redis", colURL, "--key-file", jobKey, "--all", "--json"}, tlsArgs...)...)
	v.wait(t, 120*time.Second)
	var res verifyResult
	if err := json.Unmarshal([]byte(v.stdout.String()), &res); err != nil {
		t.Fatalf("verify printed %q: %v", v.stdout, err)
	}
	if res.Replayed == 0 || res.Replayed != res.Entries || len(res.Mismatches) != 0 || res.BadSig != 0 {
		t.Errorf("verify: %+v; want every entry replayed and exact", res)
	}
	// skip_verify is refused, and the message does not show the password.
	var out, errb bytes.Buffer
	err := run(t.Context(), []string{"worker", "--redis", wURL("a") + "?skip_verify=true", "--max-batches", "1"}, func(string) string { return "" }, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "skip_verify is refused") || strings.Contains(err.Error(), ownUsers["a"]) {
		t.Errorf("skip_verify: %v", err)
	}
}

// The Kubernetes Secret carries the rules picluster acl prints, so the two
// cannot drift apart.
func TestK8sSecretHasTheACLRules(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "k8s", "secrets.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(ACLRules("pi_collector", "change-me-collector", "change-me-worker", nil)), "\n") {
		if !strings.Contains(string(b), "    "+line+"\n") {
			t.Errorf("deploy/k8s/secrets.yaml lacks the rule %q", line)
		}
	}
}
