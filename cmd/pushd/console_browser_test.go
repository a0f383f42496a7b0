package main

// The operator console in a real browser (issue 12): Debian's Chromium,
// headless, driven with chromedp through the pages as an operator would,
// finding controls by the accessible names of DESIGN.md, against a real
// pushd, RabbitMQ and the simulator. scripts/services.sh installs
// Chromium. With PUSHD_SCREENSHOTS=1 the test saves a screenshot of each
// page to docs/screenshots (scripts/screenshots.sh).
//
// The browser signs in as people do, through the /login form with users
// made in the store, and holds only the session cookie: it never sends a
// bearer token.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/pushd/pushd/admin"
	"github.com/pushd/pushd/cmd/internal/synth"
	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/internal/testwait"
	"github.com/pushd/pushd/push/apns"
	"github.com/pushd/pushd/push/sim"
)

// chromiumPath is Debian's chromium, which scripts/services.sh installs.
const chromiumPath = "/usr/bin/chromium"

// browser is one headless Chromium with a fresh profile.
type browser struct {
	t      *testing.T
	ctx    context.Context
	origin string
	// shots is where screenshots go; "" when they are not wanted.
	shots string

	mu sync.Mutex
	// requests are the URLs the watched tabs asked for.
	requests []string
}

func newBrowser(t *testing.T, origin string) *browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("Chromium is needed: run scripts/services.sh (%v)", err)
	}
	alloc, cancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-features", "Translate,MediaRouter,OptimizationHints"),
		chromedp.Flag("lang", "en-US"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	t.Cleanup(cancel)
	ctx, cancelBrowser := chromedp.NewContext(alloc)
	t.Cleanup(cancelBrowser)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	b := &browser{t: t, ctx: ctx, origin: origin}
	if os.Getenv("PUSHD_SCREENSHOTS") == "1" {
		b.shots = filepath.Join("..", "..", "docs", "screenshots")
		if err := os.MkdirAll(b.shots, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// tab is a browser tab.
type tab struct {
	b    *browser
	t    *testing.T
	ctx  context.Context
	pick int
}

// tab opens a tab that shares its cookies with the browser's other
// default tabs; a watched tab's requests are recorded.
func (b *browser) tab(watched bool) *tab {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	b.t.Cleanup(cancel)
	return b.setUp(ctx, watched)
}

// person opens a watched tab in a browser context of its own: its own
// cookies, as on another person's computer.
func (b *browser) person() *tab {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	b.t.Cleanup(cancel)
	return b.setUp(ctx, true)
}

func (b *browser) setUp(ctx context.Context, watched bool) *tab {
	b.t.Helper()
	tb := &tab{b: b, t: b.t, ctx: ctx}
	if watched {
		err := chromedp.Listen(ctx, func(ev any) {
			if e, ok := ev.(*network.EventRequestWillBeSent); ok {
				b.mu.Lock()
				b.requests = append(b.requests, e.Request.URL)
				b.mu.Unlock()
			}
		})
		if err != nil {
			b.t.Fatal(err)
		}
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		b.t.Fatal(err)
	}
	return tb
}

// signIn opens path, which sends the browser to the sign-in page, signs in
// as name with password there, and checks that it lands on path.
func (tb *tab) signIn(path, name, password string) {
	tb.t.Helper()
	tb.open(path)
	tb.at("/login")
	tb.login(name, password)
	tb.at(path)
}

// login fills in the sign-in form and sends it.
func (tb *tab) login(name, password string) {
	tb.t.Helper()
	tb.fill("Username", name)
	tb.fill("Password", password)
	tb.submit("Sign in")
}

// at checks that the tab shows path (with its query, if path has one).
func (tb *tab) at(path string) {
	tb.t.Helper()
	here := "location.pathname"
	if strings.Contains(path, "?") {
		here += " + location.search"
	}
	if p := eval[string](tb, here); p != path {
		tb.t.Fatalf("at %s, want %s (%s)", p, path, tb.text("main"))
	}
}

// sessionCookie is the tab's session cookie for the admin origin.
func (tb *tab) sessionCookie() *network.Cookie {
	tb.t.Helper()
	res, err := chromedp.Call(tb.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{tb.b.origin + "/"}})
	if err != nil {
		tb.t.Fatal(err)
	}
	for _, c := range res.Cookies {
		if c.Name == admin.SessionCookie {
			return c
		}
	}
	tb.t.Fatal("no session cookie")
	return nil
}

// do runs actions, failing the test on an error.
func (tb *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, actions...); err != nil {
		tb.t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](tb *tab, js string) T {
	tb.t.Helper()
	v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// open goes to path and waits for the page.
func (tb *tab) open(path string) {
	tb.t.Helper()
	tb.do("open "+path, chromedp.Navigate(tb.b.origin+path))
	tb.loaded()
}

// loaded waits until the page has loaded.
func (tb *tab) loaded() {
	tb.t.Helper()
	tb.waitFor("the page loaded", 20*time.Second, `document.readyState === "complete"`)
}

// waitFor waits until the JavaScript expression js is true, through
// navigations.
func (tb *tab) waitFor(what string, within time.Duration, js string) {
	tb.t.Helper()
	testwait.For(tb.t, within, what, costly(func() bool {
		ok, err := chromedp.Run(tb.ctx, chromedp.Evaluate[bool](js))
		return err == nil && ok
	}))
}

// js quotes s for JavaScript.
func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// field returns the CSS selector of the control labelled name: a <label
// for>, or an aria-label.
func (tb *tab) field(name string) chromedp.CSS {
	tb.t.Helper()
	id := eval[string](tb, `(() => {
		const l = [...document.querySelectorAll("label")].find(l => l.textContent.trim() === `+js(name)+`);
		return l && document.getElementById(l.htmlFor) ? l.htmlFor : "";
	})()`)
	if id != "" {
		return chromedp.CSS("#" + id)
	}
	if eval[bool](tb, `document.querySelector("[aria-label="+JSON.stringify(`+js(name)+`)+"]") !== null`) {
		return chromedp.CSS(`[aria-label=` + js(name) + `]`)
	}
	tb.t.Fatalf("%s: no control labelled %q", eval[string](tb, "location.pathname"), name)
	return ""
}

// fill sets the value of the control labelled name.
func (tb *tab) fill(name, value string) {
	tb.t.Helper()
	tb.do("fill "+name, chromedp.SetValue(tb.field(name), value))
}

// visibleButtons are the accessible names of the buttons on the page that
// show.
func (tb *tab) visibleButtons() []string {
	tb.t.Helper()
	return eval[[]string](tb, `[...document.querySelectorAll("button")]
		.filter(b => b.offsetParent !== null && b.getAttribute("aria-hidden") !== "true")
		.map(b => b.getAttribute("aria-label") || b.textContent.trim())`)
}

// press clicks the button or link whose accessible name is name.
func (tb *tab) press(name string) {
	tb.t.Helper()
	tb.pick++
	mark := strconv.Itoa(tb.pick)
	found := eval[bool](tb, `(() => {
		const el = [...document.querySelectorAll("button, a")].find(b => b.offsetParent !== null &&
			b.getAttribute("aria-hidden") !== "true" && (b.getAttribute("aria-label") || b.textContent.trim()) === `+js(name)+`);
		if (el) { el.setAttribute("data-pick", `+js(mark)+`); }
		return !!el;
	})()`)
	if !found {
		tb.t.Fatalf("%s: no button or link %q; buttons %q", eval[string](tb, "location.pathname"), name, tb.visibleButtons())
	}
	tb.do("press "+name, chromedp.Click(chromedp.CSS(`[data-pick="`+mark+`"]`)))
}

// submit presses name and waits for the page it leads to.
func (tb *tab) submit(name string) {
	tb.t.Helper()
	_ = eval[chromedp.Void](tb, `window.__pushdOld = true`)
	tb.press(name)
	tb.waitFor("the page after "+name, 60*time.Second, `window.__pushdOld === undefined && document.readyState === "complete"`)
}

// text returns the text of the element with id ("" when there is none).
func (tb *tab) text(id string) string {
	tb.t.Helper()
	return eval[string](tb, `(document.getElementById(`+js(id)+`)?.textContent ?? "").trim()`)
}

// shot saves a screenshot of the page as docs/screenshots/name.png when
// they are wanted.
func (tb *tab) shot(name string) {
	tb.t.Helper()
	if tb.b.shots == "" {
		return
	}
	buf, err := chromedp.Run(tb.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tb.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(tb.b.shots, name+".png"), buf, 0o644); err != nil {
		tb.t.Fatal(err)
	}
}

// sendsPerSecond reads the campaign page's sends per second.
func (tb *tab) sendsPerSecond() float64 {
	tb.t.Helper()
	v, err := strconv.ParseFloat(strings.TrimSuffix(tb.text("sends-per-second"), "/s"), 64)
	if err != nil {
		return -1
	}
	return v
}

func TestConsoleInBrowser(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{})
	h.withConsole()
	d := h.start(map[string]string{"PUSHD_ADMIN_TIME_ZONE": "Asia/Seoul"})
	seoul, _ := time.LoadLocation("Asia/Seoul")
	origin := "http://" + d.admin
	// Users made in the store, as an admin script would.
	const olgaPassword, adaPassword, vicPassword = "olga's long passphrase", "ada's long passphrase 🔑", "vic's long passphrase"
	h.must(d, http.StatusCreated, "POST", "/api/users", adminToken, map[string]string{"name": "olga", "role": "operator", "password": olgaPassword}, nil)
	h.must(d, http.StatusCreated, "POST", "/api/users", adminToken, map[string]string{"name": "ada", "role": "admin", "password": adaPassword}, nil)
	b := newBrowser(t, origin)
	op := b.tab(true)

	// 1. Sign in through the form; a wrong password shows an error.
	op.open("/lists/whitelist")
	op.at("/login")
	op.login("olga", "not olga's passphrase")
	if msg := op.text("sign-in-error"); msg != "Wrong username or password." {
		t.Fatalf("a wrong password: error %q", msg)
	}
	op.shot("sign-in")
	op.login("olga", olgaPassword)
	op.at("/lists/whitelist")
	if c := op.sessionCookie(); !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict {
		t.Errorf("session cookie: HttpOnly %v, SameSite %q", c.HTTPOnly, c.SameSite)
	}

	// Two test phones on the whitelist, added on its page.
	qa := synth.Options{Campaign: "browser-qa", Recipients: 2, IOSPercent: 50}
	for i := range qa.Recipients {
		r := qa.Recipient(i)
		op.fill("Kind", "token")
		op.fill("Platform", r.Platform.String())
		op.fill("Value", r.Token)
		op.fill("Reason", "QA phone")
		op.submit("Add")
		if msg := op.text("main"); !strings.Contains(msg, "Added "+r.Token) {
			t.Fatalf("whitelist add: %q", msg)
		}
	}
	op.shot("whitelist")

	// 2. An audience of 1,000 recipients, uploaded from a file.
	o := synth.Options{Campaign: "browser-1000", Recipients: 1000, IOSPercent: 50}
	file := filepath.Join(t.TempDir(), "spring-customers.csv")
	var csv strings.Builder
	csv.WriteString("platform,token,user_id\n")
	for i := range o.Recipients {
		r := o.Recipient(i)
		fmt.Fprintf(&csv, "%s,%s,%s\n", r.Platform, r.Token, r.UserID)
	}
	if err := os.WriteFile(file, []byte(csv.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	op.open("/audiences")
	op.fill("Name", "봄 고객 spring")
	op.do("choose the file", chromedp.SetUploadFiles(op.field("CSV file"), []string{file}))
	op.submit("Upload")
	if msg := op.text("main"); !strings.Contains(msg, "Imported 1000 recipients (500 iOS, 500 Android) as audience 봄 고객 spring.") {
		t.Fatalf("after the upload: %q", msg)
	}
	audience := eval[string](op, `[...document.querySelectorAll("td")].find(td => td.textContent.includes("봄 고객 spring")).querySelector("code").textContent`)
	op.shot("audiences")

	// 3. Compose with Korean text and a data pair, and preview it.
	op.open("/campaigns")
	op.submit("New campaign")
	title, body := "봄 세일 🌸", "오늘만 50% 할인 👋 쿠폰을 확인하세요"
	op.fill("Campaign ID", "browser-sale")
	op.fill("Campaign name", "Spring sale 봄 세일")
	op.fill("Title", title)
	op.fill("Body", body)
	op.fill("Data key 1", "coupon")
	op.fill("Data value 1", "봄-2026")
	op.fill("APNs topic", "com.example.app")
	op.fill("FCM channel", "promo")
	op.fill("Audience", audience)
	op.submit("Preview")
	n := dispatcher.Notification{Title: title, Body: body, Data: map[string]json.RawMessage{"coupon": json.RawMessage(`"봄-2026"`)},
		APNs: dispatcher.APNsOptions{Topic: "com.example.app"}, FCM: dispatcher.FCMOptions{ChannelID: "promo"}}
	payload, err := apns.RenderPayload(&n)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := op.text("apns-size"), fmt.Sprintf("APNs payload: %d of 4096 bytes", len(payload)); got != want {
		t.Errorf("preview size %q, want %q", got, want)
	}
	if got := eval[string](op, `document.querySelector(".device.ios .n-body").textContent`); got != body {
		t.Errorf("iOS preview body %q, want %q", got, body)
	}
	op.shot("new-campaign")

	// 4. Save the draft and send a test: only the whitelisted phones get it.
	op.submit("Save draft")
	if st := op.text("campaign-status"); st != "draft" {
		t.Fatalf("after Save draft: status %q", st)
	}
	op.submit("Send test")
	if msg := op.text("main"); !strings.Contains(msg, "Test sent to 2 whitelisted devices") {
		t.Errorf("after Send test: %q", msg)
	}
	testwait.For(t, 30*time.Second, "the 2 test phones", func() bool { return accepted(h.sim) >= 2 })
	tokens := h.sim.Tokens()
	for i := range qa.Recipients {
		if tokens[qa.Recipient(i).Token] != 1 {
			t.Errorf("test phone %d got %d pushes, want 1", i, tokens[qa.Recipient(i).Token])
		}
	}
	if n := accepted(h.sim); n != 2 {
		t.Errorf("the test reached %d devices, want the 2 whitelisted", n)
	}

	// 5. Schedule it 5 s ahead: the page shows it finish without a reload.
	op.submit("Edit")
	sendAt := time.Now().Add(5 * time.Second).Truncate(time.Second)
	op.fill("Send at", sendAt.In(seoul).Format("2006-01-02T15:04:05"))
	op.fill("Time zone", "Asia/Seoul")
	op.submit("Save draft")
	op.submit("Schedule")
	if st := op.text("campaign-status"); st != "scheduled" {
		t.Fatalf("after Schedule: status %q (%s)", st, op.text("main"))
	}
	_ = eval[chromedp.Void](op, `window.__pushdSamePage = true`)
	var first time.Time
	testwait.For(t, 30*time.Second, "the campaign's first send", func() bool {
		if accepted(h.sim) > 2 {
			first = time.Now()
			return true
		}
		return false
	})
	t.Logf("first send %v after send_at", first.Sub(sendAt))
	// The scheduler fires within a second (TestScheduledCampaign... holds
	// it to that); here the browser shares the cores, hence 3 s.
	if late := first.Sub(sendAt); late < -time.Second || late > 3*time.Second {
		t.Errorf("first send %v from send_at, want from -1 s to 3 s", late)
	}
	op.waitFor("Sent 1000 shown", 60*time.Second, `document.getElementById("c-sent").textContent === "1000"`)
	op.shot("campaign-sending")
	op.waitFor("finished shown", 60*time.Second, `document.getElementById("campaign-status").textContent === "finished"`)
	if !eval[bool](op, `window.__pushdSamePage === true`) {
		t.Error("the page was reloaded")
	}
	if dups := h.delivered(o, true); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	op.shot("campaign-finished")

	// 6. Pause and resume a throttled campaign, watching its rate.
	op.open("/campaigns/new")
	op.fill("Campaign ID", "browser-slow")
	op.fill("Body", "천천히 🐢")
	op.fill("Audience", audience)
	op.fill("Rate per second", "20")
	op.submit("Save draft")
	op.submit("Schedule")
	op.waitFor("sending at its rate", 30*time.Second, `parseFloat(document.getElementById("sends-per-second").textContent) >= 15`)
	running := op.sendsPerSecond()
	op.shot("campaign-throttled")
	op.submit("Pause")
	op.waitFor("the rate down to 0", 15*time.Second, `document.getElementById("sends-per-second").textContent === "0/s" &&
		document.getElementById("campaign-status").textContent === "paused"`)
	held := accepted(h.sim)
	op.submit("Resume")
	op.waitFor("the rate back", 20*time.Second, `parseFloat(document.getElementById("sends-per-second").textContent) >= 15`)
	back := op.sendsPerSecond()
	before, at := accepted(h.sim), time.Now()
	op.waitFor("5 s more", 10*time.Second, `(window.__pushdWait = (window.__pushdWait || Date.now())) && Date.now() - window.__pushdWait > 5000`)
	t.Logf("simulator: %.1f/s", float64(accepted(h.sim)-before)/time.Since(at).Seconds())
	t.Logf("throttled campaign: %v/s running, 0/s paused (%d sends held), %v/s resumed", running, held, back)
	if running > 30 || back > 30 {
		t.Errorf("a 20/s campaign shown at %v/s and %v/s", running, back)
	}

	// 7. Cancel a third, with its confirmation.
	op.open("/campaigns/new")
	op.fill("Campaign ID", "browser-later")
	op.fill("Title", "Later")
	op.fill("Audience", audience)
	op.fill("Send at", time.Now().Add(time.Hour).In(seoul).Format("2006-01-02T15:04:05"))
	op.submit("Save draft")
	op.submit("Schedule")
	op.submit("Cancel")
	op.shot("campaign-cancel")
	op.submit("Cancel campaign")
	if st := op.text("campaign-status"); st != "cancelled" {
		t.Errorf("after the cancellation: status %q", st)
	}
	op.open("/audit")
	op.shot("audit")
	op.open("/campaigns")
	op.shot("campaigns")

	// An admin, on another computer, adds a user on the users page, and
	// makes it a viewer.
	ada := b.person()
	ada.signIn("/users", "ada", adaPassword)
	ada.fill("Username", "vic")
	ada.fill("Role", "operator")
	ada.fill("Password", vicPassword)
	ada.submit("Add user")
	if msg := ada.text("main"); !strings.Contains(msg, "Added operator vic.") {
		t.Fatalf("after Add user: %q", msg)
	}
	ada.fill("Role of vic", "viewer")
	ada.submit("Change role of vic")
	if msg := ada.text("main"); !strings.Contains(msg, "Changed the role of vic.") {
		t.Fatalf("after Change role: %q", msg)
	}
	ada.shot("users")

	// 8. A viewer, signed in on a third computer, sees no action, and a
	// POST forged with the viewer's session cookie gets 403.
	viewer := b.person()
	viewer.signIn("/campaigns", "vic", vicPassword)
	for _, path := range []string{"/campaigns", "/campaign/browser-sale", "/campaign/browser-slow", "/audiences", "/lists/whitelist"} {
		viewer.open(path)
		for _, name := range viewer.visibleButtons() {
			if name != "Sign out" && name != "Apply" && name != "Search" {
				t.Errorf("%s: a viewer is shown button %q", path, name)
			}
		}
	}
	viewer.open("/campaign/browser-slow")
	viewer.shot("campaign-viewer")
	// From the page: the browser sends the cookie, and nothing else.
	if status := eval[int](viewer, `fetch("/campaign/browser-slow/pause", {method: "POST"}).then(r => r.status)`); status != http.StatusForbidden {
		t.Errorf("a viewer's forged pause from the page: %d, want 403", status)
	}
	// From outside the browser, with the cookie taken from it.
	cookie := viewer.sessionCookie()
	vic := &http.Cookie{Name: cookie.Name, Value: cookie.Value}
	for _, path := range []string{"/campaign/browser-slow/pause", "/api/campaigns/browser-slow/pause", "/users"} {
		if code := h.withCookie(d, "POST", path, vic); code != http.StatusForbidden {
			t.Errorf("POST %s with the viewer's cookie: %d, want 403", path, code)
		}
	}
	if c := h.consoleCampaign(d, "browser-slow"); c.Status != "running" {
		t.Errorf("after a viewer's forged pause: %s", c.Status)
	}
	// Signing out ends the session, for the cookie's every copy.
	viewer.submit("Sign out")
	viewer.at("/login")
	if code := h.withCookie(d, "GET", "/api/campaigns", vic); code != http.StatusUnauthorized {
		t.Errorf("the viewer's cookie after sign-out: %d, want 401", code)
	}

	// 9. A page of another origin (another port: the same site, so the
	// browser sends the operator's SameSite=Strict cookie with it) posts
	// a form to the console by itself, and is refused.
	evilSite := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>Win a prize</title>
<form method="post" action="%s/campaign/browser-slow/pause"><input type="hidden" name="confirm" value="yes"></form>
<script>document.forms[0].submit()</script>`, origin)
	}))
	t.Cleanup(evilSite.Close)
	evil := b.tab(false)
	if _, err := chromedp.Call(evil.ctx, page.Navigate, page.NavigateParams{URL: evilSite.URL}); err != nil {
		t.Fatal(err)
	}
	evil.waitFor("the form posted", 30*time.Second, `location.origin === `+js(origin)+` && document.readyState === "complete"`)
	if got := eval[string](evil, `document.body.textContent`); !strings.Contains(got, "cross-origin request refused") {
		t.Errorf("a cross-origin form post answered %q", got)
	}
	if c := h.consoleCampaign(d, "browser-slow"); c.Status != "running" {
		t.Errorf("after a cross-origin pause: %s", c.Status)
	}

	// Nothing the console tabs loaded came from anywhere else. (Chromium's
	// own controls, such as the date picker's icon, are data: URLs: they
	// never leave the browser.)
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.requests) < 30 {
		t.Errorf("only %d requests seen: the listener missed them", len(b.requests))
	}
	for _, path := range []string{"/login?next=%2Fusers", "/users", "/static/console.css", "/campaign/browser-slow/progress"} {
		if !slices.ContainsFunc(b.requests, func(u string) bool { return u == origin+path || strings.HasPrefix(u, origin+path+"?") }) {
			t.Errorf("no request for %s seen: the listener missed some tabs", path)
		}
	}
	others := slices.DeleteFunc(slices.Clone(b.requests), func(u string) bool {
		return strings.HasPrefix(u, origin+"/") || strings.HasPrefix(u, "data:")
	})
	if len(others) > 0 {
		t.Errorf("requests to other origins: %q", others)
	}
	t.Logf("%d requests, all to %s", len(b.requests), origin)
}
