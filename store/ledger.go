package store

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/pushd/pushd/dispatcher"
)

// SQL of the dedup ledger.
const (
	sqlLedgerGet    = `SELECT resolved, rest, retry FROM sent_ledger WHERE key = $1`
	sqlLedgerUpsert = `INSERT INTO sent_ledger (key, resolved, rest, retry, updated_at) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (key) DO UPDATE SET resolved = excluded.resolved, rest = excluded.rest, retry = excluded.retry, updated_at = excluded.updated_at`
	sqlLedgerPrune  = `DELETE FROM sent_ledger WHERE updated_at < $1`
	sqlLedgerInsert = `INSERT INTO sent_ledger (key, resolved, rest, retry, updated_at) VALUES ($1, $2, '', '', $3)
ON CONFLICT (key) DO NOTHING`
)

// LedgerEntry returns what the ledger holds for the message with key: the
// zero entry when nothing. It implements dispatcher.Ledger.
func (s *Store) LedgerEntry(ctx context.Context, key string) (dispatcher.LedgerEntry, error) {
	var resolved, rest, retry string
	err := s.r.QueryRowContext(ctx, sqlLedgerGet, key).Scan(&resolved, &rest, &retry)
	if errors.Is(err, sql.ErrNoRows) {
		return dispatcher.LedgerEntry{}, nil
	}
	if err != nil {
		return dispatcher.LedgerEntry{}, fmt.Errorf("ledger %s: %w", key, err)
	}
	var e dispatcher.LedgerEntry
	for _, f := range []struct {
		hex string
		out *[]byte
	}{{resolved, &e.Resolved}, {rest, &e.Rest}, {retry, &e.Retry}} {
		if f.hex == "" {
			continue
		}
		if *f.out, err = hex.DecodeString(f.hex); err != nil {
			return dispatcher.LedgerEntry{}, fmt.Errorf("ledger %s: %w", key, err)
		}
	}
	return e, nil
}

// RecordLedger stores the entries of several messages and adds counts to
// the campaigns' counters, in one transaction: the counters of resolved
// recipients are committed with their bits, or neither is. Counts of a
// campaign the store does not know are skipped. It implements
// dispatcher.Ledger.
func (s *Store) RecordLedger(ctx context.Context, entries map[string]dispatcher.LedgerEntry, counts map[string]dispatcher.Counters) error {
	if len(entries) == 0 && len(counts) == 0 {
		return nil
	}
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	slices.Sort(keys) // a fixed order: no lock-order deadlocks in PostgreSQL
	now := toMillis(s.now())
	return s.writeShared(ctx, func(tx *sql.Tx) error {
		for _, k := range keys {
			e := entries[k]
			if _, err := tx.ExecContext(ctx, sqlLedgerUpsert, k,
				hex.EncodeToString(e.Resolved), hex.EncodeToString(e.Rest), hex.EncodeToString(e.Retry), now); err != nil {
				return fmt.Errorf("ledger %s: %w", k, err)
			}
		}
		if _, err := s.addCounters(ctx, tx, counts); err != nil {
			return fmt.Errorf("ledger counters: %w", err)
		}
		return nil
	})
}

// RecordReceived records a message taken from a producer: when the ledger
// has no row for key it inserts one, with resolved, and adds counts to the
// campaign's counters, in one transaction, and reports true; when it has
// one it changes nothing and reports false. It implements
// dispatcher.Ledger.
func (s *Store) RecordReceived(ctx context.Context, key, campaign string, resolved []byte, counts dispatcher.Counters) (bool, error) {
	var inserted bool
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, sqlLedgerInsert, key, hex.EncodeToString(resolved), toMillis(s.now()))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return errUnchanged
		}
		inserted = true
		_, err = s.addCounters(ctx, tx, map[string]dispatcher.Counters{campaign: counts})
		return err
	})
	if err != nil {
		return false, fmt.Errorf("ledger %s: record received: %w", key, err)
	}
	return inserted, nil
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
