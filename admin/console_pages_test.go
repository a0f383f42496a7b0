package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/lists"
	"github.com/pushd/pushd/store"
)

func TestConsolePagesCarryTheDesignNames(t *testing.T) {
	logger, _ := newLogger(t)
	b := setupConsole(t, logger)
	aud := b.addAudience(t, "seoul", 10)
	w := b.post("/campaigns/new", operatorToken, url.Values{"id": {"xmas"}, "title": {"Hi"}, "audience": {aud.ID}, "action": {"save"}})
	redirectedTo(t, w, "/campaign/xmas")

	nav := []string{"Campaigns", "Audiences", "Lists", "Audit log"}
	for _, tc := range []struct {
		path    string
		fields  []string
		buttons []string
		links   []string
	}{
		{"/campaigns", nil, nil, []string{"New campaign", "xmas"}},
		{"/campaigns/new", []string{"Campaign ID", "Title", "Body", "Audience", "Send at", "Time zone", "Rate per second",
			"Deep link", "Sound", "Badge", "Priority", "TTL in seconds", "Collapse key", "APNs topic", "APNs push type", "FCM channel",
			"Use each recipient's own zone"}, []string{"Preview", "Save draft", "Add data row"}, nil},
		{"/campaign/xmas", []string{"Received", "Sent", "Failed", "Filtered", "Rate per second"},
			[]string{"Send test", "Schedule", "Cancel"}, []string{"Edit"}},
		{"/audiences", []string{"Name", "CSV file"}, []string{"Upload", "Delete seoul"}, []string{"Export seoul"}},
		{"/lists/blacklist", []string{"Search", "Kind", "Platform", "Value", "Reason", "CSV file", "Replace the whole list"},
			[]string{"Search", "Add", "Import"}, []string{"Export CSV", "Whitelist"}},
		{"/audit", []string{"Actor", "Action", "Target", "Since", "Until"}, []string{"Filter"}, []string{"xmas"}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			w := b.get(tc.path, operatorToken)
			mustStatus(t, w, http.StatusOK)
			d := parseDoc(t, w)
			for _, f := range tc.fields {
				d.field(t, f)
			}
			for _, name := range append(tc.buttons, "Sign out") {
				if !d.hasButton(name) {
					t.Errorf("no button %q; buttons %q", name, d.buttons)
				}
			}
			for _, name := range append(tc.links, nav...) {
				if !d.hasLink(name) {
					t.Errorf("no link %q; links %q", name, d.links)
				}
			}
			if d.hasLink("Users") {
				t.Error("an operator is shown the Users link")
			}
			if !strings.Contains(d.html, `href="/static/console.css"`) || strings.Contains(d.html, "http://") || strings.Contains(d.html, "https://") {
				t.Error("the page refers to another origin, or lacks its style sheet")
			}
		})
	}
	// Hidden actions are there for the script to show, but not to a
	// screen reader: a draft can't be paused.
	d := parseDoc(t, b.get("/campaign/xmas", operatorToken))
	if d.byID["campaign-status"] != "draft" || d.hasButton("Pause") || d.hasButton("Resume") || d.hasButton("Approve") || d.hasButton("Set rate") {
		t.Errorf("draft page: status %q, buttons %q", d.byID["campaign-status"], d.buttons)
	}
	d = parseDoc(t, b.get("/users", adminToken))
	if !d.hasLink("Users") || !strings.Contains(d.html, actorOf("viewer", viewerToken)) || strings.Contains(d.html, viewerToken) {
		t.Errorf("users page: links %q; it must name the tokens by actor, never show them", d.links)
	}
	mustStatus(t, b.get("/users", operatorToken), http.StatusForbidden)
	mustStatus(t, b.get("/static/console.js", viewerToken), http.StatusOK)
}

