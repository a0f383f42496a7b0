package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/pushd/pushd/lists"
)

// sqlSearchListEntries reads the entries of one (list, kind, platform)
// whose value starts with a prefix, as a range of the primary key.
const sqlSearchListEntries = `SELECT ` + listEntryColumns + ` FROM list_entries
WHERE list = $1 AND kind = $2 AND platform = $3 AND value >= $4 AND value < $5
ORDER BY value
LIMIT $6`

// prefixEnd is above every value that starts with a prefix, in byte order
// (SQLite's, and PostgreSQL's "C" collation): the prefix followed by the
// highest code point. No value continues with it: it is a noncharacter.
const prefixEnd = "\U0010FFFF"

// searchGroups are the (kind, platform) pairs an entry may have.
var searchGroups = []lists.Key{
	{Kind: lists.Token, Platform: lists.Android},
	{Kind: lists.Token, Platform: lists.IOS},
	{Kind: lists.User},
}

// SearchListEntries returns at most limit (clamped to 1..MaxListPage)
// entries of list whose value starts with prefix, tokens before users,
// each group in value order. Each group is a range of the primary key,
// so a search costs the same whatever the list's size.
func (s *Store) SearchListEntries(ctx context.Context, list lists.Name, prefix string, limit int) ([]lists.Entry, error) {
	if err := checkList(list); err != nil {
		return nil, fmt.Errorf("search list entries: %w", err)
	}
	limit = min(max(limit, 1), MaxListPage)
	out := []lists.Entry{}
	for _, g := range searchGroups {
		if len(out) == limit {
			break
		}
		err := func() error {
			rows, err := s.r.QueryContext(ctx, sqlSearchListEntries, string(list), string(g.Kind), g.Platform,
				prefix, prefix+prefixEnd, limit-len(out))
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				e, err := scanListEntry(rows, list)
				if err != nil {
					return err
				}
				// A collation other than byte order could put others in
				// the range.
				if strings.HasPrefix(e.Value, prefix) {
					out = append(out, e)
				}
			}
			return rows.Err()
		}()
		if err != nil {
			return nil, fmt.Errorf("search %s entries: %w", list, err)
		}
	}
	return out, nil
}
