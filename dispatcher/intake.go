package dispatcher

import (
	"context"
	"errors"
	"time"
)

// holdSlack is how early a held message may be processed: delay levels
// release with the broker's TTL precision, and a few milliseconds early is
// on time.
const holdSlack = 200 * time.Millisecond

// handleLane processes one delivery from a lane: it decodes and validates the
// batch, dead-letters what breaks the contract, holds what is not due yet,
// drops what is expired or cancelled, and routes the rest to its campaign's
// queue. High-lane batches of running campaigns without a campaign rate
// are sent at once instead. It returns when the delivery is settled or, for
// a high-lane batch, when its recipients are submitted.
func (d *Dispatcher) handleLane(_ context.Context, del Delivery) {
	d.handling.RLock()
	defer d.handling.RUnlock()
	if d.hardCtx.Err() != nil {
		// After the hard stop nothing is sent any more.
		requeue(d.log, del)
		return
	}
	now := d.now()
	if at := del.HoldUntil; at.After(now.Add(holdSlack)) {
		// Released early by a delay level: hold again for the rest.
		d.settle(del, func(ctx context.Context) error {
			return d.out.Hold(ctx, del.Lane, del.Body, del.Hop, at)
		})
		return
	}
	b, ok := d.decode(del)
	if !ok {
		return
	}
	c, ok := d.observe(del, b)
	if !ok {
		return
	}
	now = d.now() // observe may have waited for the store
	n := len(b.Recipients)
	if del.Republished && del.Hop.Attempt > 0 {
		c.retrying.Add(-int64(n))
	}
	// What becomes of its recipients here: dropped (expired), cancelled,
	// or nothing yet (held, routed, sent).
	fate, held := -1, false
	switch {
	case b.Expired(now):
		fate = cDropped
	case b.NotBefore != nil && b.NotBefore.After(now.Add(holdSlack)):
		held = true
	case c.status() == StatusCancelled:
		fate = cCancelled
	}
	if !del.Republished {
		isNew, ok := d.receive(del, b, c, fate)
		if !ok {
			return
		}
		if isNew {
			d.met.BatchReceived(del.Lane, n)
		}
		if fate >= 0 {
			if isNew {
				d.resolvedAtIntake(b, fate, n)
			}
			ack(d.log, del)
			return
		}
	} else if fate >= 0 {
		d.resolvedAtIntake(b, fate, d.resolveWhole(del, b, c, fate, nil))
		return
	}
	if held {
		at := *b.NotBefore
		d.log.Debug("holding batch until not_before", "batch_id", b.BatchID, "not_before", at)
		d.settle(del, func(ctx context.Context) error {
			return d.out.Hold(ctx, del.Lane, del.Body, del.Hop, at)
		})
		return
	}
	switch st := c.status(); {
	case st == StatusRunning && del.Lane == High && c.bucket.Unlimited() && c.claim():
		d.process(del, b, c)
	default:
		c.touch(now)
		// While the campaign's queue is being deleted (it just ended) the
		// batch is held for a second instead, then routed to the queue
		// made anew.
		d.settle(del, func(ctx context.Context) error {
			return c.routeBack(ctx, del.Lane, del.Body, del.Hop)
		})
	}
}

// observe returns the campaign of a delivery's batch. While the store
// cannot be written it waits; it reports false, having requeued the
// delivery (at the hard stop) or left it to the broker (lost), only when
// waiting ends without the campaign.
func (d *Dispatcher) observe(del Delivery, b *Batch) (*campaign, bool) {
	c, err := d.campaigns.observe(WithLane(d.hardCtx, del.Lane), b, del.Acker.Lost())
	if err == nil {
		return c, true
	}
	d.log.Warn("cannot record the campaign of a batch; the broker delivers it again", "campaign", b.Campaign.ID, "err", err)
	requeue(d.log, del)
	return nil, false
}

// decode decodes a delivery's batch; a broken one is dead-lettered.
func (d *Dispatcher) decode(del Delivery) (*Batch, bool) {
	b, err := DecodeBatch(del.Body)
	if err == nil {
		return b, true
	}
	reason := "schema"
	switch {
	case errors.Is(err, ErrMalformed):
		reason = "malformed"
	case errors.Is(err, ErrTooLarge):
		reason = "too_large"
	}
	d.log.Warn("dead-lettering batch", "reason", reason, "message_id", del.MessageID, "err", err)
	d.met.BatchDeadLettered(reason)
	d.settle(del, func(ctx context.Context) error {
		return d.out.DeadLetter(ctx, del.Body, DeadLetter{MessageID: del.MessageID, Reason: reason, Detail: err.Error()})
	})
	return nil, false
}

// resolvedAtIntake reports n recipients of b that the intake dropped as
// expired (fate cDropped) or cancelled.
func (d *Dispatcher) resolvedAtIntake(b *Batch, fate, n int) {
	if n == 0 {
		return
	}
	if fate == cDropped {
		d.log.Info("batch expired; not sent", "batch_id", b.BatchID, "campaign", b.Campaign.ID, "recipients", n)
		d.met.RecipientsDropped("expired", n)
	} else {
		d.met.RecipientsCancelled(n)
	}
}

// settle finishes a delivery that needs no sending: it runs publish (may be
// nil) and acks, or requeues the delivery if publishing failed. Publishing
// waits for a broker connection until the hard stop.
func (d *Dispatcher) settle(del Delivery, publish func(context.Context) error) {
	if publish != nil && !d.publish(del, publish) {
		return
	}
	ack(d.log, del)
}
