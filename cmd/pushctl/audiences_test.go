package main

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	audienceJSON = `{"id":"a-1","name":"spring sale","recipients":3,"ios":2,"android":1,"zones":["Asia/Seoul"],"created_at":"2030-01-02T03:04:05Z","created_by":"operator:x"}`
	audienceCSV  = "platform,token,user_id,timezone\nios,abc,u-1,Asia/Seoul\n"
)

// fakeAudiencesAPI answers the admin API's audience routes and records
// each request.
type fakeAudiencesAPI struct {
	requestLog
}

func (f *fakeAudiencesAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, ok := f.record(w, r)
	if !ok {
		return
	}
	switch r.Method + " " + r.URL.Path {
	case "POST /api/audiences":
		if bytes.Contains(body, []byte("bad")) {
			w.WriteHeader(400)
			_, _ = io.WriteString(w, `{"error":"line 2: token: not a valid ios device token (malformed token)"}`)
			return
		}
		w.WriteHeader(201)
		_, _ = io.WriteString(w, audienceJSON)
	case "GET /api/audiences":
		_, _ = io.WriteString(w, `{"audiences":[`+audienceJSON+`]}`)
	case "GET /api/audiences/a-1":
		_, _ = io.WriteString(w, audienceJSON)
	case "GET /api/audiences/a-1/export":
		w.Header().Set("Content-Type", "text/csv")
		_, _ = io.WriteString(w, audienceCSV)
	case "DELETE /api/audiences/a-1":
		w.WriteHeader(204)
	case "DELETE /api/audiences/a-2":
		w.WriteHeader(409)
		_, _ = io.WriteString(w, `{"error":"audience \"a-2\" is used by campaign \"c-1\" (scheduled): delete it when the campaign is over"}`)
	default:
		w.WriteHeader(404)
		_, _ = io.WriteString(w, `{"error":"audience \"a-9\" not found"}`)
	}
}

func setupAudiencesCLI(t *testing.T) (api *fakeAudiencesAPI, run1 func(stdin string, args ...string) (string, error)) {
	t.Helper()
	api = &fakeAudiencesAPI{}
	return api, setupCLI(t, "audiences", api)
}

func TestAudiences(t *testing.T) {
	dir := t.TempDir()
	csvFile := filepath.Join(dir, "in.csv")
	if err := os.WriteFile(csvFile, []byte(audienceCSV), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args    []string
		stdin   string
		out     string
		request string
	}{
		{[]string{"import", "-name", "spring sale", csvFile}, "",
			"a-1: spring sale: 3 recipients imported (2 ios, 1 android)\n",
			"POST /api/audiences?name=spring+sale text/csv (streamed) " + strings.TrimSpace(audienceCSV)},
		{[]string{"import", "-", "-name", "spring sale"}, audienceCSV,
			"a-1: spring sale: 3 recipients imported (2 ios, 1 android)\n",
			"POST /api/audiences?name=spring+sale text/csv (streamed) " + strings.TrimSpace(audienceCSV)},
		{[]string{"list"}, "",
			"ID   NAME         RECIPIENTS  IOS  ANDROID  CREATED               BY\n" +
				"a-1  spring sale  3           2    1        2030-01-02T03:04:05Z  operator:x\n",
			"GET /api/audiences"},
		{[]string{"show", "a-1"}, "",
			"id:          a-1\nname:        spring sale\nrecipients:  3 (2 ios, 1 android)\nzones:       Asia/Seoul\ncreated:     2030-01-02T03:04:05Z by operator:x\n",
			"GET /api/audiences/a-1"},
		{[]string{"export", "a-1"}, "", audienceCSV, "GET /api/audiences/a-1/export"},
		{[]string{"delete", "a-1"}, "", "a-1: deleted\n", "DELETE /api/audiences/a-1"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			api, run1 := setupAudiencesCLI(t)
			out, err := run1(tc.stdin, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if out != tc.out {
				t.Errorf("output\n%s\nwant\n%s", out, tc.out)
			}
			if reqs := api.Requests(); len(reqs) != 1 || reqs[0] != tc.request {
				t.Errorf("requests %q, want %q", reqs, tc.request)
			}
		})
	}
}

func TestAudiencesExportFile(t *testing.T) {
	_, run1 := setupAudiencesCLI(t)
	file := filepath.Join(t.TempDir(), "out.csv")
	out, err := run1("", "export", "a-1", file)
	if err != nil || out != "a-1: exported to "+file+"\n" {
		t.Fatalf("%q, %v", out, err)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != audienceCSV {
		t.Errorf("file %q, %v", b, err)
	}
}

func TestAudiencesErrors(t *testing.T) {
	tests := []struct {
		args    []string
		stdin   string
		wantErr string
	}{
		{nil, "", "audiences: no action"},
		{[]string{"frobnicate"}, "", `audiences: unknown action "frobnicate"`},
		{[]string{"import", "x.csv"}, "", "audiences import: -name is required"},
		{[]string{"import", "-name", "n"}, "", "audiences import: want 1 argument(s), got 0"},
		{[]string{"show"}, "", "audiences show: want 1 argument(s), got 0"},
		{[]string{"export", "a", "b", "c"}, "", "audiences export: want 1 or 2 argument(s), got 3"},
		{[]string{"delete", "a-1", "-name", "x"}, "", "audiences delete: -name does not apply"},
		{[]string{"import", "-name", "n", "/no/such/file.csv"}, "", "no such file"},
		{[]string{"import", "-name", "n", "-"}, "platform,token,user_id\nios,bad,u\n",
			"POST /api/audiences?name=n: 400 Bad Request: line 2: token: not a valid ios device token (malformed token)"},
		{[]string{"show", "a-9"}, "", `GET /api/audiences/a-9: 404 Not Found: audience "a-9" not found`},
		{[]string{"delete", "a-2"}, "", `DELETE /api/audiences/a-2: 409 Conflict: audience "a-2" is used by campaign "c-1" (scheduled)`},
	}
	for _, tc := range tests {
		_, run1 := setupAudiencesCLI(t)
		if _, err := run1(tc.stdin, tc.args...); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%v: error %v, want it to contain %q", tc.args, err, tc.wantErr)
		}
	}
}
