package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushd/pushd/internal/testwait"
)

func TestRedeliveredBatchSkipsWhatWasResolved(t *testing.T) {
	led := &fakeLedger{}
	b := setupFull(t, Config{Workers: [numPlatforms]int{IOS: 1, Android: 1}}, nil, nil, led)
	gate := make(chan struct{})
	var n atomic.Int32
	b.ios.send = func(ctx context.Context, _ *Recipient) Result {
		if n.Add(1) == 4 {
			<-gate // the fourth send hangs: the connection is lost meanwhile
		}
		return Result{Outcome: Sent}
	}
	c, err := b.d.campaigns.observe(context.Background(), iosBatch("c", "a", 1), nil)
	if err != nil {
		t.Fatal(err)
	}
	batch := iosBatch("c", "a", 10)
	first := newDelivery(t, batch)
	go processDirect(b.d, first, mustDecode(t, first.body), c)
	testwait.For(t, waitLong, "three sent, the fourth in flight", func() bool { return n.Load() == 4 })
	close(first.lost) // the channel dies: the broker will redeliver
	close(gate)
	testwait.For(t, waitLong, "lost run finished", func() bool { return b.d.res.drain(context.Background()) })
	if got := b.ios.total(); got != 4 {
		t.Fatalf("%d sends before the redelivery, want 4", got)
	}
	// The broker delivers the same message again.
	again := newDelivery(t, batch)
	processDirect(b.d, again, mustDecode(t, again.body), c)
	if acked, _ := again.wait(t); acked != 1 {
		t.Fatal("redelivery not acked")
	}
	b.waitResolved(t, again)
	for tok, k := range b.ios.sends() {
		if k != 1 {
			t.Errorf("%s sent %d times", ShortToken(tok), k)
		}
	}
	if got := b.ios.total(); got != 10 {
		t.Errorf("%d sends in all, want 10", got)
	}
	if got := b.met.skipped.Load(); got != 4 {
		t.Errorf("%d recipients skipped by the ledger, want 4", got)
	}
	// A third copy, after the ack: everything is skipped.
	third := newDelivery(t, batch)
	processDirect(b.d, third, mustDecode(t, third.body), c)
	third.wait(t)
	if got := b.ios.total(); got != 10 {
		t.Errorf("a copy of an acked batch was sent again (%d sends)", got)
	}
}

func TestIdenticalCopyIsPutBackWhileTheFirstRuns(t *testing.T) {
	led := &fakeLedger{}
	// Enough workers that the first copy is wholly submitted, and its
	// consumer free for the second, while one send hangs.
	b := setupFull(t, Config{}, nil, nil, led)
	gate := make(chan struct{})
	var first atomic.Bool
	b.ios.send = func(context.Context, *Recipient) Result {
		if first.CompareAndSwap(false, true) {
			<-gate
		}
		return Result{Outcome: Sent}
	}
	batch := iosBatch("c", "a", 5)
	b.handle(t, batch, Normal)
	testwait.For(t, waitLong, "first copy sending", first.Load)
	b.handle(t, batch, Normal) // a second, identical copy
	testwait.For(t, waitLong, "the copy put back", func() bool {
		b.queues.mu.Lock()
		defer b.queues.mu.Unlock()
		return b.queues.routed["c"] >= 3
	})
	close(gate)
	b.settle(t)
	for tok, k := range b.ios.sends() {
		if k != 1 {
			t.Errorf("%s sent %d times", ShortToken(tok), k)
		}
	}
	if got := len(b.ios.sends()); got != 5 {
		t.Errorf("%d tokens sent, want 5", got)
	}
}

