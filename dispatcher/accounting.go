package dispatcher

import (
	"context"
	"math/bits"
)

// A campaign's counters add up: every recipient received is counted once
// as received and, once resolved, once as sent, failed, filtered, dropped
// or cancelled (docs/semantics.md, "Counters"). With a ledger, counts are
// written with the ledger bits of the recipients they count, in one
// transaction, and a producer's message is counted as received when its
// ledger entry is created: a crash (kill -9) loses no count and a
// redelivery or a producer's copy adds none. Without a ledger (tests) they
// are kept in memory and written by the bookkeeping.

// receive counts a producer's batch (del is not Republished) as received,
// once per message: a redelivery of it, or a copy with the same body,
// counts nothing. When none of its recipients will be sent (k is cDropped
// or cCancelled; -1 otherwise) they are counted under k and marked
// resolved with it. It reports whether the message was new. While the
// store cannot be written it waits; ok is false, with the delivery
// requeued (at the hard stop) or left to the broker (lost), when waiting
// ended first.
func (d *Dispatcher) receive(del Delivery, b *Batch, c *campaign, k int) (isNew, ok bool) {
	n := len(b.Recipients)
	t := one(k, n)
	t[cReceived] = int64(n)
	if d.ledger == nil {
		c.putBack(t)
		return true, true
	}
	var resolved []byte
	if k >= 0 {
		resolved = allBits(n)
	}
	err := d.store.retry(WithLane(d.hardCtx, del.Lane), del.Acker.Lost(), func(ctx context.Context) (err error) {
		isNew, err = d.ledger.RecordReceived(ctx, messageKey(del), c.id, resolved, t.counters())
		return err
	})
	if err != nil {
		d.log.Warn("cannot record a batch as received; the broker delivers it again", "batch_id", b.BatchID, "err", err)
		requeue(d.log, del)
		return false, false
	}
	return isNew, true
}

// resolveWhole settles a delivery none of whose recipients will be sent.
// The recipients the ledger has not resolved yet are counted under
// counter k and all are marked resolved, in one write, then the delivery
// is acked; publish (a dead letter; may be nil) runs before that write,
// and not at all when the ledger has every recipient resolved already (a
// copy, or a redelivery after the write). It returns how many it counted.
// Failures are handled as receive's.
func (d *Dispatcher) resolveWhole(del Delivery, b *Batch, c *campaign, k int, publish func(context.Context) error) int {
	n := len(b.Recipients)
	if d.ledger == nil {
		if publish != nil && !d.publish(del, publish) {
			return 0
		}
		c.count(k, n)
		ack(d.log, del)
		return n
	}
	key := messageKey(del)
	var e LedgerEntry
	err := d.store.retry(d.hardCtx, del.Acker.Lost(), func(ctx context.Context) (err error) {
		e, err = d.ledger.LedgerEntry(ctx, key)
		return err
	})
	if err != nil {
		d.log.Warn("cannot read the ledger; the broker delivers the batch again", "batch_id", b.BatchID, "err", err)
		requeue(d.log, del)
		return 0
	}
	left := n - countBits(e.Resolved, n)
	if left == 0 {
		ack(d.log, del)
		return 0
	}
	if publish != nil && !d.publish(del, publish) {
		return 0
	}
	e.Resolved = allBits(n)
	counts := map[string]Counters{c.id: one(k, left).counters()}
	err = d.store.retry(d.hardCtx, del.Acker.Lost(), func(ctx context.Context) error {
		return d.ledger.RecordLedger(ctx, map[string]LedgerEntry{key: e}, counts)
	})
	if err != nil {
		d.log.Warn("cannot record a batch in the ledger; the broker delivers it again", "batch_id", b.BatchID, "err", err)
		requeue(d.log, del)
		return 0
	}
	ack(d.log, del)
	return left
}

// publish runs publish for del; when it fails it requeues del and
// reports false.
func (d *Dispatcher) publish(del Delivery, publish func(context.Context) error) bool {
	if err := publish(d.hardCtx); err != nil {
		d.log.Error("could not publish; requeueing delivery", "err", err)
		requeue(d.log, del)
		return false
	}
	return true
}

// allBits returns a ledger bitmap with the bits of n recipients set.
func allBits(n int) []byte {
	out := make([]byte, (n+7)/8)
	for i := range n {
		out[i/8] |= 1 << (i % 8)
	}
	return out
}

// countBits counts the bits of the first n recipients set in a ledger
// bitmap.
func countBits(b []byte, n int) int {
	c := 0
	for i, x := range b {
		if rest := n - 8*i; rest <= 0 {
			break
		} else if rest < 8 {
			x &= byte(1<<rest - 1)
		}
		c += bits.OnesCount8(x)
	}
	return c
}
