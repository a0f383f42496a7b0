package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pushd/pushd/dispatcher"
)

func countersOf(id string, received, sent int64) map[string]dispatcher.Counters {
	return map[string]dispatcher.Counters{id: {Received: received, Sent: sent}}
}

func ptr(f float64) *float64 { return &f }

func assertRecord(t *testing.T, got, want dispatcher.CampaignRecord) {
	t.Helper()
	if !sameRate(got.RateOverride, want.RateOverride) {
		t.Errorf("RateOverride = %v, want %v", fmtRate(got.RateOverride), fmtRate(want.RateOverride))
	}
	got.RateOverride, want.RateOverride = nil, nil
	if !got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) {
		t.Errorf("times = %v/%v, want %v/%v", got.CreatedAt, got.UpdatedAt, want.CreatedAt, want.UpdatedAt)
	}
	got.CreatedAt, got.UpdatedAt, want.CreatedAt, want.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if got != want {
		t.Errorf("record = %+v, want %+v", got, want)
	}
}

func fmtRate(r *float64) string {
	if r == nil {
		return "nil"
	}
	return fmt.Sprint(*r)
}

func mustEnsure(t *testing.T, s *Store, id string, rate float64) dispatcher.CampaignRecord {
	t.Helper()
	rec, err := s.EnsureCampaign(context.Background(), id, rate)
	if err != nil {
		t.Fatalf("EnsureCampaign(%q, %v): %v", id, rate, err)
	}
	return rec
}

func mustStatus(t *testing.T, s *Store, id string, to dispatcher.Status) {
	t.Helper()
	if _, _, err := s.SetCampaignStatus(context.Background(), id, to); err != nil {
		t.Fatalf("SetCampaignStatus(%q, %s): %v", id, to, err)
	}
}

func mustGet(t *testing.T, s *Store, id string) dispatcher.CampaignRecord {
	t.Helper()
	rec, err := s.Campaign(context.Background(), id)
	if err != nil {
		t.Fatalf("Campaign(%q): %v", id, err)
	}
	return rec
}

func TestEnsureCampaign(t *testing.T) {
	tests := []struct {
		name       string
		prior      dispatcher.Status // "" for no campaign yet
		priorRate  float64
		rate       float64
		wantStatus dispatcher.Status
		wantBump   bool
	}{
		{name: "new", rate: 500, wantStatus: dispatcher.StatusRunning, wantBump: true},
		{name: "new without limit", rate: 0, wantStatus: dispatcher.StatusRunning, wantBump: true},
		{name: "running same rate", prior: dispatcher.StatusRunning, priorRate: 500, rate: 500, wantStatus: dispatcher.StatusRunning},
		{name: "running new rate", prior: dispatcher.StatusRunning, priorRate: 500, rate: 50, wantStatus: dispatcher.StatusRunning, wantBump: true},
		{name: "finished same rate", prior: dispatcher.StatusFinished, priorRate: 500, rate: 500, wantStatus: dispatcher.StatusRunning, wantBump: true},
		{name: "finished new rate", prior: dispatcher.StatusFinished, priorRate: 500, rate: 5, wantStatus: dispatcher.StatusRunning, wantBump: true},
		{name: "paused same rate", prior: dispatcher.StatusPaused, priorRate: 500, rate: 500, wantStatus: dispatcher.StatusPaused},
		{name: "paused new rate", prior: dispatcher.StatusPaused, priorRate: 500, rate: 7, wantStatus: dispatcher.StatusPaused, wantBump: true},
		{name: "cancelled same rate", prior: dispatcher.StatusCancelled, priorRate: 500, rate: 500, wantStatus: dispatcher.StatusCancelled},
		{name: "cancelled new rate", prior: dispatcher.StatusCancelled, priorRate: 500, rate: 0, wantStatus: dispatcher.StatusCancelled, wantBump: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, b := setup(t)
			ctx := context.Background()
			mustEnsure(t, s, "other", 1) // revs are shared: start above 0
			var before dispatcher.CampaignRecord
			if tt.prior != "" {
				mustEnsure(t, s, "c", tt.priorRate)
				if tt.prior != dispatcher.StatusRunning {
					mustStatus(t, s, "c", tt.prior)
				}
				before = mustGet(t, s, "c")
			}
			now := b.clock.Advance(time.Minute)

			got, err := s.EnsureCampaign(ctx, "c", tt.rate)
			if err != nil {
				t.Fatalf("EnsureCampaign: %v", err)
			}
			if got.ID != "c" || got.Status != tt.wantStatus || got.MessageRate != tt.rate {
				t.Errorf("got %s %s rate %v, want c %s rate %v", got.ID, got.Status, got.MessageRate, tt.wantStatus, tt.rate)
			}
			switch {
			case tt.prior == "":
				if !got.CreatedAt.Equal(now) || !got.UpdatedAt.Equal(now) || got.Rev <= 1 {
					t.Errorf("new record %+v: want created and updated %v, rev > 1", got, now)
				}
			case tt.wantBump:
				if got.Rev <= before.Rev || !got.UpdatedAt.Equal(now) || !got.CreatedAt.Equal(before.CreatedAt) {
					t.Errorf("changed record %+v: want rev > %d, updated %v, created %v", got, before.Rev, now, before.CreatedAt)
				}
			default:
				assertRecord(t, got, before)
			}
			assertRecord(t, mustGet(t, s, "c"), got)
		})
	}
}

