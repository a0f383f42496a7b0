package admin

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/lists"
)

// A replace import keeps the entries it replaces as a snapshot of the
// list, in the import's transaction; its audit record names the snapshot.
// These routes list a list's snapshots, export one as CSV (the list
// export's format, so that it can be imported again) and restore one.
// Snapshots are pruned after store.list_snapshot_retention.

// snapshotJSON is a snapshot as the API shows it.
type snapshotJSON struct {
	ID        int64      `json:"id"`
	List      lists.Name `json:"list"`
	Entries   int        `json:"entries"`
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by"`
}

// listSnapshots answers GET /api/lists/{name}/snapshots: the list's
// snapshots, newest first.
func (s *Server) listSnapshots(w http.ResponseWriter, r *http.Request, _ principal, list lists.Name) error {
	snaps, err := s.lists.ListSnapshots(r.Context(), list)
	if err != nil {
		return err
	}
	out := make([]snapshotJSON, len(snaps))
	for i, sn := range snaps {
		out[i] = snapshotJSON{ID: sn.ID, List: sn.List, Entries: sn.Entries, CreatedAt: sn.CreatedAt.UTC(), CreatedBy: sn.CreatedBy}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"snapshots": out})
}

// exportSnapshot streams a snapshot as CSV, like exportList.
func (s *Server) exportSnapshot(w http.ResponseWriter, r *http.Request, _ principal, list lists.Name) error {
	id, err := snapshotID(r)
	if err != nil {
		return err
	}
	// Found before the answer begins, so that a missing one is a 404.
	if err := s.findSnapshot(r.Context(), list, id); err != nil {
		return err
	}
	name := fmt.Sprintf("%s-snapshot-%d", list, id)
	return s.streamCSV(w, r, name+".csv", entriesCSV(name, func(fn func(lists.Entry) error) error {
		return s.lists.EachSnapshotEntry(r.Context(), list, id, fn)
	}))
}

// restoreResult is the answer of POST /api/lists/{name}/snapshots/{id}/restore.
type restoreResult struct {
	Restored int `json:"restored"`
}

// restoreSnapshot replaces the list with one of its snapshots. The store
// keeps what it replaces as a new snapshot and audits it as list.restore.
func (s *Server) restoreSnapshot(w http.ResponseWriter, r *http.Request, p principal, list lists.Name) error {
	id, err := snapshotID(r)
	if err != nil {
		return err
	}
	var res restoreResult
	err = s.listChange(r, p, "list.restore", list, func(ctx context.Context) error {
		var err error
		res.Restored, err = s.lists.RestoreListSnapshot(ctx, list, id)
		return err
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

// findSnapshot returns nil if list has snapshot id, else a 404.
func (s *Server) findSnapshot(ctx context.Context, list lists.Name, id int64) error {
	snaps, err := s.lists.ListSnapshots(ctx, list)
	if err != nil {
		return err
	}
	for _, sn := range snaps {
		if sn.ID == id {
			return nil
		}
	}
	return fmt.Errorf("%s has no snapshot %d (pruned, or never made): %w", list, id, dispatcher.ErrNotFound)
}

func snapshotID(r *http.Request) (int64, error) {
	v := r.PathValue("id")
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id < 1 {
		return 0, notFound("no snapshot %q: snapshot ids are positive numbers", v)
	}
	return id, nil
}
