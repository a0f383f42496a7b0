package dispatcher

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushd/pushd/internal/testwait"
	"github.com/pushd/pushd/ratelimit"
)

var (
	down     = Result{Outcome: RetryLater, Reason: "network"}
	down503  = Result{Outcome: RetryLater, Status: 503, Reason: "ServiceUnavailable"}
	tooMany  = Result{Outcome: RetryLater, Status: 429, Reason: "TooManyRequests", RetryAfter: time.Second}
	badCreds = Result{Outcome: RetryLater, Status: 403, Reason: "ExpiredProviderToken", Credential: true}
	badToken = Result{Outcome: InvalidToken, Status: 410, Reason: "Unregistered"}
	sent     = Result{Outcome: Sent, Status: 200}
)

func newTestBreaker(failures int) (*breaker, *ratelimit.ManualClock, *countingMetrics) {
	clock := ratelimit.NewManualClock(time.Now())
	met := &countingMetrics{}
	return newBreaker(IOS, clock, met, slog.New(slog.NewTextHandler(io.Discard, nil)), failures, time.Second), clock, met
}

func TestBreakerOpensAfterConsecutiveProviderFailures(t *testing.T) {
	tests := []struct {
		name     string
		results  []Result
		wantOpen bool
	}{
		{"N connection failures", []Result{down, down, down}, true},
		{"N 5xx", []Result{down503, down503, down503}, true},
		{"one short", []Result{down, down503}, false},
		{"a success resets the count", []Result{down, down, sent, down, down}, false},
		{"an invalid token resets the count", []Result{down, down, badToken, down, down}, false},
		{"429 neither counts nor resets", []Result{down, tooMany, down, tooMany, down}, true},
		{"credential faults neither count nor reset", []Result{badCreds, down, down, badCreds, down}, true},
		{"429s alone", []Result{tooMany, tooMany, tooMany, tooMany}, false},
		{"shutdown cancellations do not count", []Result{down, down, {Outcome: RetryLater, Reason: "canceled"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _, met := newTestBreaker(3)
			for _, r := range tt.results {
				b.record(r)
			}
			if got := !b.up(); got != tt.wantOpen {
				t.Fatalf("open %v, want %v", got, tt.wantOpen)
			}
			if met.providerDown[IOS].Load() != tt.wantOpen {
				t.Errorf("pushd_provider_up says down=%v, want %v", met.providerDown[IOS].Load(), tt.wantOpen)
			}
		})
	}
}

func TestBreakerProbesOncePerIntervalAndClosesOnAnAnswer(t *testing.T) {
	b, clock, met := newTestBreaker(2)
	if ok, probe, _, _ := b.admit(); !ok || probe {
		t.Fatal("a closed breaker must admit every send, none as a probe")
	}
	b.record(down)
	b.record(down)
	if b.up() || met.providerOpened[IOS].Load() != 1 {
		t.Fatal("not open after 2 failures")
	}
	ok, _, closed, next := b.admit()
	if ok {
		t.Fatal("admitted a send as soon as it opened")
	}
	if want := clock.Now().Add(time.Second); !next.Equal(want) {
		t.Errorf("next probe at %v, want %v", next, want)
	}
	clock.Advance(time.Second)
	if ok, probe, _, _ := b.admit(); !ok || !probe {
		t.Fatal("no probe a second after opening")
	}
	if ok, _, _, _ := b.admit(); ok {
		t.Fatal("a second probe in the same second")
	}
	// The probe fails with a Retry-After: the next probe waits for it.
	b.record(Result{Outcome: RetryLater, Status: 503, RetryAfter: 5 * time.Second})
	clock.Advance(time.Second)
	if ok, _, _, next := b.admit(); ok || !next.Equal(clock.Now().Add(4*time.Second)) {
		t.Fatalf("admitted %v, next probe %v: the provider's Retry-After must win", ok, next)
	}
	clock.Advance(4 * time.Second)
	if ok, probe, _, _ := b.admit(); !ok || !probe {
		t.Fatal("no probe once the Retry-After passed")
	}
	select {
	case <-closed:
		t.Fatal("released while open")
	default:
	}
	b.record(sent)
	select {
	case <-closed:
	default:
		t.Fatal("waiters not released when the probe succeeded")
	}
	if !b.up() || met.providerDown[IOS].Load() {
		t.Fatal("not closed after a success")
	}
	if ok, probe, _, _ := b.admit(); !ok || probe {
		t.Fatal("closed again, yet sends are not all admitted")
	}
}

// TestProviderOutageSpendsNoAttempts takes a provider down under a
// campaign: after BreakerFailures failures nothing more is sent to it but
// one probe a second, and no recipient spends an attempt but the probes;
// at the first success every recipient waiting is sent at once (within
// the provider's rate) and the retries of the outage are held for no
// backoff.
func TestProviderOutageSpendsNoAttempts(t *testing.T) {
	b := setup(t, Config{
		Workers:         [numPlatforms]int{IOS: 1, Android: 1},
		BreakerFailures: 3, BreakerProbe: time.Second,
		RetryBase: time.Minute, RetryMax: time.Hour,
		Limits: Limits{ProviderPerSecond: [numPlatforms]float64{IOS: 10}, ProviderBurst: [numPlatforms]int{IOS: 5}},
	})
	var isDown atomic.Bool
	isDown.Store(true)
	b.ios.send = func(context.Context, *Recipient) Result {
		if isDown.Load() {
			return down
		}
		return sent
	}
	const n = 40
	b.handle(t, iosBatch("c", "", n), Normal)
	b.d.signals.providerWait.Wait(t)
	if got := b.ios.total(); got != 3 {
		t.Fatalf("%d sends before the breaker held the rest, want 3", got)
	}
	if !b.met.providerDown[IOS].Load() {
		t.Fatal("pushd_provider_up still 1 for apns")
	}
	// One probe per second, each a real recipient's attempt.
	for probes := 1; probes <= 2; probes++ {
		b.clock.Advance(time.Second)
		b.d.signals.providerWait.Wait(t)
		testwait.For(t, waitLong, "the probe sent", func() bool { return b.ios.total() == 3+probes })
		if got := b.ios.total(); got != 3+probes {
			t.Fatalf("%d sends after %d probes, want %d", got, probes, 3+probes)
		}
	}
	isDown.Store(false)
	recovered := b.clock.Now().Add(time.Second)
	// The third probe succeeds: every waiting recipient goes, at the
	// provider's rate (burst 5, then 10/s).
	b.pump(t, 100*time.Millisecond, "every recipient tried", func() bool {
		return int(b.met.outcomes[Sent].Load()) == n-5
	})
	b.settle(t)
	if b.met.providerDown[IOS].Load() {
		t.Error("pushd_provider_up still 0 after a success")
	}
	// 35 sends after the recovery at 10/s with a burst of 5: about 3s.
	if took := b.clock.Now().Sub(recovered); took < 2900*time.Millisecond {
		t.Errorf("35 sends took %v of clock after the recovery: the provider's rate did not hold", took)
	}
	for tok, k := range b.ios.sends() {
		if k != 1 {
			t.Errorf("token %s sent %d times: an attempt was spent while the provider was down", tok[:8], k)
		}
	}
	if got := b.ios.total(); got != n {
		t.Errorf("%d sends in all, want %d", got, n)
	}
	holds, dead := b.out.snapshot()
	if len(dead) != 0 {
		t.Fatalf("%d dead letters", len(dead))
	}
	retried := 0
	for _, h := range holds {
		retried += len(h.batch.Recipients)
		if h.attempt != 1 {
			t.Errorf("held at attempt %d, want 1", h.attempt)
		}
		if wait := h.at.Sub(b.clock.Now()); wait > 0 {
			t.Errorf("retry of the outage held %v after the provider came back, want none (backoff %v)", wait, b.d.cfg.RetryBase)
		}
	}
	if retried != 5 {
		t.Errorf("%d recipients held for a retry, want the 3 failures and 2 probes", retried)
	}
}

// TestProviderOutageRetryAfterWins checks that a provider's Retry-After
// outlasts the breaker: the probes wait for it, and so do the retries.
func TestProviderOutageRetryAfterWins(t *testing.T) {
	b := setup(t, Config{
		Workers:         [numPlatforms]int{IOS: 1, Android: 1},
		BreakerFailures: 2, BreakerProbe: time.Second,
	})
	var isDown atomic.Bool
	isDown.Store(true)
	b.ios.send = func(context.Context, *Recipient) Result {
		if isDown.Load() {
			return Result{Outcome: RetryLater, Status: 503, Reason: "ServiceUnavailable", RetryAfter: 30 * time.Second}
		}
		return sent
	}
	b.handle(t, iosBatch("c", "", 10), Normal)
	b.d.signals.providerWait.Wait(t)
	start := b.clock.Now()
	for range 29 {
		b.clock.Advance(time.Second)
	}
	if got := b.ios.total(); got != 2 {
		t.Fatalf("%d sends within the 30s Retry-After, want the 2 that opened the breaker", got)
	}
	isDown.Store(false)
	b.pump(t, time.Second, "every recipient sent", func() bool { return b.met.outcomes[Sent].Load() == 8 })
	b.settle(t)
	if at := b.clock.Now().Sub(start); at < 30*time.Second {
		t.Errorf("probed %v after the Retry-After was given, want 30s", at)
	}
	holds, _ := b.out.snapshot()
	if len(holds) != 1 {
		t.Fatalf("%d holds, want 1", len(holds))
	}
	if wait := holds[0].at.Sub(b.clock.Now()); wait < 29*time.Second {
		t.Errorf("retries held %v, want the 30s Retry-After", wait)
	}
}

// TestProviderOutageOnlyHoldsItsOwnRecipients checks that an open breaker
// for APNs does not hold up FCM recipients of the same batch.
func TestProviderOutageOnlyHoldsItsOwnRecipients(t *testing.T) {
	b := setup(t, Config{BreakerFailures: 2, BreakerProbe: time.Second})
	b.ios.send = func(context.Context, *Recipient) Result { return down }
	b.handle(t, makeBatch("c", 40), Normal)
	b.d.signals.providerWait.Wait(t)
	testwait.For(t, waitLong, "every Android recipient sent", func() bool { return b.and.total() == 20 })
	if got := b.ios.total(); got > 2+8 {
		t.Errorf("%d iOS sends: more than the 2 that opened the breaker and the 8 workers' in flight", got)
	}
}

// TestProviderOutageRetriesKeepTheirBackoffWhileOpen checks that the
// recipients that failed as the breaker opened, resolved while it is
// open, keep their backoff: a lone recipient probed again each time it
// came back would spend its attempts within seconds.
func TestProviderOutageRetriesKeepTheirBackoffWhileOpen(t *testing.T) {
	b := setup(t, Config{BreakerFailures: 3, RetryBase: time.Minute, RetryMax: time.Hour})
	b.ios.send = func(context.Context, *Recipient) Result { return down503 }
	del := b.handle(t, iosBatch("c", "", 3), Normal)
	if acked, _ := del.wait(t); acked != 1 {
		t.Fatal("lane delivery not acked")
	}
	b.settle(t)
	if b.d.send.brk[IOS].up() {
		t.Fatal("breaker closed after 3 failures")
	}
	holds, _ := b.out.snapshot()
	if len(holds) != 1 || len(holds[0].batch.Recipients) != 3 {
		t.Fatalf("holds %+v, want the 3 recipients in one", holds)
	}
	if wait := holds[0].at.Sub(b.clock.Now()); wait < 30*time.Second {
		t.Errorf("held %v while the breaker is open, want their backoff (30s to 1m)", wait)
	}
}

// TestStopDuringOutageHandsBackTheWaitingRecipients checks that a soft
// stop does not wait for a provider that is down: the recipients waiting
// for its breaker go back to the campaign's queue untried, with the
// attempt count they had, and the delivery is acked.
func TestStopDuringOutageHandsBackTheWaitingRecipients(t *testing.T) {
	b := setup(t, Config{Workers: [numPlatforms]int{IOS: 1, Android: 1}, BreakerFailures: 2})
	b.ios.send = func(context.Context, *Recipient) Result { return down }
	b.handle(t, iosBatch("c", "", 10), Normal)
	b.d.signals.providerWait.Wait(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := b.d.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v (it waited for the provider)", err)
	}
	if got := b.ios.total(); got != 2 {
		t.Errorf("%d sends, want the 2 that opened the breaker", got)
	}
	var rest int
	b.queues.mu.Lock()
	for _, d := range b.queues.created[1:] { // [0]: the batch routed from the lane
		bt, err := DecodeBatch(d.body)
		if err != nil {
			t.Fatal(err)
		}
		if d.attempt != 0 {
			t.Errorf("recipients handed back at attempt %d, want 0", d.attempt)
		}
		rest += len(bt.Recipients)
	}
	b.queues.mu.Unlock()
	holds, _ := b.out.snapshot()
	if rest != 8 || len(holds) != 1 || len(holds[0].batch.Recipients) != 2 {
		t.Errorf("%d recipients handed back and %d holds, want the 8 untried back and the 2 failed held", rest, len(holds))
	}
}
