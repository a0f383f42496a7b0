package dispatcher

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushd/pushd/internal/testwait"
)

func rate(r float64) *float64 { return &r }

func TestPauseKeepsTheRestQueuedAndResumeSendsItOnce(t *testing.T) {
	b := setup(t, Config{})
	ctx := context.Background()
	batch := iosBatch("c", "a", 40)
	batch.Campaign.RatePerSecond = 40
	b.handle(t, batch, Normal)
	b.pump(t, 25*time.Millisecond, "some sends", func() bool { return b.ios.total() >= 8 })
	info, err := b.d.PauseCampaign(ctx, "c")
	if err != nil || info.Status != StatusPaused {
		t.Fatalf("pause: %+v %v", info, err)
	}
	testwait.For(t, waitLong, "paused run put back", func() bool { return b.queues.pending("c") == 1 && b.d.res.drain(ctx) })
	atPause := b.ios.total()
	// Nothing may be sent while paused, however much time passes: ten
	// seconds of the clock would let 400 through at the campaign's rate.
	b.clock.Advance(10 * time.Second)
	b.d.signals.bookkept.Wait(t)
	b.tick(t)
	if n := b.ios.total(); n != atPause {
		t.Fatalf("%d sends while paused", n-atPause)
	}
	if atPause >= 40 {
		t.Fatal("campaign finished before the pause; the test proves nothing")
	}
	if _, err := b.d.ResumeCampaign(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	b.pump(t, 25*time.Millisecond, "all sent after resume", func() bool { return b.ios.total() == 40 })
	b.settle(t)
	for tok, n := range b.ios.sends() {
		if n != 1 {
			t.Errorf("%s sent %d times", ShortToken(tok), n)
		}
	}
	if len(b.ios.sends()) != 40 {
		t.Errorf("%d distinct tokens sent", len(b.ios.sends()))
	}
}

func TestCancelStopsSendsAndCountsTheRest(t *testing.T) {
	b := setup(t, Config{})
	ctx := context.Background()
	batch := iosBatch("c", "a", 100)
	batch.Campaign.RatePerSecond = 50
	b.handle(t, batch, Normal)
	testwait.For(t, waitLong, "some sends", func() bool { return b.ios.total() >= 5 })
	if _, err := b.d.CancelCampaign(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	b.settle(t)
	sent := b.ios.total()
	b.clock.Advance(10 * time.Second) // 500 tokens at the campaign's rate
	b.d.signals.bookkept.Wait(t)
	b.tick(t)
	if n := b.ios.total(); n != sent {
		t.Fatalf("%d sends after the cancel settled", n-sent)
	}
	// A batch of the cancelled campaign arriving later is dropped too.
	late := b.handle(t, iosBatch("c", "b", 10), Normal)
	if acked, _ := late.wait(t); acked != 1 {
		t.Fatal("late batch not acked")
	}
	testwait.For(t, waitLong, "counters", func() bool {
		info, _ := b.d.Campaign(ctx, "c")
		return info.Counters.Sent == int64(sent) && info.Counters.Cancelled == int64(110-sent) && info.Status == StatusCancelled
	})
	if b.ios.total() != sent {
		t.Error("the late batch was sent")
	}
	if _, err := b.d.ResumeCampaign(ctx, "c"); !errors.Is(err, ErrConflict) {
		t.Errorf("resuming a cancelled campaign: %v, want ErrConflict", err)
	}
}

func TestRateChangeAppliesAtOnce(t *testing.T) {
	b := setup(t, Config{})
	batch := iosBatch("c", "a", 30)
	batch.Campaign.RatePerSecond = 1
	b.handle(t, batch, Normal)
	testwait.For(t, waitLong, "first send", func() bool { return b.ios.total() >= 1 })
	start := b.clock.Now()
	info, err := b.d.SetCampaignRate(context.Background(), "c", rate(1000))
	if err != nil || info.RatePerSecond != 1000 || info.RateSource != "operator" {
		t.Fatalf("set rate: %+v %v", info, err)
	}
	// At 1000/s the 29 others need 29ms of the clock (the bucket does not
	// refill on a change of rate); at the old 1/s they would need 29s.
	b.pump(t, time.Millisecond, "all sent at the new rate", func() bool { return b.ios.total() == 30 })
	if took := b.clock.Now().Sub(start); took > 30*time.Millisecond {
		t.Errorf("29 sends at 1000/s took %v of the clock", took)
	}
	if _, err := b.d.SetCampaignRate(context.Background(), "c", rate(-1)); !errors.Is(err, ErrInvalid) {
		t.Errorf("negative rate: %v", err)
	}
	if _, err := b.d.SetCampaignRate(context.Background(), "nope", rate(1)); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown campaign: %v", err)
	}
}

func TestThrottledCampaignDoesNotHoldOthers(t *testing.T) {
	b := setup(t, Config{Workers: [numPlatforms]int{IOS: 4, Android: 4}})
	slow := iosBatch("slow", "a", 200)
	slow.Campaign.RatePerSecond = 5
	for range 5 { // more batches than any prefetch
		b.handle(t, slow, Normal)
	}
	fast := iosBatch("fast", "b", 500)
	// The clock never moves: the slow campaign can send its burst (1)
	// and nothing more, and the fast one must go through all the same.
	b.handle(t, fast, Normal)
	testwait.For(t, waitLong, "fast campaign sent", func() bool {
		n := 0
		for tok := range b.ios.sends() {
			if strings.HasPrefix(tok, "b") {
				n++
			}
		}
		return n == 500
	})
	slowSent := 0
	for tok := range b.ios.sends() {
		if strings.HasPrefix(tok, "a") {
			slowSent++
		}
	}
	if slowSent > 1 {
		t.Errorf("the 5/s campaign sent %d with its clock stopped; its burst is 1", slowSent)
	}
}

func TestLongThrottledDeliveryYieldsAfterMaxHold(t *testing.T) {
	b := setup(t, Config{MaxHold: 300 * time.Millisecond})
	batch := iosBatch("c", "a", 12)
	batch.Campaign.RatePerSecond = 10
	b.handle(t, batch, Normal)
	b.pump(t, 50*time.Millisecond, "all sent", func() bool { return b.ios.total() == 12 })
	b.settle(t)
	if b.queues.routed["c"] < 2 {
		t.Errorf("routed %d times: the delivery never yielded", b.queues.routed["c"])
	}
	for tok, n := range b.ios.sends() {
		if n != 1 {
			t.Errorf("%s sent %d times", ShortToken(tok), n)
		}
	}
}

func TestIdleCampaignFinishesAndReopens(t *testing.T) {
	b := setup(t, Config{CampaignIdle: 50 * time.Millisecond})
	ctx := context.Background()
	b.handle(t, iosBatch("c", "a", 4), Normal)
	b.settle(t)
	// Idle for CampaignIdle: the next bookkeeping pass marks it finished,
	// deletes its queue and publishes the event.
	b.clock.Advance(b.d.cfg.CampaignIdle)
	b.d.signals.bookkept.Wait(t)
	if info, _ := b.d.Campaign(ctx, "c"); info.Status != StatusFinished {
		t.Fatalf("status %s after idling, want finished", info.Status)
	}
	b.queues.mu.Lock()
	deleted, events := append([]string(nil), b.queues.deleted...), append([]string(nil), b.queues.events...)
	b.queues.mu.Unlock()
	if len(deleted) != 1 || deleted[0] != "c" {
		t.Errorf("deleted queues %v", deleted)
	}
	if len(events) != 1 || !strings.Contains(events[0], `"event":"campaign.finished"`) || !strings.Contains(events[0], `"sent":4`) {
		t.Errorf("events %v", events)
	}
	// More batches: running again, and sent.
	b.handle(t, iosBatch("c", "b", 3), Normal)
	testwait.For(t, waitLong, "reopened and sent", func() bool { return b.ios.total() == 7 })
}

func TestControlErrors(t *testing.T) {
	b := setup(t, Config{})
	ctx := context.Background()
	if _, err := b.d.PauseCampaign(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("pause unknown: %v", err)
	}
	b.handle(t, iosBatch("c", "a", 1), Normal)
	b.settle(t)
	if _, err := b.d.ResumeCampaign(ctx, "c"); err != nil {
		t.Errorf("resume running (no-op): %v", err)
	}
	list, err := b.d.Campaigns(ctx)
	if err != nil || len(list) != 1 || list[0].ID != "c" {
		t.Errorf("list: %+v %v", list, err)
	}
}

// stallBroker makes the fake broker stop answering routes and deletions
// until the returned function is called.
func (b *bundle) stallBroker() (resume func()) {
	b.queues.mu.Lock()
	b.queues.stall, b.queues.stalled = make(chan struct{}), make(chan struct{}, 100)
	stall := b.queues.stall
	b.queues.mu.Unlock()
	return sync.OnceFunc(func() { close(stall) })
}

// answers fails the test if f does not return within waitLong.
func answers(t *testing.T, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(waitLong):
		t.Fatal("the control call waits for the broker")
	}
}

