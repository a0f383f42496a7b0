package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
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

var statusCodes = map[Status]int32{StatusRunning: 0, StatusPaused: 1, StatusCancelled: 2, StatusFinished: 3}

// campaign is this instance's view of one campaign: its control state (from
// the store), its token bucket, its queue's consumer, and the counters not
// yet written to the store.
type campaign struct {
	id     string
	state  atomic.Int32 // index into Statuses, read on the hot path
	bucket *ratelimit.Bucket

	life      sync.Mutex // guards the fields below: transitions happen one at a time
	rec       CampaignRecord
	runCtx    context.Context // live while running; runs stop submitting when it ends
	stopRun   context.CancelFunc
	stopCons  context.CancelFunc // stops the campaign queue's consumer
	consDone  chan struct{}
	finishing bool // the bookkeeping loop is checking whether it is finished

	active     atomic.Int32 // runs in progress
	inFlight   atomic.Int64 // recipients submitted and not resolved
	retrying   atomic.Int64 // recipients held for a later attempt
	lastActive atomic.Int64 // unix nanoseconds
	delta      [numCounters]atomic.Int64
}

func (c *campaign) status() Status { return Statuses[c.state.Load()] }

func (c *campaign) count(i, n int) { c.delta[i].Add(int64(n)) }

func (c *campaign) touch(t time.Time) { c.lastActive.Store(t.UnixNano()) }

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

func (c *campaign) applyRate(d *Dispatcher) {
	c.life.Lock()
	rate := c.rec.Rate()
	c.life.Unlock()
	c.bucket.Set(d.share(rate), 0)
}

// claim counts a run in c.active unless the campaign's queue is being
// deleted, atomically with that check: finishQueue, which holds c.life and
// looks at c.active, then cannot finish the campaign under the run.
func (c *campaign) claim() bool {
	c.life.Lock()
	defer c.life.Unlock()
	if c.finishing {
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
	return Counters{
		Received: c.delta[cReceived].Load(), Sent: c.delta[cSent].Load(), Failed: c.delta[cFailed].Load(),
		Filtered: c.delta[cFiltered].Load(), Dropped: c.delta[cDropped].Load(), Cancelled: c.delta[cCancelled].Load(),
	}
}

// take removes and returns the counters not yet written.
func (c *campaign) take() Counters {
	return Counters{
		Received: c.delta[cReceived].Swap(0), Sent: c.delta[cSent].Swap(0), Failed: c.delta[cFailed].Swap(0),
		Filtered: c.delta[cFiltered].Swap(0), Dropped: c.delta[cDropped].Swap(0), Cancelled: c.delta[cCancelled].Swap(0),
	}
}

// putBack adds counters that could not be written back to the deltas.
func (c *campaign) putBack(n Counters) {
	c.delta[cReceived].Add(n.Received)
	c.delta[cSent].Add(n.Sent)
	c.delta[cFailed].Add(n.Failed)
	c.delta[cFiltered].Add(n.Filtered)
	c.delta[cDropped].Add(n.Dropped)
	c.delta[cCancelled].Add(n.Cancelled)
}

// registry holds the campaigns this instance knows.
type registry struct {
	mu       sync.Mutex
	byID     map[string]*campaign
	stopping bool  // no new campaign consumers
	rev      int64 // the highest store revision applied

	// flushMu is held while counters move from the campaigns to the store,
	// so that readers never see them in neither place.
	flushMu sync.RWMutex
}

func (g *registry) get(id string) *campaign {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.byID[id]
}

func (g *registry) all() []*campaign {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*campaign, 0, len(g.byID))
	for _, c := range g.byID {
		out = append(out, c)
	}
	return out
}

// observe returns the campaign of a batch, recording it in the store the
// first time this instance sees it, when the rate in its messages changes,
// and when a finished campaign gets batches again.
func (d *Dispatcher) observe(ctx context.Context, b *Batch) (*campaign, error) {
	id, rate := b.Campaign.ID, b.Campaign.RatePerSecond
	if c := d.campaigns.get(id); c != nil && c.status() != StatusFinished {
		c.life.Lock()
		same := c.rec.MessageRate == rate
		c.life.Unlock()
		if same {
			return c, nil
		}
	}
	rec, err := d.store.EnsureCampaign(ctx, id, rate)
	if err != nil {
		return nil, err
	}
	return d.apply(rec), nil
}

