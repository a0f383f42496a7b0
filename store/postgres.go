package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// dialect is the SQL database behind a Store. Statements are written to
// run unchanged on both; the few places that differ switch on it.
type dialect int

const (
	dialectSQLite dialect = iota
	dialectPostgres
)

func (d dialect) String() string {
	if d == dialectPostgres {
		return "postgres"
	}
	return "sqlite"
}

// isPostgresDSN reports whether dsn names a PostgreSQL database.
func isPostgresDSN(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// Advisory lock keys (pg_advisory_xact_lock). Arbitrary, fixed, and
// unlikely to collide with another application's keys in the same
// database: "pushd" in ASCII, then a small number.
const (
	// pgWriteLock serialises the store's control writes across every
	// instance, as SQLite's single writer does for one: see write.
	pgWriteLock int64 = 0x7075736864_01
	// pgMigrateLock serialises schema migrations between instances that
	// start at once.
	pgMigrateLock int64 = 0x7075736864_02
)

// openPostgres opens the PostgreSQL database named by dsn through a pgx
// connection pool and brings its schema up to date. Reads and writes share
// the pool.
func openPostgres(ctx context.Context, dsn string, logger *slog.Logger) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors may quote the dsn, password included: name
		// only the kind of mistake.
		return nil, fmt.Errorf("open store: invalid PostgreSQL dsn: %w", redactDSN(err, dsn))
	}
	if cfg.MaxConns < 8 {
		cfg.MaxConns = 8
	}
	cfg.MaxConnIdleTime = 5 * time.Minute
	where := fmt.Sprintf("postgres://%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", where, err)
	}
	db := stdlib.OpenDBFromPool(pool)
	s := &Store{w: db, r: db, pool: pool, dialect: dialectPostgres, now: time.Now, importTxRows: audienceTxRows}
	if err := db.PingContext(ctx); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("open store %s: %w", where, err)
	}
	if err := checkCollation(ctx, db); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("open store %s: %w", where, err)
	}
	applied, err := migrateLocked(ctx, db, s.now)
	if err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("open store %s: %w", where, err)
	}
	for _, v := range applied {
		logger.Info("store migration applied", "version", v, "database", where)
	}
	return s, nil
}

// sqlCollation reads the database's default collation and its provider
// (c: the C library's, i: ICU, b: PostgreSQL's builtin one, from version
// 17); through to_jsonb, so that a server older than 15, without
// datlocprovider, reads as c.
const sqlCollation = `SELECT datcollate, COALESCE(to_jsonb(d) ->> 'datlocprovider', 'c')
FROM pg_database d WHERE datname = current_database()`

// checkCollation refuses a database whose default collation does not
// compare text byte by byte, as SQLite does. The store's statements
// order and compare text in SQL (list pages and their cursors, prefix
// searches, user names, audience time zones and the scheduler's cursor
// through them); under a language's collation ("en_US.UTF-8", the
// default of many installations) they would come out in another order
// than on SQLite, and a prefix search could miss entries.
func checkCollation(ctx context.Context, db *sql.DB) error {
	var collate, provider string
	if err := db.QueryRowContext(ctx, sqlCollation).Scan(&collate, &provider); err != nil {
		return fmt.Errorf("read the database's collation: %w", err)
	}
	switch {
	case provider == "b", // builtin: C or C.UTF-8, code point order
		provider == "c" && (collate == "C" || collate == "POSIX" || strings.EqualFold(collate, "C.UTF-8") || strings.EqualFold(collate, "C.UTF8")):
		return nil
	}
	return fmt.Errorf("the database's collation %q (provider %s) does not sort text in byte order, as pushd needs: "+
		"create the database with CREATE DATABASE ... TEMPLATE template0 LOCALE 'C.UTF-8' (see docs/cluster.md)", collate, provider)
}

// migrateLocked runs migrate on one connection that holds the migration
// advisory lock, so that instances starting at once apply each migration
// once and in order.
func migrateLocked(ctx context.Context, db *sql.DB, now func() time.Time) ([]int64, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, pgMigrateLock); err != nil {
		return nil, fmt.Errorf("migration lock: %w", err)
	}
	defer func() {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, pgMigrateLock)
	}()
	return migrate(ctx, conn, migrationFiles, now)
}

// redactDSN replaces the dsn in err's text, if it is there, so that a
// password in it is not logged.
func redactDSN(err error, dsn string) error {
	msg := err.Error()
	if dsn != "" && strings.Contains(msg, dsn) {
		msg = strings.ReplaceAll(msg, dsn, "<dsn>")
	}
	return errors.New(msg)
}
