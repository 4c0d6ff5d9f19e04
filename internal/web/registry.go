package web

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/picluster/picluster/internal/buildinfo"
)

// newRegistry returns the registry every picluster /metrics starts from: the
// Go runtime (go_*) and process (process_*) collectors, and
// picluster_build_info{version,goversion,kernel} = 1, where kernel is the
// sampling kernel of this process (a worker's own, the collector's the one
// "auto" picks on this CPU).
func newRegistry(kernel string) *prometheus.Registry {
	in := buildinfo.Read()
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "picluster_build_info",
		Help:        "Always 1; the labels say which picluster this is, built by which Go, sampling with which kernel.",
		ConstLabels: prometheus.Labels{"version": in.Version, "goversion": in.GoVersion, "kernel": kernel},
	})
	build.Set(1)
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		build,
	)
	return reg
}
