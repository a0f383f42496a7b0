package admin

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/scheduler"
	"github.com/pushd/pushd/store"
)

// fakeTests is a TestSender that records its calls.
type fakeTests struct {
	mu    sync.Mutex
	calls []string
}

func (f *fakeTests) SendTest(_ context.Context, testID string, n json.RawMessage, audienceID string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, testID+" "+audienceID+" "+string(n))
	return 3, nil
}

// storeAudit reads the store's audit log for GET /api/audit, as cmd/pushd
// does.
type storeAudit struct{ st *store.Store }

func (a storeAudit) AuditEntries(ctx context.Context, q AuditQuery) ([]AuditRecord, error) {
	es, err := a.st.AuditEntries(ctx, store.AuditQuery{Actor: q.Actor, Action: q.Action, Target: q.Target,
		Since: q.Since, Until: q.Until, Before: q.Before, Limit: q.Limit})
	out := make([]AuditRecord, len(es))
	for i, e := range es {
		out[i] = AuditRecord{ID: e.ID, AuditEntry: AuditEntry{At: e.At, Actor: e.Actor, Action: e.Action, Target: e.Target, Before: e.Before, After: e.After}}
	}
	return out, err
}

// openStore opens a store in a temporary file, closed at the end of the
// test, and returns it with the file's path.
func openStore(t *testing.T) (*store.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pushd.db")
	st, err := store.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st, path
}

// defsBundle is a Server with a real store behind its console campaigns.
type defsBundle struct {
	*bundle
	st    *store.Store
	tests *fakeTests
	wakes atomic.Int64 // calls of OnSchedule
}

// setupDefs serves console campaigns from a store in a temporary file,
// with one ready audience "aud" (zones America/New_York and Asia/Seoul).
func setupDefs(t *testing.T, requireApproval bool) *defsBundle {
	t.Helper()
	st, path := openStore(t)
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec(`INSERT INTO audiences (id, name, state, zones, created_at, created_by) VALUES ('aud', 'aud', 'ready', 'America/New_York,Asia/Seoul', 0, 'test')`)
	_ = db.Close()
	if err != nil {
		t.Fatal(err)
	}
	logger, logs := newLogger(t)
	b := &defsBundle{
		bundle: &bundle{ctl: newFakeControl(), auditor: &fakeAuditor{}, clock: &clock{t: t0}, logs: logs},
		st:     st,
		tests:  &fakeTests{},
	}
	st.SetClock(b.clock.Now)
	b.tokensFile = filepath.Join(t.TempDir(), "admin-tokens")
	writeFile(t, b.tokensFile, testTokensFile)
	srv, err := New(Config{
		TokensFile: b.tokensFile, Now: b.clock.Now,
		Campaigns: st, Tests: b.tests, RequireApproval: requireApproval, TimeZone: "Asia/Seoul",
		AuditLog: storeAudit{st}, OnSchedule: func() { b.wakes.Add(1) },
	}, b.ctl, b.auditor, logger)
	if err != nil {
		t.Fatal(err)
	}
	b.srv, b.handler = srv, srv.Handler()
	return b
}

// t0 is 2030-01-02T03:04:05Z: 12:04 in Seoul.
const newCampaign = `{"id": "xmas", "name": "Christmas", "notification": {"title": "Hi", "body": "Sale"},
 "audience": "aud", "rate_per_second": 100, "send_at": "2030-12-24T09:00"}`

// view decodes a campaign answer.
func view(t *testing.T, w *httptest.ResponseRecorder) campaignView {
	t.Helper()
	var v campaignView
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode %q: %v", w.Body.String(), err)
	}
	return v
}

func (b *defsBundle) must(t *testing.T, req request, status int) *httptest.ResponseRecorder {
	t.Helper()
	w := b.do(t, req)
	if w.Code != status {
		t.Fatalf("%s %s: %d %s, want %d", req.method, req.path, w.Code, w.Body.String(), status)
	}
	return w
}

