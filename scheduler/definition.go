package scheduler

import (
	"encoding/json"
	"time"
)

// DefState is the state of a console campaign's definition.
type DefState string

// Definition states. Once running, a campaign's paused, finished and
// cancelled come from the engine; the definition becomes cancelled only
// when an operator cancels it (which also stops the scheduler).
const (
	DefDraft            DefState = "draft"
	DefAwaitingApproval DefState = "awaiting_approval"
	DefScheduled        DefState = "scheduled"
	DefRunning          DefState = "running"
	DefFinished         DefState = "finished"
	DefCancelled        DefState = "cancelled"
	DefMissed           DefState = "missed"
)

// Final reports whether nothing more happens to a definition in state s.
func (s DefState) Final() bool {
	return s == DefFinished || s == DefCancelled || s == DefMissed
}

// Definition is a campaign created in pushd (the console and its API), as
// stored. Its JSON form is what the audit log records.
type Definition struct {
	ID    string   `json:"id"`
	Name  string   `json:"name"`
	State DefState `json:"state"`
	// Notification is the pushd.batch/v1 notification object.
	Notification      json.RawMessage `json:"notification"`
	AudienceID        string          `json:"audience"`
	RatePerSecond     float64         `json:"rate_per_second"`
	SendAt            string          `json:"send_at"`
	TimeZone          string          `json:"time_zone"`
	RecipientTimeZone bool            `json:"recipient_time_zone"`
	// FireAt is when publishing is due; zero until scheduled.
	FireAt       time.Time `json:"fire_at,omitzero"`
	Tests        int64     `json:"tests"`
	CreatedBy    string    `json:"created_by"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
	ScheduledBy  string    `json:"scheduled_by,omitempty"`
	ApprovedBy   string    `json:"approved_by,omitempty"`
	Published    int64     `json:"published"`
	PublishedAll bool      `json:"published_all"`
	Version      int64     `json:"version"`
}
