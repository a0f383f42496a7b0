package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pushd/pushd/internal/testwait"
	"github.com/pushd/pushd/ratelimit"
)

type bundle struct {
	d        *Dispatcher
	clock    *ratelimit.ManualClock
	out      *fakeOutbox
	queues   *fakeQueues
	store    *fakeStore
	limits   *fakeLimits
	ios, and *fakeProvider
	met      *countingMetrics
	stop     context.CancelFunc // the hard stop
}

// waitLong bounds every wait of these tests: far longer than anything
// takes, so that only a bug reaches it.
const waitLong = 10 * time.Second

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func setup(t *testing.T, cfg Config) *bundle {
	t.Helper()
	return setupWith(t, cfg, nil, nil)
}

func setupWith(t *testing.T, cfg Config, filter Filter, blacklist Blacklister) *bundle {
	return setupFull(t, cfg, filter, blacklist, nil)
}

// setupFull starts a Dispatcher on fakes and a manual clock that starts at
// the wall-clock time: time moves for it only when a test advances it.
func setupFull(t *testing.T, cfg Config, filter Filter, blacklist Blacklister, ledger Ledger) *bundle {
	t.Helper()
	b := &bundle{
		clock: ratelimit.NewManualClock(time.Now()),
		out:   &fakeOutbox{}, queues: newFakeQueues(), store: newFakeStore(), limits: &fakeLimits{},
		ios: &fakeProvider{}, and: &fakeProvider{}, met: &countingMetrics{},
	}
	cfg.Clock = b.clock
	b.store.now = b.clock.Now
	if l, ok := ledger.(interface{ link(*fakeStore) }); ok {
		l.link(b.store)
	}
	if cfg.Workers[IOS] == 0 {
		cfg.Workers = [numPlatforms]int{IOS: 8, Android: 8}
	}
	if cfg.SyncInterval == 0 {
		cfg.SyncInterval = 10 * time.Millisecond
	}
	if cfg.CampaignIdle == 0 {
		cfg.CampaignIdle = time.Hour
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	b.d = New(cfg, Deps{
		Logger: logger, Metrics: b.met, Outbox: b.out, Queues: b.queues, Store: b.store, Events: b.queues,
		Filter: filter, Blacklist: blacklist, Ledger: ledger, Limits: b.limits,
		Providers: map[Platform]Provider{IOS: b.ios, Android: b.and},
	})
	b.d.signals.init()
	ctx, cancel := context.WithCancel(context.Background())
	b.stop = cancel
	if err := b.d.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		<-b.d.done
	})
	return b
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// tick moves the clock by the sync interval and waits for the bookkeeping
// pass it starts to be over.
func (b *bundle) tick(t *testing.T) {
	t.Helper()
	b.clock.Advance(b.d.cfg.SyncInterval)
	b.d.signals.bookkept.Wait(t)
}

// waitResolved waits until the run of del is resolved and forgotten: a
// copy handed in earlier would be put back as a duplicate in progress.
func (b *bundle) waitResolved(t *testing.T, del *fakeDelivery) {
	t.Helper()
	key := messageKey(del.value())
	b.d.signals.runResolved.WaitFor(t, func(k string) bool { return k == key })
}

// pump moves the clock on in steps of step until cond holds: each time
// something waits on the clock (a token bucket, a timer) and cond does not
// hold yet, it advances. Tests of throttled campaigns use it to let
// exactly as much clock time pass as their sends need.
func (b *bundle) pump(t *testing.T, step time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, waitLong, what, func() bool {
		if cond() {
			return true
		}
		b.clock.Advance(step)
		return cond()
	})
}

func (b *bundle) hardStop(t *testing.T) {
	t.Helper()
	b.stop()
	select {
	case <-b.d.done:
	case <-time.After(waitLong):
		t.Fatal("the dispatcher did not stop after the hard stop")
	}
}

