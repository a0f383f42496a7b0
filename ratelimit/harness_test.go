package ratelimit

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// epoch returns where every test's ManualClock starts.
func epoch() time.Time { return time.Date(2026, 11, 26, 22, 0, 0, 0, time.UTC) }

// harness drives goroutines that wait on one Bucket with a ManualClock, and
// records what each Wait returned.
type harness struct {
	t     *testing.T
	clock *ManualClock
	b     *Bucket
	ctx   context.Context

	wg   sync.WaitGroup
	live atomic.Int64 // goroutines started and not finished

	mu      sync.Mutex
	results []result
	cancels []context.CancelFunc // by waiter id
	dones   []chan struct{}      // by waiter id, closed when the goroutine ends
}

// result is what one Wait returned.
type result struct {
	id     int           // the goroutine, in the order started
	at     time.Time     // clock time at the call plus waited: when the token came due
	waited time.Duration // as returned
	err    error
}

// setup returns a harness around a new bucket. Goroutines still waiting when
// the test ends are released by cancelling their context and are waited for.
func setup(t *testing.T, perSecond float64, burst int) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	clock := NewManualClock(epoch())
	h := &harness{t: t, clock: clock, b: NewBucket(perSecond, burst, clock), ctx: ctx}
	t.Cleanup(func() {
		cancel()
		h.wg.Wait()
	})
	return h
}

// start starts a goroutine that calls Wait n times, each with a context of
// its own that cancel(id) cancels, and returns its id.
func (h *harness) start(n int) int {
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan struct{})
	h.mu.Lock()
	id := len(h.cancels)
	h.cancels = append(h.cancels, cancel)
	h.dones = append(h.dones, done)
	h.mu.Unlock()

	h.live.Add(1)
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer close(done)
		defer h.live.Add(-1)
		defer cancel()
		for range n {
			start := h.clock.Now() // the clock stands still until every goroutine is blocked
			waited, err := h.b.Wait(ctx)
			h.mu.Lock()
			h.results = append(h.results, result{id: id, at: start.Add(waited), waited: waited, err: err})
			h.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return id
}

// startEach starts n goroutines that wait once, one after the other, each
// blocked (or served) before the next starts, so they queue in id order.
func (h *harness) startEach(n int) {
	h.t.Helper()
	for range n {
		h.start(1)
		h.settle()
	}
}

// cancel cancels waiter id's context and checks that its goroutine returns
// promptly, without the clock moving.
func (h *harness) cancel(id int) {
	h.t.Helper()
	h.mu.Lock()
	cancel, done := h.cancels[id], h.dones[id]
	h.mu.Unlock()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		h.t.Fatalf("waiter %d did not return within 5s of its context being cancelled", id)
	}
	h.settle()
}

// settle waits, polling in real time with a deadline, until every live
// goroutine is blocked in Wait on a pending timer and has seen the latest
// change of its due time. Until then the test must not move the clock.
func (h *harness) settle() {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !h.quiet() {
		if time.Now().After(deadline) {
			h.t.Fatalf("goroutines did not block within 10s: %d live, %d pending timers", h.live.Load(), h.clock.Waiters())
		}
		runtime.Gosched()
	}
}

func (h *harness) quiet() bool {
	live := h.live.Load() // read first: it only goes down
	h.b.mu.Lock()
	defer h.b.mu.Unlock()
	if int64(h.b.n) != live {
		return false // someone is outside Wait, or about to leave it
	}
	for w := h.b.head; w != nil; w = w.next {
		if w.notified {
			return false
		}
	}
	return h.clock.Waiters() == h.b.n
}

// snapshot returns a copy of the results so far.
func (h *harness) snapshot() []result {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]result(nil), h.results...)
}

// count returns how many Waits returned a token and how many an error.
func (h *harness) count() (granted, failed int) {
	for _, r := range h.snapshot() {
		if r.err == nil {
			granted++
		} else {
			failed++
		}
	}
	return granted, failed
}

// nextTimer returns the deadline of c's earliest pending timer, and false if
// none is pending.
func nextTimer(c *ManualClock) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.timers) == 0 {
		return time.Time{}, false
	}
	return c.timers[0].when, true
}

// runUntil moves the clock from one pending timer to the next, each time
// once every goroutine is blocked (settle), until the next timer is due after
// end or none is pending; then it moves the clock to end. Every token due by
// end is handed out, in due order, each at its due time exactly.
func (h *harness) runUntil(end time.Time) {
	h.t.Helper()
	h.settle()
	for {
		next, ok := nextTimer(h.clock)
		if !ok || next.After(end) {
			break
		}
		h.clock.Advance(next.Sub(h.clock.Now()))
		h.settle()
	}
	h.clock.Advance(end.Sub(h.clock.Now()))
	h.settle()
}

// granted returns when each token handed out so far came due, sorted.
func (h *harness) granted() []time.Time {
	var at []time.Time
	for _, r := range h.snapshot() {
		if r.err == nil {
			at = append(at, r.at)
		}
	}
	slices.SortFunc(at, time.Time.Compare)
	return at
}
