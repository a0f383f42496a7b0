package lists

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pushd/pushd/internal/safetext"
)

// Name names a list.
type Name string

// The two lists.
const (
	// Blacklist: recipients that must never get a push. Always applied;
	// it wins over the whitelist.
	Blacklist Name = "blacklist"
	// Whitelist: test devices and users, the only recipients of a test
	// campaign (or of every campaign in whitelist-only mode).
	Whitelist Name = "whitelist"
)

// Valid reports whether n is a known list.
func (n Name) Valid() bool { return n == Blacklist || n == Whitelist }

// Kind says what an entry matches.
type Kind string

// Entry kinds.
const (
	// User matches every device of a user id.
	User Kind = "user"
	// Token matches one device: a (platform, token) pair.
	Token Kind = "token"
)

// Platforms of token entries, as written in batches.
const (
	IOS     = "ios"
	Android = "android"
)

// Entry is one entry of a list.
type Entry struct {
	List Name
	Kind Kind
	// Platform is "ios" or "android" for a token entry, "" for a user.
	Platform string
	// Value is the user id or the device token.
	Value string
	// Reason says why the entry exists (opt_out, invalid_token, abuse,
	// test_device...).
	Reason    string
	CreatedAt time.Time
}

// Limits on entry fields.
const (
	MaxValueLength  = 4096
	MaxReasonLength = 200
)

// ErrInvalid is wrapped by Validate.
var ErrInvalid = errors.New("invalid list entry")

// Validate checks an entry: a known list and kind, a platform for tokens
// (none for users), a value, bounded lengths, no control characters.
func (e Entry) Validate() error {
	if msg := e.problem(); msg != "" {
		return fmt.Errorf("%w: %s", ErrInvalid, msg)
	}
	return nil
}

// problem says what is wrong with an entry, or returns "".
func (e Entry) problem() string {
	if !e.List.Valid() {
		return fmt.Sprintf("list %q: want blacklist or whitelist", e.List)
	}
	return e.rowProblem()
}

// rowProblem says what is wrong with an entry but its list (what a CSV row
// holds), or returns "".
func (e Entry) rowProblem() string {
	switch e.Kind {
	case User:
		if e.Platform != "" {
			return fmt.Sprintf("a user entry has no platform (got %q)", e.Platform)
		}
	case Token:
		if e.Platform != IOS && e.Platform != Android {
			return fmt.Sprintf("platform %q: a token entry needs ios or android", e.Platform)
		}
	default:
		return fmt.Sprintf("kind %q: want user or token", e.Kind)
	}
	if e.Value == "" {
		return "empty value"
	}
	if e.Kind == Token && strings.ContainsAny(e.Value[:1], "=+@\t\r") {
		// No APNs or FCM token starts so; a value that does is a
		// spreadsheet formula, not a token. ("-" is left to export
		// escaping: FCM's alphabet has it.)
		return fmt.Sprintf("token %q: a device token cannot start with %q", e.Value, e.Value[:1])
	}
	if len(e.Value) > MaxValueLength {
		return fmt.Sprintf("value longer than %d bytes", MaxValueLength)
	}
	if len(e.Reason) > MaxReasonLength {
		return fmt.Sprintf("reason longer than %d bytes", MaxReasonLength)
	}
	for field, s := range map[string]string{"value": e.Value, "reason": e.Reason} {
		if err := safetext.Check(s); err != nil {
			return fmt.Sprintf("%s %q: %v", field, s, err)
		}
	}
	return ""
}

// invalidError is an error that wraps ErrInvalid without repeating its
// text, for messages that already say where the problem is.
type invalidError string

func (e invalidError) Error() string        { return string(e) }
func (e invalidError) Is(target error) bool { return target == ErrInvalid }

// Key identifies an entry within its list.
type Key struct {
	Kind     Kind
	Platform string
	Value    string
}

// Key returns the entry's key.
func (e Entry) Key() Key { return Key{Kind: e.Kind, Platform: e.Platform, Value: e.Value} }

// Op is what a change does.
type Op string

// Change operations.
const (
	OpAdd    Op = "add"
	OpRemove Op = "remove"
	// OpReload means the whole list changed (an import): rebuild it from
	// the source.
	OpReload Op = "reload"
)

// Change is one change to a list, as every instance replays it. For
// OpReload only Entry.List is set.
type Change struct {
	Rev   int64
	Op    Op
	Entry Entry
}

// Snapshot is a copy of a list's entries, kept when an import replaced
// them or a restore put an earlier snapshot back, so that the change can
// be undone.
type Snapshot struct {
	ID   int64
	List Name
	// Entries is how many entries it holds.
	Entries   int
	CreatedAt time.Time
	// CreatedBy is who made the change that replaced the entries.
	CreatedBy string
}

// Source is where the lists are kept (the store implements it). Instances
// build their index from it and follow its changes.
type Source interface {
	// EachEntry calls fn for every entry of a list, in no particular
	// order, stopping at the first error fn returns.
	EachEntry(ctx context.Context, list Name, fn func(Entry) error) error
	// ListChanges returns at most limit changes with Rev above since, in
	// Rev order. Revisions have no gaps: a change after since+1 means the
	// ones before it were pruned, and the caller must reload.
	ListChanges(ctx context.Context, since int64, limit int) ([]Change, error)
	// ListRev returns the latest change's Rev (0 when there is none).
	ListRev(ctx context.Context) (int64, error)
}
