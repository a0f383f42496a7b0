// Package testsignal lets code under test announce that it reached a known
// point (a ledger flush, a run resolved, a consumer started), so that tests
// order events on those announcements instead of sleeping. It follows
// riverqueue/river's testsignal.
//
// A Signal is inert until a test calls Init: in production Signal costs a
// nil check and nothing more. It is not for production coordination.
package testsignal

import (
	"testing"
	"time"
)

// capacity is how many signals may be raised before a test takes them. A
// test that raises more without waiting has a bug; Signal then panics
// rather than block the code under test.
const capacity = 10000

// Timeout is how long Wait waits before failing the test.
const Timeout = 10 * time.Second

// Signal is one kind of announcement carrying values of type T. The zero
// value is inert.
type Signal[T any] struct {
	ch chan T
}

// Init makes the signal live. Call it before the code under test starts.
func (s *Signal[T]) Init() { s.ch = make(chan T, capacity) }

// Signal announces v if the signal is live; it never blocks.
func (s *Signal[T]) Signal(v T) {
	if s.ch == nil {
		return
	}
	select {
	case s.ch <- v:
	default:
		panic("testsignal: more signals raised than a test took; wait for them or raise fewer")
	}
}

// Wait returns the next announced value, failing the test after Timeout.
func (s *Signal[T]) Wait(t testing.TB) T {
	t.Helper()
	if s.ch == nil {
		t.Fatal("testsignal: Wait on a signal that was never Init-ed")
	}
	timer := time.NewTimer(Timeout)
	defer timer.Stop()
	select {
	case v := <-s.ch:
		return v
	case <-timer.C:
		t.Fatalf("testsignal: no signal within %v", Timeout)
		var zero T
		return zero
	}
}

// WaitFor takes announced values until one satisfies match and returns it,
// failing the test after Timeout.
func (s *Signal[T]) WaitFor(t testing.TB, match func(T) bool) T {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for {
		if s.ch == nil {
			t.Fatal("testsignal: WaitFor on a signal that was never Init-ed")
		}
		timer := time.NewTimer(time.Until(deadline))
		select {
		case v := <-s.ch:
			timer.Stop()
			if match(v) {
				return v
			}
		case <-timer.C:
			t.Fatalf("testsignal: no matching signal within %v", Timeout)
			var zero T
			return zero
		}
	}
}

// Pending reports how many announcements wait to be taken.
func (s *Signal[T]) Pending() int { return len(s.ch) }
