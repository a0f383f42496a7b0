package admin

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// postPage posts a console form as token or, with token "", the session
// cookie.
func (b *bundle) postPage(t *testing.T, path, token, cookie string, form url.Values) *httptest.ResponseRecorder {
	t.Helper()
	return b.do(t, request{method: "POST", path: path, token: token, cookie: cookie, body: form.Encode(),
		header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}})
}

func TestConsoleUsersPage(t *testing.T) {
	b := setup(t, setupOpts{users: true})
	b.users.add(t, "vic", "viewer", bobPassword)
	vic := b.signIn(t, "vic", bobPassword)

	w := b.do(t, request{method: "GET", path: "/users", token: adminToken})
	mustStatus(t, w, http.StatusOK)
	d := parseDoc(t, w)
	for _, name := range []string{"Username", "Role", "Password"} {
		if d.labels[name] == "" {
			t.Errorf("no field labelled %q; labels %v", name, d.labels)
		}
	}
	for _, name := range []string{"Add user", "Change role of vic", "Set password of vic", "Disable vic"} {
		if !slices.Contains(d.buttons, name) {
			t.Errorf("no button %q; buttons %q", name, d.buttons)
		}
	}
	if !strings.Contains(d.html, `aria-label="New password for vic"`) || !strings.Contains(d.html, `aria-label="Role of vic"`) {
		t.Error("vic's row lacks its labelled password and role fields")
	}

	// Add: each bad field gets its message next to it; the password is
	// never sent back.
	for _, tc := range []struct{ name, role, pw, field string }{
		{"Alice", "operator", alicePassword, "name"},
		{"alice", "root", alicePassword, "role"},
		{"alice", "operator", "short", "password"},
		{"vic", "operator", alicePassword, "name"},
	} {
		w := b.postPage(t, "/users", adminToken, "", url.Values{"name": {tc.name}, "role": {tc.role}, "password": {tc.pw}})
		if w.Code/100 != 4 {
			t.Fatalf("add %s/%s: %d", tc.name, tc.role, w.Code)
		}
		d := parseDoc(t, w)
		if d.byID[tc.field+"-error"] == "" {
			t.Errorf("add %s/%s/%q: no message next to %s; page errors %q", tc.name, tc.role, tc.pw, tc.field, d.byID)
		}
		if strings.Contains(d.html, tc.pw) && tc.field != "name" {
			t.Errorf("add %s: the password is sent back", tc.name)
		}
	}
	w = b.postPage(t, "/users", adminToken, "", url.Values{"name": {"alice"}, "role": {"operator"}, "password": {alicePassword}})
	if msg := redirectedTo(t, w, "/users"); msg != "Added operator alice." {
		t.Errorf("add: flash %q", msg)
	}
	if u, err := b.users.User(t.Context(), "alice"); err != nil || u.Role != "operator" ||
		bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(alicePassword)) != nil {
		t.Fatalf("alice after the add: %+v %v", u, err)
	}
	alice := b.signIn(t, "alice", alicePassword)

	// Role, password, disable and enable.
	redirectedTo(t, b.postPage(t, "/users/alice/role", adminToken, "", url.Values{"role": {"viewer"}}), "/users")
	if u, _ := b.users.User(t.Context(), "alice"); u.Role != "viewer" {
		t.Errorf("alice's role %q, want viewer", u.Role)
	}
	w = b.postPage(t, "/users/alice/password", adminToken, "", url.Values{"password": {"too short"}})
	mustStatus(t, w, http.StatusBadRequest)
	if !strings.Contains(parseDoc(t, w).html, "alice: password: at least 12 characters") {
		t.Error("a short password: no message")
	}
	redirectedTo(t, b.postPage(t, "/users/alice/password", adminToken, "", url.Values{"password": {newPassword}}), "/users")
	if w := b.do(t, request{method: "GET", path: "/api/campaigns", cookie: alice}); w.Code != http.StatusUnauthorized {
		t.Errorf("alice's session after a new password: %d, want 401", w.Code)
	}
	alice = b.signIn(t, "alice", newPassword)
	redirectedTo(t, b.postPage(t, "/users/alice/disable", adminToken, "", nil), "/users")
	if w := b.do(t, request{method: "GET", path: "/api/campaigns", cookie: alice}); w.Code != http.StatusUnauthorized {
		t.Errorf("a disabled user's session: %d, want 401", w.Code)
	}
	if d := parseDoc(t, b.do(t, request{method: "GET", path: "/users", token: adminToken})); !slices.Contains(d.buttons, "Enable alice") {
		t.Errorf("no Enable for disabled alice; buttons %q", d.buttons)
	}
	redirectedTo(t, b.postPage(t, "/users/alice/enable", adminToken, "", nil), "/users")
	b.signIn(t, "alice", newPassword)
	mustStatus(t, b.postPage(t, "/users/nobody/disable", adminToken, "", nil), http.StatusNotFound)
	want := []string{"user.create " + actorOf("admin", adminToken) + " alice", "user.update " + actorOf("admin", adminToken) + " alice"}
	for _, a := range want {
		if !slices.Contains(b.users.Audits(), a) {
			t.Errorf("audits %q lack %q", b.users.Audits(), a)
		}
	}

	// Only admins: operators and viewers, by token or cookie, get 403.
	for _, who := range []request{{token: operatorToken}, {token: viewerToken}, {cookie: vic}} {
		for _, path := range []string{"/users", "/users/alice/disable", "/users/alice/role"} {
			req := who
			req.method, req.path = "GET", path
			if path != "/users" {
				req.method = "POST"
			}
			if w := b.do(t, req); w.Code != http.StatusForbidden {
				t.Errorf("%s %s as %s%s: %d, want 403", req.method, path, req.token, req.cookie, w.Code)
			}
		}
		w := b.postPage(t, "/users", who.token, who.cookie, url.Values{"name": {"mallory"}, "role": {"admin"}, "password": {alicePassword}})
		mustStatus(t, w, http.StatusForbidden)
	}
	if _, err := b.users.User(t.Context(), "mallory"); err == nil {
		t.Error("a forged add made a user")
	}
	if u, _ := b.users.User(t.Context(), "alice"); u.Disabled {
		t.Error("a forged disable disabled alice")
	}
}

func TestConsoleUsersPageWithoutAccounts(t *testing.T) {
	b := setup(t, setupOpts{})
	w := b.do(t, request{method: "GET", path: "/users", token: adminToken})
	mustStatus(t, w, http.StatusOK)
	if d := parseDoc(t, w); slices.Contains(d.buttons, "Add user") || !strings.Contains(d.html, "Accounts are not configured") {
		t.Errorf("users page without a user store: buttons %q", d.buttons)
	}
	mustStatus(t, b.postPage(t, "/users", adminToken, "", url.Values{"name": {"x"}}), http.StatusServiceUnavailable)
}
