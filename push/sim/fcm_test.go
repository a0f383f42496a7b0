package sim

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/messaging"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/option"
)

const (
	fcmToken  = "fcm-token:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx"
	fcmToken2 = "fcm-token-2:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx"
	project   = "pushd-sim"
)

// fcmClient returns the real firebase messaging client, authenticated with
// a service account whose token_uri is the simulator, and talking to the
// simulator's FCM endpoint.
func fcmClient(t *testing.T, s *Server) *messaging.Client {
	t.Helper()
	path := filepath.Join(t.TempDir(), "service-account.json")
	if err := WriteServiceAccount(path, s.URL()+"/token", project); err != nil {
		t.Fatalf("WriteServiceAccount: %v", err)
	}
	creds, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	base := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.CertPool()}, ForceAttemptHTTP2: true}
	t.Cleanup(base.CloseIdleConnections)
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: base})
	gc, err := google.CredentialsFromJSONWithType(ctx, creds, google.ServiceAccount, "https://www.googleapis.com/auth/firebase.messaging")
	if err != nil {
		t.Fatalf("credentials: %v", err)
	}
	hc := &http.Client{Transport: &oauth2.Transport{Source: gc.TokenSource, Base: base}}
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: project},
		option.WithHTTPClient(hc), option.WithEndpoint(s.URL()+"/v1"))
	if err != nil {
		t.Fatalf("firebase app: %v", err)
	}
	mc, err := app.Messaging(ctx)
	if err != nil {
		t.Fatalf("messaging client: %v", err)
	}
	return mc
}

