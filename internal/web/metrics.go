package web

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics exposes the collector's Snapshot to Prometheus, read once per
// scrape: aggregates over every worker, and per-worker series for the
// MetricsTopK fastest only, so a scrape stays small at any size of job.
type metrics struct{ src Source }

var (
	samplesDesc = prometheus.NewDesc("picluster_samples_total", "Samples pooled into the estimate.", nil, nil)
	hitsDesc    = prometheus.NewDesc("picluster_hits_total", "Samples inside the quarter circle.", nil, nil)
	reportsDesc = prometheus.NewDesc("picluster_reports_total", "Reports received, by result and reason.", []string{"result", "reason"}, nil)
	piDesc      = prometheus.NewDesc("picluster_pi_estimate", "The pooled estimate of π.", nil, nil)
	seDesc      = prometheus.NewDesc("picluster_pi_stderr", "The standard error of the estimate.", nil, nil)
	rateDesc    = prometheus.NewDesc("picluster_samples_per_second", "Samples per second pooled since the collector started.", nil, nil)
	workersDesc = prometheus.NewDesc("picluster_workers", "Workers by presence status.", []string{"status"}, nil)
	flaggedDesc = prometheus.NewDesc("picluster_workers_flagged", "Workers whose tally is implausible.", nil, nil)
	wRateDesc   = prometheus.NewDesc("picluster_worker_samples_per_second", "The sampling rate in its last batch of each of the "+strconv.Itoa(MetricsTopK)+" fastest workers.", []string{"worker"}, nil)
	verDesc     = prometheus.NewDesc("picluster_verified_entries_total", "Ledger entries replayed, by result.", []string{"result"}, nil)
	pendDesc    = prometheus.NewDesc("picluster_verification_pending_samples", "Samples in entries waiting for replay.", nil, nil)
	quarDesc    = prometheus.NewDesc("picluster_workers_quarantined", "Workers proven wrong by replay, out of the estimate.", nil, nil)
	wZDesc      = prometheus.NewDesc("picluster_worker_z", "The z-score against the pooled estimate of the others of each of the "+strconv.Itoa(MetricsTopK)+" fastest workers.", []string{"worker"}, nil)
	stopDesc    = prometheus.NewDesc("picluster_stopped", "1, labelled with the reason (target, duration, signal, workers, error), once the collector has stopped.", []string{"reason"}, nil)
	staleDesc   = prometheus.NewDesc("picluster_summary_stale", "1 when the collector's final read of the ledger failed: the totals may miss entries.", nil, nil)
)

func (metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{samplesDesc, hitsDesc, reportsDesc, piDesc, seDesc, rateDesc, workersDesc, flaggedDesc, verDesc, pendDesc, quarDesc, wRateDesc, wZDesc, stopDesc, staleDesc} {
		ch <- d
	}
}

func (m metrics) Collect(ch chan<- prometheus.Metric) {
	snap := m.src.Snapshot()
	s := &snap.Summary
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter(samplesDesc, s.N.Float64())
	counter(hitsDesc, s.Hits.Float64())
	counter(reportsDesc, float64(s.Accepted), "accepted", "")
	for reason, n := range s.RejectedBy {
		counter(reportsDesc, float64(n), "rejected", reason)
	}
	gauge(piDesc, float64(s.Pi))
	gauge(seDesc, float64(s.StdErr))
	gauge(rateDesc, float64(s.SamplesPerS))
	counter(verDesc, float64(s.Verification.Verified), "exact")
	counter(verDesc, float64(s.Verification.Failed), "mismatch")
	gauge(pendDesc, float64(s.Verification.PendingN))
	gauge(quarDesc, float64(max(s.WorkersByStatus["quarantined"], len(s.Quarantined)))) // Quarantined lists the first collector.MaxListed
	for _, w := range snap.Fastest(MetricsTopK) {
		gauge(wRateDesc, float64(w.SamplesPerS), w.ID)
		gauge(wZDesc, float64(w.Z), w.ID)
	}
	for st, n := range s.WorkersByStatus {
		gauge(workersDesc, float64(n), st)
	}
	gauge(flaggedDesc, float64(max(s.FlaggedCount, len(s.Flagged))))
	if s.StoppedBy != "" {
		gauge(stopDesc, 1, s.StoppedBy)
	}
	stale := 0.0
	if s.Stale != "" {
		stale = 1
	}
	gauge(staleDesc, stale)
}
