package dispatcher

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"
)

// recipientState tracks one recipient of a run. Each element is written by
// the one goroutine that holds its job, and read once all jobs are done.
type recipientState uint8

const (
	stateNone  recipientState = iota // not resolved: never submitted, or skipped
	stateDone                        // sent, dropped or failed for good
	stateRetry                       // failed for now; goes to the next attempt
)

// run is the sending of one delivery's batch: which of its recipients are
// resolved, in flight or left, until the resolver resolves it.
type run struct {
	res  *resolver
	c    *campaign
	del  Delivery
	key  string // the ledger's key of the message: a hash of its body
	lost <-chan struct{}
	// abandoned is closed when processing panicked: the run is treated as
	// lost (its delivery is requeued by the consumer). untracked is closed
	// once the run is resolved and forgotten.
	abandoned chan struct{}
	untracked chan struct{}
	batch     *Batch
	msgs      [numPlatforms]Message
	state     []recipientState
	// pending counts submitted, untried recipients plus one guard held
	// while submitting; when it reaches 0 the run goes to the resolver.
	pending atomic.Int32
	// resolved is the ledger's bitmap of the run (bit i: recipient i
	// resolved); dirty is set when it changed since the last flush.
	resolved []uint64
	dirty    atomic.Bool
	final    atomic.Bool // the last bitmap is written or being written: flushes skip the run
	claimed  atomic.Bool // the run holds the claim on its ledger entry: it is renewed

	// acct orders each change of the bitmap with the counts that go with
	// it, and the snapshots the ledger writes (take): a snapshot holds a
	// recipient's count exactly when it holds its bit, so that after a
	// crash the campaign's counters say what the ledger says.
	acct   sync.Mutex
	counts tally // counted with bits not written yet
	// restored is set when an earlier run of this message was resolved
	// and handed its recipients on: this one hands the same on again and
	// counts nothing.
	restored bool

	mu                sync.Mutex // guards the retry summary and invalid below
	lastRetry         Result
	lastRetryPlatform Platform
	maxRetryAfter     time.Duration
	retryDown         [numPlatforms]bool   // a retry of the platform was a provider-down answer
	retryGen          [numPlatforms]uint64 // the platform's breaker generation at the first
	retryOther        bool                 // a retry was something else (429, credentials...)
	invalid           []invalidToken
}

// invalidToken is a recipient whose token a provider reported invalid.
type invalidToken struct {
	rc  *Recipient
	res Result
}

func (r *run) noteInvalid(rc *Recipient, res Result) {
	r.mu.Lock()
	r.invalid = append(r.invalid, invalidToken{rc, res})
	r.mu.Unlock()
}

func (r *run) takeInvalid() []invalidToken {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.invalid
	r.invalid = nil
	return out
}

// messageKey returns the ledger's key of a delivered message: the one
// pushd gave it, else a hash of its body, so that a producer's message
// published twice is sent once.
func messageKey(del Delivery) string {
	if k := del.Hop.Key; k != "" {
		return k
	}
	h := sha256.Sum256(del.Body)
	return hex.EncodeToString(h[:16])
}

// childKey returns the ledger key of a message split off the run of a
// message with key parent. It depends on the parent, so that a
// remainder or retry whose body equals an earlier message's is not
// skipped as that message, and only on it and the body, so that a
// redelivered parent splits off the same message again and the ledger
// tells the copies apart from new work.
func childKey(parent, kind string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(parent))
	h.Write([]byte{0})
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// markResolved records recipient i as resolved in the ledger's bitmap,
// counting nothing (resolved by an earlier delivery).
func (r *run) markResolved(i int) { r.resolveAs(i, -1) }

// resolveAs records recipient i as resolved and counts it under counter k
// (none when k < 0), together. Without a ledger the count goes straight
// to the campaign.
func (r *run) resolveAs(i, k int) {
	if r.res.ledger == nil {
		atomic.OrUint64(&r.resolved[i>>6], 1<<(i&63))
		if k >= 0 {
			r.c.count(k, 1)
		}
		return
	}
	r.acct.Lock()
	atomic.OrUint64(&r.resolved[i>>6], 1<<(i&63))
	if k >= 0 {
		r.counts[k]++
	}
	r.acct.Unlock()
	if r.dirty.CompareAndSwap(false, true) {
		r.res.markDirty(r)
	}
}

// finish records every recipient as resolved and adds extra to the
// counts, together: what the run's last ledger entry holds.
func (r *run) finish(extra tally) {
	if r.res.ledger == nil {
		for i := range r.state {
			atomic.OrUint64(&r.resolved[i>>6], 1<<(i&63))
		}
		r.c.putBack(extra)
		return
	}
	r.acct.Lock()
	defer r.acct.Unlock()
	for i := range r.state {
		atomic.OrUint64(&r.resolved[i>>6], 1<<(i&63))
	}
	r.counts.add(extra)
}

