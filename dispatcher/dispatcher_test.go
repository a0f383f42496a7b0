package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeDelivery is a Delivery whose resolution is observable.
type fakeDelivery struct {
	body      []byte
	lane      Lane
	attempt   int
	holdUntil time.Time
	repub     bool
	lost      chan struct{}

	mu       sync.Mutex
	acked    int
	requeued int
	resolved chan struct{}
}

func newDelivery(t *testing.T, b *Batch) *fakeDelivery {
	t.Helper()
	body, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeDelivery{body: body, lost: make(chan struct{}), resolved: make(chan struct{})}
}

func (d *fakeDelivery) Body() []byte          { return d.body }
func (d *fakeDelivery) Lane() Lane            { return d.lane }
func (d *fakeDelivery) MessageID() string     { return "m-1" }
func (d *fakeDelivery) Attempt() int          { return d.attempt }
func (d *fakeDelivery) HoldUntil() time.Time  { return d.holdUntil }
func (d *fakeDelivery) Republished() bool     { return d.repub }
func (d *fakeDelivery) Lost() <-chan struct{} { return d.lost }
func (d *fakeDelivery) Ack() error            { return d.resolve(&d.acked) }
func (d *fakeDelivery) Requeue() error        { return d.resolve(&d.requeued) }

func (d *fakeDelivery) resolve(n *int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	*n++
	if d.acked+d.requeued == 1 {
		close(d.resolved)
	}
	return nil
}

func (d *fakeDelivery) wait(t *testing.T) (acked, requeued int) {
	t.Helper()
	select {
	case <-d.resolved:
	case <-time.After(10 * time.Second):
		t.Fatal("delivery not resolved")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.acked, d.requeued
}

// fakeOutbox records what the dispatcher publishes.
type fakeOutbox struct {
	mu    sync.Mutex
	holds []held
	dead  []dead
	fail  error
}

type held struct {
	lane    Lane
	batch   *Batch
	attempt int
	at      time.Time
}

type dead struct {
	body []byte
	why  DeadLetter
}

func (o *fakeOutbox) Hold(_ context.Context, lane Lane, body []byte, attempt int, at time.Time) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fail != nil {
		return o.fail
	}
	b, err := DecodeBatch(body)
	if err != nil {
		return fmt.Errorf("held body does not decode: %w", err)
	}
	o.holds = append(o.holds, held{lane, b, attempt, at})
	return nil
}

func (o *fakeOutbox) DeadLetter(_ context.Context, body []byte, why DeadLetter) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fail != nil {
		return o.fail
	}
	o.dead = append(o.dead, dead{body, why})
	return nil
}

func (o *fakeOutbox) snapshot() ([]held, []dead) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]held(nil), o.holds...), append([]dead(nil), o.dead...)
}

// fakeProvider answers each send with its send function.
type fakeProvider struct {
	send    func(ctx context.Context, to *Recipient) Result
	prepare func(n *Notification) error

	mu    sync.Mutex
	count map[string]int
}

func (p *fakeProvider) Prepare(n *Notification) (Message, error) {
	if p.prepare != nil {
		if err := p.prepare(n); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *fakeProvider) Send(ctx context.Context, to *Recipient) Result {
	p.mu.Lock()
	if p.count == nil {
		p.count = map[string]int{}
	}
	p.count[to.Token]++
	p.mu.Unlock()
	if p.send == nil {
		return Result{Outcome: Sent}
	}
	return p.send(ctx, to)
}

func (p *fakeProvider) sends() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for k, v := range p.count {
		out[k] = v
	}
	return out
}

// countingMetrics counts what tests assert on; the rest is discarded.
type countingMetrics struct {
	received, dropped, deadRecipients atomic.Int64
	outcomes                          [numOutcomes]atomic.Int64
	inFlight                          atomic.Int64
}

func (m *countingMetrics) BatchReceived(_ Lane, n int)       { m.received.Add(int64(n)) }
func (m *countingMetrics) BatchDeadLettered(string)          {}
func (m *countingMetrics) RecipientsDropped(_ string, n int) { m.dropped.Add(int64(n)) }
func (m *countingMetrics) RecipientsDeadLettered(_ Platform, n int) {
	m.deadRecipients.Add(int64(n))
}
func (m *countingMetrics) SendDone(_ Platform, o Outcome, _ time.Duration) { m.outcomes[o].Add(1) }
func (m *countingMetrics) CredentialFault(Platform)                        {}
func (m *countingMetrics) InFlight(delta int)                              { m.inFlight.Add(int64(delta)) }

