package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/internal/testwait"
)

// TestWriteGateServesTheHighLaneFirst: while a write holds the gate, a
// high-lane write that comes after normal ones is handed the gate before
// them; the normal ones then go first come first served.
func TestWriteGateServesTheHighLaneFirst(t *testing.T) {
	var g writeGate
	if err := g.acquire(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	order := make(chan string, 3)
	enter := func(name string, ctx context.Context) {
		go func() {
			if err := g.acquireFor(ctx); err != nil {
				t.Error(err)
				return
			}
			order <- name
			g.release()
		}()
	}
	// Each waits before the next comes.
	enter("normal-1", context.Background())
	testwait.For(t, 10*time.Second, "normal-1 waiting", func() bool { return g.waiters() == 1 })
	enter("normal-2", context.Background())
	testwait.For(t, 10*time.Second, "normal-2 waiting", func() bool { return g.waiters() == 2 })
	enter("high", dispatcher.WithLane(context.Background(), dispatcher.High))
	testwait.For(t, 10*time.Second, "high waiting", func() bool { return g.waiters() == 3 })
	g.release()
	want := []string{"high", "normal-1", "normal-2"}
	for i, w := range want {
		if got := <-order; got != w {
			t.Fatalf("write %d through the gate: %s, want %s (order %v)", i+1, got, w, want)
		}
	}
	// All released: the gate is open again.
	if err := g.acquire(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	g.release()
}

// TestWriteGateWaiterGivesUp: a waiter whose context ends leaves the
// queue without the gate, and the gate still passes to the next.
func TestWriteGateWaiterGivesUp(t *testing.T) {
	var g writeGate
	if err := g.acquire(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() { gaveUp <- g.acquire(ctx, true) }()
	testwait.For(t, 10*time.Second, "waiting", func() bool { return g.waiters() == 1 })
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("acquire after cancel: %v, want context.Canceled", err)
	}
	if n := g.waiters(); n != 0 {
		t.Fatalf("%d waiters after giving up, want 0", n)
	}
	next := make(chan error, 1)
	go func() { next <- g.acquire(context.Background(), false) }()
	testwait.For(t, 10*time.Second, "next waiting", func() bool { return g.waiters() == 1 })
	g.release()
	if err := <-next; err != nil {
		t.Fatal(err)
	}
	g.release()
}

// TestSQLiteWritesGoThroughTheGate: on SQLite the ledger's writes wait
// for the write gate, so that its order (high lane first) is the order
// they get the one write connection in.
func TestSQLiteWritesGoThroughTheGate(t *testing.T) {
	s, _ := setupSQLite(t)
	ctx := context.Background()
	if _, err := s.EnsureCampaign(ctx, "c", 0); err != nil {
		t.Fatal(err)
	}
	if err := s.gate.acquire(ctx, false); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.RecordReceived(dispatcher.WithLane(ctx, dispatcher.High), "k", "c", nil, dispatcher.Counters{Received: 1})
		done <- err
	}()
	testwait.For(t, 10*time.Second, "the write waiting for the gate", func() bool { return s.gate.waiters() == 1 })
	s.gate.release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
