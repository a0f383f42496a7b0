package dispatcher

import (
	"context"
	"errors"
	"time"
)

// Status is where a campaign is in its life.
type Status string

// Campaign statuses. A campaign is running from its first batch; an operator
// may pause, resume or cancel it; it is finished when nothing of it is
// queued, held or in flight for a while, and running again if more batches
// come. Cancelled is final.
const (
	StatusRunning   Status = "running"
	StatusPaused    Status = "paused"
	StatusCancelled Status = "cancelled"
	StatusFinished  Status = "finished"
)

// Statuses lists every status, for metrics.
var Statuses = [...]Status{StatusRunning, StatusPaused, StatusCancelled, StatusFinished}

// Valid reports whether s is a known status.
func (s Status) Valid() bool {
	for _, v := range Statuses {
		if s == v {
			return true
		}
	}
	return false
}

// Counters count a campaign's recipients by what happened to them.
type Counters struct {
	// Received: recipients in the campaign's batches, counted once.
	Received int64 `json:"received"`
	// Sent: accepted by the provider.
	Sent int64 `json:"sent"`
	// Failed: not sent and not to be retried (invalid token, permanent
	// error, attempts exhausted).
	Failed int64 `json:"failed"`
	// Filtered: ruled out by the blacklist or whitelist.
	Filtered int64 `json:"filtered"`
	// Dropped: malformed token, unknown platform, batch expired.
	Dropped int64 `json:"dropped"`
	// Cancelled: not sent because the campaign was cancelled.
	Cancelled int64 `json:"cancelled"`
}

// Add returns c + o.
func (c Counters) Add(o Counters) Counters {
	return Counters{
		Received:  c.Received + o.Received,
		Sent:      c.Sent + o.Sent,
		Failed:    c.Failed + o.Failed,
		Filtered:  c.Filtered + o.Filtered,
		Dropped:   c.Dropped + o.Dropped,
		Cancelled: c.Cancelled + o.Cancelled,
	}
}

// IsZero reports whether every counter is 0.
func (c Counters) IsZero() bool { return c == Counters{} }

// CampaignRecord is a campaign as the store keeps it: its control state
// and its counters summed over every pushd instance.
type CampaignRecord struct {
	ID     string
	Status Status
	// MessageRate is the latest rate_per_second seen in the campaign's
	// messages (0: no campaign limit).
	MessageRate float64
	// RateOverride is the rate an operator set; it wins over MessageRate.
	// Nil when none.
	RateOverride *float64
	Counters     Counters
	CreatedAt    time.Time
	UpdatedAt    time.Time
	// Rev increases with every change of Status, MessageRate or
	// RateOverride, across all campaigns (not with counters): instances
	// poll for Rev > the last they saw.
	Rev int64
}

// Rate is the campaign's effective rate: the operator's if set, else the
// messages'. 0 means no campaign limit.
func (r CampaignRecord) Rate() float64 {
	if r.RateOverride != nil {
		return *r.RateOverride
	}
	return r.MessageRate
}

// Store errors.
var (
	// ErrNotFound: no such campaign (or list entry).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the change is not allowed from the current state (for
	// example resuming a cancelled campaign).
	ErrConflict = errors.New("conflict")
	// ErrInvalid: a bad value was given (a negative rate, for example).
	ErrInvalid = errors.New("invalid")
)

// CampaignStore persists campaigns so that their control state survives
// restarts and is shared by every instance using the same store.
// Implementations are safe for concurrent use.
type CampaignStore interface {
	// EnsureCampaign creates the campaign (running) if it does not exist
	// and records the rate seen in its messages when it changed. A
	// finished campaign that gets batches again becomes running. It
	// returns the record as stored.
	EnsureCampaign(ctx context.Context, id string, messageRate float64) (CampaignRecord, error)
	// SetCampaignStatus changes the status if the current one is among
	// from (any when from is empty); else it returns ErrConflict. It
	// returns ErrNotFound for an unknown campaign, and the record before
	// and after the change.
	SetCampaignStatus(ctx context.Context, id string, to Status, from ...Status) (before, after CampaignRecord, err error)
	// SetCampaignRate sets (or with nil clears) the operator's rate. It
	// returns ErrNotFound for an unknown campaign, and the record before
	// and after.
	SetCampaignRate(ctx context.Context, id string, rate *float64) (before, after CampaignRecord, err error)
	// AddCampaignCounters adds deltas to the campaigns' counters.
	AddCampaignCounters(ctx context.Context, deltas map[string]Counters) error
	// Campaign returns one campaign, or ErrNotFound.
	Campaign(ctx context.Context, id string) (CampaignRecord, error)
	// Campaigns returns every campaign, newest first.
	Campaigns(ctx context.Context) ([]CampaignRecord, error)
	// CampaignChanges returns the campaigns whose Rev is above sinceRev,
	// in Rev order.
	CampaignChanges(ctx context.Context, sinceRev int64) ([]CampaignRecord, error)
}

// CampaignInfo is a campaign as the control API shows it.
type CampaignInfo struct {
	ID     string `json:"id"`
	Status Status `json:"status"`
	// RatePerSecond is the effective rate for the whole cluster, 0 for no
	// campaign limit.
	RatePerSecond float64 `json:"rate_per_second"`
	// RateSource says where the rate comes from: "operator", "message" or
	// "none".
	RateSource string   `json:"rate_source"`
	Counters   Counters `json:"counters"`
	// InFlight: recipients being sent right now by this instance.
	InFlight int64 `json:"in_flight"`
	// Retrying: recipients held for a later attempt, as far as this
	// instance knows.
	Retrying  int64     `json:"retrying"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}
