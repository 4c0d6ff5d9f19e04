package web

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/picluster/picluster/worker"
)

// WorkerSource is what a worker's server reads: a *worker.Worker.
type WorkerSource interface {
	Stats() worker.Stats
}

// WorkerHandler returns the routes of "picluster worker --http": /healthz
// and /metrics. Serve it with Listen and Serve, like Handler.
//
// /healthz answers 200 "ok <state>" while the worker is starting (waiting
// for Redis is normal, and keeps the samples it draws meanwhile) or
// sampling, and 503 once it has stopped: it fits both a liveness and a
// readiness probe.
func WorkerHandler(src WorkerSource) http.Handler {
	reg := newRegistry(src.Stats().Kernel)
	reg.MustRegister(workerMetrics{src: src})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		st := src.Stats().State
		if st == "stopped" {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "down", st)
			return
		}
		fmt.Fprintln(w, "ok", st)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}

// workerMetrics exposes a worker's Stats, read once per scrape.
type workerMetrics struct{ src WorkerSource }

var (
	wInfoDesc      = prometheus.NewDesc("picluster_worker_info", "Always 1; the labels name the worker and its sampling kernel.", []string{"worker", "kernel"}, nil)
	wSamplesDesc   = prometheus.NewDesc("picluster_worker_samples_total", "Samples this worker has drawn since it started.", nil, nil)
	wBatchesDesc   = prometheus.NewDesc("picluster_worker_batches_total", "Batches this worker has drawn since it started.", nil, nil)
	wPublishedDesc = prometheus.NewDesc("picluster_worker_reports_published_total", "Reports the bus accepted.", nil, nil)
	wPubErrDesc    = prometheus.NewDesc("picluster_worker_publish_errors_total", "Publish attempts the bus refused; each is retried with backoff.", nil, nil)
	wThreadsDesc   = prometheus.NewDesc("picluster_worker_threads", "Sampling threads.", nil, nil)
	wLastRateDesc  = prometheus.NewDesc("picluster_worker_last_batch_samples_per_second", "Sampling rate of the last batch, on all threads.", nil, nil)
	wSeqDesc       = prometheus.NewDesc("picluster_worker_seq", "Number of the last batch drawn (seq of its report).", nil, nil)
	wLagDesc       = prometheus.NewDesc("picluster_worker_publish_lag_seconds", "Time from the end of the last published batch to the bus's acknowledgement of its report.", nil, nil)
	wQueueDesc     = prometheus.NewDesc("picluster_worker_queue_depth", "Batches drawn and not yet on the bus; grows while the bus is unreachable.", nil, nil)
	wUpDesc        = prometheus.NewDesc("picluster_worker_sampling", "1 while the worker samples, 0 while it starts or after it stopped.", nil, nil)
)

func (workerMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{wInfoDesc, wSamplesDesc, wBatchesDesc, wPublishedDesc, wPubErrDesc, wThreadsDesc,
		wLastRateDesc, wSeqDesc, wLagDesc, wQueueDesc, wUpDesc} {
		ch <- d
	}
}

func (m workerMetrics) Collect(ch chan<- prometheus.Metric) {
	s := m.src.Stats()
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(wInfoDesc, 1, s.ID, s.Kernel)
	counter(wSamplesDesc, float64(s.Samples))
	counter(wBatchesDesc, float64(s.Batches))
	counter(wPublishedDesc, float64(s.Published))
	counter(wPubErrDesc, float64(s.PublishErrors))
	gauge(wThreadsDesc, float64(s.Threads))
	gauge(wLastRateDesc, s.SamplesPerS)
	gauge(wSeqDesc, float64(s.Seq))
	gauge(wLagDesc, s.PublishLag.Seconds())
	gauge(wQueueDesc, float64(s.QueueDepth))
	sampling := 0.0
	if s.State == "sampling" {
		sampling = 1
	}
	gauge(wUpDesc, sampling)
}
