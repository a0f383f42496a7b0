package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/pushd/pushd/scheduler"
)

// The scheduler's side of campaign_defs (scheduler.Store, but Recipients,
// which is with the audiences).
//
// Claim selects, then updates each row with its state and lease conditions
// repeated in the WHERE clause, all in one write transaction: in SQLite the
// transaction holds the only write lock, and in PostgreSQL the selects take
// FOR UPDATE SKIP LOCKED (appended by that port) so that instances claim
// different rows; the conditional updates keep a row from being claimed
// twice either way.
const (
	schedColumns = `id, notification, audience_id, rate_per_second, send_at, time_zone,
    recipient_time_zone, fire_at, cursor_zone, cursor_pos, published`

	sqlDueDefs = `SELECT id, fire_at FROM campaign_defs
WHERE state = 'scheduled' AND fire_at <= $1
ORDER BY fire_at, id LIMIT $2`

	sqlExpiredDefs = `SELECT id, fire_at FROM campaign_defs
WHERE state = 'running' AND published_all = 0 AND lease_until < $1
ORDER BY fire_at, id LIMIT $2`

	sqlStartDef = `UPDATE campaign_defs
SET state = 'running', lease_owner = $2, lease_until = $3, updated_at = $4, version = version + 1
WHERE id = $1 AND state = 'scheduled'`

	sqlMissDef = `UPDATE campaign_defs
SET state = 'missed', updated_at = $2, version = version + 1
WHERE id = $1 AND state = 'scheduled'`

	sqlTakeOverDef = `UPDATE campaign_defs
SET lease_owner = $2, lease_until = $3
WHERE id = $1 AND state = 'running' AND published_all = 0 AND lease_until < $4`

	sqlEngineCampaign = `INSERT INTO campaigns (id, status, message_rate, created_at, updated_at, rev)
VALUES ($1, 'running', $2, $3, $3, $4)
ON CONFLICT (id) DO NOTHING`

	sqlSchedDef = `SELECT ` + schedColumns + ` FROM campaign_defs WHERE id = $1`

	sqlNextFire = `SELECT MIN(fire_at) FROM campaign_defs WHERE state = 'scheduled'`

	sqlProgress = `UPDATE campaign_defs
SET cursor_zone = $3, cursor_pos = $4, published = $5, lease_until = $6
WHERE id = $1 AND state = 'running' AND lease_owner = $2 AND published_all = 0`

	sqlProgressDone = `UPDATE campaign_defs
SET cursor_zone = $3, cursor_pos = $4, published = $5, published_all = 1,
    lease_owner = '', lease_until = 0, updated_at = $6, version = version + 1
WHERE id = $1 AND state = 'running' AND lease_owner = $2 AND published_all = 0`
)

// schedActor is the audit actor of the scheduler's own changes.
const schedActor = "pushd"

