package store

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/scheduler"
)

// addAudience stores a ready audience with these zones, as the audience
// import leaves it.
func addAudience(t *testing.T, s *Store, id, zones string) {
	t.Helper()
	_, err := s.w.ExecContext(context.Background(),
		`INSERT INTO audiences (id, name, state, zones, created_at, created_by) VALUES ($1, $1, 'ready', $2, 0, 'test')`, id, zones)
	if err != nil {
		t.Fatal(err)
	}
}

func newDef(id string) scheduler.Definition {
	return scheduler.Definition{
		ID: id, Name: "Spring sale", Notification: json.RawMessage(`{"title":"Hi","body":"Sale"}`),
		AudienceID: "aud", RatePerSecond: 500, SendAt: "2026-12-24T09:00", TimeZone: "Asia/Seoul",
	}
}

func mustCreate(t *testing.T, s *Store, d scheduler.Definition) scheduler.Definition {
	t.Helper()
	out, err := s.CreateCampaignDef(context.Background(), d, "operator:aaaa")
	if err != nil {
		t.Fatalf("CreateCampaignDef: %v", err)
	}
	return out
}

// lastAudit returns the newest audit entry.
func lastAudit(t *testing.T, s *Store) AuditEntry {
	t.Helper()
	es, err := s.AuditLog(context.Background(), 1)
	if err != nil || len(es) != 1 {
		t.Fatalf("AuditLog: %v, %d entries", err, len(es))
	}
	return es[0]
}

func TestCreateCampaignDef(t *testing.T) {
	s, _ := setup(t)
	ctx := context.Background()
	addAudience(t, s, "aud", "")
	d := mustCreate(t, s, newDef("spring"))
	if d.State != scheduler.DefDraft || d.CreatedBy != "operator:aaaa" || d.Version != 1 || !d.FireAt.IsZero() {
		t.Errorf("created %+v", d)
	}
	if e := lastAudit(t, s); e.Action != "campaign.create" || e.Target != "spring" || e.Before != nil || !strings.Contains(string(e.After), `"state":"draft"`) {
		t.Errorf("audit %+v", e)
	}

	gen := mustCreate(t, s, newDef(""))
	if !strings.HasPrefix(gen.ID, "c-") || gen.Name != "Spring sale" {
		t.Errorf("generated id %q", gen.ID)
	}

	t.Run("taken by a definition", func(t *testing.T) {
		if _, err := s.CreateCampaignDef(ctx, newDef("spring"), "x"); !errors.Is(err, dispatcher.ErrConflict) {
			t.Errorf("err = %v, want ErrConflict", err)
		}
	})
	t.Run("taken by an AMQP campaign", func(t *testing.T) {
		mustEnsure(t, s, "from-amqp", 0)
		if _, err := s.CreateCampaignDef(ctx, newDef("from-amqp"), "x"); !errors.Is(err, dispatcher.ErrConflict) {
			t.Errorf("err = %v, want ErrConflict", err)
		}
	})
	for _, tt := range []struct {
		field string
		mod   func(*scheduler.Definition)
	}{
		{"audience", func(d *scheduler.Definition) { d.AudienceID = "nope" }},
		{"time_zone", func(d *scheduler.Definition) { d.TimeZone = "Mars/Olympus" }},
		{"send_at", func(d *scheduler.Definition) { d.SendAt = "christmas" }},
		{"rate_per_second", func(d *scheduler.Definition) { d.RatePerSecond = -1 }},
		{"id", func(d *scheduler.Definition) { d.ID = "a\nb" }},
	} {
		t.Run("bad "+tt.field, func(t *testing.T) {
			d := newDef("bad-" + tt.field)
			tt.mod(&d)
			_, err := s.CreateCampaignDef(ctx, d, "x")
			if !errors.Is(err, dispatcher.ErrInvalid) || !strings.Contains(err.Error(), tt.field+":") {
				t.Errorf("err = %v, want ErrInvalid naming %s", err, tt.field)
			}
		})
	}
	if _, err := s.CampaignDef(ctx, "bad-audience"); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("a refused create left a row: %v", err)
	}
	defs, err := s.CampaignDefs(ctx)
	if err != nil || len(defs) != 2 {
		t.Errorf("CampaignDefs = %d, %v; want 2", len(defs), err)
	}
}