func TestConsoleViewerSeesNoActionAndIsRefused(t *testing.T) {
	logger, _ := newLogger(t)
	b := setupConsole(t, logger)
	aud := b.addAudience(t, "a", 4)
	redirectedTo(t, b.post("/campaigns/new", operatorToken, url.Values{"id": {"c1"}, "body": {"x"}, "audience": {aud.ID}, "action": {"save"}}), "/campaign/c1")
	if _, err := b.st.EnsureCampaign(context.Background(), "amqp-1", 10); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/campaigns", "/campaign/c1", "/campaign/amqp-1", "/audiences", "/lists/blacklist", "/lists/whitelist"} {
		w := b.get(path, viewerToken)
		mustStatus(t, w, http.StatusOK)
		d := parseDoc(t, w)
		for _, name := range d.buttons {
			if name != "Sign out" && name != "Apply" && name != "Search" {
				t.Errorf("%s: a viewer is shown button %q", path, name)
			}
		}
		if d.hasLink("New campaign") || d.hasLink("Audit log") || d.hasLink("Edit") {
			t.Errorf("%s: a viewer is shown links %q", path, d.links)
		}
		if _, ok := d.labels["Rate per second"]; ok {
			t.Errorf("%s: a viewer is shown the rate field", path)
		}
	}
	// The server refuses whatever a viewer forges.
	for _, path := range []string{"/campaign/c1/schedule", "/campaign/c1/cancel", "/campaign/amqp-1/pause", "/campaign/amqp-1/rate",
		"/campaigns/new", "/campaign/c1/edit", "/lists/blacklist/add", "/audiences/" + aud.ID + "/delete"} {
		w := b.post(path, viewerToken, url.Values{"confirm": {"yes"}, "rate_per_second": {"1"}, "kind": {"user"}, "value": {"u"}})
		mustStatus(t, w, http.StatusForbidden)
		if !strings.Contains(w.Body.String(), "role viewer may not do this") {
			t.Errorf("%s: 403 without the reason: %s", path, w.Body.String())
		}
	}
	mustStatus(t, b.get("/audit", viewerToken), http.StatusForbidden)
	if c, _ := b.st.Campaign(context.Background(), "amqp-1"); c.Status != dispatcher.StatusRunning {
		t.Errorf("a viewer's forged pause changed the campaign: %s", c.Status)
	}
}

func TestConsoleAudiencesUploadListDelete(t *testing.T) {
	logger, _ := newLogger(t)
	b := setupConsole(t, logger)
	csv := "platform,token,user_id\nios," + strings.Repeat("ab", 32) + ",u-1\nandroid,fcm-1,u-2\n"
	msg := redirectedTo(t, b.postFile("/audiences", operatorToken, [][2]string{{"name", "서울 고객"}}, "a.csv", csv, nil), "/audiences")
	if msg != "Imported 2 recipients (1 iOS, 1 Android) as audience 서울 고객." {
		t.Errorf("flash %q", msg)
	}
	as, _ := b.st.Audiences(context.Background())
	if len(as) != 1 || as[0].Name != "서울 고객" || as[0].CreatedBy != actorOf("operator", operatorToken) {
		t.Fatalf("audiences %+v", as)
	}
	d := parseDoc(t, b.get("/audiences", viewerToken))
	if !strings.Contains(d.html, "서울 고객") || !d.hasLink("Export 서울 고객") {
		t.Errorf("list: links %q", d.links)
	}

	// Errors next to their field; the script gets them in JSON.
	for _, tc := range []struct {
		name, file, filename, field, want string
	}{
		{"", csv, "a.csv", "name", "required"},
		{"x", "platform,token,user_id\nios,nope,u\n", "a.csv", "csv", "line 2"},
		{"x", "", "", "csv", "choose a file"},
	} {
		w := b.postFile("/audiences", operatorToken, [][2]string{{"name", tc.name}}, tc.filename, tc.file, nil)
		mustStatus(t, w, http.StatusBadRequest)
		if msg := parseDoc(t, w).fieldError(t, tc.field); !strings.Contains(msg, tc.want) {
			t.Errorf("%q: message next to %s %q, want %q", tc.file, tc.field, msg, tc.want)
		}
		w = b.postFile("/audiences", operatorToken, [][2]string{{"name", tc.name}}, tc.filename, tc.file, map[string]string{"Accept": "application/json"})
		var ans uploadAnswer
		if err := json.Unmarshal(w.Body.Bytes(), &ans); w.Code != 400 || err != nil || ans.Field != tc.field || !strings.Contains(ans.Error, tc.want) {
			t.Errorf("%q for the script: %d %s", tc.file, w.Code, w.Body.String())
		}
	}
	w := b.postFile("/audiences", operatorToken, [][2]string{{"name", "js"}}, "b.csv", csv, map[string]string{"Accept": "application/json"})
	if w.Code != http.StatusCreated || !strings.Contains(w.Body.String(), `"location":"/audiences"`) {
		t.Errorf("upload for the script: %d %s", w.Code, w.Body.String())
	}

	// Delete asks first; an audience a campaign needs is kept.
	id := as[0].ID
	redirectedTo(t, b.post("/campaigns/new", operatorToken, url.Values{"id": {"uses"}, "body": {"x"}, "audience": {id}, "action": {"save"}}), "/campaign/uses")
	w = b.post("/audiences/"+id+"/delete", operatorToken, nil)
	mustStatus(t, w, http.StatusOK)
	if !parseDoc(t, w).hasButton("Delete audience") {
		t.Error("no confirmation")
	}
	w = b.post("/audiences/"+id+"/delete", operatorToken, url.Values{"confirm": {"yes"}})
	mustStatus(t, w, http.StatusConflict)
	redirectedTo(t, b.post("/campaign/uses/cancel", operatorToken, url.Values{"confirm": {"yes"}}), "/campaign/uses")
	redirectedTo(t, b.post("/audiences/"+id+"/delete", operatorToken, url.Values{"confirm": {"yes"}}), "/audiences")
	if _, err := b.st.Audience(context.Background(), id); err == nil {
		t.Error("audience not deleted")
	}
}

