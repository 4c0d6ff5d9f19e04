// Package collector pools the reports of a picluster job into one estimate
// of π and decides when the job is done.
//
// A Collector subscribes to the job's report channel, then rebuilds the job
// from the latest report of every worker recorded on the bus (and again after
// every reconnect, since pub/sub drops what is sent while a subscriber is
// away). Per worker it keeps the report with the highest seq; the pooled
// tally is the exact sum of the workers' cumulative totals plus every
// anonymous (seed-style) batch received while it listened. Counts are 128-bit
// (mcpi.Count), so the pool never overflows.
//
// Every report is validated (wire.Decode, then against the worker's previous
// report); a rejected one is counted by reason, logged once per sender and
// reason, and changes nothing. A duplicate or older report is not an error
// and changes nothing either.
//
// Summary also carries the cross-checks of the error bar (the SE implied by
// the scatter of the accepted chunks of samples, a χ² homogeneity test across
// workers), a per-worker table with z-scores, presence (alive, left,
// vanished, from reports and heartbeats) and flags for implausible workers.
// History keeps the estimate after every change of the pool, thinned to
// MaxHistory points, for plots and dashboards.
//
// When Config.TargetSE is set and the pooled standard error reaches it, Run
// writes the job state "done", publishes a stop on the control channel and
// returns nil. Run returns ctx's error when cancelled. Summary may be called
// from any goroutine at any time; it is how views read the collector, which
// has no presentation code of its own.
package collector
