package sim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v4"
	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/token"
	"golang.org/x/net/http2"
)

func TestAPNsAnswersThroughApns2(t *testing.T) {
	b := setup(t, Config{TrackTokens: true})
	tests := []struct {
		name       string
		n          apns2.Notification
		wantStatus int
		wantReason string
	}{
		{"accepted", apns2.Notification{DeviceToken: goodToken, Topic: "com.example.app"}, 200, ""},
		{"accepted with headers", apns2.Notification{
			DeviceToken: goodToken2, Topic: "com.example.app", Priority: apns2.PriorityLow,
			Expiration: time.Now().Add(time.Hour), PushType: apns2.PushTypeBackground, CollapseID: "sale",
			Payload: []byte(`{"aps":{"content-available":1},"deeplink":"app://x"}`),
		}, 200, ""},
		{"upper-case hex token", apns2.Notification{DeviceToken: strings.ToUpper("abcdef" + goodToken[6:])}, 200, ""},
		{"200-char token", apns2.Notification{DeviceToken: strings.Repeat("ab", 100)}, 200, ""},
		{"unregistered prefix", apns2.Notification{DeviceToken: goneToken}, 410, apns2.ReasonUnregistered},
		{"bad token prefix", apns2.Notification{DeviceToken: badToken}, 400, apns2.ReasonBadDeviceToken},
		{"short token", apns2.Notification{DeviceToken: "abcdef"}, 400, apns2.ReasonBadDeviceToken},
		{"long token", apns2.Notification{DeviceToken: strings.Repeat("ab", 101)}, 400, apns2.ReasonBadDeviceToken},
		{"non-hex token", apns2.Notification{DeviceToken: strings.Repeat("z", 64)}, 400, apns2.ReasonBadDeviceToken},
		{"bad priority", apns2.Notification{DeviceToken: goodToken, Priority: 7}, 400, apns2.ReasonBadPriority},
		{"bad push type", apns2.Notification{DeviceToken: goodToken, PushType: "shout"}, 400, apns2.ReasonInvalidPushType},
		{"bad apns-id", apns2.Notification{DeviceToken: goodToken, ApnsID: "not-a-uuid"}, 400, apns2.ReasonBadMessageID},
		{"long collapse id", apns2.Notification{DeviceToken: goodToken, CollapseID: strings.Repeat("c", 65)}, 400, apns2.ReasonBadCollapseID},
		{"payload without aps", apns2.Notification{DeviceToken: goodToken, Payload: []byte(`{"alert":"hi"}`)}, 400, "BadPayload"},
		{"aps not an object", apns2.Notification{DeviceToken: goodToken, Payload: []byte(`{"aps":"hi"}`)}, 400, "BadPayload"},
		{"payload not an object", apns2.Notification{DeviceToken: goodToken, Payload: []byte(`["aps"]`)}, 400, "BadPayload"},
		{"payload too large", apns2.Notification{DeviceToken: goodToken, Payload: []byte(`{"aps":{},"x":"` + strings.Repeat("x", 4096) + `"}`)}, 413, apns2.ReasonPayloadTooLarge},
		{"voip allows 5120 bytes", apns2.Notification{DeviceToken: goodToken, PushType: apns2.PushTypeVOIP, Payload: []byte(`{"aps":{},"x":"` + strings.Repeat("x", 5000) + `"}`)}, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := push(t, b.apns, &tt.n)
			if res.StatusCode != tt.wantStatus || res.Reason != tt.wantReason {
				t.Fatalf("answer = %d %q, want %d %q", res.StatusCode, res.Reason, tt.wantStatus, tt.wantReason)
			}
			if !validUUID(res.ApnsID) {
				t.Errorf("apns-id = %q, want a UUID", res.ApnsID)
			}
			if tt.wantStatus == 410 {
				if age := time.Since(res.Timestamp.Time); res.Timestamp.IsZero() || age < 0 || age > time.Minute {
					t.Errorf("410 timestamp = %v, want about now", res.Timestamp)
				}
			} else if !res.Timestamp.IsZero() {
				t.Errorf("timestamp %v on a %d answer", res.Timestamp, res.StatusCode)
			}
		})
	}
}

