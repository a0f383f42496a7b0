package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/push/apns"
	"github.com/pushd/pushd/push/fcm"
	"github.com/pushd/pushd/scheduler"
	"github.com/pushd/pushd/store"
)

// consoleControl is a Control over the store's campaigns, as the
// dispatcher's is without campaigns in flight on this instance.
type consoleControl struct{ st *store.Store }

func infoOf(rec dispatcher.CampaignRecord) dispatcher.CampaignInfo {
	info := dispatcher.CampaignInfo{ID: rec.ID, Status: rec.Status, RatePerSecond: rec.Rate(), RateSource: "none",
		Counters: rec.Counters, CreatedAt: rec.CreatedAt, UpdatedAt: rec.UpdatedAt}
	switch {
	case rec.RateOverride != nil:
		info.RateSource = "operator"
	case rec.MessageRate > 0:
		info.RateSource = "message"
	}
	return info
}

func (c consoleControl) Campaigns(ctx context.Context) ([]dispatcher.CampaignInfo, error) {
	recs, err := c.st.Campaigns(ctx)
	out := make([]dispatcher.CampaignInfo, len(recs))
	for i, r := range recs {
		out[i] = infoOf(r)
	}
	return out, err
}

func (c consoleControl) Campaign(ctx context.Context, id string) (dispatcher.CampaignInfo, error) {
	rec, err := c.st.Campaign(ctx, id)
	return infoOf(rec), err
}

func (c consoleControl) SetCampaignRate(ctx context.Context, id string, perSecond *float64) (dispatcher.CampaignInfo, error) {
	_, after, err := c.st.SetCampaignRate(ctx, id, perSecond)
	return infoOf(after), err
}

func (c consoleControl) status(ctx context.Context, id string, to dispatcher.Status, from ...dispatcher.Status) (dispatcher.CampaignInfo, error) {
	_, after, err := c.st.SetCampaignStatus(ctx, id, to, from...)
	return infoOf(after), err
}

func (c consoleControl) PauseCampaign(ctx context.Context, id string) (dispatcher.CampaignInfo, error) {
	return c.status(ctx, id, dispatcher.StatusPaused, dispatcher.StatusRunning, dispatcher.StatusPaused)
}

func (c consoleControl) ResumeCampaign(ctx context.Context, id string) (dispatcher.CampaignInfo, error) {
	return c.status(ctx, id, dispatcher.StatusRunning, dispatcher.StatusPaused, dispatcher.StatusRunning)
}

func (c consoleControl) CancelCampaign(ctx context.Context, id string) (dispatcher.CampaignInfo, error) {
	return c.status(ctx, id, dispatcher.StatusCancelled, dispatcher.StatusRunning, dispatcher.StatusPaused, dispatcher.StatusFinished, dispatcher.StatusCancelled)
}

func (consoleControl) Limits() []dispatcher.LimitInfo { return nil }

func (consoleControl) SetLimit(context.Context, string, *dispatcher.LimitSetting) ([]dispatcher.LimitInfo, error) {
	return nil, fmt.Errorf("limits: %w", dispatcher.ErrNotFound)
}

// storeAudiences adapts the store's audiences, as cmd/pushd does.
type storeAudiences struct{ st *store.Store }

func (a storeAudiences) ImportAudience(ctx context.Context, name, createdBy string, r io.Reader) (Audience, error) {
	au, err := a.st.ImportAudience(ctx, name, createdBy, r)
	return Audience(au), err
}

func (a storeAudiences) Audiences(ctx context.Context) ([]Audience, error) {
	as, err := a.st.Audiences(ctx)
	out := make([]Audience, len(as))
	for i, au := range as {
		out[i] = Audience(au)
	}
	return out, err
}

func (a storeAudiences) Audience(ctx context.Context, id string) (Audience, error) {
	au, err := a.st.Audience(ctx, id)
	return Audience(au), err
}

func (a storeAudiences) ExportAudience(ctx context.Context, id string, w io.Writer) error {
	return a.st.ExportAudience(ctx, id, w)
}