// apply makes this instance follow a campaign record.
func (d *Dispatcher) apply(rec CampaignRecord) *campaign {
	d.campaigns.mu.Lock()
	c := d.campaigns.byID[rec.ID]
	if c == nil {
		c = &campaign{id: rec.ID, bucket: ratelimit.NewBucket(0, 0, d.cfg.Clock)}
		c.touch(d.now())
		d.campaigns.byID[rec.ID] = c
	}
	if rec.Rev > d.campaigns.rev {
		d.campaigns.rev = rec.Rev
	}
	d.campaigns.mu.Unlock()
	c.life.Lock()
	d.applyLocked(c, rec)
	c.life.Unlock()
	return c
}

func (d *Dispatcher) applyLocked(c *campaign, rec CampaignRecord) {
	if rec.Rev < c.rec.Rev {
		return // an older read than what we follow already
	}
	was := c.rec.Status
	c.rec = rec
	c.state.Store(statusCodes[rec.Status])
	c.bucket.Set(d.share(rec.Rate()), 0)
	if rec.Status == StatusRunning {
		if c.runCtx == nil && d.consumeCtx != nil {
			c.runCtx, c.stopRun = context.WithCancel(d.consumeCtx)
		}
	} else if c.stopRun != nil {
		c.stopRun()
		c.runCtx, c.stopRun = nil, nil
	}
	switch rec.Status {
	case StatusRunning, StatusCancelled:
		// A cancelled campaign's queue is consumed too, to count and drop
		// what is left in it.
		if !c.finishing {
			d.startConsumerLocked(c)
		}
	default:
		c.stopConsumerLocked()
	}
	if was != "" && was != rec.Status {
		d.log.Info("campaign status", "campaign", c.id, "from", was, "to", rec.Status)
	}
}

