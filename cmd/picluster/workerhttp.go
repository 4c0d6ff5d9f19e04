package main

import (
	"context"
	"fmt"

	"github.com/picluster/picluster/internal/web"
	"github.com/picluster/picluster/worker"
)

// serveWorker serves w's /healthz and /metrics on addr (none when addr is
// empty) until the returned stop is called.
func (e *env) serveWorker(ctx context.Context, addr string, w *worker.Worker) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	l, err := web.Listen(addr)
	if err != nil {
		return nil, err
	}
	srvCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	served := make(chan error, 1)
	go func() { served <- web.Serve(srvCtx, l, web.WorkerHandler(w)) }()
	fmt.Fprintf(e.logs, "worker metrics on http://%s/metrics\n", l.Addr())
	return func() { cancel(); <-served }, nil
}
