package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushd/pushd/dispatcher"
)

func TestCampaigns(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(401)
			_, _ = w.Write([]byte(`{"error":"no valid token"}`))
			return
		}
		body, _ := io.ReadAll(r.Body)
		path := r.URL.EscapedPath()
		if r.URL.RawQuery != "" {
			path += "?" + r.URL.RawQuery
		}
		got = append(got, r.Method+" "+path+" "+string(body))
		if r.URL.Path == "/api/campaigns/missing" {
			w.WriteHeader(404)
			_, _ = w.Write([]byte(`{"error":"campaign missing: not found"}`))
			return
		}
		info := dispatcher.CampaignInfo{ID: "spring/sale", Status: dispatcher.StatusRunning, RatePerSecond: 5, Counters: dispatcher.Counters{Received: 10, Sent: 7}}
		if r.URL.Path == "/api/campaigns" {
			// Two pages: the second has another campaign.
			if r.URL.Query().Get("after") == "" {
				_ = json.NewEncoder(w).Encode(map[string]any{"campaigns": []dispatcher.CampaignInfo{info}, "next": "p2"})
				return
			}
			older := dispatcher.CampaignInfo{ID: "winter-sale", Status: dispatcher.StatusFinished}
			_ = json.NewEncoder(w).Encode(map[string]any{"campaigns": []dispatcher.CampaignInfo{older}, "next": ""})
			return
		}
		_ = json.NewEncoder(w).Encode(info)
	}))
	defer srv.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run1 := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"campaigns", "-admin", srv.URL, "-token-file", tokenFile}, args...), func(string) string { return "" }, nil, &out)
		return out.String(), err
	}
	out, err := run1("list")
	if err != nil || !strings.Contains(out, "spring/sale") || !strings.Contains(out, "running") || !strings.Contains(out, "winter-sale") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"show", "spring/sale"}, {"pause", "spring/sale"}, {"rate", "spring/sale", "250"}, {"rate", "spring/sale", "default"}} {
		if _, err := run1(args...); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	want := []string{
		"GET /api/campaigns?limit=1000 ",
		"GET /api/campaigns?after=p2&limit=1000 ",
		"GET /api/campaigns/spring%2Fsale ",
		"POST /api/campaigns/spring%2Fsale/pause ",
		`PUT /api/campaigns/spring%2Fsale/rate {"rate_per_second":250}`,
		`PUT /api/campaigns/spring%2Fsale/rate {"rate_per_second": null}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := run1("show", "missing"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("missing campaign: %v", err)
	}
	if _, err := run1("rate", "x", "-1"); err == nil {
		t.Error("negative rate accepted")
	}
	var out2 bytes.Buffer
	err = run(context.Background(), []string{"campaigns", "-admin", srv.URL, "list"}, func(string) string { return "" }, nil, &out2)
	if err == nil || !strings.Contains(err.Error(), "no admin token") {
		t.Errorf("without a token: %v", err)
	}
}