func TestCampaignDefLifecycle(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	addAudience(t, s, "aud", "America/New_York,Asia/Seoul")
	addAudience(t, s, "aud2", "")
	mustCreate(t, s, newDef("c1"))

	// Edit a draft: before and after audited.
	before, after, err := s.EditCampaignDef(ctx, "c1", "operator:bbbb", func(d *scheduler.Definition) error {
		d.Name, d.AudienceID, d.State = "Winter sale", "aud2", scheduler.DefRunning // state is not editable
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if before.Name != "Spring sale" || after.Name != "Winter sale" || after.State != scheduler.DefDraft || after.Version != 2 {
		t.Errorf("edit: before %+v after %+v", before, after)
	}
	e := lastAudit(t, s)
	if e.Action != "campaign.edit" || e.Actor != "operator:bbbb" || !strings.Contains(string(e.Before), "Spring sale") || !strings.Contains(string(e.After), "Winter sale") {
		t.Errorf("edit audit %+v", e)
	}
	if _, _, err := s.EditCampaignDef(ctx, "c1", "x", func(d *scheduler.Definition) error { d.AudienceID = "gone"; return nil }); !errors.Is(err, dispatcher.ErrInvalid) {
		t.Errorf("edit to an unknown audience: %v", err)
	}

	// Test sends in draft.
	for want := range []string{"c1.test-1", "c1.test-2"} {
		id, _, err := s.NextCampaignTest(ctx, "c1", "operator:aaaa")
		if err != nil || id != TestCampaignID("c1", int64(want+1)) {
			t.Fatalf("NextCampaignTest = %q, %v", id, err)
		}
	}
	if e := lastAudit(t, s); e.Action != "campaign.test" {
		t.Errorf("test audit %+v", e)
	}

	// Schedule with approval; the scheduler cannot approve.
	d, err := s.ScheduleCampaignDef(ctx, "c1", "operator:aaaa", true)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 12, 24, 0, 0, 0, 0, time.UTC) // 09:00 Seoul
	if d.State != scheduler.DefAwaitingApproval || !d.FireAt.Equal(want) || d.ScheduledBy != "operator:aaaa" {
		t.Errorf("scheduled %+v", d)
	}
	if _, _, err := s.NextCampaignTest(ctx, "c1", "x"); !errors.Is(err, dispatcher.ErrConflict) {
		t.Errorf("test send after scheduling: %v, want ErrConflict", err)
	}
	if _, _, err := s.EditCampaignDef(ctx, "c1", "x", func(*scheduler.Definition) error { return nil }); !errors.Is(err, dispatcher.ErrConflict) {
		t.Errorf("edit awaiting approval: %v, want ErrConflict", err)
	}
	_, err = s.ApproveCampaignDef(ctx, "c1", "operator:aaaa")
	var fb interface{ Forbidden() bool }
	if !errors.As(err, &fb) || !fb.Forbidden() {
		t.Errorf("self-approval: %v, want a Forbidden error", err)
	}
	d, err = s.ApproveCampaignDef(ctx, "c1", "admin:cccc")
	if err != nil || d.State != scheduler.DefScheduled || d.ApprovedBy != "admin:cccc" {
		t.Fatalf("approve: %+v, %v", d, err)
	}
	if _, err := s.ApproveCampaignDef(ctx, "c1", "admin:dddd"); !errors.Is(err, dispatcher.ErrConflict) {
		t.Errorf("second approval: %v, want ErrConflict", err)
	}

	// Editing an approved campaign sends it back for approval, with
	// fire_at computed again.
	_, after, err = s.EditCampaignDef(ctx, "c1", "operator:aaaa", func(d *scheduler.Definition) error {
		d.AudienceID, d.RecipientTimeZone = "aud", true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wantNY := time.Date(2026, 12, 24, 0, 0, 0, 0, time.UTC) // Seoul 09:00 is still the earliest
	if after.State != scheduler.DefAwaitingApproval || after.ApprovedBy != "" || !after.FireAt.Equal(wantNY) {
		t.Errorf("edit approved: %+v", after)
	}

	// Cancel, then nothing more.
	_, after, err = s.CancelCampaignDef(ctx, "c1", "operator:aaaa")
	if err != nil || after.State != scheduler.DefCancelled {
		t.Fatalf("cancel: %+v, %v", after, err)
	}
	if _, _, err := s.CancelCampaignDef(ctx, "c1", "operator:aaaa"); !errors.Is(err, dispatcher.ErrConflict) {
		t.Errorf("second cancel: %v, want ErrConflict", err)
	}
	if _, err := s.ScheduleCampaignDef(ctx, "c1", "x", false); !errors.Is(err, dispatcher.ErrConflict) {
		t.Errorf("schedule cancelled: %v, want ErrConflict", err)
	}

	// send_at in the past at scheduling time.
	mustCreate(t, s, newDef("late"))
	b.clock.Advance(30 * 24 * time.Hour)
	if _, err := s.ScheduleCampaignDef(ctx, "late", "x", false); !errors.Is(err, dispatcher.ErrInvalid) || !strings.Contains(err.Error(), "send_at:") {
		t.Errorf("schedule in the past: %v, want ErrInvalid naming send_at", err)
	}
	if _, err := s.CampaignDef(ctx, "nope"); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("unknown: %v", err)
	}
	if _, err := s.ScheduleCampaignDef(ctx, "nope", "x", false); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("schedule unknown: %v", err)
	}
}

// TestNoChangeWithoutItsAudit: a change whose audit record can't be
// written does not happen.
func TestNoChangeWithoutItsAudit(t *testing.T) {
	s, _ := setup(t)
	ctx := context.Background()
	addAudience(t, s, "aud", "")
	mustCreate(t, s, newDef("c1"))
	if _, err := s.w.ExecContext(ctx, `ALTER TABLE audit RENAME TO audit_gone`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateCampaignDef(ctx, newDef("c2"), "x"); err == nil {
		t.Error("create without an audit log succeeded")
	}
	if _, err := s.CampaignDef(ctx, "c2"); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("c2 exists without its audit record: %v", err)
	}
	if _, err := s.ScheduleCampaignDef(ctx, "c1", "x", false); err == nil {
		t.Error("schedule without an audit log succeeded")
	}
	if d, _ := s.CampaignDef(ctx, "c1"); d.State != scheduler.DefDraft {
		t.Errorf("c1 is %s without its audit record", d.State)
	}
}
