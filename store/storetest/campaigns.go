package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/pushd/pushd/dispatcher"
)

// testCampaigns checks dispatcher.CampaignStore: control state with its
// transitions and revisions, and counters that add up exactly.
func testCampaigns(t *testing.T, b Backend, c *Clock) {
	ctx := context.Background()
	cs := b.Campaigns

	a, err := cs.EnsureCampaign(ctx, "spring", 10)
	if err != nil {
		t.Fatalf("EnsureCampaign: %v", err)
	}
	if a.ID != "spring" || a.Status != dispatcher.StatusRunning || a.MessageRate != 10 || a.RateOverride != nil || a.Rev <= 0 {
		t.Fatalf("new campaign = %+v, want running at 10/s with a rev", a)
	}
	if !a.CreatedAt.Equal(c.Now()) {
		t.Errorf("CreatedAt = %v, want the store's clock %v", a.CreatedAt, c.Now())
	}
	// Idempotent: the same rate again changes nothing, not even the rev.
	if again, err := cs.EnsureCampaign(ctx, "spring", 10); err != nil || again.Rev != a.Rev {
		t.Errorf("EnsureCampaign again = rev %d, %v; want rev %d unchanged", again.Rev, err, a.Rev)
	}
	c.Advance(time.Second)
	other, err := cs.EnsureCampaign(ctx, "autumn", 0)
	if err != nil || other.Rev <= a.Rev {
		t.Fatalf("second campaign = %+v, %v; want a rev above %d", other, err, a.Rev)
	}
	if _, err := cs.EnsureCampaign(ctx, "bad-rate", math.Inf(1)); err == nil {
		t.Error("EnsureCampaign with an infinite rate succeeded")
	}

	// Every change of control state takes a new, higher rev; a reader
	// polling CampaignChanges since the last rev it saw gets each
	// changed campaign once, in rev order.
	seen := other.Rev
	steps := []struct {
		name string
		do   func() (dispatcher.CampaignRecord, error)
		want func(dispatcher.CampaignRecord) bool
	}{
		{"new message rate", func() (dispatcher.CampaignRecord, error) { return cs.EnsureCampaign(ctx, "spring", 20) },
			func(r dispatcher.CampaignRecord) bool { return r.MessageRate == 20 && r.Rate() == 20 }},
		{"pause", func() (dispatcher.CampaignRecord, error) {
			_, after, err := cs.SetCampaignStatus(ctx, "spring", dispatcher.StatusPaused, dispatcher.StatusRunning)
			return after, err
		}, func(r dispatcher.CampaignRecord) bool { return r.Status == dispatcher.StatusPaused }},
		{"operator rate", func() (dispatcher.CampaignRecord, error) {
			rate := 5.0
			_, after, err := cs.SetCampaignRate(ctx, "spring", &rate)
			return after, err
		}, func(r dispatcher.CampaignRecord) bool {
			return r.RateOverride != nil && *r.RateOverride == 5 && r.Rate() == 5
		}},
		{"rate cleared", func() (dispatcher.CampaignRecord, error) {
			_, after, err := cs.SetCampaignRate(ctx, "spring", nil)
			return after, err
		}, func(r dispatcher.CampaignRecord) bool { return r.RateOverride == nil && r.Rate() == 20 }},
		{"resume", func() (dispatcher.CampaignRecord, error) {
			_, after, err := cs.SetCampaignStatus(ctx, "spring", dispatcher.StatusRunning, dispatcher.StatusPaused)
			return after, err
		}, func(r dispatcher.CampaignRecord) bool { return r.Status == dispatcher.StatusRunning }},
		{"finish", func() (dispatcher.CampaignRecord, error) {
			_, after, err := cs.SetCampaignStatus(ctx, "autumn", dispatcher.StatusFinished, dispatcher.StatusRunning)
			return after, err
		}, func(r dispatcher.CampaignRecord) bool { return r.Status == dispatcher.StatusFinished }},
		{"batches again after finished", func() (dispatcher.CampaignRecord, error) { return cs.EnsureCampaign(ctx, "autumn", 0) },
			func(r dispatcher.CampaignRecord) bool { return r.Status == dispatcher.StatusRunning }},
		{"cancel", func() (dispatcher.CampaignRecord, error) {
			_, after, err := cs.SetCampaignStatus(ctx, "spring", dispatcher.StatusCancelled)
			return after, err
		}, func(r dispatcher.CampaignRecord) bool { return r.Status == dispatcher.StatusCancelled }},
	}
	for _, st := range steps {
		rec, err := st.do()
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if !st.want(rec) {
			t.Errorf("%s: record %+v", st.name, rec)
		}
		if rec.Rev <= seen {
			t.Errorf("%s: rev %d, want above %d", st.name, rec.Rev, seen)
		}
		changes, err := cs.CampaignChanges(ctx, seen)
		if err != nil {
			t.Fatal(err)
		}
		if len(changes) != 1 || changes[0].ID != rec.ID || changes[0].Rev != rec.Rev {
			t.Errorf("%s: CampaignChanges(%d) = %+v, want only %s at rev %d", st.name, seen, changes, rec.ID, rec.Rev)
		}
		seen = rec.Rev
	}

	// Conflicts: a transition from a state the campaign is not in is
	// refused and changes nothing; cancelled is final.
	for _, tc := range []struct {
		name string
		id   string
		to   dispatcher.Status
		from []dispatcher.Status
		want error
	}{
		{"resume a cancelled campaign", "spring", dispatcher.StatusRunning, []dispatcher.Status{dispatcher.StatusPaused}, dispatcher.ErrConflict},
		{"pause a cancelled campaign", "spring", dispatcher.StatusPaused, []dispatcher.Status{dispatcher.StatusRunning}, dispatcher.ErrConflict},
		{"resume a running campaign", "autumn", dispatcher.StatusRunning, []dispatcher.Status{dispatcher.StatusPaused}, dispatcher.ErrConflict},
		{"unknown campaign", "nope", dispatcher.StatusPaused, nil, dispatcher.ErrNotFound},
	} {
		if _, _, err := cs.SetCampaignStatus(ctx, tc.id, tc.to, tc.from...); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, _, err := cs.SetCampaignRate(ctx, "nope", nil); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("SetCampaignRate of an unknown campaign: %v, want ErrNotFound", err)
	}
	if _, err := cs.Campaign(ctx, "nope"); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("Campaign of an unknown campaign: %v, want ErrNotFound", err)
	}
	if changes, err := cs.CampaignChanges(ctx, seen); err != nil || len(changes) != 0 {
		t.Errorf("after the refused changes: CampaignChanges(%d) = %+v, %v; want none", seen, changes, err)
	}
	// A cancelled campaign's batches leave it cancelled.
	if rec, err := cs.EnsureCampaign(ctx, "spring", 30); err != nil || rec.Status != dispatcher.StatusCancelled || rec.MessageRate != 30 || rec.Rev <= seen {
		t.Errorf("EnsureCampaign of a cancelled campaign = %+v, %v; want it still cancelled, at 30/s, rev above %d", rec, err, seen)
	} else {
		seen = rec.Rev
	}

	// Counters add up, from several writers at once, and take no rev.
	const writers, rounds = 4, 10
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range rounds {
				d := map[string]dispatcher.Counters{"autumn": {Received: 3, Sent: 2, Failed: 1}, "spring": {Filtered: 1}}
				if err := cs.AddCampaignCounters(ctx, d); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	want := dispatcher.Counters{Received: 3 * writers * rounds, Sent: 2 * writers * rounds, Failed: writers * rounds}
	if rec, err := cs.Campaign(ctx, "autumn"); err != nil || rec.Counters != want {
		t.Errorf("autumn counters = %+v, %v; want %+v", rec.Counters, err, want)
	}
	// A delta for an unknown campaign is skipped, the others committed.
	err = cs.AddCampaignCounters(ctx, map[string]dispatcher.Counters{"nope": {Sent: 1}, "autumn": {Dropped: 1, Cancelled: 2}})
	if !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("AddCampaignCounters with an unknown campaign: %v, want ErrNotFound", err)
	}
	want.Dropped, want.Cancelled = 1, 2
	rec, err := cs.Campaign(ctx, "autumn")
	if err != nil || rec.Counters != want {
		t.Errorf("autumn counters = %+v, %v; want %+v", rec.Counters, err, want)
	}
	if changes, err := cs.CampaignChanges(ctx, seen); err != nil || len(changes) != 0 {
		t.Errorf("counters took a rev: CampaignChanges(%d) = %+v, %v", seen, changes, err)
	}

	all, err := cs.Campaigns(ctx)
	if err != nil || len(all) != 2 || all[0].ID != "autumn" || all[1].ID != "spring" {
		t.Errorf("Campaigns = %+v, %v; want autumn then spring (newest first)", all, err)
	}
}

