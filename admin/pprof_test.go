package admin

import (
	"strings"
	"testing"
)

// TestPprofIsOffByDefaultAndForAdminsOnly: without admin.pprof the
// profile paths are unknown; with it, admins get the profiles, operators
// and viewers 403, and no credentials go to the sign-in page.
func TestPprofIsOffByDefaultAndForAdminsOnly(t *testing.T) {
	off := setup(t, setupOpts{})
	if w := off.do(t, request{method: "GET", path: "/debug/pprof/", token: adminToken}); w.Code != 404 {
		t.Errorf("pprof off: GET /debug/pprof/ as admin: %d, want 404", w.Code)
	}
	on := setup(t, setupOpts{config: func(c *Config) { c.Pprof = true }})
	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{"/debug/pprof/", adminToken, 200},
		{"/debug/pprof/heap?debug=1", adminToken, 200},
		{"/debug/pprof/goroutine?debug=1", adminToken, 200},
		{"/debug/pprof/cmdline", adminToken, 200},
		{"/debug/pprof/", operatorToken, 403},
		{"/debug/pprof/heap", viewerToken, 403},
		{"/debug/pprof/profile?seconds=1", operatorToken, 403},
		{"/debug/pprof/", "", 303}, // to the sign-in page, as every page
	} {
		w := on.do(t, request{method: "GET", path: tc.path, token: tc.token})
		if w.Code != tc.want {
			t.Errorf("GET %s with %q: %d, want %d", tc.path, tc.token, w.Code, tc.want)
		}
		if tc.want == 200 && tc.path == "/debug/pprof/heap?debug=1" && !strings.Contains(w.Body.String(), "heap profile") {
			t.Errorf("GET %s: not a heap profile: %.200s", tc.path, w.Body.String())
		}
	}
}
