package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/internal/redisbus"
	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/mcpi"
)

// keyCmd makes a job key, or derives a worker's key from the job key.
func (e *env) keyCmd(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("key", flag.ContinueOnError)
	var c common
	var id string
	var newKey bool
	fs.StringVar(&c.keyFile, "key-file", "", "the job key `file` (default $PICLUSTER_KEY_FILE, or the key itself in $PICLUSTER_KEY)")
	fs.StringVar(&id, "id", "", "print the key of the worker with this `id`: it signs only as that worker")
	fs.BoolVar(&newKey, "new", false, "print a new random job key")
	if err := e.parse(fs, "Makes a job key (--new), or derives a worker's key from the job key (--id),\nso a machine can hold a key that signs only as itself:\n\n  picluster key --new > job.key\n  picluster key --key-file job.key --id node7 > node7.key   # then, on node7:\n  picluster worker --key-file node7.key", args); err != nil {
		return err
	}
	e.fill(&c)
	switch {
	case newKey && id == "":
		var b [32]byte
		_, _ = rand.Read(b[:])
		fmt.Fprintln(e.stdout, base64.RawStdEncoding.EncodeToString(b[:]))
		return nil
	case id == "" || newKey:
		return badFlag("give --new, or --id with the job key")
	}
	jobKey, err := e.jobKey(c)
	if err != nil {
		return err
	}
	if jobKey == nil {
		return badFlag("no job key: give --key-file or set PICLUSTER_KEY")
	}
	if len(id) > wire.MaxWorkerLen {
		return badFlag("--id: %d bytes, at most %d", len(id), wire.MaxWorkerLen)
	}
	fmt.Fprint(e.stdout, wire.FormatWorkerKey(id, wire.WorkerKey(jobKey, id)))
	return nil
}

// failoverRules are the commands a client of a Redis Cluster or of a
// master under Sentinel needs besides: the cluster's slot map, the
// commands' key positions, and WAIT for a replica (with ROLE, to learn
// whether there is one). Sharded pub/sub obeys the same channel rules.
const failoverRules = "+cluster|slots +cluster|shards +cluster|nodes +command +readonly +wait +role"

// ACLRules returns Redis ACL rules (the aclfile format) for the job on
// channel: a collector user; a worker user that every worker shares, when
// workerPass is not empty; and a user of its own for each worker of own
// (id → password). Workers may append to their stream of the ledger, publish
// on the job's channels, read the state and their checkpoint, and hold their
// leases (a Redis 7 selector grants SET, GET, PEXPIRE, PTTL, DEL and WATCH
// on leases only). A worker's own user reaches its own stream and lease
// only, so it cannot erase or block another's entries, which the shared
// user can (ACLs cannot restrict XADD's MAXLEN, MINID or explicit IDs).
// Only the collector writes the state, the checkpoint, the readers and the
// quarantine, or deletes anything.
func ACLRules(channel, collectorPass, workerPass string, own map[string]string) string {
	k := redisbus.KeysOf(channel)
	q := redisbus.GlobEscape // every key and channel pattern is a glob: a channel may hold * ? [ ]
	tag := q("{" + channel + "}")
	var sb strings.Builder
	fmt.Fprintf(&sb, "user default off\n")
	fmt.Fprintf(&sb, "user picluster-collector on >%s resetkeys resetchannels ~%s:* &%s &%s:* -@all +@read +@write +@stream +@pubsub +@transaction +@connection +time -@dangerous %s\n",
		collectorPass, tag, q(channel), tag, failoverRules)
	worker := func(user, pass, stream, lease string) {
		fmt.Fprintf(&sb, "user %s on >%s resetkeys resetchannels ~%s %%R~%s %%R~%s &%s &%s &%s -@all +xadd +xread +publish +subscribe +unsubscribe +ping +get +hget +multi +exec +discard +unwatch +hello +auth +client|setname %s +spublish +ssubscribe +sunsubscribe (~%s +set +get +pexpire +pttl +del +watch)\n",
			user, pass, stream, q(k.State), q(k.Checkpoint), q(channel), q(k.Presence), q(k.Control), failoverRules, lease)
	}
	if workerPass != "" {
		worker("picluster-worker", workerPass, redisbus.GlobEscape(k.Ledger)+"*", redisbus.GlobEscape(k.Lease)+"*")
	}
	for _, id := range slices.Sorted(maps.Keys(own)) {
		worker(WorkerUser(id), own[id], redisbus.GlobEscape(k.Ledger+id), redisbus.GlobEscape(k.Lease+id))
	}
	return sb.String()
}

