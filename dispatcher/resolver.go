package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/pushd/pushd/lists"
	"github.com/pushd/pushd/ratelimit"
)

// resolvers is the number of goroutines that resolve runs (publish
// hand-offs, write the ledger, ack), so a slow broker round trip never
// holds a sender.
const resolvers = 4

// resolver resolves runs once each of their recipients is tried: it
// reports invalid tokens, writes the ledger, hands on what is left (the
// campaign's queue, the next attempt, the dead-letter queue) and acks the
// delivery. It keeps the runs in progress, so that a copy of a message
// being sent is recognised and so that a stop can wait for them, and
// flushes their ledger bitmaps every LedgerFlush.
type resolver struct {
	log       *slog.Logger
	met       Metrics
	clock     ratelimit.Clock
	out       Outbox
	events    EventPublisher
	blacklist Blacklister // nil: invalid tokens are only reported
	ledger    Ledger      // nil: no deduplication
	gate      *storeGate
	signals   *testSignals

	maxAttempts     int
	retryBase       time.Duration
	retryMax        time.Duration
	breakers        *breakers
	handBackTimeout time.Duration
	owner           string          // this instance in the ledger's claims
	lease           time.Duration   // how long a ledger claim holds unrenewed
	stopped         <-chan struct{} // closed at the hard stop
	tried           chan *run       // runs whose recipients are all tried

	mu     sync.Mutex // guards active, keys and idle
	active map[*run]struct{}
	keys   map[string]*run // active runs by message key
	idle   chan struct{}   // closed and replaced when active becomes empty

	dirtyMu  sync.Mutex
	dirty    map[*run]struct{} // runs whose ledger bitmap changed since the last flush
	ledgerMu sync.Mutex        // orders the ledger writes of flushes and resolving runs
}

// track records a run in progress. It reports false, tracking nothing,
// when a run of an identical message (same key) is in progress.
func (res *resolver) track(r *run) bool {
	res.mu.Lock()
	defer res.mu.Unlock()
	if res.keys[r.key] != nil {
		return false
	}
	res.keys[r.key] = r
	res.active[r] = struct{}{}
	return true
}

func (res *resolver) untrack(r *run) {
	r.c.active.Add(-1)
	r.c.touch(res.clock.Now())
	res.mu.Lock()
	delete(res.active, r)
	delete(res.keys, r.key)
	if len(res.active) == 0 {
		close(res.idle)
		res.idle = make(chan struct{})
	}
	res.mu.Unlock()
	close(r.untracked)
}