func TestAPNsEchoesApnsID(t *testing.T) {
	b := setup(t, Config{})
	const id = "123e4567-e89b-12d3-a456-426614174000"
	res := push(t, b.apns, &apns2.Notification{DeviceToken: goodToken, ApnsID: id})
	if res.StatusCode != 200 || res.ApnsID != id {
		t.Fatalf("answer = %d apns-id %q, want 200 with the request's apns-id", res.StatusCode, res.ApnsID)
	}
	res2 := push(t, b.apns, &apns2.Notification{DeviceToken: goodToken})
	if res2.ApnsID == "" || res2.ApnsID == id {
		t.Fatalf("generated apns-id = %q", res2.ApnsID)
	}
}

// TestAPNsRawRequests covers what apns2 cannot send: empty and malformed
// bodies, other methods and paths.
func TestAPNsRawRequests(t *testing.T) {
	b := setup(t, Config{})
	tests := []struct {
		name       string
		method     string
		path       string
		header     http.Header
		body       string
		wantStatus int
		wantReason string
	}{
		{"accepted", "POST", "/3/device/" + goodToken, nil, `{"aps":{"alert":"x"}}`, 200, ""},
		{"empty body", "POST", "/3/device/" + goodToken, nil, "", 400, "PayloadEmpty"},
		{"blank body", "POST", "/3/device/" + goodToken, nil, " \n", 400, "PayloadEmpty"},
		{"not JSON", "POST", "/3/device/" + goodToken, nil, `{"aps":`, 400, "BadPayload"},
		{"bad expiration", "POST", "/3/device/" + goodToken, http.Header{"Apns-Expiration": {"tomorrow"}}, `{"aps":{}}`, 400, "BadExpirationDate"},
		{"GET", "GET", "/3/device/" + goodToken, nil, "", 405, "MethodNotAllowed"},
		{"no token", "POST", "/3/device/", nil, `{"aps":{}}`, 400, "MissingDeviceToken"},
		{"bad path", "POST", "/3/devices/" + goodToken, nil, `{"aps":{}}`, 404, "BadPath"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, h, body := b.do(t, tt.method, tt.path, tt.header, tt.body)
			if status != tt.wantStatus {
				t.Fatalf("status = %d (%s), want %d", status, body, tt.wantStatus)
			}
			if !validUUID(h.Get("apns-id")) {
				t.Errorf("apns-id = %q", h.Get("apns-id"))
			}
			if tt.wantReason == "" {
				if len(body) != 0 {
					t.Errorf("body of a 200 = %q, want empty", body)
				}
				return
			}
			var got map[string]any
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("error body %q: %v", body, err)
			}
			if got["reason"] != tt.wantReason || len(got) != 1 {
				t.Errorf("error body = %s, want exactly reason %q", body, tt.wantReason)
			}
		})
	}
	if got := b.sim.Stats().APNs.Requests; got != int64(len(tests)) {
		t.Errorf("APNs requests = %d, want %d (every route counted)", got, len(tests))
	}
}

func TestAPNsErrorMixAndRetryAfter(t *testing.T) {
	tests := []struct {
		name           string
		mix            ErrorMix
		retryAfter     time.Duration
		wantStatus     int
		wantReason     string
		wantRetryAfter string
	}{
		{"too many", ErrorMix{TooMany: 1}, 1500 * time.Millisecond, 429, apns2.ReasonTooManyRequests, "2"},
		{"unavailable", ErrorMix{Unavailable: 1}, 3 * time.Second, 503, apns2.ReasonServiceUnavailable, "3"},
		{"too many without retry-after", ErrorMix{TooMany: 1}, 0, 429, apns2.ReasonTooManyRequests, ""},
		{"internal", ErrorMix{Internal: 1}, time.Second, 500, apns2.ReasonInternalServerError, ""},
		{"unregistered", ErrorMix{Unregistered: 1}, time.Second, 410, apns2.ReasonUnregistered, ""},
		{"bad token", ErrorMix{BadToken: 1}, time.Second, 400, apns2.ReasonBadDeviceToken, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := setup(t, Config{Seed: 1, APNsErrors: tt.mix, RetryAfter: tt.retryAfter})
			status, h, body := b.do(t, "POST", "/3/device/"+goodToken, nil, `{"aps":{}}`)
			var got struct{ Reason string }
			_ = json.Unmarshal(body, &got)
			if status != tt.wantStatus || got.Reason != tt.wantReason {
				t.Fatalf("answer = %d %s, want %d %s", status, body, tt.wantStatus, tt.wantReason)
			}
			if ra := h.Get("Retry-After"); ra != tt.wantRetryAfter {
				t.Errorf("Retry-After = %q, want %q", ra, tt.wantRetryAfter)
			}
			st := b.sim.Stats().APNs
			wantSent := int64(0)
			if tt.wantRetryAfter != "" {
				wantSent = 1
			}
			if st.RetryAfterSent != wantSent || st.Accepted != 0 {
				t.Errorf("stats = %+v, want %d Retry-After sent and nothing accepted", st, wantSent)
			}
			// The deterministic rules come first.
			res := push(t, b.apns, &apns2.Notification{DeviceToken: goneToken})
			if res.StatusCode != 410 {
				t.Errorf("deadbeef token under the mix = %d, want 410", res.StatusCode)
			}
		})
	}
}

