package store

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/pushd/pushd/dispatcher"
)

// TestPruneCampaigns: campaigns that ended before the cut go, with both
// rows of a console campaign; those still going, or ended since, stay,
// and so does every audit record (issue 13, item 13).
func TestPruneCampaigns(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	addAudience(t, s, "aud", "")
	// setDef puts a definition in a state directly, as the scheduler and
	// the engine would have left it.
	setDef := func(id, state string, publishedAll int) {
		t.Helper()
		mustCreate(t, s, newDef(id))
		if _, err := s.w.ExecContext(ctx, `UPDATE campaign_defs SET state = $2, published_all = $3 WHERE id = $1`, id, state, publishedAll); err != nil {
			t.Fatal(err)
		}
	}
	engine := func(id string, st dispatcher.Status) {
		t.Helper()
		mustEnsure(t, s, id, 0)
		if st != dispatcher.StatusRunning {
			mustStatus(t, s, id, st)
		}
	}

	// Ended before the cut.
	engine("amqp-finished", dispatcher.StatusFinished)
	engine("amqp-cancelled", dispatcher.StatusCancelled)
	engine("spring.test-1", dispatcher.StatusFinished) // a test send of a draft that stays
	setDef("console-missed", "missed", 0)
	setDef("console-cancelled", "cancelled", 0)
	setDef("console-done", "running", 1)
	engine("console-done", dispatcher.StatusFinished)
	// Not ended, whatever their age.
	engine("amqp-running", dispatcher.StatusRunning)
	engine("amqp-paused", dispatcher.StatusPaused)
	setDef("spring", "draft", 0)
	setDef("console-scheduled", "scheduled", 0)
	setDef("console-publishing", "running", 0)
	engine("console-publishing", dispatcher.StatusFinished) // idle between batches
	setDef("console-sending", "running", 1)
	engine("console-sending", dispatcher.StatusRunning)

	cut := b.clock.Advance(time.Hour)
	// Ended after the cut.
	engine("amqp-recent", dispatcher.StatusFinished)
	setDef("console-recent", "cancelled", 0)
	audits, err := s.AuditLog(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}

	n, err := s.PruneCampaigns(ctx, cut)
	if err != nil {
		t.Fatal(err)
	}
	if n != 6 {
		t.Errorf("PruneCampaigns = %d, want 6", n)
	}
	var engines []string
	recs, err := s.Campaigns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		engines = append(engines, r.ID)
	}
	slices.Sort(engines)
	if want := []string{"amqp-paused", "amqp-recent", "amqp-running", "console-publishing", "console-sending"}; !slices.Equal(engines, want) {
		t.Errorf("engine campaigns left %v, want %v", engines, want)
	}
	var defs []string
	ds, err := s.CampaignDefs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		defs = append(defs, d.ID)
	}
	slices.Sort(defs)
	if want := []string{"console-publishing", "console-recent", "console-scheduled", "console-sending", "spring"}; !slices.Equal(defs, want) {
		t.Errorf("definitions left %v, want %v", defs, want)
	}
	if _, err := s.Campaign(ctx, "amqp-finished"); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("pruned campaign: %v, want not found", err)
	}
	after, err := s.AuditLog(ctx, 1000)
	if err != nil || len(after) != len(audits) {
		t.Errorf("%d audit records after pruning (%v), want the %d there were", len(after), err, len(audits))
	}

	// Pruned again: nothing more; a batch for a pruned id starts anew.
	if n, err := s.PruneCampaigns(ctx, cut); err != nil || n != 0 {
		t.Errorf("second PruneCampaigns = %d, %v; want 0", n, err)
	}
	if rec := mustEnsure(t, s, "amqp-cancelled", 0); rec.Status != dispatcher.StatusRunning {
		t.Errorf("a pruned campaign that gets a batch: %s, want running", rec.Status)
	}
}
