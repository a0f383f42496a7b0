package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/pushd/pushd/lists"
	"github.com/pushd/pushd/store"
)

// blacklistEntries returns n random blacklist entries: n/2 user ids, the
// rest (platform, token) pairs, alternately iOS and Android, each shaped
// like a real one. None matches a benchmark recipient: their user ids are
// "u-<i>" and these "bl-<32 hex digits>"; their tokens are SHA-256 hashes
// of the campaign name, these 32 random bytes (a match would take a 2^-256
// coincidence).
func blacklistEntries(n int) []lists.Entry {
	users := n / 2
	raw := make([]byte, 16*users+32*(n-users))
	_, _ = rand.Read(raw) // never fails
	entries := make([]lists.Entry, n)
	for i := range entries {
		e := lists.Entry{List: lists.Blacklist}
		switch {
		case i < users:
			b := raw[16*i : 16*i+16]
			e.Kind, e.Value, e.Reason = lists.User, "bl-"+hex.EncodeToString(b), "opt_out"
		default:
			off := 16*users + 32*(i-users)
			b := raw[off : off+32]
			e.Kind, e.Reason = lists.Token, "invalid_token"
			if (i-users)%2 == 0 {
				e.Platform, e.Value = lists.IOS, hex.EncodeToString(b)
			} else {
				e.Platform, e.Value = lists.Android, hex.EncodeToString(b[:6])+":APA91b"+hex.EncodeToString(b[6:])
			}
		}
		entries[i] = e
	}
	return entries
}

// blacklistStore is a store holding only a blacklist, made once and
// copied into the store directory of each round's pushd+blacklist.
type blacklistStore struct {
	path    string        // the SQLite file
	entries int           // distinct entries imported
	users   int           // of which user ids
	took    time.Duration // the ImportList call
}

// makeBlacklistStore creates a store at path and imports n random
// blacklist entries (blacklistEntries) into it, in one ImportList call,
// which it times.
func makeBlacklistStore(ctx context.Context, path string, n int) (bs *blacklistStore, err error) {
	st, err := store.Open(ctx, path, nil)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := st.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	entries := blacklistEntries(n)
	start := time.Now()
	imported, err := st.ImportList(ctx, lists.Blacklist, entries, true)
	took := time.Since(start)
	if err != nil {
		return nil, err
	}
	if imported != n {
		return nil, fmt.Errorf("imported %d distinct blacklist entries of %d random ones", imported, n)
	}
	// The entries (no longer live) and the import's garbage, a few
	// hundred MB for a million entries, are no use any more: give the
	// memory back before the contenders run on the same machine.
	debug.FreeOSMemory()
	return &blacklistStore{path: path, entries: imported, users: n / 2, took: took}, nil
}

// copyTo copies the store's files into dir, under the name the store has
// in pushdEnv. The store is closed: only the database file is left, but a
// write-ahead log, if there is one, is copied too.
func (bs *blacklistStore) copyTo(dir string) error {
	dst := filepath.Join(dir, pushdStoreFile)
	for _, suffix := range []string{"", "-wal"} {
		err := copyFile(bs.path+suffix, dst+suffix)
		if suffix != "" && errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("copy blacklist store: %w", err)
		}
	}
	return nil
}

// copyFile copies the file src to dst, which it creates.
func copyFile(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	_, err = io.Copy(out, in)
	return err
}