func (a storeAudiences) DeleteAudience(ctx context.Context, id, actor string) error {
	return a.st.DeleteAudience(ctx, id, actor)
}

// storeAuditor writes the admin module's audit entries to the store.
type storeAuditor struct{ st *store.Store }

func (a storeAuditor) Audit(ctx context.Context, e AuditEntry) error {
	return a.st.Audit(ctx, store.AuditEntry{At: e.At, Actor: e.Actor, Action: e.Action, Target: e.Target, Before: e.Before, After: e.After})
}

// consoleBundle is a Server with the real store behind every part of the
// console.
type consoleBundle struct {
	srv     *Server
	handler http.Handler
	st      *store.Store
	clock   *clock
	tests   *fakeTests
}

// setupConsole serves the console from a store in a temporary file, with
// the clock at t0 (the store's too) and Seoul as admin.time_zone.
func setupConsole(tb testing.TB, logger *slog.Logger, adjust ...func(*Config, *store.Store)) *consoleBundle {
	tb.Helper()
	st, err := store.Open(context.Background(), filepath.Join(tb.TempDir(), "pushd.db"), nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	b := &consoleBundle{st: st, clock: &clock{t: t0}, tests: &fakeTests{}}
	st.SetClock(b.clock.Now)
	tokens := filepath.Join(tb.TempDir(), "admin-tokens")
	if err := os.WriteFile(tokens, []byte(testTokensFile), 0o600); err != nil {
		tb.Fatal(err)
	}
	cfg := Config{
		TokensFile: tokens, Now: b.clock.Now, TimeZone: "Asia/Seoul",
		Lists: st, Audiences: storeAudiences{st}, Campaigns: st, Tests: b.tests, AuditLog: storeAudit{st},
	}
	for _, f := range adjust {
		f(&cfg, st)
	}
	srv, err := New(cfg, consoleControl{st}, storeAuditor{st}, logger)
	if err != nil {
		tb.Fatal(err)
	}
	b.srv, b.handler = srv, srv.Handler()
	return b
}

// serve sends r with token's bearer header.
func (b *consoleBundle) serve(r *http.Request, token string) *httptest.ResponseRecorder {
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	b.handler.ServeHTTP(w, r)
	return w
}

func (b *consoleBundle) get(path, token string) *httptest.ResponseRecorder {
	return b.serve(httptest.NewRequest("GET", path, nil), token)
}

func (b *consoleBundle) post(path, token string, form url.Values) *httptest.ResponseRecorder {
	r := httptest.NewRequest("POST", path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.serve(r, token)
}

// mustStatus fails the test unless w has status.
func mustStatus(t *testing.T, w *httptest.ResponseRecorder, status int) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d; body:\n%s", w.Code, status, w.Body.String())
	}
}

// redirectedTo checks a Post/Redirect/Get answer and returns the flash
// message it carries.
func redirectedTo(t *testing.T, w *httptest.ResponseRecorder, to string) string {
	t.Helper()
	mustStatus(t, w, http.StatusSeeOther)
	if got := w.Header().Get("Location"); got != to {
		t.Errorf("redirected to %q, want %q", got, to)
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == flashCookie {
			msg, _ := url.QueryUnescape(c.Value)
			return msg
		}
	}
	return ""
}

// doc is a parsed page and what a screen reader would find in it.
type doc struct {
	// labels maps each label's text to the id of its control.
	labels map[string]string
	// buttons and links are the accessible names of the visible ones.
	buttons, links []string
	// byID is the text of each element with an id.
	byID  map[string]string
	attrs map[string]map[string]string
	html  string
}

