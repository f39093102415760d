package chaos

import (
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Event is one entry of a run's timeline: a fault injected, the broker back
// up, or a client symptom worth correlating with them.
type Event struct {
	At   time.Duration // since the workload started
	What string
}

func (e Event) String() string { return fmt.Sprintf("%9.3fs %s", e.At.Seconds(), e.What) }

// timeline collects events from the fault injector and the clients.
type timeline struct {
	clock  clock
	logger *slog.Logger

	mu     sync.Mutex
	events []Event
}

func (t *timeline) add(format string, args ...any) {
	e := Event{At: time.Duration(t.clock.now()), What: fmt.Sprintf(format, args...)}
	t.logger.Debug("chaos: " + e.What)
	t.mu.Lock()
	t.events = append(t.events, e)
	t.mu.Unlock()
}

func (t *timeline) snapshot() []Event {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Event(nil), t.events...)
}
