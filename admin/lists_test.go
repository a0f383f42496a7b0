package admin

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushd/pushd/lists"
)

// fakeLists is an in-memory ListStore that behaves like the store: it
// validates entries (errors wrap lists.ErrInvalid), keeps CreatedAt of
// entries already there, and pages in key order. Fail, when set, is asked
// before each call whether to fail it.
type fakeLists struct {
	mu      sync.Mutex
	now     func() time.Time
	entries map[lists.Name]map[lists.Key]lists.Entry
	order   map[lists.Name][]lists.Entry // entries in key order; nil: to sort again
	calls   []string
	Fail    func(method string) error
	// EachEntryFn, when set, replaces EachEntry.
	EachEntryFn func(ctx context.Context, list lists.Name, fn func(lists.Entry) error) error
	// ImportListFn, when set, is called by ImportList before it imports.
	ImportListFn func(ctx context.Context, list lists.Name, entries []lists.Entry, replace bool) error
	// notes are the audited changes made, as the store would record them.
	notes noteLog
}

func newFakeLists(now func() time.Time) *fakeLists {
	return &fakeLists{now: now, entries: map[lists.Name]map[lists.Key]lists.Entry{
		lists.Blacklist: {}, lists.Whitelist: {},
	}}
}

func (f *fakeLists) call(method string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, method)
	if f.Fail != nil {
		return f.Fail(method)
	}
	return nil
}

// Calls returns the methods called, in order.
func (f *fakeLists) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// put adds entries without checking them, for tests' setup.
func (f *fakeLists) put(es ...lists.Entry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range es {
		if e.CreatedAt.IsZero() {
			e.CreatedAt = f.now()
		}
		f.entries[e.List][e.Key()] = e
	}
	f.order = nil
}

// sorted returns the entries of list in key order.
func (f *fakeLists) sorted(list lists.Name) []lists.Entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.order == nil {
		f.order = make(map[lists.Name][]lists.Entry)
	}
	if out, ok := f.order[list]; ok {
		return out
	}
	out := []lists.Entry{}
	for _, e := range f.entries[list] {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b lists.Entry) int { return compareKeys(a.Key(), b.Key()) })
	f.order[list] = out
	return out
}

func compareKeys(a, b lists.Key) int {
	return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Platform, b.Platform), cmp.Compare(a.Value, b.Value))
}

func (f *fakeLists) upsert(e lists.Entry) (added bool) {
	old, ok := f.entries[e.List][e.Key()]
	e.CreatedAt = f.now()
	if ok {
		e.CreatedAt = old.CreatedAt
	}
	f.entries[e.List][e.Key()] = e
	f.order = nil
	return !ok
}

