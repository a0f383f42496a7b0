package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
)

const (
	sqlSecret       = `SELECT value FROM secrets WHERE name = $1`
	sqlInsertSecret = `INSERT INTO secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING`
)

// Secret returns the shared secret called name, making one of size random
// bytes if the store has none yet. Every instance sharing the store gets
// the same bytes: when two make one at once, the first insert wins and
// both read it back.
func (s *Store) Secret(ctx context.Context, name string, size int) ([]byte, error) {
	if name == "" || size < 16 {
		return nil, fmt.Errorf("secret %q: want a name and at least 16 bytes", name)
	}
	if v, err := s.secret(ctx, s.r, name); err == nil || !errors.Is(err, sql.ErrNoRows) {
		return v, err
	}
	b := make([]byte, size)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("secret %q: %w", name, err)
	}
	var v []byte
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, sqlInsertSecret, name, hex.EncodeToString(b), toMillis(s.now())); err != nil {
			return err
		}
		var err error
		v, err = s.secret(ctx, tx, name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("secret %q: %w", name, err)
	}
	return v, nil
}

func (s *Store) secret(ctx context.Context, q querier, name string) ([]byte, error) {
	var h string
	if err := q.QueryRowContext(ctx, sqlSecret, name).Scan(&h); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, err
		}
		return nil, fmt.Errorf("secret %q: %w", name, err)
	}
	v, err := hex.DecodeString(h)
	if err != nil {
		return nil, fmt.Errorf("secret %q: stored value is not hex: %w", name, err)
	}
	return v, nil
}
