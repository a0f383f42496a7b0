package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// handleCampaign processes one delivery from campaign c's queue. ctx is the
// consumer's; when it is done the consumer is stopping (pause, shutdown) and
// the delivery is put back at the end of the queue, as a new message, so
// that pausing never counts towards the queue's delivery limit.
func (d *Dispatcher) handleCampaign(ctx context.Context, _ *campaign, del Delivery) {
	d.handling.RLock()
	defer d.handling.RUnlock()
	b, ok := d.decode(del)
	if !ok {
		return
	}
	c, ok := d.observe(del, b)
	if !ok {
		return
	}
	c.touch(d.now())
	st := c.status()
	switch {
	case st == StatusCancelled:
		if n := d.resolveWhole(del, b, c, cCancelled, nil); n > 0 {
			d.met.RecipientsCancelled(n)
		}
		return
	case ctx.Err() != nil || st != StatusRunning || d.hardCtx.Err() != nil:
		d.settle(del, func(ctx context.Context) error {
			return d.queues.Route(ctx, c.id, del.Body, del.Hop)
		})
		return
	case b.Expired(d.now()):
		if n := d.resolveWhole(del, b, c, cDropped, nil); n > 0 {
			d.met.RecipientsDropped("expired", n)
		}
		return
	}
	c.active.Add(1)
	d.process(del, b, c)
}

// process sends a batch: each recipient is checked, throttled (campaign,
// provider, global) and submitted to the senders. It stops submitting when
// the campaign leaves running, consuming stops, or the delivery has been
// held for MaxHold; the recipients not submitted are then handed on when
// the run is resolved (put back in the campaign's queue, or counted as
// cancelled).
//
// The caller has counted the run in c.active (so that the campaign does not
// end under it); the run's untrack, or process itself when no run is made,
// takes it back.
func (d *Dispatcher) process(del Delivery, b *Batch, c *campaign) {
	r, err := d.newRun(del, b, c)
	if err != nil {
		c.active.Add(-1)
		reason := "render_failed"
		if errors.Is(err, ErrPayloadTooLarge) {
			reason = "payload_too_large"
		}
		d.log.Warn("dead-lettering batch", "reason", reason, "batch_id", b.BatchID, "err", err)
		d.met.BatchDeadLettered(reason)
		// Its recipients are failed for good (counted as failed, as those
		// dead-lettered after their last attempt are).
		d.resolveWhole(del, b, c, cFailed, func(ctx context.Context) error {
			return d.out.DeadLetter(ctx, del.Body, DeadLetter{MessageID: del.MessageID, Reason: reason, Detail: err.Error()})
		})
		return
	}
	if !d.res.track(r) {
		// An identical message is being sent (a producer's duplicate, or a
		// batch routed twice around a crash): put this copy back at the
		// end of the campaign's queue; by the time it comes back the
		// ledger has the first one's recipients.
		c.active.Add(-1)
		d.settle(del, func(ctx context.Context) error {
			return c.routeBack(ctx, del.Lane, del.Body, del.Hop)
		})
		return
	}
	defer func() {
		// A panic from here on (a filter, the ledger, a bug) would leave the
		// run tracked forever: a stop would wait for it and every
		// redelivery would be put back as a copy, escaping the delivery
		// limit. Abandon the run as if its delivery were lost, let it be
		// resolved (ledger written, untracked), then let the consumer
		// requeue the delivery.
		if v := recover(); v != nil {
			close(r.abandoned)
			r.release()
			select {
			case <-r.untracked:
			case <-d.hardCtx.Done():
			}
			panic(v)
		}
	}()
	if d.ledger != nil {
		now := d.now()
		e, holder, err := d.ledger.ClaimLedger(WithLane(d.hardCtx, del.Lane), r.key, d.cfg.Owner, now, now.Add(d.cfg.LedgerLease))
		switch {
		case err != nil:
			d.log.Warn("cannot read the ledger; a redelivered batch may be sent twice", "batch_id", b.BatchID, "err", err)
		case holder != d.cfg.Owner:
			// Another instance is sending a copy of this message (the
			// broker delivered it again after a connection loss while
			// that instance went on): wait for its claim to end, up to
			// a second at a time, then put this copy back at the end of
			// the campaign's queue. When it comes back the ledger has
			// the other's recipients, or the claim has run out (that
			// instance died) and this one sends what is left.
			d.res.untrack(r)
			d.log.Info("a copy of this batch is being sent by another instance; waiting, then putting it back", "batch_id", b.BatchID, "holder", holder, "claimed_until", e.ClaimedUntil)
			d.waitClaim(del, r.key, e.ClaimedUntil.Sub(now))
			d.settle(del, func(ctx context.Context) error {
				return c.routeBack(ctx, del.Lane, del.Body, del.Hop)
			})
			return
		default:
			r.claimed.Store(true)
		}
		if n := r.skipResolved(e.Resolved); n > 0 {
			d.met.LedgerSkipped(n)
			d.log.Info("skipped recipients already resolved", "batch_id", b.BatchID, "recipients", n, "of", len(b.Recipients))
		}
		if e.handedOff() {
			// An earlier run was resolved and handed recipients on, but its
			// delivery was not acked (a crash, a failed publish): hand
			// the same ones on again, send nothing.
			r.restored = true
			n := r.restoreHandOff(e)
			d.log.Info("handing on again what an earlier delivery handed on", "batch_id", b.BatchID, "recipients", n)
			r.release()
			return
		}
	}
	ctx, cancel := withClockTimeout(c.runContext(), d.cfg.Clock, d.cfg.MaxHold)
	defer cancel()
	// A producer's batch (or pushd's copy routed to the campaign's queue)
	// that says when it was published, not held by not_before, records
	// the time to its first send.
	timeToSend := !del.Hop.Published.IsZero() && del.Hop.Attempt == 0 && del.Hop.Key == "" && del.HoldUntil.IsZero()
	sp := &submitPass{
		r: r, c: c, lane: del.Lane,
		test:       b.Campaign.Test || d.cfg.WhitelistOnly,
		timeToSend: timeToSend,
	}
	// The recipients of each provider are submitted by a pass of their
	// own when the batch has several: a provider that cannot take more
	// (its senders all busy, its rate limit reached) does not hold up the
	// other's.
	var split []Platform
	for _, p := range Platforms {
		if r.msgs[p] != nil {
			split = append(split, p)
		}
	}
	if len(split) < 2 {
		d.submitRecipients(ctx, sp, PlatformUnknown, false)
	} else {
		// A pass that panics ends the others' context; the panic is
		// raised again here once all have returned (none may submit
		// after the run is abandoned), and abandons the run.
		var (
			wg       sync.WaitGroup
			panicked [numPlatforms]any
		)
		pass := func(p Platform) {
			defer func() {
				if v := recover(); v != nil {
					panicked[p] = v
					cancel()
				}
			}()
			d.submitRecipients(ctx, sp, p, true)
		}
		for _, p := range split {
			wg.Go(func() { pass(p) })
		}
		pass(PlatformUnknown) // the rest (no provider): only dropped
		wg.Wait()
		for _, v := range panicked {
			if v != nil {
				panic(v)
			}
		}
	}
	sp.mu.Lock()
	dropped, filtered := sp.dropped, sp.filtered
	sp.mu.Unlock()
	if dropped[0]+dropped[1] > 0 {
		if dropped[0] > 0 {
			d.met.RecipientsDropped("malformed_token", dropped[0])
		}
		if dropped[1] > 0 {
			d.met.RecipientsDropped("unknown_platform", dropped[1])
		}
		d.log.Debug("dropped recipients", "batch_id", b.BatchID, "malformed_token", dropped[0], "unknown_platform", dropped[1])
	}
	for k, n := range filtered {
		d.met.RecipientsFiltered(k.list, k.reason, n)
	}
	r.release()
}

