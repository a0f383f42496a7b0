package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/pushd/pushd/dispatcher"
)

var _ dispatcher.CampaignStore = (*Store)(nil)

// SQL of campaigns. Control changes (status, message_rate, rate_override)
// take a new campaign_rev inside their transaction before they read the
// campaign: in PostgreSQL that row lock serialises control writers, so
// each one reads what the previous one committed and revs commit in
// order. Counter updates add in place and take no rev.
const (
	campaignColumns = `id, status, message_rate, rate_override,
    received, sent, failed, filtered, dropped, cancelled,
    created_at, updated_at, rev`

	sqlCampaign        = `SELECT ` + campaignColumns + ` FROM campaigns WHERE id = $1`
	sqlCampaigns       = `SELECT ` + campaignColumns + ` FROM campaigns ORDER BY created_at DESC, id`
	sqlCampaignChanges = `SELECT ` + campaignColumns + ` FROM campaigns WHERE rev > $1 ORDER BY rev`

	sqlInsertCampaign = `INSERT INTO campaigns (id, status, message_rate, created_at, updated_at, rev)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING ` + campaignColumns

	sqlUpdateCampaignControl = `UPDATE campaigns
SET status = $2, message_rate = $3, rate_override = $4, updated_at = $5, rev = $6
WHERE id = $1
RETURNING ` + campaignColumns

	sqlAddCampaignCounters = `UPDATE campaigns
SET received = received + $2, sent = sent + $3, failed = failed + $4,
    filtered = filtered + $5, dropped = dropped + $6, cancelled = cancelled + $7,
    updated_at = $8
WHERE id = $1`
)

// querier is what reads need from *sql.DB and *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// EnsureCampaign creates the campaign, running, if it does not exist, and
// records messageRate when it differs from the stored one (a new rev). A
// finished campaign becomes running again (a new rev); a paused or
// cancelled one keeps its status. It returns the record as stored.
//
// The common case, a known campaign with nothing to change, is a read
// that takes no write lock.
func (s *Store) EnsureCampaign(ctx context.Context, id string, messageRate float64) (dispatcher.CampaignRecord, error) {
	if err := checkID(id); err != nil {
		return dispatcher.CampaignRecord{}, fmt.Errorf("ensure campaign: %w", err)
	}
	if err := checkRate(messageRate); err != nil {
		return dispatcher.CampaignRecord{}, fmt.Errorf("ensure campaign %q: message %w", id, err)
	}
	rec, err := getCampaign(ctx, s.r, id)
	switch {
	case err == nil && !ensureChanges(rec, messageRate):
		return rec, nil
	case err != nil && !errors.Is(err, dispatcher.ErrNotFound):
		return dispatcher.CampaignRecord{}, fmt.Errorf("ensure campaign: %w", err)
	}

	var out dispatcher.CampaignRecord
	err = s.write(ctx, func(tx *sql.Tx) error {
		rev, err := nextSeq(ctx, tx, seqCampaignRev)
		if err != nil {
			return err
		}
		now := toMillis(s.now())
		cur, err := getCampaign(ctx, tx, id)
		if errors.Is(err, dispatcher.ErrNotFound) {
			out, err = scanCampaign(tx.QueryRowContext(ctx, sqlInsertCampaign,
				id, string(dispatcher.StatusRunning), messageRate, now, now, rev))
			if err != nil {
				return fmt.Errorf("insert: %w", err)
			}
			return nil
		}
		if err != nil {
			return err
		}
		if !ensureChanges(cur, messageRate) {
			out = cur
			return errUnchanged
		}
		next := cur
		next.MessageRate = messageRate
		if next.Status == dispatcher.StatusFinished {
			next.Status = dispatcher.StatusRunning
		}
		out, err = updateControl(ctx, tx, next, now, rev)
		return err
	})
	if err != nil {
		return dispatcher.CampaignRecord{}, fmt.Errorf("ensure campaign %q: %w", id, err)
	}
	return out, nil
}

// ensureChanges reports whether EnsureCampaign must change rec.
func ensureChanges(rec dispatcher.CampaignRecord, messageRate float64) bool {
	return rec.MessageRate != messageRate || rec.Status == dispatcher.StatusFinished
}

// SetCampaignStatus sets the campaign's status to to if its current status
// is among from (any when from is empty), else it returns an error
// wrapping dispatcher.ErrConflict. An unknown campaign is
// dispatcher.ErrNotFound. Setting the status a campaign already has (and
// is allowed to leave) changes nothing and takes no rev; before and after
// are then equal. A change made with an audit.Note in ctx writes its audit
// record in the same transaction, or does not happen.
func (s *Store) SetCampaignStatus(ctx context.Context, id string, to dispatcher.Status, from ...dispatcher.Status) (before, after dispatcher.CampaignRecord, err error) {
	if !to.Valid() {
		return before, after, fmt.Errorf("set campaign %q status: unknown status %q", id, to)
	}
	for _, f := range from {
		if !f.Valid() {
			return before, after, fmt.Errorf("set campaign %q status: unknown from status %q", id, f)
		}
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		rev, err := nextSeq(ctx, tx, seqCampaignRev)
		if err != nil {
			return err
		}
		before, err = getCampaign(ctx, tx, id)
		if err != nil {
			return err
		}
		if len(from) > 0 && !slices.Contains(from, before.Status) {
			return fmt.Errorf("campaign is %s, not %s: %w", before.Status, joinStatuses(from), dispatcher.ErrConflict)
		}
		if before.Status == to {
			after = before
			return errUnchanged
		}
		next := before
		next.Status = to
		if after, err = updateControl(ctx, tx, next, toMillis(s.now()), rev); err != nil {
			return err
		}
		return s.auditNote(ctx, tx, id, campaignAuditOf(before), campaignAuditOf(after))
	})
	if err != nil {
		return dispatcher.CampaignRecord{}, dispatcher.CampaignRecord{}, fmt.Errorf("set campaign %q status to %s: %w", id, to, err)
	}
	return before, after, nil
}

