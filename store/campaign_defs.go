package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/internal/safetext"
	"github.com/pushd/pushd/scheduler"
)

// Console campaigns: their definitions (campaign_defs), each change
// written with its audit record in one transaction, so that no change
// stands without its audit.
//
// Errors: an unknown campaign wraps dispatcher.ErrNotFound, a change the
// state does not allow (or a taken id) dispatcher.ErrConflict, a bad field
// dispatcher.ErrInvalid with a message that starts with the field's name,
// and an approval by the user who scheduled has a Forbidden method that
// returns true.

const (
	defColumns = `id, name, state, notification, audience_id, rate_per_second,
    send_at, time_zone, recipient_time_zone, fire_at, tests,
    created_by, created_at, updated_at, scheduled_by, approved_by,
    published, published_all, version`

	sqlDef       = `SELECT ` + defColumns + ` FROM campaign_defs WHERE id = $1`
	sqlDefs      = `SELECT ` + defColumns + ` FROM campaign_defs ORDER BY created_at DESC, id`
	sqlDefExists = `SELECT (SELECT COUNT(*) FROM campaign_defs WHERE id = $1) + (SELECT COUNT(*) FROM campaigns WHERE id = $1)`

	sqlInsertDef = `INSERT INTO campaign_defs (id, name, state, notification, audience_id,
    rate_per_second, send_at, time_zone, recipient_time_zone, created_by, created_at, updated_at, version)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, 1)`

	// sqlUpdateDef writes what a change may change; the version it read
	// must still be there.
	sqlUpdateDef = `UPDATE campaign_defs
SET name = $3, state = $4, notification = $5, audience_id = $6, rate_per_second = $7,
    send_at = $8, time_zone = $9, recipient_time_zone = $10, fire_at = $11, tests = $12,
    scheduled_by = $13, approved_by = $14, updated_at = $15, version = version + 1,
    lease_owner = CASE WHEN $4 = 'cancelled' THEN '' ELSE lease_owner END,
    lease_until = CASE WHEN $4 = 'cancelled' THEN 0 ELSE lease_until END
WHERE id = $1 AND version = $2`

	sqlAudienceZones = `SELECT zones FROM audiences WHERE id = $1 AND state = 'ready'`
)

// invalidError is a bad field; it wraps dispatcher.ErrInvalid.
type invalidError struct{ field, msg string }

func (e *invalidError) Error() string { return e.field + ": " + e.msg }
func (e *invalidError) Unwrap() error { return dispatcher.ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &invalidError{field, fmt.Sprintf(format, args...)}
}

// forbiddenError is a change the actor may not make.
type forbiddenError struct{ msg string }

func (e *forbiddenError) Error() string { return e.msg }

// Forbidden marks the error for callers that answer 403.
func (e *forbiddenError) Forbidden() bool { return true }

// CreateCampaignDef stores d as a new draft created by actor, and audits
// campaign.create. An empty d.ID is generated; an id already used by a
// definition or by a campaign from AMQP is a conflict. The audience must
// exist and be ready.
func (s *Store) CreateCampaignDef(ctx context.Context, d scheduler.Definition, actor string) (scheduler.Definition, error) {
	if d.ID == "" {
		d.ID = newDefID()
	}
	if d.Name == "" {
		d.Name = d.ID
	}
	if err := checkDefFields(d); err != nil {
		return scheduler.Definition{}, fmt.Errorf("create campaign %q: %w", d.ID, err)
	}
	var out scheduler.Definition
	err := s.write(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, sqlDefExists, d.ID).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("id %q is taken: %w", d.ID, dispatcher.ErrConflict)
		}
		if _, err := audienceZones(ctx, tx, d.AudienceID); err != nil {
			return err
		}
		now := s.now()
		_, err := tx.ExecContext(ctx, sqlInsertDef, d.ID, d.Name, string(scheduler.DefDraft),
			string(d.Notification), d.AudienceID, d.RatePerSecond, d.SendAt, d.TimeZone,
			boolInt(d.RecipientTimeZone), actor, toMillis(now))
		if err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		if out, err = getDef(ctx, tx, d.ID); err != nil {
			return err
		}
		return auditTx(ctx, tx, now, actor, "campaign.create", d.ID, nil, out)
	})
	if err != nil {
		return scheduler.Definition{}, fmt.Errorf("create campaign %q: %w", d.ID, err)
	}
	return out, nil
}

