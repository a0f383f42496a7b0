package admin

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/lists"
	"github.com/pushd/pushd/store"
)

// storeControl is a Control whose campaign and limit changes go to the
// store as the dispatcher's do: with the request's context, so that the
// store sees the audit note. Reads and the rest are the fake's.
type storeControl struct {
	*fakeControl
	st *store.Store
}

func (c storeControl) PauseCampaign(ctx context.Context, id string) (dispatcher.CampaignInfo, error) {
	_, after, err := c.st.SetCampaignStatus(ctx, id, dispatcher.StatusPaused, dispatcher.StatusRunning, dispatcher.StatusPaused)
	return dispatcher.CampaignInfo{ID: after.ID, Status: after.Status, RatePerSecond: after.Rate()}, err
}

func (c storeControl) SetCampaignRate(ctx context.Context, id string, perSecond *float64) (dispatcher.CampaignInfo, error) {
	_, after, err := c.st.SetCampaignRate(ctx, id, perSecond)
	return dispatcher.CampaignInfo{ID: after.ID, Status: after.Status, RatePerSecond: after.Rate()}, err
}

func (c storeControl) SetLimit(ctx context.Context, level string, ls *dispatcher.LimitSetting) ([]dispatcher.LimitInfo, error) {
	return nil, c.st.SetRateLimit(ctx, level, ls)
}

// storeBundle is a Server whose lists, campaign changes and audit log are
// in a real store.
type storeBundle struct {
	*bundle
	st   *store.Store
	path string
}

