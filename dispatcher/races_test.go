package dispatcher

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushd/pushd/internal/testwait"
	"github.com/pushd/pushd/lists"
)

// A token reported invalid in a run whose delivery is lost must not be
// marked resolved in the ledger: the redelivery sends it again and
// publishes its token.invalid event, which the lost run never did.
func TestInvalidTokenIsReportedAfterALostDelivery(t *testing.T) {
	led := &fakeLedger{}
	b := setupFull(t, Config{Workers: [numPlatforms]int{IOS: 1, Android: 1}}, nil, nil, led)
	bad := fmt.Sprintf("%064x", 0)
	gate := make(chan struct{})
	var n atomic.Int32
	b.ios.send = func(ctx context.Context, to *Recipient) Result {
		if to.Token == bad {
			return Result{Outcome: InvalidToken, Status: 410, Reason: "Unregistered"}
		}
		if n.Add(1) == 2 {
			<-gate
		}
		return Result{Outcome: Sent}
	}
	c, _ := b.d.campaigns.observe(context.Background(), iosBatch("c", "", 1), nil)
	batch := iosBatch("c", "", 5)
	first := newDelivery(t, batch)
	go processDirect(b.d, first, mustDecode(t, first.body), c)
	testwait.For(t, waitLong, "invalid answered, a send in flight", func() bool { return n.Load() == 2 })
	close(first.lost)
	close(gate)
	testwait.For(t, waitLong, "lost run finished", func() bool { return b.d.res.drain(context.Background()) })
	again := newDelivery(t, batch)
	processDirect(b.d, again, mustDecode(t, again.body), c)
	again.wait(t)
	b.queues.mu.Lock()
	defer b.queues.mu.Unlock()
	for _, e := range b.queues.events {
		if strings.Contains(e, bad) {
			return
		}
	}
	t.Fatalf("no token.invalid event for %s after the redelivery (events: %d)", ShortToken(bad), len(b.queues.events))
}

type panicFilter struct{ poison string }

func (f panicFilter) Filter(_, token, _ string, _ bool) (lists.Name, string, bool) {
	if token == f.poison {
		panic("filter bug")
	}
	return "", "", false
}

// A panic in process after track (queue.handle recovers and requeues)
// must not leave the run tracked: Drain would never return, and every
// redelivery would be routed back as a new message instead of counting
// towards the delivery limit.
func TestPanicAfterTrackAbandonsTheRun(t *testing.T) {
	for _, tc := range []struct {
		name   string
		batch  *Batch
		poison string
	}{
		{"one provider", iosBatch("c", "", 8), fmt.Sprintf("%064x", 3)},
		// A panic in the Android pass of a batch with both providers,
		// while the iOS pass runs beside it.
		{"a pass of two", makeBatch("c", 8), "fcm-3"},
	} {
		t.Run(tc.name, func(t *testing.T) { testPanicAfterTrackAbandonsTheRun(t, tc.batch, tc.poison) })
	}
}

