package apns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/push"
)

// answer is a canned APNs answer; want is its classification. The same rows
// drive the unit test of classifyStatus and the end-to-end test through a
// Sender over HTTP/2 (TestSendClassifies).
type answerRow struct {
	name       string
	status     int
	reason     string
	timestamp  int64  // ms since the epoch, 410 only
	retryAfter string // Retry-After header
	body       string // raw body instead of the JSON one, when set
	want       dispatcher.Result
}

var unregisteredAt = time.Unix(1_760_000_000, 0)

func answerRows() []answerRow {
	retry := func(reason string, status int, after time.Duration) dispatcher.Result {
		return dispatcher.Result{Outcome: dispatcher.RetryLater, Reason: reason, Status: status, RetryAfter: after}
	}
	failed := func(reason string, status int) dispatcher.Result {
		return dispatcher.Result{Outcome: dispatcher.Failed, Reason: reason, Status: status}
	}
	cred := func(reason string) dispatcher.Result {
		return dispatcher.Result{Outcome: dispatcher.RetryLater, Reason: reason, Status: 403, Credential: true}
	}
	rows := []answerRow{
		{name: "ok", status: 200, want: dispatcher.Result{Outcome: dispatcher.Sent, Status: 200}},
		{name: "unregistered", status: 410, reason: "Unregistered", timestamp: unregisteredAt.UnixMilli(),
			want: dispatcher.Result{Outcome: dispatcher.InvalidToken, Reason: "Unregistered", Status: 410, At: unregisteredAt}},
		{name: "expired token", status: 410, reason: "ExpiredToken", timestamp: unregisteredAt.UnixMilli(),
			want: dispatcher.Result{Outcome: dispatcher.InvalidToken, Reason: "ExpiredToken", Status: 410, At: unregisteredAt}},
		{name: "bad device token", status: 400, reason: "BadDeviceToken",
			want: dispatcher.Result{Outcome: dispatcher.InvalidToken, Reason: "BadDeviceToken", Status: 400}},
		{name: "idle timeout", status: 400, reason: "IdleTimeout", want: retry("IdleTimeout", 400, 0)},
		{name: "bad path", status: 404, reason: "BadPath", want: failed("BadPath", 404)},
		{name: "method not allowed", status: 405, reason: "MethodNotAllowed", want: failed("MethodNotAllowed", 405)},
		{name: "payload too large", status: 413, reason: "PayloadTooLarge", want: failed("PayloadTooLarge", 413)},
		{name: "too many requests", status: 429, reason: "TooManyRequests", retryAfter: "7", want: retry("TooManyRequests", 429, 7*time.Second)},
		{name: "too many provider token updates", status: 429, reason: "TooManyProviderTokenUpdates", want: retry("TooManyProviderTokenUpdates", 429, 0)},
		{name: "internal server error", status: 500, reason: "InternalServerError", want: retry("InternalServerError", 500, 0)},
		{name: "service unavailable", status: 503, reason: "ServiceUnavailable", retryAfter: "30", want: retry("ServiceUnavailable", 503, 30*time.Second)},
		{name: "shutdown", status: 503, reason: "Shutdown", want: retry("Shutdown", 503, 0)},
		{name: "unknown 4xx", status: 418, reason: "Teapot", want: failed("unknown", 418)},
		{name: "unknown 5xx", status: 502, reason: "BadGateway", want: retry("unknown", 502, 0)},
		{name: "html 502 from a proxy", status: 502, body: "<html>bad gateway</html>", want: retry("unknown", 502, 0)},
		{name: "html 400 from a proxy", status: 400, body: "<html>bad request</html>", want: failed("unknown", 400)},
	}
	for _, reason := range []string{"BadTopic", "MissingTopic", "DeviceTokenNotForTopic", "TopicDisallowed",
		"PayloadEmpty", "BadPriority", "BadExpirationDate", "BadCollapseId", "InvalidPushType", "BadMessageId",
		"DuplicateHeaders", "MissingDeviceToken"} {
		rows = append(rows, answerRow{name: reason, status: 400, reason: reason, want: failed(reason, 400)})
	}
	for _, reason := range []string{"ExpiredProviderToken", "InvalidProviderToken", "MissingProviderToken",
		"BadCertificate", "BadCertificateEnvironment", "Forbidden"} {
		rows = append(rows, answerRow{name: reason, status: 403, reason: reason, want: cred(reason)})
	}
	return rows
}

