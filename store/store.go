// Package store persists pushd's shared state in SQL: campaigns (control
// state and counters), the definitions of campaigns created in pushd and
// the scheduler's leases on them, the audiences they target, the blacklist
// and whitelist with the log of their changes, the console's users and
// their sessions, and the admin audit log. It implements
// dispatcher.CampaignStore, lists.Source and the scheduler's store.
//
// SQLite (pure Go, modernc.org/sqlite, no cgo) is the embedded default; a
// PostgreSQL backend for several instances is planned, so every statement
// is written to run unchanged on both: $n placeholders, standard types,
// times as BIGINT unix milliseconds, ids and revisions from a seq table
// bumped with UPDATE ... RETURNING. The schema is versioned by the embedded
// files in migrations/, applied in order at Open.
//
// The package is not a cache and takes no decisions: it records what the
// dispatcher and the admin module tell it and answers their queries. The
// in-memory lookup of list entries belongs to package lists, which builds
// it from the store and follows its changes.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// Store is a campaign store and audit log backed by SQL. It is safe for
// concurrent use.
//
// Writes go through one connection (SQLite has a single writer; queueing
// writers in the pool rather than in SQLite's busy handler means they never
// fail with SQLITE_BUSY), each in an IMMEDIATE transaction so that a
// transaction that reads before it writes holds the write lock from the
// start. A writeGate hands that connection out, the high lane's writes
// first. Reads use their own pool of read-only connections and run
// concurrently with each other and with the writer (WAL).
type Store struct {
	w *sql.DB // writes: exactly one connection (SQLite), the pool (PostgreSQL)
	r *sql.DB // reads: several read-only connections (SQLite), the pool (PostgreSQL)
	// pool is the PostgreSQL connection pool behind w and r; nil for SQLite.
	pool *pgxpool.Pool
	// gate orders the write transactions on SQLite (high lane first);
	// nil on PostgreSQL, whose writers do not share one connection.
	gate    *writeGate
	dialect dialect
	now     func() time.Time

	bulkMu sync.Mutex
	bulk   int // imports running with bulkWrites

	importTxRows int // audienceTxRows; fewer in tests
}

// Open opens the store named by dsn, creating it if missing, and brings
// its schema up to date.
//
// dsn is a SQLite database file: a path, "sqlite:PATH" or "file:PATH" (an
// empty authority, as in "sqlite:///var/lib/pushd/pushd.db", is allowed).
// The file and its parent directory are created if missing. Query
// parameters are not accepted: the store sets its own (WAL journal,
// busy_timeout 5000 ms, synchronous NORMAL, foreign keys on).
//
// A "postgres://" or "postgresql://" dsn opens a PostgreSQL database
// through a pgx connection pool (the dsn's parameters, such as
// pool_max_conns or sslmode, are pgx's); several pushd instances may share
// it.
//
// Open uses time.Now as its clock; see SetClock. A nil logger discards.
func Open(ctx context.Context, dsn string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if isPostgresDSN(dsn) {
		return openPostgres(ctx, dsn, logger)
	}
	path, err := sqlitePath(dsn)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open store: create directory: %w", err)
	}
	if err := createPrivate(path, logger); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}

	w, err := sql.Open("sqlite", sqliteURI(path, false))
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := w.PingContext(ctx); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}

	s := &Store{w: w, gate: &writeGate{}, now: time.Now, importTxRows: audienceTxRows}
	applied, err := migrate(ctx, w, migrationFiles, s.now)
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	for _, v := range applied {
		logger.Info("store migration applied", "version", v, "path", path)
	}

	// Opened after the migrations so that every read connection starts on
	// a WAL database with the current schema.
	r, err := sql.Open("sqlite", sqliteURI(path, true))
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	if err := r.PingContext(ctx); err != nil {
		_ = w.Close()
		_ = r.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s.r = r
	return s, nil
}

// SetClock replaces the clock that stamps created_at, updated_at, list
// change and audit times (time.Now by default). It is meant for tests and
// must be called before the Store is shared with other goroutines.
func (s *Store) SetClock(now func() time.Time) {
	s.now = now
}

// Close closes the store. Calls after the first are harmless.
func (s *Store) Close() error {
	var errs []error
	if s.r != nil && s.r != s.w {
		errs = append(errs, s.r.Close())
	}
	if s.w != nil {
		errs = append(errs, s.w.Close())
	}
	if s.pool != nil {
		s.pool.Close()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// sqlitePath returns the absolute file path named by dsn.
func sqlitePath(dsn string) (string, error) {
	p := dsn
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		p = strings.TrimPrefix(dsn, "sqlite:")
	case strings.HasPrefix(dsn, "file:"):
		p = strings.TrimPrefix(dsn, "file:")
	case strings.Contains(dsn, "://"):
		scheme, _, _ := strings.Cut(dsn, "://")
		return "", fmt.Errorf("open store: unsupported dsn scheme %q (want a SQLite path, sqlite:PATH, file:PATH or postgres://)", scheme)
	}
	// URL form with an empty authority: sqlite:///abs/path, file:///abs/path.
	if rest, ok := strings.CutPrefix(p, "//"); ok {
		p = rest
		if !strings.HasPrefix(p, "/") {
			return "", fmt.Errorf("open store: dsn %q: a host is not allowed in a SQLite dsn", dsn)
		}
	}
	switch {
	case p == "":
		return "", errors.New("open store: empty dsn: want a SQLite file path")
	case strings.ContainsAny(p, "?#"):
		return "", fmt.Errorf("open store: dsn %q: query parameters are not supported", dsn)
	case strings.HasPrefix(p, ":memory:"):
		return "", errors.New("open store: in-memory SQLite is not supported: use a file (a temporary directory in tests)")
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("open store: dsn %q: %w", dsn, err)
	}
	return abs, nil
}

// sqliteURI returns the modernc.org/sqlite data source for the file at path.
func sqliteURI(path string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(1)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Set("_txlock", "immediate")
		q.Add("_pragma", "temp_store(MEMORY)")
	}
	return "file:" + (&url.URL{Path: filepath.ToSlash(path)}).EscapedPath() + "?" + q.Encode()
}