// Control answers while the broker does not: routing a batch to its
// campaign's queue, or deleting the queue of an ended campaign, waits for
// the broker without holding the campaign.
func TestControlAnswersWhileTheBrokerStalls(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stall func(t *testing.T, b *bundle)
	}{
		{"routing a batch", func(t *testing.T, b *bundle) {
			go b.d.handleLane(context.Background(), newDelivery(t, iosBatch("c", "b", 3)).value())
		}},
		{"ending the campaign", func(t *testing.T, b *bundle) {
			b.clock.Advance(b.d.cfg.CampaignIdle)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := setup(t, Config{CampaignIdle: time.Minute})
			ctx := context.Background()
			b.handle(t, iosBatch("c", "a", 2), Normal)
			b.settle(t)
			resume := b.stallBroker()
			defer resume()
			tc.stall(t, b)
			<-b.queues.stalled // the broker holds the call
			for _, step := range []struct {
				op   func(context.Context, string) (CampaignInfo, error)
				want Status
			}{{b.d.PauseCampaign, StatusPaused}, {b.d.ResumeCampaign, StatusRunning}, {b.d.CancelCampaign, StatusCancelled}} {
				var info CampaignInfo
				var err error
				answers(t, func() { info, err = step.op(ctx, "c") })
				if err != nil || info.Status != step.want {
					t.Fatalf("while the broker stalls: %+v %v, want %s", info, err, step.want)
				}
			}
			var err error
			answers(t, func() { _, err = b.d.SetCampaignRate(ctx, "c", rate(5)) })
			if err != nil {
				t.Fatalf("rate while the broker stalls: %v", err)
			}
			resume()
		})
	}
}

