package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/pushd/pushd/dispatcher"
)

const escapedID = "a%2Fb%20c%25d" // campaignIDs[1], "a/b c%d"

func TestRoutes(t *testing.T) {
	errDB := errors.New("store: connection refused to 10.0.0.7:5432")
	var gotRate struct {
		called bool
		rate   *float64
	}
	recordRate := func(b *bundle) {
		next := b.ctl.SetCampaignRateFn
		b.ctl.SetCampaignRateFn = func(ctx context.Context, id string, perSecond *float64) (dispatcher.CampaignInfo, error) {
			gotRate.called, gotRate.rate = true, perSecond
			return next(ctx, id, perSecond)
		}
	}
	wantRate := func(want *float64) func(t *testing.T, b *bundle, w *httptest.ResponseRecorder) {
		return func(t *testing.T, b *bundle, w *httptest.ResponseRecorder) {
			t.Helper()
			switch {
			case !gotRate.called:
				t.Error("SetCampaignRate not called")
			case (want == nil) != (gotRate.rate == nil), want != nil && *want != *gotRate.rate:
				t.Errorf("SetCampaignRate got %v, want %v", gotRate.rate, want)
			}
			c := campaignOf(t, w)
			if want == nil && c.RateSource != "message" || want != nil && (c.RateSource != "operator" || c.RatePerSecond != *want) {
				t.Errorf("answer %+v, want rate %v", c, want)
			}
		}
	}
	rateNotCalled := func(t *testing.T, _ *bundle, _ *httptest.ResponseRecorder) {
		t.Helper()
		if gotRate.called {
			t.Error("SetCampaignRate called")
		}
	}
	wantCampaign := func(id string, status dispatcher.Status) func(t *testing.T, b *bundle, w *httptest.ResponseRecorder) {
		return func(t *testing.T, _ *bundle, w *httptest.ResponseRecorder) {
			t.Helper()
			if c := campaignOf(t, w); c.ID != id || c.Status != status {
				t.Errorf("answer %+v, want campaign %q %s", c, id, status)
			}
		}
	}
	twelve, zero := 12.5, 0.0

	tests := []struct {
		name       string
		opts       setupOpts
		before     []request // made first, each must succeed
		req        request
		wantStatus int
		wantError  string // in the error message
		check      func(t *testing.T, b *bundle, w *httptest.ResponseRecorder)
	}{
		{
			name: "list", req: request{method: "GET", path: "/api/campaigns", token: viewerToken}, wantStatus: 200,
			check: func(t *testing.T, _ *bundle, w *httptest.ResponseRecorder) {
				var got struct{ Campaigns []dispatcher.CampaignInfo }
				// Both created at t0: in id order.
				if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || len(got.Campaigns) != 2 || got.Campaigns[0].ID != campaignIDs[1] {
					t.Errorf("body %s (%v), want both campaigns", w.Body, err)
				}
			},
		},
		{
			name: "list empty is []",
			opts: setupOpts{adjust: func(b *bundle) {
				b.ctl.CampaignsFn = func(context.Context) ([]dispatcher.CampaignInfo, error) { return nil, nil }
			}},
			req: request{method: "GET", path: "/api/campaigns", token: viewerToken}, wantStatus: 200,
			check: func(t *testing.T, _ *bundle, w *httptest.ResponseRecorder) {
				if got := strings.TrimSpace(w.Body.String()); got != `{"campaigns":[],"next":""}` {
					t.Errorf("body %s", got)
				}
			},
		},
		{
			name: "list fails",
			opts: setupOpts{adjust: func(b *bundle) {
				b.ctl.CampaignsFn = func(context.Context) ([]dispatcher.CampaignInfo, error) { return nil, errDB }
			}},
			req: request{method: "GET", path: "/api/campaigns", token: viewerToken}, wantStatus: 500, wantError: "internal error",
		},
		{
			name: "get", req: request{method: "GET", path: "/api/campaigns/spring-sale", token: viewerToken}, wantStatus: 200,
			check: wantCampaign("spring-sale", dispatcher.StatusRunning),
		},
		{
			name: "head", req: request{method: "HEAD", path: "/api/campaigns/spring-sale", token: viewerToken}, wantStatus: 200,
		},
		{
			name: "get escaped id", req: request{method: "GET", path: "/api/campaigns/" + escapedID, token: viewerToken}, wantStatus: 200,
			check: wantCampaign("a/b c%d", dispatcher.StatusRunning),
		},
		{
			name: "get lower-case escape", req: request{method: "GET", path: "/api/campaigns/a%2fb%20c%25d", token: viewerToken}, wantStatus: 200,
			check: wantCampaign("a/b c%d", dispatcher.StatusRunning),
		},
		{
			name: "get unescaped slash is another path", req: request{method: "GET", path: "/api/campaigns/a/b%20c%25d", token: viewerToken},
			wantStatus: 404, wantError: "no such route",
		},
		{
			name: "get unknown", req: request{method: "GET", path: "/api/campaigns/nope", token: viewerToken},
			wantStatus: 404, wantError: `campaign "nope": not found`,
		},
		{
			name: "get fails",
			opts: setupOpts{adjust: func(b *bundle) {
				b.ctl.CampaignFn = func(context.Context, string) (dispatcher.CampaignInfo, error) {
					return dispatcher.CampaignInfo{}, errDB
				}
			}},
			req:        request{method: "GET", path: "/api/campaigns/spring-sale", token: viewerToken},
			wantStatus: 500, wantError: "internal error",
			check: func(t *testing.T, b *bundle, w *httptest.ResponseRecorder) {
				if strings.Contains(w.Body.String(), "10.0.0.7") {
					t.Errorf("answer leaks the cause: %s", w.Body)
				}
				if logs := b.logs.String(); !strings.Contains(logs, "10.0.0.7") || !strings.Contains(logs, "level=ERROR") {
					t.Error("cause of a 500 not logged as an error")
				}
			},
		},
		{
			name: "rate", opts: setupOpts{adjust: recordRate},
			req:        request{method: "PUT", path: "/api/campaigns/spring-sale/rate", token: operatorToken, body: `{"rate_per_second": 12.5}`},
			wantStatus: 200, check: wantRate(&twelve),
		},
		{
			name: "rate 0: no campaign limit", opts: setupOpts{adjust: recordRate},
			req:        request{method: "PUT", path: "/api/campaigns/spring-sale/rate", token: operatorToken, body: `{"rate_per_second": 0}`},
			wantStatus: 200, check: wantRate(&zero),
		},
		{
			name: "rate null clears", opts: setupOpts{adjust: recordRate},
			before:     []request{{method: "PUT", path: "/api/campaigns/spring-sale/rate", token: operatorToken, body: `{"rate_per_second": 3}`}},
			req:        request{method: "PUT", path: "/api/campaigns/spring-sale/rate", token: operatorToken, body: `{"rate_per_second": null}`},
			wantStatus: 200, check: wantRate(nil),
		},
		{
			name: "rate escaped id", opts: setupOpts{adjust: recordRate},
			req:        request{method: "PUT", path: "/api/campaigns/" + escapedID + "/rate", token: operatorToken, body: `{"rate_per_second": 12.5}`},
			wantStatus: 200, check: wantCampaign("a/b c%d", dispatcher.StatusRunning),
		},
		{
			name: "rate missing", opts: setupOpts{adjust: recordRate},
			req:        request{method: "PUT", path: "/api/campaigns/spring-sale/rate", token: operatorToken, body: `{}`},
			wantStatus: 400, wantError: "rate_per_second is required", check: rateNotCalled,
		},
		{
			name: "rate negative", opts: setupOpts{adjust: recordRate},
			req:        request{method: "PUT", path: "/api/campaigns/spring-sale/rate", token: operatorToken, body: `{"rate_per_second": -1}`},
			wantStatus: 400, wantError: ">= 0", check: rateNotCalled,
		},
		{
			name: "rate out of range", opts: setupOpts{adjust: recordRate},
			req:        request{method: "PUT", path: "/api/campaigns/spring-sale/rate", token: operatorToken, body: `{"rate_per_second": 1e400}`},
			wantStatus: 400, wantError: "must be a number", check: rateNotCalled,
		},
		{
			name: "rate as string", opts: setupOpts{adjust: recordRate},
			req:        request{method: "PUT", path: "/api/campaigns/spring-sale/rate", token: operatorToken, body: `{"rate_per_second": "5"}`},
			wantStatus: 400, wantError: "must be a number", check: rateNotCalled,
		},
		{
			name: "rate bad JSON", opts: setupOpts{adjust: recordRate},
			req:        request{method: "PUT", path: "/api/campaigns/spring-sale/rate", token: operatorToken, body: `{"rate_per_second": 5,}`},
			wantStatus: 400, wantError: "invalid JSON", check: rateNotCalled,
		},
		{
			name: "rate truncated JSON", opts: setupOpts{adjust: recordRate},
			req:        request{method: "PUT", path: "/api/campaigns/spring-sale/rate", token: operatorToken, body: `{"rate_per_second": 5`},
			wantStatus: 400, wantError: "truncated", check: rateNotCalled,
		},
		{
			name: "rate empty body", opts: setupOpts{adjust: recordRate},
			req:        request{method: "PUT", path: "/api/campaigns/spring-sale/rate", token: operatorToken},
			wantStatus: 400, wantError: "empty", check: rateNotCalled,
		},
		{
			name: "rate not an object", opts: setupOpts{adjust: recordRate},
			req:        request{method: "PUT", path: "/api/campaigns/spring-sale/rate", token: operatorToken, body: `[5]`},
			wantStatus: 400, wantError: "want a JSON object", check: rateNotCalled,
		},
		{
			name: "rate unknown field", opts: setupOpts{adjust: recordRate},
			req:        request{method: "PUT", path: "/api/campaigns/spring-sale/rate", token: operatorToken, body: `{"rate_per_second": 5, "rate": 6}`},
			wantStatus: 400, wantError: `unknown field "rate"`, check: rateNotCalled,
		},
		{
			name: "rate trailing data", opts: setupOpts{adjust: recordRate},
			req:        request{method: "PUT", path: "/api/campaigns/spring-sale/rate", token: operatorToken, body: `{"rate_per_second": 5} {}`},
			wantStatus: 400, wantError: "more than one JSON value", check: rateNotCalled,
		},
		{
			name: "rate body too large", opts: setupOpts{maxBodyBytes: 64, adjust: recordRate},
			req: request{method: "PUT", path: "/api/campaigns/spring-sale/rate", token: operatorToken,
				body: `{"rate_per_second": 5` + strings.Repeat(" ", 64) + `}`},
			wantStatus: 413, wantError: "larger than 64 bytes", check: rateNotCalled,
		},
		{
			name: "rate body too large, chunked", opts: setupOpts{maxBodyBytes: 64, adjust: recordRate},
			req: request{method: "PUT", path: "/api/campaigns/spring-sale/rate", token: operatorToken, chunked: true,
				body: `{"rate_per_second": 5` + strings.Repeat(" ", 64) + `}`},
			wantStatus: 413, wantError: "larger than 64 bytes", check: rateNotCalled,
		},
		{
			name: "rate body at the limit", opts: setupOpts{maxBodyBytes: 64, adjust: recordRate},
			req: request{method: "PUT", path: "/api/campaigns/spring-sale/rate", token: operatorToken,
				body: `{"rate_per_second": 12.5` + strings.Repeat(" ", 64-len(`{"rate_per_second": 12.5}`)) + `}`},
			wantStatus: 200, check: wantRate(&twelve),
		},
		{
			name: "rate unknown campaign", opts: setupOpts{adjust: recordRate},
			req:        request{method: "PUT", path: "/api/campaigns/nope/rate", token: operatorToken, body: `{"rate_per_second": 5}`},
			wantStatus: 404, wantError: "not found", // from the change itself
			check: func(t *testing.T, b *bundle, _ *httptest.ResponseRecorder) {
				if n := b.ctl.notes.Entries(); len(n) != 0 {
					t.Errorf("audited %v", n)
				}
			},
		},
		{
			name: "rate fails",
			opts: setupOpts{adjust: func(b *bundle) {
				b.ctl.SetCampaignRateFn = func(context.Context, string, *float64) (dispatcher.CampaignInfo, error) {
					return dispatcher.CampaignInfo{}, errDB
				}
			}},
			req:        request{method: "PUT", path: "/api/campaigns/spring-sale/rate", token: operatorToken, body: `{"rate_per_second": 5}`},
			wantStatus: 500, wantError: "internal error",
		},
		{
			name: "pause", req: request{method: "POST", path: "/api/campaigns/spring-sale/pause", token: operatorToken},
			wantStatus: 200, check: wantCampaign("spring-sale", dispatcher.StatusPaused),
		},
		{
			name: "pause escaped id", req: request{method: "POST", path: "/api/campaigns/" + escapedID + "/pause", token: operatorToken},
			wantStatus: 200, check: wantCampaign("a/b c%d", dispatcher.StatusPaused),
		},
		{
			name: "pause unknown", req: request{method: "POST", path: "/api/campaigns/nope/pause", token: operatorToken},
			wantStatus: 404, wantError: "not found",
		},
		{
			name:       "resume",
			before:     []request{{method: "POST", path: "/api/campaigns/spring-sale/pause", token: operatorToken}},
			req:        request{method: "POST", path: "/api/campaigns/spring-sale/resume", token: operatorToken},
			wantStatus: 200, check: wantCampaign("spring-sale", dispatcher.StatusRunning),
		},
		{
			name:       "resume cancelled: conflict",
			before:     []request{{method: "POST", path: "/api/campaigns/spring-sale/cancel", token: operatorToken}},
			req:        request{method: "POST", path: "/api/campaigns/spring-sale/resume", token: operatorToken},
			wantStatus: 409, wantError: `campaign "spring-sale" is cancelled: conflict`,
		},
		{
			name: "cancel", req: request{method: "POST", path: "/api/campaigns/spring-sale/cancel", token: operatorToken},
			wantStatus: 200, check: wantCampaign("spring-sale", dispatcher.StatusCancelled),
		},
		{
			name: "cancel fails",
			opts: setupOpts{adjust: func(b *bundle) {
				b.ctl.CancelCampaignFn = func(context.Context, string) (dispatcher.CampaignInfo, error) {
					return dispatcher.CampaignInfo{}, errDB
				}
			}},
			req:        request{method: "POST", path: "/api/campaigns/spring-sale/cancel", token: operatorToken},
			wantStatus: 500, wantError: "internal error",
		},
		{
			name: "POST body too large", opts: setupOpts{maxBodyBytes: 64},
			req:        request{method: "POST", path: "/api/campaigns/spring-sale/pause", token: operatorToken, body: strings.Repeat("x", 1000)},
			wantStatus: 413, wantError: "larger than 64 bytes",
			check: func(t *testing.T, b *bundle, _ *httptest.ResponseRecorder) {
				if c, _ := b.ctl.Campaign(t.Context(), "spring-sale"); c.Status != dispatcher.StatusRunning {
					t.Errorf("campaign %s after a refused pause", c.Status)
				}
			},
		},
		{
			name: "POST body of unknown length, not read", opts: setupOpts{maxBodyBytes: 64},
			req:        request{method: "POST", path: "/api/campaigns/spring-sale/pause", token: operatorToken, chunked: true, body: strings.Repeat("x", 1000)},
			wantStatus: 200,
		},
		{
			name: "no such route", req: request{method: "GET", path: "/api/nothing", token: viewerToken},
			wantStatus: 404, wantError: "no such route",
		},
		{
			name: "no such route outside /api", req: request{method: "GET", path: "/nothing", token: viewerToken},
			wantStatus: 404, wantError: "no such route",
		},
		{
			name: "wrong method on a campaign", req: request{method: "DELETE", path: "/api/campaigns/spring-sale", token: operatorToken},
			wantStatus: 405, wantError: "method not allowed",
			check: func(t *testing.T, _ *bundle, w *httptest.ResponseRecorder) {
				if got := w.Header().Get("Allow"); got != "GET, HEAD, PUT" {
					t.Errorf("Allow = %q", got)
				}
			},
		},
		{
			name: "GET on an action", req: request{method: "GET", path: "/api/campaigns/spring-sale/pause", token: operatorToken},
			wantStatus: 405, wantError: "method not allowed",
			check: func(t *testing.T, _ *bundle, w *httptest.ResponseRecorder) {
				if got := w.Header().Get("Allow"); got != "POST" {
					t.Errorf("Allow = %q", got)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := setup(t, tc.opts)
			for _, req := range tc.before {
				if w := b.do(t, req); w.Code != http.StatusOK {
					t.Fatalf("%s %s: %d %s", req.method, req.path, w.Code, w.Body)
				}
			}
			gotRate.called, gotRate.rate = false, nil
			w := b.do(t, tc.req)
			if w.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %s", w.Code, tc.wantStatus, w.Body)
			}
			if tc.wantError != "" {
				if msg := errorOf(t, w); !strings.Contains(msg, tc.wantError) {
					t.Errorf("error %q, want it to contain %q", msg, tc.wantError)
				}
			}
			if got := w.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q", got)
			}
			if tc.check != nil {
				tc.check(t, b, w)
			}
		})
	}
}

