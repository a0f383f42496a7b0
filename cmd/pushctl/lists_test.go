package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

const exportCSV = "kind,value,platform,reason\nuser,u-1,,opt_out\ntoken,abc,ios,invalid_token\n"

// fakeListsAPI answers the admin API's list routes from a fixed list of
// five entries, in pages of at most two (a server may give fewer than
// asked), and records each request as
// "METHOD PATH?QUERY CONTENT-TYPE BODY".
type fakeListsAPI struct {
	requestLog
}

// requestLog checks the token of the requests to a fake admin API and
// records each as "METHOD PATH?QUERY CONTENT-TYPE BODY".
type requestLog struct {
	mu   sync.Mutex
	reqs []string
}

func (l *requestLog) Requests() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.reqs...)
}

// record records r and returns its body, or answers 401 and returns
// false when its token is not "tok".
func (l *requestLog) record(w http.ResponseWriter, r *http.Request) (body []byte, ok bool) {
	if r.Header.Get("Authorization") != "Bearer tok" {
		w.WriteHeader(401)
		_, _ = w.Write([]byte(`{"error":"invalid token"}`))
		return nil, false
	}
	body, _ = io.ReadAll(r.Body)
	line := r.Method + " " + r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		line += "?" + r.URL.RawQuery
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		line += " " + ct
	}
	if r.ContentLength == -1 {
		line += " (streamed)"
	}
	l.mu.Lock()
	l.reqs = append(l.reqs, strings.TrimSpace(line+" "+string(body)))
	l.mu.Unlock()
	return body, true
}

func (f *fakeListsAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, ok := f.record(w, r)
	if !ok {
		return
	}

	answer := func(v any) { _ = json.NewEncoder(w).Encode(v) }
	switch r.Method + " " + r.URL.Path {
	case "GET /api/lists/blacklist":
		answer(map[string]any{"list": "blacklist", "entries": 5})
	case "GET /api/lists/blacklist/entries":
		// Five entries, e0..e4; the cursor is the index of the last one.
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		from := 0
		if after := r.URL.Query().Get("after"); after != "" {
			n, _ := strconv.Atoi(strings.TrimPrefix(after, "c"))
			from = n + 1
		}
		var es []map[string]string
		next := ""
		i := from
		for ; i < 5 && len(es) < min(limit, 2); i++ {
			e := map[string]string{"kind": "user", "value": fmt.Sprintf("e%d", i), "platform": "", "reason": "", "created_at": "2030-01-02T03:04:05Z"}
			if i == 1 {
				e["kind"], e["platform"], e["reason"] = "token", "ios", "invalid_token"
			}
			es = append(es, e)
			next = fmt.Sprintf("c%d", i)
		}
		if i == 5 {
			next = ""
		}
		answer(map[string]any{"entries": es, "next": next})
	case "POST /api/lists/blacklist/entries":
		answer(map[string]int{"added": 1, "updated": 0})
	case "DELETE /api/lists/blacklist/entries":
		answer(map[string]int{"removed": 1})
	case "POST /api/lists/blacklist/import":
		answer(map[string]int{"imported": bytes.Count(body, []byte("\n")) - 1})
	case "GET /api/lists/blacklist/export", "GET /api/lists/blacklist/snapshots/7/export":
		w.Header().Set("Content-Type", "text/csv")
		_, _ = io.WriteString(w, exportCSV)
	case "GET /api/lists/blacklist/snapshots":
		answer(map[string]any{"snapshots": []map[string]any{
			{"id": 7, "list": "blacklist", "entries": 2, "created_at": "2030-01-02T03:04:05Z", "created_by": "operator:1a2b3c4d"},
		}})
	case "POST /api/lists/blacklist/snapshots/7/restore":
		answer(map[string]int{"restored": 2})
	case "GET /api/lists/whitelist/export":
		// Fails half-way.
		_, _ = io.WriteString(w, exportCSV)
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	default:
		w.WriteHeader(404)
		_, _ = w.Write([]byte(`{"error":"no list \"greylist\": want blacklist or whitelist"}`))
	}
}

func setupListsCLI(t *testing.T) (api *fakeListsAPI, run1 func(stdin string, args ...string) (string, error)) {
	t.Helper()
	api = &fakeListsAPI{}
	return api, setupCLI(t, "lists", api)
}

