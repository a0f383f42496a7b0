package main

import (
	"context"
	"io"

	"github.com/pushd/pushd/admin"
	"github.com/pushd/pushd/store"
)

// audienceStore adapts the store's audiences to the admin module.
type audienceStore struct{ st *store.Store }

func (a audienceStore) ImportAudience(ctx context.Context, name, createdBy string, r io.Reader) (admin.Audience, error) {
	au, err := a.st.ImportAudience(ctx, name, createdBy, r)
	return admin.Audience(au), err
}

func (a audienceStore) Audiences(ctx context.Context) ([]admin.Audience, error) {
	as, err := a.st.Audiences(ctx)
	out := make([]admin.Audience, len(as))
	for i, au := range as {
		out[i] = admin.Audience(au)
	}
	return out, err
}

func (a audienceStore) Audience(ctx context.Context, id string) (admin.Audience, error) {
	au, err := a.st.Audience(ctx, id)
	return admin.Audience(au), err
}

func (a audienceStore) ExportAudience(ctx context.Context, id string, w io.Writer) error {
	return a.st.ExportAudience(ctx, id, w)
}

func (a audienceStore) DeleteAudience(ctx context.Context, id, actor string) error {
	return a.st.DeleteAudience(ctx, id, actor)
}
