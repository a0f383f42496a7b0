package dispatcher

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushd/pushd/ratelimit"
)

// Counter indices of campaign.delta.
const (
	cReceived = iota
	cSent
	cFailed
	cFiltered
	cDropped
	cCancelled
	numCounters
)

// tally holds counts by counter index.
type tally [numCounters]int64

func (t *tally) add(o tally) {
	for i := range t {
		t[i] += o[i]
	}
}

func (t tally) counters() Counters {
	return Counters{
		Received: t[cReceived], Sent: t[cSent], Failed: t[cFailed],
		Filtered: t[cFiltered], Dropped: t[cDropped], Cancelled: t[cCancelled],
	}
}

// one returns a tally of n under counter k (none when k < 0).
func one(k, n int) tally {
	var t tally
	if k >= 0 {
		t[k] = int64(n)
	}
	return t
}

var statusCodes = map[Status]int32{StatusRunning: 0, StatusPaused: 1, StatusCancelled: 2, StatusFinished: 3}

// campaignEnv is what every campaign of a Dispatcher works with.
type campaignEnv struct {
	log       *slog.Logger
	met       Metrics
	clock     ratelimit.Clock
	queues    CampaignQueues
	out       Outbox
	store     CampaignStore
	lim       *limiter
	consumers *consumerGroup
	// handle processes a delivery from a campaign's queue; ctx is done
	// when the consumer is stopping.
	handle  func(ctx context.Context, c *campaign, del Delivery)
	gate    *storeGate
	signals *testSignals
}

// campaign is this instance's view of one campaign, and its owner here:
// its state machine (following the store's record), its token bucket, its
// queue's consumer (started while running or cancelled, stopped otherwise),
// the routing of batches to its queue, and its ending: when idle, it is
// marked finished and its queue deleted. It keeps the counters not yet
// written to the store.
type campaign struct {
	id     string
	env    *campaignEnv
	state  atomic.Int32 // index into Statuses, read on the hot path
	bucket *ratelimit.Bucket

	// life guards the fields below. It is never held across I/O (a
	// broker confirm, a store write): pause, resume, cancel and rate take
	// effect here at once, whatever the broker is doing.
	life     sync.Mutex
	rec      CampaignRecord
	runCtx   context.Context // live while running; runs stop submitting when it ends
	stopRun  context.CancelFunc
	stopCons context.CancelFunc // stops the campaign queue's consumer
	consDone <-chan struct{}
	ending   bool // its queue is being deleted: nothing is routed to it
	routing  int  // batches being published to its queue
	// keepOn: another instance finished the campaign while this one
	// still works on it; the registry reopens it (takeKeepOn).
	keepOn bool

	active     atomic.Int32 // runs in progress
	inFlight   atomic.Int64 // recipients submitted and not tried
	retrying   atomic.Int64 // recipients held for a later attempt
	lastActive atomic.Int64 // unix nanoseconds
	delta      [numCounters]atomic.Int64
}

func newCampaign(id string, env *campaignEnv) *campaign {
	c := &campaign{id: id, env: env, bucket: ratelimit.NewBucket(0, 0, env.clock)}
	c.touch(env.clock.Now())
	return c
}

func (c *campaign) status() Status { return Statuses[c.state.Load()] }

func (c *campaign) count(i, n int) { c.delta[i].Add(int64(n)) }

func (c *campaign) touch(t time.Time) { c.lastActive.Store(t.UnixNano()) }

// messageRate returns the rate seen in the campaign's messages.
func (c *campaign) messageRate() float64 {
	c.life.Lock()
	defer c.life.Unlock()
	return c.rec.MessageRate
}

// runContext returns the context of the campaign's current running period:
// done as soon as it is paused or cancelled, or consuming stops.
func (c *campaign) runContext() context.Context {
	c.life.Lock()
	defer c.life.Unlock()
	if c.runCtx == nil {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		return ctx
	}
	return c.runCtx
}

