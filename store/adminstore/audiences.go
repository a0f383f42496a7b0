package adminstore

import (
	"context"
	"io"

	"github.com/pushd/pushd/admin"
	"github.com/pushd/pushd/store"
)

// Audiences is admin.AudienceStore backed by the store.
type Audiences struct{ Store *store.Store }

var _ admin.AudienceStore = Audiences{}

// ImportAudience implements admin.AudienceStore.
func (a Audiences) ImportAudience(ctx context.Context, name, createdBy string, r io.Reader) (admin.Audience, error) {
	au, err := a.Store.ImportAudience(ctx, name, createdBy, r)
	return admin.Audience(au), err
}

// Audiences implements admin.AudienceStore.
func (a Audiences) Audiences(ctx context.Context) ([]admin.Audience, error) {
	as, err := a.Store.Audiences(ctx)
	out := make([]admin.Audience, len(as))
	for i, au := range as {
		out[i] = admin.Audience(au)
	}
	return out, err
}

// Audience implements admin.AudienceStore.
func (a Audiences) Audience(ctx context.Context, id string) (admin.Audience, error) {
	au, err := a.Store.Audience(ctx, id)
	return admin.Audience(au), err
}

// ExportAudience implements admin.AudienceStore.
func (a Audiences) ExportAudience(ctx context.Context, id string, w io.Writer) error {
	return a.Store.ExportAudience(ctx, id, w)
}

// DeleteAudience implements admin.AudienceStore.
func (a Audiences) DeleteAudience(ctx context.Context, id, actor string) error {
	return a.Store.DeleteAudience(ctx, id, actor)
}
