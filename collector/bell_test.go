package collector

import (
	"testing"

	"github.com/picluster/picluster/internal/wire"
)

// The worker named by an entry's echo is found without decoding the entry,
// and with decoding when its id holds escapes.
func TestEchoWorker(t *testing.T) {
	e := wire.Entry{Job: "00000000000000a1", Seed: "00000000000000b2", Worker: "node-7", Seq: 1, N: 64, Hits: 50, Kernel: "go"}
	for _, id := range []string{"node-7", `quote"and\\slash`, "ünï"} {
		e.Worker = id
		if got, ok := echoWorker(wire.EncodeEntry(e)); !ok || got != id {
			t.Errorf("echoWorker of %q = %q, %v", id, got, ok)
		}
	}
	for _, junk := range []string{`{"v":2,`, `{"v":2,"worker":"`, `{"v":2,"job":"x","worker":""}`} {
		if got, ok := echoWorker([]byte(junk)); ok {
			t.Errorf("echoWorker(%s) = %q: want none", junk, got)
		}
	}
}
