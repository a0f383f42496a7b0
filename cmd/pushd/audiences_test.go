package main

// End-to-end test of audiences through pushd's admin API, with the store
// it opens.

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pushd/pushd/push/sim"
)

// postCSV posts body to path of d's admin API as an operator and returns
// the status and the answer.
func (h *harness) postCSV(d *daemon, path, body string) (int, string) {
	h.t.Helper()
	code, answer := h.call(d, "POST", path, operatorToken, "text/csv", strings.NewReader(body))
	return code, string(answer)
}

func TestAudienceImportExportDelete(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{})
	h.withAdmin()
	d := h.start(nil)

	var csv strings.Builder
	csv.WriteString("platform,token,user_id,timezone\n")
	for i := range 200 {
		if i%2 == 0 {
			fmt.Fprintf(&csv, "ios,%064x,user-%d,Asia/Seoul\n", i, i)
		} else {
			fmt.Fprintf(&csv, "android,fcm:%d,user-%d,\n", i, i)
		}
	}
	if code, body := h.postCSV(d, "/api/audiences?name=e2e", csv.String()+"ios,nothex,u,\n"); code != 400 || !strings.Contains(body, "line 202: token: not a valid ios device token") {
		t.Fatalf("bad file: %d %s, want 400 naming line 202", code, body)
	}
	var list struct {
		Audiences []map[string]any `json:"audiences"`
	}
	if code := h.api(d, "GET", "/api/audiences", viewerToken, nil, &list); code != 200 || len(list.Audiences) != 0 {
		t.Fatalf("after a refused file: %d %v, want no audiences", code, list.Audiences)
	}

	code, body := h.postCSV(d, "/api/audiences?name=e2e", csv.String())
	if code != 201 || !strings.Contains(body, `"recipients":200,"ios":100,"android":100`) || !strings.Contains(body, `"created_by":"operator:`) {
		t.Fatalf("import: %d %s", code, body)
	}
	if h.api(d, "GET", "/api/audiences", viewerToken, nil, &list); len(list.Audiences) != 1 {
		t.Fatalf("audiences %v", list.Audiences)
	}
	id, _ := list.Audiences[0]["id"].(string)

	req, _ := http.NewRequest("GET", "http://"+d.admin+"/api/audiences/"+id+"/export", nil)
	req.Header.Set("Authorization", "Bearer "+viewerToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	exported, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(exported) != csv.String() {
		t.Errorf("export: %d, %d bytes; want the file imported (%d bytes)", resp.StatusCode, len(exported), csv.Len())
	}

	if code := h.api(d, "DELETE", "/api/audiences/"+id, viewerToken, nil, nil); code != 403 {
		t.Errorf("delete as a viewer: %d, want 403", code)
	}
	if code := h.api(d, "DELETE", "/api/audiences/"+id, operatorToken, nil, nil); code != 204 {
		t.Errorf("delete: %d, want 204", code)
	}
	if code := h.api(d, "GET", "/api/audiences/"+id, viewerToken, nil, nil); code != 404 {
		t.Errorf("after delete: %d, want 404", code)
	}
}
