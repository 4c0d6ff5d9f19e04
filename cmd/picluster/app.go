package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/picluster/picluster/internal/redisbus"
	"github.com/picluster/picluster/internal/wire"
	"github.com/picluster/picluster/worker"
)

const usage = `picluster estimates π by Monte Carlo on every core of as many machines as
you have, pooled through Redis.

Usage:

  picluster run        [flags]   workers and a collector in one process (no Redis needed)
  picluster worker     [flags]   sample and report to Redis
  picluster collector  [flags]   pool the reports, show the estimate, stop at a target
  picluster bench      [flags]   measure the sampler's samples/s per kernel and thread count
  picluster loadgen    [flags]   load a collector through Redis; its ingest against a bare reader
  picluster verify     [flags]   replay a sample of the job's ledger and check it
  picluster key        [flags]   make a job key, or derive a worker's key from it
  picluster acl        [flags]   print Redis ACL users for a collector and its workers
  picluster version              the version, Go version, commit and this CPU's kernels
  picluster help       [command]

Run "picluster COMMAND -h" for a command's flags. Every command that talks to
Redis reads REDIS_URL when --redis is not given.
`

// commands are the commands with flags of their own.
var commands = []string{"run", "worker", "collector", "bench", "loadgen", "verify", "key", "acl", "version"}

// run is the whole program: main only adds signals, prints the error
// (explain) and exits with its code. Help, asked for, is no error.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return &usageError{}
	}
	err := dispatch(ctx, args, getenv, stdout, stderr)
	var u *usageError
	switch {
	case errors.Is(err, errHelp):
		return nil
	case errors.As(err, &u) && u.cmd == "" && u.err != nil && slices.Contains(commands, args[0]):
		u.cmd = args[0]
	}
	return err
}

// dispatch runs the command args[0].
func dispatch(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	env := &env{getenv: getenv, stdout: stdout, stderr: stderr, logs: &heldWriter{w: stderr}}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return env.runCmd(ctx, rest)
	case "worker":
		return env.workerCmd(ctx, rest)
	case "collector":
		return env.collectorCmd(ctx, rest)
	case "bench":
		return env.benchCmd(ctx, rest)
	case "loadgen":
		return env.loadgenCmd(ctx, rest)
	case "verify":
		return env.verifyCmd(ctx, rest)
	case "key":
		return env.keyCmd(ctx, rest)
	case "acl":
		return env.aclCmd(ctx, rest)
	case "version", "-version", "--version":
		return env.versionCmd(rest)
	case "help", "-h", "-help", "--help":
		switch {
		case len(rest) > 1:
			return &usageError{err: fmt.Errorf("help %s: one command at most", strings.Join(rest, " "))}
		case len(rest) == 1 && !slices.Contains([]string{"help", "-h", "-help", "--help"}, rest[0]):
			return dispatch(ctx, []string{rest[0], "-h"}, getenv, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return nil
	}
	return &usageError{err: fmt.Errorf("unknown command %q", cmd)}
}

// env is what every command reads and writes besides its flags.
type env struct {
	getenv         func(string) string
	stdout, stderr io.Writer
	logs           *heldWriter // the logger's stderr, held while the live view owns the terminal
}

// heldWriter writes through to w, or into a buffer while held.
type heldWriter struct {
	mu   sync.Mutex
	w    io.Writer
	held *bytes.Buffer
}

func (h *heldWriter) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.held != nil {
		return h.held.Write(p)
	}
	return h.w.Write(p)
}

// hold buffers writes until release, which writes them out.
func (h *heldWriter) hold() {
	h.mu.Lock()
	h.held = new(bytes.Buffer)
	h.mu.Unlock()
}

func (h *heldWriter) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.held != nil {
		_, _ = h.w.Write(h.held.Bytes())
		h.held = nil
	}
}

// common are the flags of every command that talks to Redis.
type common struct {
	redis   string
	channel string
	keyFile string
	tls     redisbus.TLSFiles
	verbose bool
	envURL  bool // whether redis came from $REDIS_URL, not --redis
}

