package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"time"

	"github.com/pushd/pushd/lists"
)

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
	r, c := j.r, j.r.c
	defer func() {
		d.met.InFlight(-1)
		c.inFlight.Add(-1)
	}()
	if r.isLost() || c.status() == StatusCancelled {
		// Lost: the broker will redeliver the whole message, sending now
		// would only add duplicates. Cancelled: not sent, counted when the
		// run finishes.
		r.done()
		return
	}
	rc := &r.batch.Recipients[j.i]
	start := d.now()
	res := d.safeSend(ctx, r.msgs[p], rc)
	d.met.SendDone(p, res.Outcome, d.now().Sub(start))
	// Sent or failed for good: a redelivery skips it. Not an invalid
	// token yet: its token.invalid event and blacklist entry are made when
	// the run finishes, and a redelivery must send it again (to be told
	// again) if the run never gets there.
	if res.Outcome == Sent || res.Outcome == Failed {
		r.markResolved(int(j.i))
	}
	switch res.Outcome {
	case Sent:
		r.state[j.i] = stateDone
		c.count(cSent, 1)
	case InvalidToken:
		r.state[j.i] = stateDone
		c.count(cFailed, 1)
		r.noteInvalid(rc, res)
		d.log.Debug("invalid token", "platform", p, "token", ShortToken(rc.Token), "reason", res.Reason)
	case Failed:
		r.state[j.i] = stateDone
		c.count(cFailed, 1)
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

// finish resolves a run. Recipients never submitted (the campaign was
// paused, consuming stopped, or the run yielded after MaxHold) go back to
// the campaign's queue; those that failed for now are held for their next
// attempt, or dead-lettered after the last; in a cancelled campaign both are
// counted as cancelled instead. Then the delivery is acked.
//
// The order keeps a crash anywhere from losing or doubling work: the
// token.invalid events first (a redelivery sends those tokens again and
// reports them again); then the ledger's last entry, with the hand-offs
// about to be published; then the hand-offs; then the ack. A redelivery
// after the ledger write publishes the same hand-offs again (same bodies,
// same child keys: the copies are dropped) and sends nothing. If a
// hand-off cannot be published the delivery is requeued, to the same end.
func (d *Dispatcher) finish(ctx context.Context, r *run) {
	defer d.signals.runResolved.Signal(r.key)
	defer d.untrack(r)
	if r.isLost() {
		// The broker delivers the message again: record how far this run
		// got, so that the next one skips it.
		d.recordLedger(ctx, r, LedgerEntry{})
		return
	}
	c := r.c
	if c.status() == StatusCancelled {
		rest, retry := r.subset(stateNone), r.subset(stateRetry)
		if n := len(rest) + len(retry); n > 0 {
			d.dropCancelled(c, n)
		}
		for i, st := range r.state {
			if st != stateDone {
				r.state[i] = stateDone
			}
		}
	}
	if err := d.feedback(ctx, r); err != nil {
		d.log.Error("could not publish token.invalid events; requeueing batch", "batch_id", r.batch.BatchID, "err", err)
		d.recordLedger(ctx, r, LedgerEntry{})
		d.requeueDelivery(r.del)
		return
	}
	hand := LedgerEntry{Rest: r.stateBits(stateNone), Retry: r.stateBits(stateRetry)}
	rest, retry := r.subset(stateNone), r.subset(stateRetry)
	for i := range r.state {
		r.markResolved(i)
	}
	d.recordLedger(ctx, r, hand)
	if len(rest) > 0 {
		body, err := r.encode(rest)
		if err == nil {
			err = d.routeBack(ctx, c, Normal, body, Hop{Attempt: r.del.Attempt(), Key: childKey(r.key, "rest", body)})
		}
		if err != nil {
			d.log.Error("could not put unsent recipients back; requeueing batch", "batch_id", r.batch.BatchID, "err", err)
			d.requeueDelivery(r.del)
			return
		}
		d.log.Debug("unsent recipients back in the campaign queue", "batch_id", r.batch.BatchID, "recipients", len(rest))
	}
	if len(retry) > 0 {
		if err := d.holdRetries(ctx, r, retry); err != nil {
			d.log.Error("could not hand off failed recipients; requeueing batch", "batch_id", r.batch.BatchID, "err", err)
			d.requeueDelivery(r.del)
			return
		}
	}
	d.ack(r.del)
}

// recordLedger writes a run's last entry to the ledger now: its bitmap,
// with the hand-offs of hand. The run is finishing: later flushes skip it,
// and ledgerMu keeps a flush that took an older bitmap from writing it
// over this one.
func (d *Dispatcher) recordLedger(ctx context.Context, r *run, hand LedgerEntry) {
	if d.ledger == nil {
		return
	}
	r.final.Store(true)
	d.signals.finalLedgerWrite.Signal(r.key)
	d.ledgerMu.Lock()
	defer d.ledgerMu.Unlock()
	r.dirty.Store(false)
	hand.Resolved = r.bitmap()
	if err := d.ledger.RecordLedger(ctx, map[string]LedgerEntry{r.key: hand}); err != nil {
		d.log.Warn("cannot record the batch in the ledger; a redelivery would send it again", "batch_id", r.batch.BatchID, "err", err)
	}
}

// flushLedger records, every LedgerFlush, the progress of the runs whose
// bitmap changed, so that after a crash a redelivered batch skips what was
// sent: duplicates are then the sends in flight plus those of the last
// LedgerFlush.
func (d *Dispatcher) flushLedger(ctx context.Context, tick *ticker) {
	tick.run(ctx, func() {
		defer d.signals.ledgerFlushed.Signal(struct{}{})
		d.dirtyMu.Lock()
		runs := d.dirty
		d.dirty = make(map[*run]struct{})
		d.dirtyMu.Unlock()
		if len(runs) == 0 {
			return
		}
		d.ledgerMu.Lock()
		marks := make(map[string]LedgerEntry, len(runs))
		for r := range runs {
			if r.final.Load() {
				continue // finish writes its last bitmap
			}
			r.dirty.Store(false)
			marks[r.key] = LedgerEntry{Resolved: r.bitmap()}
		}
		err := d.ledger.RecordLedger(ctx, marks)
		d.ledgerMu.Unlock()
		if err != nil {
			d.log.Warn("cannot write the ledger; will retry", "err", err)
			d.dirtyMu.Lock()
			for r := range runs {
				if !r.final.Load() {
					r.dirty.Store(true)
					d.dirty[r] = struct{}{}
				}
			}
			d.dirtyMu.Unlock()
		}
	})
}

// safeSend sends through m, turning a panic of the provider code into a
// RetryLater (reason "panic"): one recipient that trips a bug is retried
// and, after the last attempt, dead-lettered, instead of taking the
// daemon and every batch in flight down with it.
func (d *Dispatcher) safeSend(ctx context.Context, m Message, rc *Recipient) (res Result) {
	defer func() {
		if v := recover(); v != nil {
			d.log.Error("provider send panicked; the recipient will be retried",
				"platform", rc.Platform, "token", ShortToken(rc.Token), "panic", v, "stack", string(debug.Stack()))
			res = Result{Outcome: RetryLater, Reason: "panic", Err: fmt.Errorf("panic: %v", v)}
		}
	}()
	return m.Send(ctx, rc)
}

// tokenEvent is the body of a token.invalid event.
type tokenEvent struct {
	Event             string     `json:"event"`
	Platform          Platform   `json:"platform"`
	Token             string     `json:"token"`
	UserID            string     `json:"user_id,omitempty"`
	Reason            string     `json:"reason"`
	ProviderTimestamp *time.Time `json:"provider_timestamp"`
	CampaignID        string     `json:"campaign_id"`
	BatchID           string     `json:"batch_id"`
	At                time.Time  `json:"at"`
}

// feedback reports the tokens providers declared invalid in a run: a
// token.invalid event each (confirmed, before the delivery is acked, so a
// crash repeats them rather than loses them) and a blacklist entry each.
func (d *Dispatcher) feedback(ctx context.Context, r *run) error {
	inv := r.takeInvalid()
	if len(inv) == 0 {
		return nil
	}
	now := d.now()
	bodies := make([][]byte, len(inv))
	entries := make([]lists.Entry, len(inv))
	var perPlatform [numPlatforms]int
	for i, it := range inv {
		ev := tokenEvent{
			Event: "token.invalid", Platform: it.rc.Platform, Token: it.rc.Token, UserID: it.rc.UserID,
			Reason: it.res.Reason, CampaignID: r.c.id, BatchID: r.batch.BatchID, At: now,
		}
		if !it.res.At.IsZero() {
			at := it.res.At
			ev.ProviderTimestamp = &at
		}
		body, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		bodies[i] = body
		entries[i] = lists.Entry{
			List: lists.Blacklist, Kind: lists.Token, Platform: it.rc.Platform.String(), Value: it.rc.Token,
			Reason: "invalid_token", CreatedAt: now,
		}
		perPlatform[it.rc.Platform]++
	}
	if err := d.events.PublishEvents(ctx, "token.invalid", bodies); err != nil {
		return err
	}
	for _, p := range Platforms {
		if perPlatform[p] > 0 {
			d.met.InvalidTokens(p, perPlatform[p])
		}
	}
	if d.blacklist != nil {
		if _, err := d.blacklist.AddListEntries(ctx, entries); err != nil {
			// The events are out; the next batch to these tokens will
			// report them again.
			d.log.Error("could not blacklist invalid tokens", "batch_id", r.batch.BatchID, "tokens", len(entries), "err", err)
		}
	}
	return nil
}

// holdRetries holds recipients that failed for now for their next attempt,
// or dead-letters them after the last.
func (d *Dispatcher) holdRetries(ctx context.Context, r *run, retry []Recipient) error {
	attempt := r.del.Attempt() + 1
	body, err := r.encode(retry)
	if err != nil {
		return err
	}
	last, lastPlatform, retryAfter := r.retrySummary()
	if attempt >= d.cfg.MaxAttempts {
		d.met.RecipientsDeadLettered(lastPlatform, len(retry))
		r.c.count(cFailed, len(retry))
		d.log.Warn("recipients dead-lettered after last attempt", "batch_id", r.batch.BatchID, "recipients", len(retry), "attempts", attempt, "reason", last.Reason)
		return d.out.DeadLetter(ctx, body, DeadLetter{
			MessageID:      r.batch.BatchID,
			Reason:         "retries_exhausted",
			Detail:         fmt.Sprintf("no success after %d attempts", attempt),
			Attempts:       attempt,
			Provider:       lastPlatform.Provider(),
			Status:         last.Status,
			ProviderReason: last.Reason,
		})
	}
	at := d.now().Add(d.backoff(attempt, retryAfter))
	if err := d.out.Hold(ctx, r.del.Lane(), body, Hop{Attempt: attempt, Key: childKey(r.key, "retry", body)}, at); err != nil {
		return err
	}
	r.c.retrying.Add(int64(len(retry)))
	return nil
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

// handBack resolves what the hard stop interrupted, like finish: unsent
// recipients back to the campaign's queue, failed ones held, then ack.
func (d *Dispatcher) handBack() {
	d.mu.Lock()
	runs := make([]*run, 0, len(d.active))
	for r := range d.active {
		runs = append(runs, r)
	}
	d.mu.Unlock()
	if len(runs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.HandBackTimeout)
	defer cancel()
	for _, r := range runs {
		// Runs whose last recipient resolved just before the stop may still
		// sit in d.finished; they are in runs too and are handled here.
		d.finish(ctx, r)
	}
	d.log.Info("handed back unfinished batches", "batches", len(runs))
}
