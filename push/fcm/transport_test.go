package fcm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/pushd/pushd/push"
)

// roundTripFunc is a hand-written fake http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestOneAttemptAnswers(t *testing.T) {
	for _, tc := range []struct {
		name       string
		status     int
		retryAfter string
		wantPushd  string
	}{
		{"503 with retry-after", 503, "7", "7"},
		{"503 without", 503, "", ""},
		{"429 with date", 429, "Wed, 21 Oct 2026 07:28:00 GMT", "Wed, 21 Oct 2026 07:28:00 GMT"},
		{"200", 200, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := &oneAttempt{next: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				h := http.Header{headerTransportError: {"network"}, headerRetryAfter: {"1"}} // forged by the server
				if tc.retryAfter != "" {
					h.Set("Retry-After", tc.retryAfter)
				}
				return &http.Response{StatusCode: tc.status, Header: h, Body: http.NoBody}, nil
			})}
			req, _ := http.NewRequest(http.MethodPost, "https://fcm.example/v1/projects/p/messages:send", nil)
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if got := resp.Header.Get(headerRetryAfter); got != tc.wantPushd {
				t.Errorf("%s = %q, want %q", headerRetryAfter, got, tc.wantPushd)
			}
			if got := push.RetryAfter(resp.Header.Get("Retry-After"), time.Now()); got <= 2*time.Minute {
				t.Errorf("Retry-After = %v, want above the firebase client's 2 minute cap", got)
			}
			if resp.Header.Get(headerTransportError) != "" {
				t.Errorf("a real answer is marked as a transport error")
			}
		})
	}
}

func TestOneAttemptTransportErrors(t *testing.T) {
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	canceled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want string
	}{
		{"deadline", expired, context.DeadlineExceeded, "timeout"},
		{"net timeout", context.Background(), &net.OpError{Op: "read", Net: "tcp", Err: timeoutError{}}, "timeout"},
		{"canceled", canceled, context.Canceled, "canceled"},
		{"canceled by our deadline", expired, context.Canceled, "timeout"},
		{"refused", context.Background(), &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}, "network"},
		{"token endpoint refuses", context.Background(), fmt.Errorf("oauth2: %w", &oauth2.RetrieveError{Response: &http.Response{StatusCode: 400}, Body: []byte(`{"error":"invalid_grant"}`)}), "credential"},
		{"token endpoint down", context.Background(), &oauth2.RetrieveError{Response: &http.Response{StatusCode: 503}}, "network"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := &oneAttempt{next: roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, tc.err })}
			req, _ := http.NewRequestWithContext(tc.ctx, http.MethodPost, "https://fcm.example/v1/projects/p/messages:send", nil)
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatalf("RoundTrip returned an error: %v", err)
			}
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("status %d, want 503", resp.StatusCode)
			}
			if got := resp.Header.Get(headerTransportError); got != tc.want {
				t.Errorf("%s = %q, want %q", headerTransportError, got, tc.want)
			}
			if got := push.RetryAfter(resp.Header.Get("Retry-After"), time.Now()); got <= 2*time.Minute {
				t.Errorf("Retry-After = %v, want above the firebase client's 2 minute cap", got)
			}
			b, _ := io.ReadAll(resp.Body)
			var body struct {
				Error struct {
					Code    int    `json:"code"`
					Status  string `json:"status"`
					Message string `json:"message"`
					Details []struct {
						Type      string `json:"@type"`
						ErrorCode string `json:"errorCode"`
					} `json:"details"`
				} `json:"error"`
			}
			if err := json.Unmarshal(b, &body); err != nil {
				t.Fatalf("body %s: %v", b, err)
			}
			e := body.Error
			if e.Code != 503 || e.Status != "UNAVAILABLE" || !strings.HasPrefix(e.Message, "transport: ") ||
				len(e.Details) != 1 || e.Details[0].Type != "type.googleapis.com/google.firebase.fcm.v1.FcmError" || e.Details[0].ErrorCode != "UNAVAILABLE" {
				t.Errorf("body = %s", b)
			}
		})
	}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }
