package scheduler

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Send time rules, shared by the admin API (which checks and schedules)
// and the scheduler (which fires and sets not_before).
//
// send_at is one of:
//   - "" : as soon as scheduled;
//   - a wall time "2006-01-02T15:04" or "2006-01-02T15:04:05", read in an
//     IANA zone (the campaign's time_zone, or a recipient's own zone);
//   - an RFC 3339 time with an offset: that instant for the campaign's
//     zone; with recipient time zones its wall clock as written is read
//     in each recipient's zone.
//
// A wall time is turned into an instant by time.Date. Where a DST change
// skips the wall time (America/New_York 2026-03-08 02:30 does not exist),
// time.Date applies the offset in force after the change (EDT, -4): the
// result is 06:30Z, which New York clocks showed as 01:30 EST. Where a
// wall time happens twice (2026-11-01 01:30), it is the first one, 01:30
// EDT (05:30Z). The tests pin both.

// Wall time layouts accepted for send_at.
const (
	WallLayout        = "2006-01-02T15:04"
	WallLayoutSeconds = "2006-01-02T15:04:05"
)

// ErrSendAt means a send_at is not in one of the accepted forms.
var ErrSendAt = errors.New(`want "2006-01-02T15:04", "2006-01-02T15:04:05" (a wall time in the time zone) or RFC 3339 with an offset`)

// SendAt is a parsed send_at.
type SendAt struct {
	// Now is true for "": as soon as scheduled.
	Now bool
	// Wall is the wall clock (its fields only; its location is UTC).
	Wall time.Time
	// Instant is set for an RFC 3339 send_at: the instant it names.
	Instant time.Time
}

// ParseSendAt parses a send_at; the error wraps ErrSendAt.
func ParseSendAt(s string) (SendAt, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return SendAt{Now: true}, nil
	}
	for _, layout := range []string{WallLayout, WallLayoutSeconds} {
		if t, err := time.Parse(layout, s); err == nil {
			return SendAt{Wall: t}, nil
		}
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return SendAt{}, fmt.Errorf("%w; got %q", ErrSendAt, s)
	}
	wall := time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
	return SendAt{Wall: wall, Instant: t}, nil
}

// WallInstant returns the instant at which clocks in loc show the wall
// time of wall (its year to nanosecond fields; its location is ignored),
// by time.Date: see the package rules above for skipped and repeated wall
// times.
func WallInstant(wall time.Time, loc *time.Location) time.Time {
	return time.Date(wall.Year(), wall.Month(), wall.Day(),
		wall.Hour(), wall.Minute(), wall.Second(), wall.Nanosecond(), loc)
}

// In returns when a at reaches a recipient in zone: now for "as soon as
// scheduled", the instant for an RFC 3339 send_at read in the campaign's
// zone (own false), else the wall time in loc.
func (a SendAt) In(loc *time.Location, own bool, now time.Time) time.Time {
	switch {
	case a.Now:
		return now
	case !a.Instant.IsZero() && !own:
		return a.Instant
	}
	return WallInstant(a.Wall, loc)
}

// LoadZone loads an IANA zone name; "" is an error, unlike
// time.LoadLocation, which reads it as UTC.
func LoadZone(name string) (*time.Location, error) {
	if name == "" {
		return nil, errors.New("empty time zone: want an IANA name such as Asia/Seoul")
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q: want an IANA name such as Asia/Seoul", name)
	}
	return loc, nil
}

// FireAt returns when a campaign's publishing is due: its send_at in its
// zone, or with recipientTimeZone the earliest of that and of send_at's
// wall time in each of the audience's zones.
func FireAt(sendAt, zone string, recipientTimeZone bool, audienceZones []string, now time.Time) (time.Time, error) {
	a, err := ParseSendAt(sendAt)
	if err != nil {
		return time.Time{}, err
	}
	loc, err := LoadZone(zone)
	if err != nil {
		return time.Time{}, err
	}
	at := a.In(loc, false, now)
	if !recipientTimeZone || a.Now {
		return at, nil
	}
	for _, z := range audienceZones {
		if z == "" {
			continue
		}
		zl, err := LoadZone(z)
		if err != nil {
			return time.Time{}, fmt.Errorf("audience zone: %w", err)
		}
		if t := a.In(zl, true, now); t.Before(at) {
			at = t
		}
	}
	return at, nil
}

// NotBefore returns when the batches of the recipients in recipientZone
// ("" for the campaign's zone) may be sent, for a recipient_time_zone
// campaign: send_at's wall time in that zone. It is false when send_at is
// "" (at once).
func NotBefore(sendAt, zone, recipientZone string) (time.Time, bool, error) {
	a, err := ParseSendAt(sendAt)
	if err != nil || a.Now {
		return time.Time{}, false, err
	}
	own := recipientZone != ""
	if !own {
		recipientZone = zone
	}
	loc, err := LoadZone(recipientZone)
	if err != nil {
		return time.Time{}, false, err
	}
	return a.In(loc, own, time.Time{}), true, nil
}
