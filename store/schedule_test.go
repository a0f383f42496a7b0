package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/scheduler"
)

// scheduled creates a campaign with this send_at (UTC) and schedules it.
func scheduled(t *testing.T, s *Store, id, sendAt string) {
	t.Helper()
	d := newDef(id)
	d.SendAt, d.TimeZone, d.RatePerSecond = sendAt, "UTC", 250
	mustCreate(t, s, d)
	if _, err := s.ScheduleCampaignDef(context.Background(), id, "operator:aaaa", false); err != nil {
		t.Fatal(err)
	}
}

func TestClaimMissed(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	addAudience(t, s, "aud", "")
	scheduled(t, s, "old", "2026-11-26T22:00")
	scheduled(t, s, "recent", "2026-11-26T22:30")
	now := b.clock.Advance(90 * time.Minute) // 23:30: "old" is 90 min late
	due, missed, err := s.Claim(ctx, "one", now, 30*time.Second, time.Hour, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(due) != 1 || due[0].ID != "recent" || len(missed) != 1 || missed[0] != "old" {
		t.Fatalf("due %+v, missed %v", due, missed)
	}
	d, _ := s.CampaignDef(ctx, "old")
	if d.State != scheduler.DefMissed {
		t.Errorf("old is %s", d.State)
	}
	if _, err := s.Campaign(ctx, "old"); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("a missed campaign got an engine row: %v", err)
	}
	if e := lastAudit(t, s); e.Action != "campaign.start" {
		t.Errorf("last audit %+v", e)
	}
	// A missed campaign can be scheduled again, with a new send_at.
	if _, err := s.ScheduleCampaignDef(ctx, "old", "x", false); !errors.Is(err, dispatcher.ErrInvalid) {
		t.Errorf("reschedule with its past send_at: %v, want ErrInvalid", err)
	}
	if _, _, err := s.EditCampaignDef(ctx, "old", "x", func(d *scheduler.Definition) error { d.SendAt = "2026-11-27T08:00"; return nil }); err != nil {
		t.Fatalf("edit missed: %v", err)
	}
	if d, err := s.ScheduleCampaignDef(ctx, "old", "x", false); err != nil || d.State != scheduler.DefScheduled {
		t.Errorf("reschedule: %+v, %v", d, err)
	}
}

func TestProgressAfterCancel(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	addAudience(t, s, "aud", "")
	scheduled(t, s, "c", "2026-11-26T22:00")
	now := b.clock.Now()
	if due, _, err := s.Claim(ctx, "one", now, 30*time.Second, time.Hour, 5); err != nil || len(due) != 1 {
		t.Fatalf("Claim = %v, %v", due, err)
	}
	before, after, err := s.CancelCampaignDef(ctx, "c", "operator:aaaa")
	if err != nil || before.State != scheduler.DefRunning || after.State != scheduler.DefCancelled {
		t.Fatalf("cancel running: %+v %+v %v", before, after, err)
	}
	if err := s.Progress(ctx, "c", "one", scheduler.Cursor{Pos: 10}, 10, now.Add(time.Minute), false); !errors.Is(err, scheduler.ErrLeaseLost) {
		t.Errorf("progress after cancel: %v, want ErrLeaseLost", err)
	}
	if due, _, _ := s.Claim(ctx, "two", now.Add(time.Hour), 30*time.Second, time.Hour, 5); len(due) != 0 {
		t.Errorf("cancelled campaign claimed: %+v", due)
	}
}
