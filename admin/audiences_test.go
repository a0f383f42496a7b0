package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/pushd/pushd/dispatcher"
)

// kindError is an error whose text is whole, matching kind, as the
// store's audience errors are.
type kindError struct {
	msg  string
	kind error
}

func (e *kindError) Error() string        { return e.msg }
func (e *kindError) Is(target error) bool { return target == e.kind }

// fakeAudiences is an AudienceStore of hand-written functions; each
// unset one fails the test. It records the calls.
type fakeAudiences struct {
	t        *testing.T
	mu       sync.Mutex
	calls    []string
	ImportFn func(ctx context.Context, name, createdBy string, r io.Reader) (Audience, error)
	ListFn   func(ctx context.Context) ([]Audience, error)
	GetFn    func(ctx context.Context, id string) (Audience, error)
	ExportFn func(ctx context.Context, id string, w io.Writer) error
	DeleteFn func(ctx context.Context, id, actor string) error
}

func (f *fakeAudiences) call(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *fakeAudiences) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeAudiences) ImportAudience(ctx context.Context, name, createdBy string, r io.Reader) (Audience, error) {
	f.call("import %s %s", name, createdBy)
	if f.ImportFn == nil {
		f.t.Error("unexpected ImportAudience")
		return Audience{}, errors.New("unexpected")
	}
	return f.ImportFn(ctx, name, createdBy, r)
}

func (f *fakeAudiences) Audiences(ctx context.Context) ([]Audience, error) {
	f.call("list")
	if f.ListFn == nil {
		f.t.Error("unexpected Audiences")
		return nil, errors.New("unexpected")
	}
	return f.ListFn(ctx)
}

func (f *fakeAudiences) Audience(ctx context.Context, id string) (Audience, error) {
	f.call("get %s", id)
	if f.GetFn == nil {
		f.t.Error("unexpected Audience")
		return Audience{}, errors.New("unexpected")
	}
	return f.GetFn(ctx, id)
}

func (f *fakeAudiences) ExportAudience(ctx context.Context, id string, w io.Writer) error {
	f.call("export %s", id)
	if f.ExportFn == nil {
		f.t.Error("unexpected ExportAudience")
		return errors.New("unexpected")
	}
	return f.ExportFn(ctx, id, w)
}

func (f *fakeAudiences) DeleteAudience(ctx context.Context, id, actor string) error {
	f.call("delete %s %s", id, actor)
	if f.DeleteFn == nil {
		f.t.Error("unexpected DeleteAudience")
		return errors.New("unexpected")
	}
	return f.DeleteFn(ctx, id, actor)
}

var spring = Audience{ID: "a-1", Name: "spring", Recipients: 3, IOS: 2, Android: 1, Zones: []string{"Asia/Seoul"}, CreatedAt: t0, CreatedBy: "operator:x"}

func notFoundAudience(id string) error {
	return &kindError{fmt.Sprintf("audience %q not found", id), dispatcher.ErrNotFound}
}

// setupAudiences returns a Server with fake audiences (nil: none
// configured) and bodies bounded by maxAudience (0: the default).
func setupAudiences(t *testing.T, aud *fakeAudiences, maxAudience int64) *bundle {
	t.Helper()
	var store AudienceStore
	if aud != nil {
		aud.t = t
		store = aud
	}
	logger, logs := newLogger(t)
	b := &bundle{ctl: newFakeControl(), auditor: &fakeAuditor{}, clock: &clock{t: t0}, logs: logs}
	b.tokensFile = t.TempDir() + "/admin-tokens"
	writeFile(t, b.tokensFile, testTokensFile)
	srv, err := New(Config{TokensFile: b.tokensFile, Now: b.clock.Now, Audiences: store, MaxAudienceBytes: maxAudience}, b.ctl, b.auditor, logger)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	b.srv, b.handler = srv, srv.Handler()
	return b
}

func TestImportAudience(t *testing.T) {
	var got string
	aud := &fakeAudiences{ImportFn: func(_ context.Context, name, _ string, r io.Reader) (Audience, error) {
		b, err := io.ReadAll(r)
		got = string(b)
		a := spring
		a.Name, a.Zones = name, nil
		return a, err
	}}
	b := setupAudiences(t, aud, 0)
	body := "platform,token,user_id\nios,abc,u-1\n"
	w := b.do(t, csvRequest("/api/audiences?name=spring+sale", operatorToken, body))
	if w.Code != http.StatusCreated {
		t.Fatalf("status %d, want 201; %s", w.Code, w.Body)
	}
	want := `{"id":"a-1","name":"spring sale","recipients":3,"ios":2,"android":1,"zones":[],"created_at":"2030-01-02T03:04:05Z","created_by":"operator:x"}` + "\n"
	if w.Body.String() != want {
		t.Errorf("body %s, want %s", w.Body, want)
	}
	if got != body {
		t.Errorf("the store read %q, want %q", got, body)
	}
	if calls := aud.Calls(); len(calls) != 1 || calls[0] != "import spring sale "+actorOf("operator", operatorToken) {
		t.Errorf("calls %q", calls)
	}
	// The store audits, in its transaction; the module does not again.
	if n := len(b.auditor.Entries()); n != 0 {
		t.Errorf("%d audit entries written by the module", n)
	}
}