func (f *fakeLists) AddListEntries(ctx context.Context, entries []lists.Entry) (added int, err error) {
	// As if every add changed something: the fake does not compare
	// reasons.
	defer func() { f.notes.add(ctx, string(entries[0].List), err) }()
	if err := f.call("AddListEntries"); err != nil {
		return 0, err
	}
	for i, e := range entries {
		if err := e.Validate(); err != nil {
			return 0, fmt.Errorf("add list entries: entry %d: %w", i, err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range entries {
		if f.upsert(e) {
			added++
		}
	}
	return added, nil
}

func (f *fakeLists) RemoveListEntries(ctx context.Context, list lists.Name, keys []lists.Key) (removed int, err error) {
	defer func() {
		if removed > 0 {
			f.notes.add(ctx, string(list), err)
		}
	}()
	if err := f.call("RemoveListEntries"); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range keys {
		if _, ok := f.entries[list][k]; ok {
			delete(f.entries[list], k)
			f.order = nil
			removed++
		}
	}
	return removed, nil
}

func (f *fakeLists) ImportList(ctx context.Context, list lists.Name, entries []lists.Entry, replace bool) (imported int, err error) {
	defer func() { f.notes.add(ctx, string(list), err) }()
	if err := f.call("ImportList"); err != nil {
		return 0, err
	}
	if f.ImportListFn != nil {
		if err := f.ImportListFn(ctx, list, entries, replace); err != nil {
			return 0, err
		}
	}
	for i, e := range entries {
		if e.List != list {
			return 0, fmt.Errorf("import %s: entry %d: %w: list %q", list, i, lists.ErrInvalid, e.List)
		}
		if err := e.Validate(); err != nil {
			return 0, fmt.Errorf("import %s: entry %d: %w", list, i, err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if replace {
		f.entries[list] = map[lists.Key]lists.Entry{}
		f.order = nil
	}
	keys := make(map[lists.Key]bool)
	for _, e := range entries {
		f.upsert(e)
		keys[e.Key()] = true
	}
	return len(keys), nil
}

func (f *fakeLists) ListEntries(_ context.Context, list lists.Name, after lists.Key, limit int) ([]lists.Entry, error) {
	if err := f.call("ListEntries"); err != nil {
		return nil, err
	}
	if limit < 1 || limit > 1000 {
		return nil, fmt.Errorf("fake: limit %d out of 1..1000", limit)
	}
	all := f.sorted(list)
	i, found := slices.BinarySearchFunc(all, after, func(e lists.Entry, k lists.Key) int { return compareKeys(e.Key(), k) })
	if found {
		i++
	}
	return slices.Clone(all[i:min(i+limit, len(all))]), nil
}

func (f *fakeLists) CountListEntries(_ context.Context, list lists.Name) (int, error) {
	if err := f.call("CountListEntries"); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.entries[list]), nil
}

func (f *fakeLists) EachEntry(ctx context.Context, list lists.Name, fn func(lists.Entry) error) error {
	if err := f.call("EachEntry"); err != nil {
		return err
	}
	if f.EachEntryFn != nil {
		return f.EachEntryFn(ctx, list, fn)
	}
	f.mu.Lock()
	snapshot := make([]lists.Entry, 0, len(f.entries[list]))
	for _, e := range f.entries[list] { // no particular order, as the store
		snapshot = append(snapshot, e)
	}
	f.mu.Unlock()
	for _, e := range snapshot {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// errNoFakeSnapshots: the fake keeps no snapshots; the snapshot routes are
// tested against the store (audited_test.go).
var errNoFakeSnapshots = errors.New("fake: no snapshots")

func (f *fakeLists) ListSnapshots(context.Context, lists.Name) ([]lists.Snapshot, error) {
	return nil, errNoFakeSnapshots
}

func (f *fakeLists) EachSnapshotEntry(context.Context, lists.Name, int64, func(lists.Entry) error) error {
	return errNoFakeSnapshots
}

func (f *fakeLists) RestoreListSnapshot(context.Context, lists.Name, int64) (int, error) {
	return 0, errNoFakeSnapshots
}

// listBundle is a Server with lists under test and its collaborators.
type listBundle struct {
	*bundle
	lists   *fakeLists
	changes *changeLog
}

// changeLog records the calls of OnListChange.
type changeLog struct {
	mu    sync.Mutex
	names []lists.Name
}

func (c *changeLog) add(n lists.Name) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.names = append(c.names, n)
}

func (c *changeLog) Names() []lists.Name {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.names)
}

type listOpts struct {
	noLists        bool // no ListStore configured
	maxBodyBytes   int64
	maxImportBytes int64
	importIdle     time.Duration     // Config.ImportReadTimeout
	adjust         func(*listBundle) // before New
}

// Fixtures of the lists: two blacklist entries, one whitelist entry.
var (
	blockedUser  = lists.Entry{List: lists.Blacklist, Kind: lists.User, Value: "u-17", Reason: "opt_out"}
	blockedToken = lists.Entry{List: lists.Blacklist, Kind: lists.Token, Platform: lists.IOS, Value: "f00dcafe0123456789", Reason: "invalid_token"}
	testDevice   = lists.Entry{List: lists.Whitelist, Kind: lists.Token, Platform: lists.Android, Value: "qa-pixel-7", Reason: "test_device"}
)

func setupLists(t *testing.T, opts listOpts) *listBundle {
	t.Helper()
	logger, logs := newLogger(t)
	b := &listBundle{
		bundle: &bundle{
			ctl:     newFakeControl(),
			auditor: &fakeAuditor{},
			clock:   &clock{t: t0},
			logs:    logs,
		},
		changes: &changeLog{},
	}
	b.lists = newFakeLists(b.clock.Now)
	b.lists.put(blockedUser, blockedToken, testDevice)
	b.tokensFile = t.TempDir() + "/admin-tokens"
	writeFile(t, b.tokensFile, testTokensFile)
	if opts.adjust != nil {
		opts.adjust(b)
	}
	cfg := Config{
		TokensFile:        b.tokensFile,
		MaxBodyBytes:      opts.maxBodyBytes,
		MaxImportBytes:    opts.maxImportBytes,
		ImportReadTimeout: opts.importIdle,
		Now:               b.clock.Now,
		Lists:             b.lists,
		OnListChange:      b.changes.add,
	}
	if opts.noLists {
		cfg.Lists = nil
	}
	srv, err := New(cfg, b.ctl, b.auditor, logger)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	b.srv, b.handler = srv, srv.Handler()
	t.Cleanup(func() {
		for _, tok := range allTokens {
			if strings.Contains(logs.String(), tok) {
				t.Errorf("logs contain token %q", tok)
			}
		}
		if strings.Contains(logs.String(), blockedToken.Value) {
			t.Errorf("logs contain a device token in full")
		}
	})
	return b
}

// csvRequest is a request to import body as CSV.
func csvRequest(path, token, body string) request {
	return request{method: "POST", path: path, token: token, body: body, header: map[string]string{"Content-Type": "text/csv"}}
}

var csvHeader = strings.Join(lists.CSVHeader, ",") + "\n"

func decodeBody[T any](t *testing.T, w *httptest.ResponseRecorder) T {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var v T
	dec := json.NewDecoder(w.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %T: %v", v, err)
	}
	return v
}

// keysOf returns the sorted keys of a list's entries with their reasons,
// one string each, to compare lists.
func keysOf(es []lists.Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, fmt.Sprintf("%s %s %s %s %q", e.List, e.Kind, e.Platform, e.Value, e.Reason))
	}
	slices.Sort(out)
	return out
}

func TestListRoutes(t *testing.T) {
	errDB := errors.New("store: connection refused to 10.0.0.7:5432")
	failOn := func(method string) func(*listBundle) {
		return func(b *listBundle) {
			b.lists.Fail = func(m string) error {
				if m == method {
					return errDB
				}
				return nil
			}
		}
	}
	// wantList checks the list's entries afterwards.
	wantList := func(list lists.Name, want ...lists.Entry) func(*testing.T, *listBundle, *httptest.ResponseRecorder) {
		return func(t *testing.T, b *listBundle, _ *httptest.ResponseRecorder) {
			t.Helper()
			if got, w := keysOf(b.lists.sorted(list)), keysOf(want); !slices.Equal(got, w) {
				t.Errorf("%s holds\n%s\nwant\n%s", list, strings.Join(got, "\n"), strings.Join(w, "\n"))
			}
		}
	}
	wantJSON := func(want string) func(*testing.T, *listBundle, *httptest.ResponseRecorder) {
		return func(t *testing.T, _ *listBundle, w *httptest.ResponseRecorder) {
			t.Helper()
			if got := strings.TrimSpace(w.Body.String()); got != want {
				t.Errorf("body %s, want %s", got, want)
			}
		}
	}
	both := func(checks ...func(*testing.T, *listBundle, *httptest.ResponseRecorder)) func(*testing.T, *listBundle, *httptest.ResponseRecorder) {
		return func(t *testing.T, b *listBundle, w *httptest.ResponseRecorder) {
			t.Helper()
			for _, c := range checks {
				c(t, b, w)
			}
		}
	}
	newUser := lists.Entry{List: lists.Blacklist, Kind: lists.User, Value: "u-99", Reason: "abuse"}
	newToken := lists.Entry{List: lists.Blacklist, Kind: lists.Token, Platform: lists.Android, Value: "fcm:abc", Reason: ""}
	blockedUserAbuse := blockedUser
	blockedUserAbuse.Reason = "abuse"

	tests := []struct {
		name       string
		opts       listOpts
		req        request
		wantStatus int
		wantError  string // in the error message
		wantChange bool   // a change: OnListChange called and audited once
		unchanged  bool   // with wantChange: but nothing changed, so not audited
		check      func(t *testing.T, b *listBundle, w *httptest.ResponseRecorder)
	}{
		// GET /api/lists/{name}
		{
			name: "count", req: request{method: "GET", path: "/api/lists/blacklist", token: viewerToken},
			wantStatus: 200, check: wantJSON(`{"list":"blacklist","entries":2}`),
		},
		{
			name: "count whitelist", req: request{method: "GET", path: "/api/lists/whitelist", token: viewerToken},
			wantStatus: 200, check: wantJSON(`{"list":"whitelist","entries":1}`),
		},
		{
			name: "unknown list", req: request{method: "GET", path: "/api/lists/greylist", token: viewerToken},
			wantStatus: 404, wantError: `no list "greylist": want blacklist or whitelist`,
		},
		{
			name: "unknown list, POST", req: request{method: "POST", path: "/api/lists/Blacklist/entries", token: operatorToken, body: `{"kind":"user","value":"x"}`},
			wantStatus: 404, wantError: `no list "Blacklist"`,
		},
		{
			name: "lists not configured", opts: listOpts{noLists: true},
			req:        request{method: "GET", path: "/api/lists/blacklist", token: viewerToken},
			wantStatus: 503, wantError: "lists not configured",
		},
		{
			name: "lists not configured, import", opts: listOpts{noLists: true},
			req:        csvRequest("/api/lists/blacklist/import", operatorToken, csvHeader),
			wantStatus: 503, wantError: "lists not configured",
		},
		{
			name: "count fails", opts: listOpts{adjust: failOn("CountListEntries")},
			req:        request{method: "GET", path: "/api/lists/blacklist", token: viewerToken},
			wantStatus: 500, wantError: "internal error",
			check: func(t *testing.T, b *listBundle, w *httptest.ResponseRecorder) {
				if strings.Contains(w.Body.String(), "10.0.0.7") || !strings.Contains(b.logs.String(), "10.0.0.7") {
					t.Errorf("cause of a 500 shown to the client or not logged")
				}
			},
		},

		// GET /api/lists/{name}/entries
		{
			name: "entries", req: request{method: "GET", path: "/api/lists/blacklist/entries", token: viewerToken},
			wantStatus: 200,
			check: wantJSON(`{"entries":[` +
				`{"kind":"token","value":"f00dcafe0123456789","platform":"ios","reason":"invalid_token","created_at":"2030-01-02T03:04:05Z"},` +
				`{"kind":"user","value":"u-17","platform":"","reason":"opt_out","created_at":"2030-01-02T03:04:05Z"}],"next":""}`),
		},
		{
			name: "entries, limit reached", req: request{method: "GET", path: "/api/lists/blacklist/entries?limit=1", token: viewerToken},
			wantStatus: 200,
			check: func(t *testing.T, _ *listBundle, w *httptest.ResponseRecorder) {
				p := decodeBody[entryPage](t, w)
				if len(p.Entries) != 1 || p.Entries[0].Kind != lists.Token || p.Next == "" {
					t.Errorf("page %+v, want the token entry and a next cursor", p)
				}
			},
		},
		{
			name: "entries, limit 0", req: request{method: "GET", path: "/api/lists/blacklist/entries?limit=0", token: viewerToken},
			wantStatus: 400, wantError: "limit must be a number from 1 to 1000",
		},
		{
			name: "entries, limit too large", req: request{method: "GET", path: "/api/lists/blacklist/entries?limit=1001", token: viewerToken},
			wantStatus: 400, wantError: "limit must be a number from 1 to 1000",
		},
		{
			name: "entries, bad cursor", req: request{method: "GET", path: "/api/lists/blacklist/entries?after=%21%21", token: viewerToken},
			wantStatus: 400, wantError: "not a cursor",
		},
		{
			name: "entries, cursor not JSON", req: request{method: "GET", path: "/api/lists/blacklist/entries?after=bm9wZQ", token: viewerToken},
			wantStatus: 400, wantError: "not a cursor",
		},
		{
			name: "entries of an empty list are []",
			opts: listOpts{adjust: func(b *listBundle) { b.lists.entries[lists.Whitelist] = map[lists.Key]lists.Entry{} }},
			req:  request{method: "GET", path: "/api/lists/whitelist/entries", token: viewerToken}, wantStatus: 200,
			check: wantJSON(`{"entries":[],"next":""}`),
		},

		// POST /api/lists/{name}/entries
		{
			name:       "add one",
			req:        request{method: "POST", path: "/api/lists/blacklist/entries", token: operatorToken, body: `{"kind":"user","value":"u-99","reason":"abuse"}`},
			wantStatus: 200, wantChange: true,
			check: both(wantJSON(`{"added":1,"updated":0}`), wantList(lists.Blacklist, blockedUser, blockedToken, newUser)),
		},
		{
			name: "add several, one there already, one twice",
			req: request{method: "POST", path: "/api/lists/blacklist/entries", token: operatorToken, body: `{"entries":[
				{"kind":"user","value":"u-99","reason":"abuse"},
				{"kind":"user","value":"u-17","reason":"opt_out"},
				{"kind":"token","platform":"android","value":"fcm:abc","reason":"first"},
				{"kind":"token","platform":"android","value":"fcm:abc"}]}`},
			wantStatus: 200, wantChange: true,
			check: both(wantJSON(`{"added":2,"updated":1}`), wantList(lists.Blacklist, blockedUser, blockedToken, newUser, newToken)),
		},
		{
			name:       "add updates the reason",
			req:        request{method: "POST", path: "/api/lists/blacklist/entries", token: adminToken, body: `{"kind":"user","value":"u-17","reason":"abuse"}`},
			wantStatus: 200, wantChange: true,
			check: both(wantJSON(`{"added":0,"updated":1}`), wantList(lists.Blacklist, blockedUserAbuse, blockedToken)),
		},
		{
			name: "add a bad entry: nothing added",
			req: request{method: "POST", path: "/api/lists/blacklist/entries", token: operatorToken, body: `{"entries":[
				{"kind":"user","value":"u-99"},
				{"kind":"token","platform":"windows","value":"x"}]}`},
			wantStatus: 400, wantError: `entries[1]: invalid list entry: platform "windows"`,
			check: wantList(lists.Blacklist, blockedUser, blockedToken),
		},
		{
			name:       "add a user with a platform",
			req:        request{method: "POST", path: "/api/lists/blacklist/entries", token: operatorToken, body: `{"kind":"user","platform":"ios","value":"u-1"}`},
			wantStatus: 400, wantError: "entry: invalid list entry: a user entry has no platform",
		},
		{
			name:       "add an empty entry",
			req:        request{method: "POST", path: "/api/lists/blacklist/entries", token: operatorToken, body: `{}`},
			wantStatus: 400, wantError: `entry: invalid list entry: kind ""`,
		},
		{
			name:       "add no entries",
			req:        request{method: "POST", path: "/api/lists/blacklist/entries", token: operatorToken, body: `{"entries":[]}`},
			wantStatus: 400, wantError: "no entries",
		},
		{
			name:       "add one and entries",
			req:        request{method: "POST", path: "/api/lists/blacklist/entries", token: operatorToken, body: `{"kind":"user","value":"u","entries":[{"kind":"user","value":"v"}]}`},
			wantStatus: 400, wantError: `one entry or "entries", not both`,
		},
		{
			name:       "add with an unknown field",
			req:        request{method: "POST", path: "/api/lists/blacklist/entries", token: operatorToken, body: `{"kind":"user","value":"u","list":"whitelist"}`},
			wantStatus: 400, wantError: `unknown field "list"`,
		},
		{
			name:       "add, no body",
			req:        request{method: "POST", path: "/api/lists/blacklist/entries", token: operatorToken},
			wantStatus: 400, wantError: "empty",
		},
		{
			name: "add, body too large", opts: listOpts{maxBodyBytes: 64},
			req:        request{method: "POST", path: "/api/lists/blacklist/entries", token: operatorToken, body: `{"kind":"user","value":"` + strings.Repeat("u", 64) + `"}`},
			wantStatus: 413, wantError: "larger than 64 bytes",
		},
		{
			name: "add refused by the store",
			opts: listOpts{adjust: func(b *listBundle) {
				b.lists.Fail = func(m string) error {
					if m == "AddListEntries" {
						return fmt.Errorf("add list entries: entry 0: %w: value taken", lists.ErrInvalid)
					}
					return nil
				}
			}},
			req:        request{method: "POST", path: "/api/lists/blacklist/entries", token: operatorToken, body: `{"kind":"user","value":"u"}`},
			wantStatus: 400, wantError: "entry 0: invalid list entry: value taken",
		},
		{
			name: "add fails", opts: listOpts{adjust: failOn("AddListEntries")},
			req:        request{method: "POST", path: "/api/lists/blacklist/entries", token: operatorToken, body: `{"kind":"user","value":"u"}`},
			wantStatus: 500, wantError: "internal error",
		},

		// DELETE /api/lists/{name}/entries
		{
			name: "remove",
			req: request{method: "DELETE", path: "/api/lists/blacklist/entries", token: operatorToken,
				body: `{"entries":[{"kind":"token","platform":"ios","value":"f00dcafe0123456789"},{"kind":"user","value":"not-there"}]}`},
			wantStatus: 200, wantChange: true,
			check: both(wantJSON(`{"removed":1}`), wantList(lists.Blacklist, blockedUser)),
		},
		{
			name:       "remove in the query",
			req:        request{method: "DELETE", path: "/api/lists/blacklist/entries?kind=token&platform=ios&value=f00dcafe0123456789", token: operatorToken},
			wantStatus: 200, wantChange: true,
			check: both(wantJSON(`{"removed":1}`), wantList(lists.Blacklist, blockedUser)),
		},
		{
			name: "remove a user in the query, escaped",
			opts: listOpts{adjust: func(b *listBundle) {
				b.lists.put(lists.Entry{List: lists.Blacklist, Kind: lists.User, Value: "a b&c/d"})
			}},
			req:        request{method: "DELETE", path: "/api/lists/blacklist/entries?kind=user&value=a+b%26c%2Fd", token: operatorToken},
			wantStatus: 200, wantChange: true,
			check: both(wantJSON(`{"removed":1}`), wantList(lists.Blacklist, blockedUser, blockedToken)),
		},
		{
			name:       "remove nothing there",
			req:        request{method: "DELETE", path: "/api/lists/whitelist/entries?kind=user&value=u-17", token: operatorToken},
			wantStatus: 200, wantChange: true, unchanged: true,
			check: both(wantJSON(`{"removed":0}`), wantList(lists.Blacklist, blockedUser, blockedToken)),
		},
		{
			name:       "remove a bad key",
			req:        request{method: "DELETE", path: "/api/lists/blacklist/entries?kind=token&value=f00dcafe0123456789", token: operatorToken},
			wantStatus: 400, wantError: `entry: invalid list entry: platform ""`,
			check: wantList(lists.Blacklist, blockedUser, blockedToken),
		},
		{
			name: "remove, one bad key: nothing removed",
			req: request{method: "DELETE", path: "/api/lists/blacklist/entries", token: operatorToken,
				body: `{"entries":[{"kind":"user","value":"u-17"},{"kind":"device","value":"x"}]}`},
			wantStatus: 400, wantError: `entries[1]: invalid list entry: kind "device"`,
			check: wantList(lists.Blacklist, blockedUser, blockedToken),
		},
		{
			name:       "remove with a reason",
			req:        request{method: "DELETE", path: "/api/lists/blacklist/entries", token: operatorToken, body: `{"entries":[{"kind":"user","value":"u-17","reason":"x"}]}`},
			wantStatus: 400, wantError: `unknown field "reason"`,
		},
		{
			name:       "remove no entries",
			req:        request{method: "DELETE", path: "/api/lists/blacklist/entries", token: operatorToken, body: `{"entries":[]}`},
			wantStatus: 400, wantError: "no entries",
		},
		{
			name: "remove fails", opts: listOpts{adjust: failOn("RemoveListEntries")},
			req:        request{method: "DELETE", path: "/api/lists/blacklist/entries?kind=user&value=u-17", token: operatorToken},
			wantStatus: 500, wantError: "internal error",
		},

		// POST /api/lists/{name}/import
		{
			name:       "import merges",
			req:        csvRequest("/api/lists/blacklist/import", operatorToken, csvHeader+"user,u-99,,abuse\ntoken,fcm:abc,android,\n"),
			wantStatus: 200, wantChange: true,
			check: both(wantJSON(`{"imported":2}`), wantList(lists.Blacklist, blockedUser, blockedToken, newUser, newToken)),
		},
		{
			name:       "import replaces",
			req:        csvRequest("/api/lists/blacklist/import?replace=true", operatorToken, csvHeader+"user,u-99,,abuse\n"),
			wantStatus: 200, wantChange: true,
			check: both(wantJSON(`{"imported":1}`), wantList(lists.Blacklist, newUser), wantList(lists.Whitelist, testDevice)),
		},
		{
			name:       "import with a charset",
			req:        request{method: "POST", path: "/api/lists/whitelist/import?replace=1", token: operatorToken, body: csvHeader, header: map[string]string{"Content-Type": "text/csv; charset=utf-8"}},
			wantStatus: 200, wantChange: true,
			check: both(wantJSON(`{"imported":0}`), wantList(lists.Whitelist)),
		},
		{
			name:       "import a bad row: nothing imported, the line named",
			req:        csvRequest("/api/lists/blacklist/import?replace=true", operatorToken, csvHeader+"user,u-99,,abuse\nuser,u-100,,\ntoken,abc,windows,\n"),
			wantStatus: 400, wantError: "line 4",
			check: func(t *testing.T, b *listBundle, w *httptest.ResponseRecorder) {
				wantList(lists.Blacklist, blockedUser, blockedToken)(t, b, w)
				if msg := errorOf(t, w); !strings.Contains(msg, "windows") {
					t.Errorf("error %q does not say what is wrong", msg)
				}
				if slices.Contains(b.lists.Calls(), "ImportList") {
					t.Error("ImportList called")
				}
			},
		},
		{
			name:       "import bad CSV syntax",
			req:        csvRequest("/api/lists/blacklist/import", operatorToken, csvHeader+"user,u-99,,abuse\nuser,\"u-1\"00,,\n"),
			wantStatus: 400, wantError: "line 3",
		},
		{
			name:       "import an empty file, replacing: refused, not emptied",
			req:        csvRequest("/api/lists/blacklist/import?replace=true", operatorToken, ""),
			wantStatus: 400, wantError: "no header",
			check: wantList(lists.Blacklist, blockedUser, blockedToken),
		},
		{
			name:       "import a bad header",
			req:        csvRequest("/api/lists/blacklist/import", operatorToken, "kind,value,platform,why\nuser,u-99,,abuse\n"),
			wantStatus: 400, wantError: `line 1: header: unknown column "why"`,
		},
		{
			name:       "import JSON",
			req:        request{method: "POST", path: "/api/lists/blacklist/import", token: operatorToken, body: `{"kind":"user","value":"u"}`},
			wantStatus: 415, wantError: `Content-Type must be text/csv, got "application/json"`,
		},
		{
			name:       "import without a Content-Type",
			req:        request{method: "POST", path: "/api/lists/blacklist/import", token: operatorToken, header: map[string]string{"Content-Type": ""}},
			wantStatus: 415, wantError: "Content-Type must be text/csv",
		},
		{
			name:       "import replace=maybe",
			req:        csvRequest("/api/lists/blacklist/import?replace=maybe", operatorToken, csvHeader),
			wantStatus: 400, wantError: `replace must be true or false, got "maybe"`,
		},
		{
			name: "import too large", opts: listOpts{maxImportBytes: 100},
			req:        csvRequest("/api/lists/blacklist/import", operatorToken, csvHeader+strings.Repeat("user,u-99,,abuse\n", 10)),
			wantStatus: 413, wantError: "larger than 100 bytes",
			check: wantList(lists.Blacklist, blockedUser, blockedToken),
		},
		{
			name: "import too large, chunked", opts: listOpts{maxImportBytes: 100},
			req: func() request {
				r := csvRequest("/api/lists/blacklist/import", operatorToken, csvHeader+strings.Repeat("user,u-99,,abuse\n", 10))
				r.chunked = true
				return r
			}(),
			wantStatus: 413, wantError: "larger than 100 bytes",
			check: wantList(lists.Blacklist, blockedUser, blockedToken),
		},
		{
			name: "import larger than JSON bodies may be", opts: listOpts{maxBodyBytes: 64},
			req:        csvRequest("/api/lists/blacklist/import?replace=true", operatorToken, csvHeader+strings.Repeat("user,u-99,,abuse\n", 10)),
			wantStatus: 200, wantChange: true,
			check: wantList(lists.Blacklist, newUser),
		},
		{
			name: "import fails", opts: listOpts{adjust: failOn("ImportList")},
			req:        csvRequest("/api/lists/blacklist/import", operatorToken, csvHeader+"user,u-99,,abuse\n"),
			wantStatus: 500, wantError: "internal error",
		},

		// GET /api/lists/{name}/export
		{
			name: "export", req: request{method: "GET", path: "/api/lists/whitelist/export", token: viewerToken},
			wantStatus: 200,
			check: func(t *testing.T, _ *listBundle, w *httptest.ResponseRecorder) {
				if ct, cd := w.Header().Get("Content-Type"), w.Header().Get("Content-Disposition"); ct != "text/csv; charset=utf-8" || cd != "attachment; filename=whitelist.csv" {
					t.Errorf("Content-Type %q, Content-Disposition %q", ct, cd)
				}
				if want := csvHeader + "token,qa-pixel-7,android,test_device\n"; w.Body.String() != want {
					t.Errorf("body\n%s\nwant\n%s", w.Body, want)
				}
			},
		},
		{
			name: "export HEAD", req: request{method: "HEAD", path: "/api/lists/blacklist/export", token: viewerToken},
			wantStatus: 200,
			check: func(t *testing.T, b *listBundle, w *httptest.ResponseRecorder) {
				if ct := w.Header().Get("Content-Type"); ct != "text/csv; charset=utf-8" || w.Body.Len() != 0 {
					t.Errorf("Content-Type %q, body %q", ct, w.Body)
				}
				if slices.Contains(b.lists.Calls(), "EachEntry") {
					t.Error("HEAD read the list")
				}
			},
		},
		{
			name: "export fails before it begins", opts: listOpts{adjust: failOn("EachEntry")},
			req:        request{method: "GET", path: "/api/lists/blacklist/export", token: viewerToken},
			wantStatus: 500, wantError: "internal error",
			check: func(t *testing.T, _ *listBundle, w *httptest.ResponseRecorder) {
				if cd := w.Header().Get("Content-Disposition"); cd != "" {
					t.Errorf("error answered as an attachment: %q", cd)
				}
			},
		},

		{
			name: "export a stored entry that CSV refuses: pushd's fault",
			opts: listOpts{adjust: func(b *listBundle) {
				b.lists.put(lists.Entry{List: lists.Blacklist, Kind: "device", Value: "x"})
			}},
			req:        request{method: "GET", path: "/api/lists/blacklist/export", token: viewerToken},
			wantStatus: 500, wantError: "internal error",
		},
		{
			name: "wrong method on a list", req: request{method: "PUT", path: "/api/lists/blacklist/entries", token: operatorToken},
			wantStatus: 405, wantError: "method not allowed",
			check: func(t *testing.T, _ *listBundle, w *httptest.ResponseRecorder) {
				if got := w.Header().Get("Allow"); got != "DELETE, GET, HEAD, POST" {
					t.Errorf("Allow = %q", got)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := setupLists(t, tc.opts)
			w := b.do(t, tc.req)
			if w.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %s", w.Code, tc.wantStatus, w.Body)
			}
			if tc.wantError != "" {
				if msg := errorOf(t, w); !strings.Contains(msg, tc.wantError) {
					t.Errorf("error %q, want it to contain %q", msg, tc.wantError)
				}
			}
			if got := w.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q", got)
			}
			changes, audits := b.changes.Names(), b.lists.notes.Entries()
			if tc.wantChange {
				list := lists.Name(strings.Split(tc.req.path, "/")[3])
				if !slices.Equal(changes, []lists.Name{list}) {
					t.Errorf("OnListChange calls %v, want [%s]", changes, list)
				}
				if len(audits) != 1 && !tc.unchanged || len(audits) > 0 && !strings.HasSuffix(audits[0], " "+string(list)) {
					t.Errorf("audited changes %q, want one of %s", audits, list)
				}
			} else if len(changes) != 0 || len(audits) != 0 {
				t.Errorf("no change, but OnListChange calls %v and audit entries %+v", changes, audits)
			}
			if tc.check != nil {
				tc.check(t, b, w)
			}
		})
	}
}

func TestListRoles(t *testing.T) {
	routes := []struct {
		req  request
		need string // least role
	}{
		{request{method: "GET", path: "/api/lists/blacklist"}, "viewer"},
		{request{method: "GET", path: "/api/lists/blacklist/entries"}, "viewer"},
		{request{method: "GET", path: "/api/lists/blacklist/export"}, "viewer"},
		{request{method: "POST", path: "/api/lists/blacklist/entries", body: `{"kind":"user","value":"u-1"}`}, "operator"},
		{request{method: "DELETE", path: "/api/lists/blacklist/entries?kind=user&value=u-17"}, "operator"},
		{csvRequest("/api/lists/blacklist/import", "", csvHeader+"user,u-1,,\n"), "operator"},
	}
	roles := []struct {
		name, token string
		rank        int
	}{{"none", "", 0}, {"wrong", "not-a-token", 0}, {"viewer", viewerToken, 1}, {"operator", operatorToken, 2}, {"admin", adminToken, 3}}
	rank := map[string]int{"viewer": 1, "operator": 2}
	for _, rt := range routes {
		for _, role := range roles {
			t.Run(rt.req.method+" "+rt.req.path+" as "+role.name, func(t *testing.T) {
				b := setupLists(t, listOpts{})
				req := rt.req
				req.token = role.token
				w := b.do(t, req)
				want := http.StatusOK
				switch {
				case role.rank == 0:
					want = http.StatusUnauthorized
				case role.rank < rank[rt.need]:
					want = http.StatusForbidden
				}
				if w.Code != want {
					t.Fatalf("status %d, want %d; body %s", w.Code, want, w.Body)
				}
				if want == http.StatusOK {
					return
				}
				if msg := errorOf(t, w); want == http.StatusForbidden && msg != "role viewer may not do this; it needs operator" {
					t.Errorf("error %q", msg)
				}
				if got := keysOf(b.lists.sorted(lists.Blacklist)); !slices.Equal(got, keysOf([]lists.Entry{blockedUser, blockedToken})) {
					t.Errorf("refused request changed the list: %v", got)
				}
				if n, c := len(b.auditor.Entries()), len(b.changes.Names()); n != 0 || c != 0 {
					t.Errorf("refused request: %d audit entries, %d OnListChange calls", n, c)
				}
				if calls := b.lists.Calls(); len(calls) != 0 {
					t.Errorf("refused request called the store: %v", calls)
				}
			})
		}
	}
}

func TestListCrossOrigin(t *testing.T) {
	b := setupLists(t, listOpts{})
	for _, req := range []request{
		{method: "POST", path: "/api/lists/blacklist/entries", token: operatorToken, body: `{"kind":"user","value":"u-1"}`},
		{method: "DELETE", path: "/api/lists/blacklist/entries?kind=user&value=u-17", token: operatorToken},
		csvRequest("/api/lists/blacklist/import?replace=true", operatorToken, csvHeader),
	} {
		h := map[string]string{"Sec-Fetch-Site": "cross-site"}
		for k, v := range req.header {
			h[k] = v
		}
		req.header = h
		if w := b.do(t, req); w.Code != http.StatusForbidden || !strings.Contains(errorOf(t, w), "cross-origin") {
			t.Errorf("%s %s: %d %s, want 403", req.method, req.path, w.Code, w.Body)
		}
	}
	if calls := b.lists.Calls(); len(calls) != 0 {
		t.Errorf("refused requests called the store: %v", calls)
	}
}

// TestListPaging pages through a list with several page sizes: every entry
// comes exactly once, in key order.
func TestListPaging(t *testing.T) {
	b := setupLists(t, listOpts{})
	var all []lists.Entry
	for i := range 2345 {
		e := lists.Entry{List: lists.Whitelist, Kind: lists.User, Value: fmt.Sprintf("user-%05d", i)}
		if i%3 == 0 {
			e.Kind, e.Platform, e.Value = lists.Token, []string{lists.IOS, lists.Android}[i%2], fmt.Sprintf("tok/%x+=?&", i)
		}
		all = append(all, e)
	}
	b.lists.put(all...)
	want := keysOf(b.lists.sorted(lists.Whitelist))

	for _, limit := range []int{0, 1000, 7, 1} { // 0: the default
		t.Run(fmt.Sprintf("limit=%d", limit), func(t *testing.T) {
			size, query := 100, ""
			if limit > 0 {
				size, query = limit, fmt.Sprintf("limit=%d&", limit)
			}
			var got []string
			after, pages := "", 0
			for {
				path := "/api/lists/whitelist/entries?" + query + "after=" + after
				w := b.do(t, request{method: "GET", path: path, token: viewerToken})
				if w.Code != 200 {
					t.Fatalf("%s: %d %s", path, w.Code, w.Body)
				}
				page := decodeBody[entryPage](t, w)
				pages++
				if len(page.Entries) > size || page.Next != "" && len(page.Entries) != size {
					t.Fatalf("page of %d entries, next %q, with limit %d", len(page.Entries), page.Next, size)
				}
				for _, e := range page.Entries {
					got = append(got, fmt.Sprintf("%s %s %s %s %q", lists.Whitelist, e.Kind, e.Platform, e.Value, e.Reason))
				}
				if page.Next == "" {
					break
				}
				if strings.ContainsAny(page.Next, "+/=&?") {
					t.Fatalf("cursor %q is not URL-safe", page.Next)
				}
				after = page.Next
				if pages > len(want)+1 {
					t.Fatal("paging does not end")
				}
			}
			if !slices.IsSorted(got) || !slices.Equal(got, want) {
				t.Errorf("paged %d entries in %d pages, want %d once each, in order", len(got), pages, len(want))
			}
		})
	}
}

// TestListExportRoundTrip exports over a real connection and reads the
// export back with lists.ReadCSV.
func TestListExportRoundTrip(t *testing.T) {
	b := setupLists(t, listOpts{})
	odd := []lists.Entry{
		{List: lists.Blacklist, Kind: lists.User, Value: `comma, "quoted"`, Reason: "opt_out, by mail"},
		{List: lists.Blacklist, Kind: lists.User, Value: "ünïcødé ✓", Reason: ""},
		{List: lists.Blacklist, Kind: lists.User, Value: "#not-a-comment", Reason: "abuse"},
		{List: lists.Blacklist, Kind: lists.Token, Platform: lists.Android, Value: strings.Repeat("x", lists.MaxValueLength), Reason: strings.Repeat("r", lists.MaxReasonLength)},
	}
	b.lists.put(odd...)
	for i := range 5000 { // more than any buffer
		b.lists.put(lists.Entry{List: lists.Blacklist, Kind: lists.Token, Platform: lists.IOS, Value: fmt.Sprintf("%064x", i), Reason: "invalid_token"})
	}
	resp := getOverHTTP(t, b.bundle, "/api/lists/blacklist/export")
	if resp.StatusCode != 200 {
		t.Fatalf("status %s", resp.Status)
	}
	got, err := lists.ReadCSV(resp.Body, lists.Blacklist)
	if err != nil {
		t.Fatalf("ReadCSV of the export: %v", err)
	}
	if g, w := keysOf(got), keysOf(b.lists.sorted(lists.Blacklist)); !slices.Equal(g, w) {
		t.Errorf("export read back: %d entries, want %d", len(g), len(w))
	}
}

// TestListExportCutShort: when the store fails in the middle of an export,
// the client gets an error, not a file that looks complete.
func TestListExportCutShort(t *testing.T) {
	b := setupLists(t, listOpts{adjust: func(b *listBundle) {
		b.lists.EachEntryFn = func(_ context.Context, list lists.Name, fn func(lists.Entry) error) error {
			for i := range 1000 {
				if err := fn(lists.Entry{List: list, Kind: lists.User, Value: fmt.Sprintf("user-%d-%s", i, strings.Repeat("x", 50))}); err != nil {
					return err
				}
			}
			return errors.New("store: disk I/O error")
		}
	}})
	checkCutShort(t, b.bundle, "/api/lists/blacklist/export")
}

// postImport posts body, a CSV of unknown length, to the blacklist's
// import on srv as an operator.
func postImport(ctx context.Context, srv *httptest.Server, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", srv.URL+"/api/lists/blacklist/import", body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+operatorToken)
	req.Header.Set("Content-Type", "text/csv")
	return srv.Client().Do(req)
}

// TestListImportTooLargeOverHTTP: a client streaming a file of unknown
// length gets the 413, not a broken connection.
func TestListImportTooLargeOverHTTP(t *testing.T) {
	b := setupLists(t, listOpts{maxImportBytes: 64 << 10})
	srv := httptest.NewServer(b.handler)
	t.Cleanup(srv.Close)
	body := io.MultiReader(strings.NewReader(csvHeader), strings.NewReader(strings.Repeat("user,u-99,,abuse\n", 100_000)))
	resp, err := postImport(t.Context(), srv, io.NopCloser(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !bytes.Contains(msg, []byte("larger than 65536 bytes")) {
		t.Errorf("%s %s, want 413", resp.Status, msg)
	}
}

// TestListImportStalledBody: a client that stops sending its file half
// way gets a 400 once admin.import_read_timeout passes without bytes,
// rather than holding the import lock for the import's 15 minutes; the
// next import then runs.
func TestListImportStalledBody(t *testing.T) {
	b := setupLists(t, listOpts{importIdle: 50 * time.Millisecond})
	srv := httptest.NewServer(b.handler)
	t.Cleanup(srv.Close)
	pr, pw := io.Pipe()
	t.Cleanup(func() { _ = pw.Close() })
	go func() { _, _ = io.WriteString(pw, csvHeader+"user,u-1,,abuse\nuser,u-") }() // and no more
	// Only a net for the test run: before the fix, the answer came after 15 minutes.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	resp, err := postImport(ctx, srv, pr)
	if err != nil {
		t.Fatalf("import with a stalled body: %v", err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !bytes.Contains(msg, []byte("timeout")) {
		t.Errorf("%s %s, want 400 naming the timeout", resp.Status, msg)
	}
	if w := b.do(t, csvRequest("/api/lists/blacklist/import", operatorToken, csvHeader+"user,u-2,,\n")); w.Code != 200 {
		t.Errorf("the next import: %d %s", w.Code, w.Body)
	}
}

// TestListImportsOneAtATime: each import holds its file in memory, so
// imports wait for each other.
func TestListImportsOneAtATime(t *testing.T) {
	var mu sync.Mutex
	running, most := 0, 0
	b := setupLists(t, listOpts{adjust: func(b *listBundle) {
		b.lists.ImportListFn = func(context.Context, lists.Name, []lists.Entry, bool) error {
			mu.Lock()
			running++
			most = max(most, running)
			mu.Unlock()
			time.Sleep(5 * time.Millisecond) // give another import the chance to overlap
			mu.Lock()
			running--
			mu.Unlock()
			return nil
		}
	}})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			w := b.do(t, csvRequest("/api/lists/blacklist/import", operatorToken, fmt.Sprintf("%suser,u-%d,,\n", csvHeader, i)))
			if w.Code != 200 {
				t.Errorf("import %d: %d %s", i, w.Code, w.Body)
			}
		})
	}
	wg.Wait()
	if most != 1 {
		t.Errorf("%d imports ran at once", most)
	}
}

// TestListAudit: every list change reaches the store with the audit note
// of who made it, so that the store records it in the change's own
// transaction (the records themselves are tested in the store, and a
// failed record with the store in audited_test.go).
func TestListAudit(t *testing.T) {
	b := setupLists(t, listOpts{})
	b.doAll(t, []statusRequest{
		{request{method: "GET", path: "/api/lists/blacklist/entries", token: operatorToken}, 200},
		{request{method: "POST", path: "/api/lists/blacklist/entries", token: operatorToken, body: `{"entries":[{"kind":"user","value":"u-99","reason":"abuse"},{"kind":"user","value":"u-17","reason":"opt_out"}]}`}, 200},
		{request{method: "POST", path: "/api/lists/blacklist/entries", token: viewerToken, body: `{"kind":"user","value":"u-1"}`}, 403},
		{request{method: "DELETE", path: "/api/lists/blacklist/entries", token: adminToken, body: `{"entries":[{"kind":"token","platform":"ios","value":"f00dcafe0123456789"},{"kind":"user","value":"gone"}]}`}, 200},
		{request{method: "DELETE", path: "/api/lists/blacklist/entries?kind=user", token: adminToken}, 400},
		{csvRequest("/api/lists/whitelist/import?replace=true", operatorToken, csvHeader+"user,qa-1,,test_device\nuser,qa-2,,test_device\n"), 200},
		{csvRequest("/api/lists/whitelist/import", operatorToken, csvHeader+"user,qa-3,,test_device\n"), 200},
	})
	op, adm := actorOf("operator", operatorToken), actorOf("admin", adminToken)
	want := []string{
		op + " list.add blacklist",
		adm + " list.remove blacklist",
		op + " list.import whitelist",
		op + " list.import whitelist",
	}
	if got := b.lists.notes.Entries(); !slices.Equal(got, want) {
		t.Errorf("audited changes %q, want %q", got, want)
	}
	if got, want := b.changes.Names(), []lists.Name{lists.Blacklist, lists.Blacklist, lists.Whitelist, lists.Whitelist}; !slices.Equal(got, want) {
		t.Errorf("OnListChange calls %v, want %v", got, want)
	}
}

func TestListErrorStatus(t *testing.T) {
	tests := []struct {
		err        error
		wantStatus int
		wantMsg    string
	}{
		{errNoLists, 503, "lists not configured"},
		{notFound("no list %q", "x"), 404, `no list "x"`},
		{unsupportedMediaType("want %s", "text/csv"), 415, "want text/csv"},
		{fmt.Errorf("import blacklist: entry 3: %w: empty value", lists.ErrInvalid), 400, "import blacklist: entry 3: invalid list entry: empty value"},
	}
	for _, tc := range tests {
		status, msg := errorStatus(tc.err)
		if status != tc.wantStatus || msg != tc.wantMsg {
			t.Errorf("errorStatus(%v) = %d %q, want %d %q", tc.err, status, msg, tc.wantStatus, tc.wantMsg)
		}
	}
}

// TestListLongTransfers: an export or an import may take longer than the
// server's read and write timeouts, which are meant for small JSON
// requests (Run's are 30 and 60 seconds; here 50 ms).
func TestListLongTransfers(t *testing.T) {
	const slow = 300 * time.Millisecond // a slow store, longer than the timeouts
	wait := func(ctx context.Context) error {
		select {
		case <-ctx.Done():
			return fmt.Errorf("request context ended: %w", context.Cause(ctx))
		case <-time.After(slow):
			return nil
		}
	}
	b := setupLists(t, listOpts{adjust: func(b *listBundle) {
		b.lists.EachEntryFn = func(ctx context.Context, list lists.Name, fn func(lists.Entry) error) error {
			for i := range 3 {
				if err := wait(ctx); err != nil {
					return err
				}
				if err := fn(lists.Entry{List: list, Kind: lists.User, Value: fmt.Sprintf("u-%d", i)}); err != nil {
					return err
				}
			}
			return nil
		}
		b.lists.ImportListFn = func(ctx context.Context, _ lists.Name, _ []lists.Entry, _ bool) error {
			return wait(ctx)
		}
	}})
	srv := httptest.NewUnstartedServer(b.handler)
	srv.Config.ReadTimeout = 50 * time.Millisecond
	srv.Config.WriteTimeout = 50 * time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)

	do := func(method, path, contentType string, body io.Reader) (int, string, error) {
		req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+operatorToken)
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(got), err
	}
	status, body, err := do("GET", "/api/lists/blacklist/export", "", nil)
	if want := csvHeader + "user,u-0,,\nuser,u-1,,\nuser,u-2,,\n"; err != nil || status != 200 || body != want {
		t.Errorf("slow export: %d %q (%v), want 200 and the whole list", status, body, err)
	}
	// A file sent slowly, then slowly stored.
	pr, pw := io.Pipe()
	go func() {
		for _, part := range []string{csvHeader, "user,u-8,,\n", "user,u-9,,\n"} {
			if _, err := io.WriteString(pw, part); err != nil {
				return
			}
			time.Sleep(slow / 3) // the client is slow
		}
		_ = pw.Close()
	}()
	status, body, err = do("POST", "/api/lists/blacklist/import", "text/csv", pr)
	if err != nil || status != 200 || body != `{"imported":2}`+"\n" {
		t.Errorf("slow import: %d %s (%v), want 200", status, body, err)
	}
}
