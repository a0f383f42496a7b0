package dispatcher

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pushd/pushd/internal/testwait"
)

// A batch whose campaign cannot be recorded, because the store cannot be
// written, waits: it is neither requeued (the delivery limit would
// dead-letter it) nor acked, the dispatcher reports the store down, and
// the batch goes through once the store takes writes again.
func TestStoreOutageWaitsAndResumes(t *testing.T) {
	for _, tc := range []struct {
		name string
		lane Lane
		// reopen: the campaign exists and finished; its next batch must
		// reopen it, which is a write too.
		reopen bool
		// running: the campaign exists and runs (nothing to write for
		// it), but with a ledger the batch is recorded as received, a
		// write.
		running bool
	}{
		{"new campaign, normal lane", Normal, false, false},
		{"new campaign, high lane", High, false, false},
		{"finished campaign gets a batch", Normal, true, false},
		{"running campaign, received with the ledger", Normal, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var led Ledger
			if tc.running {
				led = &fakeLedger{}
			}
			// The reopen case needs its campaign to end idle before the
			// outage; the others keep theirs running through the minute
			// of backoff below, which is not what they test.
			idle := time.Hour
			if tc.reopen {
				idle = time.Minute
			}
			b := setupFull(t, Config{CampaignIdle: idle}, nil, nil, led)
			if tc.running {
				b.handle(t, iosBatch("c", "b", 1), Normal).wait(t)
			}
			if tc.reopen {
				b.handle(t, iosBatch("c", "b", 1), Normal)
				b.settle(t)
				b.clock.Advance(time.Minute)
				b.d.signals.bookkept.Wait(t)
				if info, _ := b.d.Campaign(context.Background(), "c"); info.Status != StatusFinished {
					t.Fatalf("status %s, want finished before the outage", info.Status)
				}
			}
			full := errors.New("database or disk is full")
			b.store.setFailWrites(full)
			del := newDelivery(t, iosBatch("c", "a", 3))
			del.lane = tc.lane
			handled := make(chan struct{})
			go func() {
				defer close(handled)
				b.d.handleLane(context.Background(), del.value())
			}()
			// A minute of backoff: 100ms doubling up to 5s. Each signal
			// comes once an attempt failed and the next one is armed.
			var waited time.Duration
			wait := b.d.signals.storeRetry.Wait(t)
			for waited < time.Minute {
				if wait > storeRetryMax {
					t.Fatalf("backoff %v past its bound %v", wait, storeRetryMax)
				}
				b.clock.Advance(wait)
				waited += wait
				wait = b.d.signals.storeRetry.Wait(t)
			}
			if b.d.StoreUp() || b.met.storeUp.Load() {
				t.Error("store reported up while its writes fail")
			}
			select {
			case <-del.resolved:
				t.Fatalf("the delivery was resolved (acked %d, requeued %d) while the store is down", del.acked, del.requeued)
			default:
			}
			b.store.setFailWrites(nil)
			b.clock.Advance(wait)
			if acked, _ := del.wait(t); acked != 1 {
				t.Fatal("the batch was not acked once the store came back")
			}
			<-handled
			b.settle(t)
			if !b.d.StoreUp() || !b.met.storeUp.Load() {
				t.Error("store still reported down after a write succeeded")
			}
			if n := len(b.ios.sends()); n < 3 {
				t.Errorf("%d of 3 recipients sent after the store came back", n)
			}
			if tc.running {
				testwait.For(t, waitLong, "every run resolved", func() bool { return b.d.res.drain(context.Background()) })
				if got := b.stored(t, "c"); got.Received != 4 || got.Sent != 4 {
					t.Errorf("counters %+v, want 4 received and sent", got)
				}
			}
		})
	}
}

// A delivery lost while it waits for the store is left to the broker.
func TestStoreOutageLostDeliveryStopsWaiting(t *testing.T) {
	b := setup(t, Config{})
	b.store.setFailWrites(errors.New("read-only file system"))
	del := newDelivery(t, iosBatch("c", "a", 1))
	handled := make(chan struct{})
	go func() {
		defer close(handled)
		b.d.handleLane(context.Background(), del.value())
	}()
	b.d.signals.storeRetry.Wait(t)
	close(del.lost) // the consumer timeout, or the connection, took it back
	<-handled
}