func TestCreateCampaign(t *testing.T) {
	b := setupDefs(t, false)
	w := b.must(t, request{method: "POST", path: "/api/campaigns", token: operatorToken, body: newCampaign}, 201)
	v := view(t, w)
	if v.ID != "xmas" || v.Status != "draft" || v.Source != "console" || v.Definition == nil ||
		v.Definition.TimeZone != "Asia/Seoul" || v.Definition.CreatedBy != actorOf("operator", operatorToken) {
		t.Errorf("created %+v %+v", v, v.Definition)
	}

	big := strings.Repeat("x", 4000)
	tests := []struct {
		name, token, body string
		status            int
		field             string
	}{
		{"viewer", viewerToken, newCampaign, 403, "role viewer"},
		{"taken id", operatorToken, newCampaign, 409, "taken"},
		{"unknown time zone", operatorToken, `{"notification":{"title":"a"},"audience":"aud","time_zone":"Mars/Olympus"}`, 400, "time_zone"},
		{"bad send_at", operatorToken, `{"notification":{"title":"a"},"audience":"aud","send_at":"christmas"}`, 400, "send_at"},
		{"payload over 4096 bytes", operatorToken, `{"notification":{"title":"a","body":"` + big + `","data":{"k":"` + big[:200] + `"}},"audience":"aud"}`, 400, "notification"},
		{"bad notification", operatorToken, `{"notification":{"priority":"urgent","title":"a"},"audience":"aud"}`, 400, "notification"},
		{"no notification", operatorToken, `{"audience":"aud"}`, 400, "notification"},
		{"audience not found", operatorToken, `{"notification":{"title":"a"},"audience":"nope"}`, 400, "audience"},
		{"bad id", operatorToken, `{"id":"a\u0001b","notification":{"title":"a"},"audience":"aud"}`, 400, "id"},
		{"test id", operatorToken, `{"id":"a.test-1","notification":{"title":"a"},"audience":"aud"}`, 400, "id"},
		{"negative rate", operatorToken, `{"notification":{"title":"a"},"audience":"aud","rate_per_second":-1}`, 400, "rate_per_second"},
		{"unknown field", operatorToken, `{"notification":{"title":"a"},"audience":"aud","colour":"red"}`, 400, "colour"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := b.do(t, request{method: "POST", path: "/api/campaigns", token: tt.token, body: tt.body})
			if w.Code != tt.status || !strings.Contains(errorOf(t, w), tt.field) {
				t.Errorf("%d %s, want %d naming %q", w.Code, w.Body.String(), tt.status, tt.field)
			}
		})
	}
	// A send_at in the past is refused when scheduling.
	b.must(t, request{method: "POST", path: "/api/campaigns", token: operatorToken,
		body: `{"id":"past","notification":{"title":"a"},"audience":"aud","send_at":"2029-12-24T09:00"}`}, 201)
	if w := b.do(t, request{method: "POST", path: "/api/campaigns/past/schedule", token: operatorToken}); w.Code != 400 || !strings.Contains(errorOf(t, w), "send_at") {
		t.Errorf("schedule in the past: %d %s, want 400 naming send_at", w.Code, w.Body.String())
	}
	if w := b.do(t, request{method: "POST", path: "/api/campaigns/past/schedule", token: viewerToken}); w.Code != 403 {
		t.Errorf("viewer schedule: %d, want 403", w.Code)
	}
	if w := b.do(t, request{method: "POST", path: "/api/campaigns/nope/schedule", token: operatorToken}); w.Code != 404 {
		t.Errorf("schedule unknown: %d, want 404", w.Code)
	}
	// A generated id.
	w = b.must(t, request{method: "POST", path: "/api/campaigns", token: adminToken, body: `{"notification":{"title":"a"},"audience":"aud"}`}, 201)
	if v := view(t, w); !strings.HasPrefix(v.ID, "c-") || v.Definition.Name != v.ID {
		t.Errorf("generated id %q, name %q", v.ID, v.Definition.Name)
	}
}