// take returns the bitmap and the counts not written yet, which it
// clears: the ledger writes both in one transaction.
func (r *run) take() ([]byte, tally) {
	r.acct.Lock()
	defer r.acct.Unlock()
	t := r.counts
	r.counts = tally{}
	return r.bitmap(), t
}

// untake gives back counts that take returned but that were not written.
func (r *run) untake(t tally) {
	r.acct.Lock()
	r.counts.add(t)
	r.acct.Unlock()
}

// bitmap returns the ledger's bitmap as bytes, bit i of byte i/8 for
// recipient i.
func (r *run) bitmap() []byte {
	out := make([]byte, (len(r.state)+7)/8)
	for i := range out {
		out[i] = byte(atomic.LoadUint64(&r.resolved[i/8]) >> (8 * (i % 8)))
	}
	return out
}

// bitSet reports whether bit i of a ledger bitmap is set.
func bitSet(bits []byte, i int) bool { return i/8 < len(bits) && bits[i/8]&(1<<(i%8)) != 0 }

// stateBits returns the ledger bitmap of the recipients in state s, nil
// when there are none.
func (r *run) stateBits(s recipientState) []byte {
	var out []byte
	for i, st := range r.state {
		if st != s {
			continue
		}
		if out == nil {
			out = make([]byte, (len(r.state)+7)/8)
		}
		out[i/8] |= 1 << (i % 8)
	}
	return out
}

// skipResolved marks as done the recipients a ledger bitmap has resolved,
// and returns how many.
func (r *run) skipResolved(bits []byte) int {
	n := 0
	for i := range r.state {
		if bitSet(bits, i) {
			r.state[i] = stateDone
			r.markResolved(i)
			n++
		}
	}
	return n
}

// restoreHandOff puts the recipients an earlier run of this message handed
// on back in the states that make resolve hand them on again: the same
// bodies, so the same child keys. It returns how many.
func (r *run) restoreHandOff(e LedgerEntry) int {
	n := 0
	for i := range r.state {
		switch {
		case bitSet(e.Rest, i):
			r.state[i] = stateNone
		case bitSet(e.Retry, i):
			r.state[i] = stateRetry
		default:
			continue
		}
		n++
	}
	return n
}

func (r *run) isLost() bool {
	select {
	case <-r.lost:
		return true
	case <-r.abandoned:
		return true
	default:
		return false
	}
}

// done counts one unit of pending as tried; the last one hands the run to
// the resolver.
func (r *run) done() {
	if r.pending.Add(-1) == 0 {
		r.res.allTried(r)
	}
}

// release drops the guard held while submitting.
func (r *run) release() { r.done() }

// noteRetry records a send that failed for now; gen is the generation of
// p's breaker when its answer came.
func (r *run) noteRetry(p Platform, res Result, gen uint64) {
	r.mu.Lock()
	r.lastRetry = res
	r.lastRetryPlatform = p
	r.maxRetryAfter = max(r.maxRetryAfter, res.RetryAfter)
	switch {
	case health(res) != healthDown:
		r.retryOther = true
	case !r.retryDown[p]:
		r.retryDown[p], r.retryGen[p] = true, gen
	}
	r.mu.Unlock()
}

// outageOver reports whether every retry of r failed because its
// provider was down, in an outage that the provider's breaker caught and
// that is over: the breaker moved since the failure and is closed now.
// Those retries are due at once: the provider is back. While a breaker is
// open they keep their backoff: they are its probes and the sends in
// flight when it opened, and a lone recipient probed again each time it
// came back would spend its attempts within seconds.
func (r *run) outageOver(brk *breakers) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.retryOther {
		return false
	}
	found := false
	for _, p := range Platforms {
		if !r.retryDown[p] {
			continue
		}
		if g := brk[p].generation(); g == r.retryGen[p] || g%2 == 1 {
			return false // a passing failure, or the outage goes on
		}
		found = true
	}
	return found
}

func (r *run) retrySummary() (Result, Platform, time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastRetry, r.lastRetryPlatform, r.maxRetryAfter
}

// subset returns the recipients in state s.
func (r *run) subset(s recipientState) []Recipient {
	var out []Recipient
	for i, st := range r.state {
		if st == s {
			out = append(out, r.batch.Recipients[i])
		}
	}
	return out
}

// encode writes the run's batch with only the given recipients.
func (r *run) encode(rs []Recipient) ([]byte, error) {
	b := *r.batch
	b.Recipients = rs
	return json.Marshal(&b)
}