func TestImportAudienceErrors(t *testing.T) {
	badLine := &kindError{"line 3: token: not a valid ios device token (malformed token)", dispatcher.ErrInvalid}
	tests := []struct {
		name   string
		req    request
		err    error // from the store
		status int
		msg    string
	}{
		{"not CSV", request{method: "POST", path: "/api/audiences?name=x", token: operatorToken, body: `{}`}, nil,
			415, `Content-Type must be text/csv, got "application/json"`},
		{"no name", csvRequest("/api/audiences", operatorToken, "platform,token,user_id\n"), nil,
			400, "name is required: POST /api/audiences?name=NAME"},
		{"bad line", csvRequest("/api/audiences?name=x", operatorToken, "platform,token,user_id\n"), badLine,
			400, badLine.msg},
		{"store failure", csvRequest("/api/audiences?name=x", operatorToken, "platform,token,user_id\n"), errors.New("disk I/O error"),
			500, "internal error"},
		{"viewer", csvRequest("/api/audiences?name=x", viewerToken, "platform,token,user_id\n"), nil,
			403, "role viewer may not do this; it needs operator"},
		{"too large", csvRequest("/api/audiences?name=x", operatorToken, strings.Repeat("x", 2000)), nil,
			413, "request body larger than 1024 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			aud := &fakeAudiences{}
			if tt.err != nil {
				aud.ImportFn = func(_ context.Context, _, _ string, r io.Reader) (Audience, error) {
					_, _ = io.Copy(io.Discard, r)
					return Audience{}, tt.err
				}
			}
			b := setupAudiences(t, aud, 1024)
			w := b.do(t, tt.req)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d; %s", w.Code, tt.status, w.Body)
			}
			if msg := errorOf(t, w); msg != tt.msg {
				t.Errorf("error %q, want %q", msg, tt.msg)
			}
		})
	}
}

// TestImportAudienceTooLargeWhileStreaming: a body of unknown length
// that grows past the bound while the store reads it is a 413, not a bad
// file.
func TestImportAudienceTooLargeWhileStreaming(t *testing.T) {
	aud := &fakeAudiences{ImportFn: func(_ context.Context, _, _ string, r io.Reader) (Audience, error) {
		_, err := io.Copy(io.Discard, r)
		return Audience{}, fmt.Errorf("read csv near line 9: %w", err)
	}}
	b := setupAudiences(t, aud, 1024)
	req := csvRequest("/api/audiences?name=x", operatorToken, strings.Repeat("ios,abc,u\n", 200))
	req.chunked = true
	w := b.do(t, req)
	if w.Code != http.StatusRequestEntityTooLarge || errorOf(t, w) != "request body larger than 1024 bytes" {
		t.Errorf("status %d %s, want 413", w.Code, w.Body)
	}
}