func TestRetriesWithTheSameBodyAreNotSkipped(t *testing.T) {
	led := &fakeLedger{}
	b := setupFull(t, Config{MaxAttempts: 6}, nil, nil, led)
	var n atomic.Int32
	b.ios.send = func(context.Context, *Recipient) Result {
		if n.Add(1) <= 3 {
			return Result{Outcome: RetryLater, Status: 503, Reason: "ServiceUnavailable"}
		}
		return Result{Outcome: Sent}
	}
	del := newDelivery(t, iosBatch("c", "a", 1))
	for pass := 1; pass <= 4; pass++ {
		b.d.handleLane(context.Background(), del.value())
		b.settle(t)
		if got := n.Load(); got != int32(pass) {
			t.Fatalf("pass %d: %d sends, want %d (a retry was skipped as already resolved)", pass, got, pass)
		}
		holds, _ := b.out.snapshot()
		if pass == 4 {
			if len(holds) != 3 {
				t.Fatalf("%d holds after the send went through, want 3", len(holds))
			}
			break
		}
		h := holds[len(holds)-1]
		// Every retry carries the same body; only the key tells them apart.
		body, err := json.Marshal(h.batch)
		if err != nil {
			t.Fatal(err)
		}
		if h.key == "" {
			t.Fatal("retry published without a ledger key")
		}
		del = rawDelivery(body)
		del.attempt, del.key, del.repub = h.attempt, h.key, true
	}
	if got := b.met.skipped.Load(); got != 0 {
		t.Errorf("%d recipients skipped by the ledger, want 0", got)
	}
}

func TestChildKeysDependOnTheParent(t *testing.T) {
	body := []byte(`{"same":"body"}`)
	a, b := childKey("k1", "retry", body), childKey("k2", "retry", body)
	if a == b || a == childKey("k1", "rest", body) {
		t.Error("child keys collide across parents or kinds")
	}
	if a != childKey("k1", "retry", body) {
		t.Error("child key not deterministic: a redelivered parent would not be deduplicated")
	}
}

func TestRedeliveryAfterTheLastLedgerWriteHandsOnAgainAndSendsNothing(t *testing.T) {
	for _, tc := range []struct {
		name        string
		publishFail bool // the hand-off publish fails: requeued (else: a crash before the ack)
	}{{"hand-off publish failed", true}, {"crash before the ack", false}} {
		t.Run(tc.name, func(t *testing.T) {
			led := &fakeLedger{}
			b := setupFull(t, Config{MaxAttempts: 6}, nil, nil, led)
			failing := fmt.Sprintf("%064x", 2)
			b.ios.send = func(_ context.Context, to *Recipient) Result {
				if to.Token == failing {
					return Result{Outcome: RetryLater, Status: 503, Reason: "ServiceUnavailable"}
				}
				return Result{Outcome: Sent}
			}
			c, err := b.d.campaigns.observe(context.Background(), iosBatch("c", "", 1), nil)
			if err != nil {
				t.Fatal(err)
			}
			batch := iosBatch("c", "", 5)
			if tc.publishFail {
				b.out.mu.Lock()
				b.out.fail = errors.New("broker gone")
				b.out.mu.Unlock()
			}
			first := newDelivery(t, batch)
			processDirect(b.d, first, mustDecode(t, first.body), c)
			acked, requeued := first.wait(t)
			if tc.publishFail != (requeued == 1) || tc.publishFail == (acked == 1) {
				t.Fatalf("first delivery acked %d, requeued %d", acked, requeued)
			}
			b.waitResolved(t, first)
			b.out.mu.Lock()
			b.out.fail = nil
			b.out.mu.Unlock()
			sends := b.ios.total()

			// The broker delivers the message again.
			again := newDelivery(t, batch)
			processDirect(b.d, again, mustDecode(t, again.body), c)
			if acked, _ := again.wait(t); acked != 1 {
				t.Fatal("redelivery not acked")
			}
			if got := b.ios.total(); got != sends {
				t.Errorf("the redelivery sent %d more; it must only hand on again", got-sends)
			}
			holds, _ := b.out.snapshot()
			want := 1
			if !tc.publishFail {
				want = 2 // the first run's, and the same again
			}
			if len(holds) != want {
				t.Fatalf("%d holds, want %d", len(holds), want)
			}
			h := holds[len(holds)-1]
			if len(h.batch.Recipients) != 1 || h.batch.Recipients[0].Token != failing || h.attempt != 1 {
				t.Errorf("held again %+v (attempt %d), want the failing recipient at attempt 1", h.batch.Recipients, h.attempt)
			}
			if !tc.publishFail && holds[0].key != h.key {
				t.Errorf("hand-off published again under key %s, first under %s: the copy would be sent twice", h.key, holds[0].key)
			}
		})
	}
}

