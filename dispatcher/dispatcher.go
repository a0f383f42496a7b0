// Package dispatcher is the domain core of pushd: the batch contract
// (pushd.batch/v1), the provider and queue interfaces it needs, and the
// Dispatcher that turns deliveries into sends, retries and dead letters and
// acknowledges each delivery once every recipient in it is resolved.
//
// It knows nothing of AMQP, HTTP or Prometheus: queue, push/* and metrics
// adapt those to the small interfaces declared here, and cmd/pushd wires
// them together.
package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// Lane is the priority lane a batch travels on.
type Lane uint8

// Lanes. The high lane (routing key batch.high) is for transactional pushes
// and is always served first.
const (
	Normal Lane = iota
	High
)

// String returns "normal" or "high".
func (l Lane) String() string {
	if l == High {
		return "high"
	}
	return "normal"
}

// Delivery is one message taken from the queue, as the dispatcher sees it.
type Delivery interface {
	// Body is the message body, a pushd.batch/v1 document.
	Body() []byte
	// Lane is the lane the message was consumed from.
	Lane() Lane
	// MessageID is the AMQP message id (the producer's batch id), if any.
	MessageID() string
	// Attempt is the number of send passes the batch already had: 0 for a
	// producer's message, n for the n-th retry of its failed recipients.
	Attempt() int
	// HoldUntil is when pushd asked for the message back (delayed retries
	// and not_before holds); zero for a producer's message.
	HoldUntil() time.Time
	// Republished reports whether pushd itself published this message (a
	// retry, a hold or a handed-back remainder), so it is not counted as
	// received again.
	Republished() bool
	// Ack acknowledges the message; the broker forgets it.
	Ack() error
	// Requeue hands the message back to the broker whole, for when no
	// better hand-off is possible.
	Requeue() error
	// Lost is closed when the delivery can no longer be acknowledged (its
	// channel is gone); the broker will deliver it again.
	Lost() <-chan struct{}
}

// Outbox publishes durably back to the broker: each call returns only once
// the broker has confirmed the message.
type Outbox interface {
	// Hold publishes a batch body to a lane. It is delivered again no
	// earlier than at (zero: at once), carrying attempt.
	Hold(ctx context.Context, lane Lane, body []byte, attempt int, at time.Time) error
	// DeadLetter publishes a body to the dead-letter queue with the reason.
	DeadLetter(ctx context.Context, body []byte, why DeadLetter) error
}

// DeadLetter says why a message or recipients were dead-lettered; the queue
// adapter writes it into message headers.
type DeadLetter struct {
	// MessageID identifies the message (the batch id) in the dead-letter
	// queue.
	MessageID string
	// Reason is a short code: malformed, schema, too_large,
	// payload_too_large, render_failed, retries_exhausted.
	Reason string
	// Detail is a human-readable explanation.
	Detail string
	// Attempts is the number of send attempts made, for retries_exhausted.
	Attempts int
	// Provider, Status and ProviderReason describe the last provider
	// answer, for retries_exhausted.
	Provider       string
	Status         int
	ProviderReason string
}

// Metrics receives what the dispatcher does. Implementations must be cheap
// and allocation-free: methods are called per recipient.
type Metrics interface {
	// BatchReceived counts a producer's batch and its recipients.
	BatchReceived(l Lane, recipients int)
	// BatchDeadLettered counts a batch sent to the dead-letter queue.
	BatchDeadLettered(reason string)
	// RecipientsDropped counts recipients not sent for reason
	// (malformed_token, unknown_platform, expired).
	RecipientsDropped(reason string, n int)
	// RecipientsDeadLettered counts recipients dead-lettered after their
	// last attempt.
	RecipientsDeadLettered(p Platform, n int)
	// SendDone records one send attempt, its outcome and duration.
	SendDone(p Platform, o Outcome, d time.Duration)
	// CredentialFault counts a send refused because of pushd's own
	// credentials.
	CredentialFault(p Platform)
	// InFlight adds delta to the recipients being processed.
	InFlight(delta int)
}

