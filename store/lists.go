package store

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pushd/pushd/lists"
)

var _ lists.Source = (*Store)(nil)

// Limits on list reads.
const (
	// MaxListPage is the most entries ListEntries returns at once.
	MaxListPage = 1000
	// MaxListChanges is the most changes ListChanges returns at once.
	MaxListChanges = 10000
)

// listChunk is how many rows one multi-row statement carries (at most
// 8 columns: 256 parameters, far below SQLite's limit of 32,766 and
// PostgreSQL's of 65,535). Small on purpose: modernc.org/sqlite looks up
// each parameter's name when it binds it, a linear search, so binding
// costs the square of a statement's parameters. A million-entry import
// took 33 s in chunks of 500 rows, 11 s in chunks of 32 (16 was no
// faster). A PostgreSQL backend, paying a round trip per statement,
// would want a few hundred.
const listChunk = 32

// SQL of the lists. Every list write first takes the list_rev row
// (addSeq with 0) and keeps it until it commits: in PostgreSQL that
// serialises list writers, so each one reads what the previous one
// committed and revs commit in order; in SQLite the IMMEDIATE
// transaction does the same.
const (
	listEntryColumns = `kind, platform, value, reason, created_at`

	sqlEachListEntry = `SELECT ` + listEntryColumns + ` FROM list_entries WHERE list = $1`

	sqlListEntriesPage = `SELECT ` + listEntryColumns + ` FROM list_entries
WHERE list = $1 AND (kind, platform, value) > ($2, $3, $4)
ORDER BY kind, platform, value
LIMIT $5`

	sqlCountListEntries = `SELECT COUNT(*) FROM list_entries WHERE list = $1`

	sqlDeleteList = `DELETE FROM list_entries WHERE list = $1`

	sqlListChanges = `SELECT rev, op, list, kind, platform, value, reason
FROM list_changes WHERE rev > $1 ORDER BY rev LIMIT $2`

	sqlListRev = `SELECT COALESCE(MAX(rev), 0) FROM list_changes`

	sqlPruneListChanges = `DELETE FROM list_changes
WHERE at < $1 AND rev < (SELECT MAX(rev) FROM list_changes)`
)

// Multi-row statements, run a chunk of rows at a time.
var (
	upsertListEntries = multiRow{
		prefix: `INSERT INTO list_entries (list, kind, platform, value, reason, created_at) VALUES `,
		suffix: ` ON CONFLICT (list, kind, platform, value) DO UPDATE SET reason = excluded.reason`,
		cols:   6,
	}
	insertListChanges = multiRow{
		prefix: `INSERT INTO list_changes (rev, op, list, kind, platform, value, reason, at) VALUES `,
		cols:   8,
	}
	selectListReasons = multiRow{
		prefix: `SELECT list, kind, platform, value, reason FROM list_entries
WHERE (list, kind, platform, value) IN (VALUES `,
		suffix: `)`,
		cols:   4,
	}
	deleteListEntries = multiRow{
		prefix: `DELETE FROM list_entries
WHERE list = $1 AND (kind, platform, value) IN (VALUES `,
		suffix: `) RETURNING kind, platform, value, reason, created_at`,
		shared: 1,
		cols:   3,
	}
)

