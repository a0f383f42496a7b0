package dispatcher

import (
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"
)

// recipientState tracks one recipient of a run. Each element is written by
// the one worker that holds its job, and read once all jobs are done.
type recipientState uint8

const (
	stateNone  recipientState = iota // not yet resolved
	stateDone                        // sent, filtered, dropped or failed for good
	stateRetry                       // failed for now; goes to the next attempt
)

// run is the processing of one delivery.
type run struct {
	d     *Dispatcher
	del   Delivery
	lost  <-chan struct{}
	batch *Batch
	msgs  [numPlatforms]Message
	state []recipientState
	// pending counts submitted, unresolved recipients plus one guard held
	// by Handle while it submits; the run is finished when it reaches 0.
	pending atomic.Int32

	mu                sync.Mutex // guards the retry summary below
	lastRetry         Result
	lastRetryPlatform Platform
	maxRetryAfter     time.Duration
}

// newRun renders the notification once for each platform present in b.
func (d *Dispatcher) newRun(del Delivery, b *Batch) (*run, error) {
	r := &run{
		d:     d,
		del:   del,
		lost:  del.Lost(),
		batch: b,
		state: make([]recipientState, len(b.Recipients)),
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
		m, err := d.providers[p].Prepare(&b.Notification)
		if err != nil {
			return nil, &renderError{p: p, err: err}
		}
		r.msgs[p] = m
	}
	return r, nil
}

type renderError struct {
	p   Platform
	err error
}

func (e *renderError) Error() string { return e.p.Provider() + ": " + e.err.Error() }
func (e *renderError) Unwrap() error { return e.err }

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

// release drops the guard Handle holds while submitting.
func (r *run) release() { r.done() }

func (r *run) noteRetry(p Platform, res Result) {
	r.mu.Lock()
	r.lastRetry = res
	r.lastRetryPlatform = p
	r.maxRetryAfter = max(r.maxRetryAfter, res.RetryAfter)
	r.mu.Unlock()
}

// subset returns the recipients in any of the given states.
func (r *run) subset(states ...recipientState) []Recipient {
	var out []Recipient
	for i, s := range r.state {
		for _, want := range states {
			if s == want {
				out = append(out, r.batch.Recipients[i])
				break
			}
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
