// Package adminstore adapts the store to the admin module's ports whose
// types are the admin module's own: users and sessions (admin.UserStore),
// audiences (admin.AudienceStore) and the audit log (admin.Auditor,
// admin.AuditReader). cmd/pushd wires
// them, and the store's conformance suite runs through them.
//
// It converts and nothing more: the store decides, the admin module shows.
package adminstore

import (
	"context"
	"time"

	"github.com/pushd/pushd/admin"
	"github.com/pushd/pushd/store"
)

// Users is admin.UserStore backed by the store.
type Users struct{ Store *store.Store }

var _ admin.UserStore = Users{}

// CreateUser implements admin.UserStore.
func (u Users) CreateUser(ctx context.Context, user admin.User, actor string) (admin.User, error) {
	out, err := u.Store.CreateUser(ctx, store.User(user), actor)
	return admin.User(out), err
}

// UpdateUser implements admin.UserStore.
func (u Users) UpdateUser(ctx context.Context, name string, ch admin.UserChange, actor string) (before, after admin.User, err error) {
	b, a, err := u.Store.UpdateUser(ctx, name, store.UserChange(ch), actor)
	return admin.User(b), admin.User(a), err
}

// User implements admin.UserStore.
func (u Users) User(ctx context.Context, name string) (admin.User, error) {
	out, err := u.Store.User(ctx, name)
	return admin.User(out), err
}

// Users implements admin.UserStore.
func (u Users) Users(ctx context.Context) ([]admin.User, error) {
	us, err := u.Store.Users(ctx)
	out := make([]admin.User, len(us))
	for i, x := range us {
		out[i] = admin.User(x)
	}
	return out, err
}

// CreateSession implements admin.UserStore.
func (u Users) CreateSession(ctx context.Context, sess admin.Session, actor string) error {
	return u.Store.CreateSession(ctx, store.Session(sess), actor)
}

// Session implements admin.UserStore.
func (u Users) Session(ctx context.Context, idHash string) (admin.Session, admin.User, error) {
	sess, user, err := u.Store.Session(ctx, idHash)
	return admin.Session(sess), admin.User(user), err
}

// TouchSession implements admin.UserStore.
func (u Users) TouchSession(ctx context.Context, idHash string, at time.Time) error {
	return u.Store.TouchSession(ctx, idHash, at)
}

// EndSession implements admin.UserStore.
func (u Users) EndSession(ctx context.Context, idHash, actor, action string, at time.Time) error {
	return u.Store.EndSession(ctx, idHash, actor, action, at)
}

// Audit is admin.Auditor and admin.AuditReader backed by the store: the
// admin module's changes recorded, and read back.
type Audit struct{ Store *store.Store }

var (
	_ admin.Auditor     = Audit{}
	_ admin.AuditReader = Audit{}
)

// Audit implements admin.Auditor.
func (a Audit) Audit(ctx context.Context, e admin.AuditEntry) error {
	return a.Store.Audit(ctx, store.AuditEntry{At: e.At, Actor: e.Actor, Action: e.Action, Target: e.Target, Before: e.Before, After: e.After})
}

// AuditEntries implements admin.AuditReader.
func (a Audit) AuditEntries(ctx context.Context, q admin.AuditQuery) ([]admin.AuditRecord, error) {
	es, err := a.Store.AuditEntries(ctx, store.AuditQuery{Actor: q.Actor, Action: q.Action, Target: q.Target,
		Since: q.Since, Until: q.Until, Before: q.Before, Limit: q.Limit})
	if err != nil {
		return nil, err
	}
	out := make([]admin.AuditRecord, len(es))
	for i, e := range es {
		out[i] = admin.AuditRecord{ID: e.ID, AuditEntry: admin.AuditEntry{At: e.At, Actor: e.Actor, Action: e.Action, Target: e.Target, Before: e.Before, After: e.After}}
	}
	return out, nil
}
