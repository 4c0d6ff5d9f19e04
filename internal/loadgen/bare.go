package loadgen

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/picluster/picluster/internal/redisbus"
	"github.com/picluster/picluster/internal/wire"
)

// The bare readers that a run measures the collector against.
const (
	BareChannel = "channel" // a subscriber of the report channel: redisbus.Tap
	BareLedger  = "ledger"  // a reader of the workers' streams, as the collector reads them, decoding nothing
)

// Ledger reads, like the collector's: streams per XREAD, entries per stream.
const (
	readKeys  = 256
	readCount = 128
)

// readLedger reads the streams of ids to their ends, over and over, with
// redisbus.ReadLedgers (one XREAD of up to 256 streams, 128 entries each,
// as the collector reads), and counts the entries until ctx is done. A
// pass that finds nothing waits a millisecond.
func readLedger(ctx context.Context, bus *redisbus.Bus, ids []string, received *atomic.Uint64) error {
	cursors := make([]wire.Cursor, len(ids))
	at := make(map[string]int, len(ids))
	for i, id := range ids {
		cursors[i] = wire.Cursor{Worker: id}
		at[id] = i
	}
	for ctx.Err() == nil {
		got := 0
		for start := 0; start < len(cursors); start += readKeys {
			es, err := bus.ReadLedgers(ctx, cursors[start:min(start+readKeys, len(cursors))], readCount)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			for _, e := range es {
				cursors[at[e.Worker]].After = e.ID // a stream's entries come in order
			}
			received.Add(uint64(len(es)))
			got += len(es)
		}
		if got == 0 {
			select {
			case <-ctx.Done():
			case <-time.After(time.Millisecond):
			}
		}
	}
	return nil
}
