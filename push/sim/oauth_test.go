package sim

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTokenEndpoint(t *testing.T) {
	b := setup(t, Config{})
	form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	assertion := "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9." + // {"alg":"RS256","typ":"JWT"}
		"eyJpc3MiOiJzYUBwLmlhbS5nc2VydmljZWFjY291bnQuY29tIiwiYXVkIjoiaHR0cHM6Ly9leGFtcGxlL3Rva2VuIn0." + // {"iss":"sa@p.iam.gserviceaccount.com","aud":"https://example/token"}
		"c2lnbmF0dXJl"
	tests := []struct {
		name       string
		values     url.Values
		wantStatus int
		wantError  string
	}{
		{"jwt bearer", url.Values{"grant_type": {jwtBearerGrant}, "assertion": {assertion}}, 200, ""},
		{"wrong grant", url.Values{"grant_type": {"client_credentials"}, "assertion": {assertion}}, 400, "unsupported_grant_type"},
		{"no assertion", url.Values{"grant_type": {jwtBearerGrant}}, 400, "invalid_grant"},
		{"two-part assertion", url.Values{"grant_type": {jwtBearerGrant}, "assertion": {assertion[:strings.LastIndex(assertion, ".")]}}, 400, "invalid_grant"},
		{"not base64", url.Values{"grant_type": {jwtBearerGrant}, "assertion": {"a!.b!.c!"}}, 400, "invalid_grant"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := b.do(t, "POST", "/token", form, tt.values.Encode())
			if status != tt.wantStatus {
				t.Fatalf("POST /token = %d %s, want %d", status, body, tt.wantStatus)
			}
			var got map[string]any
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("body %s: %v", body, err)
			}
			if tt.wantError != "" {
				if got["error"] != tt.wantError {
					t.Errorf("error = %v, want %s", got["error"], tt.wantError)
				}
				return
			}
			tok, _ := got["access_token"].(string)
			if tok == "" || got["token_type"] != "Bearer" || got["expires_in"] != 3600.0 {
				t.Fatalf("token answer = %s", body)
			}
			if !b.sim.validAccessToken(tok) {
				t.Error("issued token not accepted")
			}
			status, _, body = b.do(t, "POST", "/v1/projects/p/messages:send", http.Header{"Authorization": {"Bearer " + tok}}, `{"message":{"topic":"news"}}`)
			if status != 200 {
				t.Errorf("FCM send with the issued token = %d %s", status, body)
			}
		})
	}
}

func TestWriteServiceAccount(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sa.json")
	if err := WriteServiceAccount(path, "https://127.0.0.1:1/token", "demo"); err != nil {
		t.Fatalf("WriteServiceAccount: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var sa map[string]string
	if err := json.Unmarshal(raw, &sa); err != nil {
		t.Fatalf("service account JSON: %v", err)
	}
	want := map[string]string{"type": "service_account", "project_id": "demo", "token_uri": "https://127.0.0.1:1/token", "client_email": "pushsim@demo.iam.gserviceaccount.com"}
	for k, v := range want {
		if sa[k] != v {
			t.Errorf("%s = %q, want %q", k, sa[k], v)
		}
	}
	if !strings.HasPrefix(sa["private_key"], "-----BEGIN PRIVATE KEY-----") || sa["private_key_id"] == "" {
		t.Errorf("private key fields: %.40q, %q", sa["private_key"], sa["private_key_id"])
	}

	for _, args := range [][3]string{{path, "", "demo"}, {path, "https://x/token", ""}, {filepath.Join(t.TempDir(), "no", "dir.json"), "https://x/token", "demo"}} {
		if err := WriteServiceAccount(args[0], args[1], args[2]); err == nil {
			t.Errorf("WriteServiceAccount%q: want an error", args)
		}
	}
}