// handle hands a lane delivery of batch to the dispatcher and waits until
// it is settled (routed, dead-lettered, held...).
func (b *bundle) handle(t *testing.T, batch *Batch, lane Lane) *fakeDelivery {
	t.Helper()
	del := newDelivery(t, batch)
	del.lane = lane
	b.d.handleLane(context.Background(), del.value())
	return del
}

// settle waits until everything routed to campaign queues is resolved.
func (b *bundle) settle(t *testing.T) {
	t.Helper()
	testwait.For(t, waitLong, "campaign queues settled", b.queues.settled)
}

// makeBatch returns a batch of n recipients, alternating iOS and Android.
func makeBatch(campaign string, n int) *Batch {
	b := &Batch{
		Schema:       Schema,
		BatchID:      campaign + "/1",
		Campaign:     Campaign{ID: campaign},
		Notification: Notification{Title: "t", Body: "b"},
	}
	for i := range n {
		if i%2 == 0 {
			b.Recipients = append(b.Recipients, Recipient{Platform: IOS, Token: fmt.Sprintf("%064x", i)})
		} else {
			b.Recipients = append(b.Recipients, Recipient{Platform: Android, Token: fmt.Sprintf("fcm-%d", i)})
		}
	}
	return b
}

// iosBatch returns a batch of n iOS recipients whose tokens start with p.
func iosBatch(campaign, p string, n int) *Batch {
	b := makeBatch(campaign, 0)
	for i := range n {
		b.Recipients = append(b.Recipients, Recipient{Platform: IOS, Token: p + fmt.Sprintf("%0*x", 64-len(p), i)})
	}
	return b
}

func TestEveryRecipientSentOnceThroughTheCampaignQueue(t *testing.T) {
	b := setup(t, Config{})
	lane := b.handle(t, makeBatch("c", 100), Normal)
	if acked, _ := lane.wait(t); acked != 1 {
		t.Fatal("lane delivery not acked after routing")
	}
	if b.queues.routed["c"] != 1 {
		t.Fatalf("routed %d messages to the campaign queue", b.queues.routed["c"])
	}
	b.settle(t)
	ios, and := b.ios.sends(), b.and.sends()
	if len(ios) != 50 || len(and) != 50 {
		t.Fatalf("sent to %d iOS and %d Android tokens, want 50 each", len(ios), len(and))
	}
	for tok, n := range ios {
		if n != 1 {
			t.Errorf("token %s sent %d times", tok, n)
		}
	}
	if got := b.met.received.Load(); got != 100 {
		t.Errorf("received metric %d", got)
	}
	if !b.d.res.drain(context.Background()) || b.met.inFlight.Load() != 0 {
		t.Error("not idle after the batch was acked")
	}
	// Counters reach the store and the control API.
	testwait.For(t, waitLong, "counters flushed", func() bool {
		info, err := b.d.Campaign(context.Background(), "c")
		return err == nil && info.Counters.Sent == 100 && info.Counters.Received == 100
	})
}

func TestMalformedTokensAreDroppedAndTheRestSent(t *testing.T) {
	b := setup(t, Config{})
	batch := makeBatch("c", 10)
	batch.Recipients[0].Token = "not-hex"
	batch.Recipients[1].Token = "bad token"
	batch.Recipients = append(batch.Recipients, Recipient{Platform: PlatformUnknown, Token: "x"})
	b.handle(t, batch, Normal)
	b.settle(t)
	if n := len(b.ios.sends()) + len(b.and.sends()); n != 8 {
		t.Errorf("sent %d, want 8", n)
	}
	if got := b.met.dropped.Load(); got != 3 {
		t.Errorf("dropped %d, want 3", got)
	}
}

