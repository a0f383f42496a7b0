package admin

import (
	"encoding/json"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/pushd/pushd/dispatcher"
)

func limitsOf(t *testing.T, w *httptest.ResponseRecorder) map[string]dispatcher.LimitInfo {
	t.Helper()
	var got struct{ Limits []dispatcher.LimitInfo }
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatalf("body %s: %v", w.Body, err)
	}
	out := map[string]dispatcher.LimitInfo{}
	for _, li := range got.Limits {
		out[li.Level] = li
	}
	return out
}

func TestLimitsAPI(t *testing.T) {
	b := setup(t, setupOpts{})
	if w := b.do(t, request{method: "GET", path: "/api/limits", token: viewerToken}); w.Code != 200 || len(limitsOf(t, w)) != 3 {
		t.Fatalf("GET: %d %s", w.Code, w.Body)
	}
	w := b.do(t, request{method: "PUT", path: "/api/limits/apns", token: operatorToken, body: `{"per_second": 2000, "burst": 50}`})
	if w.Code != 200 {
		t.Fatalf("PUT: %d %s", w.Code, w.Body)
	}
	if li := limitsOf(t, w)["apns"]; li.PerSecond != 2000 || li.Burst != 50 || li.Operator == nil {
		t.Errorf("apns after PUT: %+v", li)
	}
	if got, want := b.ctl.notes.Entries(), []string{actorOf("operator", operatorToken) + " limit.set apns"}; !slices.Equal(got, want) {
		t.Errorf("audited changes %q, want %q", got, want)
	}
	w = b.do(t, request{method: "DELETE", path: "/api/limits/apns", token: operatorToken})
	if li := limitsOf(t, w)["apns"]; w.Code != 200 || li.Operator != nil {
		t.Errorf("DELETE: %d %+v", w.Code, li)
	}

	for _, tc := range []struct {
		name   string
		req    request
		status int
	}{
		{"viewer may not set", request{method: "PUT", path: "/api/limits/apns", token: viewerToken, body: `{"per_second": 1}`}, 403},
		{"no token", request{method: "GET", path: "/api/limits"}, 401},
		{"unknown level", request{method: "PUT", path: "/api/limits/sms", token: operatorToken, body: `{"per_second": 1}`}, 404},
		{"per_second missing", request{method: "PUT", path: "/api/limits/fcm", token: operatorToken, body: `{"burst": 1}`}, 400},
		{"negative", request{method: "PUT", path: "/api/limits/fcm", token: operatorToken, body: `{"per_second": -5}`}, 400},
		{"unknown field", request{method: "PUT", path: "/api/limits/fcm", token: operatorToken, body: `{"rate": 5}`}, 400},
	} {
		if w := b.do(t, tc.req); w.Code != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, w.Code, w.Body, tc.status)
		}
	}
	if got := len(b.ctl.notes.Entries()); got != 2 {
		t.Errorf("%d audit entries, want 2 (refused changes are not audited)", got)
	}
}