func parseDoc(t *testing.T, w *httptest.ResponseRecorder) *doc {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	root, err := html.Parse(strings.NewReader(w.Body.String()))
	if err != nil {
		t.Fatal(err)
	}
	d := &doc{labels: map[string]string{}, byID: map[string]string{}, attrs: map[string]map[string]string{}, html: w.Body.String()}
	var walk func(n *html.Node, hidden bool)
	walk = func(n *html.Node, hidden bool) {
		if n.Type == html.ElementNode {
			a := map[string]string{}
			for _, at := range n.Attr {
				a[at.Key] = at.Val
			}
			_, h := a["hidden"]
			hidden = hidden || h || a["aria-hidden"] == "true"
			name := a["aria-label"]
			if name == "" {
				name = textOf(n)
			}
			if id := a["id"]; id != "" {
				d.byID[id] = textOf(n)
				d.attrs[id] = a
			}
			switch n.Data {
			case "label":
				d.labels[textOf(n)] = a["for"]
			case "button":
				if !hidden {
					d.buttons = append(d.buttons, name)
				}
			case "a":
				if !hidden {
					d.links = append(d.links, name)
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, hidden)
		}
	}
	walk(root, false)
	return d
}

func textOf(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return strings.Join(strings.Fields(b.String()), " ")
}

func (d *doc) hasButton(name string) bool { return slices.Contains(d.buttons, name) }
func (d *doc) hasLink(name string) bool   { return slices.Contains(d.links, name) }

// fieldError returns the message next to field id ("" when none), and
// checks that the field points at it.
func (d *doc) fieldError(t *testing.T, id string) string {
	t.Helper()
	msg, ok := d.byID[id+"-error"]
	if !ok {
		return ""
	}
	a := d.attrs[id]
	if a["aria-invalid"] != "true" || !strings.Contains(a["aria-describedby"], id+"-error") {
		t.Errorf("field #%s has an error but aria-invalid %q, aria-describedby %q", id, a["aria-invalid"], a["aria-describedby"])
	}
	return msg
}

// addAudience imports an audience of n recipients (half iOS) named name.
func (b *consoleBundle) addAudience(t testing.TB, name string, n int) Audience {
	t.Helper()
	var csv strings.Builder
	csv.WriteString("platform,token,user_id\n")
	for i := range n {
		if i%2 == 0 {
			fmt.Fprintf(&csv, "ios,%064x,u-%d\n", i+1, i)
		} else {
			fmt.Fprintf(&csv, "android,fcm-%s-%d,u-%d\n", name, i, i)
		}
	}
	a, err := b.st.ImportAudience(context.Background(), name, "test", strings.NewReader(csv.String()))
	if err != nil {
		t.Fatal(err)
	}
	return Audience(a)
}

func TestConsoleComposePreviewCountsBytesWithTheRealRenderers(t *testing.T) {
	logger, _ := newLogger(t)
	b := setupConsole(t, logger)
	aud := b.addAudience(t, "a", 4)
	form := url.Values{
		"id": {"seoul-sale"}, "title": {"세일 🎉"}, "body": {"오늘만 50% 할인 👋🏽"}, "audience": {aud.ID},
		"data_key": {"coupon", ""}, "data_value": {"쿠폰-1", ""}, "deeplink": {"app://sale"},
		"apns_topic": {"com.example.app"}, "fcm_channel": {"promo"}, "badge": {"1"}, "send_at": {"2030-12-24T09:00"},
		"action": {"preview"},
	}
	w := b.post("/campaigns/new", operatorToken, form)
	mustStatus(t, w, http.StatusOK)
	d := parseDoc(t, w)

	n := dispatcher.Notification{Title: "세일 🎉", Body: "오늘만 50% 할인 👋🏽", Badge: new(int),
		Data: map[string]json.RawMessage{"coupon": json.RawMessage(`"쿠폰-1"`), "deeplink": json.RawMessage(`"app://sale"`)},
		APNs: dispatcher.APNsOptions{Topic: "com.example.app"}, FCM: dispatcher.FCMOptions{ChannelID: "promo"}}
	*n.Badge = 1
	ios, err := apns.RenderPayload(&n)
	if err != nil {
		t.Fatal(err)
	}
	android, err := fcm.RenderMessage(&n)
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]int{"apns-size": len(ios), "fcm-size": len(android)} {
		if got := d.byID[id]; !strings.Contains(got, fmt.Sprintf("%d of 4096 bytes", want)) {
			t.Errorf("#%s = %q, want %d of 4096 bytes", id, got, want)
		}
	}
	if !strings.Contains(d.html, "오늘만 50% 할인 👋🏽") || !strings.Contains(d.html, "쿠폰-1") {
		t.Error("the preview lacks the Korean and emoji text")
	}
	// The form comes back as it was sent, with two blank data rows.
	if d.attrs["title"]["value"] != "세일 🎉" || d.attrs["deeplink"]["value"] != "app://sale" || strings.Count(d.html, `name="data_key"`) != 3 {
		t.Errorf("form not kept: title %q, deep link %q", d.attrs["title"]["value"], d.attrs["deeplink"]["value"])
	}

	form.Set("action", "save")
	if msg := redirectedTo(t, b.post("/campaigns/new", operatorToken, form), "/campaign/seoul-sale"); msg != "Draft saved." {
		t.Errorf("flash %q", msg)
	}
	def, err := b.st.CampaignDef(context.Background(), "seoul-sale")
	if err != nil {
		t.Fatal(err)
	}
	var got dispatcher.Notification
	if err := json.Unmarshal(def.Notification, &got); err != nil {
		t.Fatal(err)
	}
	if gotIOS, _ := apns.RenderPayload(&got); !bytes.Equal(gotIOS, ios) || def.TimeZone != "Asia/Seoul" || def.SendAt != "2030-12-24T09:00" || def.State != scheduler.DefDraft {
		t.Errorf("stored %+v with payload %s, want %s", def, gotIOS, ios)
	}

	// The edit form shows what was saved; saving it changes nothing.
	d = parseDoc(t, b.get("/campaign/seoul-sale/edit", operatorToken))
	if d.attrs["id"]["value"] != "seoul-sale" || d.attrs["deeplink"]["value"] != "app://sale" || d.byID["body"] != "오늘만 50% 할인 👋🏽" {
		t.Errorf("edit form: id %q, deep link %q, body %q", d.attrs["id"]["value"], d.attrs["deeplink"]["value"], d.byID["body"])
	}
	if !strings.Contains(d.html, `value="쿠폰-1"`) || !d.hasButton("Save draft") {
		t.Errorf("edit form lacks the data row or Save draft: %q", d.buttons)
	}
	form.Set("title", "세일 🎉🎉")
	form.Del("id")
	redirectedTo(t, b.post("/campaign/seoul-sale/edit", operatorToken, form), "/campaign/seoul-sale")
	if def, _ := b.st.CampaignDef(context.Background(), "seoul-sale"); !strings.Contains(string(def.Notification), "세일 🎉🎉") {
		t.Errorf("edit not saved: %s", def.Notification)
	}
}

