package store

import (
	"testing"

	"github.com/pushd/pushd/store/pgtest"
)

// PUSHD_TEST_STORE=postgres (pgtest.BackendEnv) runs the store's tests on
// PostgreSQL instead of SQLite (the default), each test in a database of
// its own on the server pgtest names; scripts/test.sh runs them both
// ways. The tests of SQLite's own files and pragmas run on SQLite either
// way.

// postgresTest reports whether the tests run on PostgreSQL. A value other
// than "", "sqlite" or "postgres" fails the test rather than falling back.
func postgresTest(t testing.TB) bool {
	t.Helper()
	return pgtest.Selected(t)
}

// freshDSN returns the dsn of a new, empty store for t on the backend the
// tests run on, and its SQLite path ("" on PostgreSQL).
func freshDSN(t testing.TB) (dsn, path string) {
	t.Helper()
	if postgresTest(t) {
		return pgtest.FreshDB(t), ""
	}
	path = t.TempDir() + "/pushd.db"
	return path, path
}