// testLedger checks dispatcher.Ledger: entries, a producer's message
// counted once, and claims with one holder that end at their time or at
// a release.
func testLedger(t *testing.T, b Backend, c *Clock) {
	ctx := context.Background()
	l := b.Ledger
	if _, err := b.Campaigns.EnsureCampaign(ctx, "camp", 0); err != nil {
		t.Fatal(err)
	}
	if e, err := l.LedgerEntry(ctx, "none"); err != nil || e.Resolved != nil || e.Rest != nil || e.Retry != nil {
		t.Errorf("LedgerEntry of an unknown key = %+v, %v; want the zero entry", e, err)
	}

	// RecordReceived: the first copy creates the entry and counts; a
	// second changes nothing.
	recv := dispatcher.Counters{Received: 10, Filtered: 1}
	for i, want := range []bool{true, false} {
		created, err := l.RecordReceived(ctx, "m1", "camp", []byte{0x01, 0x00}, recv)
		if err != nil || created != want {
			t.Fatalf("RecordReceived #%d = %v, %v; want %v", i+1, created, err, want)
		}
	}
	if e, err := l.LedgerEntry(ctx, "m1"); err != nil || !bytes.Equal(e.Resolved, []byte{0x01, 0x00}) {
		t.Errorf("entry m1 = %+v, %v", e, err)
	}

	// RecordLedger: entries and counters in one go.
	entries := map[string]dispatcher.LedgerEntry{
		"m1": {Resolved: []byte{0xff, 0x03}, Rest: []byte{0x00, 0x00}, Retry: []byte{0x00, 0x00}},
		"m2": {Resolved: []byte{0x0f}},
	}
	if err := l.RecordLedger(ctx, entries, map[string]dispatcher.Counters{"camp": {Sent: 9}}); err != nil {
		t.Fatal(err)
	}
	for k, want := range entries {
		e, err := l.LedgerEntry(ctx, k)
		if err != nil || !bytes.Equal(e.Resolved, want.Resolved) {
			t.Errorf("entry %s = %+v, %v; want resolved %x", k, e, err, want.Resolved)
		}
	}
	wantCounts := recv.Add(dispatcher.Counters{Sent: 9})
	if rec, err := b.Campaigns.Campaign(ctx, "camp"); err != nil || rec.Counters != wantCounts {
		t.Errorf("counters = %+v, %v; want %+v", rec.Counters, err, wantCounts)
	}

	// Claims: one holder among several instances claiming at once.
	p := peer(t, b, c)
	now := c.Now()
	until := now.Add(30 * time.Second)
	var (
		mu      sync.Mutex
		holders = map[string]int{}
		wg      sync.WaitGroup
	)
	for i := range 6 {
		led := []dispatcher.Ledger{b.Ledger, p.Ledger}[i%2]
		wg.Go(func() {
			_, holder, err := led.ClaimLedger(ctx, "m3", fmt.Sprintf("owner-%d", i), now, until)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			holders[holder]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(holders) != 1 {
		t.Fatalf("claims at once saw holders %v, want one for all", holders)
	}
	var first string
	for h := range holders {
		first = h
	}
	claim := func(owner string, at time.Time) string {
		t.Helper()
		e, holder, err := l.ClaimLedger(ctx, "m3", owner, at, at.Add(30*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if holder != "" && e.ClaimedUntil.IsZero() {
			t.Errorf("claim by %s: held by %s with no ClaimedUntil", owner, holder)
		}
		return holder
	}
	if h := claim("late", now.Add(29*time.Second)); h != first {
		t.Errorf("claim before the end of %s's: holder %q", first, h)
	}
	// Renewed by its holder, the claim holds on; a renewal by another
	// owner changes nothing.
	if err := l.RenewClaims(ctx, first, []string{"m3", "unknown"}, now.Add(60*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := l.RenewClaims(ctx, "late", []string{"m3"}, now.Add(600*time.Second)); err != nil {
		t.Fatal(err)
	}
	if h := claim("late", now.Add(45*time.Second)); h != first {
		t.Errorf("claim after renewal: holder %q, want %s", h, first)
	}
	// Expired, it goes to the next claimer.
	if h := claim("late", now.Add(61*time.Second)); h != "late" {
		t.Errorf("claim after expiry: holder %q, want late", h)
	}
	// Released by a write, it can be claimed at once.
	if err := l.RecordLedger(ctx, map[string]dispatcher.LedgerEntry{"m3": {Resolved: []byte{0x01}, Release: true}}, nil); err != nil {
		t.Fatal(err)
	}
	if h := claim(first, now.Add(62*time.Second)); h != first {
		t.Errorf("claim after release: holder %q, want %s", h, first)
	}
	if e, err := l.LedgerEntry(ctx, "m3"); err != nil || !bytes.Equal(e.Resolved, []byte{0x01}) {
		t.Errorf("claims lost the entry: %+v, %v", e, err)
	}
}

// testLimits checks dispatcher.LimitStore: settings by level, set and
// deleted idempotently.
func testLimits(t *testing.T, b Backend, _ *Clock) {
	ctx := context.Background()
	ls := b.Limits
	check := func(step string, want map[string]dispatcher.LimitSetting) {
		t.Helper()
		got, err := ls.RateLimits(ctx)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if len(got) != len(want) {
			t.Errorf("%s: RateLimits = %v, want %v", step, got, want)
		}
		for k, w := range want {
			if got[k] != w {
				t.Errorf("%s: RateLimits[%s] = %+v, want %+v", step, k, got[k], w)
			}
		}
	}
	check("empty", nil)
	global := dispatcher.LimitSetting{PerSecond: 1000, Burst: 100}
	for range 2 {
		if err := ls.SetRateLimit(ctx, "global", &global); err != nil {
			t.Fatal(err)
		}
	}
	check("set twice", map[string]dispatcher.LimitSetting{"global": global})
	apns := dispatcher.LimitSetting{PerSecond: 0.5, Burst: 1}
	if err := ls.SetRateLimit(ctx, "apns", &apns); err != nil {
		t.Fatal(err)
	}
	global.PerSecond = 250
	if err := ls.SetRateLimit(ctx, "global", &global); err != nil {
		t.Fatal(err)
	}
	check("changed", map[string]dispatcher.LimitSetting{"global": global, "apns": apns})
	for range 2 {
		if err := ls.SetRateLimit(ctx, "global", nil); err != nil {
			t.Fatalf("delete: %v", err)
		}
	}
	check("deleted twice", map[string]dispatcher.LimitSetting{"apns": apns})
}
