package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/lists"
	"github.com/pushd/pushd/store"
)

// housekeeperOn returns a housekeeper on a store of its own, with a clock
// that the test moves.
func housekeeperOn(t *testing.T) (h housekeeper, now *time.Time) {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "pushd.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	clock := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	st.SetClock(func() time.Time { return clock })
	return housekeeper{
		st: st, now: func() time.Time { return clock }, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		ledgerKept: 24 * time.Hour, snapshotsKept: 30 * 24 * time.Hour, campaignsKept: 30 * 24 * time.Hour,
	}, &clock
}

func TestHousekeeperPrunesListSnapshots(t *testing.T) {
	h, now := housekeeperOn(t)
	ctx := context.Background()
	bl := lists.Blacklist
	u := func(v string) []lists.Entry {
		return []lists.Entry{{List: bl, Kind: lists.User, Value: v, Reason: "abuse"}}
	}
	if _, err := h.st.ImportList(ctx, bl, u("u-1"), false); err != nil {
		t.Fatal(err)
	}
	if _, err := h.st.ImportList(ctx, bl, u("u-2"), true); err != nil { // snapshot of u-1
		t.Fatal(err)
	}
	snapshots := func() int {
		t.Helper()
		s, err := h.st.ListSnapshots(ctx, bl)
		if err != nil {
			t.Fatal(err)
		}
		return len(s)
	}
	*now = now.Add(30*24*time.Hour - time.Minute)
	h.prune(ctx)
	if n := snapshots(); n != 1 {
		t.Fatalf("%d snapshots before their retention ran out, want 1", n)
	}
	*now = now.Add(2 * time.Minute)
	keep := h
	keep.snapshotsKept = 0
	keep.prune(ctx)
	if n := snapshots(); n != 1 {
		t.Fatalf("%d snapshots with store.list_snapshot_retention 0, want 1 (kept)", n)
	}
	h.prune(ctx)
	if n := snapshots(); n != 0 {
		t.Fatalf("%d snapshots after their retention, want 0", n)
	}
}

// TestHousekeeperPrunesEndedCampaigns: a campaign that ended longer ago
// than store.campaign_retention goes, with its ledger rows even when the
// ledger keeps rows longer; its audit records stay.
func TestHousekeeperPrunesEndedCampaigns(t *testing.T) {
	h, now := housekeeperOn(t)
	h.ledgerKept = 90 * 24 * time.Hour
	ctx := context.Background()
	if _, err := h.st.EnsureCampaign(ctx, "old", 0); err != nil {
		t.Fatal(err)
	}
	if err := h.st.RecordLedger(ctx, map[string]dispatcher.LedgerEntry{"batch-of-old": {Resolved: []byte{0xff}}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.st.SetCampaignStatus(ctx, "old", dispatcher.StatusCancelled); err != nil {
		t.Fatal(err)
	}
	if err := h.st.Audit(ctx, store.AuditEntry{Actor: "operator:1a2b3c4d", Action: "campaign.cancel", Target: "old"}); err != nil {
		t.Fatal(err)
	}
	*now = now.Add(time.Hour)
	if _, err := h.st.EnsureCampaign(ctx, "running", 0); err != nil {
		t.Fatal(err)
	}
	exists := func(id string) bool {
		t.Helper()
		_, err := h.st.Campaign(ctx, id)
		if err != nil && !errors.Is(err, dispatcher.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	ledger := func() bool {
		t.Helper()
		e, err := h.st.LedgerEntry(ctx, "batch-of-old")
		if err != nil {
			t.Fatal(err)
		}
		return e.Resolved != nil
	}

	*now = now.Add(30*24*time.Hour - 2*time.Hour) // 30 days less an hour after the cancel
	h.prune(ctx)
	if !exists("old") || !ledger() {
		t.Fatal("pruned before store.campaign_retention ran out")
	}
	*now = now.Add(2 * time.Hour)
	keep := h
	keep.campaignsKept = 0
	keep.prune(ctx)
	if !exists("old") || !ledger() {
		t.Fatal("pruned with store.campaign_retention 0")
	}
	h.prune(ctx)
	if exists("old") || ledger() {
		t.Errorf("after store.campaign_retention: campaign kept %v, ledger row kept %v; want both gone", exists("old"), ledger())
	}
	if !exists("running") {
		t.Error("a running campaign was pruned")
	}
	if log, err := h.st.AuditLog(ctx, 10); err != nil || len(log) != 1 || log[0].Target != "old" {
		t.Errorf("audit log after pruning: %+v, %v; want the cancel kept", log, err)
	}
}