// CampaignDef returns the definition of a console campaign.
func (s *Store) CampaignDef(ctx context.Context, id string) (scheduler.Definition, error) {
	d, err := getDef(ctx, s.r, id)
	if err != nil {
		return d, fmt.Errorf("get %w", err)
	}
	return d, nil
}

// CampaignDefs returns every definition, newest first.
func (s *Store) CampaignDefs(ctx context.Context) ([]scheduler.Definition, error) {
	rows, err := s.r.QueryContext(ctx, sqlDefs)
	if err != nil {
		return nil, fmt.Errorf("list campaign definitions: %w", err)
	}
	defer rows.Close()
	defs := []scheduler.Definition{}
	for rows.Next() {
		d, err := scanDef(rows)
		if err != nil {
			return nil, fmt.Errorf("list campaign definitions: %w", err)
		}
		defs = append(defs, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list campaign definitions: %w", err)
	}
	return defs, nil
}

// EditCampaignDef applies edit to the definition, while draft or
// scheduled (or missed, to give it a new send_at before scheduling it
// again), and audits campaign.edit with before and after. edit may
// change the name, notification, audience, rate, send_at, time zone and
// recipient_time_zone; the rest is kept. A scheduled campaign gets its
// fire_at again (a time now in the past is refused); one that was
// approved goes back to awaiting_approval, since what was approved has
// changed.
func (s *Store) EditCampaignDef(ctx context.Context, id, actor string, edit func(*scheduler.Definition) error) (before, after scheduler.Definition, err error) {
	before, after, err = s.changeDef(ctx, id, actor, "campaign.edit", func(tx *sql.Tx, cur scheduler.Definition, now time.Time) (scheduler.Definition, error) {
		switch cur.State {
		case scheduler.DefDraft, scheduler.DefScheduled, scheduler.DefMissed:
		default:
			return cur, fmt.Errorf("campaign is %s; only a draft, scheduled or missed campaign can be edited: %w", cur.State, dispatcher.ErrConflict)
		}
		next := cur
		if err := edit(&next); err != nil {
			return cur, err
		}
		// What an edit may not change.
		next.ID, next.State, next.FireAt, next.Tests = cur.ID, cur.State, cur.FireAt, cur.Tests
		next.ScheduledBy, next.ApprovedBy = cur.ScheduledBy, cur.ApprovedBy
		if err := checkDefFields(next); err != nil {
			return cur, err
		}
		zones, err := audienceZones(ctx, tx, next.AudienceID)
		if err != nil {
			return cur, err
		}
		if next.State == scheduler.DefScheduled {
			if next.FireAt, err = fireAt(next, zones, now); err != nil {
				return cur, err
			}
			if next.ApprovedBy != "" {
				next.State, next.ApprovedBy = scheduler.DefAwaitingApproval, ""
			}
		}
		return next, nil
	})
	return before, after, wrapDef(err, "edit", id)
}

// ScheduleCampaignDef moves a draft (or a missed campaign, to send it
// again) to scheduled, or to awaiting_approval with requireApproval, with
// its fire_at computed now; audited as campaign.schedule. A send_at in
// the past is refused (field send_at).
func (s *Store) ScheduleCampaignDef(ctx context.Context, id, actor string, requireApproval bool) (scheduler.Definition, error) {
	_, after, err := s.changeDef(ctx, id, actor, "campaign.schedule", func(tx *sql.Tx, cur scheduler.Definition, now time.Time) (scheduler.Definition, error) {
		if cur.State != scheduler.DefDraft && cur.State != scheduler.DefMissed {
			return cur, fmt.Errorf("campaign is %s; only a draft or missed campaign can be scheduled: %w", cur.State, dispatcher.ErrConflict)
		}
		zones, err := audienceZones(ctx, tx, cur.AudienceID)
		if err != nil {
			return cur, err
		}
		next := cur
		if next.FireAt, err = fireAt(next, zones, now); err != nil {
			return cur, err
		}
		next.State, next.ScheduledBy, next.ApprovedBy = scheduler.DefScheduled, actor, ""
		if requireApproval {
			next.State = scheduler.DefAwaitingApproval
		}
		return next, nil
	})
	return after, wrapDef(err, "schedule", id)
}

// ApproveCampaignDef moves a campaign awaiting approval to scheduled;
// audited as campaign.approve. The user who scheduled it may not approve
// it (an error with Forbidden() true).
func (s *Store) ApproveCampaignDef(ctx context.Context, id, actor string) (scheduler.Definition, error) {
	_, after, err := s.changeDef(ctx, id, actor, "campaign.approve", func(_ *sql.Tx, cur scheduler.Definition, _ time.Time) (scheduler.Definition, error) {
		if cur.State != scheduler.DefAwaitingApproval {
			return cur, fmt.Errorf("campaign is %s, not awaiting_approval: %w", cur.State, dispatcher.ErrConflict)
		}
		if cur.ScheduledBy == actor {
			return cur, &forbiddenError{"a campaign must be approved by someone other than who scheduled it (" + actor + ")"}
		}
		next := cur
		next.State, next.ApprovedBy = scheduler.DefScheduled, actor
		return next, nil
	})
	return after, wrapDef(err, "approve", id)
}

// CancelCampaignDef cancels a campaign in any state that is not final,
// and audits campaign.cancel. A running campaign's scheduler loses its
// lease (Progress returns scheduler.ErrLeaseLost); stopping its sends is
// the engine's part, which the caller does when before.State is running.
func (s *Store) CancelCampaignDef(ctx context.Context, id, actor string) (before, after scheduler.Definition, err error) {
	before, after, err = s.changeDef(ctx, id, actor, "campaign.cancel", func(_ *sql.Tx, cur scheduler.Definition, _ time.Time) (scheduler.Definition, error) {
		if cur.State.Final() {
			return cur, fmt.Errorf("campaign is already %s: %w", cur.State, dispatcher.ErrConflict)
		}
		next := cur
		next.State = scheduler.DefCancelled
		return next, nil
	})
	return before, after, wrapDef(err, "cancel", id)
}

// NextCampaignTest takes the id of the draft's next test send,
// "<id>.test-N", and audits campaign.test.
func (s *Store) NextCampaignTest(ctx context.Context, id, actor string) (testID string, d scheduler.Definition, err error) {
	_, d, err = s.changeDef(ctx, id, actor, "campaign.test", func(_ *sql.Tx, cur scheduler.Definition, _ time.Time) (scheduler.Definition, error) {
		if cur.State != scheduler.DefDraft {
			return cur, fmt.Errorf("campaign is %s; test sends are for drafts: %w", cur.State, dispatcher.ErrConflict)
		}
		next := cur
		next.Tests++
		return next, nil
	})
	if err != nil {
		return "", d, wrapDef(err, "test", id)
	}
	return TestCampaignID(id, d.Tests), d, nil
}

// TestCampaignID is the id of the n-th test send of campaign id.
func TestCampaignID(id string, n int64) string {
	return fmt.Sprintf("%s.test-%d", id, n)
}

// defChange computes the next definition from the current one inside the
// change's transaction.
type defChange func(tx *sql.Tx, cur scheduler.Definition, now time.Time) (scheduler.Definition, error)

// changeDef reads the definition, computes the next one with fn, writes
// it and audits action with before and after, in one transaction.
func (s *Store) changeDef(ctx context.Context, id, actor, action string, fn defChange) (before, after scheduler.Definition, err error) {
	err = s.write(ctx, func(tx *sql.Tx) error {
		cur, err := getDef(ctx, tx, id)
		if err != nil {
			return err
		}
		now := s.now()
		next, err := fn(tx, cur, now)
		if err != nil {
			return err
		}
		var fire sql.NullInt64
		if !next.FireAt.IsZero() {
			fire = sql.NullInt64{Int64: toMillis(next.FireAt), Valid: true}
		}
		res, err := tx.ExecContext(ctx, sqlUpdateDef, id, cur.Version,
			next.Name, string(next.State), string(next.Notification), next.AudienceID, next.RatePerSecond,
			next.SendAt, next.TimeZone, boolInt(next.RecipientTimeZone), fire, next.Tests,
			next.ScheduledBy, next.ApprovedBy, toMillis(now))
		if err != nil {
			return fmt.Errorf("update: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("update: %w", err)
		}
		if n != 1 {
			return fmt.Errorf("campaign changed meanwhile; try again: %w", dispatcher.ErrConflict)
		}
		if after, err = getDef(ctx, tx, id); err != nil {
			return err
		}
		before = cur
		return auditTx(ctx, tx, now, actor, action, id, cur, after)
	})
	return before, after, err
}

func wrapDef(err error, op, id string) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s campaign %q: %w", op, id, err)
}

// fireAt computes d's fire_at at now; one in the past is a bad send_at.
func fireAt(d scheduler.Definition, zones []string, now time.Time) (time.Time, error) {
	at, err := scheduler.FireAt(d.SendAt, d.TimeZone, d.RecipientTimeZone, zones, now)
	if err != nil {
		return time.Time{}, invalid("send_at", "%v", err)
	}
	// send_at is given to the minute or second: the current second is
	// not the past.
	if at.Before(now.Truncate(time.Second)) {
		return time.Time{}, invalid("send_at", "%s is in the past (now %s)", at.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return at, nil
}

// checkDefFields checks what the store itself relies on; the admin API
// checks the rest (the notification, its size) with better messages.
func checkDefFields(d scheduler.Definition) error {
	switch {
	case d.ID == "":
		return invalid("id", "empty")
	case len(d.ID) > dispatcher.MaxIDLength:
		return invalid("id", "longer than %d bytes", dispatcher.MaxIDLength)
	case safetext.Check(d.ID) != nil:
		return invalid("id", "%v", safetext.Check(d.ID))
	case !json.Valid(d.Notification):
		return invalid("notification", "not valid JSON")
	case d.AudienceID == "":
		return invalid("audience", "required")
	}
	if err := checkRate(d.RatePerSecond); err != nil {
		return invalid("rate_per_second", "%v", err)
	}
	if _, err := scheduler.ParseSendAt(d.SendAt); err != nil {
		return invalid("send_at", "%v", err)
	}
	if _, err := scheduler.LoadZone(d.TimeZone); err != nil {
		return invalid("time_zone", "%v", err)
	}
	return nil
}

// audienceZones returns the zones of a ready audience; one that is not
// found (or not ready) is a bad audience field.
func audienceZones(ctx context.Context, q querier, id string) ([]string, error) {
	var zones string
	err := q.QueryRowContext(ctx, sqlAudienceZones, id).Scan(&zones)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, invalid("audience", "audience %q not found", id)
	}
	if err != nil {
		return nil, fmt.Errorf("audience %q: %w", id, err)
	}
	if zones == "" {
		return nil, nil
	}
	return strings.Split(zones, ","), nil
}

// auditTx writes an audit record inside tx.
func auditTx(ctx context.Context, tx *sql.Tx, at time.Time, actor, action, target string, before, after any) error {
	e := AuditEntry{At: at, Actor: actor, Action: action, Target: target}
	var err error
	if before != nil {
		if e.Before, err = json.Marshal(before); err != nil {
			return fmt.Errorf("audit %s: %w", action, err)
		}
	}
	if after != nil {
		if e.After, err = json.Marshal(after); err != nil {
			return fmt.Errorf("audit %s: %w", action, err)
		}
	}
	if err := insertAudit(ctx, tx, e); err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	return nil
}

func getDef(ctx context.Context, q querier, id string) (scheduler.Definition, error) {
	d, err := scanDef(q.QueryRowContext(ctx, sqlDef, id))
	if errors.Is(err, sql.ErrNoRows) {
		return d, fmt.Errorf("campaign %q: %w", id, dispatcher.ErrNotFound)
	}
	if err != nil {
		return d, fmt.Errorf("campaign %q: %w", id, err)
	}
	return d, nil
}

func scanDef(row interface{ Scan(dest ...any) error }) (scheduler.Definition, error) {
	var (
		d                    scheduler.Definition
		state, notification  string
		rtz, all             int64
		fire                 sql.NullInt64
		createdAt, updatedAt int64
	)
	err := row.Scan(&d.ID, &d.Name, &state, &notification, &d.AudienceID, &d.RatePerSecond,
		&d.SendAt, &d.TimeZone, &rtz, &fire, &d.Tests,
		&d.CreatedBy, &createdAt, &updatedAt, &d.ScheduledBy, &d.ApprovedBy,
		&d.Published, &all, &d.Version)
	if err != nil {
		return scheduler.Definition{}, err
	}
	d.State = scheduler.DefState(state)
	d.Notification = json.RawMessage(notification)
	d.RecipientTimeZone, d.PublishedAll = rtz != 0, all != 0
	if fire.Valid {
		d.FireAt = fromMillis(fire.Int64)
	}
	d.CreatedAt, d.UpdatedAt = fromMillis(createdAt), fromMillis(updatedAt)
	return d, nil
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// newDefID returns a generated campaign id, "c-" and 12 hex digits.
func newDefID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "c-" + hex.EncodeToString(b[:])
}