// SetCampaignRate sets the operator's rate for the campaign, or with nil
// clears it; 0 means no campaign limit. An unknown campaign is
// dispatcher.ErrNotFound. Setting the rate the campaign already has
// changes nothing and takes no rev. A change made with an audit.Note in
// ctx writes its audit record in the same transaction, or does not happen.
func (s *Store) SetCampaignRate(ctx context.Context, id string, rate *float64) (before, after dispatcher.CampaignRecord, err error) {
	if rate != nil {
		if err := checkRate(*rate); err != nil {
			return before, after, fmt.Errorf("set campaign %q rate: %w", id, err)
		}
		r := *rate // not aliasing the caller's variable
		rate = &r
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		rev, err := nextSeq(ctx, tx, seqCampaignRev)
		if err != nil {
			return err
		}
		before, err = getCampaign(ctx, tx, id)
		if err != nil {
			return err
		}
		if sameRate(before.RateOverride, rate) {
			after = before
			return errUnchanged
		}
		next := before
		next.RateOverride = rate
		if after, err = updateControl(ctx, tx, next, toMillis(s.now()), rev); err != nil {
			return err
		}
		return s.auditNote(ctx, tx, id, campaignAuditOf(before), campaignAuditOf(after))
	})
	if err != nil {
		return dispatcher.CampaignRecord{}, dispatcher.CampaignRecord{}, fmt.Errorf("set campaign %q rate: %w", id, err)
	}
	return before, after, nil
}

// AddCampaignCounters adds the deltas to the campaigns' counters, all in
// one transaction. It takes no rev. Zero deltas are skipped.
//
// A delta for a campaign the store does not know is skipped: the others
// are committed, and the error returned wraps dispatcher.ErrNotFound and
// names the unknown ids. Callers that retry on error should not retry on
// ErrNotFound.
func (s *Store) AddCampaignCounters(ctx context.Context, deltas map[string]dispatcher.Counters) error {
	if len(deltas) == 0 {
		return nil
	}
	var unknown []string
	err := s.writeShared(ctx, func(tx *sql.Tx) (err error) {
		unknown, err = s.addCounters(ctx, tx, deltas)
		return err
	})
	if err != nil {
		return fmt.Errorf("add campaign counters: %w", err)
	}
	if len(unknown) > 0 {
		return fmt.Errorf("add campaign counters: skipped unknown campaigns %q: %w", unknown, dispatcher.ErrNotFound)
	}
	return nil
}

