package admin

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/pushd/pushd/audit"
)

// noted returns ctx carrying the audit note of action by p. A store
// change made with it writes its audit record in the change's own
// transaction, or fails and changes nothing (see package audit).
func noted(ctx context.Context, p principal, action string) context.Context {
	return audit.WithNote(ctx, audit.Note{Actor: p.actor, Action: action})
}

// AuditQuery selects audit records; zero fields select everything.
type AuditQuery struct {
	// Actor, Action and Target match exactly.
	Actor, Action, Target string
	// Since <= At < Until.
	Since, Until time.Time
	// Before: only records with an ID below it (the last ID of the
	// previous page).
	Before int64
	// Limit: 1 to maxAuditLimit.
	Limit int
}

// AuditRecord is an audit entry as stored, with its ID.
type AuditRecord struct {
	ID int64 `json:"id"`
	AuditEntry
}

// AuditReader reads the audit log, newest first. The store implements it
// (through an adapter in cmd/pushd).
type AuditReader interface {
	AuditEntries(ctx context.Context, q AuditQuery) ([]AuditRecord, error)
}

const (
	defaultAuditLimit = 100
	maxAuditLimit     = 1000
)

var errNoAuditLog = &clientError{kindUnavailable, "audit log not configured"}

// auditPage is the answer of GET /api/audit. NextBefore, when set, is the
// before= of the next page.
type auditPage struct {
	Entries    []AuditRecord `json:"entries"`
	NextBefore int64         `json:"next_before,omitempty"`
}

// getAudit answers GET /api/audit?actor=&action=&target=&since=&until=&limit=&before=
// with the selected records, newest first. since and until are RFC 3339.
func (s *Server) getAudit(w http.ResponseWriter, r *http.Request, _ principal) error {
	if s.auditLog == nil {
		return errNoAuditLog
	}
	v := r.URL.Query()
	q := AuditQuery{Actor: v.Get("actor"), Action: v.Get("action"), Target: v.Get("target"), Limit: defaultAuditLimit}
	for _, tm := range []struct {
		key string
		dst *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		if s := v.Get(tm.key); s != "" {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				return badRequest("%s: want an RFC 3339 time such as 2026-12-24T09:00:00Z, got %q", tm.key, s)
			}
			*tm.dst = t
		}
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxAuditLimit {
			return badRequest("limit: want 1 to %d, got %q", maxAuditLimit, s)
		}
		q.Limit = n
	}
	if s := v.Get("before"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			return badRequest("before: want a positive audit record id, got %q", s)
		}
		q.Before = n
	}
	recs, err := s.auditLog.AuditEntries(r.Context(), q)
	if err != nil {
		return err
	}
	page := auditPage{Entries: recs}
	if page.Entries == nil {
		page.Entries = []AuditRecord{}
	}
	if len(recs) == q.Limit {
		page.NextBefore = recs[len(recs)-1].ID
	}
	return writeJSON(w, http.StatusOK, page)
}