// drain waits until no run is in progress, or ctx ends. It reports
// whether none is.
func (res *resolver) drain(ctx context.Context) bool {
	for {
		res.mu.Lock()
		n, idle := len(res.active), res.idle
		res.mu.Unlock()
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

// allTried queues a run whose recipients are all tried for resolving. At
// the hard stop it is left for the hand-back.
func (res *resolver) allTried(r *run) {
	select {
	case res.tried <- r:
	case <-res.stopped:
	}
}

// run resolves tried runs, and flushes the ledger on tick, until ctx ends.
func (res *resolver) run(ctx context.Context, tick *ticker) {
	var wg sync.WaitGroup
	for range resolvers {
		wg.Go(func() {
			for {
				select {
				case r := <-res.tried:
					res.resolve(ctx, r)
				case <-ctx.Done():
					return
				}
			}
		})
	}
	if tick != nil {
		wg.Go(func() { res.flushLedger(ctx, tick) })
	}
	wg.Wait()
}

// resolve resolves a run. Recipients never submitted (the campaign was
// paused, consuming stopped, or the run yielded after MaxHold) go back to
// the campaign's queue; those that failed for now are held for their next
// attempt, or dead-lettered after the last; in a cancelled campaign both are
// counted as cancelled instead. Then the delivery is acked.
//
// The order keeps a crash anywhere from losing or doubling work: the
// token.invalid events first (a redelivery sends those tokens again and
// reports them again); then the ledger's last entry, with the hand-offs
// about to be published and the counts of what the run resolved for good
// (invalid tokens, cancelled recipients, the dead-lettered after their
// last attempt); then the hand-offs; then the ack. A redelivery after the
// ledger write publishes the same hand-offs again (same bodies, same
// child keys: the copies are dropped) and sends and counts nothing. If a
// hand-off cannot be published the delivery is requeued, to the same end.
func (res *resolver) resolve(ctx context.Context, r *run) {
	ctx = WithLane(ctx, r.del.Lane) // the ack of a high-lane batch frees its prefetch slot
	defer res.signals.runResolved.Signal(r.key)
	defer res.untrack(r)
	if r.isLost() {
		// The broker delivers the message again: record how far this run
		// got, so that the next one skips it.
		res.recordLedger(ctx, r, LedgerEntry{})
		return
	}
	c := r.c
	var extra tally
	if c.status() == StatusCancelled && !r.restored {
		rest, retry := r.subset(stateNone), r.subset(stateRetry)
		if n := len(rest) + len(retry); n > 0 {
			extra[cCancelled] += int64(n)
			res.met.RecipientsCancelled(n)
		}
		for i, st := range r.state {
			if st != stateDone {
				r.state[i] = stateDone
			}
		}
	}
	invalid, err := res.feedback(ctx, r)
	if err != nil {
		res.log.Error("could not publish token.invalid events; requeueing batch", "batch_id", r.batch.BatchID, "err", err)
		res.recordLedger(ctx, r, LedgerEntry{})
		requeue(res.log, r.del)
		return
	}
	extra[cFailed] += int64(invalid)
	hand := LedgerEntry{Rest: r.stateBits(stateNone), Retry: r.stateBits(stateRetry)}
	rest, retry := r.subset(stateNone), r.subset(stateRetry)
	if len(retry) > 0 && r.del.Hop.Attempt+1 >= res.maxAttempts && !r.restored {
		// Dead-lettered below: failed for good.
		extra[cFailed] += int64(len(retry))
	}
	r.finish(extra)
	res.recordLedger(ctx, r, hand)
	if len(rest) > 0 {
		body, err := r.encode(rest)
		if err == nil {
			err = c.routeBack(ctx, Normal, body, Hop{Attempt: r.del.Hop.Attempt, Key: childKey(r.key, "rest", body)})
		}
		if err != nil {
			res.log.Error("could not put unsent recipients back; requeueing batch", "batch_id", r.batch.BatchID, "err", err)
			requeue(res.log, r.del)
			return
		}
		res.log.Debug("unsent recipients back in the campaign queue", "batch_id", r.batch.BatchID, "recipients", len(rest))
	}
	if len(retry) > 0 {
		if err := res.holdRetries(ctx, r, retry); err != nil {
			res.log.Error("could not hand off failed recipients; requeueing batch", "batch_id", r.batch.BatchID, "err", err)
			requeue(res.log, r.del)
			return
		}
	}
	ack(res.log, r.del)
}

// recordLedger writes a run's last entry to the ledger now: its bitmap,
// with the hand-offs of hand, and the counts not written yet. The run is
// resolving: later flushes skip it, and ledgerMu keeps a flush that took
// an older bitmap from writing it over this one. When the write fails the
// counts go to the campaign's counters, written by the bookkeeping.
func (res *resolver) recordLedger(ctx context.Context, r *run, hand LedgerEntry) {
	if res.ledger == nil {
		return
	}
	r.final.Store(true)
	res.signals.finalLedgerWrite.Signal(r.key)
	res.ledgerMu.Lock()
	defer res.ledgerMu.Unlock()
	r.dirty.Store(false)
	var n tally
	hand.Resolved, n = r.take()
	hand.Release = true
	err := res.ledger.RecordLedger(ctx, map[string]LedgerEntry{r.key: hand}, map[string]Counters{r.c.id: n.counters()})
	res.gate.note(err)
	if err != nil {
		res.log.Warn("cannot record the batch in the ledger; a redelivery would send it again", "batch_id", r.batch.BatchID, "err", err)
		r.c.putBack(n)
	}
}

// renewClaims extends the ledger claims of the runs in progress by a
// lease from now. A failure is logged: the claims then run out, and a
// copy of a message may be sent by another instance meanwhile, which the
// ledger's bitmaps bound as after a crash.
func (res *resolver) renewClaims(ctx context.Context, now time.Time) {
	res.mu.Lock()
	keys := make([]string, 0, len(res.keys))
	for k, r := range res.keys {
		if r.claimed.Load() && !r.final.Load() {
			keys = append(keys, k)
		}
	}
	res.mu.Unlock()
	if err := res.ledger.RenewClaims(ctx, res.owner, keys, now.Add(res.lease)); err != nil && ctx.Err() == nil {
		res.log.Warn("cannot renew the ledger claims of the batches being sent", "batches", len(keys), "err", err)
	}
}

// markDirty queues a run's bitmap for the next flush.
func (res *resolver) markDirty(r *run) {
	res.dirtyMu.Lock()
	res.dirty[r] = struct{}{}
	res.dirtyMu.Unlock()
}

// flushLedger records, on each tick, the progress of the runs whose
// bitmap changed, so that after a crash a redelivered batch skips what was
// sent: duplicates are then the sends in flight plus those of the last
// LedgerFlush.
func (res *resolver) flushLedger(ctx context.Context, tick *ticker) {
	renewed := res.clock.Now()
	tick.run(ctx, func() {
		defer res.signals.ledgerFlushed.Signal(struct{}{})
		if now := res.clock.Now(); now.Sub(renewed) >= res.lease/5 {
			renewed = now
			res.renewClaims(ctx, now)
		}
		res.dirtyMu.Lock()
		runs := res.dirty
		res.dirty = make(map[*run]struct{})
		res.dirtyMu.Unlock()
		if len(runs) == 0 {
			return
		}
		res.ledgerMu.Lock()
		marks := make(map[string]LedgerEntry, len(runs))
		taken := make(map[*run]tally, len(runs))
		counts := map[string]Counters{}
		for r := range runs {
			if r.final.Load() {
				continue // resolve writes its last bitmap
			}
			r.dirty.Store(false)
			bits, n := r.take()
			marks[r.key], taken[r] = LedgerEntry{Resolved: bits}, n
			counts[r.c.id] = counts[r.c.id].Add(n.counters())
		}
		err := res.ledger.RecordLedger(ctx, marks, counts)
		if err != nil {
			// Given back under ledgerMu: a run's last write, waiting for
			// it, then takes them.
			for r, n := range taken {
				r.untake(n)
			}
		}
		res.ledgerMu.Unlock()
		res.gate.note(err)
		if err != nil {
			res.log.Warn("cannot write the ledger; will retry", "err", err)
			res.dirtyMu.Lock()
			for r := range runs {
				if !r.final.Load() {
					r.dirty.Store(true)
					res.dirty[r] = struct{}{}
				}
			}
			res.dirtyMu.Unlock()
		}
	})
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
// It returns how many it reported.
func (res *resolver) feedback(ctx context.Context, r *run) (int, error) {
	inv := r.takeInvalid()
	if len(inv) == 0 {
		return 0, nil
	}
	now := res.clock.Now()
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
			return 0, err
		}
		bodies[i] = body
		entries[i] = lists.Entry{
			List: lists.Blacklist, Kind: lists.Token, Platform: it.rc.Platform.String(), Value: it.rc.Token,
			Reason: "invalid_token", CreatedAt: now,
		}
		perPlatform[it.rc.Platform]++
	}
	if err := res.events.PublishEvents(ctx, "token.invalid", bodies); err != nil {
		return 0, err
	}
	for _, p := range Platforms {
		if perPlatform[p] > 0 {
			res.met.InvalidTokens(p, perPlatform[p])
		}
	}
	if res.blacklist != nil {
		if _, err := res.blacklist.AddListEntries(ctx, entries); err != nil {
			// The events are out; the next batch to these tokens will
			// report them again.
			res.log.Error("could not blacklist invalid tokens", "batch_id", r.batch.BatchID, "tokens", len(entries), "err", err)
		}
	}
	return len(inv), nil
}

// holdRetries holds recipients that failed for now for their next attempt,
// or dead-letters them after the last (resolve counted them as failed).
func (res *resolver) holdRetries(ctx context.Context, r *run, retry []Recipient) error {
	attempt := r.del.Hop.Attempt + 1
	body, err := r.encode(retry)
	if err != nil {
		return err
	}
	last, lastPlatform, retryAfter := r.retrySummary()
	if attempt >= res.maxAttempts {
		res.met.RecipientsDeadLettered(lastPlatform, len(retry))
		res.log.Warn("recipients dead-lettered after last attempt", "batch_id", r.batch.BatchID, "recipients", len(retry), "attempts", attempt, "reason", last.Reason)
		return res.out.DeadLetter(ctx, body, DeadLetter{
			MessageID:      r.batch.BatchID,
			Reason:         "retries_exhausted",
			Detail:         fmt.Sprintf("no success after %d attempts", attempt),
			Attempts:       attempt,
			Provider:       lastPlatform.Provider(),
			Status:         last.Status,
			ProviderReason: last.Reason,
		})
	}
	wait := res.backoff(attempt, retryAfter)
	if r.outageOver(res.breakers) {
		// They failed in an outage that is over: due at once, unless
		// the provider asked for more (Retry-After wins).
		wait = retryAfter
	}
	at := res.clock.Now().Add(wait)
	if err := res.out.Hold(ctx, r.del.Lane, body, Hop{Attempt: attempt, Key: childKey(r.key, "retry", body)}, at); err != nil {
		return err
	}
	r.c.retrying.Add(int64(len(retry)))
	return nil
}

// backoff is the delay before attempt (1-based retry number): exponential
// from retryBase, capped at retryMax, with equal jitter, and never shorter
// than the provider's Retry-After.
func (res *resolver) backoff(attempt int, retryAfter time.Duration) time.Duration {
	b := res.retryBase << min(attempt-1, 30)
	if b > res.retryMax || b <= 0 {
		b = res.retryMax
	}
	b = b/2 + rand.N(b/2+1)
	return max(b, retryAfter)
}

// handBack resolves what the hard stop interrupted, like resolve: unsent
// recipients back to the campaign's queue, failed ones held, then ack.
func (res *resolver) handBack() {
	res.mu.Lock()
	runs := make([]*run, 0, len(res.active))
	for r := range res.active {
		runs = append(runs, r)
	}
	res.mu.Unlock()
	if len(runs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), res.handBackTimeout)
	defer cancel()
	for _, r := range runs {
		// Runs whose last recipient was tried just before the stop may
		// still sit in tried; they are in runs too and are handled here.
		res.resolve(ctx, r)
	}
	res.log.Info("handed back unfinished batches", "batches", len(runs))
}

func requeue(log *slog.Logger, del Delivery) {
	if err := del.Acker.Requeue(); err != nil {
		log.Debug("requeue failed; the broker will redeliver", "err", err)
	}
}

func ack(log *slog.Logger, del Delivery) {
	if err := del.Acker.Ack(); err != nil {
		log.Debug("ack failed; the broker will redeliver", "err", err)
	}
}
