package store

import (
	"context"
	"database/sql"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

// rawDB opens a bare write connection to a fresh SQLite file, for
// migration tests that run migrate without Open.
func rawDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", sqliteURI(filepath.Join(t.TempDir(), "m.db"), false))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func file(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }

func TestMigrateAppliesInOrderOnce(t *testing.T) {
	ctx := context.Background()
	db := rawDB(t)
	now := func() time.Time { return time.UnixMilli(1000) }
	fsys := fstest.MapFS{
		// 0002 depends on 0001: applied out of order it would fail.
		"migrations/0002_more.sql": file(`ALTER TABLE t ADD COLUMN b BIGINT; INSERT INTO t (a, b) VALUES (1, 2);`),
		"migrations/0001_first.sql": file(`CREATE TABLE t (a BIGINT);
CREATE TABLE u (x TEXT);`),
	}

	steps := []struct {
		name string
		add  map[string]string
		want []int64
	}{
		{name: "fresh", want: []int64{1, 2}},
		{name: "up to date", want: nil},
		{name: "again", want: nil},
		{name: "one more", add: map[string]string{"migrations/0003_third.sql": `INSERT INTO t (a, b) VALUES (3, 4)`}, want: []int64{3}},
		{name: "up to date after adding", want: nil},
	}
	for _, st := range steps {
		for name, body := range st.add {
			fsys[name] = file(body)
		}
		got, err := migrate(ctx, db, fsys, now)
		if err != nil {
			t.Fatalf("%s: migrate: %v", st.name, err)
		}
		if !slices.Equal(got, st.want) {
			t.Errorf("%s: applied %v, want %v", st.name, got, st.want)
		}
	}

	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM t`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("rows in t = %d, want 2 (each migration ran once)", n)
	}
	vs, err := appliedVersions(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(vs, []int64{1, 2, 3}) {
		t.Errorf("schema_migrations = %v, want [1 2 3]", vs)
	}
}

func TestMigrateFailureRollsBack(t *testing.T) {
	ctx := context.Background()
	db := rawDB(t)
	fsys := fstest.MapFS{
		"migrations/0001_ok.sql":  file(`CREATE TABLE t (a BIGINT)`),
		"migrations/0002_bad.sql": file(`CREATE TABLE half (a BIGINT); THIS IS NOT SQL;`),
	}
	applied, err := migrate(ctx, db, fsys, time.Now)
	if err == nil || !strings.Contains(err.Error(), "0002_bad.sql") {
		t.Fatalf("migrate = %v, want an error naming 0002_bad.sql", err)
	}
	if !slices.Equal(applied, []int64{1}) {
		t.Errorf("applied %v, want [1]", applied)
	}
	vs, err := appliedVersions(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(vs, []int64{1}) {
		t.Errorf("schema_migrations = %v, want [1]", vs)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE name = 'half'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Error("table of the failed migration exists: it was not rolled back")
	}
}

func TestLoadMigrationsRejects(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		wantErr string
	}{
		{name: "bad name", files: map[string]string{"migrations/1_x.sql": "SELECT 1"}, wantErr: "name must be"},
		{name: "no underscore", files: map[string]string{"migrations/0001.sql": "SELECT 1"}, wantErr: "name must be"},
		{name: "version zero", files: map[string]string{"migrations/0000_x.sql": "SELECT 1"}, wantErr: "bad version"},
		{name: "same version", files: map[string]string{
			"migrations/0001_a.sql": "SELECT 1",
			"migrations/0001_b.sql": "SELECT 1",
		}, wantErr: "same version"},
		{name: "not sql", files: map[string]string{"migrations/README": "x"}, wantErr: "name must be"},
		{name: "none", files: map[string]string{"migrations": ""}, wantErr: "no migrations"},
		{name: "no directory", files: map[string]string{}, wantErr: "read migrations"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for name, body := range tt.files {
				if name == "migrations" {
					fsys[name] = &fstest.MapFile{Mode: fs.ModeDir}
					continue
				}
				fsys[name] = file(body)
			}
			_, err := loadMigrations(fsys)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("loadMigrations = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestEmbeddedMigrations(t *testing.T) {
	ms, err := loadMigrations(migrationFiles)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		if m.version != int64(i+1) {
			t.Errorf("migration %s has version %d, want %d: versions are 1, 2, 3 ... with no gap", m.name, m.version, i+1)
		}
	}
}

type migrationRow struct {
	version, appliedAt int64
}

func migrationRows(t *testing.T, s *Store) []migrationRow {
	t.Helper()
	rows, err := s.r.QueryContext(context.Background(), `SELECT version, applied_at FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []migrationRow
	for rows.Next() {
		var r migrationRow
		if err := rows.Scan(&r.version, &r.appliedAt); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestOpenMigratesOnce(t *testing.T) {
	s, b := setup(t)
	ms, err := loadMigrations(migrationFiles)
	if err != nil {
		t.Fatal(err)
	}
	first := migrationRows(t, s)
	if len(first) != len(ms) {
		t.Fatalf("schema_migrations has %d rows, want %d", len(first), len(ms))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := reopen(t, b)
	if again := migrationRows(t, s2); !slices.Equal(again, first) {
		t.Errorf("schema_migrations after reopen = %v, want unchanged %v", again, first)
	}
	got, err := migrate(context.Background(), s2.w, migrationFiles, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Errorf("migrate on an up-to-date store applied %v", got)
	}
}

func TestOpenRejectsNewerSchema(t *testing.T) {
	ctx := context.Background()
	s, b := setup(t)
	if _, err := s.w.ExecContext(ctx, sqlRecordVersion, 9999, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(ctx, b.dsn, testLogger(t))
	if err == nil {
		_ = s2.Close()
		t.Fatal("Open of a store with schema version 9999 succeeded")
	}
	for _, want := range []string{"9999", "newer pushd"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Open = %v, want error containing %q", err, want)
		}
	}
}