// commonFlags registers the common flags. Defaults that come from the
// environment are filled in after parsing (fill), so that a password in
// REDIS_URL never shows in -h.
func (e *env) commonFlags(fs *flag.FlagSet, c *common, redisHelp string) {
	fs.StringVar(&c.redis, "redis", "", redisHelp+" (`url` redis://[user:password@]host:port[/db]; a Redis Cluster:\n"+
		"redis+cluster://[user:password@]host:port,host:port,…; through Sentinel:\n"+
		"redis+sentinel://[user:password@]host:port,host:port,…/master[/db]; rediss… for TLS;\ndefault $REDIS_URL)")
	fs.StringVar(&c.channel, "channel", "pi_collector", "the job's report `channel`; its keys are {channel}:ledger, :state, :checkpoint, …")
	fs.StringVar(&c.keyFile, "key-file", "", "the job key, or a worker's key (picluster key), from this `file`: secure mode (default $PICLUSTER_KEY_FILE, or the key itself in $PICLUSTER_KEY)")
	fs.StringVar(&c.tls.CA, "tls-ca", "", "verify Redis's TLS certificate against this CA `file` (PEM; default $PICLUSTER_TLS_CA)")
	fs.StringVar(&c.tls.Cert, "tls-cert", "", "client certificate `file` for mutual TLS (PEM; default $PICLUSTER_TLS_CERT)")
	fs.StringVar(&c.tls.Key, "tls-key", "", "client key `file` for mutual TLS (PEM; default $PICLUSTER_TLS_KEY)")
	fs.BoolVar(&c.verbose, "verbose", false, "log every batch and message (debug level)")
}

// fill takes what the flags left empty from the environment.
func (e *env) fill(c *common) {
	c.envURL = c.redis == "" && e.getenv("REDIS_URL") != ""
	for _, f := range []struct {
		v   *string
		env string
	}{{&c.redis, "REDIS_URL"}, {&c.keyFile, "PICLUSTER_KEY_FILE"}, {&c.tls.CA, "PICLUSTER_TLS_CA"},
		{&c.tls.Cert, "PICLUSTER_TLS_CERT"}, {&c.tls.Key, "PICLUSTER_TLS_KEY"}} {
		if *f.v == "" {
			*f.v = e.getenv(f.env)
		}
	}
}

// key reads the key of --key-file or $PICLUSTER_KEY: a job key (worker
// empty), or a worker key bound to worker. No key is nil, nil.
func (e *env) key(c common) (worker string, key []byte, err error) {
	var b []byte
	switch {
	case c.keyFile != "":
		if b, err = os.ReadFile(c.keyFile); err != nil {
			return "", nil, fmt.Errorf("--key-file: %w", err)
		}
	case e.getenv("PICLUSTER_KEY") != "":
		b = []byte(e.getenv("PICLUSTER_KEY"))
	default:
		return "", nil, nil
	}
	worker, key, err = wire.ParseKey(b)
	if err != nil {
		return "", nil, fmt.Errorf("--key-file: %w", err)
	}
	return worker, key, nil
}

// jobKey returns the job key, nil for open mode; a worker's key is refused.
func (e *env) jobKey(c common) ([]byte, error) {
	w, key, err := e.key(c)
	if err == nil && w != "" {
		err = fmt.Errorf("--key-file holds the worker key of %q; this command needs the job key", w)
	}
	return key, err
}

// workerKey sets cfg's signing key: a worker key binds the worker's id, a
// job key derives it.
func (e *env) workerKey(c common, cfg *worker.Config) error {
	w, key, err := e.key(c)
	switch {
	case err != nil:
		return err
	case key == nil:
	case w == "":
		cfg.JobKey = key
	case cfg.ID != "" && cfg.ID != w:
		return fmt.Errorf("--id %q: the worker key file is for %q", cfg.ID, w)
	default:
		cfg.ID, cfg.Key = w, key
	}
	return nil
}

// logger logs to stderr: the data of a command goes to stdout.
func (e *env) logger(c common) *slog.Logger {
	level := slog.LevelInfo
	if c.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: level}))
}
