package admin

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseTokens(t *testing.T) {
	tests := []struct {
		name      string
		file      string
		wantRoles []role
		wantErr   string
	}{
		{name: "roles, comments, blanks, spaces, CRLF",
			file:      "# tokens\r\n\r\nviewer:v-tok-0123456789abcdefgh\r\n  operator : o-tok-0123456789abcdefgh  \n\t# indented comment\nadmin:a:b:c-0123456789abcdefgh\n",
			wantRoles: []role{roleViewer, roleOperator, roleAdmin}},
		{name: "no newline at the end", file: "viewer:v-tok-0123456789abcdefgh", wantRoles: []role{roleViewer}},
		{name: "no role", file: "# c\nviewer:v-tok-0123456789abcdefgh\nsecret-token-abc-0123456789\n", wantErr: "line 3: want ROLE:TOKEN"},
		{name: "unknown role", file: "viewer:v-tok-0123456789abcdefgh\n\nroot:secret-token-abc-0123456789\n", wantErr: "line 3: unknown role (want viewer, operator or admin)"},
		{name: "role is case-sensitive", file: "Viewer:secret-token-abc-0123456789\n", wantErr: "line 1: unknown role"},
		{name: "token with no role, with a colon", file: "secret:token-abc\n", wantErr: "line 1: unknown role"},
		{name: "empty token", file: "viewer:v-tok-0123456789abcdefgh\nadmin:  \n", wantErr: "line 2: empty token"},
		{name: "token with a space", file: "admin:secret token-abc-0123456789\n", wantErr: "line 1: token contains spaces or control characters"},
		{name: "token with a control character", file: "admin:secret\x00token-abc-0123456789\n", wantErr: "line 1: token contains spaces or control characters"},
		{name: "same token twice", file: "viewer:secret-token-abc-0123456789\n#\nadmin:secret-token-abc-0123456789\n", wantErr: "line 3: same token as line 1"},
		{name: "empty file: no tokens", file: "", wantRoles: nil},
		{name: "only comments: no tokens", file: "# nothing yet\n\n", wantRoles: nil},
		{name: "31 hex digits", file: "viewer:" + strings.Repeat("a", 32) + "\nadmin:" + strings.Repeat("0", 31) + "\n", wantErr: "line 2: token too short: 31 hex digits, want at least 32"},
		{name: "32 hex digits", file: "admin:" + strings.Repeat("0", 32) + "\n", wantRoles: []role{roleAdmin}},
		{name: "21 base64 characters", file: "admin:" + strings.Repeat("Zz_", 7) + "\n", wantErr: "line 1: token too short: 21 characters, want at least 22"},
		{name: "22 base64 characters", file: "admin:" + strings.Repeat("Zz_", 7) + "x\n", wantRoles: []role{roleAdmin}},
		{name: "one character", file: "admin:x\n", wantErr: "line 1: token too short"},
		{name: "too large", file: "viewer:v-tok-0123456789abcdefgh\n#" + strings.Repeat("x", maxTokensFileBytes), wantErr: "larger than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			entries, err := parseTokens([]byte(tc.file))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "token-abc") {
					t.Errorf("error echoes a token: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var roles []role
			for _, e := range entries {
				roles = append(roles, e.role)
			}
			if !slices.Equal(roles, tc.wantRoles) {
				t.Errorf("roles %v, want %v", roles, tc.wantRoles)
			}
		})
	}
}

func TestNewBadTokensFile(t *testing.T) {
	logger, _ := newLogger(t)
	path := filepath.Join(t.TempDir(), "tokens")
	writeFile(t, path, "# admin tokens\nviewer:"+viewerToken+"\nviewr:"+operatorToken+"\n")
	_, err := New(Config{TokensFile: path}, newFakeControl(), &fakeAuditor{}, logger)
	if err == nil {
		t.Fatal("New with a bad tokens file: no error")
	}
	msg := err.Error()
	if !strings.Contains(msg, path) || !strings.Contains(msg, "line 3") {
		t.Errorf("error %q does not name the file and line 3", msg)
	}
	for _, tok := range allTokens {
		if strings.Contains(msg, tok) {
			t.Errorf("error %q echoes a token", msg)
		}
	}

	_, err = New(Config{TokensFile: filepath.Join(t.TempDir(), "missing")}, newFakeControl(), &fakeAuditor{}, logger)
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("New with a missing tokens file: %v", err)
	}
}

// TestNoTokensFile checks that without a tokens file every request is
// refused, and that the warning saying so is logged once: by New (cmd/pushd
// leaves it to New), not for each request.
func TestNoTokensFile(t *testing.T) {
	b := setup(t, setupOpts{noTokensFile: true})
	for _, tok := range append([]string{""}, allTokens...) {
		if code := b.do(t, request{method: "GET", path: "/api/campaigns", token: tok}).Code; code != http.StatusUnauthorized {
			t.Errorf("GET /api/campaigns with token %q: %d, want 401", tok, code)
		}
	}
	warnings := 0
	for line := range strings.Lines(b.logs.String()) {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "admin.tokens_file") {
			warnings++
		}
	}
	if warnings != 1 {
		t.Errorf("%d warnings about admin.tokens_file, want 1", warnings)
	}
}

