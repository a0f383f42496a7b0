// Package testwait is the one polling helper of pushd's tests: wait until a
// condition holds, or fail the test naming what it waited for.
//
// It is for conditions that no signal announces (a count at the simulator,
// a queue length at the broker, an HTTP answer). Where the code under test
// can say when something happened, a channel or a test signal is better:
// it orders events instead of sampling them.
package testwait

import (
	"testing"
	"time"
)

// Interval is how often For checks its condition.
const Interval = 5 * time.Millisecond

// For calls cond every Interval until it returns true, and fails the test
// with "timed out after <within> waiting for <what>" if it has not after
// within.
func For(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	if cond() {
		return
	}
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(Interval)
	defer tick.Stop()
	for {
		select {
		case <-deadline.C:
			if cond() {
				return
			}
			t.Fatalf("timed out after %v waiting for %s", within, what)
			return
		case <-tick.C:
			if cond() {
				return
			}
		}
	}
}