func TestAuth(t *testing.T) {
	tests := []struct {
		name       string
		noTokens   bool
		req        request
		authHeader string // instead of req.token
		wantStatus int
		wantError  string
	}{
		{name: "viewer may GET", req: request{method: "GET", path: "/api/campaigns", token: viewerToken}, wantStatus: 200},
		{name: "viewer may GET one", req: request{method: "GET", path: "/api/campaigns/spring-sale", token: viewerToken}, wantStatus: 200},
		{name: "viewer may not pause", req: request{method: "POST", path: "/api/campaigns/spring-sale/pause", token: viewerToken},
			wantStatus: 403, wantError: "role viewer may not do this; it needs operator"},
		{name: "viewer may not resume", req: request{method: "POST", path: "/api/campaigns/spring-sale/resume", token: viewerToken}, wantStatus: 403},
		{name: "viewer may not cancel", req: request{method: "POST", path: "/api/campaigns/spring-sale/cancel", token: viewerToken}, wantStatus: 403},
		{name: "viewer may not set a rate", req: request{method: "PUT", path: "/api/campaigns/spring-sale/rate", token: viewerToken, body: `{"rate_per_second": 1}`}, wantStatus: 403},
		{name: "operator may GET", req: request{method: "GET", path: "/api/campaigns", token: operatorToken}, wantStatus: 200},
		{name: "operator may pause", req: request{method: "POST", path: "/api/campaigns/spring-sale/pause", token: operatorToken}, wantStatus: 200},
		{name: "operator may set a rate", req: request{method: "PUT", path: "/api/campaigns/spring-sale/rate", token: operatorToken, body: `{"rate_per_second": 1}`}, wantStatus: 200},
		{name: "admin may GET", req: request{method: "GET", path: "/api/campaigns", token: adminToken}, wantStatus: 200},
		{name: "admin may cancel", req: request{method: "POST", path: "/api/campaigns/spring-sale/cancel", token: adminToken}, wantStatus: 200},
		{name: "scheme is case-insensitive", req: request{method: "GET", path: "/api/campaigns"}, authHeader: "bearer " + viewerToken, wantStatus: 200},
		{name: "no token", req: request{method: "GET", path: "/api/campaigns"}, wantStatus: 401, wantError: "missing Authorization"},
		{name: "no token, POST", req: request{method: "POST", path: "/api/campaigns/spring-sale/pause"}, wantStatus: 401},
		{name: "no token, no route", req: request{method: "GET", path: "/api/nothing"}, wantStatus: 401},
		{name: "wrong token", req: request{method: "GET", path: "/api/campaigns", token: "not-a-token"}, wantStatus: 401, wantError: "invalid token"},
		{name: "token with a role prefix", req: request{method: "GET", path: "/api/campaigns", token: "viewer:" + viewerToken}, wantStatus: 401, wantError: "invalid token"},
		{name: "basic auth", req: request{method: "GET", path: "/api/campaigns"}, authHeader: "Basic dXNlcjpwYXNz", wantStatus: 401, wantError: "Bearer <token>"},
		{name: "empty bearer", req: request{method: "GET", path: "/api/campaigns"}, authHeader: "Bearer ", wantStatus: 401, wantError: "Bearer <token>"},
		{name: "bare token", req: request{method: "GET", path: "/api/campaigns"}, authHeader: viewerToken, wantStatus: 401},
		{name: "no tokens file", noTokens: true, req: request{method: "GET", path: "/api/campaigns", token: adminToken},
			wantStatus: 401, wantError: "admin.tokens_file is not configured"},
		{name: "no tokens file, no token", noTokens: true, req: request{method: "POST", path: "/api/campaigns/spring-sale/pause"},
			wantStatus: 401, wantError: "admin.tokens_file is not configured"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := setup(t, setupOpts{noTokensFile: tc.noTokens})
			req := tc.req
			if tc.authHeader != "" {
				req.header = map[string]string{"Authorization": tc.authHeader}
			}
			w := b.do(t, req)
			if w.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %s", w.Code, tc.wantStatus, w.Body)
			}
			if w.Code == 200 {
				return
			}
			msg := errorOf(t, w)
			if !strings.Contains(msg, tc.wantError) {
				t.Errorf("error %q, want it to contain %q", msg, tc.wantError)
			}
			if got := w.Header().Get("WWW-Authenticate"); (w.Code == 401) != strings.HasPrefix(got, "Bearer") {
				t.Errorf("status %d with WWW-Authenticate %q", w.Code, got)
			}
			// Refused requests change nothing.
			if c, _ := b.ctl.Campaign(t.Context(), "spring-sale"); c.Status != dispatcher.StatusRunning || c.RateSource != "message" {
				t.Errorf("refused request changed the campaign: %+v", c)
			}
			if n := len(b.auditor.Entries()); n != 0 {
				t.Errorf("%d audit entries for a refused request", n)
			}
		})
	}
}