func TestClassifyStatus(t *testing.T) {
	for _, row := range answerRows() {
		if row.body != "" {
			continue // needs a real client: the body does not decode
		}
		t.Run(row.name, func(t *testing.T) {
			var ts time.Time
			if row.timestamp != 0 {
				ts = time.UnixMilli(row.timestamp)
			}
			after := push.RetryAfter(row.retryAfter, time.Now())
			got := classifyStatus(row.status, row.reason, ts, after)
			checkResult(t, got, row.want)
		})
	}
}

func TestClassifyTransportError(t *testing.T) {
	timeoutErr := &net.OpError{Op: "dial", Net: "tcp", Err: timeoutError{}}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"deadline", fmt.Errorf("push: %w", context.DeadlineExceeded), "timeout"},
		{"net timeout", timeoutErr, "timeout"},
		{"canceled", fmt.Errorf("push: %w", context.Canceled), "canceled"},
		{"refused", refused, "network"},
		{"other", errors.New("http2: server sent GOAWAY"), "network"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := transportResult(tc.err)
			want := dispatcher.Result{Outcome: dispatcher.RetryLater, Reason: tc.want}
			checkResult(t, got, want)
			if got.Err == nil {
				t.Error("Err is nil, want the transport error")
			}
		})
	}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestAnswerResult(t *testing.T) {
	answer := func(status int, header http.Header, body string) *http.Response {
		return &http.Response{StatusCode: status, Header: header, Body: io.NopCloser(strings.NewReader(body))}
	}
	at := time.UnixMilli(1700000000000)
	for _, tc := range []struct {
		name string
		resp *http.Response
		want dispatcher.Result
	}{
		{"sent", answer(200, http.Header{}, ""), dispatcher.Result{Outcome: dispatcher.Sent, Status: 200}},
		{"unregistered", answer(410, http.Header{}, `{"reason":"Unregistered","timestamp":1700000000000}`),
			dispatcher.Result{Outcome: dispatcher.InvalidToken, Reason: "Unregistered", Status: 410, At: at}},
		{"throttled", answer(429, http.Header{"Retry-After": {"7"}}, `{"reason":"TooManyRequests"}`),
			dispatcher.Result{Outcome: dispatcher.RetryLater, Reason: "TooManyRequests", Status: 429, RetryAfter: 7 * time.Second}},
		// A body that does not decode (a proxy's HTML page): the status
		// and its Retry-After still decide.
		{"unreadable", answer(503, http.Header{"Retry-After": {"5"}}, "<html>"),
			dispatcher.Result{Outcome: dispatcher.RetryLater, Reason: "unknown", Status: 503, RetryAfter: 5 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := answerResult(tc.resp)
			checkResult(t, got, tc.want)
			if (got.Err != nil) != (tc.want.Outcome != dispatcher.Sent) {
				t.Errorf("Err = %v", got.Err)
			}
		})
	}
}

// checkResult compares every field of a Result but Err.
func checkResult(t *testing.T, got, want dispatcher.Result) {
	t.Helper()
	if got.Outcome != want.Outcome || got.Reason != want.Reason || got.Status != want.Status ||
		got.RetryAfter != want.RetryAfter || got.Credential != want.Credential || !got.At.Equal(want.At) {
		t.Errorf("result = {%v %q %d %v cred=%v at=%v}, want {%v %q %d %v cred=%v at=%v} (err: %v)",
			got.Outcome, got.Reason, got.Status, got.RetryAfter, got.Credential, got.At,
			want.Outcome, want.Reason, want.Status, want.RetryAfter, want.Credential, want.At, got.Err)
	}
	if want.Outcome != dispatcher.Sent && got.Err == nil {
		t.Errorf("Err is nil for a %v result", got.Outcome)
	}
}
