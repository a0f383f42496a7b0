package store

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/pushd/pushd/admin"
	"github.com/pushd/pushd/store/pgtest"
	"github.com/pushd/pushd/store/storetest"
)

// TestConformance runs the store conformance suite (package storetest)
// on SQLite always, and on PostgreSQL too with PUSHD_TEST_STORE=postgres,
// each port on a fresh store: go test -run TestConformance ./store/.
func TestConformance(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) storetest.Backend {
			return conformanceBackend(t, t.TempDir()+"/pushd.db")
		})
	})
	if !postgresTest(t) {
		return
	}
	t.Run("postgres", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) storetest.Backend {
			return conformanceBackend(t, pgtest.FreshDB(t))
		})
	})
}

// conformanceBackend opens the store at dsn and shows it through its
// ports, adapted as cmd/pushd adapts it; its Peer opens the same dsn
// again.
func conformanceBackend(t *testing.T, dsn string) storetest.Backend {
	t.Helper()
	s, err := Open(context.Background(), dsn, testLogger(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return storetest.Backend{
		Campaigns:    s,
		Ledger:       s,
		Limits:       s,
		Lists:        s,
		Source:       s,
		Audiences:    adminAudiences{s},
		Users:        adminUsers{s},
		Auditor:      adminAudit{s},
		AuditLog:     adminAudit{s},
		CampaignDefs: s,
		Scheduler:    s,
		SetClock:     s.SetClock,
		Peer:         func(t *testing.T) storetest.Backend { return conformanceBackend(t, dsn) },
	}
}

// adminAudiences, adminUsers and adminAudit are the admin module's view
// of the store, as cmd/pushd's adapters give it.
type (
	adminAudiences struct{ s *Store }
	adminUsers     struct{ s *Store }
	adminAudit     struct{ s *Store }
)

func (a adminAudiences) ImportAudience(ctx context.Context, name, createdBy string, r io.Reader) (admin.Audience, error) {
	au, err := a.s.ImportAudience(ctx, name, createdBy, r)
	return admin.Audience(au), err
}

func (a adminAudiences) Audiences(ctx context.Context) ([]admin.Audience, error) {
	as, err := a.s.Audiences(ctx)
	out := make([]admin.Audience, len(as))
	for i, au := range as {
		out[i] = admin.Audience(au)
	}
	return out, err
}

func (a adminAudiences) Audience(ctx context.Context, id string) (admin.Audience, error) {
	au, err := a.s.Audience(ctx, id)
	return admin.Audience(au), err
}

func (a adminAudiences) ExportAudience(ctx context.Context, id string, w io.Writer) error {
	return a.s.ExportAudience(ctx, id, w)
}

func (a adminAudiences) DeleteAudience(ctx context.Context, id, actor string) error {
	return a.s.DeleteAudience(ctx, id, actor)
}

func (u adminUsers) CreateUser(ctx context.Context, user admin.User, actor string) (admin.User, error) {
	out, err := u.s.CreateUser(ctx, User(user), actor)
	return admin.User(out), err
}

func (u adminUsers) UpdateUser(ctx context.Context, name string, ch admin.UserChange, actor string) (before, after admin.User, err error) {
	b, a, err := u.s.UpdateUser(ctx, name, UserChange(ch), actor)
	return admin.User(b), admin.User(a), err
}

func (u adminUsers) User(ctx context.Context, name string) (admin.User, error) {
	out, err := u.s.User(ctx, name)
	return admin.User(out), err
}

func (u adminUsers) Users(ctx context.Context) ([]admin.User, error) {
	us, err := u.s.Users(ctx)
	out := make([]admin.User, len(us))
	for i, x := range us {
		out[i] = admin.User(x)
	}
	return out, err
}

func (u adminUsers) CreateSession(ctx context.Context, sess admin.Session, actor string) error {
	return u.s.CreateSession(ctx, Session(sess), actor)
}

func (u adminUsers) Session(ctx context.Context, idHash string) (admin.Session, admin.User, error) {
	sess, user, err := u.s.Session(ctx, idHash)
	return admin.Session(sess), admin.User(user), err
}

func (u adminUsers) TouchSession(ctx context.Context, idHash string, at time.Time) error {
	return u.s.TouchSession(ctx, idHash, at)
}

func (u adminUsers) EndSession(ctx context.Context, idHash, actor, action string, at time.Time) error {
	return u.s.EndSession(ctx, idHash, actor, action, at)
}

func (a adminAudit) Audit(ctx context.Context, e admin.AuditEntry) error {
	return a.s.Audit(ctx, AuditEntry{At: e.At, Actor: e.Actor, Action: e.Action, Target: e.Target, Before: e.Before, After: e.After})
}

func (a adminAudit) AuditEntries(ctx context.Context, q admin.AuditQuery) ([]admin.AuditRecord, error) {
	es, err := a.s.AuditEntries(ctx, AuditQuery{Actor: q.Actor, Action: q.Action, Target: q.Target,
		Since: q.Since, Until: q.Until, Before: q.Before, Limit: q.Limit})
	if err != nil {
		return nil, err
	}
	out := make([]admin.AuditRecord, len(es))
	for i, e := range es {
		out[i] = admin.AuditRecord{ID: e.ID, AuditEntry: admin.AuditEntry{At: e.At, Actor: e.Actor, Action: e.Action, Target: e.Target, Before: e.Before, After: e.After}}
	}
	return out, nil
}