// Config tunes a Dispatcher. Zero fields take the defaults given.
type Config struct {
	// Workers is the number of concurrent sends per platform (default 256
	// for iOS, 128 for Android). It bounds the HTTP/2 streams in flight.
	Workers [numPlatforms]int
	// MaxAttempts is how many times a recipient is tried before it goes to
	// the dead-letter queue (default 5).
	MaxAttempts int
	// RetryBase and RetryMax bound the exponential backoff between
	// attempts (defaults 1s and 5m); a provider's Retry-After wins when
	// longer.
	RetryBase time.Duration
	RetryMax  time.Duration
	// HandBackTimeout bounds publishing the unsent remainders at hard stop
	// (default 5s).
	HandBackTimeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Workers[IOS] <= 0 {
		c.Workers[IOS] = 256
	}
	if c.Workers[Android] <= 0 {
		c.Workers[Android] = 128
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 5
	}
	if c.RetryBase <= 0 {
		c.RetryBase = time.Second
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 5 * time.Minute
	}
	if c.HandBackTimeout <= 0 {
		c.HandBackTimeout = 5 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Dispatcher consumes deliveries (Handle), sends their recipients through a
// bounded pool of workers per platform and resolves each delivery exactly
// once: ack, hand back, or leave to the broker when its channel is lost.
type Dispatcher struct {
	cfg       Config
	log       *slog.Logger
	met       Metrics
	out       Outbox
	providers [numPlatforms]Provider

	// jobs[p][lane] feed the workers of platform p; workers take the high
	// lane first.
	jobs     [numPlatforms][2]chan job
	finished chan *run

	started chan struct{}   // closed by Run once runCtx is set
	runCtx  context.Context // Run's context; it ends at the hard stop

	// handling is held shared by each Handle call and exclusively by the
	// hand-back, so that the hand-back never races a submission.
	handling sync.RWMutex

	mu     sync.Mutex
	active map[*run]struct{}
	idle   chan struct{} // closed and replaced when active becomes empty
}

// job is one recipient of one run, small enough to pass by value.
type job struct {
	r *run
	i int32
}

// New returns a Dispatcher sending through providers (indexed by Platform;
// a nil provider drops that platform's recipients as unknown_platform).
func New(cfg Config, logger *slog.Logger, met Metrics, out Outbox, providers map[Platform]Provider) *Dispatcher {
	cfg.setDefaults()
	d := &Dispatcher{
		cfg:      cfg,
		log:      logger,
		met:      met,
		out:      out,
		finished: make(chan *run, 64),
		started:  make(chan struct{}),
		active:   make(map[*run]struct{}),
		idle:     make(chan struct{}),
	}
	for p, prov := range providers {
		if p > PlatformUnknown && p < numPlatforms {
			d.providers[p] = prov
		}
	}
	for _, p := range Platforms {
		for l := range d.jobs[p] {
			d.jobs[p][l] = make(chan job, cfg.Workers[p])
		}
	}
	return d
}

// finishers is the number of goroutines that publish retries and ack
// finished deliveries, so a slow broker round trip never holds a sender.
const finishers = 4

// Run runs the workers until ctx ends (the hard stop), then hands back every
// delivery not yet resolved: its unsent recipients are republished to its
// lane and it is acked, or, if that fails, it is requeued whole. Call Drain
// first for a graceful stop.
func (d *Dispatcher) Run(ctx context.Context) error {
	select {
	case <-d.started:
		return errors.New("dispatcher: Run called twice")
	default:
	}
	d.runCtx = ctx
	close(d.started)
	var wg sync.WaitGroup
	for _, p := range Platforms {
		for range d.cfg.Workers[p] {
			wg.Go(func() { d.work(ctx, p) })
		}
	}
	var fwg sync.WaitGroup
	for range finishers {
		fwg.Go(func() { d.finishLoop(ctx) })
	}
	<-ctx.Done()
	wg.Wait()
	fwg.Wait()
	d.handling.Lock()
	d.handBack()
	d.handling.Unlock()
	return nil
}

// Drain waits until every delivery handed to Handle is resolved, or ctx ends.
// It reports whether all were resolved.
func (d *Dispatcher) Drain(ctx context.Context) bool {
	for {
		d.mu.Lock()
		n, idle := len(d.active), d.idle
		d.mu.Unlock()
		if n == 0 {
			return true
		}
		select {
		case <-idle:
		case <-ctx.Done():
			return false
		}
	}
}

// Handle processes one delivery: it decodes and validates the batch,
// dead-letters what breaks the contract, holds what is not due yet, and
// submits each recipient to the workers. It returns once every recipient is
// submitted (not sent); the delivery is resolved later. It blocks while the
// workers are busy, which is how back-pressure reaches the broker's prefetch.
func (d *Dispatcher) Handle(ctx context.Context, del Delivery) {
	select {
	case <-d.started:
	case <-ctx.Done():
		d.requeueDelivery(del)
		return
	}
	d.handling.RLock()
	defer d.handling.RUnlock()
	if d.runCtx.Err() != nil {
		// After the hard stop nothing is sent any more.
		d.requeueDelivery(del)
		return
	}
	now := d.cfg.Now()
	if at := del.HoldUntil(); at.After(now.Add(holdSlack)) {
		// Released early by a delay level: hold again for the rest.
		d.settle(ctx, del, func(ctx context.Context) error {
			return d.out.Hold(ctx, del.Lane(), del.Body(), del.Attempt(), at)
		})
		return
	}
	b, err := DecodeBatch(del.Body())
	if err != nil {
		reason := "schema"
		switch {
		case errors.Is(err, ErrMalformed):
			reason = "malformed"
		case errors.Is(err, ErrTooLarge):
			reason = "too_large"
		}
		d.log.Warn("dead-lettering batch", "reason", reason, "err", err)
		d.met.BatchDeadLettered(reason)
		d.settle(ctx, del, func(ctx context.Context) error {
			return d.out.DeadLetter(ctx, del.Body(), DeadLetter{MessageID: del.MessageID(), Reason: reason, Detail: err.Error()})
		})
		return
	}
	if !del.Republished() {
		d.met.BatchReceived(del.Lane(), len(b.Recipients))
	}
	if b.Expired(now) {
		d.log.Info("batch expired; not sent", "batch_id", b.BatchID, "campaign", b.Campaign.ID, "recipients", len(b.Recipients))
		d.met.RecipientsDropped("expired", len(b.Recipients))
		d.settle(ctx, del, nil)
		return
	}
	if b.NotBefore != nil && b.NotBefore.After(now.Add(holdSlack)) {
		at := *b.NotBefore
		d.log.Debug("holding batch until not_before", "batch_id", b.BatchID, "not_before", at)
		d.settle(ctx, del, func(ctx context.Context) error {
			return d.out.Hold(ctx, del.Lane(), del.Body(), del.Attempt(), at)
		})
		return
	}

	r, err := d.newRun(del, b)
	if err != nil {
		reason := "render_failed"
		if errors.Is(err, ErrPayloadTooLarge) {
			reason = "payload_too_large"
		}
		d.log.Warn("dead-lettering batch", "reason", reason, "batch_id", b.BatchID, "err", err)
		d.met.BatchDeadLettered(reason)
		d.settle(ctx, del, func(ctx context.Context) error {
			return d.out.DeadLetter(ctx, del.Body(), DeadLetter{MessageID: del.MessageID(), Reason: reason, Detail: err.Error()})
		})
		return
	}
	d.track(r)
	lane := del.Lane()
	var dropped [2]int // malformed token, unknown platform
	for i := range b.Recipients {
		rc := &b.Recipients[i]
		if err := rc.Check(); err != nil || d.providers[rc.Platform] == nil {
			if errors.Is(err, ErrBadToken) {
				dropped[0]++
			} else {
				dropped[1]++
			}
			r.state[i] = stateDone
			continue
		}
		r.pending.Add(1)
		d.met.InFlight(1)
		select {
		case d.jobs[rc.Platform][lane] <- job{r: r, i: int32(i)}:
		case <-d.runCtx.Done():
			// Hard stop while submitting: the rest stays pending and is
			// handed back by Run.
			d.met.InFlight(-1)
			r.pending.Add(-1)
			r.release()
			return
		}
	}
	if dropped[0] > 0 {
		d.met.RecipientsDropped("malformed_token", dropped[0])
	}
	if dropped[1] > 0 {
		d.met.RecipientsDropped("unknown_platform", dropped[1])
	}
	if dropped[0]+dropped[1] > 0 {
		d.log.Debug("dropped recipients", "batch_id", b.BatchID, "malformed_token", dropped[0], "unknown_platform", dropped[1])
	}
	r.release()
}

// holdSlack is how early a held message may be processed: delay levels
// release with the broker's TTL precision, and a few milliseconds early is
// on time.
const holdSlack = 200 * time.Millisecond

// settle finishes a delivery that needs no sending: it runs publish (may be
// nil) and acks, or requeues the delivery if publishing failed. Publishing
// waits for a broker connection until the hard stop.
func (d *Dispatcher) settle(_ context.Context, del Delivery, publish func(context.Context) error) {
	if publish != nil {
		if err := publish(d.runCtx); err != nil {
			d.log.Error("could not publish; requeueing delivery", "err", err)
			d.requeueDelivery(del)
			return
		}
	}
	if err := del.Ack(); err != nil {
		d.log.Debug("ack failed; the broker will redeliver", "err", err)
	}
}

func (d *Dispatcher) track(r *run) {
	d.mu.Lock()
	d.active[r] = struct{}{}
	d.mu.Unlock()
}

func (d *Dispatcher) untrack(r *run) {
	d.mu.Lock()
	delete(d.active, r)
	if len(d.active) == 0 {
		close(d.idle)
		d.idle = make(chan struct{})
	}
	d.mu.Unlock()
}

// work is one sender: it takes jobs of platform p, high lane first.
func (d *Dispatcher) work(ctx context.Context, p Platform) {
	high, normal := d.jobs[p][High], d.jobs[p][Normal]
	for {
		var j job
		select {
		case j = <-high:
		default:
			select {
			case j = <-high:
			case j = <-normal:
			case <-ctx.Done():
				return
			}
		}
		d.send(ctx, p, j)
	}
}

func (d *Dispatcher) send(ctx context.Context, p Platform, j job) {
	r := j.r
	defer d.met.InFlight(-1)
	if r.isLost() {
		// The broker will redeliver the whole message; sending now would
		// only add duplicates.
		r.done()
		return
	}
	rc := &r.batch.Recipients[j.i]
	start := d.cfg.Now()
	res := r.msgs[p].Send(ctx, rc)
	d.met.SendDone(p, res.Outcome, d.cfg.Now().Sub(start))
	switch res.Outcome {
	case Sent:
		r.state[j.i] = stateDone
	case InvalidToken:
		r.state[j.i] = stateDone
		d.log.Debug("invalid token", "platform", p, "token", ShortToken(rc.Token), "reason", res.Reason)
	case Failed:
		r.state[j.i] = stateDone
		d.log.Debug("permanent failure", "platform", p, "token", ShortToken(rc.Token), "status", res.Status, "reason", res.Reason, "err", res.Err)
	case RetryLater:
		if ctx.Err() != nil {
			// Interrupted by the hard stop: still pending, handed back.
			return
		}
		if res.Credential {
			d.met.CredentialFault(p)
			d.log.Warn("provider refused pushd's credentials", "provider", p.Provider(), "status", res.Status, "reason", res.Reason)
		}
		r.state[j.i] = stateRetry
		r.noteRetry(p, res)
	}
	r.done()
}

// finishLoop resolves runs whose recipients have all been tried.
func (d *Dispatcher) finishLoop(ctx context.Context) {
	for {
		select {
		case r := <-d.finished:
			d.finish(ctx, r)
		case <-ctx.Done():
			return
		}
	}
}

// finish resolves a run: failed recipients are held for their next attempt
// (or dead-lettered after the last), then the delivery is acked.
func (d *Dispatcher) finish(ctx context.Context, r *run) {
	if r.isLost() {
		d.untrack(r)
		return
	}
	retry := r.subset(stateRetry)
	if len(retry) > 0 {
		attempt := r.del.Attempt() + 1
		body, err := r.encode(retry)
		if err != nil {
			// Cannot happen for a batch that decoded; keep it safe anyway.
			d.log.Error("encode retry batch", "err", err)
			d.requeue(r)
			return
		}
		var perr error
		if attempt >= d.cfg.MaxAttempts {
			last := r.lastRetry
			d.met.RecipientsDeadLettered(r.lastRetryPlatform, len(retry))
			d.log.Warn("recipients dead-lettered after last attempt", "batch_id", r.batch.BatchID, "recipients", len(retry), "attempts", attempt, "reason", last.Reason)
			perr = d.out.DeadLetter(ctx, body, DeadLetter{
				MessageID:      r.batch.BatchID,
				Reason:         "retries_exhausted",
				Detail:         fmt.Sprintf("no success after %d attempts", attempt),
				Attempts:       attempt,
				Provider:       r.lastRetryPlatform.Provider(),
				Status:         last.Status,
				ProviderReason: last.Reason,
			})
		} else {
			at := d.cfg.Now().Add(d.backoff(attempt, r.maxRetryAfter))
			perr = d.out.Hold(ctx, r.del.Lane(), body, attempt, at)
		}
		if perr != nil {
			d.log.Error("could not hand off failed recipients; requeueing batch", "batch_id", r.batch.BatchID, "err", perr)
			d.requeue(r)
			return
		}
	}
	if err := r.del.Ack(); err != nil {
		d.log.Debug("ack failed; the broker will redeliver", "batch_id", r.batch.BatchID, "err", err)
	}
	d.untrack(r)
}

func (d *Dispatcher) requeue(r *run) {
	d.requeueDelivery(r.del)
	d.untrack(r)
}

func (d *Dispatcher) requeueDelivery(del Delivery) {
	if err := del.Requeue(); err != nil {
		d.log.Debug("requeue failed; the broker will redeliver", "err", err)
	}
}

// backoff is the delay before attempt (1-based retry number): exponential
// from RetryBase, capped at RetryMax, with equal jitter, and never shorter
// than the provider's Retry-After.
func (d *Dispatcher) backoff(attempt int, retryAfter time.Duration) time.Duration {
	b := d.cfg.RetryBase << min(attempt-1, 30)
	if b > d.cfg.RetryMax || b <= 0 {
		b = d.cfg.RetryMax
	}
	b = b/2 + rand.N(b/2+1)
	return max(b, retryAfter)
}

// handBack resolves what the hard stop interrupted: the recipients of each
// unresolved delivery that were not sent are republished to its lane and the
// delivery acked; if that fails, the delivery is requeued whole.
func (d *Dispatcher) handBack() {
	d.mu.Lock()
	runs := make([]*run, 0, len(d.active))
	for r := range d.active {
		runs = append(runs, r)
	}
	d.mu.Unlock()
	// Runs whose last recipient resolved just before the stop may still sit
	// in d.finished; they are in runs too and are handled like the others.
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.HandBackTimeout)
	defer cancel()
	for _, r := range runs {
		if r.isLost() {
			d.untrack(r)
			continue
		}
		rest := r.subset(stateNone, stateRetry)
		if len(rest) == 0 {
			if err := r.del.Ack(); err != nil {
				d.log.Debug("ack failed; the broker will redeliver", "err", err)
			}
			d.untrack(r)
			continue
		}
		body, err := r.encode(rest)
		if err == nil {
			err = d.out.Hold(ctx, r.del.Lane(), body, r.del.Attempt(), time.Time{})
		}
		if err != nil {
			d.log.Warn("hand back failed; requeueing whole batch", "batch_id", r.batch.BatchID, "err", err)
			d.requeue(r)
			continue
		}
		d.log.Info("handed back unsent recipients", "batch_id", r.batch.BatchID, "recipients", len(rest))
		if err := r.del.Ack(); err != nil {
			d.log.Debug("ack failed; the broker will redeliver", "err", err)
		}
		d.untrack(r)
	}
}