// copySetup starts a dispatcher with a ledger and campaign c, and makes a
// delivery of a 5-recipient batch of c, with its ledger key.
func copySetup(t *testing.T) (*bundle, *fakeLedger, *campaign, *fakeDelivery, string) {
	t.Helper()
	led := &fakeLedger{}
	b := setupFull(t, Config{}, nil, nil, led)
	c, err := b.d.campaigns.observe(context.Background(), iosBatch("c", "a", 1), nil)
	if err != nil {
		t.Fatal(err)
	}
	del := newDelivery(t, iosBatch("c", "a", 5))
	return b, led, c, del, messageKey(del.value())
}

// TestCopyAnotherInstanceIsSendingWaitsForItsClaim hands in a copy of a
// message whose ledger entry another instance has claimed (it is sending
// it): the copy sends nothing, waits (a second at most) and goes back to
// the campaign's queue; once the other's last write released the claim
// with every recipient resolved, the copy comes back and sends nothing.
func TestCopyAnotherInstanceIsSendingWaitsForItsClaim(t *testing.T) {
	b, led, c, del, key := copySetup(t)
	ctx := context.Background()
	now := b.clock.Now()
	if _, holder, _ := led.ClaimLedger(ctx, key, "other", now, now.Add(3*time.Second)); holder != "other" {
		t.Fatal("the other instance's claim was not taken")
	}
	go processDirect(b.d, del, mustDecode(t, del.body), c)
	b.d.signals.claimWait.WaitFor(t, func(k string) bool { return k == key })
	if b.queues.routedTo("c") != 0 {
		t.Fatal("the copy went back before its wait")
	}
	// Meanwhile the other instance's last write: every recipient
	// resolved, claim released.
	if err := led.RecordLedger(ctx, map[string]LedgerEntry{key: {Resolved: allBits(5), Release: true}}, nil); err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(time.Second) // the wait is a second: the claim lasted 3
	if acked, _ := del.wait(t); acked != 1 {
		t.Fatal("the copy was not settled after its wait")
	}
	if got := b.queues.routedTo("c"); got != 1 {
		t.Fatalf("%d messages routed back, want the copy", got)
	}
	// The copy comes back from the campaign's queue and sends nothing.
	b.settle(t)
	if got := b.ios.total(); got != 0 {
		t.Errorf("%d sends of a batch another instance sent", got)
	}
	if got := b.met.skipped.Load(); got != 5 {
		t.Errorf("%d recipients skipped by the ledger, want 5", got)
	}
}

// TestCopyWhoseClaimRanOutIsSent: the instance that claimed a message
// died (its claim is not renewed): once the claim has run out, a copy
// claims the entry and sends the recipients the ledger does not have, and
// its last write releases the claim.
func TestCopyWhoseClaimRanOutIsSent(t *testing.T) {
	b, led, c, del, key := copySetup(t)
	ctx := context.Background()
	now := b.clock.Now()
	led.ClaimLedger(ctx, key, "dead", now, now.Add(300*time.Millisecond))
	// The dead instance had sent the first two.
	if err := led.RecordLedger(ctx, map[string]LedgerEntry{key: {Resolved: []byte{0b11}}}, nil); err != nil {
		t.Fatal(err)
	}
	go processDirect(b.d, del, mustDecode(t, del.body), c)
	b.d.signals.claimWait.WaitFor(t, func(k string) bool { return k == key })
	b.clock.Advance(300 * time.Millisecond) // the claim's end
	if acked, _ := del.wait(t); acked != 1 {
		t.Fatal("the copy was not settled after its wait")
	}
	b.settle(t)
	if got := b.ios.total(); got != 3 {
		t.Errorf("%d sends, want the 3 the dead instance had not sent", got)
	}
	if cl, ok := led.claim(key); ok {
		t.Errorf("claim %+v left after the run's last write", cl)
	}
}

