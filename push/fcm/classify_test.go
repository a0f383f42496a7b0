package fcm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pushd/pushd/dispatcher"
)

// fcmError renders an FCM v1 error body.
func fcmError(code int, status, errorCode string, extra ...string) string {
	details := []string{}
	if errorCode != "" {
		details = append(details, fmt.Sprintf(`{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":%q}`, errorCode))
	}
	details = append(details, extra...)
	return fmt.Sprintf(`{"error":{"code":%d,"message":"canned %s","status":%q,"details":[%s]}}`, code, status, status, strings.Join(details, ","))
}

const badTokenViolation = `{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.token","description":"The registration token is not a valid FCM registration token"}]}`

func TestSendClassifies(t *testing.T) {
	s, f := setup(t)
	m := prepare(t, s, alert())
	retry := func(reason string, status int, after time.Duration) dispatcher.Result {
		return dispatcher.Result{Outcome: dispatcher.RetryLater, Reason: reason, Status: status, RetryAfter: after}
	}
	cred := func(reason string, status int) dispatcher.Result {
		return dispatcher.Result{Outcome: dispatcher.RetryLater, Reason: reason, Status: status, Credential: true}
	}
	failed := func(reason string, status int) dispatcher.Result {
		return dispatcher.Result{Outcome: dispatcher.Failed, Reason: reason, Status: status}
	}
	for _, tc := range []struct {
		name string
		a    cannedAnswer
		want dispatcher.Result
	}{
		{"ok", cannedAnswer{status: 200, body: `{"name":"projects/demo/messages/1"}`},
			dispatcher.Result{Outcome: dispatcher.Sent, Status: 200}},
		{"unregistered", cannedAnswer{status: 404, body: fcmError(404, "NOT_FOUND", "UNREGISTERED")},
			dispatcher.Result{Outcome: dispatcher.InvalidToken, Reason: "UNREGISTERED", Status: 404}},
		{"invalid argument (payload)", cannedAnswer{status: 400, body: fcmError(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT")},
			failed("INVALID_ARGUMENT", 400)},
		{"invalid argument (token)", cannedAnswer{status: 400, body: fcmError(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", badTokenViolation)},
			failed("INVALID_ARGUMENT", 400)},
		{"sender id mismatch", cannedAnswer{status: 403, body: fcmError(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH")},
			failed("SENDER_ID_MISMATCH", 403)},
		{"quota exceeded", cannedAnswer{status: 429, retryAfter: "60", body: fcmError(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED")},
			retry("QUOTA_EXCEEDED", 429, time.Minute)},
		{"unavailable with retry-after", cannedAnswer{status: 503, retryAfter: "9", body: fcmError(503, "UNAVAILABLE", "UNAVAILABLE")},
			retry("UNAVAILABLE", 503, 9*time.Second)},
		{"unavailable", cannedAnswer{status: 503, body: fcmError(503, "UNAVAILABLE", "UNAVAILABLE")},
			retry("UNAVAILABLE", 503, 0)},
		{"unavailable, retry-after above the client's cap", cannedAnswer{status: 503, retryAfter: "600", body: fcmError(503, "UNAVAILABLE", "UNAVAILABLE")},
			retry("UNAVAILABLE", 503, 10*time.Minute)},
		{"internal", cannedAnswer{status: 500, body: fcmError(500, "INTERNAL", "INTERNAL")},
			retry("INTERNAL", 500, 0)},
		{"third party auth error", cannedAnswer{status: 401, body: fcmError(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR")},
			cred("THIRD_PARTY_AUTH_ERROR", 401)},
		{"apns auth error (old name)", cannedAnswer{status: 401, body: fcmError(401, "UNAUTHENTICATED", "APNS_AUTH_ERROR")},
			cred("THIRD_PARTY_AUTH_ERROR", 401)},
		{"unauthenticated", cannedAnswer{status: 401, body: fcmError(401, "UNAUTHENTICATED", "")},
			cred("UNAUTHENTICATED", 401)},
		{"unauthenticated, no body", cannedAnswer{status: 401},
			cred("UNAUTHENTICATED", 401)},
		{"permission denied", cannedAnswer{status: 403, body: fcmError(403, "PERMISSION_DENIED", "")},
			cred("PERMISSION_DENIED", 403)},
		{"other 4xx", cannedAnswer{status: 404, body: fcmError(404, "NOT_FOUND", "")},
			failed("NOT_FOUND", 404)},
		{"other 4xx, plain text", cannedAnswer{status: 413, body: "request too large"},
			failed("unknown", 413)},
		{"429 without FCM code", cannedAnswer{status: 429, retryAfter: "5", body: fcmError(429, "RESOURCE_EXHAUSTED", "")},
			retry("RESOURCE_EXHAUSTED", 429, 5*time.Second)},
		{"other 5xx, html", cannedAnswer{status: 502, retryAfter: "3", body: "<html>bad gateway</html>"},
			retry("unknown", 502, 3*time.Second)},
		{"other 5xx, google status", cannedAnswer{status: 504, body: fcmError(504, "DEADLINE_EXCEEDED", "")},
			retry("DEADLINE_EXCEEDED", 504, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := regToken(tc.name)
			f.answer(tok, tc.a)
			start := time.Now()
			got := send(m, tok)
			checkResult(t, got, tc.want)
			if n := f.sendsTo(tok); n != 1 {
				t.Errorf("stand-in got %d requests for one send, want exactly 1", n)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("send took %v: the client slept between retries", d)
			}
			if got.Err != nil && strings.Contains(got.Err.Error(), tok) {
				t.Errorf("Err %q holds the full registration token", got.Err)
			}
		})
	}
}

// checkResult compares every field of a Result but Err.
func checkResult(t *testing.T, got, want dispatcher.Result) {
	t.Helper()
	if got.Outcome != want.Outcome || got.Reason != want.Reason || got.Status != want.Status ||
		got.RetryAfter != want.RetryAfter || got.Credential != want.Credential || !got.At.Equal(want.At) {
		t.Errorf("result = {%v %q %d %v cred=%v}, want {%v %q %d %v cred=%v} (err: %v)",
			got.Outcome, got.Reason, got.Status, got.RetryAfter, got.Credential,
			want.Outcome, want.Reason, want.Status, want.RetryAfter, want.Credential, got.Err)
	}
	if want.Outcome != dispatcher.Sent && got.Err == nil {
		t.Errorf("Err is nil for a %v result", got.Outcome)
	}
}

// TestClassifyWithoutAnswer covers errors that carry no HTTP answer: the
// client refusing a message before sending it, and bare context errors.
func TestClassifyWithoutAnswer(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want dispatcher.Result
	}{
		{"nil", nil, dispatcher.Result{Outcome: dispatcher.Sent, Status: 200}},
		{"refused by the client", errors.New("exactly one of token, topic or condition must be specified"),
			dispatcher.Result{Outcome: dispatcher.Failed, Reason: "invalid_message"}},
		{"deadline", fmt.Errorf("wait: %w", context.DeadlineExceeded), dispatcher.Result{Outcome: dispatcher.RetryLater, Reason: "timeout"}},
		{"canceled", context.Canceled, dispatcher.Result{Outcome: dispatcher.RetryLater, Reason: "canceled"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkResult(t, classify(tc.err, time.Now()), tc.want)
		})
	}
}
