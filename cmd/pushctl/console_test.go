package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recordingAdmin answers every request with answer and records it.
func recordingAdmin(t *testing.T, answer string) (url string, got *[]string) {
	t.Helper()
	var reqs []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		reqs = append(reqs, r.Method+" "+r.URL.RequestURI()+" "+string(body))
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(401)
			return
		}
		if strings.Contains(r.URL.Path, "/approve") {
			w.WriteHeader(403)
			_, _ = w.Write([]byte(`{"error":"a campaign must be approved by someone other than who scheduled it"}`))
			return
		}
		_, _ = w.Write([]byte(answer))
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &reqs
}

func tokenFileFor(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConsoleCampaigns(t *testing.T) {
	url, got := recordingAdmin(t, `{"id":"xmas","status":"draft","source":"console"}`)
	tokenFile := tokenFileFor(t)
	file := filepath.Join(t.TempDir(), "campaign.json")
	if err := os.WriteFile(file, []byte(`{"id":"xmas","audience":"aud","notification":{"title":"Hi"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	run1 := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"campaigns", "-admin", url, "-token-file", tokenFile}, args...), func(string) string { return "" }, nil, &out)
		return out.String(), err
	}
	out, err := run1("create", "-file", file)
	if err != nil || !strings.Contains(out, `"status": "draft"`) {
		t.Fatalf("create: %v\n%s", err, out)
	}
	for _, a := range []string{"preview", "test", "schedule"} {
		if _, err := run1(a, "xmas"); err != nil {
			t.Fatalf("%s: %v", a, err)
		}
	}
	if _, err := run1("edit", "xmas", "-file", file); err != nil {
		t.Fatal(err)
	}
	if _, err := run1("approve", "xmas"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("approve: %v, want the 403 shown", err)
	}
	want := []string{
		`POST /api/campaigns {"id":"xmas","audience":"aud","notification":{"title":"Hi"}}`,
		"POST /api/campaigns/xmas/preview ",
		"POST /api/campaigns/xmas/test ",
		"POST /api/campaigns/xmas/schedule ",
		`PUT /api/campaigns/xmas {"id":"xmas","audience":"aud","notification":{"title":"Hi"}}`,
		"POST /api/campaigns/xmas/approve ",
	}
	if strings.Join(*got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(*got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := run1("create"); err == nil || !strings.Contains(err.Error(), "-file") {
		t.Errorf("create without -file: %v", err)
	}
	if _, err := run1("create", "-file", filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("create with a missing file: no error")
	}
}

func TestAuditCommand(t *testing.T) {
	url, got := recordingAdmin(t, `{"entries":[{"id":7,"at":"2026-12-04T09:00:00Z","actor":"operator:d99c0a02","action":"campaign.cancel","target":"xmas"}],"next_before":7}`)
	var out bytes.Buffer
	err := run(context.Background(), []string{"audit", "-admin", url, "-token-file", tokenFileFor(t),
		"-action", "campaign.cancel", "-since", "2026-12-01T00:00:00Z", "-limit", "1"}, func(string) string { return "" }, nil, &out)
	if err != nil {
		t.Fatal(err)
	}
	if want := "GET /api/audit?action=campaign.cancel&limit=1&since=2026-12-01T00%3A00%3A00Z "; (*got)[0] != want {
		t.Errorf("request %q, want %q", (*got)[0], want)
	}
	for _, s := range []string{"campaign.cancel", "xmas", "operator:d99c0a02", "-before 7"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, out.String())
		}
	}
}
