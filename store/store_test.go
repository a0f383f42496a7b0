package store

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushd/pushd/store/storetest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// clock is the conformance suite's settable clock, at
// 2026-11-26T22:00Z to begin with.
type clock = storetest.Clock

func newClock() *clock { return storetest.NewClock() }

// testBundle is what setup returns beside the store.
type testBundle struct {
	dsn   string // what Open takes
	path  string // the SQLite file; "" on PostgreSQL
	clock *clock
}

// setup opens a store on the backend the tests run against (see
// testBackend), fresh for the test and closed at its end: a file in a
// temporary directory, or a new PostgreSQL database.
func setup(t testing.TB) (*Store, *testBundle) {
	t.Helper()
	b := &testBundle{clock: newClock()}
	b.dsn, b.path = freshDSN(t)
	return reopen(t, b), b
}

// setupSQLite is setup on SQLite, whatever the backend: for tests of
// SQLite's files and pragmas.
func setupSQLite(t testing.TB) (*Store, *testBundle) {
	t.Helper()
	b := &testBundle{clock: newClock(), path: filepath.Join(t.TempDir(), "pushd.db")}
	b.dsn = b.path
	return reopen(t, b), b
}

// reopen opens the store of b again.
func reopen(t testing.TB, b *testBundle) *Store {
	t.Helper()
	s, err := Open(context.Background(), b.dsn, testLogger(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	s.SetClock(b.clock.Now)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func TestOpenDSN(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		dsn     string
		file    string // created, when the dsn is good
		wantErr string
	}{
		{name: "plain path", dsn: filepath.Join(dir, "a.db"), file: filepath.Join(dir, "a.db")},
		{name: "sqlite prefix", dsn: "sqlite:" + filepath.Join(dir, "b.db"), file: filepath.Join(dir, "b.db")},
		{name: "file prefix", dsn: "file:" + filepath.Join(dir, "c.db"), file: filepath.Join(dir, "c.db")},
		{name: "url form", dsn: "sqlite://" + filepath.Join(dir, "d.db"), file: filepath.Join(dir, "d.db")},
		{name: "missing parent directories", dsn: filepath.Join(dir, "x", "y", "e.db"), file: filepath.Join(dir, "x", "y", "e.db")},
		{name: "space in path", dsn: filepath.Join(dir, "with space", "f.db"), file: filepath.Join(dir, "with space", "f.db")},
		{name: "postgres, bad port", dsn: "postgres://pushd@localhost:99999/pushd", wantErr: "invalid PostgreSQL dsn"},
		{name: "postgresql, bad parameter", dsn: "postgresql://pushd:secret-pw@localhost/pushd?sslmode=sometimes", wantErr: "invalid PostgreSQL dsn"},
		{name: "other scheme", dsn: "mysql://localhost/pushd", wantErr: `unsupported dsn scheme "mysql"`},
		{name: "empty", dsn: "", wantErr: "empty dsn"},
		{name: "empty after prefix", dsn: "sqlite:", wantErr: "empty dsn"},
		{name: "query parameters", dsn: "file:" + filepath.Join(dir, "g.db") + "?mode=ro", wantErr: "query parameters are not supported"},
		{name: "memory", dsn: ":memory:", wantErr: "in-memory"},
		{name: "host", dsn: "sqlite://host/pushd.db", wantErr: "host is not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(context.Background(), tt.dsn, testLogger(t))
			if tt.wantErr != "" {
				if err == nil {
					_ = s.Close()
					t.Fatalf("Open(%q) succeeded, want error %q", tt.dsn, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Open(%q) = %v, want error containing %q", tt.dsn, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "secret-pw") {
					t.Errorf("Open(%q) = %v: the error shows the password", tt.dsn, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open(%q): %v", tt.dsn, err)
			}
			defer s.Close()
			if _, err := os.Stat(tt.file); err != nil {
				t.Errorf("store file: %v", err)
			}
			if _, err := s.EnsureCampaign(context.Background(), "c", 1); err != nil {
				t.Errorf("EnsureCampaign: %v", err)
			}
		})
	}
}

func TestPragmas(t *testing.T) {
	s, _ := setupSQLite(t)
	ctx := context.Background()
	for _, pool := range []struct {
		name string
		q    querier
	}{{"write", s.w}, {"read", s.r}} {
		for _, p := range []struct {
			pragma string
			want   string
		}{
			{"journal_mode", "wal"},
			{"busy_timeout", "5000"},
			{"synchronous", "1"}, // NORMAL
			{"foreign_keys", "1"},
		} {
			var got string
			if err := pool.q.QueryRowContext(ctx, "PRAGMA "+p.pragma).Scan(&got); err != nil {
				t.Fatalf("%s pool: PRAGMA %s: %v", pool.name, p.pragma, err)
			}
			if got != p.want {
				t.Errorf("%s pool: PRAGMA %s = %q, want %q", pool.name, p.pragma, got, p.want)
			}
		}
	}
	if _, err := s.r.ExecContext(ctx, "DELETE FROM campaigns"); err == nil {
		t.Error("read pool accepted a write")
	}
}

func TestCloseTwice(t *testing.T) {
	s, _ := setup(t)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Campaign(context.Background(), "c"); err == nil {
		t.Error("Campaign after Close succeeded")
	}
}

func TestDataSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	s, b := setup(t)
	if _, err := s.EnsureCampaign(ctx, "spring-sale", 500); err != nil {
		t.Fatal(err)
	}
	rate := 5.0
	if _, _, err := s.SetCampaignRate(ctx, "spring-sale", &rate); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.SetCampaignStatus(ctx, "spring-sale", "paused", "running"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddCampaignCounters(ctx, countersOf("spring-sale", 10, 7)); err != nil {
		t.Fatal(err)
	}
	if err := s.Audit(ctx, AuditEntry{Actor: "ops", Action: "campaign.pause", Target: "spring-sale"}); err != nil {
		t.Fatal(err)
	}
	want, err := s.Campaign(ctx, "spring-sale")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := reopen(t, b)
	got, err := s2.Campaign(ctx, "spring-sale")
	if err != nil {
		t.Fatal(err)
	}
	assertRecord(t, got, want)
	log, err := s2.AuditLog(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != 1 || log[0].Action != "campaign.pause" {
		t.Errorf("audit log after reopen = %+v, want the one entry", log)
	}
	// Revs go on from where they were.
	after, err := s2.EnsureCampaign(ctx, "other", 0)
	if err != nil {
		t.Fatal(err)
	}
	if after.Rev <= want.Rev {
		t.Errorf("rev after reopen = %d, want > %d", after.Rev, want.Rev)
	}
}

// The database and its -wal and -shm files are the owner's only (issue 13,
// item 9), whatever the umask; an existing file others can read is
// warned about.
func TestStoreFilesArePrivate(t *testing.T) {
	s, b := setupSQLite(t)
	if err := s.Audit(context.Background(), AuditEntry{Actor: "t", Action: "x", Target: "y"}); err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		info, err := os.Stat(b.path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if perm := info.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s: mode %04o, want 0600", filepath.Base(b.path+suffix), perm)
		}
	}

	shared := filepath.Join(t.TempDir(), "shared.db")
	if err := os.WriteFile(shared, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	s2, err := Open(context.Background(), shared, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	_ = s2.Close()
	if !strings.Contains(logs.String(), "chmod 600") {
		t.Errorf("no warning about a 0644 store file: %s", logs.String())
	}
}
