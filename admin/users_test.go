package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/pushd/pushd/dispatcher"
)

// Passwords of the test users; setup checks that no log holds one.
const (
	alicePassword = "correct horse battery"
	bobPassword   = "bob's long password"
	newPassword   = "a brand new passphrase"
)

var testPasswords = []string{alicePassword, bobPassword, newPassword}

// fakeUsers is a UserStore in memory that ends sessions as the store
// does, and records what it audits as "action actor target".
type fakeUsers struct {
	now func() time.Time

	mu       sync.Mutex
	Err      error // every call fails with it
	users    map[string]User
	sessions map[string]Session
	audits   []string
}

func newFakeUsers(now func() time.Time) *fakeUsers {
	return &fakeUsers{now: now, users: map[string]User{}, sessions: map[string]Session{}}
}

func (f *fakeUsers) CreateUser(_ context.Context, u User, actor string) (User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Err != nil {
		return User{}, f.Err
	}
	if _, ok := f.users[u.Name]; ok {
		return User{}, fmt.Errorf("user %q exists: %w", u.Name, dispatcher.ErrConflict)
	}
	now := f.now()
	u.CreatedAt, u.UpdatedAt, u.PasswordChangedAt = now, now, now
	f.users[u.Name] = u
	f.audits = append(f.audits, "user.create "+actor+" "+u.Name)
	return u, nil
}

func (f *fakeUsers) UpdateUser(_ context.Context, name string, ch UserChange, actor string) (before, after User, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Err != nil {
		return User{}, User{}, f.Err
	}
	u, ok := f.users[name]
	if !ok {
		return User{}, User{}, fmt.Errorf("user %q: %w", name, dispatcher.ErrNotFound)
	}
	before, after = u, u
	if ch.Role != nil {
		after.Role = *ch.Role
	}
	if ch.Disabled != nil {
		after.Disabled = *ch.Disabled
	}
	if ch.PasswordHash != "" {
		after.PasswordHash, after.PasswordChangedAt = ch.PasswordHash, f.now()
	}
	after.UpdatedAt = f.now()
	f.users[name] = after
	for id, sess := range f.sessions {
		if sess.User == name && (after.Disabled || ch.PasswordHash != "" && id != ch.KeepSession) {
			delete(f.sessions, id)
		}
	}
	f.audits = append(f.audits, "user.update "+actor+" "+name)
	return before, after, nil
}

func (f *fakeUsers) User(_ context.Context, name string) (User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Err != nil {
		return User{}, f.Err
	}
	u, ok := f.users[name]
	if !ok {
		return User{}, fmt.Errorf("user %q: %w", name, dispatcher.ErrNotFound)
	}
	return u, nil
}

func (f *fakeUsers) Users(context.Context) ([]User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Err != nil {
		return nil, f.Err
	}
	var out []User
	for _, name := range slices.Sorted(maps.Keys(f.users)) {
		out = append(out, f.users[name])
	}
	return out, nil
}

func (f *fakeUsers) CreateSession(_ context.Context, sess Session, actor string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Err != nil {
		return f.Err
	}
	f.sessions[sess.IDHash] = sess
	f.audits = append(f.audits, "auth.login "+actor+" "+sess.User)
	return nil
}

func (f *fakeUsers) Session(_ context.Context, idHash string) (Session, User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Err != nil {
		return Session{}, User{}, f.Err
	}
	sess, ok := f.sessions[idHash]
	if !ok {
		return Session{}, User{}, fmt.Errorf("session: %w", dispatcher.ErrNotFound)
	}
	return sess, f.users[sess.User], nil
}

func (f *fakeUsers) TouchSession(_ context.Context, idHash string, at time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if sess, ok := f.sessions[idHash]; ok && at.After(sess.LastSeen) {
		sess.LastSeen = at
		f.sessions[idHash] = sess
	}
	return nil
}

func (f *fakeUsers) EndSession(_ context.Context, idHash, actor, action string, _ time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Err != nil {
		return f.Err
	}
	sess, ok := f.sessions[idHash]
	if !ok {
		return nil
	}
	delete(f.sessions, idHash)
	if action != "" {
		f.audits = append(f.audits, action+" "+actor+" "+sess.User)
	}
	return nil
}

// add stores a user with password pw, as POST /api/users would.
func (f *fakeUsers) add(t *testing.T, name, role, pw string) {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.CreateUser(context.Background(), User{Name: name, Role: role, PasswordHash: string(h)}, "test"); err != nil {
		t.Fatal(err)
	}
}

// set changes a user behind the admin module's back.
func (f *fakeUsers) set(name string, change func(*User)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u := f.users[name]
	change(&u)
	f.users[name] = u
}

func (f *fakeUsers) sessionCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sessions)
}

func (f *fakeUsers) Audits() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.audits)
}