func TestCampaignPreview(t *testing.T) {
	b := setupDefs(t, false)
	b.must(t, request{method: "POST", path: "/api/campaigns", token: operatorToken,
		body: `{"id":"p","notification":{"title":"Café","body":"🎉"},"audience":"aud"}`}, 201)
	if w := b.do(t, request{method: "POST", path: "/api/campaigns/p/preview", token: viewerToken}); w.Code != 403 {
		t.Errorf("viewer preview: %d, want 403 (viewers only look)", w.Code)
	}
	w := b.must(t, request{method: "POST", path: "/api/campaigns/p/preview", token: operatorToken}, 200)
	var ans previewAnswer
	if err := json.Unmarshal(w.Body.Bytes(), &ans); err != nil {
		t.Fatal(err)
	}
	// é is 2 bytes, 🎉 4: the sizes are in bytes.
	if ans.APNs.Bytes != 49 || string(ans.APNs.Payload) != `{"aps":{"alert":{"title":"Café","body":"🎉"}}}` || !ans.APNs.Fits || ans.APNs.Limit != 4096 {
		t.Errorf("apns preview %+v (%s)", ans.APNs, ans.APNs.Payload)
	}
	if ans.FCM.Bytes != len(ans.FCM.Payload) || !strings.Contains(string(ans.FCM.Payload), `"body":"🎉"`) || !ans.FCM.Fits {
		t.Errorf("fcm preview %+v (%s)", ans.FCM, ans.FCM.Payload)
	}
	if w := b.do(t, request{method: "POST", path: "/api/campaigns/nope/preview", token: operatorToken}); w.Code != 404 {
		t.Errorf("preview unknown: %d", w.Code)
	}
}

