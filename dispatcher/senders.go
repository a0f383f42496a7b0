package dispatcher

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"

	"github.com/pushd/pushd/ratelimit"
)

// senders is the sending pool: a bounded number of workers per platform
// take the recipients that runs submit, high lane first, and send each
// through its provider. It also throttles submissions: a recipient is
// submitted only once its campaign's, its provider's and the global bucket
// gave it a token.
type senders struct {
	log       *slog.Logger
	met       Metrics
	clock     ratelimit.Clock
	lim       *limiter
	providers [numPlatforms]Provider
	workers   [numPlatforms]int
	brk       *breakers

	// jobs[p][lane] feed the workers of platform p.
	jobs [numPlatforms][2]chan job
}

// job is one recipient of one run, small enough to pass by value. probe
// marks the send an open breaker admitted as its probe.
type job struct {
	r     *run
	i     int32
	probe bool
}

func newSenders(log *slog.Logger, met Metrics, clock ratelimit.Clock, lim *limiter, providers [numPlatforms]Provider, workers [numPlatforms]int, brk *breakers) *senders {
	s := &senders{log: log, met: met, clock: clock, lim: lim, providers: providers, workers: workers, brk: brk}
	for _, p := range Platforms {
		for l := range s.jobs[p] {
			s.jobs[p][l] = make(chan job, workers[p])
		}
	}
	return s
}

// run runs the workers until ctx ends (the hard stop) and they returned.
func (s *senders) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, p := range Platforms {
		for range s.workers[p] {
			wg.Go(func() { s.work(ctx, p) })
		}
	}
	wg.Wait()
}

// throttle takes a token from the campaign's bucket, then the provider's,
// then the global one.
func (s *senders) throttle(ctx context.Context, c *campaign, p Platform) error {
	if !c.bucket.Unlimited() {
		w, err := c.bucket.Wait(ctx)
		if err != nil {
			return err
		}
		s.met.ThrottleWait(LevelCampaign, w)
	}
	if b := s.lim.perPlat[p]; !b.Unlimited() {
		w, err := b.Wait(ctx)
		if err != nil {
			return err
		}
		s.met.ThrottleWait(p.Provider(), w)
	}
	if !s.lim.global.Unlimited() {
		w, err := s.lim.global.Wait(ctx)
		if err != nil {
			return err
		}
		s.met.ThrottleWait(LevelGlobal, w)
	}
	return nil
}

// submit hands recipient i of r to the workers of platform p, counting it
// in flight; probe marks it as the probe of p's open breaker. It reports
// false, counting nothing, if ctx ended first.
func (s *senders) submit(ctx context.Context, r *run, i int, p Platform, lane Lane, probe bool) bool {
	r.pending.Add(1)
	s.met.InFlight(1)
	r.c.inFlight.Add(1)
	select {
	case s.jobs[p][lane] <- job{r: r, i: int32(i), probe: probe}:
		return true
	case <-ctx.Done():
		s.met.InFlight(-1)
		r.c.inFlight.Add(-1)
		r.pending.Add(-1)
		return false
	}
}

// work is one sender: it takes jobs of platform p, high lane first.
func (s *senders) work(ctx context.Context, p Platform) {
	high, normal := s.jobs[p][High], s.jobs[p][Normal]
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
		s.send(ctx, p, j)
	}
}

func (s *senders) send(ctx context.Context, p Platform, j job) {
	r, c := j.r, j.r.c
	defer func() {
		s.met.InFlight(-1)
		c.inFlight.Add(-1)
	}()
	if r.isLost() || c.status() != StatusRunning {
		// Lost: the broker will redeliver the whole message, sending now
		// would only add duplicates. Paused or cancelled since it was
		// submitted: not sent; the run hands it back to the campaign's
		// queue, or counts it as cancelled.
		r.done()
		return
	}
	brk := s.brk[p]
	if !j.probe && !brk.up() {
		// The provider went down since it was submitted: not sent, no
		// attempt spent; the run hands it back to the campaign's queue,
		// where it waits for the breaker like the rest.
		r.done()
		return
	}
	rc := &r.batch.Recipients[j.i]
	start := s.clock.Now()
	res := s.safeSend(ctx, r.msgs[p], rc)
	s.met.SendDone(p, res.Outcome, s.clock.Now().Sub(start))
	gen := brk.generation()
	if ctx.Err() == nil {
		brk.record(res)
	}
	// Sent or failed for good: a redelivery skips it, and it is counted
	// with its ledger bit. Not an invalid token yet: its token.invalid
	// event and blacklist entry are made, and it is counted as failed,
	// when the run is resolved, and a redelivery must send it again (to be
	// told again) if the run never gets there.
	switch res.Outcome {
	case Sent:
		r.state[j.i] = stateDone
		r.resolveAs(int(j.i), cSent)
	case InvalidToken:
		r.state[j.i] = stateDone
		r.noteInvalid(rc, res)
		s.log.Debug("invalid token", "platform", p, "token", ShortToken(rc.Token), "reason", res.Reason)
	case Failed:
		r.state[j.i] = stateDone
		r.resolveAs(int(j.i), cFailed)
		s.log.Debug("permanent failure", "platform", p, "token", ShortToken(rc.Token), "status", res.Status, "reason", res.Reason, "err", res.Err)
	case RetryLater:
		if ctx.Err() != nil {
			// Interrupted by the hard stop: still pending, handed back.
			return
		}
		if res.Credential {
			s.met.CredentialFault(p)
			s.log.Warn("provider refused pushd's credentials", "provider", p.Provider(), "status", res.Status, "reason", res.Reason)
		}
		r.state[j.i] = stateRetry
		r.noteRetry(p, res, gen)
	}
	r.done()
}

// safeSend sends through m, turning a panic of the provider code into a
// RetryLater (reason "panic"): one recipient that trips a bug is retried
// and, after the last attempt, dead-lettered, instead of taking the
// daemon and every batch in flight down with it.
func (s *senders) safeSend(ctx context.Context, m Message, rc *Recipient) (res Result) {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("provider send panicked; the recipient will be retried",
				"platform", rc.Platform, "token", ShortToken(rc.Token), "panic", v, "stack", string(debug.Stack()))
			res = Result{Outcome: RetryLater, Reason: "panic", Err: fmt.Errorf("panic: %v", v)}
		}
	}()
	return m.Send(ctx, rc)
}