func (d *Dispatcher) startConsumerLocked(c *campaign) {
	if c.stopCons != nil || d.consumeCtx == nil {
		return
	}
	d.campaigns.mu.Lock()
	stopping := d.campaigns.stopping
	if !stopping {
		d.consumers.Add(1)
	}
	d.campaigns.mu.Unlock()
	if stopping {
		return
	}
	ctx, cancel := context.WithCancel(d.consumeCtx)
	done := make(chan struct{})
	c.stopCons, c.consDone = cancel, done
	go func() {
		defer d.consumers.Done()
		defer close(done)
		d.signals.consumerStarted.Signal(c.id)
		defer d.signals.consumerStopped.Signal(c.id)
		if err := d.queues.ConsumeCampaign(ctx, c.id, d.handleCampaign); err != nil {
			d.log.Error("campaign consumer failed", "campaign", c.id, "err", err)
		}
	}()
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

// routed makes sure a batch just routed to a campaign's queue will be
// consumed: the campaign may have been finished, and its queue deleted,
// between observe and the routing.
func (d *Dispatcher) routed(c *campaign) {
	if c.status() != StatusFinished {
		return
	}
	c.life.Lock()
	rate := c.rec.MessageRate
	c.life.Unlock()
	rec, err := d.store.EnsureCampaign(d.runCtx, c.id, rate)
	if err != nil {
		d.log.Error("cannot reopen campaign", "campaign", c.id, "err", err)
		return
	}
	d.apply(rec)
}

// loadCampaigns follows every campaign of the store that is not finished.
func (d *Dispatcher) loadCampaigns(ctx context.Context) error {
	recs, err := d.store.Campaigns(ctx)
	if err != nil {
		return fmt.Errorf("load campaigns: %w", err)
	}
	for _, rec := range recs {
		if rec.Status != StatusFinished {
			d.apply(rec)
		}
		if rec.Rev > d.campaigns.rev {
			d.campaigns.rev = rec.Rev
		}
	}
	return nil
}

// bookkeeping runs until ctx ends: it applies changes made elsewhere (other
// instances, or the admin module of this one), writes counters to the
// store, finishes idle campaigns and follows the number of instances.
func (d *Dispatcher) bookkeeping(ctx context.Context, tick *ticker) {
	n := 0
	tick.run(ctx, func() {
		defer func() { n++ }()
		d.syncChanges(ctx)
		d.syncLimits(ctx)
		d.flushCounters(ctx)
		d.finishIdle(ctx)
		if n%5 == 0 {
			if inst, err := d.queues.Instances(ctx); err == nil {
				d.setInstances(inst)
			}
		}
		byStatus := map[Status]int{}
		for _, c := range d.campaigns.all() {
			byStatus[c.status()]++
		}
		d.met.Campaigns(byStatus)
		d.signals.bookkept.Signal(struct{}{})
	})
}

func (d *Dispatcher) syncChanges(ctx context.Context) {
	d.campaigns.mu.Lock()
	since := d.campaigns.rev
	d.campaigns.mu.Unlock()
	recs, err := d.store.CampaignChanges(ctx, since)
	if err != nil {
		d.log.Warn("cannot read campaign changes", "err", err)
		return
	}
	for _, rec := range recs {
		if d.campaigns.get(rec.ID) != nil || rec.Status != StatusFinished {
			d.apply(rec)
		}
	}
}

// flushCounters writes the counters gathered since the last flush.
func (d *Dispatcher) flushCounters(ctx context.Context) {
	d.campaigns.flushMu.Lock()
	defer d.campaigns.flushMu.Unlock()
	deltas := map[string]Counters{}
	taken := map[string]*campaign{}
	for _, c := range d.campaigns.all() {
		if n := c.take(); !n.IsZero() {
			deltas[c.id], taken[c.id] = n, c
		}
	}
	if len(deltas) == 0 {
		return
	}
	if err := d.store.AddCampaignCounters(ctx, deltas); err != nil {
		d.log.Warn("cannot write campaign counters; will retry", "err", err)
		for id, c := range taken {
			c.putBack(deltas[id])
		}
	}
}

// finishIdle finishes the running campaigns with nothing queued, held or in
// flight for CampaignIdle, deleting their queues, and deletes the drained
// queues of cancelled campaigns.
func (d *Dispatcher) finishIdle(ctx context.Context) {
	now := d.now()
	for _, c := range d.campaigns.all() {
		st := c.status()
		if (st != StatusRunning && st != StatusCancelled) || !c.idle(now, d.cfg.CampaignIdle) {
			continue
		}
		c.life.Lock()
		if c.stopCons == nil || c.finishing {
			c.life.Unlock()
			continue
		}
		// From here until finishing is cleared, nothing is routed to the
		// queue by this instance: intake holds the campaign's batches.
		c.finishing = true
		done := c.stopConsumerLocked()
		c.life.Unlock()
		<-done
		if d.finishQueue(ctx, c) {
			d.publishFinished(ctx, c.id)
		}
	}
}

// finishQueue deletes an idle campaign's queue, marking a running campaign
// finished first, or keeps both when work arrived meanwhile. Quorum queues
// cannot be deleted "if empty" atomically, hence the order: stop routing
// (finishing), mark finished in the store so other instances reopen the
// campaign before routing, check the queue has no message and no consumer,
// delete. It reports whether the campaign was finished.
func (d *Dispatcher) finishQueue(ctx context.Context, c *campaign) (finished bool) {
	c.life.Lock()
	defer c.life.Unlock()
	deleted := false
	defer func() {
		c.finishing = false
		if !deleted && (c.rec.Status == StatusRunning || c.rec.Status == StatusCancelled) {
			d.startConsumerLocked(c)
		}
	}()
	if c.active.Load() > 0 || c.inFlight.Load() > 0 {
		return false
	}
	wasRunning := c.rec.Status == StatusRunning
	if wasRunning {
		_, after, err := d.store.SetCampaignStatus(ctx, c.id, StatusFinished, StatusRunning)
		if err != nil {
			if !errors.Is(err, ErrConflict) {
				d.log.Warn("cannot finish campaign", "campaign", c.id, "err", err)
			}
			return false
		}
		d.applyLocked(c, after)
	}
	// Another instance may have reopened the campaign meanwhile.
	rec, err := d.store.Campaign(ctx, c.id)
	if err == nil && rec.Status != c.rec.Status {
		d.applyLocked(c, rec)
		return false
	}
	gone, err := d.queues.DeleteCampaignQueue(ctx, c.id)
	if err == nil && gone {
		deleted = true
		d.signals.campaignEnded.Signal(c.id)
		return wasRunning
	}
	if err != nil {
		d.log.Warn("cannot delete campaign queue", "campaign", c.id, "err", err)
	}
	if wasRunning {
		// Work arrived: running again.
		_, after, err := d.store.SetCampaignStatus(ctx, c.id, StatusRunning, StatusFinished)
		if err == nil {
			d.applyLocked(c, after)
		}
	}
	return false
}

// campaignEvent is the body of a campaign.finished event.
type campaignEvent struct {
	Event      string    `json:"event"`
	CampaignID string    `json:"campaign_id"`
	Status     Status    `json:"status"`
	Counters   Counters  `json:"counters"`
	At         time.Time `json:"at"`
}

func (d *Dispatcher) publishFinished(ctx context.Context, id string) {
	info, err := d.Campaign(ctx, id)
	if err != nil {
		d.log.Warn("campaign finished, but cannot read it for the event", "campaign", id, "err", err)
		return
	}
	body, _ := json.Marshal(campaignEvent{Event: "campaign.finished", CampaignID: id, Status: info.Status, Counters: info.Counters, At: d.now()})
	if err := d.events.PublishEvent(ctx, "campaign.finished", body); err != nil {
		d.log.Warn("cannot publish campaign.finished", "campaign", id, "err", err)
		return
	}
	d.log.Info("campaign finished", "campaign", id, "sent", info.Counters.Sent, "failed", info.Counters.Failed, "cancelled", info.Counters.Cancelled)
}

// Campaigns returns every campaign, newest first.
func (d *Dispatcher) Campaigns(ctx context.Context) ([]CampaignInfo, error) {
	d.campaigns.flushMu.RLock()
	defer d.campaigns.flushMu.RUnlock()
	recs, err := d.store.Campaigns(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]CampaignInfo, len(recs))
	for i, rec := range recs {
		out[i] = d.info(rec)
	}
	return out, nil
}

