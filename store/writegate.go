package store

import (
	"context"
	"slices"
	"sync"

	"github.com/pushd/pushd/dispatcher"
)

// writeGate hands SQLite's one write connection to the store's write
// transactions in turn, those of the high lane first (dispatcher.LaneOf
// their context): a high-lane batch's writes before its first send then
// wait for the transaction in progress only, not behind the ledger writes
// of a draining campaign queued at the time (database/sql hands a freed
// connection to a waiter picked at random). The high lane is small and
// rate-bound, so the others are not starved. The zero value is open.
type writeGate struct {
	mu   sync.Mutex
	busy bool
	// waiting holds a channel per waiter, closed to hand it the gate:
	// [0] the high lane's, [1] the others', each first come first served.
	waiting [2][]chan struct{}
}

// acquire waits for the gate; high puts the caller before every waiter
// that is not high. It returns ctx's error, not holding the gate, when ctx
// ends first.
func (g *writeGate) acquire(ctx context.Context, high bool) error {
	g.mu.Lock()
	if !g.busy {
		g.busy = true
		g.mu.Unlock()
		return nil
	}
	q := 1
	if high {
		q = 0
	}
	ch := make(chan struct{})
	g.waiting[q] = append(g.waiting[q], ch)
	g.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	if i := slices.Index(g.waiting[q], ch); i >= 0 {
		g.waiting[q] = slices.Delete(g.waiting[q], i, i+1)
		g.mu.Unlock()
		return ctx.Err()
	}
	g.mu.Unlock()
	g.release() // handed the gate as ctx ended: pass it on
	return ctx.Err()
}

// release hands the gate to the next waiter, high lane first, or opens it.
func (g *writeGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for q := range g.waiting {
		if len(g.waiting[q]) > 0 {
			close(g.waiting[q][0])
			g.waiting[q] = slices.Delete(g.waiting[q], 0, 1)
			return
		}
	}
	g.busy = false
}

// waiters returns how many wait for the gate, for tests.
func (g *writeGate) waiters() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.waiting[0]) + len(g.waiting[1])
}

// acquireFor acquires the gate for the lane ctx works for.
func (g *writeGate) acquireFor(ctx context.Context) error {
	return g.acquire(ctx, dispatcher.LaneOf(ctx) == dispatcher.High)
}