// TestClaimsAreRenewedWhileSending: a run that sends for longer than the
// lease keeps its claim, renewed every fifth of the lease; another
// instance's copy meanwhile finds it held.
func TestClaimsAreRenewedWhileSending(t *testing.T) {
	led := &fakeLedger{}
	b := setupFull(t, Config{LedgerLease: 5 * time.Second, Owner: "me"}, nil, nil, led)
	gate := make(chan struct{})
	open := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(open) // before the dispatcher's stop, should the test fail
	var sending atomic.Bool
	b.ios.send = func(context.Context, *Recipient) Result {
		sending.Store(true)
		<-gate
		return Result{Outcome: Sent}
	}
	ctx := context.Background()
	c, err := b.d.campaigns.observe(ctx, iosBatch("c", "a", 1), nil)
	if err != nil {
		t.Fatal(err)
	}
	del := newDelivery(t, iosBatch("c", "a", 3))
	key := messageKey(del.value())
	go processDirect(b.d, del, mustDecode(t, del.body), c)
	testwait.For(t, waitLong, "the run sending", sending.Load)
	start := b.clock.Now()
	// 12 s in steps of a flush: the claim is renewed as it goes.
	for b.clock.Now().Sub(start) < 12*time.Second {
		b.clock.Advance(b.d.cfg.LedgerFlush)
		b.d.signals.ledgerFlushed.Wait(t)
	}
	cl, ok := led.claim(key)
	if !ok || cl.owner != "me" || !cl.until.After(b.clock.Now()) {
		t.Fatalf("claim %+v (%v) at %v, want this instance's, renewed", cl, ok, b.clock.Now())
	}
	now := b.clock.Now()
	if _, holder, _ := led.ClaimLedger(ctx, key, "other", now, now.Add(5*time.Second)); holder != "me" {
		t.Errorf("another instance took the claim (holder %q) of a run in progress", holder)
	}
	open()
	if acked, _ := del.wait(t); acked != 1 {
		t.Fatal("run not acked")
	}
	if cl, ok := led.claim(key); ok {
		t.Errorf("claim %+v left after the run's last write", cl)
	}
}

// laneLedger is a fakeLedger that records the lane (LaneOf) each call's
// context works for, by call and message key.
type laneLedger struct {
	fakeLedger
	mu    sync.Mutex
	lanes map[string]Lane // "call key" -> lane
}

func (l *laneLedger) note(ctx context.Context, call, key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lanes == nil {
		l.lanes = map[string]Lane{}
	}
	l.lanes[call+" "+key] = LaneOf(ctx)
}

func (l *laneLedger) lane(call, key string) (Lane, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.lanes[call+" "+key]
	return v, ok
}

func (l *laneLedger) RecordReceived(ctx context.Context, key, campaign string, resolved []byte, counts Counters) (bool, error) {
	l.note(ctx, "received", key)
	return l.fakeLedger.RecordReceived(ctx, key, campaign, resolved, counts)
}

func (l *laneLedger) ClaimLedger(ctx context.Context, key, owner string, now, until time.Time) (LedgerEntry, string, error) {
	l.note(ctx, "claim", key)
	return l.fakeLedger.ClaimLedger(ctx, key, owner, now, until)
}

func (l *laneLedger) RecordLedger(ctx context.Context, entries map[string]LedgerEntry, counts map[string]Counters) error {
	for k, e := range entries {
		if e.Release {
			l.note(ctx, "release", k)
		}
	}
	return l.fakeLedger.RecordLedger(ctx, entries, counts)
}

// TestHighLaneLedgerWritesSayTheirLane: the ledger writes a high-lane
// batch waits for (recorded as received, claimed, and its last entry,
// before its ack frees a prefetch slot) carry the high lane in their
// context, so that the store serves them before the normal lane's
// (store.writeGate); a normal-lane batch's carry the normal lane.
func TestHighLaneLedgerWritesSayTheirLane(t *testing.T) {
	led := &laneLedger{}
	b := setupFull(t, Config{}, nil, nil, led)
	high := newDelivery(t, iosBatch("otp", "a", 2))
	high.lane = High
	b.d.handleLane(context.Background(), high.value())
	if acked, _ := high.wait(t); acked != 1 {
		t.Fatal("high-lane batch not acked")
	}
	normal := newDelivery(t, iosBatch("bulk", "b", 2))
	b.d.handleLane(context.Background(), normal.value())
	normal.wait(t)
	b.settle(t)
	key := messageKey(high.value())
	for _, call := range []string{"received", "claim", "release"} {
		if l, ok := led.lane(call, key); !ok || l != High {
			t.Errorf("%s of the high-lane batch: lane %v (made: %v), want high", call, l, ok)
		}
	}
	if l, ok := led.lane("received", messageKey(normal.value())); !ok || l != Normal {
		t.Errorf("received of the normal-lane batch: lane %v (made: %v), want normal", l, ok)
	}
}
