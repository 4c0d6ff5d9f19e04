package collector

import "sync"

// maxHot bounds the streams a bell remembers between two reads; those
// announced past it are read at the next sweep.
const maxHot = 16384

// bell collects the workers whose streams have news, from the echoes of
// their entries on the report channel, so that the reader reads those
// streams at once instead of at its next sweep. What anyone may publish can
// only make the reader look at a stream (at most maxHot between two reads),
// never credit it.
type bell struct {
	ring chan struct{} // poked, without blocking, at every change

	mu  sync.Mutex
	hot map[string]struct{}
}

func newBell() *bell {
	return &bell{ring: make(chan struct{}, 1), hot: make(map[string]struct{})}
}

// poke says worker's stream has news.
func (b *bell) poke(worker string) {
	b.mu.Lock()
	if len(b.hot) < maxHot {
		b.hot[worker] = struct{}{}
	}
	b.mu.Unlock()
	b.signal()
}

func (b *bell) signal() {
	select {
	case b.ring <- struct{}{}:
	default:
	}
}

// take returns and forgets the streams poked.
func (b *bell) take() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	workers := make([]string, 0, len(b.hot))
	for w := range b.hot {
		workers = append(workers, w)
	}
	clear(b.hot)
	return workers
}