func TestUsersAPI(t *testing.T) {
	b := setup(t, setupOpts{users: true})
	adminActor := actorOf("admin", adminToken)
	post := func(token, body string) *responseOf {
		return respond(b.do(t, request{method: "POST", path: "/api/users", token: token, body: body}))
	}

	r := post(adminToken, `{"name": "alice", "role": "operator", "password": "`+alicePassword+`"}`)
	if r.code != http.StatusCreated || strings.Contains(r.body, "$2a$") || strings.Contains(strings.ToLower(r.body), "hash") ||
		!strings.Contains(r.body, `"name":"alice"`) || !strings.Contains(r.body, `"role":"operator"`) || !strings.Contains(r.body, `"disabled":false`) {
		t.Fatalf("create: %d %s", r.code, r.body)
	}
	u, _ := b.users.User(t.Context(), "alice")
	if bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(alicePassword)) != nil {
		t.Error("the stored hash is not the password's")
	}
	if got := b.users.Audits(); !slices.Contains(got, "user.create "+adminActor+" alice") {
		t.Errorf("audits %q, want the create by %s", got, adminActor)
	}

	for _, tc := range []struct {
		name, body string
		want       int
		wantError  string
	}{
		{"taken", `{"name": "alice", "role": "viewer", "password": "` + bobPassword + `"}`, 409, "exists"},
		{"11 characters", `{"name": "bob", "role": "viewer", "password": "12345678901"}`, 400, "at least 12 characters, got 11"},
		{"12 characters of 3 bytes", `{"name": "bob", "role": "viewer", "password": "` + strings.Repeat("한", 12) + `"}`, 201, ""},
		{"73 bytes", `{"name": "carol", "role": "viewer", "password": "` + strings.Repeat("x", 73) + `"}`, 400, "at most 72 bytes"},
		{"unknown role", `{"name": "carol", "role": "root", "password": "` + bobPassword + `"}`, 400, "role"},
		{"no role", `{"name": "carol", "password": "` + bobPassword + `"}`, 400, "role"},
		{"upper case name", `{"name": "Carol", "role": "viewer", "password": "` + bobPassword + `"}`, 400, "name"},
		{"name with a space", `{"name": "carol x", "role": "viewer", "password": "` + bobPassword + `"}`, 400, "name"},
		{"no name", `{"role": "viewer", "password": "` + bobPassword + `"}`, 400, "name"},
		{"a hash given", `{"name": "carol", "role": "viewer", "password": "` + bobPassword + `", "password_hash": "x"}`, 400, "unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := post(adminToken, tc.body)
			if r.code != tc.want || tc.wantError != "" && !strings.Contains(r.body, tc.wantError) {
				t.Errorf("%d %s, want %d with %q", r.code, r.body, tc.want, tc.wantError)
			}
		})
	}

	// Only admins.
	for _, tok := range []string{viewerToken, operatorToken} {
		for _, req := range []request{
			{method: "GET", path: "/api/users"}, {method: "GET", path: "/api/users/alice"},
			{method: "POST", path: "/api/users", body: `{"name": "eve", "role": "admin", "password": "` + bobPassword + `"}`},
			{method: "PUT", path: "/api/users/alice", body: `{"role": "admin"}`},
		} {
			req.token = tok
			if w := b.do(t, req); w.Code != http.StatusForbidden {
				t.Errorf("%s %s as %.8s: %d, want 403", req.method, req.path, tok, w.Code)
			}
		}
	}

	r = respond(b.do(t, request{method: "GET", path: "/api/users", token: adminToken}))
	var list struct {
		Users []map[string]any `json:"users"`
	}
	if err := json.Unmarshal([]byte(r.body), &list); err != nil || len(list.Users) != 2 || list.Users[0]["name"] != "alice" || list.Users[1]["name"] != "bob" {
		t.Fatalf("list: %d %s", r.code, r.body)
	}
	for _, u := range list.Users {
		if got := slices.Sorted(maps.Keys(u)); !slices.Equal(got, []string{"created_at", "disabled", "name", "password_changed_at", "role", "updated_at"}) {
			t.Errorf("a user has the fields %v", got)
		}
	}

	b.clock.Add(time.Minute)
	put := func(name, body string) *responseOf {
		return respond(b.do(t, request{method: "PUT", path: "/api/users/" + name, token: adminToken, body: body}))
	}
	if r := put("alice", `{"role": "admin", "disabled": true}`); r.code != 200 || !strings.Contains(r.body, `"role":"admin"`) || !strings.Contains(r.body, `"disabled":true`) {
		t.Errorf("put role and disabled: %d %s", r.code, r.body)
	}
	if r := put("alice", `{"password": "`+newPassword+`"}`); r.code != 200 || !strings.Contains(r.body, `"password_changed_at":"`+b.clock.Now().Format(time.RFC3339)) {
		t.Errorf("put password: %d %s", r.code, r.body)
	}
	u, _ = b.users.User(t.Context(), "alice")
	if bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(newPassword)) != nil {
		t.Error("the new password is not stored")
	}
	for body, want := range map[string]string{
		`{}`:                                  "give role, password or disabled",
		`{"password": "short"}`:               "at least 12",
		`{"role": "superuser"}`:               "role",
		`{"disabled": "yes"}`:                 "disabled",
		`{"Disabled": true}`:                  "case-sensitive",
		`{"role": "admin", "role": "viewer"}`: "duplicate",
	} {
		if r := put("alice", body); r.code != 400 || !strings.Contains(r.body, want) {
			t.Errorf("put %s: %d %s, want 400 with %q", body, r.code, r.body, want)
		}
	}
	if r := put("nobody", `{"role": "admin"}`); r.code != 404 {
		t.Errorf("put of an unknown user: %d %s", r.code, r.body)
	}
	if r := respond(b.do(t, request{method: "GET", path: "/api/users/alice", token: adminToken})); r.code != 200 || strings.Contains(r.body, "$2a$") {
		t.Errorf("get: %d %s", r.code, r.body)
	}
	if r := respond(b.do(t, request{method: "GET", path: "/api/users/nobody", token: adminToken})); r.code != 404 {
		t.Errorf("get unknown: %d %s", r.code, r.body)
	}
	for _, l := range []string{alicePassword, newPassword} {
		if strings.Contains(b.logs.String(), l) {
			t.Error("a password is in the logs")
		}
	}
}