// Campaign returns one campaign, or an error wrapping ErrNotFound.
func (d *Dispatcher) Campaign(ctx context.Context, id string) (CampaignInfo, error) {
	d.campaigns.flushMu.RLock()
	defer d.campaigns.flushMu.RUnlock()
	rec, err := d.store.Campaign(ctx, id)
	if err != nil {
		return CampaignInfo{}, err
	}
	return d.info(rec), nil
}

func (d *Dispatcher) info(rec CampaignRecord) CampaignInfo {
	info := CampaignInfo{
		ID:            rec.ID,
		Status:        rec.Status,
		RatePerSecond: rec.Rate(),
		RateSource:    "none",
		Counters:      rec.Counters,
		CreatedAt:     rec.CreatedAt,
		UpdatedAt:     rec.UpdatedAt,
	}
	switch {
	case rec.RateOverride != nil:
		info.RateSource = "operator"
	case rec.MessageRate > 0:
		info.RateSource = "message"
	}
	if c := d.campaigns.get(rec.ID); c != nil {
		info.Counters = info.Counters.Add(c.deltas())
		info.InFlight = c.inFlight.Load()
		info.Retrying = max(0, c.retrying.Load())
	}
	return info
}

// SetCampaignRate sets the operator's rate of a campaign for the whole
// cluster (0: no campaign limit), or with nil goes back to the rate in its
// messages. It takes effect at once on this instance and within
// SyncInterval on the others.
func (d *Dispatcher) SetCampaignRate(ctx context.Context, id string, perSecond *float64) (CampaignInfo, error) {
	if perSecond != nil && (*perSecond < 0 || math.IsNaN(*perSecond) || math.IsInf(*perSecond, 0)) {
		return CampaignInfo{}, fmt.Errorf("%w: rate_per_second must be a finite number, 0 or more", ErrInvalid)
	}
	return d.control(ctx, func() (CampaignRecord, error) {
		_, after, err := d.store.SetCampaignRate(ctx, id, perSecond)
		return after, err
	})
}

// PauseCampaign pauses a campaign: nothing more of it is sent, its batches
// wait durably in its queue (across restarts), sends in flight finish.
func (d *Dispatcher) PauseCampaign(ctx context.Context, id string) (CampaignInfo, error) {
	return d.setStatus(ctx, id, StatusPaused, StatusRunning, StatusPaused, StatusFinished)
}

// ResumeCampaign resumes a paused campaign.
func (d *Dispatcher) ResumeCampaign(ctx context.Context, id string) (CampaignInfo, error) {
	return d.setStatus(ctx, id, StatusRunning, StatusPaused, StatusRunning)
}

// CancelCampaign cancels a campaign for good: sends stop at once, every
// recipient not yet sent (queued, held or in flight) is counted as
// cancelled, and batches that arrive later are dropped the same way.
func (d *Dispatcher) CancelCampaign(ctx context.Context, id string) (CampaignInfo, error) {
	return d.setStatus(ctx, id, StatusCancelled, StatusRunning, StatusPaused, StatusFinished, StatusCancelled)
}

func (d *Dispatcher) setStatus(ctx context.Context, id string, to Status, from ...Status) (CampaignInfo, error) {
	return d.control(ctx, func() (CampaignRecord, error) {
		_, after, err := d.store.SetCampaignStatus(ctx, id, to, from...)
		return after, err
	})
}

func (d *Dispatcher) control(ctx context.Context, change func() (CampaignRecord, error)) (CampaignInfo, error) {
	select {
	case <-d.started:
	case <-ctx.Done():
		return CampaignInfo{}, ctx.Err()
	}
	rec, err := change()
	if err != nil {
		return CampaignInfo{}, err
	}
	d.apply(rec)
	return d.Campaign(ctx, rec.ID)
}
