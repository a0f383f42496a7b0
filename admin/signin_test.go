package admin

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// postForm posts a sign-in style form to path, with extra headers.
func (b *bundle) postForm(t *testing.T, path, form string, header map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	h := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	for k, v := range header {
		h[k] = v
	}
	req := request{method: "POST", path: path, body: form, header: h}
	if rem, ok := h["X-Test-Remote"]; ok {
		req.remote = rem
	}
	return b.do(t, req)
}

// signIn signs name in and returns the session cookie's value.
func (b *bundle) signIn(t *testing.T, name, pw string) string {
	t.Helper()
	w := b.postForm(t, "/login", url.Values{"username": {name}, "password": {pw}}.Encode(), nil)
	if w.Code != http.StatusSeeOther {
		t.Fatalf("sign in as %s: %d %s", name, w.Code, w.Body)
	}
	c := sessionCookieOf(t, w)
	if c == nil || c.Value == "" {
		t.Fatalf("sign in as %s: no session cookie", name)
	}
	return c.Value
}

func sessionCookieOf(t *testing.T, w *httptest.ResponseRecorder) *http.Cookie {
	t.Helper()
	for _, c := range w.Result().Cookies() {
		if c.Name == SessionCookie {
			return c
		}
	}
	return nil
}

// failures returns pushd_admin_auth_failures_total{reason}, as scraped.
func (b *bundle) failures(reason string) int {
	w := httptest.NewRecorder()
	promhttp.HandlerFor(b.reg, promhttp.HandlerOpts{}).ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	prefix := `pushd_admin_auth_failures_total{reason="` + reason + `"} `
	for line := range strings.Lines(w.Body.String()) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), prefix); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return -1
}