func TestEnsureCampaignRejects(t *testing.T) {
	s, _ := setup(t)
	for _, tt := range []struct {
		id   string
		rate float64
	}{
		{"", 1},
		{"c", -1},
		{"c", math.NaN()},
		{"c", math.Inf(1)},
	} {
		if _, err := s.EnsureCampaign(context.Background(), tt.id, tt.rate); err == nil {
			t.Errorf("EnsureCampaign(%q, %v) succeeded, want an error", tt.id, tt.rate)
		}
	}
	if got, err := s.Campaigns(context.Background()); err != nil || len(got) != 0 {
		t.Errorf("Campaigns = %v, %v; want none", got, err)
	}
}

func TestSetCampaignStatus(t *testing.T) {
	const (
		running   = dispatcher.StatusRunning
		paused    = dispatcher.StatusPaused
		cancelled = dispatcher.StatusCancelled
		finished  = dispatcher.StatusFinished
	)
	tests := []struct {
		name     string
		id       string
		prior    dispatcher.Status
		to       dispatcher.Status
		from     []dispatcher.Status
		wantErr  error // errors.Is; nil for success
		wantBump bool
	}{
		{name: "pause", prior: running, to: paused, from: []dispatcher.Status{running}, wantBump: true},
		{name: "resume", prior: paused, to: running, from: []dispatcher.Status{paused}, wantBump: true},
		{name: "cancel running", prior: running, to: cancelled, from: []dispatcher.Status{running, paused, finished}, wantBump: true},
		{name: "cancel paused", prior: paused, to: cancelled, from: []dispatcher.Status{running, paused, finished}, wantBump: true},
		{name: "finish", prior: running, to: finished, from: []dispatcher.Status{running}, wantBump: true},
		{name: "any from", prior: paused, to: finished, wantBump: true},
		{name: "resume cancelled", prior: cancelled, to: running, from: []dispatcher.Status{paused}, wantErr: dispatcher.ErrConflict},
		{name: "pause paused", prior: paused, to: paused, from: []dispatcher.Status{running}, wantErr: dispatcher.ErrConflict},
		{name: "pause finished", prior: finished, to: paused, from: []dispatcher.Status{running}, wantErr: dispatcher.ErrConflict},
		{name: "same status allowed", prior: paused, to: paused, from: []dispatcher.Status{running, paused}},
		{name: "same status any", prior: running, to: running},
		{name: "unknown campaign", id: "nope", prior: running, to: paused, wantErr: dispatcher.ErrNotFound},
		{name: "unknown campaign with from", id: "nope", prior: running, to: paused, from: []dispatcher.Status{running}, wantErr: dispatcher.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, b := setup(t)
			ctx := context.Background()
			mustEnsure(t, s, "c", 10)
			if tt.prior != running {
				mustStatus(t, s, "c", tt.prior)
			}
			stored := mustGet(t, s, "c")
			now := b.clock.Advance(time.Minute)
			id := tt.id
			if id == "" {
				id = "c"
			}

			before, after, err := s.SetCampaignStatus(ctx, id, tt.to, tt.from...)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("SetCampaignStatus = %v, want %v", err, tt.wantErr)
				}
				assertRecord(t, mustGet(t, s, "c"), stored)
				return
			}
			if err != nil {
				t.Fatalf("SetCampaignStatus: %v", err)
			}
			assertRecord(t, before, stored)
			if after.Status != tt.to {
				t.Errorf("after.Status = %s, want %s", after.Status, tt.to)
			}
			if tt.wantBump {
				if after.Rev <= before.Rev || !after.UpdatedAt.Equal(now) {
					t.Errorf("after = %+v: want rev > %d and updated %v", after, before.Rev, now)
				}
			} else {
				assertRecord(t, after, before)
			}
			after.Status = before.Status // the rest is unchanged
			after.Rev, after.UpdatedAt = before.Rev, before.UpdatedAt
			assertRecord(t, after, before)
		})
	}
}