// setupCLI serves api and returns a function that runs pushctl command
// against it with the token "tok", args and stdin, and returns its output.
func setupCLI(t *testing.T, command string, api http.Handler) func(stdin string, args ...string) (string, error) {
	t.Helper()
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return func(stdin string, args ...string) (string, error) {
		t.Helper()
		var out bytes.Buffer
		err := run(t.Context(), append([]string{command, "-admin", srv.URL, "-token-file", tokenFile}, args...),
			func(string) string { return "" }, strings.NewReader(stdin), &out)
		return out.String(), err
	}
}

func TestLists(t *testing.T) {
	dir := t.TempDir()
	csvFile := filepath.Join(dir, "in.csv")
	if err := os.WriteFile(csvFile, []byte(exportCSV), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		stdin    string
		wantReqs []string
		wantOut  string
	}{
		{
			name: "show", args: []string{"show", "blacklist"},
			wantReqs: []string{"GET /api/lists/blacklist"},
			wantOut:  "blacklist: 5 entries\n",
		},
		{
			name: "add, flags after the arguments", args: []string{"add", "blacklist", "token", "abc", "-platform", "ios", "-reason", "invalid_token"},
			wantReqs: []string{`POST /api/lists/blacklist/entries application/json {"kind":"token","platform":"ios","reason":"invalid_token","value":"abc"}`},
			wantOut:  "blacklist: 1 added, 0 updated\n",
		},
		{
			name: "add, flags first", args: []string{"-reason", "abuse", "add", "blacklist", "user", "u 1"},
			wantReqs: []string{`POST /api/lists/blacklist/entries application/json {"kind":"user","platform":"","reason":"abuse","value":"u 1"}`},
		},
		{
			name: "add a value starting with -", args: []string{"add", "-reason", "abuse", "--", "blacklist", "user", "-1"},
			wantReqs: []string{`POST /api/lists/blacklist/entries application/json {"kind":"user","platform":"","reason":"abuse","value":"-1"}`},
		},
		{
			name: "remove", args: []string{"remove", "blacklist", "token", "abc", "-platform", "android"},
			wantReqs: []string{`DELETE /api/lists/blacklist/entries application/json {"entries":[{"kind":"token","platform":"android","value":"abc"}]}`},
			wantOut:  "blacklist: 1 removed\n",
		},
		{
			name: "import a file", args: []string{"import", "blacklist", csvFile},
			wantReqs: []string{"POST /api/lists/blacklist/import text/csv (streamed) " + strings.TrimSpace(exportCSV)},
			wantOut:  "blacklist: 2 entries imported\n",
		},
		{
			name: "import stdin, replacing", args: []string{"import", "blacklist", "-", "-replace"}, stdin: exportCSV,
			wantReqs: []string{"POST /api/lists/blacklist/import?replace=true text/csv (streamed) " + strings.TrimSpace(exportCSV)},
			wantOut:  "blacklist: replaced with 2 entries\n",
		},
		{
			name: "export to stdout", args: []string{"export", "blacklist"},
			wantReqs: []string{"GET /api/lists/blacklist/export"},
			wantOut:  exportCSV,
		},
		{
			name: "export a snapshot", args: []string{"export", "blacklist", "-snapshot", "7"},
			wantReqs: []string{"GET /api/lists/blacklist/snapshots/7/export"},
			wantOut:  exportCSV,
		},
		{
			name: "snapshots", args: []string{"snapshots", "blacklist"},
			wantReqs: []string{"GET /api/lists/blacklist/snapshots"},
			wantOut: "" +
				"ID  ENTRIES  CREATED               BY\n" +
				"7   2        2030-01-02T03:04:05Z  operator:1a2b3c4d\n",
		},
		{
			name: "restore", args: []string{"restore", "blacklist", "7"},
			wantReqs: []string{"POST /api/lists/blacklist/snapshots/7/restore"},
			wantOut:  "blacklist: restored snapshot 7, 2 entries\n",
		},
		{
			name: "entries, every page", args: []string{"entries", "blacklist"},
			wantReqs: []string{
				"GET /api/lists/blacklist/entries?limit=1000",
				"GET /api/lists/blacklist/entries?after=c1&limit=1000",
				"GET /api/lists/blacklist/entries?after=c3&limit=1000",
			},
			// Columns are aligned within each page.
			wantOut: "" +
				"KIND   PLATFORM  VALUE  REASON         CREATED\n" +
				"user   -         e0     -              2030-01-02T03:04:05Z\n" +
				"token  ios       e1     invalid_token  2030-01-02T03:04:05Z\n" +
				"user  -  e2  -  2030-01-02T03:04:05Z\n" +
				"user  -  e3  -  2030-01-02T03:04:05Z\n" +
				"user  -  e4  -  2030-01-02T03:04:05Z\n",
		},
		{
			name: "entries, at most 3", args: []string{"entries", "blacklist", "-limit", "3"},
			wantReqs: []string{
				"GET /api/lists/blacklist/entries?limit=3",
				"GET /api/lists/blacklist/entries?after=c1&limit=1",
			},
			wantOut: "" +
				"KIND   PLATFORM  VALUE  REASON         CREATED\n" +
				"user   -         e0     -              2030-01-02T03:04:05Z\n" +
				"token  ios       e1     invalid_token  2030-01-02T03:04:05Z\n" +
				"user  -  e2  -  2030-01-02T03:04:05Z\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			api, run1 := setupListsCLI(t)
			out, err := run1(tc.stdin, tc.args...)
			if err != nil {
				t.Fatalf("%v: %v\n%s", tc.args, err, out)
			}
			if got := api.Requests(); strings.Join(got, "\n") != strings.Join(tc.wantReqs, "\n") {
				t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.wantReqs, "\n"))
			}
			if tc.wantOut != "" && out != tc.wantOut {
				t.Errorf("output:\n%s\nwant:\n%s", out, tc.wantOut)
			}
		})
	}
}

