package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/scheduler"
)

// testScheduler checks scheduler.Store (with admin.CampaignDefs to
// schedule campaigns): each due campaign claimed by one instance among
// several, leases that hold until they expire, progress refused to an
// instance that lost its lease, campaigns too late missed, and an
// audience streamed in order.
func testScheduler(t *testing.T, b Backend, c *Clock) {
	ctx := context.Background()
	sched := b.Scheduler
	aud := importAudience(t, b, "aud", 5)
	schedule := func(id, sendAt string) {
		t.Helper()
		d := scheduler.Definition{ID: id, Name: "Sale " + id, Notification: json.RawMessage(`{"title":"Hi","body":"Sale"}`),
			AudienceID: aud.ID, RatePerSecond: 250, SendAt: sendAt, TimeZone: "UTC"}
		if _, err := b.CampaignDefs.CreateCampaignDef(ctx, d, "operator:aaaa"); err != nil {
			t.Fatalf("CreateCampaignDef %s: %v", id, err)
		}
		if _, err := b.CampaignDefs.ScheduleCampaignDef(ctx, id, "operator:aaaa", false); err != nil {
			t.Fatalf("ScheduleCampaignDef %s: %v", id, err)
		}
	}
	// The clock is 2026-11-26T22:00Z.
	for _, id := range []string{"a", "b", "c"} {
		schedule(id, "2026-11-26T22:00:30")
	}
	schedule("late", "2026-11-26T22:10")
	if at, ok, err := sched.NextFire(ctx); err != nil || !ok || !at.Equal(time.Date(2026, 11, 26, 22, 0, 30, 0, time.UTC)) {
		t.Fatalf("NextFire = %v, %v, %v; want 22:00:30", at, ok, err)
	}
	const lease, maxLate = 30 * time.Second, time.Hour
	claim := func(st scheduler.Store, owner string, now time.Time, max int) []scheduler.Campaign {
		t.Helper()
		due, missed, err := st.Claim(ctx, owner, now, lease, maxLate, max)
		if err != nil {
			t.Fatal(err)
		}
		if len(missed) > 0 {
			t.Errorf("Claim by %s at %v: missed %v", owner, now, missed)
		}
		return due
	}
	if due := claim(sched, "one", c.Now(), 10); len(due) != 0 {
		t.Fatalf("Claim before the time = %+v", due)
	}

	// Two instances claim one at a time, three times each, at once: each
	// due campaign goes to one of them.
	now := c.Advance(time.Minute)
	p := peer(t, b, c)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		holder = map[string]string{}
	)
	for owner, st := range map[string]scheduler.Store{"one": sched, "two": p.Scheduler} {
		wg.Go(func() {
			for range 3 {
				due, _, err := st.Claim(ctx, owner, now, lease, maxLate, 1)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, dc := range due {
					if prev, ok := holder[dc.ID]; ok {
						t.Errorf("%s claimed by %s and by %s", dc.ID, prev, owner)
					}
					holder[dc.ID] = owner
					if dc.AudienceID != aud.ID || dc.RatePerSecond != 250 || dc.SendAt != "2026-11-26T22:00:30" || dc.TimeZone != "UTC" ||
						len(dc.Notification) == 0 || dc.Cursor != (scheduler.Cursor{}) || dc.Published != 0 {
						t.Errorf("claimed %+v", dc)
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(holder) != 3 || holder["late"] != "" {
		t.Fatalf("claimed %v, want a, b and c once each", holder)
	}
	// Each is running, with the engine's row there for every instance's
	// dispatcher.
	for id := range holder {
		if d, err := b.CampaignDefs.CampaignDef(ctx, id); err != nil || d.State != scheduler.DefRunning {
			t.Errorf("%s = %+v, %v; want running", id, d, err)
		}
		if rec, err := b.Campaigns.Campaign(ctx, id); err != nil || rec.Status != dispatcher.StatusRunning || rec.MessageRate != 250 {
			t.Errorf("engine row of %s = %+v, %v", id, rec, err)
		}
	}
	if at, ok, err := sched.NextFire(ctx); err != nil || !ok || !at.Equal(time.Date(2026, 11, 26, 22, 10, 0, 0, time.UTC)) {
		t.Errorf("NextFire after the claims = %v, %v, %v; want late's, 22:10", at, ok, err)
	}
	if due := claim(sched, "three", now, 10); len(due) != 0 {
		t.Errorf("Claim while the leases hold = %+v", due)
	}
	// In use, the audience cannot be deleted.
	if err := b.Audiences.DeleteAudience(ctx, aud.ID, "operator:aaaa"); !errors.Is(err, dispatcher.ErrConflict) {
		t.Errorf("DeleteAudience of an audience in use: %v, want ErrConflict", err)
	}

	// Progress: only the holder, which renews its lease.
	at := scheduler.Cursor{Pos: 2}
	if err := sched.Progress(ctx, "a", "three", at, 2, now.Add(time.Minute), false); !errors.Is(err, scheduler.ErrLeaseLost) {
		t.Errorf("Progress by a stranger: %v, want ErrLeaseLost", err)
	}
	for _, id := range []string{"a", "b"} {
		if err := sched.Progress(ctx, id, holder[id], at, 2, now.Add(map[string]time.Duration{"a": time.Minute, "b": lease}[id]), false); err != nil {
			t.Fatalf("Progress of %s by its holder: %v", id, err)
		}
	}
	// b and c expire, a holds on: another instance takes b and c over
	// where their cursors stand, and their old holders lose them.
	now = c.Advance(45 * time.Second)
	due := claim(sched, "three", now, 10)
	got := map[string]scheduler.Campaign{}
	for _, dc := range due {
		got[dc.ID] = dc
	}
	if len(got) != 2 || got["b"].Cursor != at || got["b"].Published != 2 || got["c"].Cursor != (scheduler.Cursor{}) {
		t.Fatalf("take-over = %+v, want b at %+v and c at the start", due, at)
	}
	if err := sched.Progress(ctx, "b", holder["b"], scheduler.Cursor{Pos: 3}, 3, now.Add(lease), false); !errors.Is(err, scheduler.ErrLeaseLost) {
		t.Errorf("Progress by b's old holder: %v, want ErrLeaseLost", err)
	}
	// Done, a is never claimed again.
	if err := sched.Progress(ctx, "a", holder["a"], scheduler.Cursor{Pos: 5}, 5, now, true); err != nil {
		t.Fatal(err)
	}
	if d, err := b.CampaignDefs.CampaignDef(ctx, "a"); err != nil || !d.PublishedAll || d.Published != 5 {
		t.Errorf("a done = %+v, %v; want published_all, 5 published", d, err)
	}
	now = c.Advance(5 * time.Minute)
	var ids []string
	for _, dc := range claim(sched, "four", now, 10) {
		ids = append(ids, dc.ID)
	}
	slices.Sort(ids)
	if fmt.Sprint(ids) != "[b c]" {
		t.Errorf("claimed after a was done: %v, want [b c]", ids)
	}

	// Past its fire time by more than maxLate, a campaign is missed.
	now = c.Advance(2 * time.Hour)
	due, missed, err := sched.Claim(ctx, "five", now, lease, maxLate, 10)
	if err != nil || !slices.Contains(missed, "late") || slices.ContainsFunc(due, func(dc scheduler.Campaign) bool { return dc.ID == "late" }) {
		t.Errorf("Claim 2h after late's time = %+v, missed %v, %v; want late missed", due, missed, err)
	}
	if d, err := b.CampaignDefs.CampaignDef(ctx, "late"); err != nil || d.State != scheduler.DefMissed {
		t.Errorf("late = %+v, %v; want missed", d, err)
	}
	if _, err := b.Campaigns.Campaign(ctx, "late"); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("a missed campaign has an engine row: %v", err)
	}
	if _, ok, err := sched.NextFire(ctx); err != nil || ok {
		t.Errorf("NextFire with nothing scheduled = %v, %v", ok, err)
	}

	// The audience streams in pos order, from the start or after a
	// cursor, in chunks of at most n.
	var pos []int64
	stream := func(after scheduler.Cursor) []string {
		t.Helper()
		var out []string
		pos = pos[:0]
		last := after.Pos
		err := sched.Recipients(ctx, aud.ID, false, after, 2, func(rs []scheduler.Recipient) error {
			if len(rs) == 0 || len(rs) > 2 {
				t.Errorf("a chunk of %d", len(rs))
			}
			for _, r := range rs {
				if r.Pos <= last {
					t.Errorf("pos %d after %d", r.Pos, last)
				}
				last = r.Pos
				out = append(out, r.UserID)
				pos = append(pos, r.Pos)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	all := stream(scheduler.Cursor{})
	if fmt.Sprint(all) != "[u1 u2 u3 u4 u5]" {
		t.Fatalf("Recipients = %v", all)
	}
	second := pos[1]
	if rest := stream(scheduler.Cursor{Pos: second}); fmt.Sprint(rest) != fmt.Sprint(all[2:]) {
		t.Errorf("Recipients after pos %d = %v, want %v", second, rest, all[2:])
	}
}
