package main

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

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
		ledgerKept: 24 * time.Hour, snapshotsKept: 30 * 24 * time.Hour,
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
