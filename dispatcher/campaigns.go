package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// registry holds the campaigns this instance follows, and keeps them in
// step with the store: it creates them as their batches arrive, applies
// the changes other instances (or the admin module) made, writes their
// counters, and ends the idle ones.
type registry struct {
	env     *campaignEnv
	events  EventPublisher
	idleFor time.Duration

	mu   sync.Mutex
	byID map[string]*campaign
	rev  int64 // the highest store revision applied

	// flushMu is held while counters move from the campaigns to the store,
	// so that readers never see them in neither place.
	flushMu sync.RWMutex
}

func newRegistry(env *campaignEnv, events EventPublisher, idleFor time.Duration) *registry {
	return &registry{env: env, events: events, idleFor: idleFor, byID: make(map[string]*campaign)}
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
// and when a finished campaign gets batches again. While the store cannot
// be written it waits (see storeGate), until ctx ends or lost is closed.
func (g *registry) observe(ctx context.Context, b *Batch, lost <-chan struct{}) (*campaign, error) {
	id, rate := b.Campaign.ID, b.Campaign.RatePerSecond
	if c := g.get(id); c != nil && c.status() != StatusFinished && c.messageRate() == rate {
		return c, nil
	}
	var rec CampaignRecord
	err := g.env.gate.retry(ctx, lost, func(ctx context.Context) (err error) {
		rec, err = g.env.store.EnsureCampaign(ctx, id, rate)
		return err
	})
	if err != nil {
		return nil, err
	}
	return g.apply(rec), nil
}

// apply makes this instance follow a campaign record.
func (g *registry) apply(rec CampaignRecord) *campaign {
	g.mu.Lock()
	c := g.byID[rec.ID]
	if c == nil {
		c = newCampaign(rec.ID, g.env)
		g.byID[rec.ID] = c
	}
	g.rev = max(g.rev, rec.Rev)
	g.mu.Unlock()
	c.apply(rec)
	return c
}

// load follows every campaign of the store that is not finished.
func (g *registry) load(ctx context.Context) error {
	recs, err := g.env.store.Campaigns(ctx)
	if err != nil {
		return fmt.Errorf("load campaigns: %w", err)
	}
	for _, rec := range recs {
		if rec.Status != StatusFinished {
			g.apply(rec)
		}
		g.mu.Lock()
		g.rev = max(g.rev, rec.Rev)
		g.mu.Unlock()
	}
	return nil
}

// syncChanges applies the changes made in the store since the last.
func (g *registry) syncChanges(ctx context.Context) {
	g.mu.Lock()
	since := g.rev
	g.mu.Unlock()
	recs, err := g.env.store.CampaignChanges(ctx, since)
	if err != nil {
		g.env.log.Warn("cannot read campaign changes", "err", err)
		return
	}
	var reopen []*campaign
	for _, rec := range recs {
		if g.get(rec.ID) != nil || rec.Status != StatusFinished {
			if c := g.apply(rec); c.takeKeepOn() {
				reopen = append(reopen, c)
			}
		}
	}
	for _, c := range reopen {
		c.reopenBusy(ctx)
	}
}

// rescale applies a new share of the rates to every campaign's bucket.
func (g *registry) rescale() {
	for _, c := range g.all() {
		c.rescale()
	}
}

// byStatus counts the campaigns by status.
func (g *registry) byStatus() map[Status]int {
	out := map[Status]int{}
	for _, c := range g.all() {
		out[c.status()]++
	}
	return out
}

// flushCounters writes the counters gathered since the last flush.
func (g *registry) flushCounters(ctx context.Context) {
	g.flushMu.Lock()
	defer g.flushMu.Unlock()
	deltas := map[string]Counters{}
	taken := map[string]*campaign{}
	tallies := map[string]tally{}
	for _, c := range g.all() {
		if n := c.take(); n != (tally{}) {
			deltas[c.id], taken[c.id], tallies[c.id] = n.counters(), c, n
		}
	}
	if len(deltas) == 0 {
		return
	}
	err := g.env.store.AddCampaignCounters(ctx, deltas)
	g.env.gate.note(err)
	if err != nil {
		g.env.log.Warn("cannot write campaign counters; will retry", "err", err)
		for id, c := range taken {
			c.putBack(tallies[id])
		}
	}
}

// endIdle ends the running campaigns with nothing queued, held or in
// flight for idleFor, deleting their queues, and deletes the drained
// queues of cancelled campaigns.
func (g *registry) endIdle(ctx context.Context) {
	now := g.env.clock.Now()
	for _, c := range g.all() {
		if c.endIfIdle(ctx, now, g.idleFor) {
			g.publishFinished(ctx, c.id)
		}
	}
}

// campaignEvent is the body of a campaign.finished event.
type campaignEvent struct {
	Event      string    `json:"event"`
	CampaignID string    `json:"campaign_id"`
	Status     Status    `json:"status"`
	Counters   Counters  `json:"counters"`
	At         time.Time `json:"at"`
}

func (g *registry) publishFinished(ctx context.Context, id string) {
	info, err := g.info(ctx, id)
	if err != nil {
		g.env.log.Warn("campaign finished, but cannot read it for the event", "campaign", id, "err", err)
		return
	}
	body, _ := json.Marshal(campaignEvent{Event: "campaign.finished", CampaignID: id, Status: info.Status, Counters: info.Counters, At: g.env.clock.Now()})
	if err := g.events.PublishEvent(ctx, "campaign.finished", body); err != nil {
		g.env.log.Warn("cannot publish campaign.finished", "campaign", id, "err", err)
		return
	}
	g.env.log.Info("campaign finished", "campaign", id, "sent", info.Counters.Sent, "failed", info.Counters.Failed, "cancelled", info.Counters.Cancelled)
}

// infos returns every campaign as the control API shows it, newest first.
func (g *registry) infos(ctx context.Context) ([]CampaignInfo, error) {
	g.flushMu.RLock()
	defer g.flushMu.RUnlock()
	recs, err := g.env.store.Campaigns(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]CampaignInfo, len(recs))
	for i, rec := range recs {
		out[i] = g.infoOf(rec)
	}
	return out, nil
}

// info returns one campaign, or an error wrapping ErrNotFound.
func (g *registry) info(ctx context.Context, id string) (CampaignInfo, error) {
	g.flushMu.RLock()
	defer g.flushMu.RUnlock()
	rec, err := g.env.store.Campaign(ctx, id)
	if err != nil {
		return CampaignInfo{}, err
	}
	return g.infoOf(rec), nil
}

// infoOf adds what this instance holds of a campaign to its record.
func (g *registry) infoOf(rec CampaignRecord) CampaignInfo {
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
	if c := g.get(rec.ID); c != nil {
		info.Counters = info.Counters.Add(c.deltas())
		info.InFlight = c.inFlight.Load()
		info.Retrying = max(0, c.retrying.Load())
	}
	return info
}
