// Package storetest is the store conformance suite: one set of tests that
// exercises every port the rest of pushd uses to reach its store
// (campaigns and their counters, the ledger, limits, the lists and their
// change log, audiences, users and sessions, the audit log, the
// scheduler's leases), whatever backs them. A backend's own tests call Run
// with a constructor, once per backend (river's riverdrivertest style), so
// that SQLite and PostgreSQL are held to the same exact semantics:
// revisions without gaps, conflicts refused with the documented error,
// sets that are idempotent, claims and leases with one holder.
//
// It is for tests only, and tests nothing of a backend that the ports do
// not show: a backend's own files, pragmas and schema are its own tests'
// business, as are the finer points its own tests already cover.
package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pushd/pushd/admin"
	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/lists"
	"github.com/pushd/pushd/scheduler"
)

// Backend is a store as pushd's packages see it: one value per port. Each
// field is usually the same store, adapted where a port's types differ
// from the store's.
type Backend struct {
	Campaigns dispatcher.CampaignStore
	Ledger    dispatcher.Ledger
	Limits    dispatcher.LimitStore
	// Lists is the admin module's side of the lists, Source the side the
	// instances' indexes follow (entries and the change log).
	Lists        admin.ListStore
	Source       lists.Source
	Audiences    admin.AudienceStore
	Users        admin.UserStore
	Auditor      admin.Auditor
	AuditLog     admin.AuditReader
	CampaignDefs admin.CampaignDefs
	Scheduler    scheduler.Store

	// SetClock replaces the clock that stamps what the store records
	// itself (creation and update times). The suite calls it with a clock
	// it controls before it uses the backend.
	SetClock func(now func() time.Time)
	// Peer opens another handle on the same data, as another pushd
	// instance sharing the store would have (its own connections), or
	// returns nil when the backend has no such thing. The claims and
	// leases are tested across it.
	Peer func(t *testing.T) Backend
}

// Run runs the conformance suite against the backends open returns: a
// new, empty store for each call, closed when t ends. The subtests are
// named by port.
func Run(t *testing.T, open func(t *testing.T) Backend) {
	for _, port := range []struct {
		name string
		test func(t *testing.T, b Backend, c *Clock)
	}{
		{"campaigns", testCampaigns},
		{"ledger", testLedger},
		{"limits", testLimits},
		{"lists", testLists},
		{"audiences", testAudiences},
		{"users_sessions", testUsersSessions},
		{"audit", testAudit},
		{"scheduler", testScheduler},
	} {
		t.Run(port.name, func(t *testing.T) {
			c := NewClock()
			b := open(t)
			b.SetClock(c.Now)
			port.test(t, b, c)
		})
	}
}

// peer returns b's peer with c as its clock, or b itself when it has
// none.
func peer(t *testing.T, b Backend, c *Clock) Backend {
	t.Helper()
	if b.Peer == nil {
		return b
	}
	p := b.Peer(t)
	p.SetClock(c.Now)
	return p
}

// byteOrder fails t unless the keys of items, in their order, print as
// want: text in byte order, whatever the backend's own collation.
func byteOrder[T any](t *testing.T, what string, items []T, key func(T) string, want string) {
	t.Helper()
	keys := make([]string, len(items))
	for i, it := range items {
		keys[i] = key(it)
	}
	if got := fmt.Sprint(keys); got != want {
		t.Errorf("%s = %s, want byte order %s", what, got, want)
	}
}

// Clock is a settable clock: the suite moves time on itself rather than
// sleeping.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock at 2026-11-26T22:00Z, to the millisecond (what
// the stores keep).
func NewClock() *Clock {
	return &Clock{t: time.Date(2026, 11, 26, 22, 0, 0, 0, time.UTC)}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock on by d and returns the new time.
func (c *Clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}
