package operator

import (
	"context"
	"sync"

	"github.com/ironclaw/ironclaw/daemon/api"
)

// subscriberBuffer is how many events a subscriber may fall behind before
// it is told to re-read (api.Events).
const subscriberBuffer = 64

// Hub fans events out to subscribers. Publish never blocks: a subscriber
// that falls behind gets one overflow event instead of the ones it missed.
type Hub struct {
	mu   sync.Mutex // guards subs
	subs map[*sub]struct{}
}

type sub struct {
	ch       chan api.Event
	overflow bool // an overflow event is owed
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{subs: map[*sub]struct{}{}} }

// Publish sends e to every subscriber.
func (h *Hub) Publish(e api.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		if s.overflow {
			select {
			case s.ch <- api.Event{What: "overflow"}:
				s.overflow = false
			default:
				continue
			}
		}
		select {
		case s.ch <- e:
		default:
			s.overflow = true
		}
	}
}

// Subscribe returns a channel of events until ctx ends; it is then closed.
func (h *Hub) Subscribe(ctx context.Context) <-chan api.Event {
	s := &sub{ch: make(chan api.Event, subscriberBuffer)}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	context.AfterFunc(ctx, func() {
		h.mu.Lock()
		delete(h.subs, s)
		close(s.ch)
		h.mu.Unlock()
	})
	return s.ch
}

// Subscribers counts current subscribers (for tests and status).
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}
