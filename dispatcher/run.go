package dispatcher

import (
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

// run is the processing of one delivery.
type run struct {
	d       *Dispatcher
	c       *campaign
	del     Delivery
	lost    <-chan struct{}
	batch   *Batch
	msgs    [numPlatforms]Message
	state   []recipientState
	started time.Time
	// pending counts submitted, unresolved recipients plus one guard held
	// while submitting; the run is finished when it reaches 0.
	pending atomic.Int32

	mu                sync.Mutex // guards the retry summary and invalid below
	lastRetry         Result
	lastRetryPlatform Platform
	maxRetryAfter     time.Duration
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

func (r *run) isLost() bool {
	select {
	case <-r.lost:
		return true
	default:
		return false
	}
}

// done resolves one unit of pending; the last one queues the run for
// finishing. At the hard stop it is left for the hand-back.
func (r *run) done() {
	if r.pending.Add(-1) != 0 {
		return
	}
	select {
	case r.d.finished <- r:
	case <-r.d.runCtx.Done():
	}
}

// release drops the guard held while submitting.
func (r *run) release() { r.done() }

func (r *run) noteRetry(p Platform, res Result) {
	r.mu.Lock()
	r.lastRetry = res
	r.lastRetryPlatform = p
	r.maxRetryAfter = max(r.maxRetryAfter, res.RetryAfter)
	r.mu.Unlock()
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
