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
	sqlLedgerRelease = `INSERT INTO sent_ledger (key, resolved, rest, retry, updated_at) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (key) DO UPDATE SET resolved = excluded.resolved, rest = excluded.rest, retry = excluded.retry, updated_at = excluded.updated_at,
owner = '', claimed_until = 0`
	// A claim is taken when the row has no live claim of another owner;
	// then the row, claimed or not, is read in the same transaction.
	sqlLedgerClaim = `INSERT INTO sent_ledger (key, resolved, rest, retry, updated_at, owner, claimed_until) VALUES ($1, '', '', '', $2, $3, $4)
ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, claimed_until = excluded.claimed_until
WHERE sent_ledger.owner = '' OR sent_ledger.owner = excluded.owner OR sent_ledger.claimed_until <= $2`
	sqlLedgerClaimed = `SELECT resolved, rest, retry, owner, claimed_until FROM sent_ledger WHERE key = $1`
	sqlLedgerRenew   = `UPDATE sent_ledger SET claimed_until = $1 WHERE key = $2 AND owner = $3`
	sqlLedgerPrune   = `DELETE FROM sent_ledger WHERE updated_at < $1`
	sqlLedgerInsert  = `INSERT INTO sent_ledger (key, resolved, rest, retry, updated_at) VALUES ($1, $2, '', '', $3)
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
	return decodeLedger(key, resolved, rest, retry)
}

// decodeLedger turns a ledger row's hex bitmaps into an entry.
func decodeLedger(key, resolved, rest, retry string) (dispatcher.LedgerEntry, error) {
	var err error
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
			stmt := sqlLedgerUpsert
			if e.Release {
				stmt = sqlLedgerRelease
			}
			if _, err := tx.ExecContext(ctx, stmt, k,
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
// one it changes nothing and reports false. The row's key decides, so it
// needs no write lock (writeShared): one write per batch on the lane, it
// was the last hot write that waited for the lock and the WAL flush on
// PostgreSQL. It implements dispatcher.Ledger.
func (s *Store) RecordReceived(ctx context.Context, key, campaign string, resolved []byte, counts dispatcher.Counters) (bool, error) {
	var inserted bool
	err := s.writeShared(ctx, func(tx *sql.Tx) error {
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

// ClaimLedger claims the ledger row of key for owner until until, unless
// another owner's claim holds past now (creating the row when there is
// none), and returns the row and its holder after the attempt. It
// implements dispatcher.Ledger.
func (s *Store) ClaimLedger(ctx context.Context, key, owner string, now, until time.Time) (dispatcher.LedgerEntry, string, error) {
	var resolved, rest, retry, holder string
	var claimedUntil int64
	err := s.writeShared(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, sqlLedgerClaim, key, toMillis(now), owner, toMillis(until)); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, sqlLedgerClaimed, key).Scan(&resolved, &rest, &retry, &holder, &claimedUntil)
	})
	if err != nil {
		return dispatcher.LedgerEntry{}, "", fmt.Errorf("ledger %s: claim: %w", key, err)
	}
	e, err := decodeLedger(key, resolved, rest, retry)
	if err != nil {
		return dispatcher.LedgerEntry{}, "", err
	}
	if holder != "" {
		e.ClaimedUntil = time.UnixMilli(claimedUntil)
	}
	return e, holder, nil
}

// RenewClaims extends owner's claims on keys until until, in one
// transaction; the rows another owner holds now are left alone. It
// implements dispatcher.Ledger.
func (s *Store) RenewClaims(ctx context.Context, owner string, keys []string, until time.Time) error {
	if len(keys) == 0 {
		return nil
	}
	keys = slices.Sorted(slices.Values(keys)) // a fixed lock order in PostgreSQL
	return s.writeShared(ctx, func(tx *sql.Tx) error {
		for _, k := range keys {
			if _, err := tx.ExecContext(ctx, sqlLedgerRenew, toMillis(until), k, owner); err != nil {
				return fmt.Errorf("ledger %s: renew claim: %w", k, err)
			}
		}
		return nil
	})
}