func TestConsoleComposeShowsEachErrorNextToItsField(t *testing.T) {
	logger, _ := newLogger(t)
	b := setupConsole(t, logger)
	aud := b.addAudience(t, "a", 4)
	redirectedTo(t, b.post("/campaigns/new", operatorToken, url.Values{"id": {"taken"}, "body": {"x"}, "audience": {aud.ID}, "action": {"save"}}), "/campaign/taken")
	good := func(kv ...string) url.Values {
		v := url.Values{"title": {"t"}, "body": {"b"}, "audience": {aud.ID}, "action": {"save"}}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	for _, tc := range []struct {
		name   string
		form   url.Values
		status int
		field  string
		want   string
	}{
		{"zone", good("time_zone", "Mars/Olympus"), 400, "time_zone", "Mars/Olympus"},
		{"no audience", good("audience", ""), 400, "audience", "required"},
		{"unknown audience", good("audience", "nope"), 400, "audience", "not found"},
		{"badge", good("badge", "many"), 400, "badge", "whole number"},
		{"ttl", good("ttl", "-1"), 400, "ttl", "whole number"},
		{"rate", good("rate_per_second", "-5"), 400, "rate_per_second", "rate_per_second"},
		{"send at", good("send_at", "tomorrow"), 400, "send_at", "send_at"},
		{"too big", good("body", strings.Repeat("가", 1400)), 400, "body", "over the limit of 4096"},
		{"taken id", good("id", "taken"), 409, "id", "taken"},
		{"test id", good("id", "x.test-1"), 400, "id", ".test-"},
		{"empty", good("title", "", "body", ""), 400, "body", "empty"},
		{"deep link twice", good("deeplink", "app://a", "data_key", "deeplink", "data_value", "app://b"), 400, "deeplink", "deeplink"},
		{"data value without key", good("data_key", "", "data_value", "v"), 400, "data", "no key"},
		{"preview too big", good("body", strings.Repeat("😀", 1100), "action", "preview"), 400, "body", "over the limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := b.post("/campaigns/new", operatorToken, tc.form)
			mustStatus(t, w, tc.status)
			d := parseDoc(t, w)
			if msg := d.fieldError(t, tc.field); !strings.Contains(msg, tc.want) {
				t.Errorf("message next to %s: %q, want it to say %q", tc.field, msg, tc.want)
			}
			if d.attrs["title"]["value"] != tc.form.Get("title") {
				t.Errorf("the form lost its title: %q", d.attrs["title"]["value"])
			}
		})
	}
	defs, _ := b.st.CampaignDefs(context.Background())
	if len(defs) != 1 {
		t.Errorf("%d campaigns after refused forms, want 1", len(defs))
	}
	// Add data row keeps what was typed, with one more row.
	w := b.post("/campaigns/new", operatorToken, good("action", "addrow", "data_key", "k", "data_value", "v"))
	mustStatus(t, w, http.StatusOK)
	if d := parseDoc(t, w); strings.Count(d.html, `name="data_key"`) != 4 || !strings.Contains(d.html, `value="k"`) {
		t.Errorf("add data row: %d rows", strings.Count(d.html, `name="data_key"`))
	}
}