func TestSchemaViolationsAreDeadLettered(t *testing.T) {
	b := setup(t, Config{})
	for _, body := range []string{`{not json`, `{"schema":"pushd.batch/v1"}`} {
		del := rawDelivery([]byte(body))
		b.d.handleLane(context.Background(), del.value())
		if acked, _ := del.wait(t); acked != 1 {
			t.Fatalf("%s: acked %d", body, acked)
		}
	}
	_, dead := b.out.snapshot()
	if len(dead) != 2 || dead[0].why.Reason != "malformed" || dead[1].why.Reason != "schema" || dead[1].why.Detail == "" {
		t.Fatalf("dead letters: %+v", dead)
	}
	if string(dead[0].body) != `{not json` || dead[0].why.MessageID != "m-1" {
		t.Errorf("dead letter changed: %q %q", dead[0].body, dead[0].why.MessageID)
	}
}

func TestPayloadTooLargeIsDeadLettered(t *testing.T) {
	b := setup(t, Config{})
	b.ios.prepare = func(*Notification) error { return fmt.Errorf("%w: 5000 bytes", ErrPayloadTooLarge) }
	b.handle(t, makeBatch("c", 4), Normal)
	b.settle(t)
	if _, dead := b.out.snapshot(); len(dead) != 1 || dead[0].why.Reason != "payload_too_large" {
		t.Fatalf("dead letters: %+v", dead)
	}
	if n := len(b.and.sends()); n != 0 {
		t.Errorf("%d Android sends for a dead-lettered batch", n)
	}
}

func TestTransientFailuresAreHeldForTheNextAttempt(t *testing.T) {
	b := setup(t, Config{RetryBase: time.Second, RetryMax: time.Minute})
	b.ios.send = func(_ context.Context, to *Recipient) Result {
		if to.Token == fmt.Sprintf("%064x", 2) {
			return Result{Outcome: RetryLater, Status: 429, Reason: "TooManyRequests", RetryAfter: 30 * time.Second}
		}
		return Result{Outcome: Sent}
	}
	b.and.send = func(_ context.Context, to *Recipient) Result {
		switch to.Token {
		case "fcm-3":
			return Result{Outcome: RetryLater, Status: 503, Reason: "UNAVAILABLE"}
		case "fcm-5":
			return Result{Outcome: InvalidToken, Status: 404, Reason: "UNREGISTERED"}
		}
		return Result{Outcome: Sent}
	}
	batch := makeBatch("c", 10)
	batch.Campaign.RatePerSecond = 1000
	start := b.clock.Now()
	b.handle(t, batch, High)
	b.settle(t)
	holds, dead := b.out.snapshot()
	if len(dead) != 0 || len(holds) != 1 {
		t.Fatalf("holds %d dead %d, want 1 and 0", len(holds), len(dead))
	}
	h := holds[0]
	if h.attempt != 1 {
		t.Errorf("attempt %d", h.attempt)
	}
	if len(h.batch.Recipients) != 2 || h.batch.Recipients[0].Token != fmt.Sprintf("%064x", 2) || h.batch.Recipients[1].Token != "fcm-3" {
		t.Errorf("held recipients %+v, want the two that failed", h.batch.Recipients)
	}
	if h.batch.Campaign.RatePerSecond != 1000 || h.batch.Notification.Title != "t" {
		t.Errorf("held batch lost fields: %+v", h.batch)
	}
	if wait := h.at.Sub(start); wait < 30*time.Second {
		t.Errorf("held for %v, want at least the 30s Retry-After", wait)
	}
	info, _ := b.d.Campaign(context.Background(), "c")
	if info.Retrying != 2 {
		t.Errorf("retrying %d, want 2", info.Retrying)
	}
}

