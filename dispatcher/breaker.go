package dispatcher

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushd/pushd/ratelimit"
)

// breaker follows the health of one provider from the answers of its sends
// (a circuit breaker). Closed, every send goes. After Failures consecutive
// provider-down answers (no answer at all, or a 5xx) it opens: no
// recipient spends an attempt on the provider any more, they wait (see
// Dispatcher.awaitProviders) or go back to their campaign's queue untried,
// and one send per probe interval goes as the probe, its attempt counted
// as usual. The first answer that shows the provider up (a success, or a
// 4xx about the message) closes it, and every recipient waiting for it is
// released at once, through the token buckets as usual.
//
// 429 and credential faults leave it as it is: the provider answers, and
// the recipient's Retry-After (or the operator) deals with them.
type breaker struct {
	p        Platform
	clock    ratelimit.Clock
	met      Metrics
	log      *slog.Logger
	failures int32         // consecutive provider-down answers that open it
	probe    time.Duration // interval between probes while open

	// open and consecutive are read on every send without the lock.
	open        atomic.Bool
	consecutive atomic.Int32
	// gen counts the transitions (odd: open). A retry that failed at
	// generation g while gen is past g now failed in an outage the
	// breaker caught, which ended or goes on.
	gen atomic.Uint64

	mu        sync.Mutex // guards the transitions and the fields below
	nextProbe time.Time  // while open: when the next probe may go
	since     time.Time  // while open: when it opened
	closed    chan struct{}
}

func newBreaker(p Platform, clock ratelimit.Clock, met Metrics, log *slog.Logger, failures int, probe time.Duration) *breaker {
	b := &breaker{p: p, clock: clock, met: met, log: log, failures: int32(failures), probe: probe, closed: make(chan struct{})}
	close(b.closed)
	met.ProviderUp(p, true)
	return b
}

// up reports whether the breaker is closed.
func (b *breaker) up() bool { return !b.open.Load() }

// generation returns the number of transitions so far (odd: open).
func (b *breaker) generation() uint64 { return b.gen.Load() }

// admit reports whether a send to the provider may go now: always while
// the breaker is closed; while it is open, one send per probe interval, as
// the probe (probe set). When none may go it returns a channel closed when
// the breaker closes, and when the next probe is due.
func (b *breaker) admit() (ok, probe bool, closed <-chan struct{}, next time.Time) {
	if !b.open.Load() {
		return true, false, nil, time.Time{}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open.Load() {
		return true, false, nil, time.Time{}
	}
	now := b.clock.Now()
	if !now.Before(b.nextProbe) {
		b.nextProbe = now.Add(b.probe)
		return true, true, nil, time.Time{}
	}
	return false, false, b.closed, b.nextProbe
}

// Health of a provider as one answer shows it.
const (
	healthUnknown = iota // says nothing of the provider (429, credentials, ours)
	healthDown           // no answer, or a 5xx
	healthUp             // an answer about the message itself
)

// health classifies a send's result for the breaker.
func health(res Result) int {
	switch res.Outcome {
	case Sent, InvalidToken:
		return healthUp
	case RetryLater:
		switch {
		case res.Credential, res.Reason == "canceled", res.Reason == "panic":
			return healthUnknown
		case res.Status == 0, res.Status >= 500:
			return healthDown
		}
		return healthUnknown
	case Failed:
		if res.Status >= 200 && res.Status < 500 {
			return healthUp
		}
	}
	return healthUnknown
}

// record feeds the result of a send to the breaker.
func (b *breaker) record(res Result) {
	switch health(res) {
	case healthUp:
		if b.open.Load() {
			b.close()
		} else if b.consecutive.Load() != 0 {
			b.consecutive.Store(0)
		}
	case healthDown:
		if n := b.consecutive.Add(1); n >= b.failures || b.open.Load() {
			b.trip(res)
		}
	}
}

// trip opens the breaker, or, open already, defers the next probe to the
// provider's Retry-After: the provider's word wins over the probe interval.
func (b *breaker) trip(res Result) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock.Now()
	if b.open.Load() {
		if res.RetryAfter > 0 {
			b.nextProbe = maxTime(b.nextProbe, now.Add(res.RetryAfter))
		}
		return
	}
	b.open.Store(true)
	b.gen.Add(1)
	b.since = now
	b.nextProbe = now.Add(max(b.probe, res.RetryAfter))
	b.closed = make(chan struct{})
	b.met.ProviderUp(b.p, false)
	b.log.Warn("provider down: holding its recipients, probing it", "provider", b.p.Provider(),
		"consecutive_failures", b.consecutive.Load(), "status", res.Status, "reason", res.Reason, "probe_every", b.probe)
}

// close closes the breaker and releases every send waiting for it.
func (b *breaker) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open.Load() {
		return
	}
	b.consecutive.Store(0)
	b.open.Store(false)
	b.gen.Add(1)
	close(b.closed)
	b.met.ProviderUp(b.p, true)
	b.log.Info("provider up again: releasing its recipients", "provider", b.p.Provider(), "down_for", b.clock.Now().Sub(b.since))
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// breakers are the breakers of the platforms (nil for PlatformUnknown).
type breakers [numPlatforms]*breaker