// Claim implements scheduler.Store.Claim.
func (s *Store) Claim(ctx context.Context, owner string, now time.Time, leaseFor, maxLate time.Duration, max int) (due []scheduler.Campaign, missed []string, err error) {
	if owner == "" {
		return nil, nil, errors.New("claim: empty owner")
	}
	if max <= 0 {
		return nil, nil, nil
	}
	nowMs, until := toMillis(now), toMillis(now.Add(leaseFor))
	late := toMillis(now.Add(-maxLate))
	err = s.write(ctx, func(tx *sql.Tx) error {
		due, missed = due[:0], missed[:0]
		var claimed []string
		ids, fires, err := selectDefs(ctx, tx, sqlDueDefs, nowMs, max)
		if err != nil {
			return err
		}
		for i, id := range ids {
			if fires[i] < late {
				ok, err := execOne(ctx, tx, sqlMissDef, id, nowMs)
				if err != nil {
					return err
				}
				if !ok {
					continue
				}
				missed = append(missed, id)
				if err := auditTx(ctx, tx, now, schedActor, "campaign.missed", id, nil,
					map[string]any{"fire_at": fromMillis(fires[i]), "max_late": maxLate.String()}); err != nil {
					return err
				}
				continue
			}
			ok, err := execOne(ctx, tx, sqlStartDef, id, owner, until, nowMs)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			if err := s.startEngine(ctx, tx, id, nowMs); err != nil {
				return err
			}
			if err := auditTx(ctx, tx, now, schedActor, "campaign.start", id, nil,
				map[string]any{"owner": owner, "fire_at": fromMillis(fires[i])}); err != nil {
				return err
			}
			claimed = append(claimed, id)
		}
		if left := max - len(claimed); left > 0 {
			ids, _, err := selectDefs(ctx, tx, sqlExpiredDefs, nowMs, left)
			if err != nil {
				return err
			}
			for _, id := range ids {
				ok, err := execOne(ctx, tx, sqlTakeOverDef, id, owner, until, nowMs)
				if err != nil {
					return err
				}
				if ok {
					claimed = append(claimed, id)
				}
			}
		}
		for _, id := range claimed {
			c, err := schedCampaign(ctx, tx, id)
			if err != nil {
				return err
			}
			due = append(due, c)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("claim campaigns: %w", err)
	}
	return due, missed, nil
}

// startEngine creates the engine's row of a campaign that starts running,
// with a new campaign_rev so that every instance's dispatcher sees it.
// A row already there (a producer used the id meanwhile) is left alone.
func (s *Store) startEngine(ctx context.Context, tx *sql.Tx, id string, nowMs int64) error {
	var rate float64
	if err := tx.QueryRowContext(ctx, `SELECT rate_per_second FROM campaign_defs WHERE id = $1`, id).Scan(&rate); err != nil {
		return fmt.Errorf("campaign %q: %w", id, err)
	}
	rev, err := nextSeq(ctx, tx, seqCampaignRev)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, sqlEngineCampaign, id, rate, nowMs, rev); err != nil {
		return fmt.Errorf("campaign %q: engine row: %w", id, err)
	}
	return nil
}

// NextFire implements scheduler.Store.NextFire.
func (s *Store) NextFire(ctx context.Context) (time.Time, bool, error) {
	var at sql.NullInt64
	if err := s.r.QueryRowContext(ctx, sqlNextFire).Scan(&at); err != nil {
		return time.Time{}, false, fmt.Errorf("next fire: %w", err)
	}
	if !at.Valid {
		return time.Time{}, false, nil
	}
	return fromMillis(at.Int64), true, nil
}

// Progress implements scheduler.Store.Progress.
func (s *Store) Progress(ctx context.Context, id, owner string, c scheduler.Cursor, published int64, until time.Time, done bool) error {
	var ok bool
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if done {
			ok, err = execOne(ctx, tx, sqlProgressDone, id, owner, c.Zone, c.Pos, published, toMillis(s.now()))
		} else {
			ok, err = execOne(ctx, tx, sqlProgress, id, owner, c.Zone, c.Pos, published, toMillis(until))
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("campaign %q progress: %w", id, err)
	}
	if !ok {
		return fmt.Errorf("campaign %q progress by %s: %w", id, owner, scheduler.ErrLeaseLost)
	}
	return nil
}

// selectDefs returns the ids and fire_at of the rows query selects.
func selectDefs(ctx context.Context, tx *sql.Tx, query string, now int64, limit int) (ids []string, fires []int64, err error) {
	rows, err := tx.QueryContext(ctx, query, now, limit)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id   string
			fire sql.NullInt64
		)
		if err := rows.Scan(&id, &fire); err != nil {
			return nil, nil, err
		}
		ids, fires = append(ids, id), append(fires, fire.Int64)
	}
	return ids, fires, rows.Err()
}

// execOne runs an update and reports whether it changed a row.
func execOne(ctx context.Context, tx *sql.Tx, query string, args ...any) (bool, error) {
	res, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func schedCampaign(ctx context.Context, q querier, id string) (scheduler.Campaign, error) {
	var (
		c            scheduler.Campaign
		notification string
		rtz          int64
		fire         sql.NullInt64
	)
	err := q.QueryRowContext(ctx, sqlSchedDef, id).Scan(&c.ID, &notification, &c.AudienceID,
		&c.RatePerSecond, &c.SendAt, &c.TimeZone, &rtz, &fire,
		&c.Cursor.Zone, &c.Cursor.Pos, &c.Published)
	if err != nil {
		return c, fmt.Errorf("campaign %q: %w", id, err)
	}
	c.Notification = json.RawMessage(notification)
	c.RecipientTimeZone = rtz != 0
	if fire.Valid {
		c.FireAt = fromMillis(fire.Int64)
	}
	return c, nil
}
