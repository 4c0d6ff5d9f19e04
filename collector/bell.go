package collector

import "sync"

// maxHot bounds the streams a bell remembers between two reads; past it,
// the bell asks for a sweep of every stream instead.
const maxHot = 4096

// bell collects the workers whose streams have news, from the echoes of
// their entries on the report channel, so that the reader reads those
// streams at once instead of at its next sweep. A (re)subscription asks for
// a sweep: echoes published meanwhile were lost. What anyone may publish
// can only make the reader look at a stream, never credit it.
type bell struct {
	ring chan struct{} // poked, without blocking, at every change

	mu    sync.Mutex
	hot   map[string]struct{}
	sweep bool
}

func newBell() *bell {
	return &bell{ring: make(chan struct{}, 1), hot: make(map[string]struct{})}
}

// poke says worker's stream has news.
func (b *bell) poke(worker string) {
	b.mu.Lock()
	if len(b.hot) < maxHot {
		b.hot[worker] = struct{}{}
	} else {
		b.sweep = true
	}
	b.mu.Unlock()
	b.signal()
}

// requestSweep asks the reader to read every stream.
func (b *bell) requestSweep() {
	b.mu.Lock()
	b.sweep = true
	b.mu.Unlock()
	b.signal()
}

func (b *bell) signal() {
	select {
	case b.ring <- struct{}{}:
	default:
	}
}

// takeHot returns and forgets the streams poked, leaving a sweep asked for
// asked.
func (b *bell) takeHot() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.hot) == 0 {
		return nil
	}
	workers := make([]string, 0, len(b.hot))
	for w := range b.hot {
		workers = append(workers, w)
	}
	clear(b.hot)
	return workers
}

// take returns and forgets the streams poked, and whether a sweep was asked.
func (b *bell) take() (workers []string, sweep bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	workers = make([]string, 0, len(b.hot))
	for w := range b.hot {
		workers = append(workers, w)
	}
	clear(b.hot)
	sweep, b.sweep = b.sweep, false
	return workers, sweep
}
