package store

import (
	"context"
	"errors"
	"sync"
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

func TestClaimOnceWithTwoOwners(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	addAudience(t, s, "aud", "")
	// The clock is 2026-11-26T22:00Z.
	for _, id := range []string{"a", "b", "c"} {
		scheduled(t, s, id, "2026-11-26T22:00:30")
	}
	scheduled(t, s, "later", "2026-11-27T08:00")
	if at, ok, err := s.NextFire(ctx); err != nil || !ok || !at.Equal(time.Date(2026, 11, 26, 22, 0, 30, 0, time.UTC)) {
		t.Fatalf("NextFire = %v, %v, %v", at, ok, err)
	}
	now := b.clock.Now()
	if due, _, err := s.Claim(ctx, "one", now, 30*time.Second, time.Hour, 10); err != nil || len(due) != 0 {
		t.Fatalf("Claim before the time = %v, %v", due, err)
	}

	now = b.clock.Advance(time.Minute)
	// Two instances: two stores on one file, as two processes would be.
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		got    = map[string]string{}
		owners = map[string]*Store{"one": s, "two": reopen(t, b)}
	)
	for owner, st := range owners {
		wg.Go(func() {
			for range 3 {
				due, _, err := st.Claim(ctx, owner, now, 30*time.Second, time.Hour, 1)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, c := range due {
					if prev, ok := got[c.ID]; ok {
						t.Errorf("%s claimed by %s and %s", c.ID, prev, owner)
					}
					got[c.ID] = owner
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(got) != 3 {
		t.Fatalf("claimed %v, want a, b and c once each", got)
	}
	for id := range got {
		d, err := s.CampaignDef(ctx, id)
		if err != nil || d.State != scheduler.DefRunning {
			t.Errorf("%s: %+v, %v", id, d, err)
		}
		rec := mustGet(t, s, id) // the engine's row, for the dispatcher
		if rec.Status != dispatcher.StatusRunning || rec.MessageRate != 250 {
			t.Errorf("engine row %+v", rec)
		}
	}
	if at, ok, _ := s.NextFire(ctx); !ok || at.Hour() != 8 {
		t.Errorf("NextFire after the claims = %v, %v; want the later one", at, ok)
	}
}

func TestClaimLeaseExpiryAndProgress(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	addAudience(t, s, "aud", "")
	scheduled(t, s, "c", "2026-11-26T22:00:10")
	now := b.clock.Advance(10 * time.Second)
	due, _, err := s.Claim(ctx, "one", now, 30*time.Second, time.Hour, 5)
	if err != nil || len(due) != 1 {
		t.Fatalf("Claim = %v, %v", due, err)
	}
	c := due[0]
	if c.ID != "c" || c.RatePerSecond != 250 || c.SendAt != "2026-11-26T22:00:10" || c.TimeZone != "UTC" || c.Cursor != (scheduler.Cursor{}) || string(c.Notification) == "" {
		t.Errorf("claimed %+v", c)
	}
	cur := scheduler.Cursor{Pos: 1000}
	if err := s.Progress(ctx, "c", "one", cur, 1000, now.Add(30*time.Second), false); err != nil {
		t.Fatal(err)
	}
	// Within the lease, nobody else takes it.
	now = b.clock.Advance(20 * time.Second)
	if due, _, _ := s.Claim(ctx, "two", now, 30*time.Second, time.Hour, 5); len(due) != 0 {
		t.Fatalf("taken within the lease: %+v", due)
	}
	// "one" dies; after its lease, "two" takes over where it stood.
	now = b.clock.Advance(20 * time.Second)
	due, _, err = s.Claim(ctx, "two", now, 30*time.Second, time.Hour, 5)
	if err != nil || len(due) != 1 || due[0].Cursor != cur || due[0].Published != 1000 {
		t.Fatalf("takeover = %+v, %v", due, err)
	}
	if err := s.Progress(ctx, "c", "one", scheduler.Cursor{Pos: 2000}, 2000, now, false); !errors.Is(err, scheduler.ErrLeaseLost) {
		t.Errorf("old owner's progress: %v, want ErrLeaseLost", err)
	}
	if err := s.Progress(ctx, "c", "two", scheduler.Cursor{Pos: 1500}, 1500, now, true); err != nil {
		t.Fatal(err)
	}
	d, _ := s.CampaignDef(ctx, "c")
	if !d.PublishedAll || d.Published != 1500 {
		t.Errorf("done: %+v", d)
	}
	// Published all: nobody takes it again, however late.
	now = b.clock.Advance(time.Hour)
	if due, _, _ := s.Claim(ctx, "three", now, 30*time.Second, time.Hour, 5); len(due) != 0 {
		t.Errorf("claimed after done: %+v", due)
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