// addCounters adds the deltas to the campaigns' counters inside tx, and
// returns the ids of campaigns it does not know (their deltas are
// skipped). Zero deltas are skipped.
func (s *Store) addCounters(ctx context.Context, tx *sql.Tx, deltas map[string]dispatcher.Counters) (unknown []string, err error) {
	ids := make([]string, 0, len(deltas))
	for id, d := range deltas {
		if !d.IsZero() {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	// A fixed order keeps PostgreSQL row locks from deadlocking between
	// instances that flush the same campaigns.
	slices.Sort(ids)
	// Prepared for several campaigns on SQLite. PostgreSQL's driver keeps
	// its statements prepared per connection: an explicit prepare and
	// close there cost two more round trips each time, with the first
	// campaign's row locked (a high-lane batch's RecordReceived waited on
	// them).
	exec := tx.ExecContext
	if s.dialect == dialectSQLite && len(ids) > 1 {
		stmt, err := tx.PrepareContext(ctx, sqlAddCampaignCounters)
		if err != nil {
			return nil, fmt.Errorf("prepare: %w", err)
		}
		defer stmt.Close()
		exec = func(ctx context.Context, _ string, args ...any) (sql.Result, error) {
			return stmt.ExecContext(ctx, args...)
		}
	}
	now := toMillis(s.now())
	for _, id := range ids {
		d := deltas[id]
		res, err := exec(ctx, sqlAddCampaignCounters, id,
			d.Received, d.Sent, d.Failed, d.Filtered, d.Dropped, d.Cancelled, now)
		if err != nil {
			return nil, fmt.Errorf("campaign %q: %w", id, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return nil, fmt.Errorf("campaign %q: %w", id, err)
		}
		if n == 0 {
			unknown = append(unknown, id)
		}
	}
	return unknown, nil
}

// Campaign returns the campaign, or an error wrapping
// dispatcher.ErrNotFound.
func (s *Store) Campaign(ctx context.Context, id string) (dispatcher.CampaignRecord, error) {
	rec, err := getCampaign(ctx, s.r, id)
	if err != nil {
		return dispatcher.CampaignRecord{}, fmt.Errorf("get %w", err)
	}
	return rec, nil
}

// Campaigns returns every campaign, newest (by creation) first.
func (s *Store) Campaigns(ctx context.Context) ([]dispatcher.CampaignRecord, error) {
	recs, err := queryCampaigns(ctx, s.r, sqlCampaigns)
	if err != nil {
		return nil, fmt.Errorf("list campaigns: %w", err)
	}
	return recs, nil
}

// CampaignChanges returns the campaigns whose Rev is above sinceRev, in
// Rev order. Polling with the highest Rev seen so far misses no change.
func (s *Store) CampaignChanges(ctx context.Context, sinceRev int64) ([]dispatcher.CampaignRecord, error) {
	recs, err := queryCampaigns(ctx, s.r, sqlCampaignChanges, sinceRev)
	if err != nil {
		return nil, fmt.Errorf("campaign changes since rev %d: %w", sinceRev, err)
	}
	return recs, nil
}

// getCampaign reads one campaign; an unknown id is dispatcher.ErrNotFound.
func getCampaign(ctx context.Context, q querier, id string) (dispatcher.CampaignRecord, error) {
	rec, err := scanCampaign(q.QueryRowContext(ctx, sqlCampaign, id))
	if errors.Is(err, sql.ErrNoRows) {
		return rec, fmt.Errorf("campaign %q: %w", id, dispatcher.ErrNotFound)
	}
	if err != nil {
		return rec, fmt.Errorf("campaign %q: %w", id, err)
	}
	return rec, nil
}

func queryCampaigns(ctx context.Context, q querier, query string, args ...any) ([]dispatcher.CampaignRecord, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	recs := []dispatcher.CampaignRecord{}
	for rows.Next() {
		rec, err := scanCampaign(rows)
		if err != nil {
			return nil, err
		}
		recs = append(recs, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return recs, nil
}

// updateControl writes next's control state with a new rev and returns
// the row as stored. It leaves the counters alone, so concurrent counter
// updates are not lost.
func updateControl(ctx context.Context, tx *sql.Tx, next dispatcher.CampaignRecord, now, rev int64) (dispatcher.CampaignRecord, error) {
	var override sql.NullFloat64
	if next.RateOverride != nil {
		override = sql.NullFloat64{Float64: *next.RateOverride, Valid: true}
	}
	rec, err := scanCampaign(tx.QueryRowContext(ctx, sqlUpdateCampaignControl,
		next.ID, string(next.Status), next.MessageRate, override, now, rev))
	if err != nil {
		return rec, fmt.Errorf("update: %w", err)
	}
	return rec, nil
}

// campaignAudit is a campaign as its audit records show it: its control
// state and its counters.
type campaignAudit struct {
	Status       dispatcher.Status   `json:"status"`
	MessageRate  float64             `json:"message_rate"`
	RateOverride *float64            `json:"rate_override"`
	Counters     dispatcher.Counters `json:"counters"`
}

func campaignAuditOf(r dispatcher.CampaignRecord) campaignAudit {
	return campaignAudit{Status: r.Status, MessageRate: r.MessageRate, RateOverride: r.RateOverride, Counters: r.Counters}
}

// scanCampaign reads a row of campaignColumns.
func scanCampaign(row interface{ Scan(dest ...any) error }) (dispatcher.CampaignRecord, error) {
	var (
		rec                  dispatcher.CampaignRecord
		status               string
		override             sql.NullFloat64
		createdAt, updatedAt int64
	)
	c := &rec.Counters
	err := row.Scan(&rec.ID, &status, &rec.MessageRate, &override,
		&c.Received, &c.Sent, &c.Failed, &c.Filtered, &c.Dropped, &c.Cancelled,
		&createdAt, &updatedAt, &rec.Rev)
	if err != nil {
		return dispatcher.CampaignRecord{}, err
	}
	rec.Status = dispatcher.Status(status)
	if !rec.Status.Valid() {
		return dispatcher.CampaignRecord{}, fmt.Errorf("campaign %q: unknown status %q in store", rec.ID, status)
	}
	if override.Valid {
		v := override.Float64
		rec.RateOverride = &v
	}
	rec.CreatedAt = fromMillis(createdAt)
	rec.UpdatedAt = fromMillis(updatedAt)
	return rec, nil
}

func checkID(id string) error {
	if id == "" {
		return errors.New("empty campaign id")
	}
	return nil
}

func checkRate(r float64) error {
	if math.IsNaN(r) || math.IsInf(r, 0) || r < 0 {
		return fmt.Errorf("rate %v: want a finite number >= 0", r)
	}
	return nil
}

func sameRate(a, b *float64) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func joinStatuses(ss []dispatcher.Status) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = string(s)
	}
	return strings.Join(parts, " or ")
}
