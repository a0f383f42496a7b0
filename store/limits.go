package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/pushd/pushd/dispatcher"
)

// SQL of the rate limit settings.
const (
	sqlLimitsGet    = `SELECT level, per_second, burst FROM rate_limits`
	sqlLimitGet     = `SELECT per_second, burst FROM rate_limits WHERE level = $1`
	sqlLimitsUpsert = `INSERT INTO rate_limits (level, per_second, burst, updated_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (level) DO UPDATE SET per_second = excluded.per_second, burst = excluded.burst, updated_at = excluded.updated_at`
	sqlLimitsDelete = `DELETE FROM rate_limits WHERE level = $1`
)

// RateLimits returns the operators' settings by level. It implements
// dispatcher.LimitStore.
func (s *Store) RateLimits(ctx context.Context) (map[string]dispatcher.LimitSetting, error) {
	rows, err := s.r.QueryContext(ctx, sqlLimitsGet)
	if err != nil {
		return nil, fmt.Errorf("rate limits: %w", err)
	}
	defer rows.Close()
	out := make(map[string]dispatcher.LimitSetting)
	for rows.Next() {
		var level string
		var ls dispatcher.LimitSetting
		if err := rows.Scan(&level, &ls.PerSecond, &ls.Burst); err != nil {
			return nil, fmt.Errorf("rate limits: %w", err)
		}
		out[level] = ls
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("rate limits: %w", err)
	}
	return out, nil
}

// SetRateLimit stores the setting of a level, or with nil deletes it. It
// implements dispatcher.LimitStore. A change made with an audit.Note in
// ctx writes its audit record (the level's setting before and after, null
// for none) in the same transaction, or does not happen.
func (s *Store) SetRateLimit(ctx context.Context, level string, ls *dispatcher.LimitSetting) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		var before any // the level's setting, nil when it has none
		if noted(ctx) {
			var old dispatcher.LimitSetting
			switch err := tx.QueryRowContext(ctx, sqlLimitGet, level).Scan(&old.PerSecond, &old.Burst); {
			case err == nil:
				before = old
			case !errors.Is(err, sql.ErrNoRows):
				return err
			}
		}
		var after any
		if ls == nil {
			if _, err := tx.ExecContext(ctx, sqlLimitsDelete, level); err != nil {
				return err
			}
		} else {
			if _, err := tx.ExecContext(ctx, sqlLimitsUpsert, level, ls.PerSecond, ls.Burst, toMillis(s.now())); err != nil {
				return err
			}
			after = *ls
		}
		return s.auditNote(ctx, tx, level, before, after)
	})
	if err != nil {
		return fmt.Errorf("set rate limit %s: %w", level, err)
	}
	return nil
}
