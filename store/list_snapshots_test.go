package store

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/pushd/pushd/audit"
	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/lists"
)

// snapshotEntries reads a snapshot with EachSnapshotEntry, as
// "kind/platform/value=reason@created".
func snapshotEntries(t *testing.T, s *Store, list lists.Name, id int64) []string {
	t.Helper()
	var out []string
	err := s.EachSnapshotEntry(context.Background(), list, id, func(e lists.Entry) error {
		out = append(out, string(e.Kind)+"/"+e.Platform+"/"+e.Value+"="+e.Reason+"@"+e.CreatedAt.Format(time.TimeOnly))
		return nil
	})
	if err != nil {
		t.Fatalf("EachSnapshotEntry(%s, %d): %v", list, id, err)
	}
	slices.Sort(out)
	return out
}

// TestListSnapshots: a replace import keeps what it replaced, as it was,
// and a restore puts it back, itself keeping what it replaces.
func TestListSnapshots(t *testing.T) {
	s, b := setup(t)
	ctx := audit.WithNote(context.Background(), audit.Note{Actor: "admin:00ff00ff", Action: "list.import"})
	bl, wl := lists.Blacklist, lists.Whitelist

	// An empty list makes no snapshot.
	mustImport(t, s, bl, []lists.Entry{user(bl, "u-1", "abuse")}, true)
	b.clock.Advance(time.Hour)
	mustAdd(t, s, token(bl, "ios", "f00d", "invalid_token"), user(wl, "qa-1", "test_device"))
	b.clock.Advance(time.Hour)
	if _, err := s.ImportList(ctx, bl, []lists.Entry{user(bl, "u-3", "opt_out")}, true); err != nil {
		t.Fatal(err)
	}
	snaps, err := s.ListSnapshots(context.Background(), bl)
	if err != nil {
		t.Fatal(err)
	}
	want := []lists.Snapshot{{ID: 2, List: bl, Entries: 2, CreatedAt: b.clock.Now(), CreatedBy: "admin:00ff00ff"}}
	if !slices.Equal(snaps, want) {
		t.Fatalf("ListSnapshots = %+v, want %+v", snaps, want)
	}
	if got, err := s.ListSnapshots(context.Background(), wl); err != nil || len(got) != 0 {
		t.Fatalf("whitelist snapshots = %+v, %v; want none", got, err)
	}
	kept := []string{"token/ios/f00d=invalid_token@23:00:00", "user//u-1=abuse@22:00:00"}
	if got := snapshotEntries(t, s, bl, 2); !slices.Equal(got, kept) {
		t.Fatalf("snapshot 2 = %v, want %v", got, kept)
	}

	// Restore puts the entries back as they were, and keeps u-3.
	b.clock.Advance(time.Hour)
	n, err := s.RestoreListSnapshot(context.Background(), bl, 2)
	if err != nil || n != 2 {
		t.Fatalf("RestoreListSnapshot = %d, %v; want 2", n, err)
	}
	if got := reasons(t, s, bl); !slices.Equal(got, []string{"token/ios/f00d=invalid_token", "user//u-1=abuse"}) {
		t.Errorf("blacklist after the restore: %v", got)
	}
	if e := listContents(t, s, bl)[lists.Key{Kind: lists.User, Value: "u-1"}]; !e.CreatedAt.Equal(newClock().Now()) {
		t.Errorf("restored u-1 created at %v, want its first time", e.CreatedAt)
	}
	if got := snapshotEntries(t, s, bl, 3); !slices.Equal(got, []string{"user//u-3=opt_out@00:00:00"}) {
		t.Errorf("snapshot 3 (before the restore) = %v", got)
	}
	if got := reasons(t, s, wl); !slices.Equal(got, []string{"user//qa-1=test_device"}) {
		t.Errorf("whitelist changed: %v", got)
	}
	// Every instance reloads the list.
	if ch := changesSince(t, s, mustRev(t, s)-1); len(ch) != 1 || ch[0].Op != lists.OpReload || ch[0].Entry.List != bl {
		t.Errorf("last change %+v, want a blacklist reload", ch)
	}

	// A snapshot of the other list, or none, is not found.
	for _, c := range []struct {
		list lists.Name
		id   int64
	}{{wl, 2}, {bl, 1}, {bl, 99}} {
		err := s.EachSnapshotEntry(context.Background(), c.list, c.id, func(lists.Entry) error {
			t.Fatal("fn called")
			return nil
		})
		if !errors.Is(err, dispatcher.ErrNotFound) {
			t.Errorf("EachSnapshotEntry(%s, %d) = %v, want ErrNotFound", c.list, c.id, err)
		}
		if _, err := s.RestoreListSnapshot(context.Background(), c.list, c.id); !errors.Is(err, dispatcher.ErrNotFound) {
			t.Errorf("RestoreListSnapshot(%s, %d) = %v, want ErrNotFound", c.list, c.id, err)
		}
	}
}

func TestPruneListSnapshots(t *testing.T) {
	s, b := setup(t)
	bl := lists.Blacklist
	mustAdd(t, s, user(bl, "u-1", "abuse"))
	mustImport(t, s, bl, []lists.Entry{user(bl, "u-2", "abuse")}, true) // snapshot 1
	cut := b.clock.Advance(time.Hour)
	mustImport(t, s, bl, []lists.Entry{user(bl, "u-3", "abuse")}, true) // snapshot 2
	n, err := s.PruneListSnapshots(context.Background(), cut)
	if err != nil || n != 1 {
		t.Fatalf("PruneListSnapshots = %d, %v; want 1", n, err)
	}
	snaps, err := s.ListSnapshots(context.Background(), bl)
	if err != nil || len(snaps) != 1 || snaps[0].ID != 2 {
		t.Fatalf("snapshots left %+v, %v; want 2", snaps, err)
	}
	var left int
	if err := s.r.QueryRow(`SELECT COUNT(*) FROM list_snapshot_entries WHERE snapshot_id = 1`).Scan(&left); err != nil || left != 0 {
		t.Errorf("entries of the pruned snapshot left: %d, %v", left, err)
	}
	if _, err := s.RestoreListSnapshot(context.Background(), bl, 1); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("restore of a pruned snapshot: %v, want ErrNotFound", err)
	}
}