// EachEntry calls fn for every entry of list, in no particular order,
// and returns the first error fn returns, as it is. The entries are read
// from one query, a consistent snapshot, and streamed: the list is never
// held in memory.
func (s *Store) EachEntry(ctx context.Context, list lists.Name, fn func(lists.Entry) error) error {
	if err := checkList(list); err != nil {
		return fmt.Errorf("each list entry: %w", err)
	}
	rows, err := s.r.QueryContext(ctx, sqlEachListEntry, string(list))
	if err != nil {
		return fmt.Errorf("each %s entry: %w", list, err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanListEntry(rows, list)
		if err != nil {
			return fmt.Errorf("each %s entry: %w", list, err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("each %s entry: %w", list, err)
	}
	return nil
}

// ListChanges returns at most limit changes with Rev above since, in Rev
// order; limit is clamped to 1..MaxListChanges. Revs have no gaps, so a
// first change above since+1 means the ones between were pruned (see
// PruneListChanges) and the caller must rebuild from EachEntry. Changes
// do not carry the entry's CreatedAt (it is zero).
func (s *Store) ListChanges(ctx context.Context, since int64, limit int) ([]lists.Change, error) {
	limit = min(max(limit, 1), MaxListChanges)
	rows, err := s.r.QueryContext(ctx, sqlListChanges, since, limit)
	if err != nil {
		return nil, fmt.Errorf("list changes since rev %d: %w", since, err)
	}
	defer rows.Close()
	changes := []lists.Change{}
	for rows.Next() {
		var (
			c                                  lists.Change
			op, list, kind, platform, value, r string
		)
		if err := rows.Scan(&c.Rev, &op, &list, &kind, &platform, &value, &r); err != nil {
			return nil, fmt.Errorf("list changes since rev %d: %w", since, err)
		}
		c.Op = lists.Op(op)
		switch c.Op {
		case lists.OpAdd, lists.OpRemove:
			c.Entry = lists.Entry{List: lists.Name(list), Kind: lists.Kind(kind), Platform: platform, Value: value, Reason: r}
		case lists.OpReload:
			c.Entry = lists.Entry{List: lists.Name(list)}
		default:
			return nil, fmt.Errorf("list changes since rev %d: rev %d: unknown op %q in store", since, c.Rev, op)
		}
		changes = append(changes, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list changes since rev %d: %w", since, err)
	}
	return changes, nil
}

// ListRev returns the latest list change's Rev, 0 when there is none.
func (s *Store) ListRev(ctx context.Context) (int64, error) {
	var rev int64
	if err := s.r.QueryRowContext(ctx, sqlListRev).Scan(&rev); err != nil {
		return 0, fmt.Errorf("list rev: %w", err)
	}
	return rev, nil
}

// AddListEntries adds entries, to either list, in one transaction. Every
// entry is validated first: an invalid one refuses them all, with an
// error naming its index and wrapping lists.ErrInvalid.
//
// An entry already there keeps its CreatedAt and takes the new reason;
// a new one gets the store's clock as CreatedAt (Entry.CreatedAt is
// ignored). Each entry that is new or whose reason changed records one
// OpAdd change, in the order given; an entry given twice counts once,
// with its last reason. It returns how many entries were new.
//
// With an audit.Note in ctx, it writes one audit record per list in the
// same transaction (the list's count before and after, and the entries as
// given), or changes nothing. Adding what is there already changes
// nothing and writes no record.
func (s *Store) AddListEntries(ctx context.Context, entries []lists.Entry) (added int, err error) {
	for i, e := range entries {
		if err := e.Validate(); err != nil {
			return 0, fmt.Errorf("add list entries: entry %d: %w", i, err)
		}
	}
	uniq := uniqueEntries(entries)
	if len(uniq) == 0 {
		return 0, nil
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		added = 0
		if _, err := addSeq(ctx, tx, seqListRev, 0); err != nil {
			return err
		}
		// Read and written in key order, for the B-tree's sake (see
		// keyOrder); recorded in the order given.
		old, err := storedReasons(ctx, tx, slices.SortedFunc(slices.Values(uniq), compareEntries))
		if err != nil {
			return err
		}
		var changed []lists.Entry
		for _, e := range uniq {
			r, ok := old[entryID{e.List, e.Key()}]
			if !ok {
				added++
			}
			if !ok || r != e.Reason {
				changed = append(changed, e)
			}
		}
		if len(changed) == 0 {
			return errUnchanged
		}
		var audits map[lists.Name]*listAudit // by list, with the count before
		if noted(ctx) {
			if audits, err = addAudits(ctx, tx, uniq, old); err != nil {
				return err
			}
		}
		byKey := slices.SortedFunc(slices.Values(changed), compareEntries)
		now := toMillis(s.now())
		if err := upsertEntries(ctx, tx, len(byKey), func(i int) lists.Entry { return byKey[i] }, now); err != nil {
			return err
		}
		if err := s.recordChanges(ctx, tx, lists.OpAdd, changed, now); err != nil {
			return err
		}
		for _, list := range slices.Sorted(maps.Keys(audits)) {
			after := audits[list]
			before := listAudit{Count: after.Count}
			after.Count += after.Added
			if err := s.auditNote(ctx, tx, string(list), before, after); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("add list entries: %w", err)
	}
	return added, nil
}

// RemoveListEntries removes the entries of list with the given keys, in
// one transaction, and records one OpRemove change (with the entry as it
// was) for each entry removed, in the order given. Keys not in the list
// are skipped. It returns how many entries were removed.
//
// With an audit.Note in ctx, it writes the audit record in the same
// transaction (the list's count before and after, and the entries removed
// as they were, with their reasons), or changes nothing. Removing what is
// not there changes nothing and writes no record.
func (s *Store) RemoveListEntries(ctx context.Context, list lists.Name, keys []lists.Key) (removed int, err error) {
	if err := checkList(list); err != nil {
		return 0, fmt.Errorf("remove list entries: %w", err)
	}
	keys = uniqueKeys(keys)
	if len(keys) == 0 {
		return 0, nil
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		removed = 0
		if _, err := addSeq(ctx, tx, seqListRev, 0); err != nil {
			return err
		}
		var count int
		if noted(ctx) {
			if count, err = countList(ctx, tx, list); err != nil {
				return err
			}
		}
		deleted, err := deleteEntries(ctx, tx, list, keys)
		if err != nil {
			return err
		}
		if len(deleted) == 0 {
			return errUnchanged
		}
		gone := make([]lists.Entry, 0, len(deleted))
		for _, k := range keys {
			if e, ok := deleted[k]; ok {
				gone = append(gone, e)
			}
		}
		removed = len(gone)
		if err := s.recordChanges(ctx, tx, lists.OpRemove, gone, toMillis(s.now())); err != nil {
			return err
		}
		before := listAudit{Count: count, Entries: make([]listEntryAudit, len(gone))}
		for i, e := range gone {
			before.Entries[i] = listEntryAuditOf(e)
		}
		return s.auditNote(ctx, tx, string(list), before, listAudit{Count: count - removed, Removed: removed})
	})
	if err != nil {
		return 0, fmt.Errorf("remove %s entries: %w", list, err)
	}
	return removed, nil
}

// ImportList writes entries to list, all or nothing, in one transaction,
// and records a single OpReload change for the list: instances rebuild
// it with EachEntry rather than replaying an entry at a time. Every
// entry is validated first and must belong to list; an invalid one
// refuses them all, with an error naming its index and wrapping
// lists.ErrInvalid.
//
// With replace, the list's entries are deleted first, so the list ends
// up holding exactly entries. Without it, entries are merged in: an
// entry already there keeps its CreatedAt and takes the new reason. New
// entries get the store's clock as CreatedAt. An entry given twice counts
// once, with its last reason. A merge of no entries changes nothing.
// It returns how many distinct entries were written.
//
// Entries are written in key order, chunk by chunk, which keeps an
// import of millions of entries fast.
//
// A replace keeps the entries it replaces as a snapshot of the list (see
// ListSnapshots), made in the same transaction, unless the list was empty.
// With an audit.Note in ctx, it writes the audit record in the same
// transaction (the list's count before and after, the snapshot's id), or
// changes nothing.
func (s *Store) ImportList(ctx context.Context, list lists.Name, entries []lists.Entry, replace bool) (imported int, err error) {
	if err := checkList(list); err != nil {
		return 0, fmt.Errorf("import list: %w", err)
	}
	for i, e := range entries {
		if e.List != list {
			return 0, fmt.Errorf("import %s: entry %d: %w: list %q, want %q", list, i, lists.ErrInvalid, e.List, list)
		}
		if err := e.Validate(); err != nil {
			return 0, fmt.Errorf("import %s: entry %d: %w", list, i, err)
		}
	}
	if len(entries) == 0 && !replace {
		return 0, nil
	}
	order := keyOrder(entries)
	err = s.write(ctx, func(tx *sql.Tx) error {
		if _, err := addSeq(ctx, tx, seqListRev, 0); err != nil {
			return err
		}
		var before listAudit
		switch {
		case replace:
			if before.Snapshot, before.Count, err = s.snapshotList(ctx, tx, list); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, sqlDeleteList, string(list)); err != nil {
				return fmt.Errorf("delete entries: %w", err)
			}
		case noted(ctx):
			if before.Count, err = countList(ctx, tx, list); err != nil {
				return err
			}
		}
		now := toMillis(s.now())
		if err := upsertEntries(ctx, tx, len(order), func(i int) lists.Entry { return entries[order[i]] }, now); err != nil {
			return err
		}
		if err := s.recordChanges(ctx, tx, lists.OpReload, []lists.Entry{{List: list}}, now); err != nil {
			return err
		}
		if !noted(ctx) {
			return nil
		}
		after := listAudit{Count: len(order), Imported: len(order), Replace: replace}
		if !replace {
			if after.Count, err = countList(ctx, tx, list); err != nil {
				return err
			}
		}
		return s.auditNote(ctx, tx, string(list), before, after)
	})
	if err != nil {
		return 0, fmt.Errorf("import %s: %w", list, err)
	}
	return len(order), nil
}

// ListEntries returns a page of list's entries in key order (kind,
// platform, value), those strictly after after; the zero Key starts from
// the first. limit is clamped to 1..MaxListPage. Passing the last
// entry's key as after gets the next page; an empty page is the end.
func (s *Store) ListEntries(ctx context.Context, list lists.Name, after lists.Key, limit int) ([]lists.Entry, error) {
	if err := checkList(list); err != nil {
		return nil, fmt.Errorf("list entries: %w", err)
	}
	limit = min(max(limit, 1), MaxListPage)
	rows, err := s.r.QueryContext(ctx, sqlListEntriesPage,
		string(list), string(after.Kind), after.Platform, after.Value, limit)
	if err != nil {
		return nil, fmt.Errorf("list %s entries: %w", list, err)
	}
	defer rows.Close()
	entries := []lists.Entry{}
	for rows.Next() {
		e, err := scanListEntry(rows, list)
		if err != nil {
			return nil, fmt.Errorf("list %s entries: %w", list, err)
		}
		entries = append(entries, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list %s entries: %w", list, err)
	}
	return entries, nil
}

// CountListEntries returns how many entries list holds.
func (s *Store) CountListEntries(ctx context.Context, list lists.Name) (int, error) {
	if err := checkList(list); err != nil {
		return 0, fmt.Errorf("count list entries: %w", err)
	}
	n, err := countList(ctx, s.r, list)
	if err != nil {
		return 0, err
	}
	return n, nil
}

// countList returns how many entries list holds, as q sees it.
func countList(ctx context.Context, q querier, list lists.Name) (int, error) {
	var n int
	if err := q.QueryRowContext(ctx, sqlCountListEntries, string(list)).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s entries: %w", list, err)
	}
	return n, nil
}

// addAudits returns the After of the audit record of adding entries, by
// list, with Count the list's count before the change. old holds the
// reasons of those entries already there.
func addAudits(ctx context.Context, tx *sql.Tx, entries []lists.Entry, old map[entryID]string) (map[lists.Name]*listAudit, error) {
	audits := make(map[lists.Name]*listAudit)
	for _, e := range entries {
		a := audits[e.List]
		if a == nil {
			n, err := countList(ctx, tx, e.List)
			if err != nil {
				return nil, err
			}
			a = &listAudit{Count: n}
			audits[e.List] = a
		}
		if _, ok := old[entryID{e.List, e.Key()}]; ok {
			a.Updated++
		} else {
			a.Added++
		}
		a.Entries = append(a.Entries, listEntryAuditOf(e))
	}
	return audits, nil
}

// listAudit is a list change as its audit record shows it, in Before and
// After: a summary, and the entries it names, never the whole list.
type listAudit struct {
	// Count is the number of entries in the list.
	Count    int  `json:"count"`
	Added    int  `json:"added,omitempty"`
	Updated  int  `json:"updated,omitempty"`
	Removed  int  `json:"removed,omitempty"`
	Imported int  `json:"imported,omitempty"`
	Replace  bool `json:"replace,omitempty"`
	// Snapshot (in Before) is the snapshot that keeps the entries a
	// replace import or a restore replaced; absent when the list was
	// empty.
	Snapshot int64 `json:"snapshot,omitempty"`
	// Restored (in After) is the snapshot a restore put back.
	Restored int64 `json:"restored,omitempty"`
	// Entries are, in After, the entries added or updated, as given; in
	// Before, the entries removed, as they were.
	Entries []listEntryAudit `json:"entries,omitempty"`
}

// listEntryAudit is an entry in a listAudit.
type listEntryAudit struct {
	Kind      lists.Kind `json:"kind"`
	Value     string     `json:"value"`
	Platform  string     `json:"platform"`
	Reason    string     `json:"reason"`
	CreatedAt *time.Time `json:"created_at,omitempty"`
}

func listEntryAuditOf(e lists.Entry) listEntryAudit {
	a := listEntryAudit{Kind: e.Kind, Value: e.Value, Platform: e.Platform, Reason: e.Reason}
	if !e.CreatedAt.IsZero() {
		t := e.CreatedAt.UTC()
		a.CreatedAt = &t
	}
	return a
}

// PruneListChanges deletes the list changes made before before, except
// the latest one, which ListRev reports, and returns how many it
// deleted. Revs have no gaps, so a follower that had not yet read a
// pruned change can tell: the first change ListChanges gives it is above
// since+1. It must then rebuild its lists from EachEntry.
func (s *Store) PruneListChanges(ctx context.Context, before time.Time) (int, error) {
	n, err := s.deleteBefore(ctx, sqlPruneListChanges, before)
	if err != nil {
		return 0, fmt.Errorf("prune list changes: %w", err)
	}
	return n, nil
}

// entryID identifies an entry across both lists.
type entryID struct {
	list lists.Name
	key  lists.Key
}

// uniqueEntries returns entries without repeats, in the order each entry
// first appears, each with the last reason given for it.
func uniqueEntries(entries []lists.Entry) []lists.Entry {
	seen := make(map[entryID]int, len(entries))
	uniq := make([]lists.Entry, 0, len(entries))
	for _, e := range entries {
		id := entryID{e.List, e.Key()}
		if i, ok := seen[id]; ok {
			uniq[i].Reason = e.Reason
			continue
		}
		seen[id] = len(uniq)
		uniq = append(uniq, e)
	}
	return uniq
}

// uniqueKeys returns keys without repeats, in the order each first
// appears.
func uniqueKeys(keys []lists.Key) []lists.Key {
	seen := make(map[lists.Key]bool, len(keys))
	uniq := make([]lists.Key, 0, len(keys))
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			uniq = append(uniq, k)
		}
	}
	return uniq
}

// keyOrder returns the indexes of entries (all of one list, validated)
// sorted by key, keeping only the last of entries with the same key. Rows
// inserted in key order land at the end of the primary key's B-tree: a
// million entries import about five times faster than in random order.
// Entries already in key order (an export of ListEntries pages) are not
// sorted again.
func keyOrder(entries []lists.Entry) []int {
	// The sort moves small keys rather than indexes into entries, so
	// that a comparison reads no more than the two values.
	type sortKey struct {
		value string
		kp    uint8 // kind and platform, ranked as they sort
		i     int
	}
	rank := func(e *lists.Entry) uint8 {
		switch {
		case e.Kind == lists.Token && e.Platform == lists.Android:
			return 0
		case e.Kind == lists.Token:
			return 1 // ios
		default:
			return 2 // user, no platform
		}
	}
	keys := make([]sortKey, len(entries))
	for i := range entries {
		keys[i] = sortKey{value: entries[i].Value, kp: rank(&entries[i]), i: i}
	}
	compare := func(a, b sortKey) int {
		return cmp.Or(cmp.Compare(a.kp, b.kp), strings.Compare(a.value, b.value))
	}
	if !slices.IsSortedFunc(keys, compare) {
		// The index breaks ties, so the last of equal keys comes last.
		slices.SortFunc(keys, func(a, b sortKey) int {
			return cmp.Or(compare(a, b), cmp.Compare(a.i, b.i))
		})
	}
	order := make([]int, 0, len(keys))
	for i, k := range keys {
		if i+1 < len(keys) && compare(k, keys[i+1]) == 0 {
			continue // a later entry has the same key
		}
		order = append(order, k.i)
	}
	return order
}

// compareEntries orders entries as the list_entries primary key does.
func compareEntries(a, b lists.Entry) int {
	return cmp.Or(
		strings.Compare(string(a.List), string(b.List)),
		strings.Compare(string(a.Kind), string(b.Kind)),
		strings.Compare(a.Platform, b.Platform),
		strings.Compare(a.Value, b.Value),
	)
}

// storedReasons returns the stored reason of those of entries that the
// store holds.
func storedReasons(ctx context.Context, tx *sql.Tx, entries []lists.Entry) (map[entryID]string, error) {
	b := newBulk(tx, selectListReasons)
	defer b.close()
	reasons := make(map[entryID]string)
	err := chunks(len(entries), func(lo, hi int) error {
		args := b.args[:0]
		for _, e := range entries[lo:hi] {
			args = append(args, string(e.List), string(e.Kind), e.Platform, e.Value)
		}
		rows, err := b.query(ctx, hi-lo, args)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var list, kind, platform, value, reason string
			if err := rows.Scan(&list, &kind, &platform, &value, &reason); err != nil {
				return err
			}
			reasons[entryID{lists.Name(list), lists.Key{Kind: lists.Kind(kind), Platform: platform, Value: value}}] = reason
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("read entries: %w", err)
	}
	return reasons, nil
}

// upsertEntries inserts n entries, entry(0) to entry(n-1), with created_at
// at; an entry already there takes the new reason and keeps its
// created_at. The n entries must not repeat a key.
func upsertEntries(ctx context.Context, tx *sql.Tx, n int, entry func(i int) lists.Entry, at int64) error {
	b := newBulk(tx, upsertListEntries)
	defer b.close()
	err := chunks(n, func(lo, hi int) error {
		args := b.args[:0]
		for i := lo; i < hi; i++ {
			e := entry(i)
			args = append(args, string(e.List), string(e.Kind), e.Platform, e.Value, e.Reason, at)
		}
		_, err := b.exec(ctx, hi-lo, args)
		return err
	})
	if err != nil {
		return fmt.Errorf("write entries: %w", err)
	}
	return nil
}

// deleteEntries deletes the entries of list with the given keys and
// returns those it deleted, as they were.
func deleteEntries(ctx context.Context, tx *sql.Tx, list lists.Name, keys []lists.Key) (map[lists.Key]lists.Entry, error) {
	b := newBulk(tx, deleteListEntries)
	defer b.close()
	deleted := make(map[lists.Key]lists.Entry)
	err := chunks(len(keys), func(lo, hi int) error {
		args := append(b.args[:0], string(list))
		for _, k := range keys[lo:hi] {
			args = append(args, string(k.Kind), k.Platform, k.Value)
		}
		rows, err := b.query(ctx, hi-lo, args)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			e, err := scanListEntry(rows, list)
			if err != nil {
				return err
			}
			deleted[e.Key()] = e
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("delete entries: %w", err)
	}
	return deleted, nil
}

// recordChanges takes a rev for each of entries, in order, and records a
// change with op for each at time at. The caller holds the list_rev row.
func (s *Store) recordChanges(ctx context.Context, tx *sql.Tx, op lists.Op, entries []lists.Entry, at int64) error {
	if s.dialect == dialectPostgres {
		// Delivered at commit to every instance in WatchLists: they poll
		// at once instead of at their next poll_interval.
		if _, err := tx.ExecContext(ctx, `SELECT pg_notify('`+listsChannel+`', '')`); err != nil {
			return fmt.Errorf("notify list change: %w", err)
		}
	}
	last, err := addSeq(ctx, tx, seqListRev, int64(len(entries)))
	if err != nil {
		return err
	}
	first := last - int64(len(entries)) + 1
	b := newBulk(tx, insertListChanges)
	defer b.close()
	err = chunks(len(entries), func(lo, hi int) error {
		args := b.args[:0]
		for i, e := range entries[lo:hi] {
			args = append(args, first+int64(lo+i), string(op),
				string(e.List), string(e.Kind), e.Platform, e.Value, e.Reason, at)
		}
		_, err := b.exec(ctx, hi-lo, args)
		return err
	})
	if err != nil {
		return fmt.Errorf("record changes: %w", err)
	}
	return nil
}

// scanListEntry reads a row of listEntryColumns.
func scanListEntry(row interface{ Scan(dest ...any) error }, list lists.Name) (lists.Entry, error) {
	var (
		kind      string
		createdAt int64
	)
	e := lists.Entry{List: list}
	if err := row.Scan(&kind, &e.Platform, &e.Value, &e.Reason, &createdAt); err != nil {
		return lists.Entry{}, err
	}
	e.Kind = lists.Kind(kind)
	e.CreatedAt = fromMillis(createdAt)
	return e, nil
}

func checkList(list lists.Name) error {
	if !list.Valid() {
		return fmt.Errorf("%w: list %q: want blacklist or whitelist", lists.ErrInvalid, list)
	}
	return nil
}

// chunks calls fn with the bounds of consecutive chunks of at most
// listChunk of n items, stopping at the first error.
func chunks(n int, fn func(lo, hi int) error) error {
	for lo := 0; lo < n; lo += listChunk {
		if err := fn(lo, min(lo+listChunk, n)); err != nil {
			return err
		}
	}
	return nil
}

// multiRow is a statement with a multi-row VALUES list: prefix, rows of
// cols placeholders, suffix. The first shared placeholders ($1..) come
// before the rows, in prefix, and are the same for every row.
type multiRow struct {
	prefix, suffix string
	shared         int
	cols           int
	// casts, when set, follows each row's placeholder of that column
	// (PostgreSQL types a VALUES list's parameters as text otherwise).
	casts []string
	// qmarks writes the rows' placeholders as ? rather than $n, for
	// SQLite only: modernc's SQLite binds $n by a search of the
	// statement's parameter names, which costs the square of their number
	// in a statement; ? binds by position. The prefix then uses ? too.
	qmarks bool
}

// sql returns the statement with rows rows.
func (m multiRow) sql(rows int) string {
	var b strings.Builder
	b.Grow(len(m.prefix) + len(m.suffix) + rows*m.cols*6)
	b.WriteString(m.prefix)
	p := m.shared
	for r := range rows {
		if r > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		for c := range m.cols {
			if c > 0 {
				b.WriteByte(',')
			}
			p++
			if m.qmarks {
				b.WriteByte('?')
			} else {
				b.WriteByte('$')
				b.WriteString(strconv.Itoa(p))
			}
			if c < len(m.casts) {
				b.WriteString(m.casts[c])
			}
		}
		b.WriteByte(')')
	}
	b.WriteString(m.suffix)
	return b.String()
}

// bulk runs a multiRow statement in tx a chunk at a time. The full-chunk
// statement is prepared once, on first use; a shorter last chunk runs
// unprepared.
type bulk struct {
	tx   *sql.Tx
	m    multiRow
	full *sql.Stmt
	args []any // reused for each chunk's arguments
}

func newBulk(tx *sql.Tx, m multiRow) *bulk {
	return &bulk{tx: tx, m: m, args: make([]any, 0, m.shared+listChunk*m.cols)}
}

// stmt returns the prepared full-chunk statement, or nil for another size.
func (b *bulk) stmt(ctx context.Context, rows int) (*sql.Stmt, error) {
	if rows != listChunk {
		return nil, nil
	}
	if b.full == nil {
		st, err := b.tx.PrepareContext(ctx, b.m.sql(listChunk))
		if err != nil {
			return nil, fmt.Errorf("prepare: %w", err)
		}
		b.full = st
	}
	return b.full, nil
}

// exec runs the statement for rows rows and returns how many rows it
// changed.
func (b *bulk) exec(ctx context.Context, rows int, args []any) (int64, error) {
	st, err := b.stmt(ctx, rows)
	var res sql.Result
	switch {
	case err != nil:
		return 0, err
	case st != nil:
		res, err = st.ExecContext(ctx, args...)
	default:
		res, err = b.tx.ExecContext(ctx, b.m.sql(rows), args...)
	}
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (b *bulk) query(ctx context.Context, rows int, args []any) (*sql.Rows, error) {
	st, err := b.stmt(ctx, rows)
	switch {
	case err != nil:
		return nil, err
	case st != nil:
		return st.QueryContext(ctx, args...)
	default:
		return b.tx.QueryContext(ctx, b.m.sql(rows), args...)
	}
}

func (b *bulk) close() {
	if b.full != nil {
		_ = b.full.Close()
	}
}
