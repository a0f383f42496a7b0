package dispatcher

import (
	"context"
	"fmt"
	"math/bits"
	"strings"
	"testing"
	"time"

	"github.com/pushd/pushd/internal/testwait"
)

// stored returns campaign id's counters as the store has them: what
// survives a kill -9 (the bookkeeping's in-memory deltas do not).
func (b *bundle) stored(t *testing.T, id string) Counters {
	t.Helper()
	rec, err := b.store.Campaign(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return rec.Counters
}

// addsUp checks received = sent + failed + filtered + dropped + cancelled.
func addsUp(t *testing.T, c Counters) {
	t.Helper()
	if sum := c.Sent + c.Failed + c.Filtered + c.Dropped + c.Cancelled; sum != c.Received {
		t.Errorf("counters %+v: %d resolved, %d received", c, sum, c.Received)
	}
}

// The clock never moves in these tests, so the bookkeeping never writes
// its in-memory deltas: what the store holds is what a kill -9 would
// leave. A batch routed and acked is counted as received in the store
// before its ack (a kill -9 after the ack used to lose it: 49,000
// received for 50,000 delivered), and each send is counted with its
// ledger bit.
func TestCountsAreInTheStoreWithTheLedgerBeforeTheAck(t *testing.T) {
	led := &fakeLedger{}
	b := setupFull(t, Config{}, nil, nil, led)
	lane := b.handle(t, makeBatch("c", 100), Normal)
	if acked, _ := lane.wait(t); acked != 1 {
		t.Fatal("lane delivery not acked")
	}
	if got := b.stored(t, "c").Received; got != 100 {
		t.Fatalf("received %d in the store once the batch was acked, want 100", got)
	}
	b.settle(t)
	key := messageKey(b.queues.created[0].value())
	b.d.signals.runResolved.WaitFor(t, func(k string) bool { return k == key })
	got := b.stored(t, "c")
	e, _ := led.LedgerEntry(context.Background(), key)
	set := 0
	for _, x := range e.Resolved {
		set += bits.OnesCount8(x)
	}
	if got.Sent != 100 || set != 100 {
		t.Errorf("store: %d sent, %d ledger bits set; want 100 and 100", got.Sent, set)
	}
	addsUp(t, got)
}

// A lane delivery that comes again (its ack was lost with the connection,
// or pushd was killed before it) and a producer's second copy of a batch
// are counted once.
func TestRedeliveredBatchIsReceivedOnce(t *testing.T) {
	b := setupFull(t, Config{}, nil, nil, &fakeLedger{})
	batch := makeBatch("c", 100)
	for range 3 {
		b.handle(t, batch, Normal).wait(t)
	}
	b.settle(t)
	testwait.For(t, waitLong, "every copy resolved", func() bool { return b.d.res.drain(context.Background()) })
	got := b.stored(t, "c")
	if got.Received != 100 || got.Sent != 100 {
		t.Errorf("counters %+v, want 100 received and sent", got)
	}
	if n := b.met.received.Load(); n != 100 {
		t.Errorf("received metric %d, want 100", n)
	}
	if n := len(b.ios.sends()) + len(b.and.sends()); n != 100 {
		t.Errorf("%d tokens sent, want 100", n)
	}
}

// Every way a recipient is resolved lands in one counter, so that
// received = sent + failed + filtered + dropped + cancelled once nothing
// is left: dead-lettered recipients (payload too large, render failure,
// retries exhausted) and invalid tokens as failed, recipients skipped by
// the ledger in none.
func TestCountersAddUp(t *testing.T) {
	tok := func(p string, i int) string { return p + fmt.Sprintf("%0*x", 64-len(p), i) }
	f := &fakeFilter{black: map[string]bool{tok("a", 0): true, tok("a", 1): true}}
	b := setupFull(t, Config{MaxAttempts: 1}, f, nil, &fakeLedger{})
	b.ios.prepare = func(n *Notification) error {
		switch n.Title {
		case "too large":
			return fmt.Errorf("%w: 5000 bytes", ErrPayloadTooLarge)
		case "panics":
			panic("renderer bug")
		}
		return nil
	}
	b.ios.send = func(_ context.Context, to *Recipient) Result {
		switch {
		case strings.HasPrefix(to.Token, "bad"):
			return Result{Outcome: InvalidToken, Reason: "Unregistered"}
		case strings.HasPrefix(to.Token, "dead"):
			return Result{Outcome: Failed, Status: 400, Reason: "BadTopic"}
		case strings.HasPrefix(to.Token, "e"):
			return Result{Outcome: RetryLater, Status: 503} // dead-lettered: MaxAttempts 1
		}
		return Result{Outcome: Sent}
	}
	batches := map[string]*Batch{}
	add := func(id string, batch *Batch) *Batch {
		batch.BatchID = "c/" + id
		batches[id] = batch
		return batch
	}
	mixed := add("mixed", iosBatch("c", "a", 10)) // 2 blacklisted, 2 malformed, 6 sent
	mixed.Recipients[2].Token, mixed.Recipients[3].Token = "not-hex", "x"
	add("too-large", iosBatch("c", "b", 5)).Notification.Title = "too large"
	add("panics", iosBatch("c", "c", 5)).Notification.Title = "panics"
	past := time.Now().Add(-time.Hour)
	add("expired", iosBatch("c", "d", 5)).ExpiresAt = &past
	failures := add("failures", iosBatch("c", "bad", 3)) // 3 invalid, 3 failed, 4 retries exhausted
	failures.Recipients = append(failures.Recipients, append(iosBatch("c", "dead", 3).Recipients, iosBatch("c", "e", 4).Recipients...)...)
	for _, id := range []string{"mixed", "too-large", "panics", "expired", "failures", "mixed"} { // mixed twice: a copy
		b.handle(t, batches[id], Normal).wait(t)
	}
	b.settle(t)
	testwait.For(t, waitLong, "every run resolved", func() bool { return b.d.res.drain(context.Background()) })

	want := Counters{Received: 35, Sent: 6, Filtered: 2, Dropped: 2 + 5, Failed: 5 + 5 + 3 + 3 + 4}
	if got := b.stored(t, "c"); got != want {
		t.Errorf("counters %+v, want %+v", got, want)
	}
	addsUp(t, b.stored(t, "c"))

	// A cancelled campaign's batches: received and cancelled, at the lane
	// and in its queue.
	b.handle(t, iosBatch("x", "f", 4), Normal).wait(t)
	if _, err := b.d.CancelCampaign(context.Background(), "x"); err != nil {
		t.Fatal(err)
	}
	b.handle(t, iosBatch("x", "a", 3), Normal).wait(t)
	b.settle(t)
	if got := b.stored(t, "x"); got.Received != 7 || got.Cancelled+got.Sent != 7 {
		t.Errorf("cancelled campaign's counters %+v, want 7 received, cancelled or sent", got)
	}
	addsUp(t, b.stored(t, "x"))
}