func TestConsoleListsSearchAddRemoveImport(t *testing.T) {
	logger, _ := newLogger(t)
	b := setupConsole(t, logger)
	tok := strings.Repeat("cd", 32)
	redirectedTo(t, b.post("/lists/whitelist/add", operatorToken, url.Values{"kind": {"token"}, "platform": {"ios"}, "value": {tok}, "reason": {"QA 폰"}}), "/lists/whitelist")
	// The form always sends a platform; a user entry has none.
	redirectedTo(t, b.post("/lists/whitelist/add", operatorToken, url.Values{"kind": {"user"}, "platform": {"ios"}, "value": {"u-42"}}), "/lists/whitelist")
	w := b.post("/lists/whitelist/add", operatorToken, url.Values{"kind": {"token"}, "platform": {""}, "value": {"x"}})
	mustStatus(t, w, http.StatusBadRequest)
	if msg := parseDoc(t, w).fieldError(t, "value"); !strings.Contains(msg, "needs ios or android") {
		t.Errorf("bad entry: %q", msg)
	}
	d := parseDoc(t, b.get("/lists/whitelist?q=u-4", viewerToken))
	if !strings.Contains(d.html, "u-42") || strings.Contains(d.html, tok) {
		t.Errorf("search u-4 finds the wrong entries")
	}
	d = parseDoc(t, b.get("/lists/whitelist", operatorToken))
	if !strings.Contains(d.html, "QA 폰") || !d.hasButton("Remove u-42") || !strings.Contains(d.html, "<strong>2</strong> entries") {
		t.Errorf("whitelist page: buttons %q", d.buttons)
	}
	redirectedTo(t, b.post("/lists/whitelist/remove", operatorToken, url.Values{"kind": {"user"}, "value": {"u-42"}, "q": {"u"}}), "/lists/whitelist?q=u")
	if n, _ := b.st.CountListEntries(context.Background(), lists.Whitelist); n != 1 {
		t.Errorf("%d entries after the removal", n)
	}

	csv := "kind,platform,value,reason\nuser,,u-1,opt-out\nuser,,u-2,opt-out\n"
	if msg := redirectedTo(t, b.postFile("/lists/blacklist/import", operatorToken, nil, "b.csv", csv, nil), "/lists/blacklist"); msg != "Imported 2 entries." {
		t.Errorf("import flash %q", msg)
	}
	w = b.postFile("/lists/blacklist/import", operatorToken, [][2]string{{"replace", "on"}}, "b.csv", "kind,platform,value,reason\nuser,,u-9,x\nbad,,v,x\n", nil)
	mustStatus(t, w, http.StatusBadRequest)
	if msg := parseDoc(t, w).fieldError(t, "csv"); !strings.Contains(msg, "line 3") {
		t.Errorf("bad file: %q", msg)
	}
	if msg := redirectedTo(t, b.postFile("/lists/blacklist/import", operatorToken, [][2]string{{"replace", "on"}}, "b.csv", "kind,platform,value,reason\nuser,,u-9,x\n", nil), "/lists/blacklist"); msg != "Replaced the blacklist with 1 entries." {
		t.Errorf("replace flash %q", msg)
	}
	recs, _ := b.st.AuditEntries(context.Background(), store.AuditQuery{Action: "list.import", Limit: 10})
	if len(recs) != 2 || recs[0].Actor != actorOf("operator", operatorToken) {
		t.Errorf("imports audited: %+v", recs)
	}
	mustStatus(t, b.get("/lists/greylist", viewerToken), http.StatusNotFound)
}