func setupStore(t *testing.T) *storeBundle {
	t.Helper()
	st, path := openStore(t)
	logger, logs := newLogger(t)
	b := &storeBundle{
		bundle: &bundle{ctl: newFakeControl(), auditor: &fakeAuditor{}, clock: &clock{t: t0}, logs: logs},
		st:     st,
		path:   path,
	}
	st.SetClock(b.clock.Now)
	b.tokensFile = filepath.Join(t.TempDir(), "admin-tokens")
	writeFile(t, b.tokensFile, testTokensFile)
	srv, err := New(Config{TokensFile: b.tokensFile, Now: b.clock.Now, Lists: st, AuditLog: storeAudit{st}},
		storeControl{b.ctl, st}, b.auditor, logger)
	if err != nil {
		t.Fatal(err)
	}
	b.srv, b.handler = srv, srv.Handler()
	ctx := context.Background()
	if _, err := st.AddListEntries(ctx, []lists.Entry{blockedUser, blockedToken, testDevice}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.EnsureCampaign(ctx, "spring-sale", 50); err != nil {
		t.Fatal(err)
	}
	return b
}

// exec runs a statement on the store's file from a connection of its own.
func (b *storeBundle) exec(t *testing.T, q string) {
	t.Helper()
	db, err := sql.Open("sqlite", b.path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// state describes the lists, their snapshots, the campaign and the limits.
func (b *storeBundle) state(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	var out strings.Builder
	for _, l := range []lists.Name{lists.Blacklist, lists.Whitelist} {
		var es []string
		if err := b.st.EachEntry(ctx, l, func(e lists.Entry) error {
			es = append(es, e.Value+"="+e.Reason)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		snaps, err := b.st.ListSnapshots(ctx, l)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "%s %d entries %v, %d snapshots\n", l, len(es), es, len(snaps))
	}
	c, err := b.st.Campaign(ctx, "spring-sale")
	if err != nil {
		t.Fatal(err)
	}
	lim, err := b.st.RateLimits(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&out, "campaign %s %v; limits %v", c.Status, c.Rate(), lim)
	return out.String()
}

// auditLog returns the audit records, oldest first, as
// "actor action target".
func (b *storeBundle) auditLog(t *testing.T) []string {
	t.Helper()
	w := b.do(t, request{method: "GET", path: "/api/audit", token: operatorToken})
	if w.Code != 200 {
		t.Fatalf("GET /api/audit: %d %s", w.Code, w.Body)
	}
	var page auditPage
	if err := json.Unmarshal(w.Body.Bytes(), &page); err != nil {
		t.Fatal(err)
	}
	var out []string
	for i := len(page.Entries) - 1; i >= 0; i-- {
		e := page.Entries[i]
		out = append(out, e.Actor+" "+e.Action+" "+e.Target)
	}
	return out
}

// TestAuditFailureRefusesTheChange: when the audit record of a change
// cannot be written, the API answers 500 and the change does not stand;
// once the audit log works again, the same request makes the change and
// its record (issue 13, item 6).
func TestAuditFailureRefusesTheChange(t *testing.T) {
	op := actorOf("operator", operatorToken)
	tests := []struct {
		name string
		req  request
		want string // the audit record
	}{
		{"list add", request{method: "POST", path: "/api/lists/blacklist/entries", token: operatorToken, body: `{"kind":"user","value":"u-99","reason":"abuse"}`},
			op + " list.add blacklist"},
		{"list remove", request{method: "DELETE", path: "/api/lists/blacklist/entries?kind=user&value=u-17", token: operatorToken},
			op + " list.remove blacklist"},
		{"list import, replace", csvRequest("/api/lists/whitelist/import?replace=true", operatorToken, csvHeader+"user,qa-1,,test_device\n"),
			op + " list.import whitelist"},
		{"list import, merge", csvRequest("/api/lists/blacklist/import", operatorToken, csvHeader+"user,u-5,,abuse\n"),
			op + " list.import blacklist"},
		{"campaign pause", request{method: "POST", path: "/api/campaigns/spring-sale/pause", token: operatorToken},
			op + " campaign.pause spring-sale"},
		{"campaign rate", request{method: "PUT", path: "/api/campaigns/spring-sale/rate", token: operatorToken, body: `{"rate_per_second": 7}`},
			op + " campaign.rate spring-sale"},
		{"limit set", request{method: "PUT", path: "/api/limits/apns", token: operatorToken, body: `{"per_second": 100, "burst": 10}`},
			op + " limit.set apns"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := setupStore(t)
			was := b.state(t)
			b.exec(t, `CREATE TRIGGER audit_refused BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'disk full'); END`)
			w := b.do(t, tt.req)
			if w.Code != 500 {
				t.Fatalf("with the audit log broken: %d %s, want 500", w.Code, w.Body)
			}
			if now := b.state(t); now != was {
				t.Fatalf("the change stood without its audit record:\nbefore %s\nafter  %s", was, now)
			}
			if !strings.Contains(b.logs.String(), "disk full") {
				t.Error("the failure is not logged")
			}
			b.exec(t, `DROP TRIGGER audit_refused`)
			if w := b.do(t, tt.req); w.Code != 200 {
				t.Fatalf("with the audit log back: %d %s", w.Code, w.Body)
			}
			if b.state(t) == was {
				t.Fatal("the change did not happen")
			}
			if got := b.auditLog(t); len(got) != 1 || got[0] != tt.want {
				t.Errorf("audit log %q, want [%q]", got, tt.want)
			}
		})
	}
}

// TestListSnapshotRoutes: a replace import keeps what it replaced; the
// snapshot is listed, exported as CSV that imports again, and restored,
// and the audit records name the snapshots.
func TestListSnapshotRoutes(t *testing.T) {
	b := setupStore(t)
	b.clock.Add(3600e9)
	w := b.do(t, csvRequest("/api/lists/blacklist/import?replace=true", operatorToken, csvHeader+"user,u-1,,abuse\n"))
	if w.Code != 200 {
		t.Fatalf("import: %d %s", w.Code, w.Body)
	}
	w = b.do(t, request{method: "GET", path: "/api/lists/blacklist/snapshots", token: viewerToken})
	want := `{"snapshots":[{"id":1,"list":"blacklist","entries":2,"created_at":"2030-01-02T04:04:05Z","created_by":"` + actorOf("operator", operatorToken) + `"}]}`
	if got := strings.TrimSpace(w.Body.String()); w.Code != 200 || got != want {
		t.Fatalf("snapshots: %d %s, want %s", w.Code, got, want)
	}
	if w := b.do(t, request{method: "GET", path: "/api/lists/whitelist/snapshots", token: viewerToken}); strings.TrimSpace(w.Body.String()) != `{"snapshots":[]}` {
		t.Errorf("whitelist snapshots: %s", w.Body)
	}

	w = b.do(t, request{method: "GET", path: "/api/lists/blacklist/snapshots/1/export", token: viewerToken})
	if w.Code != 200 || w.Header().Get("Content-Type") != "text/csv; charset=utf-8" {
		t.Fatalf("export: %d %v %s", w.Code, w.Header(), w.Body)
	}
	exported, err := lists.ReadCSV(strings.NewReader(w.Body.String()), lists.Blacklist)
	if err != nil {
		t.Fatalf("the export does not import again: %v\n%s", err, w.Body)
	}
	if got := keysOf(exported); strings.Join(got, ";") != strings.Join(keysOf([]lists.Entry{blockedUser, blockedToken}), ";") {
		t.Errorf("exported %v", got)
	}
	for _, path := range []string{"/api/lists/whitelist/snapshots/1/export", "/api/lists/blacklist/snapshots/2/export", "/api/lists/blacklist/snapshots/x/export"} {
		if w := b.do(t, request{method: "GET", path: path, token: viewerToken}); w.Code != 404 {
			t.Errorf("GET %s: %d %s, want 404", path, w.Code, w.Body)
		}
	}

	if w := b.do(t, request{method: "POST", path: "/api/lists/blacklist/snapshots/1/restore", token: viewerToken}); w.Code != 403 {
		t.Errorf("viewer restore: %d", w.Code)
	}
	w = b.do(t, request{method: "POST", path: "/api/lists/blacklist/snapshots/1/restore", token: adminToken})
	if got := strings.TrimSpace(w.Body.String()); w.Code != 200 || got != `{"restored":2}` {
		t.Fatalf("restore: %d %s", w.Code, got)
	}
	if w := b.do(t, request{method: "POST", path: "/api/lists/blacklist/snapshots/9/restore", token: adminToken}); w.Code != 404 {
		t.Errorf("restore of no snapshot: %d %s", w.Code, w.Body)
	}
	if s := b.state(t); !strings.HasPrefix(s, "blacklist 2 entries") || !strings.Contains(s, "2 snapshots") {
		t.Errorf("after the restore: %s", s)
	}

	w = b.do(t, request{method: "GET", path: "/api/audit?target=blacklist", token: operatorToken})
	var page auditPage
	if err := json.Unmarshal(w.Body.Bytes(), &page); err != nil || len(page.Entries) != 2 {
		t.Fatalf("audit: %s, %v", w.Body, err)
	}
	restore, imp := page.Entries[0], page.Entries[1]
	if imp.Action != "list.import" || string(imp.Before) != `{"count":2,"snapshot":1}` || string(imp.After) != `{"count":1,"imported":1,"replace":true}` {
		t.Errorf("import record %s %s %s", imp.Action, imp.Before, imp.After)
	}
	if restore.Action != "list.restore" || restore.Actor != actorOf("admin", adminToken) ||
		string(restore.Before) != `{"count":1,"snapshot":2}` || string(restore.After) != `{"count":2,"restored":1}` {
		t.Errorf("restore record %s %s %s %s", restore.Actor, restore.Action, restore.Before, restore.After)
	}
}
