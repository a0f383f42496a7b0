package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// DefaultAuditLimit is how many entries AuditLog returns when asked for
// none or fewer.
const DefaultAuditLimit = 100

// AuditEntry is one change recorded in the audit log: who did what to
// which object, when, and the object before and after, as JSON.
type AuditEntry struct {
	// ID is assigned by the store, increasing in the order entries are
	// written.
	ID int64
	// At is when the change happened; Audit uses the store's clock when
	// it is zero. Stored to the millisecond.
	At time.Time
	// Actor is who made the change (an account or token name, or
	// "pushd" for the daemon itself).
	Actor string
	// Action names the change, e.g. "campaign.pause".
	Action string
	// Target names the object changed, e.g. the campaign id.
	Target string
	// Before and After are the object's state as JSON; nil when there
	// was none (a creation, a deletion).
	Before, After json.RawMessage
}

// SQL of the audit log.
const (
	sqlInsertAudit = `INSERT INTO audit (id, at, actor, action, target, before, after)
VALUES ($1, $2, $3, $4, $5, $6, $7)`
	sqlAuditLog = `SELECT id, at, actor, action, target, before, after
FROM audit ORDER BY id DESC LIMIT $1`
)

// Audit appends e to the audit log. e.ID is ignored; e.At defaults to now.
// Action is required; Before and After, when set, must be valid JSON.
func (s *Store) Audit(ctx context.Context, e AuditEntry) error {
	if e.Action == "" {
		return errors.New("audit: empty action")
	}
	before, err := auditJSON(e.Before)
	if err != nil {
		return fmt.Errorf("audit %s: before: %w", e.Action, err)
	}
	after, err := auditJSON(e.After)
	if err != nil {
		return fmt.Errorf("audit %s: after: %w", e.Action, err)
	}
	at := e.At
	if at.IsZero() {
		at = s.now()
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		id, err := nextSeq(ctx, tx, seqAuditID)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, sqlInsertAudit,
			id, toMillis(at), e.Actor, e.Action, e.Target, before, after)
		return err
	})
	if err != nil {
		return fmt.Errorf("audit %s: %w", e.Action, err)
	}
	return nil
}

// AuditLog returns the latest limit entries, newest first
// (DefaultAuditLimit when limit <= 0).
func (s *Store) AuditLog(ctx context.Context, limit int) ([]AuditEntry, error) {
	if limit <= 0 {
		limit = DefaultAuditLimit
	}
	rows, err := s.r.QueryContext(ctx, sqlAuditLog, limit)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	defer rows.Close()
	entries := []AuditEntry{}
	for rows.Next() {
		var (
			e             AuditEntry
			at            int64
			before, after sql.NullString
		)
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.Target, &before, &after); err != nil {
			return nil, fmt.Errorf("audit log: %w", err)
		}
		e.At = fromMillis(at)
		if before.Valid {
			e.Before = json.RawMessage(before.String)
		}
		if after.Valid {
			e.After = json.RawMessage(after.String)
		}
		entries = append(entries, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return entries, nil
}

// auditJSON checks raw and returns it as a nullable TEXT value.
func auditJSON(raw json.RawMessage) (sql.NullString, error) {
	if len(raw) == 0 {
		return sql.NullString{}, nil
	}
	if !json.Valid(raw) {
		return sql.NullString{}, errors.New("invalid JSON")
	}
	return sql.NullString{String: string(raw), Valid: true}, nil
}
