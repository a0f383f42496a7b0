package sim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sideshow/apns2"
)

func TestInspectionRoutes(t *testing.T) {
	b := setup(t, Config{TrackTokens: true, RecordLast: 5})
	push(t, b.apns, &apns2.Notification{DeviceToken: goodToken})
	push(t, b.apns, &apns2.Notification{DeviceToken: goodToken})
	push(t, b.apns, &apns2.Notification{DeviceToken: goneToken})

	t.Run("stats", func(t *testing.T) {
		status, h, body := b.do(t, "GET", "/sim/stats", nil, "")
		if status != 200 || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
			t.Fatalf("GET /sim/stats = %d %s", status, h.Get("Content-Type"))
		}
		var st Stats
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatalf("stats %s: %v", body, err)
		}
		if st.APNs.Requests != 3 || st.APNs.Accepted != 2 || st.APNs.Results["410 Unregistered"] != 1 || st.Tokens != 2 || st.Duplicates != 1 {
			t.Errorf("stats = %+v", st)
		}
		if !strings.Contains(string(body), `"retry_after_sent"`) {
			t.Errorf("stats JSON keys: %s", body)
		}
	})
	t.Run("token", func(t *testing.T) {
		status, _, body := b.do(t, "GET", "/sim/tokens/"+goodToken, nil, "")
		var got struct {
			Token           string
			Count, Accepted int
		}
		if err := json.Unmarshal(body, &got); status != 200 || err != nil {
			t.Fatalf("GET token = %d %s", status, body)
		}
		if got.Token != goodToken || got.Count != 2 || got.Accepted != 2 {
			t.Errorf("token = %+v", got)
		}
	})
	t.Run("recorded", func(t *testing.T) {
		status, _, body := b.do(t, "GET", "/sim/recorded/apns", nil, "")
		var got []struct {
			Token string
			Body  json.RawMessage
		}
		if err := json.Unmarshal(body, &got); status != 200 || err != nil {
			t.Fatalf("GET recorded = %d %s", status, body)
		}
		var compact bytes.Buffer
		if len(got) == 3 {
			_ = json.Compact(&compact, got[2].Body)
		}
		if len(got) != 3 || got[2].Token != goneToken || compact.String() != `{"aps":{"alert":"hello"}}` {
			t.Errorf("recorded = %s", body)
		}
		if status, _, _ := b.do(t, "GET", "/sim/recorded/gcm", nil, ""); status != 404 {
			t.Errorf("unknown provider = %d, want 404", status)
		}
	})
	t.Run("ca", func(t *testing.T) {
		status, _, body := b.do(t, "GET", "/sim/ca.pem", nil, "")
		if status != 200 || string(body) != string(b.sim.CACertPEM()) {
			t.Errorf("GET /sim/ca.pem = %d %.30q", status, body)
		}
	})
	t.Run("index", func(t *testing.T) {
		status, _, body := b.do(t, "GET", "/", nil, "")
		if status != 200 || !strings.Contains(string(body), "/3/device/") {
			t.Errorf("GET / = %d %s", status, body)
		}
	})
	t.Run("reset", func(t *testing.T) {
		status, _, _ := b.do(t, "POST", "/sim/reset", nil, "")
		if status != http.StatusNoContent {
			t.Fatalf("POST /sim/reset = %d", status)
		}
		if st := b.sim.Stats(); st.APNs.Requests != 0 || st.Tokens != 0 || len(b.sim.Recorded(APNs)) != 0 {
			t.Errorf("after reset: %+v", st)
		}
	})
}

func TestConfigRoute(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		wantStatus int
		want       Config // checked on success
		wantErr    string // substring of the error, on failure
	}{
		{"strings", `{"latency":"5ms","jitter":"1ms","retry_after":"2s","apns_errors":"too_many=0.5","fcm_errors":"unavailable=0.25"}`, 200,
			Config{Latency: 5 * time.Millisecond, Jitter: time.Millisecond, RetryAfter: 2 * time.Second, APNsErrors: ErrorMix{TooMany: 0.5}, FCMErrors: ErrorMix{Unavailable: 0.25}, TrackTokens: true}, ""},
		{"numbers and objects", `{"latency":5,"retry_after":1500,"fcm_errors":{"internal":0.1,"unregistered":0.2},"record_last":3,"seed":9}`, 200,
			Config{Latency: 5 * time.Millisecond, RetryAfter: 1500 * time.Millisecond, FCMErrors: ErrorMix{Internal: 0.1, Unregistered: 0.2}, RecordLast: 3, Seed: 9, TrackTokens: true}, ""},
		{"partial keeps the rest", `{"track_tokens":false}`, 200, Config{}, ""},
		{"clear a mix", `{"apns_errors":""}`, 200, Config{TrackTokens: true}, ""},
		{"unknown field", `{"latencyy":"5ms"}`, 400, Config{}, "unknown field"},
		{"bad duration", `{"latency":"soon"}`, 400, Config{}, "duration"},
		{"negative", `{"latency":"-5ms"}`, 400, Config{}, "Latency"},
		{"bad mix", `{"apns_errors":"timeout=1"}`, 400, Config{}, "unknown key"},
		{"bad mix object", `{"apns_errors":{"too_many":2}}`, 400, Config{}, "within 0..1"},
		{"trailing data", `{} {}`, 400, Config{}, "trailing"},
		{"not JSON", `latency=5ms`, 400, Config{}, "bad config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := setup(t, Config{TrackTokens: true})
			status, _, body := b.do(t, "PUT", "/sim/config", nil, tt.body)
			if status != tt.wantStatus {
				t.Fatalf("PUT /sim/config = %d %s, want %d", status, body, tt.wantStatus)
			}
			if tt.wantStatus != 200 {
				if !strings.Contains(string(body), tt.wantErr) {
					t.Errorf("error %s, want it to mention %q", body, tt.wantErr)
				}
				if got := b.sim.Config(); got != (Config{TrackTokens: true}) {
					t.Errorf("config changed by a refused PUT: %+v", got)
				}
				return
			}
			if got := b.sim.Config(); got != tt.want {
				t.Errorf("config = %+v, want %+v", got, tt.want)
			}
			status, _, got := b.do(t, "GET", "/sim/config", nil, "")
			if status != 200 || string(got) != string(body) {
				t.Errorf("GET /sim/config = %d %s, want the PUT answer %s", status, got, body)
			}
		})
	}
}
