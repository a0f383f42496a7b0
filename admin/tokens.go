package admin

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// role is what a token may do; each role may do everything the lower ones
// may.
type role int

const (
	roleNone     role = iota
	roleViewer        // look
	roleOperator      // also change campaigns
	roleAdmin         // everything
)

func (r role) String() string {
	switch r {
	case roleViewer:
		return "viewer"
	case roleOperator:
		return "operator"
	case roleAdmin:
		return "admin"
	}
	return "none"
}

func parseRole(s string) role {
	for _, r := range []role{roleViewer, roleOperator, roleAdmin} {
		if s == r.String() {
			return r
		}
	}
	return roleNone
}

// principal is who made a request: a bearer token or a signed-in user.
type principal struct {
	role role
	// actor is who the audit log names: for a token
	// "<role>:<first 8 hex of sha256(token)>" (never the token), for a
	// user "user:<name>".
	actor string
	// name is the signed-in user's name; empty for a token.
	name string
	// session is the id hash of the user's session; empty for a token.
	session string
}

type principalKey struct{}

func withPrincipal(ctx context.Context, p principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// principalFrom returns the request's principal; the zero principal (role
// none, allowed nothing) if the request was not authenticated.
func principalFrom(ctx context.Context) principal {
	p, _ := ctx.Value(principalKey{}).(principal)
	return p
}

// tokenEntry is one line of the tokens file. Only the token's hash is kept.
type tokenEntry struct {
	sum  [sha256.Size]byte
	role role
}

// maxTokensFileBytes bounds what is read of the tokens file.
const maxTokensFileBytes = 1 << 20

// Tokens must carry at least 128 bits: 32 hexadecimal digits, or 22
// characters of a larger alphabet (base64: 6 bits each). `openssl rand
// -hex 16` makes one.
const (
	minHexTokenLen   = 32
	minOtherTokenLen = 22
)

// checkStrength refuses a token shorter than 128 bits' worth.
func checkStrength(token string) error {
	hex := !strings.ContainsFunc(token, func(c rune) bool {
		return !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F')
	})
	switch {
	case hex && len(token) < minHexTokenLen:
		return fmt.Errorf("token too short: %d hex digits, want at least %d (128 bits; `openssl rand -hex 16` makes one)", len(token), minHexTokenLen)
	case !hex && len(token) < minOtherTokenLen:
		return fmt.Errorf("token too short: %d characters, want at least %d, or %d hex digits (128 bits; `openssl rand -hex 16` makes one)", len(token), minOtherTokenLen, minHexTokenLen)
	}
	return nil
}

// parseTokens parses a tokens file: one ROLE:TOKEN per line, blank lines and
// lines starting with # ignored. A file with no token lines holds no
// tokens (every request is refused). Errors name the line, never its
// content: a line without a role may be a bare token.
func parseTokens(data []byte) ([]tokenEntry, error) {
	if len(data) > maxTokensFileBytes {
		return nil, fmt.Errorf("larger than %d bytes", maxTokensFileBytes)
	}
	var entries []tokenEntry
	firstLine := make(map[[sha256.Size]byte]int)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, maxTokensFileBytes+1)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, token, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("line %d: want ROLE:TOKEN", n)
		}
		r := parseRole(strings.TrimSpace(name))
		if r == roleNone {
			return nil, fmt.Errorf("line %d: unknown role (want viewer, operator or admin)", n)
		}
		token = strings.TrimSpace(token)
		switch {
		case token == "":
			return nil, fmt.Errorf("line %d: empty token", n)
		case strings.ContainsFunc(token, func(c rune) bool { return c <= ' ' || c == 0x7f }):
			return nil, fmt.Errorf("line %d: token contains spaces or control characters", n)
		}
		if err := checkStrength(token); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		sum := sha256.Sum256([]byte(token))
		if first, dup := firstLine[sum]; dup {
			return nil, fmt.Errorf("line %d: same token as line %d", n, first)
		}
		firstLine[sum] = n
		entries = append(entries, tokenEntry{sum: sum, role: r})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return entries, nil
}

// tokenFile holds the tokens of a file and reloads them when the file
// changes, checking at most once a second, on requests.
type tokenFile struct {
	path string
	now  func() time.Time
	log  *slog.Logger

	mu      sync.Mutex
	checked time.Time   // last check
	info    os.FileInfo // of the version last read, good or bad
	lastErr string      // last failure to stat or read, logged once
	entries []tokenEntry
}

// loadTokenFile reads path; the error names the file and the bad line.
func loadTokenFile(path string, now func() time.Time, logger *slog.Logger) (*tokenFile, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	entries, err := readTokens(path)
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		logger.Warn("admin tokens file holds no tokens: every API request is refused until it does", "path", path)
	}
	return &tokenFile{path: path, now: now, log: logger, checked: now(), info: info, entries: entries}, nil
}

func readTokens(path string) ([]tokenEntry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	entries, err := parseTokens(data)
	if err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", path, err)
	}
	return entries, nil
}

// current returns the tokens, reloading the file first if it is time to
// check it and it changed. Revoking must work whatever the operator does
// to the file, so every failure fails closed: a file that is missing or
// unreadable, or that has a broken line, leaves no tokens at all (not the
// previous ones) until it is fixed. See docs/admin.md.
func (f *tokenFile) current() []tokenEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if d := now.Sub(f.checked); d >= time.Second || d < 0 {
		f.checked = now
		f.reload()
	}
	return f.entries // replaced, never modified: safe to read unlocked
}

func (f *tokenFile) reload() {
	// Stat then read: if the file changes in between, the next check sees
	// a different stat and reads it again.
	info, err := os.Stat(f.path)
	if err != nil {
		f.fail(err)
		return
	}
	// Size as well as mtime: a rewrite may keep a coarse mtime. SameFile:
	// a rename (or a Kubernetes secret's symlink swap) may keep both.
	if f.info != nil && os.SameFile(info, f.info) && info.ModTime().Equal(f.info.ModTime()) && info.Size() == f.info.Size() {
		return
	}
	entries, err := readTokens(f.path)
	if err != nil {
		f.fail(err)
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, os.ErrPermission) {
			f.info = info // a bad version: read again only once it changes
		}
		return
	}
	f.info = info
	f.entries = entries
	f.lastErr = ""
	f.log.Info("admin tokens file reloaded", "path", f.path, "tokens", len(entries))
}

// fail drops every token, and logs err once however often it repeats.
// f.info is forgotten, so that the file is read again as soon as it is
// back.
func (f *tokenFile) fail(err error) {
	f.entries = nil
	f.info = nil
	if msg := err.Error(); msg != f.lastErr {
		f.lastErr = msg
		f.log.Error("admin tokens file not usable: no tokens are accepted until it is fixed", "err", err)
	}
}

// lookup returns the principal of token. Every entry is compared, in
// constant time, whichever matches.
func (f *tokenFile) lookup(token string) (principal, bool) {
	sum := sha256.Sum256([]byte(token))
	found := roleNone
	for _, e := range f.current() {
		if subtle.ConstantTimeCompare(e.sum[:], sum[:]) == 1 {
			found = e.role
		}
	}
	if found == roleNone {
		return principal{}, false
	}
	return principal{role: found, actor: found.String() + ":" + hex.EncodeToString(sum[:4])}, true
}