// rescale sets the bucket to this instance's share of the campaign's rate.
func (c *campaign) rescale() {
	c.life.Lock()
	rate := c.rec.Rate()
	c.life.Unlock()
	c.bucket.Set(c.env.lim.share(rate), 0)
}

// claim counts a run in c.active unless the campaign's queue is being
// deleted, atomically with that check: end, which sets ending under c.life
// and then looks at c.active, cannot end the campaign under the run.
func (c *campaign) claim() bool {
	c.life.Lock()
	defer c.life.Unlock()
	if c.ending {
		return false
	}
	c.active.Add(1)
	return true
}

func (c *campaign) idle(now time.Time, idleFor time.Duration) bool {
	if c.active.Load() > 0 || c.inFlight.Load() > 0 {
		return false
	}
	if c.status() == StatusRunning && c.retrying.Load() > 0 {
		return false
	}
	return now.Sub(time.Unix(0, c.lastActive.Load())) >= idleFor
}

// deltas returns the counters not yet written to the store.
func (c *campaign) deltas() Counters {
	var t tally
	for i := range t {
		t[i] = c.delta[i].Load()
	}
	return t.counters()
}

// take removes and returns the counters not yet written.
func (c *campaign) take() tally {
	var t tally
	for i := range t {
		t[i] = c.delta[i].Swap(0)
	}
	return t
}

// putBack adds counts that could not be written to the deltas, which the
// bookkeeping writes on its own (not with the ledger).
func (c *campaign) putBack(t tally) {
	for i, n := range t {
		c.delta[i].Add(n)
	}
}

// apply makes the campaign follow a record of the store.
func (c *campaign) apply(rec CampaignRecord) {
	c.life.Lock()
	defer c.life.Unlock()
	c.applyLocked(rec)
}

// applyLocked moves the campaign to rec's state: its bucket, the context
// of its running period, its queue's consumer.
func (c *campaign) applyLocked(rec CampaignRecord) {
	if rec.Rev < c.rec.Rev {
		return // an older read than what we follow already
	}
	if rec.Status == StatusFinished && c.rec.Status == StatusRunning && !c.ending &&
		(c.active.Load() > 0 || c.inFlight.Load() > 0) {
		// Another instance, idle, finished the campaign while this one
		// still sends it. Finishing is not an operator's stop: the runs
		// here go on, the consumer too, and the registry reopens the
		// campaign in the store (the other instance reverts it as well
		// when it sees this one consuming). Stopping here would cut the
		// runs and hand their recipients back mid-send.
		c.keepOn = true
		return
	}
	was := c.rec.Status
	c.rec = rec
	c.state.Store(statusCodes[rec.Status])
	c.bucket.Set(c.env.lim.share(rec.Rate()), 0)
	if rec.Status == StatusRunning {
		if was != StatusRunning {
			// Reopened (or resumed): that is activity, so that the
			// batch reopening it is routed before the campaign can
			// count as idle again.
			c.touch(c.env.clock.Now())
		}
		if c.runCtx == nil {
			c.runCtx, c.stopRun = context.WithCancel(c.env.consumers.context())
		}
	} else if c.stopRun != nil {
		c.stopRun()
		c.runCtx, c.stopRun = nil, nil
	}
	switch rec.Status {
	case StatusRunning, StatusCancelled:
		// A cancelled campaign's queue is consumed too, to count and drop
		// what is left in it.
		if !c.ending {
			c.startConsumerLocked()
		}
	default:
		c.stopConsumerLocked()
	}
	if was != "" && was != rec.Status {
		c.env.log.Info("campaign status", "campaign", c.id, "from", was, "to", rec.Status)
	}
}

// takeKeepOn reports, once, whether another instance finished the
// campaign while this one still worked on it (see applyLocked).
func (c *campaign) takeKeepOn() bool {
	c.life.Lock()
	defer c.life.Unlock()
	k := c.keepOn
	c.keepOn = false
	return k
}