// WorkerUser is the name of the Redis user of the worker called id alone.
func WorkerUser(id string) string { return "picluster-worker-" + id }

// validACLWorker reports whether id can name a worker's own Redis user:
// letters, digits, '.', '_' and '-' only, since an aclfile line is split at
// white space and parentheses open a selector.
func validACLWorker(id string) error {
	bad := func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
	}
	if id == "" || len(id) > wire.MaxWorkerLen || strings.IndexFunc(id, bad) >= 0 {
		return badFlag("--worker %q: want 1 to %d letters, digits, '.', '_' or '-'", id, wire.MaxWorkerLen)
	}
	return nil
}

// aclCmd prints ready-to-use ACL rules with fresh passwords.
func (e *env) aclCmd(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("acl", flag.ContinueOnError)
	channel := fs.String("channel", "pi_collector", "the job's report `channel`")
	workers := fs.String("worker", "", "comma-separated worker `ids`: a user of its own for each, instead of one user all workers share")
	if err := e.parse(fs, "Prints Redis ACL rules (aclfile format) for a collector user and the workers' users of\none job, with fresh random passwords. Save them as the server's aclfile (redis.conf:\naclfile /etc/redis/users.acl) or load each line with ACL SETUSER. Workers can append\nto their stream of the ledger, publish and read the state; they cannot write the\nstate, the checkpoint or the quarantine, nor delete anything. With --worker, each\nworker gets a user of its own that reaches only its own stream: use it for\nmachines you do not control.", args); err != nil {
		return err
	}
	if err := redisbus.ValidChannel(*channel); err != nil {
		return err
	}
	pw := func() string {
		var b [24]byte
		_, _ = rand.Read(b[:])
		return hex.EncodeToString(b[:])
	}
	own := map[string]string{}
	if *workers != "" {
		for id := range strings.SplitSeq(*workers, ",") {
			if err := validACLWorker(id); err != nil {
				return err
			}
			own[id] = pw()
		}
	}
	cp, wp := pw(), ""
	fmt.Fprintf(e.stderr, "ACL users for job %q, with new passwords: keep them secret. An aclfile has no comments, so the URLs go here:\n", *channel)
	fmt.Fprintf(e.stderr, "  collector: REDIS_URL=redis://picluster-collector:%s@HOST:6379\n", cp)
	if len(own) == 0 {
		wp = pw()
		fmt.Fprintf(e.stderr, "  workers:   REDIS_URL=redis://picluster-worker:%s@HOST:6379\n", wp)
	}
	for _, id := range slices.Sorted(maps.Keys(own)) {
		fmt.Fprintf(e.stderr, "  worker %s: REDIS_URL=redis://%s:%s@HOST:6379 (and --id %s)\n", id, WorkerUser(id), own[id], id)
	}
	fmt.Fprint(e.stdout, ACLRules(*channel, cp, wp, own))
	return nil
}

