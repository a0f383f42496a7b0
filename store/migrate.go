package store

import (
	"cmp"
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"time"
)

// migrationFiles holds the schema, one file per version, named
// NNNN_what.sql. To change the schema, add the next file; never edit one
// that has shipped. Each file runs in one transaction, so it must hold
// only statements both SQLite and PostgreSQL run inside a transaction.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one versioned schema change.
type migration struct {
	version int64
	name    string
	sql     string
}

var migrationName = regexp.MustCompile(`^([0-9]{4,})_[a-z0-9_]+\.sql$`)

// loadMigrations reads the migrations in the "migrations" directory of
// fsys, in version order.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, "migrations")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration %q: name must be NNNN_what.sql", e.Name())
		}
		v, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %q: bad version", e.Name())
		}
		b, err := fs.ReadFile(fsys, path.Join("migrations", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("migration %q: %w", e.Name(), err)
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return cmp.Compare(a.version, b.version) })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("migrations %q and %q have the same version", ms[i-1].name, ms[i].name)
		}
	}
	if len(ms) == 0 {
		return nil, errors.New("no migrations")
	}
	return ms, nil
}

// SQL of the migration bookkeeping.
const (
	sqlCreateSchemaMigrations = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    BIGINT PRIMARY KEY,
    applied_at BIGINT NOT NULL
)`
	sqlAppliedVersions = `SELECT version FROM schema_migrations ORDER BY version`
	sqlVersionApplied  = `SELECT COUNT(*) FROM schema_migrations WHERE version = $1`
	sqlRecordVersion   = `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`
)

// migrationDB is what migrate needs: a *sql.DB, or a *sql.Conn that holds
// a lock.
type migrationDB interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error)
}

// migrate applies the migrations in fsys that db lacks, in order, each in
// its own transaction, and returns the versions it applied. It fails,
// changing nothing, if db records a version fsys does not have: the store
// was migrated by a newer pushd.
func migrate(ctx context.Context, db migrationDB, fsys fs.FS, now func() time.Time) ([]int64, error) {
	ms, err := loadMigrations(fsys)
	if err != nil {
		return nil, err
	}
	if _, err := db.ExecContext(ctx, sqlCreateSchemaMigrations); err != nil {
		return nil, fmt.Errorf("create schema_migrations: %w", err)
	}
	applied, err := appliedVersions(ctx, db)
	if err != nil {
		return nil, err
	}
	latest := ms[len(ms)-1].version
	for _, v := range applied {
		if !slices.ContainsFunc(ms, func(m migration) bool { return m.version == v }) {
			return nil, fmt.Errorf("store schema version %d is unknown to this pushd (it knows up to %d): the store was migrated by a newer pushd; upgrade pushd", v, latest)
		}
	}

	var done []int64
	for _, m := range ms {
		if slices.Contains(applied, m.version) {
			continue
		}
		ok, err := applyMigration(ctx, db, m, now)
		if err != nil {
			return done, err
		}
		if ok {
			done = append(done, m.version)
		}
	}
	return done, nil
}

func appliedVersions(ctx context.Context, db migrationDB) ([]int64, error) {
	rows, err := db.QueryContext(ctx, sqlAppliedVersions)
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	defer rows.Close()
	var vs []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("read schema_migrations: %w", err)
		}
		vs = append(vs, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	return vs, nil
}

// applyMigration runs m in a transaction and records it. It reports false
// if another process applied m first.
func applyMigration(ctx context.Context, db migrationDB, m migration, now func() time.Time) (bool, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("migration %s: begin: %w", m.name, err)
	}
	defer func() { _ = tx.Rollback() }()
	// Checked again inside the transaction: in SQLite it holds the write
	// lock from BEGIN (IMMEDIATE); in PostgreSQL a concurrent runner would
	// fail on the schema_migrations primary key and roll back.
	var n int
	if err := tx.QueryRowContext(ctx, sqlVersionApplied, m.version).Scan(&n); err != nil {
		return false, fmt.Errorf("migration %s: %w", m.name, err)
	}
	if n > 0 {
		return false, nil
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return false, fmt.Errorf("migration %s: %w", m.name, err)
	}
	if _, err := tx.ExecContext(ctx, sqlRecordVersion, m.version, toMillis(now())); err != nil {
		return false, fmt.Errorf("migration %s: record version: %w", m.name, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("migration %s: commit: %w", m.name, err)
	}
	return true, nil
}
