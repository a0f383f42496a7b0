package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// SQL of campaign retention. A campaign has ended when its engine row
// (campaigns) is finished or cancelled, and, for a console campaign, its
// definition is finished, cancelled or missed, or running with its whole
// audience published. Both rows of a console campaign go together: a
// definition goes only when no engine row of its id is left that has not
// ended before the cut, and an engine row goes only once no definition of
// its id is left.
const (
	sqlPruneDefs = `DELETE FROM campaign_defs
WHERE updated_at < $1
  AND (state IN ('finished', 'cancelled', 'missed') OR (state = 'running' AND published_all = 1))
  AND NOT EXISTS (SELECT 1 FROM campaigns c WHERE c.id = campaign_defs.id
                  AND (c.status NOT IN ('finished', 'cancelled') OR c.updated_at >= $1))
RETURNING id`

	sqlPruneEngineCampaigns = `DELETE FROM campaigns
WHERE status IN ('finished', 'cancelled') AND updated_at < $1
  AND NOT EXISTS (SELECT 1 FROM campaign_defs d WHERE d.id = campaigns.id)
RETURNING id`
)

// PruneCampaigns deletes the campaigns that ended before before, in one
// transaction: those that came over AMQP (and test sends) once finished
// or cancelled, and those created in pushd once finished, cancelled or
// missed, with their engine rows. Their audit records stay. It returns
// how many campaigns it deleted.
//
// A batch that arrives later for a deleted campaign starts it anew, as
// for an id never seen; the caller keeps campaigns long enough that no
// batch of theirs can still be queued, held or waiting for a retry.
func (s *Store) PruneCampaigns(ctx context.Context, before time.Time) (int, error) {
	cut := toMillis(before)
	ids := make(map[string]bool)
	err := s.write(ctx, func(tx *sql.Tx) error {
		clear(ids)
		for _, q := range []string{sqlPruneDefs, sqlPruneEngineCampaigns} {
			if err := deletedIDs(ctx, tx, q, cut, ids); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune campaigns: %w", err)
	}
	return len(ids), nil
}

// deletedIDs runs a DELETE ... RETURNING id with the one parameter arg and
// adds the ids to ids.
func deletedIDs(ctx context.Context, tx *sql.Tx, q string, arg any, ids map[string]bool) error {
	rows, err := tx.QueryContext(ctx, q, arg)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return err
		}
		ids[id] = true
	}
	return rows.Err()
}