func TestConsoleAuditFiltersAndPages(t *testing.T) {
	logger, _ := newLogger(t)
	b := setupConsole(t, logger)
	ctx := context.Background()
	for i := range auditPageSize + 5 {
		b.clock.Add(time.Minute)
		if err := b.st.Audit(ctx, store.AuditEntry{Actor: "operator:aa", Action: "list.add", Target: fmt.Sprintf("t-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	d := parseDoc(t, b.get("/audit", operatorToken))
	if n := strings.Count(d.html, "<td>list.add</td>"); n != auditPageSize || !d.hasLink("Older entries") {
		t.Fatalf("first page: %d rows, links %q", n, d.links)
	}
	older := regexp.MustCompile(`href="(/audit\?before=\d+)"`).FindStringSubmatch(d.html)
	if older == nil {
		t.Fatal("no link to older entries")
	}
	d = parseDoc(t, b.get(html.UnescapeString(older[1]), operatorToken))
	if n := strings.Count(d.html, "<td>list.add</td>"); n != 5 || d.hasLink("Older entries") {
		t.Errorf("second page: %d rows", n)
	}
	// since is a wall time in the operator's zone: t0 + 3 min is 12:07
	// in Seoul.
	d = parseDoc(t, b.get("/audit?since=2030-01-02T12:07&until=2030-01-02T12:09", operatorToken))
	if n := strings.Count(d.html, "<td>list.add</td>"); n != 2 || !strings.Contains(d.html, "2030-01-02 12:07:05 KST") {
		t.Errorf("since/until in Seoul: %d rows", n)
	}
	r := httptest.NewRequest("GET", "/audit?since=2030-01-02T03:07&until=2030-01-02T03:09", nil)
	r.AddCookie(&http.Cookie{Name: zoneCookie, Value: "UTC"})
	if d := parseDoc(t, b.serve(r, operatorToken)); strings.Count(d.html, "<td>list.add</td>") != 2 || !strings.Contains(d.html, "2030-01-02 03:07:05 UTC") {
		t.Error("since/until in UTC")
	}
	w := b.get("/audit?since=yesterday", operatorToken)
	mustStatus(t, w, http.StatusBadRequest)
	if msg := parseDoc(t, w).fieldError(t, "since"); !strings.Contains(msg, "Asia/Seoul") {
		t.Errorf("since error %q", msg)
	}
	d = parseDoc(t, b.get("/audit?target=t-3", operatorToken))
	if n := strings.Count(d.html, "<td>list.add</td>"); n != 1 {
		t.Errorf("target filter: %d rows", n)
	}
}

// postFile posts a multipart form: fields in order, then file as the
// part "csv".
func (b *consoleBundle) postFile(path, token string, fields [][2]string, filename, file string, header map[string]string) *httptest.ResponseRecorder {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, f := range fields {
		_ = mw.WriteField(f[0], f[1])
	}
	fw, _ := mw.CreateFormFile("csv", filename)
	_, _ = io.WriteString(fw, file)
	_ = mw.Close()
	r := httptest.NewRequest("POST", path, &body)
	r.Header.Set("Content-Type", mw.FormDataContentType())
	for k, v := range header {
		r.Header.Set(k, v)
	}
	return b.serve(r, token)
}

// field returns the id of the control labelled name, failing the test
// if there is none.
func (d *doc) field(t *testing.T, name string) string {
	t.Helper()
	id, ok := d.labels[name]
	if !ok || id == "" {
		t.Fatalf("no label %q; labels %v", name, d.labels)
	}
	if _, ok := d.byID[id]; !ok {
		t.Fatalf("label %q is for #%s, which is not there", name, id)
	}
	return id
}