// errUnchanged, returned by a write function, rolls its transaction back
// and makes write return nil.
var errUnchanged = errors.New("unchanged")

// write runs fn in a write transaction and commits it if fn returns nil.
//
// Write transactions are serialised, as SQLite's single writer does on
// one machine: in PostgreSQL each takes a transaction-level advisory lock
// first, so that the read-then-write logic of every store method (state
// transitions, revisions that commit in the order they are taken, leases)
// holds across instances exactly as it does on SQLite. The hot writes of
// the data path, whose updates commute, use writeShared instead.
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.writeTx(ctx, true, fn)
}

// writeShared is write for transactions that only add to counters or
// upsert rows that no other transaction reads and then writes (campaign
// counters, the ledger): in PostgreSQL they do not take the write lock, so
// the instances' flushes run side by side. They must touch rows in a fixed
// order (no deadlocks). On SQLite it is write.
//
// In PostgreSQL they commit without waiting for the WAL flush
// (synchronous_commit off, for these transactions only): the durability
// SQLite gives every write with synchronous=NORMAL in WAL mode. A crash
// of pushd loses none of them; a crash of the database server can lose
// the last few hundred milliseconds of them (3 x wal_writer_delay), each
// ledger bitmap with its counts, never one without the other: those
// recipients count as not sent, and a redelivery sends them again
// (docs/semantics.md). Waiting for the flush on each of these hot writes
// made one pushd on PostgreSQL slower than on SQLite.
func (s *Store) writeShared(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.writeTx(ctx, false, fn)
}

func (s *Store) writeTx(ctx context.Context, exclusive bool, fn func(tx *sql.Tx) error) error {
	if s.gate != nil {
		if err := s.gate.acquireFor(ctx); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		defer s.gate.release() // after the rollback deferred below
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	switch {
	case exclusive && s.dialect == dialectPostgres:
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, pgWriteLock); err != nil {
			return fmt.Errorf("write lock: %w", err)
		}
	case s.dialect == dialectPostgres:
		if _, err := tx.ExecContext(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
			return fmt.Errorf("synchronous_commit: %w", err)
		}
	}
	if err := fn(tx); err != nil {
		if errors.Is(err, errUnchanged) {
			return nil
		}
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Sequence names in the seq table.
const (
	seqCampaignRev = "campaign_rev"
	seqAuditID     = "audit_id"
	seqListRev     = "list_rev"
)

const sqlNextSeq = `UPDATE seq SET value = value + 1 WHERE name = $1 RETURNING value`

// nextSeq takes the next value of the named sequence inside tx. In
// PostgreSQL this locks the sequence row until tx ends, which serialises
// the transactions that use it.
func nextSeq(ctx context.Context, tx *sql.Tx, name string) (int64, error) {
	var v int64
	if err := tx.QueryRowContext(ctx, sqlNextSeq, name).Scan(&v); err != nil {
		return 0, fmt.Errorf("next %s: %w", name, err)
	}
	return v, nil
}

const sqlAddSeq = `UPDATE seq SET value = value + $2 WHERE name = $1 RETURNING value`

// addSeq adds n (>= 0) to the named sequence inside tx and returns its new
// value: the values taken are the n up to it. With n = 0 it reads the
// current value and, like nextSeq, holds the row lock (in PostgreSQL)
// until tx ends.
func addSeq(ctx context.Context, tx *sql.Tx, name string, n int64) (int64, error) {
	var v int64
	if err := tx.QueryRowContext(ctx, sqlAddSeq, name, n).Scan(&v); err != nil {
		return 0, fmt.Errorf("add %d to %s: %w", n, name, err)
	}
	return v, nil
}

func toMillis(t time.Time) int64 { return t.UnixMilli() }

func fromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// createPrivate creates the database file readable and writable by its
// owner only (0600), if it does not exist: SQLite creates its -wal and
// -shm files with the database file's mode, so they are private too. The
// store holds audiences, lists and the seal key of pushd's AMQP headers.
// An existing file that others may read is left as it is, with a warning.
func createPrivate(path string, logger *slog.Logger) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		return f.Close()
	case !errors.Is(err, fs.ErrExist):
		return err
	}
	if info, err := os.Stat(path); err == nil && info.Mode().Perm()&0o077 != 0 {
		logger.Warn("store file is readable or writable by other users; chmod 600 it (and its -wal and -shm files)",
			"path", path, "mode", fmt.Sprintf("%04o", info.Mode().Perm()))
	}
	return nil
}