func TestCrossOrigin(t *testing.T) {
	tests := []struct {
		name       string
		req        request
		wantStatus int
	}{
		{"cross-site POST", request{method: "POST", path: "/api/campaigns/spring-sale/pause", token: operatorToken,
			header: map[string]string{"Sec-Fetch-Site": "cross-site"}}, 403},
		{"same-site POST", request{method: "POST", path: "/api/campaigns/spring-sale/cancel", token: adminToken,
			header: map[string]string{"Sec-Fetch-Site": "same-site"}}, 403},
		{"cross-site PUT", request{method: "PUT", path: "/api/campaigns/spring-sale/rate", token: operatorToken, body: `{"rate_per_second": 1}`,
			header: map[string]string{"Sec-Fetch-Site": "cross-site"}}, 403},
		{"foreign Origin, old browser", request{method: "POST", path: "/api/campaigns/spring-sale/pause", token: operatorToken,
			header: map[string]string{"Origin": "https://evil.example"}}, 403},
		{"same-origin POST", request{method: "POST", path: "/api/campaigns/spring-sale/pause", token: operatorToken,
			header: map[string]string{"Sec-Fetch-Site": "same-origin"}}, 200},
		{"user-initiated POST", request{method: "POST", path: "/api/campaigns/spring-sale/pause", token: operatorToken,
			header: map[string]string{"Sec-Fetch-Site": "none"}}, 200},
		{"same Origin, old browser", request{method: "POST", path: "/api/campaigns/spring-sale/pause", token: operatorToken,
			header: map[string]string{"Origin": "http://example.com"}}, 200},
		{"non-browser POST", request{method: "POST", path: "/api/campaigns/spring-sale/pause", token: operatorToken}, 200},
		{"cross-site GET", request{method: "GET", path: "/api/campaigns/spring-sale", token: viewerToken,
			header: map[string]string{"Sec-Fetch-Site": "cross-site"}}, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := setup(t, setupOpts{})
			w := b.do(t, tc.req)
			if w.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %s", w.Code, tc.wantStatus, w.Body)
			}
			if w.Code != 403 {
				return
			}
			if msg := errorOf(t, w); !strings.Contains(msg, "cross-origin") {
				t.Errorf("error %q", msg)
			}
			if c, _ := b.ctl.Campaign(t.Context(), "spring-sale"); c.Status != dispatcher.StatusRunning || c.RateSource != "message" {
				t.Errorf("refused request changed the campaign: %+v", c)
			}
			if n := len(b.auditor.Entries()); n != 0 {
				t.Errorf("%d audit entries for a refused request", n)
			}
		})
	}
}

