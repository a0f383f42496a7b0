package storetest_test

import (
	"context"
	"testing"

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
		Audiences:    adminstore.Audiences{Store: s},
		Users:        adminstore.Users{Store: s},
		Auditor:      adminstore.Audit{Store: s},
		AuditLog:     adminstore.Audit{Store: s},
		CampaignDefs: s,
		Scheduler:    s,
		SetClock:     s.SetClock,
		Peer:         func(t *testing.T) storetest.Backend { return open(t, dsn) },
	}
}