func TestListsExportFile(t *testing.T) {
	_, run1 := setupListsCLI(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "blacklist.csv")
	out, err := run1("", "export", "blacklist", file)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(file); err != nil || string(got) != exportCSV {
		t.Errorf("file %q (%v), want the export", got, err)
	}
	if out != "blacklist: exported to "+file+"\n" {
		t.Errorf("output %q", out)
	}

	// A failed export leaves no file behind, not even a temporary one.
	bad := filepath.Join(dir, "whitelist.csv")
	if _, err := run1("", "export", "whitelist", bad); err == nil {
		t.Error("export cut short: no error")
	}
	if names, _ := filepath.Glob(filepath.Join(dir, "*")); len(names) != 1 {
		t.Errorf("files after a failed export: %v", names)
	}
	if _, err := run1("", "export", "whitelist"); err == nil {
		t.Error("export to stdout cut short: no error")
	}
}

func TestListsErrors(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{nil, "no action"},
		{[]string{"frobnicate", "blacklist"}, `unknown action "frobnicate"`},
		{[]string{"show"}, "lists show: want 1 argument(s), got 0"},
		{[]string{"add", "blacklist", "user"}, "lists add: want 3 argument(s), got 2"},
		{[]string{"export", "blacklist", "a", "b"}, "lists export: want 1 or 2 argument(s), got 3"},
		{[]string{"add", "blacklist", "user", "u", "-replace"}, "lists add: -replace does not apply"},
		{[]string{"show", "blacklist", "-reason", "x"}, "lists show: -reason does not apply"},
		{[]string{"entries", "blacklist", "-limit", "-1"}, "-limit -1"},
		{[]string{"import", "blacklist", "/no/such/file.csv"}, "no such file"},
		{[]string{"show", "greylist"}, `GET /api/lists/greylist: 404 Not Found: no list "greylist"`},
		{[]string{"show", "blacklist", "-nope"}, "flag provided but not defined: -nope"},
	}
	for _, tc := range tests {
		_, run1 := setupListsCLI(t)
		if _, err := run1("", tc.args...); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%v: error %v, want it to contain %q", tc.args, err, tc.wantErr)
		}
	}
}

func TestListsNeedsAToken(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"lists", "-admin", "http://127.0.0.1:1", "show", "blacklist"}, func(string) string { return "" }, nil, &out)
	if err == nil || !strings.Contains(err.Error(), "no admin token") {
		t.Errorf("without a token: %v", err)
	}
}
