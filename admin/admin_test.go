package admin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"golang.org/x/crypto/bcrypt"

	"github.com/pushd/pushd/audit"
	"github.com/pushd/pushd/dispatcher"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Tokens of the test tokens file.
const (
	viewerToken   = "viewer-secret-0123456789"
	operatorToken = "operator-secret-0123456789"
	adminToken    = "admin-secret-0123456789"
)

var allTokens = []string{viewerToken, operatorToken, adminToken}

const testTokensFile = `# pushd admin tokens
viewer:` + viewerToken + `

operator:` + operatorToken + `
  admin : ` + adminToken + `
`

// fakeControl is a Control with function fields; newFakeControl fills them
// with an in-memory model of campaigns.
type fakeControl struct {
	CampaignsFn       func(ctx context.Context) ([]dispatcher.CampaignInfo, error)
	CampaignFn        func(ctx context.Context, id string) (dispatcher.CampaignInfo, error)
	SetCampaignRateFn func(ctx context.Context, id string, perSecond *float64) (dispatcher.CampaignInfo, error)
	PauseCampaignFn   func(ctx context.Context, id string) (dispatcher.CampaignInfo, error)
	ResumeCampaignFn  func(ctx context.Context, id string) (dispatcher.CampaignInfo, error)
	CancelCampaignFn  func(ctx context.Context, id string) (dispatcher.CampaignInfo, error)

	limMu  sync.Mutex
	limits map[string]dispatcher.LimitSetting // operators' settings

	// notes are the audited changes made, as the store would record them.
	notes noteLog
}

// noteLog records the changes a fake made with an audit.Note in their
// context, as the store would audit them: the changes that succeed.
type noteLog struct {
	mu      sync.Mutex
	entries []AuditEntry
}

// add records a change of target made with ctx that returned err.
func (l *noteLog) add(ctx context.Context, target string, err error) {
	n, ok := audit.NoteFrom(ctx)
	if !ok || err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, AuditEntry{Actor: n.Actor, Action: n.Action, Target: target})
}

// Entries returns the changes recorded, in order, as "actor action target".
func (l *noteLog) Entries() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, len(l.entries))
	for i, e := range l.entries {
		out[i] = e.Actor + " " + e.Action + " " + e.Target
	}
	return out
}

func (f *fakeControl) Limits() []dispatcher.LimitInfo {
	f.limMu.Lock()
	defer f.limMu.Unlock()
	var out []dispatcher.LimitInfo
	for _, level := range []string{"global", "apns", "fcm"} {
		li := dispatcher.LimitInfo{Level: level}
		if o, ok := f.limits[level]; ok {
			li.PerSecond, li.Burst, li.Operator = o.PerSecond, o.Burst, &o
		}
		out = append(out, li)
	}
	return out
}

func (f *fakeControl) SetLimit(ctx context.Context, level string, ls *dispatcher.LimitSetting) (out []dispatcher.LimitInfo, err error) {
	defer func() { f.notes.add(ctx, level, err) }()
	switch {
	case level != "global" && level != "apns" && level != "fcm":
		return nil, fmt.Errorf("%w: level %q", dispatcher.ErrNotFound, level)
	case ls != nil && ls.PerSecond < 0:
		return nil, fmt.Errorf("%w: negative", dispatcher.ErrInvalid)
	}
	f.limMu.Lock()
	if f.limits == nil {
		f.limits = map[string]dispatcher.LimitSetting{}
	}
	if ls == nil {
		delete(f.limits, level)
	} else {
		f.limits[level] = *ls
	}
	f.limMu.Unlock()
	return f.Limits(), nil
}

func (f *fakeControl) Campaigns(ctx context.Context) ([]dispatcher.CampaignInfo, error) {
	return f.CampaignsFn(ctx)
}

func (f *fakeControl) Campaign(ctx context.Context, id string) (dispatcher.CampaignInfo, error) {
	return f.CampaignFn(ctx, id)
}