// TestAudit: every campaign change reaches the store with the audit note
// of who made it, so that the store records it in the change's own
// transaction (the records themselves are tested in the store); refused
// changes are not recorded.
func TestAudit(t *testing.T) {
	b := setup(t, setupOpts{})
	b.doAll(t, []statusRequest{
		{request{method: "GET", path: "/api/campaigns", token: operatorToken}, 200},
		{request{method: "GET", path: "/api/campaigns/spring-sale", token: operatorToken}, 200},
		{request{method: "PUT", path: "/api/campaigns/spring-sale/rate", token: operatorToken, body: `{"rate_per_second": 7}`}, 200},
		{request{method: "PUT", path: "/api/campaigns/spring-sale/rate", token: operatorToken, body: `{"rate_per_second": -7}`}, 400},
		{request{method: "POST", path: "/api/campaigns/" + escapedID + "/pause", token: adminToken}, 200},
		{request{method: "POST", path: "/api/campaigns/spring-sale/pause", token: viewerToken}, 403},
		{request{method: "POST", path: "/api/campaigns/nope/pause", token: adminToken}, 404},
		{request{method: "POST", path: "/api/campaigns/" + escapedID + "/resume", token: operatorToken}, 200},
		{request{method: "PUT", path: "/api/campaigns/spring-sale/rate", token: adminToken, body: `{"rate_per_second": null}`}, 200},
		{request{method: "POST", path: "/api/campaigns/spring-sale/cancel", token: operatorToken}, 200},
		{request{method: "POST", path: "/api/campaigns/spring-sale/resume", token: operatorToken}, 409},
	})
	op, adm := actorOf("operator", operatorToken), actorOf("admin", adminToken)
	want := []string{
		op + " campaign.rate spring-sale",
		adm + " campaign.pause a/b c%d",
		op + " campaign.resume a/b c%d",
		adm + " campaign.rate spring-sale",
		op + " campaign.cancel spring-sale",
	}
	if got := b.ctl.notes.Entries(); !slices.Equal(got, want) {
		t.Errorf("audited changes:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, e := range b.ctl.notes.Entries() {
		for _, tok := range allTokens {
			if strings.Contains(e, tok) {
				t.Errorf("audit actor shows a token: %s", e)
			}
		}
	}
}

func TestRequestLogsAtDebug(t *testing.T) {
	b := setup(t, setupOpts{})
	b.do(t, request{method: "POST", path: "/api/campaigns/spring-sale/pause", token: operatorToken})
	b.do(t, request{method: "GET", path: "/api/campaigns", token: "wrong"})
	var lines []string
	for line := range strings.Lines(b.logs.String()) {
		if strings.Contains(line, "msg=\"admin request\"") {
			lines = append(lines, line)
			if !strings.Contains(line, "level=DEBUG") {
				t.Errorf("request logged above debug: %s", line)
			}
		}
	}
	if len(lines) != 2 || !strings.Contains(lines[0], "status=200") || !strings.Contains(lines[0], "actor="+actorOf("operator", operatorToken)) ||
		!strings.Contains(lines[1], "status=401") {
		t.Errorf("request logs:\n%s", strings.Join(lines, ""))
	}
}

func TestErrorStatus(t *testing.T) {
	tests := []struct {
		err        error
		wantStatus int
		wantMsg    string
	}{
		{badRequest("bad %s", "thing"), 400, "bad thing"},
		{unauthenticated("who"), 401, "who"},
		{errNoTokensFile, 401, "admin.tokens_file is not configured: the admin API refuses every request"},
		{forbidden("no"), 403, "no"},
		{errCrossOrigin, 403, "cross-origin request refused"},
		{errNoRoute, 404, "no such route"},
		{errMethod, 405, "method not allowed"},
		{&http.MaxBytesError{Limit: 10}, 413, "request body larger than 10 bytes"},
		{errors.Join(errors.New("decode"), &http.MaxBytesError{Limit: 10}), 413, "request body larger than 10 bytes"},
		{dispatcher.ErrNotFound, 404, "not found"},
		{errors.New("x: " + dispatcher.ErrNotFound.Error()), 500, "internal error"},
		{wrap("campaign c", dispatcher.ErrNotFound), 404, "campaign c: not found"},
		{wrap("campaign c is cancelled", dispatcher.ErrConflict), 409, "campaign c is cancelled: conflict"},
		{errors.New("secret internals"), 500, "internal error"},
		{context.Canceled, 500, "internal error"},
	}
	for _, tc := range tests {
		status, msg := errorStatus(tc.err)
		if status != tc.wantStatus || msg != tc.wantMsg {
			t.Errorf("errorStatus(%v) = %d %q, want %d %q", tc.err, status, msg, tc.wantStatus, tc.wantMsg)
		}
	}
}

func wrap(msg string, err error) error { return &wrapped{msg, err} }

type wrapped struct {
	msg string
	err error
}

func (w *wrapped) Error() string { return w.msg + ": " + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }
