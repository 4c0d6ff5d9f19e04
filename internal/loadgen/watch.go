package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"slices"
	"sync"
	"time"
)

// pollEvery is how often the collector's /api/state is read: the
// resolution of the lag, on top of the collector's snapshot interval.
const pollEvery = 25 * time.Millisecond

// apiState is what loadgen reads of the collector's /api/state.
type apiState struct {
	N          json.Number       `json:"n"`
	Accepted   uint64            `json:"accepted"`
	Rejected   uint64            `json:"rejected"`
	RejectedBy map[string]uint64 `json:"rejected_by"`
	Workers    int               `json:"workers"`
	Gaps       uint64            `json:"gaps"`
	Table      []row             `json:"worker_table"`
	Page       struct {
		Total int `json:"total"`
	} `json:"page"`
}

// row is a worker's row of the table.
type row struct {
	ID      string `json:"id"`
	N       uint64 `json:"n"`
	Seq     uint64 `json:"seq"`
	Entries uint64 `json:"entries"`
	Gaps    uint64 `json:"gaps"`
	Status  string `json:"status"`
}

// n returns the pooled N as an integer (it is exact, of any size).
func (s apiState) n() *big.Int {
	v, ok := new(big.Int).SetString(s.N.String(), 10)
	if !ok {
		return new(big.Int)
	}
	return v
}

func (s apiState) row(id string) (row, bool) {
	i := slices.IndexFunc(s.Table, func(r row) bool { return r.ID == id })
	if i < 0 {
		return row{}, false
	}
	return s.Table[i], true
}

// watcher polls the collector's /api/state and its /proc files, and times
// the probe worker's entries into the state.
type watcher struct {
	url    string // …/api/state?limit=2: the rows of the two workers whose ids sort first
	pid    int
	client *http.Client

	mu     sync.Mutex
	last   apiState
	at     time.Time // when last was read
	err    error     // the last poll's error, nil once one succeeds
	maxRSS uint64    // the collector's largest RSS seen since resetMax
	probe  *probe    // nil when no probe runs
}

func newWatcher(addr string, pid int) *watcher {
	return &watcher{url: "http://" + addr + "/api/state?limit=2", pid: pid, client: &http.Client{Timeout: 5 * time.Second}}
}

// run polls until ctx is done.
func (w *watcher) run(ctx context.Context) {
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		w.poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *watcher) poll(ctx context.Context) {
	s, err := w.get(ctx)
	now := time.Now()
	rss, _, _ := memory(w.pid)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.maxRSS = max(w.maxRSS, rss)
	if err != nil {
		w.err = err
		return
	}
	w.last, w.at, w.err = s, now, nil
	if w.probe != nil {
		if r, ok := s.row(probeID); ok {
			w.probe.seen(r.Seq, now)
		}
	}
}

func (w *watcher) get(ctx context.Context) (apiState, error) {
	var s apiState
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.url, nil)
	if err != nil {
		return s, err
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("GET %s: %s", w.url, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("GET %s: %w", w.url, err)
	}
	return s, nil
}

// state returns the last state read.
func (w *watcher) state() apiState {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// resetMax returns the largest RSS seen since the last call and starts
// again from the current one.
func (w *watcher) resetMax() uint64 {
	rss, _, _ := memory(w.pid)
	w.mu.Lock()
	defer w.mu.Unlock()
	m := max(w.maxRSS, rss)
	w.maxRSS = rss
	return m
}

// until polls until ok holds for a fresh state, and returns that state; it
// gives up after d with the last state and false.
func (w *watcher) until(ctx context.Context, d time.Duration, ok func(apiState) bool) (apiState, bool) {
	deadline := time.Now().Add(d)
	for {
		w.poll(ctx)
		w.mu.Lock()
		s, err := w.last, w.err
		w.mu.Unlock()
		if err == nil && ok(s) {
			return s, true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return s, false
		}
		select {
		case <-ctx.Done():
		case <-time.After(pollEvery):
		}
	}
}

// probe times a worker's entries from their append to the collector's
// summary.
type probe struct {
	sent []time.Time // sent[i]: when seq i+1 was appended
	done int         // the seqs seen in the summary
	lags []lag
}

type lag struct {
	sent time.Time
	d    time.Duration
}

// appended records that seq was appended at t (seqs come in order).
func (w *watcher) appended(seq uint64, t time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if int(seq) == len(w.probe.sent)+1 {
		w.probe.sent = append(w.probe.sent, t)
	}
}

// probed returns the probe entries appended so far, and those seen in the
// summary.
func (w *watcher) probed() (sent, seen uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return uint64(len(w.probe.sent)), uint64(w.probe.done)
}

// seen records that the summary shows the probe's entries up to seq.
func (p *probe) seen(seq uint64, at time.Time) {
	for ; p.done < int(seq) && p.done < len(p.sent); p.done++ {
		p.lags = append(p.lags, lag{sent: p.sent[p.done], d: at.Sub(p.sent[p.done])})
	}
}

// lagsIn returns the lags of the probe entries appended in [from, to).
func (w *watcher) lagsIn(from, to time.Time) []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []time.Duration
	for _, l := range w.probe.lags {
		if !l.sent.Before(from) && l.sent.Before(to) {
			out = append(out, l.d)
		}
	}
	return out
}

// quantile returns the q-quantile of ds (nearest rank), 0 for none.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}