func (f *fakeControl) SetCampaignRate(ctx context.Context, id string, perSecond *float64) (dispatcher.CampaignInfo, error) {
	c, err := f.SetCampaignRateFn(ctx, id, perSecond)
	f.notes.add(ctx, id, err)
	return c, err
}

func (f *fakeControl) PauseCampaign(ctx context.Context, id string) (dispatcher.CampaignInfo, error) {
	c, err := f.PauseCampaignFn(ctx, id)
	f.notes.add(ctx, id, err)
	return c, err
}

func (f *fakeControl) ResumeCampaign(ctx context.Context, id string) (dispatcher.CampaignInfo, error) {
	c, err := f.ResumeCampaignFn(ctx, id)
	f.notes.add(ctx, id, err)
	return c, err
}

func (f *fakeControl) CancelCampaign(ctx context.Context, id string) (dispatcher.CampaignInfo, error) {
	c, err := f.CancelCampaignFn(ctx, id)
	f.notes.add(ctx, id, err)
	return c, err
}

var (
	t0           = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	campaignIDs  = []string{"spring-sale", "a/b c%d"}
	messageRate  = 50.0
	campaignBase = dispatcher.CampaignInfo{
		Status:        dispatcher.StatusRunning,
		RatePerSecond: messageRate,
		RateSource:    "message",
		Counters:      dispatcher.Counters{Received: 100, Sent: 40},
		CreatedAt:     t0,
		UpdatedAt:     t0,
	}
)

// newFakeControl returns a Control over campaignIDs, all running at the
// messages' rate, that pauses, resumes, cancels and sets rates like the
// dispatcher: ErrNotFound for unknown ids, ErrConflict for changes a
// status does not allow.
func newFakeControl() *fakeControl {
	var mu sync.Mutex
	cs := make(map[string]dispatcher.CampaignInfo)
	for _, id := range campaignIDs {
		c := campaignBase
		c.ID = id
		cs[id] = c
	}
	get := func(id string) (dispatcher.CampaignInfo, error) {
		c, ok := cs[id]
		if !ok {
			return c, fmt.Errorf("campaign %q: %w", id, dispatcher.ErrNotFound)
		}
		return c, nil
	}
	setStatus := func(id string, to dispatcher.Status, from ...dispatcher.Status) (dispatcher.CampaignInfo, error) {
		mu.Lock()
		defer mu.Unlock()
		c, err := get(id)
		if err != nil {
			return c, err
		}
		ok := false
		for _, s := range from {
			ok = ok || c.Status == s
		}
		if !ok {
			return c, fmt.Errorf("campaign %q is %s: %w", id, c.Status, dispatcher.ErrConflict)
		}
		c.Status = to
		cs[id] = c
		return c, nil
	}
	return &fakeControl{
		CampaignsFn: func(context.Context) ([]dispatcher.CampaignInfo, error) {
			mu.Lock()
			defer mu.Unlock()
			var out []dispatcher.CampaignInfo
			for _, id := range campaignIDs {
				out = append(out, cs[id])
			}
			return out, nil
		},
		CampaignFn: func(_ context.Context, id string) (dispatcher.CampaignInfo, error) {
			mu.Lock()
			defer mu.Unlock()
			return get(id)
		},
		SetCampaignRateFn: func(_ context.Context, id string, perSecond *float64) (dispatcher.CampaignInfo, error) {
			mu.Lock()
			defer mu.Unlock()
			c, err := get(id)
			if err != nil {
				return c, err
			}
			c.RatePerSecond, c.RateSource = messageRate, "message"
			if perSecond != nil {
				c.RatePerSecond, c.RateSource = *perSecond, "operator"
			}
			cs[id] = c
			return c, nil
		},
		PauseCampaignFn: func(_ context.Context, id string) (dispatcher.CampaignInfo, error) {
			return setStatus(id, dispatcher.StatusPaused, dispatcher.StatusRunning, dispatcher.StatusPaused)
		},
		ResumeCampaignFn: func(_ context.Context, id string) (dispatcher.CampaignInfo, error) {
			return setStatus(id, dispatcher.StatusRunning, dispatcher.StatusPaused, dispatcher.StatusRunning)
		},
		CancelCampaignFn: func(_ context.Context, id string) (dispatcher.CampaignInfo, error) {
			return setStatus(id, dispatcher.StatusCancelled, dispatcher.StatusRunning, dispatcher.StatusPaused, dispatcher.StatusFinished, dispatcher.StatusCancelled)
		},
	}
}

