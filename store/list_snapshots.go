package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/pushd/pushd/audit"
	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/lists"
)

// SQL of list snapshots. The parameters in the select lists are cast, so
// that PostgreSQL knows their types.
const (
	snapshotColumns = `id, list, entries, created_at, created_by`

	sqlSnapshotList = `INSERT INTO list_snapshot_entries (snapshot_id, kind, platform, value, reason, created_at)
SELECT CAST($1 AS BIGINT), kind, platform, value, reason, created_at FROM list_entries WHERE list = $2`

	sqlInsertSnapshot = `INSERT INTO list_snapshots (` + snapshotColumns + `) VALUES ($1, $2, $3, $4, $5)`

	sqlListSnapshots = `SELECT ` + snapshotColumns + ` FROM list_snapshots WHERE list = $1 ORDER BY id DESC`

	sqlListSnapshot = `SELECT ` + snapshotColumns + ` FROM list_snapshots WHERE id = $1 AND list = $2`

	sqlEachSnapshotEntry = `SELECT ` + listEntryColumns + ` FROM list_snapshot_entries WHERE snapshot_id = $1`

	sqlRestoreSnapshot = `INSERT INTO list_entries (list, kind, platform, value, reason, created_at)
SELECT CAST($1 AS TEXT), kind, platform, value, reason, created_at FROM list_snapshot_entries WHERE snapshot_id = $2`

	sqlOldSnapshots = `SELECT id FROM list_snapshots WHERE created_at < $1 ORDER BY id`

	sqlDeleteSnapshotEntries = `DELETE FROM list_snapshot_entries WHERE snapshot_id = $1`
	sqlDeleteSnapshot        = `DELETE FROM list_snapshots WHERE id = $1`
)

const seqListSnapshotID = "list_snapshot_id"

// snapshotList copies list's entries into a new snapshot inside tx and
// returns its id and how many entries it holds. An empty list makes no
// snapshot: id 0. The snapshot's CreatedBy is the actor of ctx's
// audit.Note, if any.
func (s *Store) snapshotList(ctx context.Context, tx *sql.Tx, list lists.Name) (id int64, n int, err error) {
	if id, err = nextSeq(ctx, tx, seqListSnapshotID); err != nil {
		return 0, 0, err
	}
	res, err := tx.ExecContext(ctx, sqlSnapshotList, id, string(list))
	if err != nil {
		return 0, 0, fmt.Errorf("snapshot %s: %w", list, err)
	}
	copied, err := res.RowsAffected()
	if err != nil {
		return 0, 0, fmt.Errorf("snapshot %s: %w", list, err)
	}
	if copied == 0 {
		return 0, 0, nil
	}
	note, _ := audit.NoteFrom(ctx)
	if _, err := tx.ExecContext(ctx, sqlInsertSnapshot, id, string(list), copied, toMillis(s.now()), note.Actor); err != nil {
		return 0, 0, fmt.Errorf("snapshot %s: %w", list, err)
	}
	return id, int(copied), nil
}

// ListSnapshots returns the snapshots of list, newest first.
func (s *Store) ListSnapshots(ctx context.Context, list lists.Name) ([]lists.Snapshot, error) {
	if err := checkList(list); err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	rows, err := s.r.QueryContext(ctx, sqlListSnapshots, string(list))
	if err != nil {
		return nil, fmt.Errorf("%s snapshots: %w", list, err)
	}
	defer rows.Close()
	out := []lists.Snapshot{}
	for rows.Next() {
		sn, err := scanSnapshot(rows)
		if err != nil {
			return nil, fmt.Errorf("%s snapshots: %w", list, err)
		}
		out = append(out, sn)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s snapshots: %w", list, err)
	}
	return out, nil
}