func TestUsersAPIWithoutStore(t *testing.T) {
	b := setup(t, setupOpts{})
	if w := b.do(t, request{method: "GET", path: "/api/users", token: adminToken}); w.Code != http.StatusServiceUnavailable {
		t.Errorf("GET /api/users without a UserStore: %d", w.Code)
	}
	w := b.do(t, request{method: "POST", path: "/login", body: "username=alice&password=x",
		header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}})
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("POST /login without a UserStore: %d", w.Code)
	}
}

func TestUserStoreFailure(t *testing.T) {
	b := setup(t, setupOpts{users: true})
	b.users.add(t, "alice", "operator", alicePassword)
	cookie := b.signIn(t, "alice", alicePassword)
	b.users.mu.Lock()
	b.users.Err = errors.New("disk I/O error")
	b.users.mu.Unlock()
	// pushd's fault: 500, not a refusal, and not the text.
	for _, req := range []request{
		{method: "GET", path: "/api/campaigns", cookie: cookie},
		{method: "GET", path: "/api/users", token: adminToken},
	} {
		w := b.do(t, req)
		if w.Code != http.StatusInternalServerError || errorOf(t, w) != "internal error" {
			t.Errorf("%s %s with the store failing: %d %s", req.method, req.path, w.Code, w.Body)
		}
	}
	if w := b.postForm(t, "/login", "username=alice&password="+alicePassword, nil); w.Code != http.StatusInternalServerError {
		t.Errorf("sign-in with the store failing: %d %s", w.Code, w.Body)
	}
}

// responseOf is a response's status and body.
type responseOf struct {
	code int
	body string
}

func respond(w interface {
	Result() *http.Response
}) *responseOf {
	resp := w.Result()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return &responseOf{code: resp.StatusCode, body: string(b)}
}

// TestAdminCannotLockThemselvesOut: a signed-in admin may change their own
// password, but not disable their own account or take away their own admin
// role (403); another admin can, and so can an admin token.
func TestAdminCannotLockThemselvesOut(t *testing.T) {
	b := setup(t, setupOpts{users: true})
	b.users.add(t, "ada", "admin", alicePassword)
	b.users.add(t, "grace", "admin", bobPassword)
	ada := b.signIn(t, "ada", alicePassword)
	put := func(cookie, token, name, body string) int {
		return b.do(t, request{method: "PUT", path: "/api/users/" + name, cookie: cookie, token: token, body: body}).Code
	}
	for _, body := range []string{`{"disabled": true}`, `{"role": "operator"}`, `{"role": "viewer"}`} {
		if code := put(ada, "", "ada", body); code != http.StatusForbidden {
			t.Errorf("ada changes herself with %s: %d, want 403", body, code)
		}
	}
	if u, _ := b.users.User(t.Context(), "ada"); u.Disabled || u.Role != "admin" {
		t.Fatalf("ada after refused changes: %+v", u)
	}
	if code := put(ada, "", "ada", `{"disabled": false, "role": "admin"}`); code != http.StatusOK {
		t.Errorf("ada's no-op change of herself: %d, want 200", code)
	}
	if code := put(ada, "", "grace", `{"role": "operator"}`); code != http.StatusOK {
		t.Errorf("ada demotes grace: %d, want 200", code)
	}
	if code := put("", adminToken, "ada", `{"disabled": true}`); code != http.StatusOK {
		t.Errorf("an admin token disables ada: %d, want 200", code)
	}
}