func TestSetCampaignStatusRejectsUnknownStatus(t *testing.T) {
	s, _ := setup(t)
	mustEnsure(t, s, "c", 0)
	ctx := context.Background()
	if _, _, err := s.SetCampaignStatus(ctx, "c", "sleeping"); err == nil {
		t.Error("SetCampaignStatus to an unknown status succeeded")
	}
	if _, _, err := s.SetCampaignStatus(ctx, "c", dispatcher.StatusPaused, "sleeping"); err == nil {
		t.Error("SetCampaignStatus from an unknown status succeeded")
	}
}

func TestSetCampaignRate(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	mustEnsure(t, s, "c", 500)

	steps := []struct {
		name     string
		rate     *float64
		wantRate float64 // effective
		wantBump bool
	}{
		{name: "set", rate: ptr(5), wantRate: 5, wantBump: true},
		{name: "same", rate: ptr(5), wantRate: 5},
		{name: "change", rate: ptr(7.5), wantRate: 7.5, wantBump: true},
		{name: "no limit", rate: ptr(0), wantRate: 0, wantBump: true},
		{name: "clear", rate: nil, wantRate: 500, wantBump: true},
		{name: "clear again", rate: nil, wantRate: 500},
	}
	for _, st := range steps {
		now := b.clock.Advance(time.Second)
		before, after, err := s.SetCampaignRate(ctx, "c", st.rate)
		if err != nil {
			t.Fatalf("%s: SetCampaignRate: %v", st.name, err)
		}
		if !sameRate(after.RateOverride, st.rate) || after.Rate() != st.wantRate {
			t.Errorf("%s: after override %s rate %v, want %s rate %v", st.name, fmtRate(after.RateOverride), after.Rate(), fmtRate(st.rate), st.wantRate)
		}
		if st.wantBump != (after.Rev > before.Rev) {
			t.Errorf("%s: rev %d -> %d, want bumped %v", st.name, before.Rev, after.Rev, st.wantBump)
		}
		if st.wantBump && !after.UpdatedAt.Equal(now) {
			t.Errorf("%s: updated %v, want %v", st.name, after.UpdatedAt, now)
		}
		assertRecord(t, mustGet(t, s, "c"), after)
	}

	// The store keeps its own copy of the rate.
	r := 9.0
	if _, _, err := s.SetCampaignRate(ctx, "c", &r); err != nil {
		t.Fatal(err)
	}
	r = 1
	if got := mustGet(t, s, "c").Rate(); got != 9 {
		t.Errorf("rate after caller changed its variable = %v, want 9", got)
	}

	if _, _, err := s.SetCampaignRate(ctx, "nope", ptr(1)); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("SetCampaignRate(unknown) = %v, want ErrNotFound", err)
	}
	for _, bad := range []float64{-1, math.NaN(), math.Inf(1)} {
		if _, _, err := s.SetCampaignRate(ctx, "c", ptr(bad)); err == nil {
			t.Errorf("SetCampaignRate(%v) succeeded", bad)
		}
	}
}

