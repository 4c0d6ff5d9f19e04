package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
)

const usage = `picluster estimates π by Monte Carlo on every core of as many machines as
you have, pooled through Redis.

Usage:

  picluster run        [flags]   workers and a collector in one process (no Redis needed)
  picluster worker     [flags]   sample and report to Redis
  picluster collector  [flags]   pool the reports, show the estimate, stop at a target
  picluster bench      [flags]   measure the sampler's samples/s per kernel and thread count
  picluster version              the version, Go version, commit and this CPU's kernels
  picluster help       [command]

Run "picluster COMMAND -h" for a command's flags. Every command that talks to
Redis reads REDIS_URL when --redis is not given.
`

// errUsage is a command-line mistake; the message has been printed.
var errUsage = errors.New("usage")

func exitCode(err error) int {
	if errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

// run is the whole program: main only adds signals and the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
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
	case "version", "-version", "--version":
		return env.versionCmd(rest)
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 && rest[0] != "help" {
			return run(ctx, []string{rest[0], "-h"}, getenv, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "picluster: unknown command %q\n\n%s", cmd, usage)
	return errUsage
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

// parse parses args into fs, printing the help and errors itself.
func (e *env) parse(fs *flag.FlagSet, summary string, args []string) error {
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: picluster %s [flags]\n\n%s\n\nFlags:\n", fs.Name(), summary)
		fs.PrintDefaults()
	}
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "picluster %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return errUsage
	}
	return nil
}

// helped reports whether args asked for help (parse has printed it).
func helped(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "-h" || a == "-help" || a == "--help" {
			return true
		}
	}
	return false
}

// common are the flags of every command.
type common struct {
	redis   string
	channel string
	verbose bool
}

func (e *env) commonFlags(fs *flag.FlagSet, c *common, redisHelp string) {
	fs.StringVar(&c.redis, "redis", e.getenv("REDIS_URL"), redisHelp+" (redis://[user:password@]host:port[/db] or rediss://; default $REDIS_URL)")
	fs.StringVar(&c.channel, "channel", "pi_collector", "the job's report `channel`; its keys are {channel}:totals, :state, :control")
	fs.BoolVar(&c.verbose, "verbose", false, "log every batch and message (debug level)")
}

// logger logs to stderr: the data of a command goes to stdout.
func (e *env) logger(c common) *slog.Logger {
	level := slog.LevelInfo
	if c.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: level}))
}

// redactURL hides a password in a Redis URL for logs.
func redactURL(u string) string {
	if at := strings.LastIndex(u, "@"); at >= 0 {
		if scheme := strings.Index(u, "://"); scheme >= 0 && scheme < at {
			return u[:scheme+3] + "…@" + u[at+1:]
		}
	}
	return u
}
