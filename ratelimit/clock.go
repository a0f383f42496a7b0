package ratelimit

import (
	"container/heap"
	"sync"
	"time"
)

// Clock is the time source of a Bucket. Production code uses SystemClock;
// tests and simulations inject a ManualClock so that time moves only when
// they say so.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a Timer that delivers the time on its channel once
	// d has passed. A d of zero or less fires at once.
	NewTimer(d time.Duration) Timer
}

// Timer is a one-shot timer made by a Clock.
type Timer interface {
	// C returns the channel on which the timer delivers its time when it
	// fires. It receives at most one value.
	C() <-chan time.Time
	// Stop prevents the timer from firing. It reports whether it stopped
	// the timer, false if the timer had already fired or been stopped.
	Stop() bool
}

// SystemClock returns the Clock of the operating system: time.Now and
// time.NewTimer.
func SystemClock() Clock { return systemClock{} }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) NewTimer(d time.Duration) Timer { return systemTimer{time.NewTimer(d)} }

type systemTimer struct{ t *time.Timer }

func (t systemTimer) C() <-chan time.Time { return t.t.C }

func (t systemTimer) Stop() bool { return t.t.Stop() }

// ManualClock is a Clock that moves only when Advance is called, for tests,
// examples and simulations. Its timers fire from inside Advance, in the order
// of their deadlines. It is safe for concurrent use.
//
// Waiters tells a test how many timers are pending, which is how it knows
// that the goroutines it started are blocked (for instance in Bucket.Wait)
// before it moves the clock, without sleeping.
type ManualClock struct {
	mu     sync.Mutex
	now    time.Time
	seq    uint64 // creation order, to break ties between equal deadlines
	timers timerHeap
}

// NewManualClock returns a ManualClock that reads start until it is advanced.
func NewManualClock(start time.Time) *ManualClock {
	return &ManualClock{now: start}
}

// Now returns the clock's current time.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer returns a Timer that fires when the clock has been advanced by d
// or more. A d of zero or less fires at once and is never pending.
func (c *ManualClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &manualTimer{clock: c, ch: make(chan time.Time, 1), when: c.now.Add(d), index: -1}
	if d <= 0 {
		t.ch <- c.now
		return t
	}
	c.seq++
	t.seq = c.seq
	heap.Push(&c.timers, t)
	return t
}

// Advance moves the clock forward by d and fires, in deadline order (ties in
// creation order), every timer due by the new time. Each fired timer's
// channel receives the timer's deadline. Advance panics if d is negative: a
// ManualClock never goes back.
func (c *ManualClock) Advance(d time.Duration) {
	if d < 0 {
		panic("ratelimit: ManualClock.Advance with a negative duration")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	end := c.now.Add(d)
	for len(c.timers) > 0 && !c.timers[0].when.After(end) {
		t := heap.Pop(&c.timers).(*manualTimer)
		t.ch <- t.when // never blocks: the channel has room for the one value
	}
	c.now = end
}

// Waiters returns how many timers are pending: made, not yet fired and not
// stopped. A goroutine blocked in Bucket.Wait holds exactly one. Right after
// a Bucket.Set, or a Wait given up, the waiters whose token moved swap their
// timer for a new one, so the count can lag for a moment.
func (c *ManualClock) Waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

type manualTimer struct {
	clock *ManualClock
	ch    chan time.Time
	when  time.Time
	seq   uint64
	index int // in clock.timers; -1 once fired or stopped
}

func (t *manualTimer) C() <-chan time.Time { return t.ch }

func (t *manualTimer) Stop() bool {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	if t.index < 0 {
		return false
	}
	heap.Remove(&t.clock.timers, t.index)
	return true
}

// timerHeap orders pending timers by deadline, then by creation.
type timerHeap []*manualTimer

func (h timerHeap) Len() int { return len(h) }

func (h timerHeap) Less(i, j int) bool {
	if !h[i].when.Equal(h[j].when) {
		return h[i].when.Before(h[j].when)
	}
	return h[i].seq < h[j].seq
}

func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h *timerHeap) Push(x any) {
	t := x.(*manualTimer)
	t.index = len(*h)
	*h = append(*h, t)
}

func (h *timerHeap) Pop() any {
	old := *h
	n := len(old)
	t := old[n-1]
	old[n-1] = nil
	t.index = -1
	*h = old[:n-1]
	return t
}