// reopenBusy makes a campaign that another instance finished while this
// one still works on it running again in the store, and follows that.
func (c *campaign) reopenBusy(ctx context.Context) {
	rec, err := c.env.store.EnsureCampaign(ctx, c.id, c.messageRate())
	if err != nil {
		c.env.log.Warn("cannot reopen a campaign another instance finished while this one sends it", "campaign", c.id, "err", err)
		return
	}
	c.apply(rec)
}

// startConsumerLocked starts consuming the campaign's queue, unless a
// consumer runs or consuming stopped.
func (c *campaign) startConsumerLocked() {
	if c.stopCons != nil {
		return
	}
	cancel, done, ok := c.env.consumers.start(func(ctx context.Context) {
		c.env.signals.consumerStarted.Signal(c.id)
		defer c.env.signals.consumerStopped.Signal(c.id)
		c.env.queues.ConsumeCampaign(ctx, c.id, func(ctx context.Context, del Delivery) { c.env.handle(ctx, c, del) })
	})
	if ok {
		c.stopCons, c.consDone = cancel, done
	}
}

// stopConsumerLocked stops the campaign's consumer and returns a channel
// closed when it has returned (nil when none ran). Do not wait on it while
// holding c.life: the consumer's handler may need it.
func (c *campaign) stopConsumerLocked() <-chan struct{} {
	if c.stopCons == nil {
		return nil
	}
	c.stopCons()
	done := c.consDone
	c.stopCons, c.consDone = nil, nil
	return done
}

// routeBack publishes a body to the campaign's queue, confirmed. While the
// queue is being deleted (the campaign just ended) it is held for a
// second on lane instead, then routed to the queue made anew. A campaign
// ended meanwhile is reopened, so that its queue is consumed.
//
// The campaign is not locked while the broker confirms: routing counts
// the publishes in progress, and the campaign does not end while any is.
func (c *campaign) routeBack(ctx context.Context, lane Lane, body []byte, h Hop) error {
	c.life.Lock()
	if c.ending {
		c.life.Unlock()
		return c.env.out.Hold(ctx, lane, body, h, c.env.clock.Now().Add(time.Second))
	}
	c.routing++
	c.life.Unlock()
	err := c.env.queues.Route(ctx, c.id, body, h)
	c.life.Lock()
	c.routing--
	c.life.Unlock()
	if err == nil {
		c.reopen(ctx)
	}
	return err
}

// reopen makes sure a batch just routed to the campaign's queue will be
// consumed: the campaign may have ended, and its queue been deleted,
// between observing the batch and routing it.
func (c *campaign) reopen(ctx context.Context) {
	if c.status() != StatusFinished {
		return
	}
	var rec CampaignRecord
	err := c.env.gate.retry(ctx, nil, func(ctx context.Context) (err error) {
		rec, err = c.env.store.EnsureCampaign(ctx, c.id, c.messageRate())
		return err
	})
	if err != nil {
		c.env.log.Error("cannot reopen campaign; its queue is consumed once a batch of it comes again", "campaign", c.id, "err", err)
		return
	}
	c.apply(rec)
}

// endIfIdle ends a running or cancelled campaign that has had nothing
// queued, held or in flight for idleFor: it stops the consumer and deletes
// the queue, marking a running campaign finished first. It reports whether
// a running campaign was finished.
func (c *campaign) endIfIdle(ctx context.Context, now time.Time, idleFor time.Duration) bool {
	st := c.status()
	if (st != StatusRunning && st != StatusCancelled) || !c.idle(now, idleFor) {
		return false
	}
	c.life.Lock()
	if c.stopCons == nil || c.ending || c.routing > 0 {
		c.life.Unlock()
		return false
	}
	// From here until ending is cleared, nothing is routed to the queue
	// by this instance: batches are held for a second instead.
	c.ending = true
	done := c.stopConsumerLocked()
	c.life.Unlock()
	<-done
	return c.end(ctx)
}