type bundle struct {
	d        *Dispatcher
	out      *fakeOutbox
	ios, and *fakeProvider
	met      *countingMetrics
	stop     context.CancelFunc
	stopped  chan struct{}
	now      time.Time
}

func setup(t *testing.T, cfg Config) *bundle {
	t.Helper()
	b := &bundle{out: &fakeOutbox{}, ios: &fakeProvider{}, and: &fakeProvider{}, met: &countingMetrics{}, stopped: make(chan struct{})}
	b.now = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return b.now }
	}
	if cfg.Workers[IOS] == 0 {
		cfg.Workers = [numPlatforms]int{IOS: 8, Android: 8}
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	b.d = New(cfg, logger, b.met, b.out, map[Platform]Provider{IOS: b.ios, Android: b.and})
	ctx, cancel := context.WithCancel(context.Background())
	b.stop = cancel
	go func() {
		defer close(b.stopped)
		_ = b.d.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-b.stopped
	})
	return b
}

// eventually polls cond until it holds, failing the test after 10s.
func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func (b *bundle) hardStop(t *testing.T) {
	t.Helper()
	b.stop()
	select {
	case <-b.stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the hard stop")
	}
}

// makeBatch returns a batch of n recipients, alternating iOS and Android.
func makeBatch(n int) *Batch {
	b := &Batch{
		Schema:       Schema,
		BatchID:      "c/1",
		Campaign:     Campaign{ID: "c"},
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

func TestHandleSendsEveryRecipientOnceThenAcks(t *testing.T) {
	b := setup(t, Config{})
	batch := makeBatch(100)
	del := newDelivery(t, batch)
	b.d.Handle(context.Background(), del)
	if acked, requeued := del.wait(t); acked != 1 || requeued != 0 {
		t.Fatalf("acked %d requeued %d", acked, requeued)
	}
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
	if got := b.met.outcomes[Sent].Load(); got != 100 {
		t.Errorf("sent metric %d", got)
	}
	if !b.d.Drain(context.Background()) {
		t.Error("Drain: not idle after the only delivery was acked")
	}
	if got := b.met.inFlight.Load(); got != 0 {
		t.Errorf("in flight %d after ack", got)
	}
}

func TestMalformedTokensAreDroppedAndTheRestSent(t *testing.T) {
	b := setup(t, Config{})
	batch := makeBatch(10)
	batch.Recipients[0].Token = "not-hex"
	batch.Recipients[1].Token = "bad token"
	batch.Recipients = append(batch.Recipients, Recipient{Platform: PlatformUnknown, Token: "x"})
	del := newDelivery(t, batch)
	// Encoding turns PlatformUnknown into "unknown", which decodes back to
	// PlatformUnknown.
	b.d.Handle(context.Background(), del)
	if acked, _ := del.wait(t); acked != 1 {
		t.Fatalf("acked %d", acked)
	}
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
		del := &fakeDelivery{body: []byte(body), lost: make(chan struct{}), resolved: make(chan struct{})}
		b.d.Handle(context.Background(), del)
		if acked, _ := del.wait(t); acked != 1 {
			t.Fatalf("%s: acked %d", body, acked)
		}
	}
	_, dead := b.out.snapshot()
	if len(dead) != 2 || dead[0].why.Reason != "malformed" || dead[1].why.Reason != "schema" || dead[1].why.Detail == "" {
		t.Fatalf("dead letters: %+v", dead)
	}
	if string(dead[0].body) != `{not json` {
		t.Errorf("dead letter body changed: %q", dead[0].body)
	}
}

func TestPayloadTooLargeIsDeadLettered(t *testing.T) {
	b := setup(t, Config{})
	b.ios.prepare = func(*Notification) error { return fmt.Errorf("%w: 5000 bytes", ErrPayloadTooLarge) }
	del := newDelivery(t, makeBatch(4))
	b.d.Handle(context.Background(), del)
	if acked, _ := del.wait(t); acked != 1 {
		t.Fatal("not acked")
	}
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
		if to.Token == "fcm-3" {
			return Result{Outcome: RetryLater, Status: 503, Reason: "UNAVAILABLE"}
		}
		if to.Token == "fcm-5" {
			return Result{Outcome: InvalidToken, Status: 404, Reason: "UNREGISTERED"}
		}
		return Result{Outcome: Sent}
	}
	batch := makeBatch(10)
	batch.Campaign.RatePerSecond = 7
	del := newDelivery(t, batch)
	del.lane = High
	b.d.Handle(context.Background(), del)
	if acked, _ := del.wait(t); acked != 1 {
		t.Fatal("not acked")
	}
	holds, dead := b.out.snapshot()
	if len(dead) != 0 || len(holds) != 1 {
		t.Fatalf("holds %d dead %d, want 1 and 0", len(holds), len(dead))
	}
	h := holds[0]
	if h.attempt != 1 || h.lane != High {
		t.Errorf("attempt %d lane %v", h.attempt, h.lane)
	}
	if len(h.batch.Recipients) != 2 || h.batch.Recipients[0].Token != fmt.Sprintf("%064x", 2) || h.batch.Recipients[1].Token != "fcm-3" {
		t.Errorf("held recipients %+v, want the two that failed", h.batch.Recipients)
	}
	if h.batch.Campaign.RatePerSecond != 7 || h.batch.Notification.Title != "t" {
		t.Errorf("held batch lost fields: %+v", h.batch)
	}
	if wait := h.at.Sub(b.now); wait < 30*time.Second {
		t.Errorf("held for %v, want at least the 30s Retry-After", wait)
	}
}