func TestConsoleCampaignButtons(t *testing.T) {
	logger, _ := newLogger(t)
	b := setupConsole(t, logger)
	aud := b.addAudience(t, "a", 4)
	redirectedTo(t, b.post("/campaigns/new", operatorToken, url.Values{"id": {"c1"}, "body": {"x"}, "audience": {aud.ID},
		"send_at": {"2030-12-24T09:00"}, "action": {"save"}}), "/campaign/c1")

	if msg := redirectedTo(t, b.post("/campaign/c1/test", operatorToken, nil), "/campaign/c1"); msg != "Test sent to 3 whitelisted devices, as campaign c1.test-1." {
		t.Errorf("test flash %q", msg)
	}
	if len(b.tests.calls) != 1 || !strings.HasPrefix(b.tests.calls[0], "c1.test-1 "+aud.ID) {
		t.Errorf("test sends %q", b.tests.calls)
	}
	msg := redirectedTo(t, b.post("/campaign/c1/schedule", operatorToken, nil), "/campaign/c1")
	if msg != "Scheduled for 2030-12-24 09:00:00 KST." {
		t.Errorf("schedule flash %q", msg)
	}
	// The page after the redirect shows the flash once, and the buttons of
	// a scheduled campaign.
	r := httptest.NewRequest("GET", "/campaign/c1", nil)
	r.AddCookie(&http.Cookie{Name: flashCookie, Value: url.QueryEscape(msg)})
	w := b.serve(r, operatorToken)
	d := parseDoc(t, w)
	if !strings.Contains(d.html, "Scheduled for 2030-12-24 09:00:00 KST.") || d.byID["campaign-status"] != "scheduled" {
		t.Errorf("after schedule: status %q, flash missing?", d.byID["campaign-status"])
	}
	if c := w.Result().Cookies(); len(c) != 1 || c[0].Name != flashCookie || c[0].MaxAge >= 0 {
		t.Errorf("the flash cookie is not cleared: %v", c)
	}
	if d.hasButton("Schedule") || d.hasButton("Send test") || !d.hasButton("Cancel") || !d.hasLink("Edit") {
		t.Errorf("scheduled campaign's buttons %q, links %q", d.buttons, d.links)
	}
	// A refused action shows the page again with why.
	w = b.post("/campaign/c1/schedule", operatorToken, nil)
	mustStatus(t, w, http.StatusConflict)
	if d := parseDoc(t, w); !strings.Contains(d.html, "only a draft or missed campaign can be scheduled") {
		t.Errorf("conflict not shown:\n%s", d.html)
	}

	// Cancel asks first; the confirmation cancels.
	w = b.post("/campaign/c1/cancel", operatorToken, nil)
	mustStatus(t, w, http.StatusOK)
	d = parseDoc(t, w)
	if !d.hasButton("Cancel campaign") || !d.hasLink("Keep it") {
		t.Errorf("confirmation: buttons %q links %q", d.buttons, d.links)
	}
	if def, _ := b.st.CampaignDef(context.Background(), "c1"); def.State != scheduler.DefScheduled {
		t.Fatalf("cancelled before the confirmation: %s", def.State)
	}
	redirectedTo(t, b.post("/campaign/c1/cancel", operatorToken, url.Values{"confirm": {"yes"}}), "/campaign/c1")
	if def, _ := b.st.CampaignDef(context.Background(), "c1"); def.State != scheduler.DefCancelled {
		t.Errorf("after the confirmation: %s", def.State)
	}
	d = parseDoc(t, b.get("/campaign/c1", operatorToken))
	for _, name := range d.buttons {
		if name != "Sign out" && name != "Apply" {
			t.Errorf("a cancelled campaign shows button %q", name)
		}
	}
	// Its own audit trail, newest first.
	audit := regexp.MustCompile(`<td>(campaign\.[a-z]+)</td>`).FindAllStringSubmatch(d.html, -1)
	var actions []string
	for _, m := range audit {
		actions = append(actions, m[1])
	}
	if want := []string{"campaign.cancel", "campaign.schedule", "campaign.test", "campaign.create"}; !slices.Equal(actions, want) {
		t.Errorf("audit trail %v, want %v", actions, want)
	}

	// A campaign from AMQP: pause, resume, rate.
	if _, err := b.st.EnsureCampaign(context.Background(), "amqp-1", 50); err != nil {
		t.Fatal(err)
	}
	redirectedTo(t, b.post("/campaign/amqp-1/pause", operatorToken, nil), "/campaign/amqp-1")
	d = parseDoc(t, b.get("/campaign/amqp-1", operatorToken))
	if d.byID["campaign-status"] != "paused" || !d.hasButton("Resume") || d.hasButton("Pause") || !d.hasButton("Set rate") {
		t.Errorf("paused: status %q buttons %q", d.byID["campaign-status"], d.buttons)
	}
	redirectedTo(t, b.post("/campaign/amqp-1/resume", operatorToken, nil), "/campaign/amqp-1")
	w = b.post("/campaign/amqp-1/rate", operatorToken, url.Values{"rate_per_second": {"fast"}})
	mustStatus(t, w, http.StatusBadRequest)
	if msg := parseDoc(t, w).fieldError(t, "rate_per_second"); !strings.Contains(msg, "a number, 0 or more") {
		t.Errorf("rate error %q", msg)
	}
	if msg := redirectedTo(t, b.post("/campaign/amqp-1/rate", operatorToken, url.Values{"rate_per_second": {"12.5"}}), "/campaign/amqp-1"); msg != "Rate set to 12.5 per second." {
		t.Errorf("rate flash %q", msg)
	}
	if c, _ := b.st.Campaign(context.Background(), "amqp-1"); c.Status != dispatcher.StatusRunning || c.Rate() != 12.5 {
		t.Errorf("after resume and rate: %+v", c)
	}
	redirectedTo(t, b.post("/campaign/amqp-1/rate", operatorToken, url.Values{"rate_per_second": {""}}), "/campaign/amqp-1")
	if c, _ := b.st.Campaign(context.Background(), "amqp-1"); c.RateOverride != nil {
		t.Errorf("an empty rate did not clear the operator's: %+v", c)
	}
	mustStatus(t, b.get("/campaign/nope", operatorToken), http.StatusNotFound)
	mustStatus(t, b.post("/campaign/nope/pause", operatorToken, nil), http.StatusNotFound)
}