func TestCampaignLifecycle(t *testing.T) {
	b := setupDefs(t, true)
	ctx := context.Background()
	b.must(t, request{method: "POST", path: "/api/campaigns", token: operatorToken, body: newCampaign}, 201)

	// Edit a draft.
	w := b.must(t, request{method: "PUT", path: "/api/campaigns/xmas", token: operatorToken, body: `{"name":"Xmas","recipient_time_zone":true}`}, 200)
	if d := view(t, w).Definition; d.Name != "Xmas" || !d.RecipientTimeZone || string(d.Notification) != `{"title":"Hi","body":"Sale"}` {
		t.Errorf("edited %+v", d)
	}
	if w := b.do(t, request{method: "PUT", path: "/api/campaigns/xmas", token: viewerToken, body: `{"name":"x"}`}); w.Code != 403 {
		t.Errorf("viewer edit: %d", w.Code)
	}
	if w := b.do(t, request{method: "PUT", path: "/api/campaigns/xmas", token: operatorToken, body: `{"time_zone":"Nowhere"}`}); w.Code != 400 || !strings.Contains(errorOf(t, w), "time_zone") {
		t.Errorf("edit bad zone: %d %s", w.Code, w.Body.String())
	}

	// A test send, in draft.
	w = b.must(t, request{method: "POST", path: "/api/campaigns/xmas/test", token: operatorToken}, 200)
	if got := strings.TrimSpace(w.Body.String()); got != `{"campaign":"xmas.test-1","devices":3}` {
		t.Errorf("test answer %s", got)
	}
	if w := b.do(t, request{method: "POST", path: "/api/campaigns/xmas/test", token: viewerToken}); w.Code != 403 {
		t.Errorf("viewer test: %d", w.Code)
	}

	// Not running yet: the engine's controls say so.
	for _, action := range []string{"pause", "resume"} {
		if w := b.do(t, request{method: "POST", path: "/api/campaigns/xmas/" + action, token: operatorToken}); w.Code != 409 || !strings.Contains(errorOf(t, w), "draft") {
			t.Errorf("%s a draft: %d %s, want 409", action, w.Code, w.Body.String())
		}
	}

	// Schedule: awaiting approval; the same user may not approve.
	w = b.must(t, request{method: "POST", path: "/api/campaigns/xmas/schedule", token: operatorToken}, 200)
	v := view(t, w)
	if v.Status != "awaiting_approval" || !v.Definition.FireAt.Equal(time.Date(2030, 12, 24, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("scheduled %+v %+v", v, v.Definition)
	}
	if w := b.do(t, request{method: "POST", path: "/api/campaigns/xmas/test", token: operatorToken}); w.Code != 409 {
		t.Errorf("test after scheduling: %d, want 409", w.Code)
	}
	if w := b.do(t, request{method: "POST", path: "/api/campaigns/xmas/approve", token: operatorToken}); w.Code != 403 {
		t.Errorf("self-approval: %d %s, want 403", w.Code, w.Body.String())
	}
	if w := b.do(t, request{method: "POST", path: "/api/campaigns/xmas/approve", token: viewerToken}); w.Code != 403 {
		t.Errorf("viewer approval: %d, want 403", w.Code)
	}
	if n := b.wakes.Load(); n != 0 {
		t.Errorf("the scheduler was woken %d times before the approval", n)
	}
	w = b.must(t, request{method: "POST", path: "/api/campaigns/xmas/approve", token: adminToken}, 200)
	if v := view(t, w); v.Status != "scheduled" || v.Definition.ApprovedBy != actorOf("admin", adminToken) {
		t.Errorf("approved %+v", v)
	}
	if n := b.wakes.Load(); n != 1 {
		t.Errorf("the scheduler was woken %d times after the approval, want 1", n)
	}
	if w := b.do(t, request{method: "POST", path: "/api/campaigns/xmas/approve", token: adminToken}); w.Code != 409 {
		t.Errorf("second approval: %d, want 409", w.Code)
	}

	// Running: no more edits; the scheduler's lease goes with a cancel.
	due, _, err := b.st.Claim(ctx, "one", time.Date(2030, 12, 24, 0, 0, 1, 0, time.UTC), time.Minute, time.Hour, 5)
	if err != nil || len(due) != 1 {
		t.Fatalf("Claim = %v, %v", due, err)
	}
	if w := b.do(t, request{method: "PUT", path: "/api/campaigns/xmas", token: operatorToken, body: `{"name":"late"}`}); w.Code != 409 {
		t.Errorf("edit running: %d %s, want 409", w.Code, w.Body.String())
	}
	b.must(t, request{method: "POST", path: "/api/campaigns/xmas/cancel", token: operatorToken}, 200)
	d, _ := b.st.CampaignDef(ctx, "xmas")
	if d.State != scheduler.DefCancelled {
		t.Errorf("after cancel: %s", d.State)
	}
	if err := b.st.Progress(ctx, "xmas", "one", scheduler.Cursor{Pos: 1}, 1, time.Date(2030, 12, 24, 0, 1, 0, 0, time.UTC), false); err == nil {
		t.Error("the scheduler kept its lease after cancel")
	}
	if w := b.do(t, request{method: "POST", path: "/api/campaigns/xmas/cancel", token: operatorToken}); w.Code != 409 {
		t.Errorf("second cancel: %d, want 409", w.Code)
	}

	// Every step is audited, readable by operators, newest first.
	w = b.must(t, request{method: "GET", path: "/api/audit?target=xmas", token: operatorToken}, 200)
	var page auditPage
	if err := json.Unmarshal(w.Body.Bytes(), &page); err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range page.Entries {
		actions = append(actions, e.Action)
	}
	want := "campaign.cancel campaign.start campaign.approve campaign.schedule campaign.test campaign.edit campaign.create"
	if got := strings.Join(actions, " "); got != want {
		t.Errorf("audit actions:\n got %s\nwant %s", got, want)
	}
	if len(b.tests.calls) != 1 || !strings.HasPrefix(b.tests.calls[0], "xmas.test-1 aud ") {
		t.Errorf("SendTest calls %q", b.tests.calls)
	}
}

// running creates a console campaign due now and has the scheduler
// "one" claim it.
func (b *defsBundle) running(t *testing.T, id string) {
	t.Helper()
	ctx := context.Background()
	if _, err := b.st.CreateCampaignDef(ctx, scheduler.Definition{ID: id, Notification: json.RawMessage(`{"title":"a"}`), AudienceID: "aud", TimeZone: "UTC"}, "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.st.ScheduleCampaignDef(ctx, id, "x", false); err != nil {
		t.Fatal(err)
	}
	if due, _, err := b.st.Claim(ctx, "one", t0, time.Minute, time.Hour, 5); err != nil || len(due) != 1 {
		t.Fatalf("Claim = %v, %v", due, err)
	}
}

func TestCancelConsoleCampaign(t *testing.T) {
	b := setupDefs(t, false)
	ctx := context.Background()
	// spring-sale is also a running campaign of the fake engine.
	b.must(t, request{method: "POST", path: "/api/campaigns", token: operatorToken,
		body: `{"id":"draft-one","notification":{"title":"a"},"audience":"aud"}`}, 201)
	w := b.must(t, request{method: "POST", path: "/api/campaigns/draft-one/cancel", token: operatorToken}, 200)
	if v := view(t, w); v.Status != "cancelled" || v.Source != "console" {
		t.Errorf("cancelled draft %+v", v)
	}
	if w := b.do(t, request{method: "POST", path: "/api/campaigns/draft-one/cancel", token: viewerToken}); w.Code != 403 {
		t.Errorf("viewer cancel: %d", w.Code)
	}

	b.running(t, "console-run")
	var engineCancelled []string
	next := b.ctl.CancelCampaignFn
	b.ctl.CancelCampaignFn = func(ctx context.Context, id string) (dispatcher.CampaignInfo, error) {
		engineCancelled = append(engineCancelled, id)
		return next(ctx, id)
	}
	b.must(t, request{method: "POST", path: "/api/campaigns/console-run/cancel", token: operatorToken}, 200)
	if len(engineCancelled) != 1 || engineCancelled[0] != "console-run" {
		t.Errorf("engine cancels %q", engineCancelled)
	}
	// A console campaign published and finished by the engine is final.
	b.running(t, "done-run")
	if err := b.st.Progress(ctx, "done-run", "one", scheduler.Cursor{Pos: 9}, 9, t0, true); err != nil {
		t.Fatal(err)
	}
	get := b.ctl.CampaignFn
	b.ctl.CampaignFn = func(ctx context.Context, id string) (dispatcher.CampaignInfo, error) {
		if id == "done-run" {
			return dispatcher.CampaignInfo{ID: id, Status: dispatcher.StatusFinished}, nil
		}
		return get(ctx, id)
	}
	if w := b.do(t, request{method: "POST", path: "/api/campaigns/done-run/cancel", token: operatorToken}); w.Code != 409 {
		t.Errorf("cancel finished: %d %s, want 409", w.Code, w.Body.String())
	}
	if d, _ := b.st.CampaignDef(ctx, "done-run"); d.State != scheduler.DefRunning {
		t.Errorf("a refused cancel changed the definition to %s", d.State)
	}

	// An AMQP campaign is cancelled in the engine, as before.
	w = b.must(t, request{method: "POST", path: "/api/campaigns/spring-sale/cancel", token: operatorToken}, 200)
	if c := campaignOf(t, w); c.Status != dispatcher.StatusCancelled {
		t.Errorf("amqp cancel %+v", c)
	}
}

func TestCampaignListBothSources(t *testing.T) {
	b := setupDefs(t, false)
	b.must(t, request{method: "POST", path: "/api/campaigns", token: operatorToken, body: newCampaign}, 201)
	// The engine also runs a test send of xmas.
	test := campaignBase
	test.ID = "xmas.test-1"
	all, get := b.ctl.CampaignsFn, b.ctl.CampaignFn
	b.ctl.CampaignsFn = func(ctx context.Context) ([]dispatcher.CampaignInfo, error) {
		cs, err := all(ctx)
		return append(cs, test), err
	}
	b.ctl.CampaignFn = func(ctx context.Context, id string) (dispatcher.CampaignInfo, error) {
		if id == test.ID {
			return test, nil
		}
		return get(ctx, id)
	}
	w := b.must(t, request{method: "GET", path: "/api/campaigns", token: viewerToken}, 200)
	var list struct {
		Campaigns []campaignView `json:"campaigns"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range list.Campaigns {
		got[c.ID] = c.Source + " " + string(c.Status)
	}
	want := map[string]string{"xmas": "console draft", "xmas.test-1": "console running", "spring-sale": "amqp running", "a/b c%d": "amqp running"}
	if len(got) != len(want) {
		t.Errorf("list %v, want %v", got, want)
	}
	for id, s := range want {
		if got[id] != s {
			t.Errorf("%s: %q, want %q", id, got[id], s)
		}
	}
	// Pages of one hold both sources too.
	var paged []string
	for next, first := "", true; first || next != ""; first = false {
		var ids []string
		ids, next = pageOf(t, b.bundle, "?limit=1&after="+next)
		paged = append(paged, ids...)
	}
	if len(paged) != len(want) {
		t.Errorf("paged %v, want the %d campaigns", paged, len(want))
	}
	w = b.must(t, request{method: "GET", path: "/api/campaigns/xmas", token: viewerToken}, 200)
	if v := view(t, w); v.Status != "draft" || v.Source != "console" {
		t.Errorf("get %+v", v)
	}
	w = b.must(t, request{method: "GET", path: "/api/campaigns/xmas.test-1", token: viewerToken}, 200)
	if v := view(t, w); v.Source != "console" || v.Definition != nil {
		t.Errorf("get test send %+v", v)
	}
	w = b.must(t, request{method: "GET", path: "/api/campaigns/spring-sale", token: viewerToken}, 200)
	if v := view(t, w); v.Source != "amqp" {
		t.Errorf("get amqp %+v", v)
	}
}

func TestConsoleStatus(t *testing.T) {
	running := dispatcher.CampaignInfo{ID: "c", Status: dispatcher.StatusRunning}
	finished := dispatcher.CampaignInfo{ID: "c", Status: dispatcher.StatusFinished}
	paused := dispatcher.CampaignInfo{ID: "c", Status: dispatcher.StatusPaused}
	for _, tt := range []struct {
		name string
		d    scheduler.Definition
		info *dispatcher.CampaignInfo
		want dispatcher.Status
	}{
		{"scheduled", scheduler.Definition{State: scheduler.DefScheduled}, nil, "scheduled"},
		{"running", scheduler.Definition{State: scheduler.DefRunning}, &running, "running"},
		{"paused", scheduler.Definition{State: scheduler.DefRunning}, &paused, "paused"},
		{"engine idle while publishing", scheduler.Definition{State: scheduler.DefRunning}, &finished, "running"},
		{"finished", scheduler.Definition{State: scheduler.DefRunning, PublishedAll: true}, &finished, "finished"},
		{"cancelled while running", scheduler.Definition{State: scheduler.DefCancelled}, &running, "cancelled"},
	} {
		if got := consoleView(tt.d, tt.info).Status; got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestAuditRoute(t *testing.T) {
	b := setupDefs(t, false)
	for i := range 3 {
		b.clock.Add(time.Minute)
		body := strings.Replace(newCampaign, `"xmas"`, `"c`+string(rune('0'+i))+`"`, 1)
		b.must(t, request{method: "POST", path: "/api/campaigns", token: operatorToken, body: body}, 201)
	}
	if w := b.do(t, request{method: "GET", path: "/api/audit", token: viewerToken}); w.Code != 403 {
		t.Errorf("viewer: %d, want 403", w.Code)
	}
	page := func(query string) auditPage {
		t.Helper()
		w := b.must(t, request{method: "GET", path: "/api/audit?" + query, token: adminToken}, 200)
		var p auditPage
		if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p1 := page("action=campaign.create&limit=2")
	if len(p1.Entries) != 2 || p1.Entries[0].Target != "c2" || p1.NextBefore == 0 {
		t.Fatalf("first page %+v", p1)
	}
	p2 := page("action=campaign.create&limit=2&before=" + jsonInt(p1.NextBefore))
	if len(p2.Entries) != 1 || p2.Entries[0].Target != "c0" || p2.NextBefore != 0 {
		t.Errorf("second page %+v", p2)
	}
	if p := page("actor=" + actorOf("operator", operatorToken) + "&since=2030-01-02T03:06:00Z&until=2030-01-02T03:07:30Z"); len(p.Entries) != 2 {
		t.Errorf("since/until: %d entries, want 2", len(p.Entries))
	}
	for _, q := range []string{"since=yesterday", "limit=0", "limit=1001", "before=x"} {
		w := b.do(t, request{method: "GET", path: "/api/audit?" + q, token: adminToken})
		key, _, _ := strings.Cut(q, "=")
		if w.Code != 400 || !strings.Contains(errorOf(t, w), key) {
			t.Errorf("%s: %d %s, want 400 naming %s", q, w.Code, w.Body.String(), key)
		}
	}
	// No route changes or deletes the audit log.
	for _, m := range []string{"POST", "PUT", "DELETE"} {
		if w := b.do(t, request{method: m, path: "/api/audit", token: adminToken}); w.Code != 405 {
			t.Errorf("%s /api/audit: %d, want 405", m, w.Code)
		}
	}
}

func jsonInt(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