// fakeAuditor records entries, or fails with Err, or because ctx ended.
type fakeAuditor struct {
	mu      sync.Mutex
	Err     error
	entries []AuditEntry
}

func (a *fakeAuditor) Audit(ctx context.Context, e AuditEntry) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.Err != nil {
		return a.Err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("audit with an ended context: %w", err)
	}
	a.entries = append(a.entries, e)
	return nil
}

func (a *fakeAuditor) Entries() []AuditEntry {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]AuditEntry(nil), a.entries...)
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// logBuffer keeps the logs of a test, and shows them with t.Log.
type logBuffer struct {
	t   testing.TB
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.t.Log(strings.TrimSuffix(string(p), "\n"))
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newLogger(t testing.TB) (*slog.Logger, *logBuffer) {
	lb := &logBuffer{t: t}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// bundle is a Server under test and its collaborators.
type bundle struct {
	srv        *Server
	handler    http.Handler
	ctl        *fakeControl
	auditor    *fakeAuditor
	clock      *clock
	logs       *logBuffer
	tokensFile string
	users      *fakeUsers           // with setupOpts.users
	reg        *prometheus.Registry // the admin module's metrics
}

type setupOpts struct {
	noTokensFile bool
	maxBodyBytes int64
	adjust       func(*bundle) // before New: replace fakes' functions
	users        bool          // a UserStore (fakeUsers), passwords hashed at bcrypt's least cost
	config       func(*Config) // last change to the Config before New
}

func setup(t *testing.T, opts setupOpts) *bundle {
	t.Helper()
	logger, logs := newLogger(t)
	b := &bundle{
		ctl:     newFakeControl(),
		auditor: &fakeAuditor{},
		clock:   &clock{t: t0},
		logs:    logs,
		reg:     prometheus.NewRegistry(),
	}
	if opts.users {
		b.users = newFakeUsers(b.clock.Now)
	}
	if !opts.noTokensFile {
		b.tokensFile = filepath.Join(t.TempDir(), "admin-tokens")
		writeFile(t, b.tokensFile, testTokensFile)
	}
	if opts.adjust != nil {
		opts.adjust(b)
	}
	cfg := Config{TokensFile: b.tokensFile, MaxBodyBytes: opts.maxBodyBytes, Now: b.clock.Now, Metrics: b.reg}
	if b.users != nil {
		cfg.Users, cfg.PasswordCost = b.users, bcrypt.MinCost
	}
	if opts.config != nil {
		opts.config(&cfg)
	}
	srv, err := New(cfg, b.ctl, b.auditor, logger)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	b.srv, b.handler = srv, srv.Handler()
	t.Cleanup(func() {
		for _, tok := range append(allTokens, testPasswords...) {
			if strings.Contains(logs.String(), tok) {
				t.Errorf("logs contain token or password %q", tok)
			}
		}
	})
	return b
}

// writeFile writes a file with a new modification time, so that a rewrite
// is seen even where mtimes are coarse.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	mt := time.Unix(1_900_000_000+fileSeq.Add(1), 0)
	if err := os.Chtimes(path, mt, mt); err != nil {
		t.Fatal(err)
	}
}

var fileSeq atomic.Int64

// request is one request to the handler.
type request struct {
	method, path, token, body string
	header                    map[string]string
	chunked                   bool   // body of unknown length
	cookie                    string // the session cookie's value
	remote                    string // the client's address (default 192.0.2.1:1234)
}

func (b *bundle) do(t *testing.T, req request) *httptest.ResponseRecorder {
	t.Helper()
	var body io.Reader
	if req.body != "" {
		body = strings.NewReader(req.body)
	}
	r := httptest.NewRequest(req.method, req.path, body)
	if req.token != "" {
		r.Header.Set("Authorization", "Bearer "+req.token)
	}
	if req.body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	if req.chunked {
		r.ContentLength = -1
	}
	for k, v := range req.header {
		r.Header.Set(k, v)
	}
	if req.cookie != "" {
		r.AddCookie(&http.Cookie{Name: SessionCookie, Value: req.cookie})
	}
	if req.remote != "" {
		r.RemoteAddr = req.remote
	}
	w := httptest.NewRecorder()
	b.handler.ServeHTTP(w, r)
	return w
}

// statusRequest is a request and the status it must get.
type statusRequest struct {
	req    request
	status int
}

// doAll makes the requests in order, each of which must get its status.
func (b *bundle) doAll(t *testing.T, reqs []statusRequest) {
	t.Helper()
	for _, r := range reqs {
		if w := b.do(t, r.req); w.Code != r.status {
			t.Fatalf("%s %s: %d, want %d; %s", r.req.method, r.req.path, w.Code, r.status, w.Body)
		}
	}
}

// errorOf returns the message of an error response, and checks its shape.
func errorOf(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var e map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || len(e) != 1 || e["error"] == "" {
		t.Fatalf("body = %q, want {\"error\": \"...\"}", w.Body.String())
	}
	return e["error"]
}

func campaignOf(t *testing.T, w *httptest.ResponseRecorder) dispatcher.CampaignInfo {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var c campaignView // GET adds source (and a definition) to the campaign
	dec := json.NewDecoder(w.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("decode campaign: %v", err)
	}
	return c.CampaignInfo
}

func actorOf(role, token string) string {
	sum := sha256.Sum256([]byte(token))
	return role + ":" + hex.EncodeToString(sum[:])[:8]
}

// run serves b's Server on a new loopback listener, and returns its
// address and a function that stops it and returns Run's error (stopped
// at the end of the test at the latest).
func (b *bundle) run(t *testing.T) (addr string, stop func() error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.srv.Run(ctx, ln) }()
	stop = sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("Run: %w", err)
			}
			return nil
		case <-time.After(10 * time.Second):
			return errors.New("Run did not return after its context ended")
		}
	})
	t.Cleanup(func() { _ = stop() })
	return ln.Addr().String(), stop
}

