package wire

// Kind says what a Message delivered by a bus subscription is.
type Kind int

const (
	// KindReport is a payload from the report channel: a ledger entry's
	// echo, or a seed-style anonymous batch.
	KindReport Kind = iota
	// KindPresence is a worker's heartbeat or goodbye (Presence).
	KindPresence
	// KindSubscribed marks a fresh (re)subscription: what was published
	// while the subscriber was away is lost for it.
	KindSubscribed
)

// Message is one delivery from a subscription to a job's channels.
type Message struct {
	Kind    Kind
	Payload []byte
}

// LedgerEntry is one entry of the ledger as stored: the worker whose
// stream holds it, its stream ID, the entry's JSON and its signature (empty
// in open mode).
type LedgerEntry struct {
	Worker  string
	ID      string
	Payload []byte
	Sig     string
}

// Cursor is a position in one worker's stream of the ledger: the entries
// after After (every entry when it is empty).
type Cursor struct {
	Worker, After string
}

// Signed is an entry ready to append: its JSON and its signature.
type Signed struct {
	Payload []byte
	Sig     string
}
