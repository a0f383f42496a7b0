package store

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/pushd/pushd/dispatcher"
)

// SQL of the rate limit settings.
const (
	sqlLimitsGet    = `SELECT level, per_second, burst FROM rate_limits`
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
// implements dispatcher.LimitStore.
func (s *Store) SetRateLimit(ctx context.Context, level string, ls *dispatcher.LimitSetting) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		if ls == nil {
			_, err := tx.ExecContext(ctx, sqlLimitsDelete, level)
			return err
		}
		_, err := tx.ExecContext(ctx, sqlLimitsUpsert, level, ls.PerSecond, ls.Burst, toMillis(s.now()))
		return err
	})
	if err != nil {
		return fmt.Errorf("set rate limit %s: %w", level, err)
	}
	return nil
}