// TestRun serves on a real listener, with ids escaped the way a client
// sends them, and shuts down when the context ends.
func TestRun(t *testing.T) {
	b := setup(t, setupOpts{})
	addr, stop := b.run(t)
	client := &http.Client{Timeout: 5 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	base := "http://" + addr
	for _, tc := range []struct {
		method, path string
		wantID       string
		wantStatus   dispatcher.Status
	}{
		{"GET", "/api/campaigns/spring-sale", "spring-sale", dispatcher.StatusRunning},
		{"GET", "/api/campaigns/a%2Fb%20c%25d", "a/b c%d", dispatcher.StatusRunning},
		{"POST", "/api/campaigns/a%2Fb%20c%25d/pause", "a/b c%d", dispatcher.StatusPaused},
	} {
		req, err := http.NewRequestWithContext(t.Context(), tc.method, base+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+operatorToken)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var c dispatcher.CampaignInfo
		err = json.NewDecoder(resp.Body).Decode(&c)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil || c.ID != tc.wantID || c.Status != tc.wantStatus {
			t.Errorf("%s %s: %d %+v (%v), want 200 with id %q, status %s", tc.method, tc.path, resp.StatusCode, c, err, tc.wantID, tc.wantStatus)
		}
	}

	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Get(base + "/api/campaigns"); err == nil {
		t.Error("still serving after Run returned")
	}
}

func TestNewRequiresCollaborators(t *testing.T) {
	logger, _ := newLogger(t)
	if _, err := New(Config{}, nil, &fakeAuditor{}, logger); err == nil {
		t.Error("New without a Control: no error")
	}
	if _, err := New(Config{}, newFakeControl(), nil, logger); err == nil {
		t.Error("New without an Auditor: no error")
	}
}