func TestAPNsSetConfigAtRunTime(t *testing.T) {
	b := setup(t, Config{})
	if res := push(t, b.apns, &apns2.Notification{DeviceToken: goodToken}); res.StatusCode != 200 {
		t.Fatalf("before: %d", res.StatusCode)
	}
	b.sim.SetConfig(Config{APNsErrors: ErrorMix{Unavailable: 1}})
	if res := push(t, b.apns, &apns2.Notification{DeviceToken: goodToken}); res.StatusCode != 503 {
		t.Fatalf("after SetConfig: %d, want 503", res.StatusCode)
	}
	b.sim.SetConfig(Config{})
	if res := push(t, b.apns, &apns2.Notification{DeviceToken: goodToken}); res.StatusCode != 200 {
		t.Fatalf("after clearing: %d", res.StatusCode)
	}
}

// signJWT returns an ES256 token with the given header and claims.
func signJWT(t *testing.T, key *ecdsa.PrivateKey, header map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	tok := &jwt.Token{Header: header, Claims: claims, Method: jwt.SigningMethodES256}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

func TestAPNsProviderTokens(t *testing.T) {
	b := setup(t, Config{})
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	hdr := map[string]any{"alg": "ES256", "kid": "ABC123DEFG"}
	part := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	tests := []struct {
		name       string
		bearer     string // "" uses apns2's own token generation
		topic      string
		wantStatus int
		wantReason string
	}{
		{"apns2 token", "", "com.example.app", 200, ""},
		{"apns2 token without topic", "", "", 400, apns2.ReasonMissingTopic},
		{"garbage", "garbage", "com.example.app", 403, apns2.ReasonInvalidProviderToken},
		{"two parts", part(hdr) + "." + part(map[string]any{"iss": "T", "iat": now}), "com.example.app", 403, apns2.ReasonInvalidProviderToken},
		{"wrong alg", signJWT(t, key, map[string]any{"alg": "HS256", "kid": "K"}, jwt.MapClaims{"iss": "T", "iat": now}), "com.example.app", 403, apns2.ReasonInvalidProviderToken},
		{"no kid", signJWT(t, key, map[string]any{"alg": "ES256"}, jwt.MapClaims{"iss": "T", "iat": now}), "com.example.app", 403, apns2.ReasonInvalidProviderToken},
		{"no iss", signJWT(t, key, hdr, jwt.MapClaims{"iat": now}), "com.example.app", 403, apns2.ReasonInvalidProviderToken},
		{"no iat", signJWT(t, key, hdr, jwt.MapClaims{"iss": "T"}), "com.example.app", 403, apns2.ReasonInvalidProviderToken},
		{"stale", signJWT(t, key, hdr, jwt.MapClaims{"iss": "T", "iat": now - 2*3600}), "com.example.app", 403, apns2.ReasonExpiredProviderToken},
		{"fresh hand-made", signJWT(t, key, hdr, jwt.MapClaims{"iss": "T", "iat": now}), "com.example.app", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := &token.Token{AuthKey: key, KeyID: "ABC123DEFG", TeamID: "DEF123GHIJ"}
			if tt.bearer != "" {
				tok.Bearer, tok.IssuedAt = tt.bearer, time.Now().Unix() // apns2 sends it as is
			}
			c := apns2.NewTokenClient(tok)
			c.HTTPClient, c.Host = b.apns.HTTPClient, b.apns.Host
			res := push(t, c, &apns2.Notification{DeviceToken: goodToken, Topic: tt.topic})
			if res.StatusCode != tt.wantStatus || res.Reason != tt.wantReason {
				t.Fatalf("answer = %d %q, want %d %q", res.StatusCode, res.Reason, tt.wantStatus, tt.wantReason)
			}
		})
	}
	t.Run("not bearer", func(t *testing.T) {
		status, _, body := b.do(t, "POST", "/3/device/"+goodToken, http.Header{"Authorization": {"Basic abc"}}, `{"aps":{}}`)
		if status != 403 || !strings.Contains(string(body), apns2.ReasonInvalidProviderToken) {
			t.Fatalf("answer = %d %s", status, body)
		}
	})
}