// verifyCmd replays entries of the ledger's window, as the collector does,
// from any machine.
func (e *env) verifyCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	var c common
	var fraction float64
	var all, quarantine, jsonOut bool
	var kernel string
	e.commonFlags(fs, &c, "the Redis of the job")
	fs.Float64Var(&fraction, "fraction", 0.05, "share of the window's samples to replay (`fraction`), chosen with probability ∝ n")
	fs.BoolVar(&all, "all", false, "replay every entry of the window")
	fs.BoolVar(&quarantine, "quarantine", false, "record the workers found wrong in {channel}:quarantine (needs the collector's Redis user)")
	fs.BoolVar(&jsonOut, "json", false, "print the result as one JSON object")
	fs.StringVar(&kernel, "kernel", "auto", "replay `kernel`: auto, avx512, avx2 or go")
	if err := e.parse(fs, "Replays entries of the job's ledger (the window the collector keeps) bit for bit\nand checks their hits; with the job key, their signatures too. Exits 1 when an\nentry does not replay.", args); err != nil {
		return err
	}
	e.fill(&c)
	if !(fraction > 0 && fraction <= 1) {
		return badFlag("--fraction %v: want a number in (0, 1]", fraction)
	}
	k, err := mcpi.ParseKernel(kernel)
	if err != nil {
		return badFlag("--kernel %s: %w", kernel, err)
	}
	log := e.logger(c)
	jobKey, err := e.jobKey(c)
	if err != nil {
		return err
	}
	bus, err := e.openRedis(c, log)
	if err != nil {
		return err
	}
	defer bus.Close()
	res, err := verifyLedger(ctx, bus, jobKey, k, fraction, all, e.stderr)
	if err != nil {
		return err
	}
	if quarantine {
		for _, m := range res.Mismatches {
			b, _ := json.Marshal(wire.QuarantineRecord{Reason: "replay_mismatch", Seq: m.Seq, Want: m.Want, Got: m.Got, By: "picluster verify", At: time.Now().UTC().Format(time.RFC3339)})
			if err := bus.Quarantine(ctx, m.Worker, b); err != nil {
				return fmt.Errorf("quarantine %q: %w", m.Worker, err)
			}
		}
	}
	if jsonOut {
		b, _ := json.Marshal(res)
		fmt.Fprintln(e.stdout, string(b))
	} else {
		fmt.Fprintf(e.stdout, "replayed %d of %s (%.3g of %.3g samples): %d exact, %d wrong, %d unsigned or mis-signed\n",
			res.Replayed, plural(res.Entries, "entry", "entries"), res.ReplayedN, res.TotalN, res.Replayed-len(res.Mismatches), len(res.Mismatches), res.BadSig)
		for _, m := range res.Mismatches {
			fmt.Fprintf(e.stdout, "  worker %q seq %d: claimed %d hits, replay gives %d\n", m.Worker, m.Seq, m.Got, m.Want)
		}
	}
	if len(res.Mismatches) > 0 {
		return fmt.Errorf("%s did not replay", plural(len(res.Mismatches), "entry", "entries"))
	}
	return nil
}

// verifyResult is what picluster verify found.
type verifyResult struct {
	Entries    int        `json:"entries"`
	TotalN     float64    `json:"total_n"`
	Replayed   int        `json:"replayed"`
	ReplayedN  float64    `json:"replayed_n"`
	BadSig     int        `json:"bad_signature"`
	Mismatches []mismatch `json:"mismatches"`
}

type mismatch struct {
	Worker string `json:"worker"`
	Seq    uint64 `json:"seq"`
	Want   uint64 `json:"want"`
	Got    uint64 `json:"got"`
}

// verifyLedger reads the whole ledger window and replays a sample of it.
func verifyLedger(ctx context.Context, bus *redisbus.Bus, jobKey []byte, k mcpi.Kernel, fraction float64, all bool, progress interface{ Write([]byte) (int, error) }) (verifyResult, error) {
	res := verifyResult{Mismatches: []mismatch{}}
	var entries []wire.Entry
	var s1 float64
	err := collector.ReadLedger(ctx, bus, func(le wire.LedgerEntry) {
		e, err := wire.DecodeEntry(le.Payload)
		if err != nil || e.Worker != le.Worker {
			return
		}
		if jobKey != nil && !wire.SignatureOK(wire.WorkerKey(jobKey, e.Worker), le.Payload, le.Sig) {
			res.BadSig++
			return
		}
		entries = append(entries, e)
		s1 += float64(e.N)
	})
	if err != nil {
		return res, err
	}
	res.Entries, res.TotalN = len(entries), s1
	var chosen []wire.Entry
	for _, e := range entries {
		// The collector's rule, over the whole window: m and N are the window's.
		if all || mrand.Float64() < collector.Chance(fraction, float64(e.N), s1, float64(len(entries)), s1, jobKey != nil) {
			chosen = append(chosen, e)
		}
	}
	for i, e := range chosen {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		if isTerminal(progress) {
			fmt.Fprintf(progress, "\rreplaying %d/%d", i+1, len(chosen))
		}
		want, ok := collector.Replay(e, k)
		res.Replayed++
		res.ReplayedN += float64(e.N)
		if !ok || want != e.Hits {
			res.Mismatches = append(res.Mismatches, mismatch{Worker: e.Worker, Seq: e.Seq, Want: want, Got: e.Hits})
		}
	}
	if len(chosen) > 0 && isTerminal(progress) {
		fmt.Fprintln(progress)
	}
	return res, nil
}