// submitPass is what the passes of process over one batch share.
type submitPass struct {
	r          *run
	c          *campaign
	lane       Lane
	test       bool // whitelist only
	timeToSend bool // the first send records the enqueue-to-send time
	timed      atomic.Bool

	mu       sync.Mutex
	dropped  [2]int // malformed token, unknown platform, for metrics
	filtered map[filterKey]int
}

// submitRecipients checks, filters, throttles (campaign, provider, global)
// and submits to the senders the recipients of sp's run: all of them
// when split is false; those of platform only when split is true, or, with
// only PlatformUnknown, those of no provider (dropped). It stops when ctx
// ends; the rest stays unsubmitted.
func (d *Dispatcher) submitRecipients(ctx context.Context, sp *submitPass, only Platform, split bool) {
	r, c, b := sp.r, sp.c, sp.r.batch
	var dropped [2]int
	var filtered map[filterKey]int
	// Recipients whose provider's breaker is open, by platform. Those of a
	// high-lane batch do not wait (they would hold up the lane): like
	// those left when ctx ends, they go back to the campaign's queue
	// untried when the run is resolved, and wait there.
	var waiting [numPlatforms][]int32
	for i := range b.Recipients {
		if ctx.Err() != nil {
			break // the rest stays unsubmitted
		}
		rc := &b.Recipients[i]
		if split {
			mine := rc.Platform == only
			if only == PlatformUnknown {
				mine = r.msgs[rc.Platform] == nil
			}
			if !mine {
				continue // another pass's
			}
		}
		if r.state[i] == stateDone {
			continue // resolved by an earlier delivery of this message
		}
		if err := rc.Check(); err != nil || d.providers[rc.Platform] == nil {
			if errors.Is(err, ErrBadToken) {
				dropped[0]++
			} else {
				dropped[1]++
			}
			r.state[i] = stateDone
			r.resolveAs(i, cDropped)
			continue
		}
		if d.filter != nil {
			if list, reason, blocked := d.filter.Filter(rc.Platform.String(), rc.Token, rc.UserID, sp.test); blocked {
				if filtered == nil {
					filtered = make(map[filterKey]int)
				}
				filtered[filterKey{string(list), reason}]++
				r.state[i] = stateDone
				r.resolveAs(i, cFiltered)
				continue
			}
		}
		ok, probe, _, _ := d.send.brk[rc.Platform].admit()
		if !ok {
			// Its provider is down: it waits below, after the others.
			waiting[rc.Platform] = append(waiting[rc.Platform], int32(i))
			continue
		}
		if err := d.send.throttle(ctx, c, rc.Platform); err != nil {
			break
		}
		if sp.timeToSend && !sp.timed.Load() && sp.timed.CompareAndSwap(false, true) {
			d.met.EnqueueToSend(sp.lane, d.now().Sub(r.del.Hop.Published))
		}
		d.send.submit(ctx, r, i, rc.Platform, sp.lane, probe)
	}
	if sp.lane == Normal {
		d.awaitProviders(ctx, r, c, &waiting)
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.dropped[0] += dropped[0]
	sp.dropped[1] += dropped[1]
	for k, n := range filtered {
		if sp.filtered == nil {
			sp.filtered = make(map[filterKey]int)
		}
		sp.filtered[k] += n
	}
}

type filterKey struct{ list, reason string }

// awaitProviders submits the recipients of r that process held back
// because their provider's breaker was open, as the breakers admit them:
// one as a probe when a probe is due, and all at once when the breaker
// closes (each still through the token buckets). It returns when all are
// submitted or ctx ends (pause, cancel, MaxHold, hard stop); those left
// are never tried, and go back to the campaign's queue with no attempt
// spent when the run is resolved.
func (d *Dispatcher) awaitProviders(ctx context.Context, r *run, c *campaign, waiting *[numPlatforms][]int32) {
	for {
		var closed [numPlatforms]<-chan struct{}
		var next time.Time
		left := false
		for _, p := range Platforms {
			for len(waiting[p]) > 0 {
				ok, probe, ch, at := d.send.brk[p].admit()
				if !ok {
					closed[p], left = ch, true
					if next.IsZero() || at.Before(next) {
						next = at
					}
					break
				}
				if err := d.send.throttle(ctx, c, p); err != nil {
					return
				}
				d.send.submit(ctx, r, int(waiting[p][0]), p, Normal, probe)
				waiting[p] = waiting[p][1:]
			}
		}
		if !left {
			return
		}
		t := d.cfg.Clock.NewTimer(next.Sub(d.now()))
		d.signals.providerWait.Signal(r.key)
		select {
		case <-closed[IOS]:
		case <-closed[Android]:
		case <-t.C():
		case <-ctx.Done():
		}
		t.Stop()
		if ctx.Err() != nil {
			return
		}
	}
}

// waitClaim holds a copy of a message another instance is sending for up
// to d (at most a second), so that it does not spin through the campaign's
// queue while the other's claim lasts. It returns early at the hard stop
// or when the delivery is lost.
func (d *Dispatcher) waitClaim(del Delivery, key string, wait time.Duration) {
	ctx, cancel := withClockTimeout(d.hardCtx, d.cfg.Clock, min(max(wait, 0), time.Second))
	defer cancel()
	d.signals.claimWait.Signal(key)
	select {
	case <-ctx.Done():
	case <-del.Acker.Lost():
	}
}

// newRun renders the notification once for each platform present in b.
func (d *Dispatcher) newRun(del Delivery, b *Batch, c *campaign) (*run, error) {
	r := &run{
		res:       d.res,
		c:         c,
		del:       del,
		key:       messageKey(del),
		resolved:  make([]uint64, (len(b.Recipients)+63)/64),
		lost:      del.Acker.Lost(),
		abandoned: make(chan struct{}),
		untracked: make(chan struct{}),
		batch:     b,
		state:     make([]recipientState, len(b.Recipients)),
	}
	r.pending.Store(1)
	var present [numPlatforms]bool
	for i := range b.Recipients {
		present[b.Recipients[i].Platform] = true
	}
	for _, p := range Platforms {
		if !present[p] || d.providers[p] == nil {
			continue
		}
		m, err := prepare(d.providers[p], &b.Notification)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.Provider(), err)
		}
		r.msgs[p] = m
	}
	return r, nil
}

// prepare renders n for provider p, turning a panic of the renderer into
// an error: the batch is dead-lettered as render_failed rather than
// crashing the daemon each time it is delivered.
func prepare(p Provider, n *Notification) (m Message, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("rendering panicked: %v", v)
		}
	}()
	return p.Prepare(n)
}