// EachSnapshotEntry calls fn for every entry of snapshot id of list, in
// no particular order, and returns the first error fn returns, as it is.
// A snapshot that does not exist (or was pruned) is an error wrapping
// dispatcher.ErrNotFound, returned before fn is called.
func (s *Store) EachSnapshotEntry(ctx context.Context, list lists.Name, id int64, fn func(lists.Entry) error) error {
	if err := checkList(list); err != nil {
		return fmt.Errorf("snapshot entries: %w", err)
	}
	sn, err := getSnapshot(ctx, s.r, list, id)
	if err != nil {
		return err
	}
	rows, err := s.r.QueryContext(ctx, sqlEachSnapshotEntry, id)
	if err != nil {
		return fmt.Errorf("%s snapshot %d: %w", list, id, err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		e, err := scanListEntry(rows, list)
		if err != nil {
			return fmt.Errorf("%s snapshot %d: %w", list, id, err)
		}
		if err := fn(e); err != nil {
			return err
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s snapshot %d: %w", list, id, err)
	}
	if n != sn.Entries {
		// Pruned between the two reads.
		return fmt.Errorf("%s snapshot %d: read %d of its %d entries: pruned meanwhile", list, id, n, sn.Entries)
	}
	return nil
}

// RestoreListSnapshot replaces the entries of list with those of its
// snapshot id, as they were (reasons and CreatedAt), in one transaction,
// and records a single OpReload change. Like a replace import, it first
// keeps the entries it replaces as a new snapshot. With an audit.Note in
// ctx, it writes the audit record in the same transaction (the count
// before and after, the new snapshot's id and the restored one's), or
// changes nothing. An unknown snapshot is an error wrapping
// dispatcher.ErrNotFound. It returns how many entries the list holds.
func (s *Store) RestoreListSnapshot(ctx context.Context, list lists.Name, id int64) (restored int, err error) {
	if err := checkList(list); err != nil {
		return 0, fmt.Errorf("restore snapshot: %w", err)
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		if _, err := addSeq(ctx, tx, seqListRev, 0); err != nil {
			return err
		}
		if _, err := getSnapshot(ctx, tx, list, id); err != nil {
			return err
		}
		var before listAudit
		if before.Snapshot, before.Count, err = s.snapshotList(ctx, tx, list); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, sqlDeleteList, string(list)); err != nil {
			return fmt.Errorf("delete entries: %w", err)
		}
		res, err := tx.ExecContext(ctx, sqlRestoreSnapshot, string(list), id)
		if err != nil {
			return fmt.Errorf("copy entries: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("copy entries: %w", err)
		}
		restored = int(n)
		if err := s.recordChanges(ctx, tx, lists.OpReload, []lists.Entry{{List: list}}, toMillis(s.now())); err != nil {
			return err
		}
		return s.auditNote(ctx, tx, string(list), before, listAudit{Count: restored, Restored: id})
	})
	if err != nil {
		return 0, fmt.Errorf("restore %s snapshot %d: %w", list, id, err)
	}
	return restored, nil
}

// PruneListSnapshots deletes the snapshots made before before, each in
// its own transaction, and returns how many it deleted.
func (s *Store) PruneListSnapshots(ctx context.Context, before time.Time) (int, error) {
	rows, err := s.r.QueryContext(ctx, sqlOldSnapshots, toMillis(before))
	if err != nil {
		return 0, fmt.Errorf("prune list snapshots: %w", err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, fmt.Errorf("prune list snapshots: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("prune list snapshots: %w", err)
	}
	for i, id := range ids {
		err := s.write(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, sqlDeleteSnapshotEntries, id); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, sqlDeleteSnapshot, id)
			return err
		})
		if err != nil {
			return i, fmt.Errorf("prune list snapshot %d: %w", id, err)
		}
	}
	return len(ids), nil
}

// getSnapshot reads snapshot id of list; one that does not exist is
// dispatcher.ErrNotFound.
func getSnapshot(ctx context.Context, q querier, list lists.Name, id int64) (lists.Snapshot, error) {
	sn, err := scanSnapshot(q.QueryRowContext(ctx, sqlListSnapshot, id, string(list)))
	if errors.Is(err, sql.ErrNoRows) {
		return sn, fmt.Errorf("%s snapshot %d: %w (pruned, or never made)", list, id, dispatcher.ErrNotFound)
	}
	if err != nil {
		return sn, fmt.Errorf("%s snapshot %d: %w", list, id, err)
	}
	return sn, nil
}

func scanSnapshot(row interface{ Scan(dest ...any) error }) (lists.Snapshot, error) {
	var (
		sn        lists.Snapshot
		list      string
		createdAt int64
	)
	if err := row.Scan(&sn.ID, &list, &sn.Entries, &createdAt, &sn.CreatedBy); err != nil {
		return lists.Snapshot{}, err
	}
	sn.List, sn.CreatedAt = lists.Name(list), fromMillis(createdAt)
	return sn, nil
}