func TestConsoleProgressIsLiveWithRateAndETA(t *testing.T) {
	logger, _ := newLogger(t)
	b := setupConsole(t, logger)
	ctx := context.Background()
	if _, err := b.st.EnsureCampaign(ctx, "live", 0); err != nil {
		t.Fatal(err)
	}
	add := func(c dispatcher.Counters) {
		t.Helper()
		if err := b.st.AddCampaignCounters(ctx, map[string]dispatcher.Counters{"live": c}); err != nil {
			t.Fatal(err)
		}
	}
	progress := func() progressView {
		t.Helper()
		w := b.get("/campaign/live/progress", viewerToken)
		mustStatus(t, w, http.StatusOK)
		var p progressView
		if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	add(dispatcher.Counters{Received: 1000})
	p := progress()
	if p.Status != "running" || p.Text["sends"] != "—" || p.Text["received"] != "1000" || p.Actions != nil {
		t.Errorf("first poll by a viewer: %+v", p)
	}
	for range 3 {
		b.clock.Add(time.Second)
		add(dispatcher.Counters{Sent: 90, Filtered: 10})
		p = progress()
	}
	if p.Text["sends"] != "90/s" || p.Text["eta"] != "7s at the current rate" || p.Done != 300 || p.Total != 1000 || p.Text["sent"] != "270" {
		t.Errorf("after 3 s at 100/s: %+v", p)
	}
	if n := len(strings.Fields(p.Chart)); n != 3 {
		t.Errorf("chart %q: %d points, want 3", p.Chart, n)
	}
	if _, _, err := b.st.SetCampaignStatus(ctx, "live", dispatcher.StatusPaused); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		b.clock.Add(time.Second)
		p = progress()
	}
	if p.Text["sends"] != "0/s" || p.Text["eta"] != "paused" || p.Status != "paused" {
		t.Errorf("paused 4 s: %+v", p)
	}
	w := b.get("/campaign/live/progress", operatorToken)
	if !strings.Contains(w.Body.String(), `"actions":["cancel","rate","resume"]`) {
		t.Errorf("an operator's actions on a paused campaign: %s", w.Body.String())
	}
	// The page shows the same, before its script polls.
	d := parseDoc(t, b.get("/campaign/live", operatorToken))
	if d.byID["c-sent"] != "270" || d.byID["campaign-status"] != "paused" || d.byID["sends-per-second"] != "0/s" {
		t.Errorf("page: sent %q status %q sends %q", d.byID["c-sent"], d.byID["campaign-status"], d.byID["sends-per-second"])
	}
	if w := b.get("/campaign/nope/progress", viewerToken); w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), `"error"`) {
		t.Errorf("progress of an unknown campaign: %d %s", w.Code, w.Body.String())
	}
}