func TestLastAttemptGoesToTheDeadLetterQueue(t *testing.T) {
	b := setup(t, Config{MaxAttempts: 3})
	b.ios.send = func(context.Context, *Recipient) Result {
		return Result{Outcome: RetryLater, Status: 503, Reason: "ServiceUnavailable"}
	}
	batch := makeBatch("c", 1)
	del := newDelivery(t, batch)
	del.attempt, del.repub = 2, true // the third pass, back from a delay queue
	b.d.handleLane(context.Background(), del.value())
	b.settle(t)
	holds, dead := b.out.snapshot()
	if len(holds) != 0 || len(dead) != 1 {
		t.Fatalf("holds %d dead %d", len(holds), len(dead))
	}
	why := dead[0].why
	if why.Reason != "retries_exhausted" || why.Attempts != 3 || why.Status != 503 || why.ProviderReason != "ServiceUnavailable" || why.Provider != "apns" {
		t.Errorf("dead letter: %+v", why)
	}
	if b.met.received.Load() != 0 {
		t.Error("a republished batch was counted as received again")
	}
	if b.met.deadRecipients.Load() != 1 {
		t.Error("dead-lettered recipient not counted")
	}
}

func TestExpiredBatchIsAckedUnsent(t *testing.T) {
	b := setup(t, Config{})
	batch := makeBatch("c", 4)
	past := b.clock.Now().Add(-time.Minute)
	batch.ExpiresAt = &past
	del := b.handle(t, batch, Normal)
	if acked, _ := del.wait(t); acked != 1 {
		t.Fatal("not acked")
	}
	if n := b.ios.total() + b.and.total(); n != 0 {
		t.Errorf("%d sends of an expired batch", n)
	}
	if b.met.dropped.Load() != 4 {
		t.Errorf("dropped %d", b.met.dropped.Load())
	}
}

func TestNotBeforeIsHeld(t *testing.T) {
	b := setup(t, Config{})
	batch := makeBatch("c", 2)
	later := b.clock.Now().Add(time.Hour)
	batch.NotBefore = &later
	b.handle(t, batch, Normal).wait(t)
	holds, _ := b.out.snapshot()
	if len(holds) != 1 || !holds[0].at.Equal(later) || holds[0].attempt != 0 {
		t.Fatalf("holds: %+v", holds)
	}
	// Back from a delay queue a little early: held again, not sent.
	del := newDelivery(t, batch)
	del.holdUntil, del.repub = later, true
	b.d.handleLane(context.Background(), del.value())
	del.wait(t)
	if holds, _ := b.out.snapshot(); len(holds) != 2 {
		t.Fatalf("early release not held again: %+v", holds)
	}
	if n := b.ios.total(); n != 0 {
		t.Errorf("sent %d before not_before", n)
	}
}

func TestLostDeliveryIsNotAckedAndStopsSending(t *testing.T) {
	b := setup(t, Config{Workers: [numPlatforms]int{IOS: 1, Android: 1}})
	gate := make(chan struct{})
	var first atomic.Bool
	b.ios.send = func(ctx context.Context, _ *Recipient) Result {
		if first.CompareAndSwap(false, true) {
			<-gate
		}
		return Result{Outcome: Sent}
	}
	c, err := b.d.campaigns.observe(context.Background(), iosBatch("c", "a", 1), nil)
	if err != nil {
		t.Fatal(err)
	}
	del := newDelivery(t, iosBatch("c", "a", 4))
	done := make(chan struct{})
	go func() { processDirect(b.d, del, mustDecode(t, del.body), c); close(done) }()
	testwait.For(t, waitLong, "first send started", first.Load)
	close(del.lost)
	close(gate)
	<-done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !b.d.res.drain(ctx) {
		t.Fatal("lost delivery not released")
	}
	if del.acked+del.requeued != 0 {
		t.Errorf("lost delivery resolved: acked %d requeued %d", del.acked, del.requeued)
	}
	if n := b.ios.total(); n != 1 {
		t.Errorf("%d sends; after the loss nothing more should go out", n)
	}
}