func TestLastAttemptGoesToTheDeadLetterQueue(t *testing.T) {
	b := setup(t, Config{MaxAttempts: 3})
	b.ios.send = func(context.Context, *Recipient) Result {
		return Result{Outcome: RetryLater, Status: 503, Reason: "ServiceUnavailable"}
	}
	batch := makeBatch(1)
	del := newDelivery(t, batch)
	del.attempt, del.repub = 2, true // this is the third pass
	b.d.Handle(context.Background(), del)
	if acked, _ := del.wait(t); acked != 1 {
		t.Fatal("not acked")
	}
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
	batch := makeBatch(4)
	past := b.now.Add(-time.Minute)
	batch.ExpiresAt = &past
	del := newDelivery(t, batch)
	b.d.Handle(context.Background(), del)
	if acked, _ := del.wait(t); acked != 1 {
		t.Fatal("not acked")
	}
	if n := len(b.ios.sends()) + len(b.and.sends()); n != 0 {
		t.Errorf("%d sends of an expired batch", n)
	}
	if b.met.dropped.Load() != 4 {
		t.Errorf("dropped %d", b.met.dropped.Load())
	}
}

func TestNotBeforeIsHeld(t *testing.T) {
	b := setup(t, Config{})
	batch := makeBatch(2)
	later := b.now.Add(time.Hour)
	batch.NotBefore = &later
	del := newDelivery(t, batch)
	b.d.Handle(context.Background(), del)
	if acked, _ := del.wait(t); acked != 1 {
		t.Fatal("not acked")
	}
	holds, _ := b.out.snapshot()
	if len(holds) != 1 || !holds[0].at.Equal(later) || holds[0].attempt != 0 {
		t.Fatalf("holds: %+v", holds)
	}
	if n := len(b.ios.sends()); n != 0 {
		t.Errorf("sent %d before not_before", n)
	}
	// Back from the delay queue a little early: held again, not sent.
	del2 := newDelivery(t, batch)
	del2.holdUntil, del2.repub = later, true
	b.now = later.Add(-5 * time.Second)
	b.d.Handle(context.Background(), del2)
	del2.wait(t)
	if holds, _ := b.out.snapshot(); len(holds) != 2 {
		t.Fatalf("early release not held again: %+v", holds)
	}
	// On time: sent.
	del3 := newDelivery(t, batch)
	del3.holdUntil, del3.repub = later, true
	b.now = later
	b.d.Handle(context.Background(), del3)
	del3.wait(t)
	if n := len(b.ios.sends()); n != 1 {
		t.Errorf("sent %d on time, want 1", n)
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
	batch := makeBatch(2)
	for i := range batch.Recipients {
		batch.Recipients[i] = Recipient{Platform: IOS, Token: fmt.Sprintf("%064x", i)}
	}
	batch.Recipients = append(batch.Recipients, Recipient{Platform: IOS, Token: fmt.Sprintf("%064x", 99)})
	del := newDelivery(t, batch)
	done := make(chan struct{})
	go func() { b.d.Handle(context.Background(), del); close(done) }()
	// The single iOS worker is stuck in the first send; the channel dies.
	eventually(t, first.Load)
	close(del.lost)
	close(gate)
	<-done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !b.d.Drain(ctx) {
		t.Fatal("lost delivery not released")
	}
	if del.acked+del.requeued != 0 {
		t.Errorf("lost delivery resolved: acked %d requeued %d", del.acked, del.requeued)
	}
	if n := len(b.ios.sends()); n != 1 {
		t.Errorf("%d sends; after the loss nothing more should go out", n)
	}
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
		return Result{Outcome: RetryLater, Reason: "cancelled", Err: ctx.Err()}
	}
	batch := makeBatch(1)
	batch.Recipients = nil
	for i := range 20 {
		batch.Recipients = append(batch.Recipients, Recipient{Platform: IOS, Token: fmt.Sprintf("%064x", i)})
	}
	del := newDelivery(t, batch)
	go b.d.Handle(context.Background(), del)
	eventually(t, func() bool { return len(b.ios.sends()) >= 5 }) // 3 sent, 2 workers stuck
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if b.d.Drain(ctx) {
		t.Fatal("Drain reported idle with sends stuck")
	}
	b.hardStop(t)
	if acked, requeued := del.wait(t); acked != 1 || requeued != 0 {
		t.Fatalf("acked %d requeued %d", acked, requeued)
	}
	holds, _ := b.out.snapshot()
	if len(holds) != 1 {
		t.Fatalf("holds: %d", len(holds))
	}
	if got := len(holds[0].batch.Recipients); got != 17 {
		t.Errorf("handed back %d recipients, want 17 (20 minus the 3 sent)", got)
	}
	for _, r := range holds[0].batch.Recipients {
		if sentOK[r.Token] {
			t.Errorf("handed back %s which was sent", ShortToken(r.Token))
		}
	}
	if !holds[0].at.IsZero() || holds[0].attempt != 0 {
		t.Errorf("hand-back should be immediate and keep the attempt: %+v", holds[0])
	}
}

