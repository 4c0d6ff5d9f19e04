// Package job runs a whole job in one process, as picluster run does:
// workers and a collector on one bus. It decides when the run ends and
// records why.
//
// A run ends at the target, when ctx ends (its cause, such as
// collector.StopDuration, says why; a plain cancellation is a signal), or
// when every worker has ended by itself (--max-batches, a job already done,
// a worker's error): collector.StopWorkers. The workers stop first and flush;
// the collector stops after them, so its final summary has their last
// entries. Run returns when every goroutine it started has ended.
package job

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/worker"
)

// Job is a collector and the workers that run with it.
type Job struct {
	Collector *collector.Collector
	Workers   []*worker.Worker
}

// Run runs the job until it ends (see the package doc). It returns nil for
// a normal end, whatever its reason (the collector's Summary.StoppedBy
// holds it), and otherwise every error: the workers' (a permanent bus
// error), the collector's (one that wraps collector.ErrStale when its final
// read failed), or that the collector never loaded the job before a time
// limit or the workers' end.
func (j Job) Run(ctx context.Context) error {
	colCtx, stopCollector := context.WithCancelCause(context.WithoutCancel(ctx))
	defer stopCollector(nil)
	workCtx, stopWorkers := context.WithCancelCause(ctx)
	defer stopWorkers(nil)

	var wg sync.WaitGroup
	errs := make([]error, len(j.Workers))
	for i, w := range j.Workers {
		wg.Go(func() {
			if err := w.Run(workCtx); err != nil {
				errs[i] = fmt.Errorf("worker %s: %w", w.ID(), err)
			}
		})
	}
	workersDone := make(chan struct{})
	go func() { wg.Wait(); close(workersDone) }()
	colDone := make(chan error, 1)
	go func() { colDone <- j.Collector.Run(colCtx) }()

	var colErr error
	select {
	case colErr = <-colDone: // the target, or the collector failed
		stopWorkers(collector.StopTarget)
		<-workersDone
		return errors.Join(append(errs, colErr)...)
	case <-ctx.Done():
		stopWorkers(context.Cause(ctx))
		<-workersDone
		stopCollector(context.Cause(ctx))
	case <-workersDone:
		select { // a summary of the job, not of a job still loading
		case <-j.Collector.Loaded():
		case colErr = <-colDone:
			return errors.Join(append(errs, colErr)...)
		case <-ctx.Done():
			stopCollector(context.Cause(ctx))
		}
		stopCollector(collector.StopWorkers) // no-op if stopped already
	}
	colErr = <-colDone
	switch {
	case colErr == nil, colErr == colCtx.Err():
		colErr = nil // a normal end; the collector recorded its cause
	case errors.Is(colErr, collector.ErrNoJob) && collector.StopSignal == causeOf(context.Cause(colCtx)):
		colErr = nil // Ctrl-C while waiting for the bus
	}
	return errors.Join(append(errs, colErr)...)
}

// causeOf returns the StopCause cause carries, StopSignal if none.
func causeOf(cause error) collector.StopCause {
	var s collector.StopCause
	if errors.As(cause, &s) {
		return s
	}
	return collector.StopSignal
}