func TestConsoleZoneSelector(t *testing.T) {
	logger, _ := newLogger(t)
	b := setupConsole(t, logger)
	if _, err := b.st.EnsureCampaign(context.Background(), "z", 0); err != nil {
		t.Fatal(err)
	}
	d := parseDoc(t, b.get("/campaigns", viewerToken))
	if !strings.Contains(d.html, "2030-01-02 12:04:05 KST") || !strings.Contains(d.html, "Times are shown in Asia/Seoul.") {
		t.Error("not in admin.time_zone by default")
	}
	w := b.post("/console/zone", viewerToken, url.Values{"zone": {"America/New_York"}, "back": {"/campaigns?page=1"}})
	mustStatus(t, w, http.StatusSeeOther)
	if w.Header().Get("Location") != "/campaigns?page=1" {
		t.Errorf("back to %q", w.Header().Get("Location"))
	}
	c := w.Result().Cookies()
	if len(c) != 1 || c[0].Name != zoneCookie || !c[0].HttpOnly || c[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookies %v", c)
	}
	r := httptest.NewRequest("GET", "/campaigns", nil)
	r.AddCookie(c[0])
	if d := parseDoc(t, b.serve(r, viewerToken)); !strings.Contains(d.html, "2030-01-01 22:04:05 EST") || !strings.Contains(d.html, "Times are shown in America/New_York.") {
		t.Error("not in the chosen zone")
	}
	mustStatus(t, b.post("/console/zone", viewerToken, url.Values{"zone": {"Mars/Olympus"}}), http.StatusBadRequest)
	// A redirect never leaves the console.
	w = b.post("/console/zone", viewerToken, url.Values{"zone": {"UTC"}, "back": {"//evil.example/x"}})
	if w.Header().Get("Location") != "/campaigns" {
		t.Errorf("back to %q", w.Header().Get("Location"))
	}
}

