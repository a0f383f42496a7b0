package storetest_test

import (
	"context"
	"io"
	"testing"

	"github.com/pushd/pushd/admin"
	"github.com/pushd/pushd/store"
	"github.com/pushd/pushd/store/adminstore"
	"github.com/pushd/pushd/store/pgtest"
	"github.com/pushd/pushd/store/storetest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestConformance runs the suite on the store: on SQLite always, and on
// PostgreSQL too with PUSHD_TEST_STORE=postgres (pgtest.Selected), each
// port on a fresh store.
func TestConformance(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) storetest.Backend {
			return open(t, t.TempDir()+"/pushd.db")
		})
	})
	if !pgtest.Selected(t) {
		return
	}
	t.Run("postgres", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) storetest.Backend {
			return open(t, pgtest.FreshDB(t))
		})
	})
}

// open opens the store at dsn, closed when t ends, and shows it through
// its ports as cmd/pushd wires them; its Peer opens the same dsn again.
func open(t *testing.T, dsn string) storetest.Backend {
	t.Helper()
	s, err := store.Open(context.Background(), dsn, nil)
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
		Audiences:    audiences{s},
		Users:        adminstore.Users{Store: s},
		Auditor:      adminstore.Audit{Store: s},
		AuditLog:     adminstore.Audit{Store: s},
		CampaignDefs: s,
		Scheduler:    s,
		SetClock:     s.SetClock,
		Peer:         func(t *testing.T) storetest.Backend { return open(t, dsn) },
	}
}

// audiences is admin.AudienceStore backed by the store, as
// cmd/pushd/audiences.go adapts it (kept apart while that port changes).
type audiences struct{ s *store.Store }

func (a audiences) ImportAudience(ctx context.Context, name, createdBy string, r io.Reader) (admin.Audience, error) {
	au, err := a.s.ImportAudience(ctx, name, createdBy, r)
	return admin.Audience(au), err
}

func (a audiences) Audiences(ctx context.Context) ([]admin.Audience, error) {
	as, err := a.s.Audiences(ctx)
	out := make([]admin.Audience, len(as))
	for i, au := range as {
		out[i] = admin.Audience(au)
	}
	return out, err
}

func (a audiences) Audience(ctx context.Context, id string) (admin.Audience, error) {
	au, err := a.s.Audience(ctx, id)
	return admin.Audience(au), err
}

func (a audiences) ExportAudience(ctx context.Context, id string, w io.Writer) error {
	return a.s.ExportAudience(ctx, id, w)
}

func (a audiences) DeleteAudience(ctx context.Context, id, actor string) error {
	return a.s.DeleteAudience(ctx, id, actor)
}