func TestSignInPage(t *testing.T) {
	b := setup(t, setupOpts{users: true})
	w := b.do(t, request{method: "GET", path: "/login?next=%2Fcampaigns%2Fx%3Fa%3D1"})
	body := w.Body.String()
	if w.Code != 200 || w.Header().Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /login: %d %s", w.Code, w.Header())
	}
	for _, want := range []string{
		`<label for="username">Username</label>`, `<input id="username" name="username"`,
		`<label for="password">Password</label>`, `<input id="password" name="password" type="password"`,
		`<button type="submit">Sign in</button>`, `<form method="post" action="/login">`,
		`name="next" value="/campaigns/x?a=1"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("sign-in page lacks %s:\n%s", want, body)
		}
	}
	for _, h := range []string{"Cache-Control", "X-Content-Type-Options", "X-Frame-Options", "Content-Security-Policy"} {
		if w.Header().Get(h) == "" {
			t.Errorf("sign-in page without %s", h)
		}
	}
	if strings.Contains(body, `role="alert"`) {
		t.Error("an error shown before any attempt")
	}
	for _, next := range []string{"https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)", "/login", "x"} {
		w := b.do(t, request{method: "GET", path: "/login?" + url.Values{"next": {next}}.Encode()})
		if !strings.Contains(w.Body.String(), `name="next" value="/"`) {
			t.Errorf("next %q kept: %s", next, w.Body)
		}
	}
}

func TestSafeNext(t *testing.T) {
	for next, want := range map[string]string{
		"":                       "/",
		"/":                      "/",
		"/campaigns/a%2Fb?x=1#y": "/campaigns/a%2Fb?x=1#y",
		"//evil.example":         "/",
		"/\\evil.example":        "/",
		"https://evil.example/":  "/",
		"/ok\r\nSet-Cookie: x":   "/",
		"/logout":                "/",
		"/login?next=/x":         "/",
		"campaigns":              "/",
	} {
		if got := safeNext(next); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", next, got, want)
		}
	}
}

func TestSignInSessionAndSignOut(t *testing.T) {
	b := setup(t, setupOpts{users: true})
	b.users.add(t, "alice", "operator", alicePassword)

	// Names are typed in any case.
	w := b.postForm(t, "/login", url.Values{"username": {" Alice "}, "password": {alicePassword}, "next": {"/campaigns?x=1"}}.Encode(), nil)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/campaigns?x=1" {
		t.Fatalf("sign in: %d, Location %q, want 303 to /campaigns?x=1", w.Code, w.Header().Get("Location"))
	}
	c := sessionCookieOf(t, w)
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Secure || c.MaxAge != 12*3600 {
		t.Fatalf("cookie %+v, want HttpOnly, SameSite=Strict, Path=/, not Secure over plain HTTP, Max-Age 12h", c)
	}
	if raw, _ := c.Value, 0; len(raw) < 22 {
		t.Errorf("session id %q: fewer than 128 bits", raw)
	}
	sum := sha256.Sum256([]byte(c.Value))
	sess, _, err := b.users.Session(t.Context(), hex.EncodeToString(sum[:]))
	if err != nil || sess.User != "alice" || !sess.CreatedAt.Equal(t0) || sess.Address != "192.0.2.1" {
		t.Fatalf("stored session %+v (%v), want alice's, keyed by the cookie's SHA-256", sess, err)
	}
	if got := b.users.Audits(); !slices.Contains(got, "auth.login user:alice alice") {
		t.Errorf("audits %q, want the sign-in", got)
	}

	// The cookie authenticates, as the user, with the user's role.
	if w := b.do(t, request{method: "GET", path: "/api/campaigns", cookie: c.Value}); w.Code != 200 {
		t.Errorf("GET with the cookie: %d %s", w.Code, w.Body)
	}
	if w := b.do(t, request{method: "POST", path: "/api/campaigns/spring-sale/pause", cookie: c.Value}); w.Code != 200 {
		t.Errorf("pause with the cookie: %d %s", w.Code, w.Body)
	}
	if es := b.ctl.notes.Entries(); !slices.Equal(es, []string{"user:alice campaign.pause spring-sale"}) {
		t.Errorf("audited changes %q, want the pause by user:alice", es)
	}
	if w := b.do(t, request{method: "GET", path: "/api/users", cookie: c.Value}); w.Code != http.StatusForbidden {
		t.Errorf("an operator's GET /api/users: %d", w.Code)
	}

	// A second sign-in from the same browser ends the first session.
	second := b.do(t, request{method: "POST", path: "/login", body: "username=alice&password=" + url.QueryEscape(alicePassword), cookie: c.Value,
		header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}})
	c2 := sessionCookieOf(t, second)
	if second.Code != http.StatusSeeOther || c2 == nil || c2.Value == c.Value || b.users.sessionCount() != 1 {
		t.Fatalf("second sign-in: %d, cookie %v, %d sessions", second.Code, c2, b.users.sessionCount())
	}

	// Sign-out ends the session in the store and clears the cookie.
	w = b.do(t, request{method: "POST", path: "/logout", cookie: c2.Value})
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/login" {
		t.Fatalf("sign out: %d %q", w.Code, w.Header().Get("Location"))
	}
	if cl := sessionCookieOf(t, w); cl == nil || cl.MaxAge >= 0 || cl.Value != "" {
		t.Errorf("sign-out cookie %+v, want it cleared", cl)
	}
	if b.users.sessionCount() != 0 {
		t.Error("the session is still in the store after sign-out")
	}
	if got := b.users.Audits(); !slices.Contains(got, "auth.logout user:alice alice") {
		t.Errorf("audits %q, want the sign-out", got)
	}
	w = b.do(t, request{method: "GET", path: "/api/campaigns", cookie: c2.Value})
	if w.Code != http.StatusUnauthorized || b.failures(reasonUnknownSession) != 1 {
		t.Errorf("GET after sign-out: %d, %d unknown_session failures", w.Code, b.failures(reasonUnknownSession))
	}
	// Signing out again, or without a session, is harmless.
	if w := b.do(t, request{method: "POST", path: "/logout", cookie: c2.Value}); w.Code != http.StatusSeeOther {
		t.Errorf("second sign-out: %d", w.Code)
	}
}

func TestSignInFailures(t *testing.T) {
	b := setup(t, setupOpts{users: true})
	b.users.add(t, "alice", "operator", alicePassword)
	b.users.add(t, "dave", "operator", bobPassword)
	b.users.set("dave", func(u *User) { u.Disabled = true })

	for _, tc := range []struct {
		name, form   string
		json         bool
		want         int
		wantMsg      string
		reason, user string
	}{
		{name: "wrong password", form: "username=alice&password=wrong+password+here", want: 401, wantMsg: msgWrong, reason: reasonBadPassword, user: "alice"},
		{name: "unknown user", form: "username=mallory&password=wrong+password+here", want: 401, wantMsg: msgWrong, reason: reasonUnknownUser},
		{name: "disabled, right password", form: "username=dave&password=" + url.QueryEscape(bobPassword), want: 401, wantMsg: msgDisabled, reason: reasonDisabled, user: "dave"},
		{name: "disabled, wrong password", form: "username=dave&password=nope", want: 401, wantMsg: msgWrong, reason: reasonBadPassword, user: "dave"},
		{name: "no password", form: "username=alice", want: 400, wantMsg: msgMissing},
		{name: "JSON client", form: "username=alice&password=wrong", json: true, want: 401, wantMsg: msgWrong, reason: reasonBadPassword, user: "alice"},
		{name: "73 bytes", form: "username=alice&password=" + strings.Repeat("x", 73), want: 401, wantMsg: msgWrong, reason: reasonBadPassword, user: "alice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h map[string]string
			if tc.json {
				h = map[string]string{"Accept": "application/json"}
			}
			before := b.failures(cmpOr(tc.reason, reasonBadPassword))
			audits := len(b.auditor.Entries())
			w := b.postForm(t, "/login", tc.form, h)
			if w.Code != tc.want || sessionCookieOf(t, w) != nil {
				t.Fatalf("%d (cookie %v), want %d and no cookie", w.Code, sessionCookieOf(t, w), tc.want)
			}
			if tc.json {
				if msg := errorOf(t, w); msg != tc.wantMsg {
					t.Errorf("JSON error %q, want %q", msg, tc.wantMsg)
				}
			} else if body := w.Body.String(); !strings.Contains(body, `<p role="alert" id="sign-in-error">`+escapeHTML(tc.wantMsg)+`</p>`) ||
				!strings.Contains(body, `<button type="submit">Sign in</button>`) || strings.Contains(body, "wrong+password") {
				t.Errorf("page does not show %q (or shows the password):\n%s", tc.wantMsg, body)
			}
			if tc.reason == "" {
				return
			}
			if n := b.failures(tc.reason) - before; n != 1 {
				t.Errorf("%s failures +%d, want +1", tc.reason, n)
			}
			es := b.auditor.Entries()
			if len(es) != audits+1 {
				t.Fatalf("%d audit entries, want one more", len(es)-audits)
			}
			e := es[len(es)-1]
			if e.Action != "auth.login_failed" || e.Actor != "address:192.0.2.1" || e.Target != tc.user ||
				!strings.Contains(string(e.After), `"reason":"`+tc.reason+`"`) {
				t.Errorf("audit %+v (%s)", e, e.After)
			}
			line := lastLine(b.logs.String(), "admin authentication failed")
			if !strings.Contains(line, "level=INFO") || !strings.Contains(line, "reason="+tc.reason) || !strings.Contains(line, "address=192.0.2.1") {
				t.Errorf("log line %q", line)
			}
			if strings.Contains(b.logs.String(), "mallory") {
				t.Error("a name that is no user (maybe a password) is logged")
			}
		})
	}
	if b.users.sessionCount() != 0 {
		t.Error("a failed sign-in made a session")
	}
	// Not a form.
	w := b.do(t, request{method: "POST", path: "/login", body: `{"username":"alice","password":"` + alicePassword + `"}`})
	if w.Code != http.StatusUnsupportedMediaType {
		t.Errorf("JSON sign-in: %d, want 415", w.Code)
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func escapeHTML(s string) string { return strings.ReplaceAll(s, "'", "&#39;") }

// lastLine returns the last line of logs that contains s.
func lastLine(logs, s string) string {
	last := ""
	for line := range strings.Lines(logs) {
		if strings.Contains(line, s) {
			last = line
		}
	}
	return last
}

func TestSignInRateLimits(t *testing.T) {
	b := setup(t, setupOpts{users: true, config: func(c *Config) {
		c.UserFailures, c.AddressFailures, c.FailureWindow = 3, 5, 10*time.Minute
	}})
	b.users.add(t, "alice", "operator", alicePassword)
	b.users.add(t, "bob", "operator", bobPassword)
	try := func(name, pw, remote string) *httptest.ResponseRecorder {
		t.Helper()
		return b.postForm(t, "/login", url.Values{"username": {name}, "password": {pw}}.Encode(), map[string]string{"X-Test-Remote": remote})
	}

	// Per user name: three failures from three addresses, then even the
	// right password is refused until the window ends.
	for i := range 3 {
		if w := try("alice", "wrong password!", fmt.Sprintf("198.51.100.%d:1000", i)); w.Code != 401 {
			t.Fatalf("failure %d: %d", i+1, w.Code)
		}
		b.clock.Add(time.Minute)
	}
	// The window started at the first failure, 3 minutes ago: 7 left.
	w := try("alice", alicePassword, "198.51.100.9:1000")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "420" ||
		!strings.Contains(w.Body.String(), "Too many failed sign-ins. Try again in 7 minutes.") {
		t.Fatalf("4th try: %d, Retry-After %q, %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	if b.failures(reasonRateLimited) != 1 {
		t.Errorf("%d rate_limited failures", b.failures(reasonRateLimited))
	}
	// Other users are not affected.
	if w := try("bob", bobPassword, "198.51.100.9:1000"); w.Code != http.StatusSeeOther {
		t.Errorf("bob meanwhile: %d", w.Code)
	}
	b.clock.Add(7*time.Minute - time.Millisecond)
	if w := try("alice", alicePassword, "198.51.100.9:1000"); w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "1" {
		t.Errorf("1 ms before the window ends: %d, Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	b.clock.Add(time.Millisecond)
	if w := try("alice", alicePassword, "198.51.100.9:1000"); w.Code != http.StatusSeeOther {
		t.Errorf("when the window ends: %d", w.Code)
	}
	// A refusal is audited once per window, not once per try.
	n := 0
	for _, e := range b.auditor.Entries() {
		if strings.Contains(string(e.After), reasonRateLimited) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d rate_limited audit entries, want 1", n)
	}

	// Per address: five failures with five names, then the address is
	// refused, for any name; another address is not.
	for i := range 5 {
		if w := try(fmt.Sprintf("user%d", i), "wrong password!", "203.0.113.5:4000"); w.Code != 401 {
			t.Fatalf("address failure %d: %d", i+1, w.Code)
		}
	}
	if w := try("bob", bobPassword, "203.0.113.5:5000"); w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "600" {
		t.Errorf("sixth from the address: %d, Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	// IPv6: the /64 is one address.
	for i := range 5 {
		try(fmt.Sprintf("v6user%d", i), "wrong password!", fmt.Sprintf("[2001:db8:1:2::%d]:4000", i+1))
	}
	if w := try("bob", bobPassword, "[2001:db8:1:2:ffff::1]:4000"); w.Code != http.StatusTooManyRequests {
		t.Errorf("same /64: %d", w.Code)
	}
	if w := try("bob", bobPassword, "[2001:db8:1:3::1]:4000"); w.Code != http.StatusSeeOther {
		t.Errorf("another /64: %d", w.Code)
	}
	if w := try("bob", bobPassword, "192.0.2.200:1"); w.Code != http.StatusSeeOther {
		t.Errorf("another address: %d", w.Code)
	}
	if w := b.postForm(t, "/login", "username=bob&password=x", map[string]string{"X-Test-Remote": "203.0.113.5:1", "Accept": "application/json"}); w.Code != 429 || !strings.Contains(errorOf(t, w), "Too many") {
		t.Errorf("JSON client refused: %d %s", w.Code, w.Body)
	}
}

func TestFailureLimitIsBounded(t *testing.T) {
	l := newFailureLimit(2, time.Minute, 3)
	now := t0
	for i := range 3 {
		l.fail(fmt.Sprint("k", i), now.Add(time.Duration(i)*time.Second))
		l.fail(fmt.Sprint("k", i), now.Add(time.Duration(i)*time.Second))
	}
	if d, first := l.wait("k0", now.Add(3*time.Second)); d != 57*time.Second || !first {
		t.Errorf("k0 waits %s (first %v), want 57s, first", d, first)
	}
	if _, first := l.wait("k0", now.Add(3*time.Second)); first {
		t.Error("second refusal reported as first")
	}
	// A fourth key drops the oldest window (k0's).
	l.fail("k3", now.Add(4*time.Second))
	if l.len() != 3 {
		t.Errorf("%d keys, want 3", l.len())
	}
	if d, _ := l.wait("k0", now.Add(4*time.Second)); d != 0 {
		t.Errorf("k0 still refused for %s after it was dropped", d)
	}
	if d, _ := l.wait("k1", now.Add(4*time.Second)); d == 0 {
		t.Error("k1 dropped instead of k0")
	}
	// Ended windows go first.
	l.fail("k4", now.Add(62*time.Second))
	if l.len() != 2 { // k3 and k4; k1 and k2 ended
		t.Errorf("%d keys after their windows ended, want 2", l.len())
	}
}

func TestSessionTimeouts(t *testing.T) {
	const idle, maxAge = 30 * time.Minute, 2 * time.Hour
	b := setup(t, setupOpts{users: true, config: func(c *Config) { c.SessionIdle, c.SessionMax = idle, maxAge }})
	b.users.add(t, "alice", "operator", alicePassword)
	get := func(cookie string) *httptest.ResponseRecorder {
		t.Helper()
		return b.do(t, request{method: "GET", path: "/api/campaigns", cookie: cookie})
	}

	// Idle: used 1 ms before the end, it lives on; idle exactly as long,
	// it ends.
	c := b.signIn(t, "alice", alicePassword)
	b.clock.Add(idle - time.Millisecond)
	if w := get(c); w.Code != 200 {
		t.Fatalf("1 ms before idle: %d", w.Code)
	}
	b.clock.Add(idle - time.Millisecond)
	if w := get(c); w.Code != 200 {
		t.Fatalf("used, then idle for 1 ms less than the limit: %d", w.Code)
	}
	b.clock.Add(idle)
	w := get(c)
	if w.Code != 401 || !strings.Contains(errorOf(t, w), "expired") || b.failures(reasonExpiredSession) != 1 {
		t.Fatalf("idle for the limit: %d %s, %d expired", w.Code, w.Body, b.failures(reasonExpiredSession))
	}
	if cl := sessionCookieOf(t, w); cl == nil || cl.MaxAge >= 0 {
		t.Errorf("expired session's cookie not cleared: %v", cl)
	}
	if b.users.sessionCount() != 0 {
		t.Error("expired session left in the store")
	}

	// Absolute: used all along, it ends session_max after the sign-in.
	c = b.signIn(t, "alice", alicePassword)
	signedIn := b.clock.Now()
	for b.clock.Now().Before(signedIn.Add(maxAge - idle)) {
		b.clock.Add(idle - time.Minute)
		if w := get(c); w.Code != 200 {
			t.Fatalf("%s after sign-in: %d", b.clock.Now().Sub(signedIn), w.Code)
		}
	}
	b.clock.Add(signedIn.Add(maxAge - time.Millisecond).Sub(b.clock.Now()))
	if w := get(c); w.Code != 200 {
		t.Fatalf("1 ms before session_max: %d", w.Code)
	}
	b.clock.Add(time.Millisecond)
	if w := get(c); w.Code != 401 || b.failures(reasonExpiredSession) != 2 {
		t.Fatalf("at session_max: %d", w.Code)
	}
}

func TestDisabledUsersSessionsStop(t *testing.T) {
	b := setup(t, setupOpts{users: true})
	b.users.add(t, "alice", "operator", alicePassword)
	b.users.add(t, "bob", "operator", bobPassword)

	// Disabled through the API: the store ends the sessions.
	c := b.signIn(t, "alice", alicePassword)
	if w := b.do(t, request{method: "PUT", path: "/api/users/alice", token: adminToken, body: `{"disabled": true}`}); w.Code != 200 {
		t.Fatalf("disable: %d %s", w.Code, w.Body)
	}
	if w := b.do(t, request{method: "GET", path: "/api/campaigns", cookie: c}); w.Code != 401 {
		t.Errorf("disabled user's session: %d", w.Code)
	}
	// Disabled behind the admin module's back (another instance, an
	// older store): refused all the same.
	c = b.signIn(t, "bob", bobPassword)
	b.users.set("bob", func(u *User) { u.Disabled = true })
	if w := b.do(t, request{method: "GET", path: "/api/campaigns", cookie: c}); w.Code != 401 || b.failures(reasonDisabled) != 1 {
		t.Errorf("disabled user's session: %d, %d disabled failures", w.Code, b.failures(reasonDisabled))
	}
}

func TestPasswordChangeEndsOtherSessions(t *testing.T) {
	b := setup(t, setupOpts{users: true})
	b.users.add(t, "alice", "admin", alicePassword)
	laptop := b.signIn(t, "alice", alicePassword)
	phone := b.signIn(t, "alice", alicePassword)
	w := b.do(t, request{method: "PUT", path: "/api/users/alice", cookie: laptop, body: `{"password": "` + newPassword + `"}`})
	if w.Code != 200 {
		t.Fatalf("password change: %d %s", w.Code, w.Body)
	}
	if w := b.do(t, request{method: "GET", path: "/api/campaigns", cookie: laptop}); w.Code != 200 {
		t.Errorf("the session that changed the password: %d", w.Code)
	}
	if w := b.do(t, request{method: "GET", path: "/api/campaigns", cookie: phone}); w.Code != 401 {
		t.Errorf("the other session: %d", w.Code)
	}
	if got := b.users.Audits(); !slices.Contains(got, "user.update user:alice alice") {
		t.Errorf("audits %q", got)
	}
	// Changed by an admin's token: every session ends.
	b.signIn(t, "alice", newPassword)
	if w := b.do(t, request{method: "PUT", path: "/api/users/alice", token: adminToken, body: `{"password": "` + alicePassword + `"}`}); w.Code != 200 {
		t.Fatal(w.Code)
	}
	if w := b.do(t, request{method: "GET", path: "/api/campaigns", cookie: laptop}); w.Code != 401 {
		t.Errorf("session after an admin changed the password: %d", w.Code)
	}
}

func TestSessionRoles(t *testing.T) {
	b := setup(t, setupOpts{users: true})
	b.users.add(t, "vic", "viewer", alicePassword)
	b.users.add(t, "olga", "operator", bobPassword)
	v, o := b.signIn(t, "vic", alicePassword), b.signIn(t, "olga", bobPassword)
	for _, tc := range []struct {
		cookie string
		req    request
		want   int
	}{
		{v, request{method: "GET", path: "/api/campaigns"}, 200},
		{v, request{method: "POST", path: "/api/campaigns/spring-sale/pause"}, 403},
		{v, request{method: "PUT", path: "/api/campaigns/spring-sale/rate", body: `{"rate_per_second": 1}`}, 403},
		{o, request{method: "POST", path: "/api/campaigns/spring-sale/pause"}, 200},
		{o, request{method: "POST", path: "/api/users", body: `{"name":"x","role":"admin","password":"` + newPassword + `"}`}, 403},
	} {
		tc.req.cookie = tc.cookie
		if w := b.do(t, tc.req); w.Code != tc.want {
			t.Errorf("%s %s as %s: %d, want %d", tc.req.method, tc.req.path, map[string]string{v: "vic", o: "olga"}[tc.cookie], w.Code, tc.want)
		}
	}
	// A role changed while signed in takes effect at once.
	b.users.set("vic", func(u *User) { u.Role = "operator" })
	if w := b.do(t, request{method: "POST", path: "/api/campaigns/spring-sale/resume", cookie: v}); w.Code != 200 {
		t.Errorf("vic made operator: %d", w.Code)
	}
}

// TestPagesRedirectToSignIn checks serve's rule: without credentials the
// API answers 401 JSON, pages send the browser to /login and back, and the
// sign-in routes and /static/ are public.
func TestPagesRedirectToSignIn(t *testing.T) {
	b := setup(t, setupOpts{users: true})
	b.users.add(t, "alice", "operator", alicePassword)
	for _, tc := range []struct {
		req          request
		want         int
		wantLocation string
	}{
		{request{method: "GET", path: "/campaigns/a%2Fb?x=1"}, 303, "/login?next=%2Fcampaigns%2Fa%252Fb%3Fx%3D1"},
		{request{method: "GET", path: "/"}, 303, "/login?next=%2F"},
		{request{method: "HEAD", path: "/audit"}, 303, "/login?next=%2Faudit"},
		{request{method: "POST", path: "/campaigns/x/pause"}, 303, "/login"},
		{request{method: "GET", path: "/campaigns", cookie: "forged"}, 303, "/login?next=%2Fcampaigns"},
		{request{method: "GET", path: "/campaigns", token: "not-a-token"}, 401, ""},
		{request{method: "GET", path: "/api/campaigns"}, 401, ""},
		{request{method: "GET", path: "/api"}, 401, ""},
		{request{method: "GET", path: "/api/campaigns", cookie: "forged"}, 401, ""},
		{request{method: "GET", path: "/login"}, 200, ""},
		{request{method: "GET", path: "/static/app.css"}, 404, ""}, // public; no such asset here
		{request{method: "PUT", path: "/login"}, 405, ""},
	} {
		w := b.do(t, tc.req)
		if w.Code != tc.want || w.Header().Get("Location") != tc.wantLocation {
			t.Errorf("%s %s (cookie %q): %d to %q, want %d to %q", tc.req.method, tc.req.path, tc.req.cookie, w.Code, w.Header().Get("Location"), tc.want, tc.wantLocation)
		}
	}
	// Browsers sent to sign in are not failures; API requests without
	// credentials are.
	if n := b.failures(reasonNoCredentials); n != 2 {
		t.Errorf("%d no_credentials failures, want 2 (the API requests)", n)
	}
	// Signed in, the next of a redirect brings the browser back.
	w := b.do(t, request{method: "GET", path: "/campaigns?x=1"})
	loc, _ := url.Parse(w.Header().Get("Location"))
	w = b.postForm(t, "/login", url.Values{"username": {"alice"}, "password": {alicePassword}, "next": {loc.Query().Get("next")}}.Encode(), nil)
	if w.Header().Get("Location") != "/campaigns?x=1" {
		t.Errorf("after sign-in: to %q", w.Header().Get("Location"))
	}
}

func TestBearerFailuresCountedAndLogged(t *testing.T) {
	b := setup(t, setupOpts{})
	for range 2 {
		b.do(t, request{method: "GET", path: "/api/campaigns", token: "not-the-token-0123456789abcdef", remote: "198.51.100.77:5555"})
	}
	if n := b.failures(reasonBadToken); n != 2 {
		t.Errorf("%d bad_token failures, want 2", n)
	}
	line := lastLine(b.logs.String(), "admin authentication failed")
	if !strings.Contains(line, "level=INFO") || !strings.Contains(line, "reason=bad_token") || !strings.Contains(line, "address=198.51.100.77") {
		t.Errorf("log line %q", line)
	}
	if strings.Contains(b.logs.String(), "not-the-token") {
		t.Error("the token is logged")
	}
	// Every reason is exported from the start, at 0 (-1: missing).
	for _, r := range authFailureReasons {
		if r != reasonBadToken && b.failures(r) != 0 {
			t.Errorf("%s: %d", r, b.failures(r))
		}
	}
}

func TestSignInCrossOrigin(t *testing.T) {
	b := setup(t, setupOpts{users: true})
	b.users.add(t, "alice", "operator", alicePassword)
	c := b.signIn(t, "alice", alicePassword)
	form := "username=alice&password=" + url.QueryEscape(alicePassword)
	for _, tc := range []struct {
		name string
		req  request
	}{
		{"sign-in from another site", request{method: "POST", path: "/login", body: form, header: map[string]string{
			"Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Site": "cross-site"}}},
		{"sign-in, foreign Origin", request{method: "POST", path: "/login", body: form, header: map[string]string{
			"Content-Type": "application/x-www-form-urlencoded", "Origin": "https://evil.example"}}},
		{"sign-out from another site", request{method: "POST", path: "/logout", cookie: c, header: map[string]string{"Sec-Fetch-Site": "cross-site"}}},
		{"a change with a cookie, another site", request{method: "POST", path: "/api/campaigns/spring-sale/pause", cookie: c,
			header: map[string]string{"Sec-Fetch-Site": "same-site"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := b.do(t, tc.req)
			if w.Code != http.StatusForbidden || !strings.Contains(errorOf(t, w), "cross-origin") {
				t.Fatalf("%d %s, want 403", w.Code, w.Body)
			}
			if w.Header().Get("X-Content-Type-Options") != "nosniff" || w.Header().Get("Cache-Control") != "no-store" {
				t.Errorf("403 headers %v, want nosniff and no-store", w.Header())
			}
			if sessionCookieOf(t, w) != nil {
				t.Error("a cross-origin request set or cleared the cookie")
			}
		})
	}
	if b.users.sessionCount() != 1 {
		t.Errorf("%d sessions, want the one signed in", b.users.sessionCount())
	}
}