func TestCampaignNotFound(t *testing.T) {
	s, _ := setup(t)
	if _, err := s.Campaign(context.Background(), "nope"); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("Campaign(unknown) = %v, want ErrNotFound", err)
	}
}

func TestCampaignsNewestFirst(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	got, err := s.Campaigns(ctx)
	if err != nil || len(got) != 0 {
		t.Fatalf("Campaigns on an empty store = %v, %v", got, err)
	}
	for _, id := range []string{"b", "a", "c"} {
		b.clock.Advance(time.Second)
		mustEnsure(t, s, id, 0)
	}
	// Changes after creation do not reorder.
	mustStatus(t, s, "b", dispatcher.StatusPaused)
	got, err = s.Campaigns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range got {
		ids = append(ids, r.ID)
	}
	if want := []string{"c", "a", "b"}; !slices.Equal(ids, want) {
		t.Errorf("Campaigns = %v, want %v", ids, want)
	}
}

// TestRevs checks that every control change, on any campaign, takes a rev
// above all before it, that counters take none, and that CampaignChanges
// returns exactly the campaigns changed since a rev.
func TestRevs(t *testing.T) {
	s, _ := setup(t)
	ctx := context.Background()
	var last int64
	changes := func(since int64) []string {
		t.Helper()
		recs, err := s.CampaignChanges(ctx, since)
		if err != nil {
			t.Fatalf("CampaignChanges(%d): %v", since, err)
		}
		var ids []string
		for i, r := range recs {
			if i > 0 && r.Rev <= recs[i-1].Rev {
				t.Errorf("CampaignChanges(%d) not in rev order: %+v", since, recs)
			}
			ids = append(ids, r.ID)
		}
		return ids
	}

	steps := []struct {
		name string
		do   func() (int64, error) // returns the rev of the record after the step
		want []string              // CampaignChanges since the previous step
	}{
		{"create a", func() (int64, error) { r, err := s.EnsureCampaign(ctx, "a", 1); return r.Rev, err }, []string{"a"}},
		{"create b", func() (int64, error) { r, err := s.EnsureCampaign(ctx, "b", 1); return r.Rev, err }, []string{"b"}},
		{"create c", func() (int64, error) { r, err := s.EnsureCampaign(ctx, "c", 1); return r.Rev, err }, []string{"c"}},
		{"counters", func() (int64, error) {
			err := s.AddCampaignCounters(ctx, map[string]dispatcher.Counters{"a": {Sent: 1}, "b": {Received: 3}})
			return 0, err
		}, nil},
		{"ensure unchanged", func() (int64, error) { _, err := s.EnsureCampaign(ctx, "a", 1); return 0, err }, nil},
		{"same rate override twice", func() (int64, error) {
			if _, _, err := s.SetCampaignRate(ctx, "c", ptr(3)); err != nil {
				return 0, err
			}
			_, r, err := s.SetCampaignRate(ctx, "c", ptr(3))
			return r.Rev, err
		}, []string{"c"}},
		{"pause b", func() (int64, error) {
			_, r, err := s.SetCampaignStatus(ctx, "b", dispatcher.StatusPaused)
			return r.Rev, err
		}, []string{"b"}},
		{"conflict", func() (int64, error) {
			_, _, err := s.SetCampaignStatus(ctx, "a", dispatcher.StatusRunning, dispatcher.StatusPaused)
			if !errors.Is(err, dispatcher.ErrConflict) {
				return 0, fmt.Errorf("want conflict, got %v", err)
			}
			return 0, nil
		}, nil},
		{"a then c", func() (int64, error) {
			if _, err := s.EnsureCampaign(ctx, "a", 2); err != nil {
				return 0, err
			}
			_, r, err := s.SetCampaignRate(ctx, "c", nil)
			return r.Rev, err
		}, []string{"a", "c"}},
		{"c then a", func() (int64, error) {
			if _, _, err := s.SetCampaignStatus(ctx, "c", dispatcher.StatusFinished); err != nil {
				return 0, err
			}
			r, err := s.EnsureCampaign(ctx, "a", 3)
			return r.Rev, err
		}, []string{"c", "a"}},
		{"c twice", func() (int64, error) {
			if _, err := s.EnsureCampaign(ctx, "c", 1); err != nil { // finished -> running
				return 0, err
			}
			_, r, err := s.SetCampaignStatus(ctx, "c", dispatcher.StatusCancelled)
			return r.Rev, err
		}, []string{"c"}},
	}
	for _, st := range steps {
		rev, err := st.do()
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		got := changes(last)
		if !slices.Equal(got, st.want) {
			t.Errorf("%s: CampaignChanges(%d) = %v, want %v", st.name, last, got, st.want)
		}
		if st.want != nil {
			if rev <= last {
				t.Errorf("%s: rev %d, want > %d", st.name, rev, last)
			}
			last = rev
		}
	}
	if got := changes(0); !slices.Equal(got, []string{"b", "a", "c"}) {
		t.Errorf("CampaignChanges(0) = %v, want [b a c] (by latest rev)", got)
	}
}

