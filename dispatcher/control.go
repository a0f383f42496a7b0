package dispatcher

import (
	"context"
	"fmt"
	"math"
)

// Control is the front the admin module uses: it reads campaigns with
// their counters, changes their status and rate, and the global and
// provider limits. A change is stored first, so that it survives restarts
// and reaches the other instances (within SyncInterval), then applied here
// at once.
type Control struct {
	store     CampaignStore
	campaigns *registry
	lim       *limiter
	started   <-chan struct{} // closed once the Dispatcher started
}

// Campaigns returns every campaign, newest first.
func (ctl *Control) Campaigns(ctx context.Context) ([]CampaignInfo, error) {
	return ctl.campaigns.infos(ctx)
}

// Campaign returns one campaign, or an error wrapping ErrNotFound.
func (ctl *Control) Campaign(ctx context.Context, id string) (CampaignInfo, error) {
	return ctl.campaigns.info(ctx, id)
}

// SetCampaignRate sets the operator's rate of a campaign for the whole
// cluster (0: no campaign limit), or with nil goes back to the rate in its
// messages. It takes effect at once on this instance and within
// SyncInterval on the others.
func (ctl *Control) SetCampaignRate(ctx context.Context, id string, perSecond *float64) (CampaignInfo, error) {
	if perSecond != nil && (*perSecond < 0 || math.IsNaN(*perSecond) || math.IsInf(*perSecond, 0)) {
		return CampaignInfo{}, fmt.Errorf("%w: rate_per_second must be a finite number, 0 or more", ErrInvalid)
	}
	return ctl.change(ctx, func() (CampaignRecord, error) {
		_, after, err := ctl.store.SetCampaignRate(ctx, id, perSecond)
		return after, err
	})
}

// PauseCampaign pauses a campaign: nothing more of it is sent, its batches
// wait durably in its queue (across restarts), sends in flight finish.
func (ctl *Control) PauseCampaign(ctx context.Context, id string) (CampaignInfo, error) {
	return ctl.setStatus(ctx, id, StatusPaused, StatusRunning, StatusPaused, StatusFinished)
}

// ResumeCampaign resumes a paused campaign.
func (ctl *Control) ResumeCampaign(ctx context.Context, id string) (CampaignInfo, error) {
	return ctl.setStatus(ctx, id, StatusRunning, StatusPaused, StatusRunning)
}

// CancelCampaign cancels a campaign for good: sends stop at once, every
// recipient not yet sent (queued, held or in flight) is counted as
// cancelled, and batches that arrive later are dropped the same way.
func (ctl *Control) CancelCampaign(ctx context.Context, id string) (CampaignInfo, error) {
	return ctl.setStatus(ctx, id, StatusCancelled, StatusRunning, StatusPaused, StatusFinished, StatusCancelled)
}

func (ctl *Control) setStatus(ctx context.Context, id string, to Status, from ...Status) (CampaignInfo, error) {
	return ctl.change(ctx, func() (CampaignRecord, error) {
		_, after, err := ctl.store.SetCampaignStatus(ctx, id, to, from...)
		return after, err
	})
}

// change stores a change, applies it here and returns the campaign.
func (ctl *Control) change(ctx context.Context, store func() (CampaignRecord, error)) (CampaignInfo, error) {
	select {
	case <-ctl.started:
	case <-ctx.Done():
		return CampaignInfo{}, ctx.Err()
	}
	rec, err := store()
	if err != nil {
		return CampaignInfo{}, err
	}
	ctl.campaigns.apply(rec)
	return ctl.campaigns.info(ctx, rec.ID)
}

// Limits returns the global and provider buckets.
func (ctl *Control) Limits() []LimitInfo { return ctl.lim.infos() }

// SetLimit sets the operator's rate and burst of a level (global, apns,
// fcm) for the whole cluster, or with nil goes back to the configured
// values. It applies at once here and within SyncInterval on the other
// instances, and it survives restarts (with a store).
func (ctl *Control) SetLimit(ctx context.Context, level string, ls *LimitSetting) ([]LimitInfo, error) {
	return ctl.lim.set(ctx, level, ls)
}

// SetConfiguredLimits replaces the configured global and provider limits
// (a configuration reload). Operators' settings still win over them.
func (ctl *Control) SetConfiguredLimits(lim Limits) { ctl.lim.setConfigured(lim) }