// end deletes the idle campaign's queue, marking a running campaign
// finished first, or keeps both when work arrived meanwhile. Quorum queues
// cannot be deleted "if empty" atomically, hence the order: stop routing
// (ending), mark finished in the store so other instances reopen the
// campaign before routing, check the queue has no message and no consumer,
// delete. It reports whether the campaign was finished.
//
// It runs without c.life: ending keeps routing and new runs away, and the
// status may change meanwhile (an operator's pause, another instance
// reopening it), which the store's conditional updates and the re-read
// before the deletion catch.
func (c *campaign) end(ctx context.Context) (finished bool) {
	deleted := false
	defer func() {
		c.life.Lock()
		defer c.life.Unlock()
		c.ending = false
		if !deleted && (c.rec.Status == StatusRunning || c.rec.Status == StatusCancelled) {
			c.startConsumerLocked()
		}
	}()
	if c.active.Load() > 0 || c.inFlight.Load() > 0 {
		return false
	}
	store := c.env.store
	wasRunning := c.status() == StatusRunning
	want := StatusCancelled
	if wasRunning {
		want = StatusFinished
		_, after, err := store.SetCampaignStatus(ctx, c.id, StatusFinished, StatusRunning)
		if err != nil {
			if !errors.Is(err, ErrConflict) {
				c.env.log.Warn("cannot finish campaign", "campaign", c.id, "err", err)
			}
			return false
		}
		c.apply(after)
	}
	// An operator or another instance may have changed it meanwhile.
	rec, err := store.Campaign(ctx, c.id)
	if err != nil || rec.Status != want {
		if err == nil {
			c.apply(rec)
		}
		return false
	}
	gone, err := c.env.queues.DeleteCampaignQueue(ctx, c.id)
	if err == nil && gone {
		deleted = true
		c.env.signals.campaignEnded.Signal(c.id)
		return wasRunning
	}
	if err != nil {
		c.env.log.Warn("cannot delete campaign queue", "campaign", c.id, "err", err)
	}
	if wasRunning {
		// Work arrived: running again.
		_, after, err := store.SetCampaignStatus(ctx, c.id, StatusRunning, StatusFinished)
		if err == nil {
			c.apply(after)
		}
	}
	return false
}

// consumerGroup runs the campaigns' queue consumers: it starts them until
// consuming stops, and then waits for them.
type consumerGroup struct {
	ctx  context.Context // ends when consuming stops
	stop context.CancelFunc

	mu       sync.Mutex
	stopping bool
	wg       sync.WaitGroup
}

func newConsumerGroup(parent context.Context) *consumerGroup {
	ctx, cancel := context.WithCancel(parent)
	return &consumerGroup{ctx: ctx, stop: cancel}
}

// context returns the context that ends when consuming stops.
func (g *consumerGroup) context() context.Context { return g.ctx }

// start runs consume in a goroutine of its own, with a context that ends
// when cancel is called or consuming stops; done is closed when consume
// has returned. It reports false, starting nothing, once consuming
// stopped.
func (g *consumerGroup) start(consume func(ctx context.Context)) (cancel context.CancelFunc, done <-chan struct{}, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopping {
		return nil, nil, false
	}
	ctx, cancel := context.WithCancel(g.ctx)
	ch := make(chan struct{})
	g.wg.Go(func() {
		defer close(ch)
		consume(ctx)
	})
	return cancel, ch, true
}

// stopAll stops every consumer, and starting new ones, and waits for them
// to return, or for ctx. Calling it again is harmless.
func (g *consumerGroup) stopAll(ctx context.Context) {
	g.mu.Lock()
	g.stopping = true
	g.mu.Unlock()
	g.stop()
	done := make(chan struct{})
	go func() {
		g.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
