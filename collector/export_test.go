package collector

import (
	"context"

	"github.com/picluster/picluster/internal/wire"
)

// SetJob sets the job a collector that does not Run credits entries for.
func (c *Collector) SetJob(s wire.State) {
	c.mu.Lock()
	c.job = s
	c.mu.Unlock()
}

// Credit credits ledger entries as Run does when it reads them.
func (c *Collector) Credit(es ...wire.LedgerEntry) bool { return c.creditAll(context.Background(), es) }

// Credited returns how many entries the collector has credited.
func (c *Collector) Credited() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pool.accepted
}

// Rebuild builds and publishes a snapshot, as Run's tick does.
func (c *Collector) Rebuild() *Snapshot { return c.refresh() }
