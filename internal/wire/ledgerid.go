package wire

import (
	"fmt"
	"strconv"
	"strings"
)

// ID is a position in a worker's stream of the ledger: a Redis stream ID
// "ms-seq", where ms is the append time in Unix milliseconds by the Redis
// server's clock. The zero ID is before every entry.
type ID struct {
	Ms, Seq uint64
}

// ParseID reads "ms-seq" (or "0" for the start).
func ParseID(s string) (ID, error) {
	if s == "" || s == "0" {
		return ID{}, nil
	}
	a, b, ok := strings.Cut(s, "-")
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return ID{}, fmt.Errorf("ledger id %q: want ms-seq", s)
	}
	return ID{ms, seq}, nil
}

// String writes id as Redis does.
func (id ID) String() string {
	return strconv.FormatUint(id.Ms, 10) + "-" + strconv.FormatUint(id.Seq, 10)
}

// Less reports whether id comes before o.
func (id ID) Less(o ID) bool { return id.Ms < o.Ms || id.Ms == o.Ms && id.Seq < o.Seq }

// Later reports whether ledger position a comes after b; an unreadable b
// (none yet) is before everything.
func Later(a, b string) bool {
	ia, err := ParseID(a)
	if err != nil {
		return false
	}
	ib, err := ParseID(b)
	if err != nil {
		return true
	}
	return ib.Less(ia)
}

// The fields of the checkpoint hash {channel}:checkpoint, which only
// collectors write: its mark (every entry of every worker's stream with an
// ID before the mark is credited in it), and one field per worker
// (CheckpointWorker + id) holding its Credit.
const (
	CheckpointPos    = "pos"
	CheckpointWorker = "w:"
)
