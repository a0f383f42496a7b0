package main

// End-to-end test of console accounts: a user made through the API signs
// in at one pushd, and the session works on another instance sharing the
// store and across a restart, until sign-out.

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/pushd/pushd/push/sim"
)

// signIn signs in at d and returns the session cookie.
func (h *harness) signIn(d *daemon, name, password string) *http.Cookie {
	h.t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	form := url.Values{"username": {name}, "password": {password}}.Encode()
	resp, err := client.Post("http://"+d.admin+"/login", "application/x-www-form-urlencoded", strings.NewReader(form))
	if err != nil {
		h.t.Fatal(err)
	}
	_ = resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == "pushd_session" && resp.StatusCode == http.StatusSeeOther {
			return c
		}
	}
	h.t.Fatalf("sign in as %s: %d, no session cookie", name, resp.StatusCode)
	return nil
}

// withCookie sends a request to d with the session cookie c and returns
// the status.
func (h *harness) withCookie(d *daemon, method, path string, c *http.Cookie) int {
	h.t.Helper()
	req, err := http.NewRequest(method, "http://"+d.admin+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	req.AddCookie(c)
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

func TestSessionWorksOnEveryInstanceAndSurvivesARestart(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{})
	h.withConsole()
	a := h.start(nil)
	b := h.start(nil) // same store: a second instance
	const password = "correct horse battery"
	h.must(a, http.StatusCreated, "POST", "/api/users", adminToken, map[string]string{"name": "olga", "role": "operator", "password": password}, nil)
	c := h.signIn(a, "olga", password)
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure {
		t.Errorf("cookie %+v", c)
	}
	for _, d := range []*daemon{a, b} {
		if code := h.withCookie(d, "GET", "/api/campaigns", c); code != 200 {
			t.Fatalf("GET at %s with the session: %d", d.admin, code)
		}
	}
	if code := h.withCookie(b, "GET", "/api/users", c); code != http.StatusForbidden {
		t.Errorf("an operator's GET /api/users: %d", code)
	}

	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	a = h.start(nil)
	if code := h.withCookie(a, "GET", "/api/campaigns", c); code != 200 {
		t.Fatalf("after the restart: %d", code)
	}

	// Signed out at one instance, it ends at the other at once.
	if code := h.withCookie(a, "POST", "/logout", c); code != http.StatusSeeOther {
		t.Fatalf("sign out: %d", code)
	}
	if code := h.withCookie(b, "GET", "/api/campaigns", c); code != http.StatusUnauthorized {
		t.Errorf("after sign-out, at the other instance: %d", code)
	}
	if code := h.withCookie(b, "GET", "/campaigns", c); code != http.StatusSeeOther {
		t.Errorf("a page after sign-out: %d, want 303 to /login", code)
	}
	m := scrape(t, b.metrics)
	if n := m[`pushd_admin_auth_failures_total{reason="unknown_session"}`]; n != 2 {
		t.Errorf("unknown_session failures %v, want 2 (the API request and the page)", n)
	}
	var audit struct {
		Entries []struct {
			Actor, Action, Target string
		} `json:"entries"`
	}
	h.must(b, 200, "GET", "/api/audit?target=olga", adminToken, nil, &audit)
	var actions []string
	for _, e := range audit.Entries {
		actions = append(actions, e.Action+" "+e.Actor)
	}
	if got := strings.Join(actions, ", "); got != "auth.logout user:olga, auth.login user:olga, user.create admin:"+actorHex(adminToken) {
		t.Errorf("audit of olga: %s", got)
	}
}

// actorHex is the audit log's name of a token: the first 8 hex digits of
// its SHA-256.
func actorHex(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:4])
}
