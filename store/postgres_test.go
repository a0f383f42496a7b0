package store

import (
	"context"
	"strings"
	"testing"

	"github.com/pushd/pushd/store/pgtest"
)

// A database that sorts text by a language's rules would order list
// pages, user names and audience zones otherwise than SQLite: Open
// refuses it, and opens one in byte order.
func TestOpenPostgresCollation(t *testing.T) {
	if !postgresTest(t) {
		t.Skip("PostgreSQL only: PUSHD_TEST_STORE=postgres")
	}
	for _, tc := range []struct {
		name, options string
		ok            bool
	}{
		{"C.UTF-8", "TEMPLATE template0 LOCALE 'C.UTF-8'", true},
		{"C", "TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'", true},
		{"ICU en-US", "TEMPLATE template0 LOCALE 'C.UTF-8' LOCALE_PROVIDER icu ICU_LOCALE 'en-US'", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(context.Background(), pgtest.FreshDBWith(t, tc.options), testLogger(t))
			if err == nil {
				_ = s.Close()
			}
			switch {
			case tc.ok && err != nil:
				t.Errorf("Open: %v", err)
			case !tc.ok && (err == nil || !strings.Contains(err.Error(), "does not sort text in byte order")):
				t.Errorf("Open = %v, want it refused for its collation", err)
			}
		})
	}
}
