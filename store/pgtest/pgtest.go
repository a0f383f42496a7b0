// Package pgtest helps tests that need a real PostgreSQL: whether the
// store's tests run on it, the server's URL and a fresh database for each
// test, dropped when the test ends.
//
// It is for tests only. A test that calls it fails, loudly, when
// PostgreSQL is not reachable: start it with scripts/services.sh.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// URLEnv names the variable that overrides DefaultURL: a PostgreSQL
// server on which the tests may create and drop databases.
const URLEnv = "PUSHD_TEST_POSTGRES_URL"

// DefaultURL is the server of this project's machines and CI (trust
// authentication on loopback).
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres"

// BackendEnv names the variable that says which backend the store's
// tests run on: "" or "sqlite" (the default), or "postgres".
// scripts/test.sh runs the store's tests both ways.
const BackendEnv = "PUSHD_TEST_STORE"

// Selected reports whether the store's tests run on PostgreSQL
// (BackendEnv=postgres). Another value than "", "sqlite" or "postgres"
// fails t rather than falling back.
func Selected(t testing.TB) bool {
	t.Helper()
	switch b := os.Getenv(BackendEnv); b {
	case "", "sqlite":
		return false
	case "postgres":
		return true
	default:
		t.Fatalf("%s=%q: want sqlite or postgres", BackendEnv, b)
		return false
	}
}

// ServerURL returns the URL of the PostgreSQL server for tests and checks
// that it answers.
func ServerURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(URLEnv)
	if u == "" {
		u = DefaultURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatalf("PostgreSQL is required for this test and is not reachable at %s (%s): %v (run scripts/services.sh)", redact(u), URLEnv, err)
	}
	_ = conn.Close(ctx)
	return u
}

// FreshDB creates an empty database for t on the test server, drops it
// (closing whatever is still connected to it) when t ends, and returns its
// URL. It has the collation pushd requires (C.UTF-8, as docs/cluster.md
// says to create one), whatever the server's default: a server installed
// under another locale would otherwise make every test fail at Open.
func FreshDB(t testing.TB) string {
	t.Helper()
	return FreshDBWith(t, "TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C.UTF-8'")
}

// FreshDBWith is FreshDB with options for CREATE DATABASE, for example
// "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'".
func FreshDBWith(t testing.TB, options string) string {
	t.Helper()
	server := ServerURL(t)
	ctx := context.Background()
	u, err := url.Parse(server)
	if err != nil {
		t.Fatalf("%s: %v", URLEnv, err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "pushd_test_" + hex.EncodeToString(b[:])
	if err := exec(ctx, server, "CREATE DATABASE "+name+" "+options); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := exec(ctx, server, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

func exec(ctx context.Context, server, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// redact hides a password in u.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "<unparsable URL>"
	}
	return p.Redacted()
}