func TestTokensReload(t *testing.T) {
	b := setup(t, setupOpts{})
	status := func(token string) int {
		t.Helper()
		return b.do(t, request{method: "GET", path: "/api/campaigns", token: token}).Code
	}
	check := func(step string, want map[string]int) {
		t.Helper()
		for tok, code := range want {
			if got := status(tok); got != code {
				t.Errorf("%s: token %.10s...: %d, want %d", step, tok, got, code)
			}
		}
	}
	const rotated = "rotated-secret-0123456789"
	t.Cleanup(func() {
		if strings.Contains(b.logs.String(), rotated) {
			t.Error("logs contain the rotated token")
		}
	})

	check("start", map[string]int{viewerToken: 200, operatorToken: 200, rotated: 401})

	writeFile(t, b.tokensFile, "viewer:"+viewerToken+"\noperator:"+rotated+"\n")
	b.clock.Add(999 * time.Millisecond)
	check("within a second of the last check", map[string]int{operatorToken: 200, rotated: 401})

	b.clock.Add(time.Millisecond)
	check("rotated", map[string]int{viewerToken: 200, operatorToken: 401, rotated: 200})
	if w := b.do(t, request{method: "POST", path: "/api/campaigns/spring-sale/pause", token: rotated}); w.Code != 200 {
		t.Errorf("rotated operator token may not pause: %d", w.Code)
	}

	// A bad file revokes every token, not only its broken line's, and is
	// logged once however often it is checked.
	writeFile(t, b.tokensFile, "viewer:"+viewerToken+"\noperator "+rotated+"\n")
	for range 3 {
		b.clock.Add(time.Second)
		check("bad file", map[string]int{viewerToken: 401, rotated: 401})
	}
	if n := strings.Count(b.logs.String(), "line 2: want ROLE:TOKEN"); n != 1 {
		t.Errorf("bad tokens file logged %d times, want once:\n%s", n, b.logs)
	}
	// Fixed, they are back.
	writeFile(t, b.tokensFile, "viewer:"+viewerToken+"\noperator:"+rotated+"\n")
	b.clock.Add(time.Second)
	check("fixed", map[string]int{viewerToken: 200, rotated: 200})

	// A missing file revokes them too, logged once.
	if err := os.Remove(b.tokensFile); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		b.clock.Add(time.Second)
		check("missing file", map[string]int{viewerToken: 401, rotated: 401})
	}
	if n := strings.Count(b.logs.String(), "no such file"); n != 1 {
		t.Errorf("missing tokens file logged %d times, want once", n)
	}

	// So do an empty file, one with only comments, and one with a weak
	// token beside good ones.
	for _, content := range []string{"", "# viewer:" + viewerToken + "\n#operator:" + rotated + "\n", "viewer:" + viewerToken + "\nadmin:short\n"} {
		writeFile(t, b.tokensFile, "viewer:"+viewerToken+"\n")
		b.clock.Add(time.Second)
		check("restored", map[string]int{viewerToken: 200})
		writeFile(t, b.tokensFile, content)
		b.clock.Add(time.Second)
		check(fmt.Sprintf("file %q", content), map[string]int{viewerToken: 401})
	}

	// A file replaced by rename, as Kubernetes does with secrets.
	tmp := b.tokensFile + ".new"
	writeFile(t, tmp, "admin:"+adminToken+"\n")
	if err := os.Rename(tmp, b.tokensFile); err != nil {
		t.Fatal(err)
	}
	b.clock.Add(time.Second)
	check("replaced", map[string]int{viewerToken: 401, rotated: 401, adminToken: 200})

	// A clock that went back does not stop the checks.
	writeFile(t, b.tokensFile, "viewer:"+viewerToken+"\n")
	b.clock.Add(-time.Hour)
	check("clock went back", map[string]int{viewerToken: 200, adminToken: 401})
}

// Changes that keep the modification time are seen too: a different size,
// or a different file of the same size renamed into place. Rewriting the
// same file in place with the same size and time is the one change that
// goes unseen.
func TestTokensReloadSameModTime(t *testing.T) {
	b := setup(t, setupOpts{})
	mt := time.Unix(1_800_000_000, 0)
	write := func(path, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	check := func(step, token string, want int) {
		t.Helper()
		b.clock.Add(time.Second)
		if got := b.do(t, request{method: "GET", path: "/api/campaigns", token: token}).Code; got != want {
			t.Errorf("%s: %d, want %d", step, got, want)
		}
	}
	write(b.tokensFile, "admin:"+adminToken+"\n")
	check("first", adminToken, 200)

	write(b.tokensFile, "viewer:"+viewerToken+"\n") // shorter
	check("new size", adminToken, 401)
	check("new size", viewerToken, 200)

	const sameLength = "VIEWER-secret-0123456789"
	tmp := b.tokensFile + ".new"
	write(tmp, "viewer:"+sameLength+"\n")
	if err := os.Rename(tmp, b.tokensFile); err != nil {
		t.Fatal(err)
	}
	check("renamed, same size", viewerToken, 401)
	check("renamed, same size", sameLength, 200)
}

func TestActor(t *testing.T) {
	b := setup(t, setupOpts{})
	for _, tc := range []struct{ role, token string }{
		{"viewer", viewerToken}, {"operator", operatorToken}, {"admin", adminToken},
	} {
		p, ok := b.srv.tokens.lookup(tc.token)
		want := actorOf(tc.role, tc.token)
		if !ok || p.actor != want || p.role.String() != tc.role {
			t.Errorf("lookup(%s token) = %+v %v, want actor %s", tc.role, p, ok, want)
		}
		if len(p.actor) != len(tc.role)+1+8 || strings.Contains(p.actor, tc.token) {
			t.Errorf("actor %q", p.actor)
		}
	}
}
