package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/pushd/pushd/dispatcher"
)

// ErrLeaseLost is returned by Store.Progress when the caller no longer
// holds the campaign's lease, or the campaign is no longer running (it was
// cancelled): the caller must stop publishing it at once.
var ErrLeaseLost = errors.New("scheduler: lease lost")

// Campaign is a console campaign whose publishing a scheduler instance has
// claimed.
type Campaign struct {
	ID string
	// Notification is the pushd.batch/v1 notification object, as JSON.
	Notification  json.RawMessage
	AudienceID    string
	RatePerSecond float64
	// SendAt is the wall time the operator gave ("2006-01-02T15:04"), an
	// RFC 3339 time with an offset, or "" (as soon as scheduled).
	SendAt string
	// TimeZone is the IANA zone SendAt is read in.
	TimeZone          string
	RecipientTimeZone bool
	// FireAt is when publishing was due.
	FireAt time.Time
	// Cursor is the last recipient whose batch the broker confirmed: the
	// zero Cursor when nothing is published yet.
	Cursor Cursor
	// Published counts the recipients published so far.
	Published int64
}

// Cursor is a position in an audience: recipients are streamed in pos
// order, or in (Zone, Pos) order for a recipient_time_zone campaign.
type Cursor struct {
	Zone string
	Pos  int64
}

// Recipient is one member of an audience.
type Recipient struct {
	Pos      int64
	Platform string // "ios" or "android"
	Token    string
	UserID   string
	// TimeZone is an IANA name, or "" for the campaign's zone.
	TimeZone string
}

// Store is what the scheduler needs from the store. Every method is safe
// for concurrent use, and correct with several pushd instances sharing the
// store.
type Store interface {
	// Claim takes a lease until now+leaseFor on up to max campaigns for
	// owner, in one transaction:
	//   - scheduled campaigns with fire_at <= now move to running (their
	//     engine row in campaigns is created, running, with their rate),
	//     unless fire_at < now-maxLate: those become missed instead and
	//     are returned in missed;
	//   - running campaigns not yet published_all whose lease expired
	//     (their instance died) are taken over where their cursor stands.
	Claim(ctx context.Context, owner string, now time.Time, leaseFor, maxLate time.Duration, max int) (due []Campaign, missed []string, err error)
	// NextFire returns the earliest fire_at of the scheduled campaigns,
	// and false when there are none.
	NextFire(ctx context.Context) (time.Time, bool, error)
	// Progress stores the cursor and the published count, renews the
	// lease until until, and with done marks the campaign published_all
	// and drops the lease. ErrLeaseLost when owner no longer holds the
	// lease or the campaign is not running.
	Progress(ctx context.Context, id, owner string, c Cursor, published int64, until time.Time, done bool) error
	// Recipients streams the audience's recipients after the cursor, in
	// pos order, or in (TimeZone, Pos) order when byZone, calling fn with
	// chunks of at most n that never mix zones when byZone. A chunk's
	// slice is reused after fn returns.
	Recipients(ctx context.Context, audienceID string, byZone bool, after Cursor, n int, fn func([]Recipient) error) error
}

// Publisher publishes a pushd.batch/v1 message to a lane (campaigns to the
// normal lane, test sends to the high one), persistent, with message_id
// batchID, and returns once the broker has confirmed it.
type Publisher interface {
	PublishBatch(ctx context.Context, lane dispatcher.Lane, batchID string, body []byte) error
}
