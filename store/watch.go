package store

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// listsChannel is the PostgreSQL notification channel of list changes:
// every list write notifies it in its transaction (recordChanges).
const listsChannel = "pushd_lists"

// WatchLists calls poke whenever another instance (or this one) commits a
// list change, until ctx ends; it returns nil then. On PostgreSQL it holds
// one connection of the pool that LISTENs to the change notifications, so
// that every instance applies a change within milliseconds instead of at
// its next poll (lists.poll_interval stays the safety net: a notification
// lost with a connection is caught by the next poll, and poke is called
// once each time listening starts, for what may have been missed). On
// SQLite, whose one file no other instance shares, it returns nil at once.
func (s *Store) WatchLists(ctx context.Context, poke func(), log *slog.Logger) error {
	if s.pool == nil {
		return nil
	}
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listen(ctx, poke)
		if ctx.Err() != nil {
			break
		}
		log.Warn("list change notifications stopped; polling only until they are back", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
	return nil
}

// listen listens on one connection until it fails or ctx ends.
func (s *Store) listen(ctx context.Context, poke func()) error {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection holds a LISTEN: it is taken out of the pool, and
	// closed at the end.
	conn := pc.Hijack()
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	if _, err := conn.Exec(ctx, "LISTEN "+listsChannel); err != nil {
		return err
	}
	poke()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return errors.Join(errors.New("wait for notification"), err)
		}
		poke()
	}
}