// Recipients already handed to the senders when a campaign is paused are
// not sent: they go back to the campaign's queue with the rest, and are
// sent once after the resume.
func TestPauseStopsSendsAlreadySubmitted(t *testing.T) {
	b := setup(t, Config{Workers: [numPlatforms]int{IOS: 1, Android: 1}})
	ctx := context.Background()
	gate, inSend := make(chan struct{}), make(chan struct{}, 10)
	var first atomic.Bool
	b.ios.send = func(context.Context, *Recipient) Result {
		if first.CompareAndSwap(false, true) {
			inSend <- struct{}{}
			<-gate
		}
		return Result{Outcome: Sent}
	}
	b.handle(t, iosBatch("c", "a", 5), Normal)
	<-inSend // one in flight; the next waits in the worker's channel
	testwait.For(t, waitLong, "a recipient queued for the worker", func() bool { return len(b.d.send.jobs[IOS][Normal]) > 0 })
	if _, err := b.d.PauseCampaign(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	close(gate)
	testwait.For(t, waitLong, "the paused run handed back", func() bool { return b.queues.pending("c") == 1 && b.d.res.drain(ctx) })
	if n := b.ios.total(); n != 1 {
		t.Fatalf("%d sends: only the one in flight at the pause may go out", n)
	}
	if _, err := b.d.ResumeCampaign(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	b.settle(t)
	sends := b.ios.sends()
	if len(sends) != 5 {
		t.Errorf("%d tokens sent after the resume, want 5", len(sends))
	}
	for tok, n := range sends {
		if n != 1 {
			t.Errorf("%s sent %d times", ShortToken(tok), n)
		}
	}
}

// A campaign that another instance finished (it was idle there) while
// this one still sends it keeps sending here, every recipient once, with
// nothing handed back, and is running again in the store: finishing is
// not a stop.
func TestFinishedByAnotherInstanceWhileSendingHereGoesOn(t *testing.T) {
	b := setup(t, Config{Workers: [numPlatforms]int{IOS: 1, Android: 1}})
	ctx := context.Background()
	gate, inSend := make(chan struct{}), make(chan struct{}, 10)
	var first atomic.Bool
	b.ios.send = func(context.Context, *Recipient) Result {
		if first.CompareAndSwap(false, true) {
			inSend <- struct{}{}
			<-gate
		}
		return Result{Outcome: Sent}
	}
	b.handle(t, iosBatch("c", "a", 5), Normal)
	<-inSend
	routed := b.queues.routedTo("c")
	// The other instance's end: running -> finished in the shared store.
	if _, _, err := b.store.SetCampaignStatus(ctx, "c", StatusFinished, StatusRunning); err != nil {
		t.Fatal(err)
	}
	b.tick(t)
	close(gate)
	b.settle(t)
	if n := b.queues.routedTo("c") - routed; n != 0 {
		t.Errorf("%d messages handed back to the campaign's queue, want none", n)
	}
	sends := b.ios.sends()
	if len(sends) != 5 {
		t.Errorf("%d tokens sent, want 5", len(sends))
	}
	for tok, n := range sends {
		if n != 1 {
			t.Errorf("%s sent %d times", ShortToken(tok), n)
		}
	}
	rec, err := b.store.Campaign(ctx, "c")
	if err != nil || rec.Status != StatusRunning {
		t.Errorf("store record %+v, %v: want running again", rec, err)
	}
}