func mustDecode(t *testing.T, body []byte) *Batch {
	t.Helper()
	b, err := DecodeBatch(body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHardStopHandsBackOnlyUnsentRecipients(t *testing.T) {
	b := setup(t, Config{Workers: [numPlatforms]int{IOS: 2, Android: 2}})
	var mu sync.Mutex
	sentOK := map[string]bool{}
	b.ios.send = func(ctx context.Context, to *Recipient) Result {
		mu.Lock()
		if len(sentOK) < 3 {
			sentOK[to.Token] = true
			mu.Unlock()
			return Result{Outcome: Sent}
		}
		mu.Unlock()
		<-ctx.Done() // stuck until the hard stop
		return Result{Outcome: RetryLater, Reason: "canceled", Err: ctx.Err()}
	}
	b.handle(t, iosBatch("c", "a", 20), Normal)
	testwait.For(t, waitLong, "3 sent and 2 workers stuck", func() bool { return b.ios.total() >= 5 })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if b.d.res.drain(ctx) {
		t.Fatal("Drain reported idle with sends stuck")
	}
	routedBefore := b.queues.routed["c"]
	b.hardStop(t)
	d := b.queues.created[0]
	if acked, requeued := d.wait(t); acked != 1 || requeued != 0 {
		t.Fatalf("acked %d requeued %d", acked, requeued)
	}
	if b.queues.routed["c"] != routedBefore+1 {
		t.Fatalf("remainder not routed back to the campaign queue")
	}
	rest := mustDecode(t, b.queues.created[1].body)
	if got := len(rest.Recipients); got != 17 {
		t.Errorf("handed back %d recipients, want 17 (20 minus the 3 sent)", got)
	}
	for _, r := range rest.Recipients {
		if sentOK[r.Token] {
			t.Errorf("handed back %s which was sent", ShortToken(r.Token))
		}
	}
}

func TestHardStopRequeuesWhenHandBackFails(t *testing.T) {
	b := setup(t, Config{Workers: [numPlatforms]int{IOS: 1, Android: 1}})
	b.ios.send = func(ctx context.Context, _ *Recipient) Result {
		<-ctx.Done()
		return Result{Outcome: RetryLater, Err: ctx.Err()}
	}
	b.handle(t, iosBatch("c", "a", 3), Normal)
	testwait.For(t, waitLong, "a send started", func() bool { return b.ios.total() > 0 })
	b.queues.mu.Lock()
	b.queues.fail = errors.New("broker down")
	b.queues.mu.Unlock()
	b.hardStop(t)
	if acked, requeued := b.queues.created[0].wait(t); acked != 0 || requeued != 1 {
		t.Fatalf("acked %d requeued %d, want requeue", acked, requeued)
	}
}

func TestHighLaneIsServedFirst(t *testing.T) {
	b := setup(t, Config{Workers: [numPlatforms]int{IOS: 1, Android: 1}})
	gate := make(chan struct{})
	var first atomic.Bool
	b.ios.send = func(_ context.Context, to *Recipient) Result {
		if first.CompareAndSwap(false, true) {
			<-gate
		}
		return Result{Outcome: Sent}
	}
	b.handle(t, iosBatch("bulk", "a", 3), Normal)
	testwait.For(t, waitLong, "first bulk send", first.Load)
	// The worker is busy with a0; a1 waits in the normal channel, a2 in
	// the run. Now a high-lane batch arrives.
	go b.handle(t, iosBatch("otp", "b", 1), High)
	testwait.For(t, waitLong, "high job queued", func() bool { return len(b.d.send.jobs[IOS][High]) > 0 })
	close(gate)
	b.settle(t)
	b.ios.mu.Lock()
	order := append([]string(nil), b.ios.order...)
	b.ios.mu.Unlock()
	if len(order) != 4 || !strings.HasPrefix(order[1], "b") {
		t.Errorf("send order %v: the high-lane recipient should go right after the one in progress", order)
	}
}

// androidThenIOS returns a batch of a Android recipients followed by i
// iOS ones.
func androidThenIOS(campaign string, a, i int) *Batch {
	b := makeBatch(campaign, 0)
	for n := range a {
		b.Recipients = append(b.Recipients, Recipient{Platform: Android, Token: fmt.Sprintf("fcm-%d", n)})
	}
	b.Recipients = append(b.Recipients, iosBatch(campaign, "a", i).Recipients...)
	return b
}

// TestBusyProviderDoesNotHoldUpTheOther: while every Android sender is
// stuck on a send and Android's jobs channel is full, the iOS recipients
// of the same batch are still sent.
func TestBusyProviderDoesNotHoldUpTheOther(t *testing.T) {
	b := setup(t, Config{Workers: [numPlatforms]int{IOS: 1, Android: 1}})
	gate := make(chan struct{})
	release := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release) // runs before the dispatcher's stop: its senders return
	b.and.send = func(context.Context, *Recipient) Result {
		<-gate
		return Result{Outcome: Sent}
	}
	// Android first: one in the sender, one in the channel, the third
	// would wait for room; the iOS ones come after them all.
	batch := androidThenIOS("c", 3, 5)
	b.handle(t, batch, Normal)
	testwait.For(t, waitLong, "the iOS recipients sent while Android is stuck", func() bool { return b.ios.total() == 5 })
	if n := b.and.total(); n != 1 {
		t.Errorf("%d Android sends begun, want 1 (the stuck one)", n)
	}
	release()
	b.settle(t)
	if n := b.and.total(); n != 3 {
		t.Errorf("%d Android sends, want 3", n)
	}
}

// TestThrottledProviderDoesNotHoldUpTheOther: FCM's limit (one a second
// here) paces the Android recipients of a batch, not its iOS ones, which
// are all sent before the clock moves.
func TestThrottledProviderDoesNotHoldUpTheOther(t *testing.T) {
	b := setup(t, Config{Limits: Limits{ProviderPerSecond: [numPlatforms]float64{Android: 1}, ProviderBurst: [numPlatforms]int{Android: 1}}})
	batch := androidThenIOS("c", 3, 5)
	b.handle(t, batch, Normal)
	testwait.For(t, waitLong, "the iOS recipients sent with the clock stopped", func() bool { return b.ios.total() == 5 })
	if n := b.and.total(); n != 1 {
		t.Errorf("%d Android sends with the clock stopped, want 1 (the burst)", n)
	}
	b.pump(t, time.Second, "the other Android recipients, one a second", func() bool { return b.and.total() == 3 })
	b.settle(t)
}

// TestEnqueueToSendIsObservedOncePerProducerBatch: a producer's batch that
// says when it was published records the time to its first send, once,
// by lane, on the dispatcher's clock; through a campaign's queue too. A
// batch that does not say, a retry and a batch held by not_before record
// nothing.
func TestEnqueueToSendIsObservedOncePerProducerBatch(t *testing.T) {
	b := setup(t, Config{})
	now := b.clock.Now()
	deliver := func(batch *Batch, lane Lane, adjust func(*fakeDelivery)) {
		t.Helper()
		del := newDelivery(t, batch)
		del.lane = lane
		adjust(del)
		b.d.handleLane(context.Background(), del.value())
		del.wait(t)
	}
	deliver(iosBatch("otp", "a", 3), High, func(d *fakeDelivery) { d.published = now.Add(-30 * time.Millisecond) })
	deliver(iosBatch("bulk", "b", 3), Normal, func(d *fakeDelivery) { d.published = now.Add(-2 * time.Second) })
	b.settle(t)
	deliver(iosBatch("otp", "c", 3), High, func(*fakeDelivery) {})
	deliver(iosBatch("otp", "d", 3), High, func(d *fakeDelivery) {
		d.published, d.repub, d.attempt = now.Add(-time.Minute), true, 1
	})
	deliver(iosBatch("otp", "e", 3), High, func(d *fakeDelivery) {
		d.published, d.repub, d.holdUntil = now.Add(-time.Minute), true, now // back from its not_before hold
	})
	b.settle(t)
	got := b.met.enqueueToSend()
	want := []laneWait{{High, 30 * time.Millisecond}, {Normal, 2 * time.Second}}
	if !slices.Equal(got, want) {
		t.Errorf("enqueue-to-send observations %v, want %v", got, want)
	}
}