func TestHasAPSObject(t *testing.T) {
	tests := []struct {
		doc  string
		want bool
	}{
		{`{"aps":{}}`, true},
		{` { "aps" : { "alert" : "x" } } `, true},
		{`{"a":1,"b":[1,{"aps":{}}],"c":"aps\"}","aps":{"badge":1}}`, true},
		{`{"x":{"aps":{}},"aps":{}}`, true},
		{`{"x":{"aps":{}}}`, false},
		{`{"aps":[]}`, false},
		{`{"aps":null}`, false},
		{`{"aps":"{}"}`, false},
		{`{"ap\u0073":1,"apsx":{}}`, false},
		{`{"n":-1.5e3,"t":true,"f":false,"z":null,"aps":{}}`, true},
		{`{}`, false},
		{`[]`, false},
		{`"aps"`, false},
		{`12`, false},
	}
	for _, tt := range tests {
		t.Run(tt.doc, func(t *testing.T) {
			if !json.Valid([]byte(tt.doc)) {
				t.Fatalf("test document is not valid JSON")
			}
			if got := hasAPSObject([]byte(tt.doc)); got != tt.want {
				t.Errorf("hasAPSObject = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestUUID(t *testing.T) {
	seen := make(map[string]bool)
	for range 1000 {
		id := newUUID()
		if !validUUID(id) || id[14] != '4' || !strings.ContainsRune("89ab", rune(id[19])) {
			t.Fatalf("newUUID = %q, not a version 4 UUID", id)
		}
		if seen[id] {
			t.Fatalf("newUUID repeated %q", id)
		}
		seen[id] = true
	}
	for _, bad := range []string{"", "123e4567e89b12d3a456426614174000", "123e4567-e89b-12d3-a456-42661417400g", "123e4567-e89b-12d3-a456_426614174000"} {
		if validUUID(bad) {
			t.Errorf("validUUID(%q) = true", bad)
		}
	}
}

func BenchmarkAPNsHandler(b *testing.B) {
	s, err := New(Config{TrackTokens: true}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	h := s.Handler()
	body := `{"aps":{"alert":{"title":"Spring sale","body":"50% off today"},"sound":"default"},"deeplink":"app://sale"}`
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		// One request per goroutine, its body rewound each time, so the
		// allocations counted are the simulator's.
		w := &discardWriter{h: make(http.Header)}
		rd := strings.NewReader(body)
		r := httptest.NewRequest(http.MethodPost, "/3/device/"+goodToken, nil)
		r.Body, r.ContentLength = io.NopCloser(rd), int64(len(body))
		r.Header.Set("apns-topic", "com.example.app")
		r.Header.Set("apns-push-type", "alert")
		for pb.Next() {
			rd.Reset(body)
			clear(w.h)
			h.ServeHTTP(w, r)
		}
	})
}

type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkAPNsLoopback pushes through real apns2 clients (1 or 4
// connections, 100 goroutines per CPU) to a simulator on loopback in the same
// process: the figure includes the client's own cost.
func BenchmarkAPNsLoopback(b *testing.B) {
	for _, conns := range []int{1, 4} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			s, err := New(Config{}, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Start("127.0.0.1:0"); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = s.Stop() })
			clients := make(chan *apns2.Client, conns)
			for range conns {
				tr := &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: s.CertPool()}} //lint:ignore SA1019 the transport apns2 uses
				b.Cleanup(tr.CloseIdleConnections)                                          //lint:ignore SA1019 the transport apns2 uses
				clients <- &apns2.Client{HTTPClient: &http.Client{Transport: tr}, Host: s.URL()}
			}
			payload := []byte(`{"aps":{"alert":{"title":"Spring sale","body":"50% off today"},"sound":"default"},"deeplink":"app://sale"}`)
			b.SetParallelism(100)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				c := <-clients
				clients <- c
				for pb.Next() {
					res, err := c.Push(&apns2.Notification{DeviceToken: goodToken, Topic: "com.example.app", Payload: payload})
					if err != nil || res.StatusCode != http.StatusOK {
						b.Errorf("push: %v %v", res, err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pushes/s")
		})
	}
}
