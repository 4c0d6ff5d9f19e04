package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat: USER_HZ, 100 on
// every Linux architecture Go runs on.
const userHZ = 100

// cpuSeconds returns the CPU time, user and system, that process pid (0:
// this one) has used so far, from /proc/<pid>/stat.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(procPath(pid, "stat"))
	if err != nil {
		return 0, err
	}
	return parseStat(b)
}

// parseStat reads utime and stime (fields 14 and 15) of a /proc/<pid>/stat.
// The command name, field 2, is in parentheses and may hold spaces and
// parentheses itself: the fields are counted from the last ")".
func parseStat(b []byte) (float64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("proc stat: no command name")
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3, the state
	if len(f) < 13 {
		return 0, fmt.Errorf("proc stat: %d fields after the name, want ≥ 13", len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("proc stat: %w", err)
	}
	return float64(ut+st) / userHZ, nil
}

// memory returns the resident set of process pid (0: this one) now and at
// its peak, in bytes, from /proc/<pid>/status (VmRSS, VmHWM).
func memory(pid int) (rss, peak uint64, err error) {
	b, err := os.ReadFile(procPath(pid, "status"))
	if err != nil {
		return 0, 0, err
	}
	return parseStatus(b)
}

func parseStatus(b []byte) (rss, peak uint64, err error) {
	var seen int
	for line := range strings.SplitSeq(string(b), "\n") {
		name, v, ok := strings.Cut(line, ":")
		if !ok || name != "VmRSS" && name != "VmHWM" {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("proc status: %s: %w", name, err)
		}
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			peak = kb << 10
		}
		seen++
	}
	if seen != 2 {
		return 0, 0, errors.New("proc status: no VmRSS and VmHWM")
	}
	return rss, peak, nil
}

func procPath(pid int, file string) string {
	if pid == 0 {
		return filepath.Join("/proc/self", file)
	}
	return filepath.Join("/proc", strconv.Itoa(pid), file)
}

// loadAvg returns the 1-minute load average, 0 when it cannot be read.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// meter measures a process's CPU over a window: its cores, CPU seconds per
// second of wall time.
type meter struct {
	pid  int
	cpu  float64
	wall time.Time
	ok   bool
}

func startMeter(pid int) meter {
	c, err := cpuSeconds(pid)
	return meter{pid: pid, cpu: c, wall: time.Now(), ok: err == nil}
}

// cores returns the CPU cores the process used since the meter started,
// -1 when its /proc files cannot be read (it is not on this machine).
func (m meter) cores() float64 {
	c, err := cpuSeconds(m.pid)
	if !m.ok || err != nil {
		return -1
	}
	return (c - m.cpu) / time.Since(m.wall).Seconds()
}

// child is a process loadgen started: the collector, or a redis-server.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited
	err  error         // its exit, once done
	tail *tail         // the end of its stderr
}

// startChild starts argv with env added to this process's environment,
// hands every line of its stderr to onLine (which may be nil), and keeps its
// last lines for errors.
func startChild(name string, argv, env []string, onLine func(string)) (*child, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{}), tail: &tail{max: 30}}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			c.tail.add(sc.Text())
			if onLine != nil {
				onLine(sc.Text())
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// stop interrupts the child (SIGINT) and waits for it, for at most grace;
// then it kills it. It returns the child's CPU seconds and peak RSS in
// bytes over its whole life, from the kernel's accounting.
func (c *child) stop(grace time.Duration) (cpu float64, maxRSS uint64, err error) {
	select {
	case <-c.done:
	default:
		_ = c.cmd.Process.Signal(os.Interrupt)
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-c.done:
		case <-t.C:
			_ = c.cmd.Process.Kill()
			<-c.done
			err = fmt.Errorf("%s did not stop within %v of SIGINT; killed", c.name, grace)
		}
	}
	if st := c.cmd.ProcessState; st != nil {
		cpu = (st.UserTime() + st.SystemTime()).Seconds()
		maxRSS = maxRSSOf(st)
	}
	return cpu, maxRSS, err
}

// exited returns an error that says the child ended, with its last lines.
func (c *child) exited() error {
	return fmt.Errorf("%s exited (%v); its last lines:\n%s", c.name, c.err, c.tail.String())
}

// wait waits for the first value of ch, while the child runs, for at most d.
func waitFor[T any](ctx context.Context, c *child, ch <-chan T, d time.Duration, what string) (T, error) {
	var zero T
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case v := <-ch:
		return v, nil
	case <-c.done:
		return zero, c.exited()
	case <-t.C:
		return zero, fmt.Errorf("%s: no %s within %v; its last lines:\n%s", c.name, what, d, c.tail.String())
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// tail keeps the last max lines written to it.
type tail struct {
	mu    sync.Mutex
	max   int
	lines []string
}

func (t *tail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == t.max {
		t.lines = t.lines[1:]
	}
	t.lines = append(t.lines, line)
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}