func TestConsoleCampaignsListPages(t *testing.T) {
	logger, _ := newLogger(t)
	b := setupConsole(t, logger)
	for i := range campaignsPerPage + 3 {
		b.clock.Add(time.Second)
		if _, err := b.st.EnsureCampaign(context.Background(), fmt.Sprintf("c-%03d", i), 5); err != nil {
			t.Fatal(err)
		}
	}
	d := parseDoc(t, b.get("/campaigns", viewerToken))
	if n := strings.Count(d.html, `href="/campaign/c-`); n != campaignsPerPage || !d.hasLink("Older campaigns") || !d.hasLink("c-102") || d.hasLink("c-000") {
		t.Errorf("page 1: %d campaigns", n)
	}
	d = parseDoc(t, b.get("/campaigns?page=2", viewerToken))
	if n := strings.Count(d.html, `href="/campaign/c-`); n != 3 || !d.hasLink("Newer campaigns") || !d.hasLink("c-000") {
		t.Errorf("page 2: %d campaigns", n)
	}
	mustStatus(t, b.get("/campaigns?page=3", viewerToken), http.StatusNotFound)
	if !strings.Contains(d.html, "5/s") {
		t.Error("no rate")
	}
}

func TestRateSampler(t *testing.T) {
	c := &clock{t: t0}
	rs := newRateSampler(c.Now)
	if r := rs.observe("a", 0, 0); r.Known {
		t.Errorf("one sample: %+v", r)
	}
	// 200 ms later: too close to tell, and not kept.
	c.Add(200 * time.Millisecond)
	if r := rs.observe("a", 10, 10); r.Known || len(rs.series["a"].samples) != 1 {
		t.Errorf("200 ms: %+v", r)
	}
	for i := 1; i <= 10; i++ {
		c.Add(800 * time.Millisecond)
		rs.observe("a", int64(i)*100, int64(i)*100)
	}
	r := rs.observe("a", 1000, 1000)
	if !r.Known || r.Sent != 125 || r.Top != 200 {
		t.Errorf("100 per 800 ms: %+v", r)
	}
	// A minute later without a sample, the rate is the average since.
	c.Add(time.Minute)
	if r := rs.observe("a", 1000, 1000); r.Sent != 0 || !r.Known {
		t.Errorf("after a quiet minute: %+v", r)
	}
	if n := len(rs.series["a"].samples); n != 5 {
		t.Errorf("%d samples kept after a minute, want the 4 of the last %v and the new one", n, rateKeep)
	}
	for i := range maxRateSeries + 5 {
		c.Add(time.Millisecond)
		rs.observe(fmt.Sprint(i), 0, 0)
	}
	if len(rs.series) != maxRateSeries {
		t.Errorf("%d series, want at most %d", len(rs.series), maxRateSeries)
	}
	if _, ok := rs.series["a"]; ok {
		t.Error("the campaign looked at least recently was kept")
	}
	for _, tc := range []struct {
		v, want float64
	}{{0, 1}, {0.5, 1}, {1.5, 2}, {3, 5}, {7, 10}, {11, 20}, {450, 500}, {1000, 1000}} {
		if got := niceCeiling(tc.v); got != tc.want {
			t.Errorf("niceCeiling(%v) = %v, want %v", tc.v, got, tc.want)
		}
	}
	for _, tc := range []struct {
		n    int64
		rate float64
		want string
	}{{0, 0, "0s"}, {10, 0, ""}, {90, 1, "1m30s"}, {7200, 1, "2h0m0s"}, {1e9, 1, "more than 30 days"}} {
		if got := formatETA(tc.n, tc.rate); got != tc.want {
			t.Errorf("formatETA(%d, %v) = %q, want %q", tc.n, tc.rate, got, tc.want)
		}
	}
}
