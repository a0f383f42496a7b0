package store

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"
)

// SQL of the dedup ledger.
const (
	sqlLedgerGet    = `SELECT resolved FROM sent_ledger WHERE key = $1`
	sqlLedgerUpsert = `INSERT INTO sent_ledger (key, resolved, updated_at) VALUES ($1, $2, $3)
ON CONFLICT (key) DO UPDATE SET resolved = excluded.resolved, updated_at = excluded.updated_at`
	sqlLedgerPrune = `DELETE FROM sent_ledger WHERE updated_at < $1`
)

// Resolved returns the bitmap of resolved recipients recorded for the
// message with key, or nil when none is. It implements dispatcher.Ledger.
func (s *Store) Resolved(ctx context.Context, key string) ([]byte, error) {
	var h string
	err := s.r.QueryRowContext(ctx, sqlLedgerGet, key).Scan(&h)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ledger %s: %w", key, err)
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return nil, fmt.Errorf("ledger %s: %w", key, err)
	}
	return b, nil
}

// RecordResolved stores the bitmaps of several messages in one write. It
// implements dispatcher.Ledger.
func (s *Store) RecordResolved(ctx context.Context, marks map[string][]byte) error {
	if len(marks) == 0 {
		return nil
	}
	keys := make([]string, 0, len(marks))
	for k := range marks {
		keys = append(keys, k)
	}
	slices.Sort(keys) // a fixed order: no lock-order deadlocks in PostgreSQL
	now := toMillis(s.now())
	return s.write(ctx, func(tx *sql.Tx) error {
		for _, k := range keys {
			if _, err := tx.ExecContext(ctx, sqlLedgerUpsert, k, hex.EncodeToString(marks[k]), now); err != nil {
				return fmt.Errorf("ledger %s: %w", k, err)
			}
		}
		return nil
	})
}

// PruneLedger deletes ledger rows not updated since before and returns
// how many it deleted.
func (s *Store) PruneLedger(ctx context.Context, before time.Time) (int, error) {
	n, err := s.deleteBefore(ctx, sqlLedgerPrune, before)
	if err != nil {
		return 0, fmt.Errorf("prune ledger: %w", err)
	}
	return n, nil
}

// deleteBefore runs a DELETE statement whose one parameter is a time in
// milliseconds, and returns how many rows it deleted.
func (s *Store) deleteBefore(ctx context.Context, stmt string, before time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, stmt, toMillis(before))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}
