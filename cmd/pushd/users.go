package main

import (
	"context"
	"time"

	"github.com/pushd/pushd/admin"
	"github.com/pushd/pushd/store"
)

// userStore adapts the store's users and sessions to the admin module.
type userStore struct{ st *store.Store }

func (u userStore) CreateUser(ctx context.Context, user admin.User, actor string) (admin.User, error) {
	out, err := u.st.CreateUser(ctx, store.User(user), actor)
	return admin.User(out), err
}

func (u userStore) UpdateUser(ctx context.Context, name string, ch admin.UserChange, actor string) (before, after admin.User, err error) {
	b, a, err := u.st.UpdateUser(ctx, name, store.UserChange(ch), actor)
	return admin.User(b), admin.User(a), err
}

func (u userStore) User(ctx context.Context, name string) (admin.User, error) {
	out, err := u.st.User(ctx, name)
	return admin.User(out), err
}

func (u userStore) Users(ctx context.Context) ([]admin.User, error) {
	us, err := u.st.Users(ctx)
	out := make([]admin.User, len(us))
	for i, x := range us {
		out[i] = admin.User(x)
	}
	return out, err
}

func (u userStore) CreateSession(ctx context.Context, sess admin.Session, actor string) error {
	return u.st.CreateSession(ctx, store.Session(sess), actor)
}

func (u userStore) Session(ctx context.Context, idHash string) (admin.Session, admin.User, error) {
	sess, user, err := u.st.Session(ctx, idHash)
	return admin.Session(sess), admin.User(user), err
}

func (u userStore) TouchSession(ctx context.Context, idHash string, at time.Time) error {
	return u.st.TouchSession(ctx, idHash, at)
}

func (u userStore) EndSession(ctx context.Context, idHash, actor, action string, at time.Time) error {
	return u.st.EndSession(ctx, idHash, actor, action, at)
}