func TestFCMThroughFirebaseClient(t *testing.T) {
	b := setup(t, Config{TrackTokens: true, RecordLast: 10})
	mc := fcmClient(t, b.sim)
	ctx := context.Background()

	data := map[string]string{"deeplink": "app://sale", "n": "1"}
	name, err := mc.Send(ctx, &messaging.Message{
		Token:        fcmToken,
		Data:         data,
		Notification: &messaging.Notification{Title: "Spring sale", Body: "50% off"},
		Android:      &messaging.AndroidConfig{Priority: "high", CollapseKey: "sale", Notification: &messaging.AndroidNotification{ChannelID: "promo"}},
	})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if !strings.HasPrefix(name, "projects/"+project+"/messages/0:") {
		t.Errorf("message name = %q", name)
	}

	rec := b.sim.Recorded(FCM)
	if len(rec) != 1 {
		t.Fatalf("recorded %d FCM requests, want 1", len(rec))
	}
	r := rec[0]
	if r.Token != fcmToken {
		t.Errorf("recorded token = %q", r.Token)
	}
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || !b.sim.validAccessToken(bearer) {
		t.Errorf("Authorization = %q, want a bearer token the simulator issued", r.Header.Get("Authorization"))
	}
	var body struct {
		Message struct {
			Token string            `json:"token"`
			Data  map[string]string `json:"data"`
		} `json:"message"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatalf("recorded body %s: %v", r.Body, err)
	}
	if body.Message.Token != fcmToken || len(body.Message.Data) != len(data) || body.Message.Data["deeplink"] != "app://sale" || body.Message.Data["n"] != "1" {
		t.Errorf("recorded message = %+v, want token and data %v", body.Message, data)
	}

	if _, err := mc.SendDryRun(ctx, &messaging.Message{Token: fcmToken2}); err != nil {
		t.Fatalf("SendDryRun: %v", err)
	}
	st := b.sim.Stats()
	if st.FCM.Requests != 2 || st.FCM.Accepted != 1 || st.FCM.Results["200 validate_only"] != 1 {
		t.Errorf("FCM stats = %+v, want 2 requests, 1 accepted, 1 validate_only", st.FCM)
	}
	if got := b.sim.Tokens(); len(got) != 1 || got[fcmToken] != 1 {
		t.Errorf("Tokens = %v, want only the sent token", got)
	}
	if got := counterValue(t, b.reg, "pushsim_oauth_tokens_issued_total"); got != 1 {
		t.Errorf("tokens issued = %v, want 1 (the client reuses its token)", got)
	}
}

func TestFCMErrorsThroughFirebaseClient(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		token string
		is    func(error) bool
		isFn  string
	}{
		{"unregistered prefix", Config{}, FCMUnregisteredPrefix + "-abc", messaging.IsUnregistered, "IsUnregistered"},
		{"invalid prefix", Config{}, FCMInvalidPrefix + "-abc", messaging.IsInvalidArgument, "IsInvalidArgument"},
		{"third-party auth prefix", Config{}, FCMThirdPartyAuthPrefix + "-abc", messaging.IsThirdPartyAuthError, "IsThirdPartyAuthError"},
		{"malformed token", Config{}, "not a token!", messaging.IsInvalidArgument, "IsInvalidArgument"},
		{"quota mix", Config{FCMErrors: ErrorMix{TooMany: 1}}, fcmToken, messaging.IsQuotaExceeded, "IsQuotaExceeded"},
		{"internal mix", Config{FCMErrors: ErrorMix{Internal: 1}}, fcmToken, messaging.IsInternal, "IsInternal"},
		{"unregistered mix", Config{FCMErrors: ErrorMix{Unregistered: 1}}, fcmToken, messaging.IsUnregistered, "IsUnregistered"},
		{"bad token mix", Config{FCMErrors: ErrorMix{BadToken: 1}}, fcmToken, messaging.IsInvalidArgument, "IsInvalidArgument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := setup(t, tt.cfg)
			mc := fcmClient(t, b.sim)
			_, err := mc.Send(context.Background(), &messaging.Message{Token: tt.token, Data: map[string]string{"k": "v"}})
			if err == nil {
				t.Fatal("Send succeeded, want an error")
			}
			if !tt.is(err) {
				t.Fatalf("messaging.%s(%v) = false", tt.isFn, err)
			}
			if st := b.sim.Stats().FCM; st.Accepted != 0 || st.Requests != 1 {
				t.Errorf("FCM stats = %+v, want 1 request, none accepted", st)
			}
		})
	}
}

// TestFCMRaw checks validation and the Google error format at the HTTP
// level, including answers the firebase client retries (503) or refuses to
// send.
func TestFCMRaw(t *testing.T) {
	b := setup(t, Config{})
	const path = "/v1/projects/" + project + "/messages:send"
	tests := []struct {
		name       string
		path       string
		header     http.Header
		body       string
		wantStatus int
		wantStatusName,
		wantErrorCode string // FcmError detail, "" for none
	}{
		{"no credentials is fine", path, nil, `{"message":{"token":"` + fcmToken + `"}}`, 200, "", ""},
		{"topic", path, nil, `{"message":{"topic":"news"}}`, 200, "", ""},
		{"condition", path, nil, `{"message":{"condition":"'a' in topics"}}`, 200, "", ""},
		{"unknown bearer", path, http.Header{"Authorization": {"Bearer ya29.forged"}}, `{"message":{"token":"` + fcmToken + `"}}`, 401, "UNAUTHENTICATED", ""},
		{"not bearer", path, http.Header{"Authorization": {"Basic abc"}}, `{"message":{"token":"` + fcmToken + `"}}`, 401, "UNAUTHENTICATED", ""},
		{"not JSON", path, nil, `{"message":`, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"},
		{"no message", path, nil, `{}`, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"},
		{"no target", path, nil, `{"message":{"data":{"a":"b"}}}`, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"},
		{"two targets", path, nil, `{"message":{"token":"` + fcmToken + `","topic":"news"}}`, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"},
		{"number in data", path, nil, `{"message":{"token":"` + fcmToken + `","data":{"n":1}}}`, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"},
		{"reserved data key", path, nil, `{"message":{"token":"` + fcmToken + `","data":{"from":"x"}}}`, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"},
		{"data too big", path, nil, `{"message":{"token":"` + fcmToken + `","data":{"x":"` + strings.Repeat("x", 4100) + `"}}}`, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"},
		{"unregistered", path, nil, `{"message":{"token":"unregistered-1"}}`, 404, "NOT_FOUND", "UNREGISTERED"},
		{"unknown path", "/v1/projects/" + project + "/messages", nil, `{}`, 404, "NOT_FOUND", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := b.do(t, "POST", tt.path, tt.header, tt.body)
			if status != tt.wantStatus {
				t.Fatalf("status = %d %s, want %d", status, body, tt.wantStatus)
			}
			if status == 200 {
				var ok struct{ Name string }
				if err := json.Unmarshal(body, &ok); err != nil || !strings.HasPrefix(ok.Name, "projects/"+project+"/messages/") {
					t.Errorf("success body = %s", body)
				}
				return
			}
			checkGoogleError(t, body, status, tt.wantStatusName, tt.wantErrorCode)
		})
	}
}

// checkGoogleError checks body is a Google API error with the status and,
// unless wantCode is "", an FcmError detail with errorCode wantCode.
func checkGoogleError(t *testing.T, body []byte, code int, status, wantCode string) {
	t.Helper()
	var e struct {
		Error struct {
			Code    int
			Message string
			Status  string
			Details []struct {
				Type      string `json:"@type"`
				ErrorCode string `json:"errorCode"`
			}
		}
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %s: %v", body, err)
	}
	if e.Error.Code != code || e.Error.Status != status || e.Error.Message == "" {
		t.Errorf("error = %+v, want code %d status %s and a message", e.Error, code, status)
	}
	var got string
	for _, d := range e.Error.Details {
		if d.Type == "type.googleapis.com/google.firebase.fcm.v1.FcmError" {
			got = d.ErrorCode
		}
	}
	if got != wantCode {
		t.Errorf("FcmError errorCode = %q, want %q (body %s)", got, wantCode, body)
	}
}

func TestFCMErrorMixFormats(t *testing.T) {
	const path = "/v1/projects/" + project + "/messages:send"
	tests := []struct {
		mix            ErrorMix
		wantCode       int
		wantStatus     string
		wantErrorCode  string
		wantRetryAfter string
	}{
		{ErrorMix{Unregistered: 1}, 404, "NOT_FOUND", "UNREGISTERED", ""},
		{ErrorMix{BadToken: 1}, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", ""},
		{ErrorMix{TooMany: 1}, 429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "1"},
		{ErrorMix{Unavailable: 1}, 503, "UNAVAILABLE", "UNAVAILABLE", "1"},
		{ErrorMix{Internal: 1}, 500, "INTERNAL", "INTERNAL", ""},
	}
	for _, tt := range tests {
		t.Run(tt.wantErrorCode, func(t *testing.T) {
			b := setup(t, Config{FCMErrors: tt.mix, RetryAfter: 1})
			status, h, body := b.do(t, "POST", path, nil, `{"message":{"token":"`+fcmToken+`"}}`)
			if status != tt.wantCode {
				t.Fatalf("status = %d, want %d", status, tt.wantCode)
			}
			checkGoogleError(t, body, tt.wantCode, tt.wantStatus, tt.wantErrorCode)
			if got := h.Get("Retry-After"); got != tt.wantRetryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tt.wantRetryAfter)
			}
			if got := b.sim.Stats().FCM.Results; got[strconv.Itoa(tt.wantCode)+" "+tt.wantErrorCode] != 1 {
				t.Errorf("results = %v", got)
			}
		})
	}
}