func TestAddCampaignCounters(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	mustEnsure(t, s, "a", 0)
	mustEnsure(t, s, "b", 0)
	revA, revB := mustGet(t, s, "a").Rev, mustGet(t, s, "b").Rev

	all := dispatcher.Counters{Received: 1, Sent: 2, Failed: 3, Filtered: 4, Dropped: 5, Cancelled: 6}
	now := b.clock.Advance(time.Minute)
	if err := s.AddCampaignCounters(ctx, map[string]dispatcher.Counters{"a": all, "b": {Sent: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddCampaignCounters(ctx, map[string]dispatcher.Counters{"a": all}); err != nil {
		t.Fatal(err)
	}
	a := mustGet(t, s, "a")
	if want := all.Add(all); a.Counters != want {
		t.Errorf("a counters = %+v, want %+v", a.Counters, want)
	}
	if a.Rev != revA || !a.UpdatedAt.Equal(now) {
		t.Errorf("a rev %d updated %v, want rev %d (unchanged) updated %v", a.Rev, a.UpdatedAt, revA, now)
	}
	if bb := mustGet(t, s, "b"); bb.Counters != (dispatcher.Counters{Sent: 1}) || bb.Rev != revB {
		t.Errorf("b = %+v, want sent 1 and rev %d", bb, revB)
	}

	// Nothing to do.
	for _, d := range []map[string]dispatcher.Counters{nil, {}, {"unknown": {}}} {
		if err := s.AddCampaignCounters(ctx, d); err != nil {
			t.Errorf("AddCampaignCounters(%v) = %v", d, err)
		}
	}

	// Unknown campaigns are skipped and reported; the rest is applied.
	err := s.AddCampaignCounters(ctx, map[string]dispatcher.Counters{"a": {Sent: 10}, "x": {Sent: 1}, "y": {Sent: 1}})
	if !errors.Is(err, dispatcher.ErrNotFound) {
		t.Fatalf("AddCampaignCounters with unknown campaigns = %v, want ErrNotFound", err)
	}
	if got := mustGet(t, s, "a").Counters.Sent; got != 2*all.Sent+10 {
		t.Errorf("a sent = %d, want %d", got, 2*all.Sent+10)
	}
	if _, err := s.Campaign(ctx, "x"); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("unknown campaign was created: %v", err)
	}
}

// TestConcurrentWrites adds counters from 20 goroutines, with control
// changes and reads going on, and checks that every write succeeds (no
// SQLITE_BUSY) and the sums are exact.
func TestConcurrentWrites(t *testing.T) {
	s, _ := setup(t)
	ctx := context.Background()
	ids := []string{"a", "b", "c"}
	for _, id := range ids {
		mustEnsure(t, s, id, 1)
	}

	const goroutines, rounds = 20, 25
	var wg sync.WaitGroup
	errs := make(chan error, goroutines+2)
	for g := range goroutines {
		wg.Go(func() {
			for i := range rounds {
				d := map[string]dispatcher.Counters{}
				for _, id := range ids {
					d[id] = dispatcher.Counters{Received: 1, Sent: int64(g), Failed: int64(i)}
				}
				if err := s.AddCampaignCounters(ctx, d); err != nil {
					errs <- fmt.Errorf("goroutine %d round %d: %w", g, i, err)
					return
				}
			}
		})
	}
	wg.Go(func() { // control changes
		for i := range rounds {
			if _, err := s.EnsureCampaign(ctx, "a", float64(i+2)); err != nil {
				errs <- err
				return
			}
			if _, _, err := s.SetCampaignRate(ctx, "b", ptr(float64(i))); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Go(func() { // readers
		for range rounds {
			if _, err := s.Campaigns(ctx); err != nil {
				errs <- err
				return
			}
			if _, err := s.CampaignChanges(ctx, 0); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	var sumG, sumI int64
	for g := range goroutines {
		sumG += int64(g) * rounds
	}
	for i := range rounds {
		sumI += int64(i) * goroutines
	}
	want := dispatcher.Counters{Received: goroutines * rounds, Sent: sumG, Failed: sumI}
	for _, id := range ids {
		if got := mustGet(t, s, id).Counters; got != want {
			t.Errorf("%s counters = %+v, want %+v", id, got, want)
		}
	}
	if a := mustGet(t, s, "a"); a.MessageRate != rounds+1 {
		t.Errorf("a message rate = %v, want %d", a.MessageRate, rounds+1)
	}
}

// TestTwoStoresOneFile writes through two Stores on the same file, as two
// processes would: busy_timeout and IMMEDIATE transactions keep every
// write from failing.
func TestTwoStoresOneFile(t *testing.T) {
	s1, b := setup(t)
	s2 := reopen(t, b)
	ctx := context.Background()
	mustEnsure(t, s1, "c", 0)

	const perStore, rounds = 5, 20
	var wg sync.WaitGroup
	errs := make(chan error, 2*perStore+1)
	for _, s := range []*Store{s1, s2} {
		for range perStore {
			wg.Go(func() {
				for range rounds {
					if err := s.AddCampaignCounters(ctx, countersOf("c", 1, 1)); err != nil {
						errs <- err
						return
					}
				}
			})
		}
	}
	wg.Go(func() {
		for i := range rounds {
			if _, err := s2.EnsureCampaign(ctx, fmt.Sprint("n", i), 0); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := mustGet(t, s1, "c").Counters; got.Received != 2*perStore*rounds {
		t.Errorf("received = %d, want %d", got.Received, 2*perStore*rounds)
	}
	if got, err := s1.CampaignChanges(ctx, 0); err != nil || len(got) != rounds+1 {
		t.Errorf("CampaignChanges(0) = %d records, %v; want %d", len(got), err, rounds+1)
	}
}