func TestHardStopRequeuesWhenHandBackFails(t *testing.T) {
	b := setup(t, Config{Workers: [numPlatforms]int{IOS: 1, Android: 1}})
	b.out.fail = fmt.Errorf("broker down")
	b.ios.send = func(ctx context.Context, _ *Recipient) Result {
		<-ctx.Done()
		return Result{Outcome: RetryLater, Err: ctx.Err()}
	}
	del := newDelivery(t, makeBatch(1))
	go b.d.Handle(context.Background(), del)
	eventually(t, func() bool { return len(b.ios.sends()) > 0 })
	b.hardStop(t)
	if acked, requeued := del.wait(t); acked != 0 || requeued != 1 {
		t.Fatalf("acked %d requeued %d, want requeue", acked, requeued)
	}
}

func TestHighLaneIsServedFirst(t *testing.T) {
	b := setup(t, Config{Workers: [numPlatforms]int{IOS: 1, Android: 1}})
	gate := make(chan struct{})
	var order []string
	var mu sync.Mutex
	var first atomic.Bool
	b.ios.send = func(_ context.Context, to *Recipient) Result {
		if first.CompareAndSwap(false, true) {
			<-gate
		}
		mu.Lock()
		order = append(order, to.Token[:1])
		mu.Unlock()
		return Result{Outcome: Sent}
	}
	mk := func(prefix string, n int) *Batch {
		bt := makeBatch(1)
		bt.Recipients = nil
		for i := range n {
			bt.Recipients = append(bt.Recipients, Recipient{Platform: IOS, Token: prefix + fmt.Sprintf("%063x", i)})
		}
		return bt
	}
	normal := newDelivery(t, mk("a", 3)) // the job channel holds 1 job with 1 worker
	high := newDelivery(t, mk("b", 1))
	high.lane = High
	go b.d.Handle(context.Background(), normal)
	eventually(t, first.Load)
	// The worker is busy with a0; a1 waits in the normal channel and a2 in
	// Handle. Now a high-lane batch arrives.
	go b.d.Handle(context.Background(), high)
	eventually(t, func() bool { return len(b.d.jobs[IOS][High]) > 0 })
	close(gate)
	normal.wait(t)
	high.wait(t)
	mu.Lock()
	defer mu.Unlock()
	if len(order) != 4 || order[1] != "b" {
		t.Errorf("send order %v: the high-lane recipient should go right after the one in progress", order)
	}
}
