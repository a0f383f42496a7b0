package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pushd/pushd/audit"
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
)

// Audit appends e to the audit log. e.ID is ignored; e.At defaults to now.
// Action is required; Before and After, when set, must be valid JSON.
func (s *Store) Audit(ctx context.Context, e AuditEntry) error {
	if e.Action == "" {
		return errors.New("audit: empty action")
	}
	if e.At.IsZero() {
		e.At = s.now()
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		return insertAudit(ctx, tx, e)
	})
	if err != nil {
		return fmt.Errorf("audit %s: %w", e.Action, err)
	}
	return nil
}

// insertAudit appends e to the audit log inside tx, the transaction of the
// change it records. e.At is required.
func insertAudit(ctx context.Context, tx *sql.Tx, e AuditEntry) error {
	before, err := auditJSON(e.Before)
	if err != nil {
		return fmt.Errorf("before: %w", err)
	}
	after, err := auditJSON(e.After)
	if err != nil {
		return fmt.Errorf("after: %w", err)
	}
	id, err := nextSeq(ctx, tx, seqAuditID)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, sqlInsertAudit,
		id, toMillis(e.At), e.Actor, e.Action, e.Target, before, after)
	return err
}

// auditNote writes the audit record of an operator's change inside tx, the
// change's transaction, when ctx carries an audit.Note (see package audit),
// and nothing when it carries none. target names the object changed;
// before and after are its state, marshalled to JSON (nil: none). A
// record that cannot be written fails the transaction, so the change does
// not stand without it.
func (s *Store) auditNote(ctx context.Context, tx *sql.Tx, target string, before, after any) error {
	n, ok := audit.NoteFrom(ctx)
	if !ok {
		return nil
	}
	return auditTx(ctx, tx, s.now(), n.Actor, n.Action, target, before, after)
}

// noted reports whether ctx carries an audit.Note: whether a change made
// with it is audited, and so whether to read what its record shows.
func noted(ctx context.Context) bool {
	_, ok := audit.NoteFrom(ctx)
	return ok
}

// AuditLog returns the latest limit entries, newest first
// (DefaultAuditLimit when limit <= 0).
func (s *Store) AuditLog(ctx context.Context, limit int) ([]AuditEntry, error) {
	return s.AuditEntries(ctx, AuditQuery{Limit: limit})
}

// MaxAuditLimit is the most entries one AuditEntries call returns.
const MaxAuditLimit = 1000

// AuditQuery selects audit entries. Zero fields select everything.
type AuditQuery struct {
	// Actor, Action and Target match exactly.
	Actor, Action, Target string
	// Since and Until bound At: Since <= At < Until.
	Since, Until time.Time
	// Before is a page cursor: only entries with an ID below it (the
	// last ID of the previous page).
	Before int64
	// Limit: DefaultAuditLimit when <= 0, at most MaxAuditLimit.
	Limit int
}

// AuditEntries returns the entries q selects, newest first.
func (s *Store) AuditEntries(ctx context.Context, q AuditQuery) ([]AuditEntry, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultAuditLimit
	}
	limit = min(limit, MaxAuditLimit)
	var (
		where []string
		args  []any
	)
	cond := func(expr string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(expr, len(args)))
	}
	if q.Actor != "" {
		cond("actor = $%d", q.Actor)
	}
	if q.Action != "" {
		cond("action = $%d", q.Action)
	}
	if q.Target != "" {
		cond("target = $%d", q.Target)
	}
	if !q.Since.IsZero() {
		cond("at >= $%d", toMillis(q.Since))
	}
	if !q.Until.IsZero() {
		cond("at < $%d", toMillis(q.Until))
	}
	if q.Before > 0 {
		cond("id < $%d", q.Before)
	}
	query := `SELECT id, at, actor, action, target, before, after FROM audit`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	query += fmt.Sprintf(" ORDER BY id DESC LIMIT $%d", len(args))

	rows, err := s.r.QueryContext(ctx, query, args...)
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