func testPanicAfterTrackAbandonsTheRun(t *testing.T, batch *Batch, poison string) {
	b := setupFull(t, Config{}, panicFilter{poison}, nil, &fakeLedger{})
	c, _ := b.d.campaigns.observe(context.Background(), iosBatch("c", "", 1), nil)
	// What queue.(*Broker).handle does: recover, requeue unless resolved.
	handle := func(del *fakeDelivery) (panicked bool) {
		defer func() {
			if recover() != nil {
				panicked = true
				_ = del.Requeue()
			}
		}()
		processDirect(b.d, del, mustDecode(t, del.body), c)
		return false
	}
	for i := range 3 { // the broker delivers it again, up to its limit
		del := newDelivery(t, batch)
		if !handle(del) {
			t.Fatalf("delivery %d: no panic reached the consumer", i+1)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		drained := b.d.res.drain(ctx)
		cancel()
		if !drained {
			t.Fatalf("delivery %d: the abandoned run is still tracked; Drain does not return", i+1)
		}
		if acked, requeued := del.wait(t); acked != 0 || requeued != 1 {
			t.Fatalf("delivery %d: acked %d, requeued %d; want requeued once, so that the delivery limit counts it", i+1, acked, requeued)
		}
	}
	b.queues.mu.Lock()
	routed := b.queues.routed["c"]
	b.queues.mu.Unlock()
	if routed != 0 {
		t.Errorf("copies routed back %d times: each would be a new message, escaping the delivery limit", routed)
	}
	if c.active.Load() != 0 {
		t.Errorf("campaign still counts %d active runs", c.active.Load())
	}
}

// gatedLedger lets the first write (the 20 ms flush) take its snapshot, then
// holds it until the run's own synchronous write is done.
type gatedLedger struct {
	fakeLedger
	calls   atomic.Int32
	started chan struct{}
	release chan struct{}
}

func (l *gatedLedger) RecordLedger(ctx context.Context, m map[string]LedgerEntry, counts map[string]Counters) error {
	if l.calls.Add(1) == 1 {
		close(l.started)
		<-l.release
	}
	return l.fakeLedger.RecordLedger(ctx, m, counts)
}

// A flush that took its bitmap before the run finished must not land after
// the run's last bitmap and overwrite it: a copy of the acked message
// would then send again the recipients already handed on (here: held for
// retry).
func TestFlushDoesNotOverwriteTheLastBitmap(t *testing.T) {
	led := &gatedLedger{started: make(chan struct{}), release: make(chan struct{})}
	b := setupFull(t, Config{}, nil, nil, led)
	retry := fmt.Sprintf("%064x", 1)
	var once sync.Once
	sending := make(chan struct{})
	b.ios.send = func(ctx context.Context, to *Recipient) Result {
		if to.Token == retry {
			once.Do(func() {
				close(sending)
				<-led.started // the flush has its snapshot
			})
			return Result{Outcome: RetryLater, Status: 503}
		}
		return Result{Outcome: Sent}
	}
	c, _ := b.d.campaigns.observe(context.Background(), iosBatch("c", "", 1), nil)
	batch := iosBatch("c", "", 2)
	del := newDelivery(t, batch)
	go processDirect(b.d, del, mustDecode(t, del.body), c)
	<-sending
	testwait.For(t, waitLong, "the other recipient sent, its bit to flush", func() bool {
		b.d.res.dirtyMu.Lock()
		defer b.d.res.dirtyMu.Unlock()
		return len(b.d.res.dirty) > 0
	})
	b.clock.Advance(b.d.cfg.LedgerFlush) // the flush takes its snapshot and is held
	// The flush is writing its older bitmap; the run finishes meanwhile
	// and is about to write its last one.
	b.d.signals.finalLedgerWrite.Wait(t)
	close(led.release)
	del.wait(t) // finish wrote the full bitmap and acked
	b.waitResolved(t, del)
	b.d.signals.ledgerFlushed.Wait(t)
	for range 2 { // later flushes, if any
		b.clock.Advance(b.d.cfg.LedgerFlush)
		b.d.signals.ledgerFlushed.Wait(t)
	}
	led.mu.Lock()
	final := led.entries[messageKey(del.value())].Resolved
	led.mu.Unlock()
	if len(final) != 1 || final[0] != 0x03 {
		t.Errorf("ledger holds %x after the ack, want 03 (both recipients resolved)", final)
	}
	before := b.ios.total()
	copy := newDelivery(t, batch) // a producer's duplicate, after the ack
	processDirect(b.d, copy, mustDecode(t, copy.body), c)
	copy.wait(t)
	if got := b.ios.total() - before; got != 0 {
		t.Fatalf("a copy of an acked message sent %d recipients again (the retry is already held)", got)
	}
}

// A high-lane batch handled while the bookkeeping finishes its idle
// campaign must keep the campaign from finishing under it; otherwise its
// recipients would be routed to a queue nobody consumes, and the delivery
// acked.
func TestHighLaneBatchIsNotStrandedByFinishIdle(t *testing.T) {
	b := setupFull(t, Config{CampaignIdle: time.Millisecond, SyncInterval: time.Hour}, nil, nil, &fakeLedger{})
	c, _ := b.d.campaigns.observe(context.Background(), iosBatch("c", "", 1), nil)
	b.clock.Advance(5 * time.Millisecond) // idle for longer than CampaignIdle
	inPrepare, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	b.ios.prepare = func(*Notification) error {
		once.Do(func() { close(inPrepare); <-release })
		return nil
	}
	del := newDelivery(t, iosBatch("c", "", 5))
	del.lane = High
	go b.d.handleLane(context.Background(), del.value())
	<-inPrepare                                 // Handle passed the isFinishing check
	b.d.campaigns.endIdle(context.Background()) // a bookkeeping tick
	close(release)
	if acked, _ := del.wait(t); acked != 1 {
		t.Fatal("not acked")
	}
	b.settle(t)
	if n := b.ios.total(); n != 5 {
		t.Fatalf("delivery acked, campaign %s, %d of 5 sent, %d stranded in the campaign queue",
			c.status(), n, b.queues.pending("c"))
	}
}