func TestAudienceReads(t *testing.T) {
	aud := &fakeAudiences{
		ListFn: func(context.Context) ([]Audience, error) { return []Audience{spring}, nil },
		GetFn: func(_ context.Context, id string) (Audience, error) {
			if id == "a-1" {
				return spring, nil
			}
			return Audience{}, notFoundAudience(id)
		},
		ExportFn: func(_ context.Context, id string, w io.Writer) error {
			if id != "a-1" {
				return notFoundAudience(id)
			}
			_, err := io.WriteString(w, "platform,token,user_id,timezone\nios,abc,u-1,\n")
			return err
		},
	}
	b := setupAudiences(t, aud, 0)
	one := `{"id":"a-1","name":"spring","recipients":3,"ios":2,"android":1,"zones":["Asia/Seoul"],"created_at":"2030-01-02T03:04:05Z","created_by":"operator:x"}`
	tests := []struct {
		path   string
		status int
		ctype  string
		body   string
	}{
		{"/api/audiences", 200, "application/json", `{"audiences":[` + one + "]}\n"},
		{"/api/audiences/a-1", 200, "application/json", one + "\n"},
		{"/api/audiences/a-2", 404, "application/json", `{"error":"audience \"a-2\" not found"}` + "\n"},
		{"/api/audiences/a-1/export", 200, "text/csv; charset=utf-8", "platform,token,user_id,timezone\nios,abc,u-1,\n"},
		{"/api/audiences/a-2/export", 404, "application/json", `{"error":"audience \"a-2\" not found"}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			w := b.do(t, request{method: "GET", path: tt.path, token: viewerToken})
			if w.Code != tt.status || w.Header().Get("Content-Type") != tt.ctype || w.Body.String() != tt.body {
				t.Errorf("%d %s %q, want %d %s %q", w.Code, w.Header().Get("Content-Type"), w.Body, tt.status, tt.ctype, tt.body)
			}
		})
	}
	aud.ListFn = func(context.Context) ([]Audience, error) { return nil, nil }
	if w := b.do(t, request{method: "GET", path: "/api/audiences", token: viewerToken}); w.Body.String() != `{"audiences":[]}`+"\n" {
		t.Errorf("no audiences: %s", w.Body)
	}
}

func TestDeleteAudience(t *testing.T) {
	inUse := &kindError{`audience "a-1" is used by campaign "c-1" (scheduled): delete it when the campaign is over`, dispatcher.ErrConflict}
	tests := []struct {
		name, token string
		err         error
		status      int
		msg         string
	}{
		{"deleted", operatorToken, nil, 204, ""},
		{"admin", adminToken, nil, 204, ""},
		{"in use", operatorToken, inUse, 409, inUse.msg},
		{"not found", operatorToken, notFoundAudience("a-1"), 404, `audience "a-1" not found`},
		{"viewer", viewerToken, nil, 403, "role viewer may not do this; it needs operator"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			aud := &fakeAudiences{}
			if tt.status != 403 {
				aud.DeleteFn = func(context.Context, string, string) error { return tt.err }
			}
			b := setupAudiences(t, aud, 0)
			w := b.do(t, request{method: "DELETE", path: "/api/audiences/a-1", token: tt.token})
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d; %s", w.Code, tt.status, w.Body)
			}
			if tt.msg != "" {
				if msg := errorOf(t, w); msg != tt.msg {
					t.Errorf("error %q, want %q", msg, tt.msg)
				}
			} else if w.Body.Len() != 0 {
				t.Errorf("body %q, want none", w.Body)
			}
		})
	}
}

func TestAudiencesNotConfigured(t *testing.T) {
	b := setupAudiences(t, nil, 0)
	for _, req := range []request{
		{method: "GET", path: "/api/audiences", token: viewerToken},
		{method: "GET", path: "/api/audiences/a-1", token: viewerToken},
		{method: "GET", path: "/api/audiences/a-1/export", token: viewerToken},
		{method: "DELETE", path: "/api/audiences/a-1", token: operatorToken},
		csvRequest("/api/audiences?name=x", operatorToken, "platform,token,user_id\n"),
	} {
		w := b.do(t, req)
		if w.Code != http.StatusServiceUnavailable || errorOf(t, w) != "audiences not configured" {
			t.Errorf("%s %s: %d %s, want 503", req.method, req.path, w.Code, w.Body)
		}
	}
}

// TestAudienceExportCutShort: a failure after the export began cuts the
// response short, so that the client does not take a partial file for a
// whole one.
func TestAudienceExportCutShort(t *testing.T) {
	aud := &fakeAudiences{ExportFn: func(_ context.Context, _ string, w io.Writer) error {
		if _, err := io.WriteString(w, "platform,token,user_id,timezone\n"+strings.Repeat("ios,abc,u,\n", 1000)); err != nil {
			return err
		}
		return errors.New("store: disk I/O error")
	}}
	checkCutShort(t, setupAudiences(t, aud, 0), "/api/audiences/a-1/export")
}

// checkCutShort checks that an export that fails after it began is cut
// short, so that the client sees an error, and logged as an error.
func checkCutShort(t *testing.T, b *bundle, path string) {
	t.Helper()
	resp := getOverHTTP(t, b, path)
	if resp.StatusCode != 200 {
		t.Fatalf("status %s, want 200 (the failure comes later)", resp.Status)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err == nil {
		t.Error("export read to the end without an error")
	}
	if logs := b.logs.String(); !strings.Contains(logs, "disk I/O error") || !strings.Contains(logs, "level=ERROR") {
		t.Error("failure not logged as an error")
	}
}

// getOverHTTP GETs path as a viewer from b's handler served on a real
// listener. The body is closed at the end of the test.
func getOverHTTP(t *testing.T, b *bundle, path string) *http.Response {
	t.Helper()
	srv := httptest.NewServer(b.handler)
	t.Cleanup(srv.Close)
	req, err := http.NewRequestWithContext(t.Context(), "GET", srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+viewerToken)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}
