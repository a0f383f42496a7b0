package fcm

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"

	"golang.org/x/oauth2"
)

// Headers oneAttempt sets on the answers it hands to the firebase client.
const (
	// headerRetryAfter keeps the server's own Retry-After, for
	// classification.
	headerRetryAfter = "X-Pushd-Retry-After"
	// headerTransportError marks a synthetic answer standing for a
	// transport failure; its value is the kind ("timeout", "network",
	// "canceled", "credential").
	headerTransportError = "X-Pushd-Transport-Error"
)

// noRetry is the Retry-After oneAttempt puts on every answer: one hour, above
// the firebase client's 2-minute MaxDelay, so the client never retries.
const noRetry = "3600"

// oneAttempt makes each firebase messaging Send exactly one HTTP attempt.
//
// The firebase client (internal.WithDefaultRetryConfig) retries network
// errors and 503 answers up to 4 times, sleeping between attempts (up to 7.5 s
// in all with its backoff, longer when the server sends Retry-After) while the
// caller waits. pushd owns retries: a sender goroutine must return at once so
// the dispatcher can park the recipient in its retry queue. The client cannot
// be configured, but its RetryConfig.retryDelay gives up when the delay a
// server asks for exceeds MaxDelay (2 minutes). So oneAttempt:
//
//   - on every answer, moves the server's Retry-After (if any) to
//     X-Pushd-Retry-After and sets Retry-After to noRetry (one hour). Every
//     answer, not only 503s: an error while the client reads a body is
//     retried too, and is then judged by the answer's headers;
//   - turns a transport error (dial, TLS, reset, timeout, token endpoint
//     failure) into a synthetic 503 answer with that same Retry-After, a
//     header X-Pushd-Transport-Error naming the kind of failure, and a body
//     in Google's error format with status and FCM errorCode UNAVAILABLE.
//
// classify reads both headers back from the client's error. The synthetic
// answer bends the http.RoundTripper contract (it invents a response); it
// never leaves the client built in New.
type oneAttempt struct {
	next http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (t *oneAttempt) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return transportErrorResponse(req, err), nil
	}
	if resp.Header == nil {
		resp.Header = make(http.Header)
	}
	// Our headers are ours alone: a server cannot set them.
	delete(resp.Header, headerTransportError)
	if v := resp.Header["Retry-After"]; len(v) > 0 {
		resp.Header[headerRetryAfter] = v
	} else {
		delete(resp.Header, headerRetryAfter)
	}
	resp.Header["Retry-After"] = []string{noRetry}
	return resp, nil
}

// CloseIdleConnections closes the idle connections of the wrapped transport.
func (t *oneAttempt) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// transportErrorResponse builds the synthetic 503 answer standing for err.
func transportErrorResponse(req *http.Request, err error) *http.Response {
	msg, _ := json.Marshal("transport: " + err.Error())
	body := `{"error":{"code":503,"status":"UNAVAILABLE","message":` + string(msg) +
		`,"details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNAVAILABLE"}]}}`
	return &http.Response{
		Status:     "503 Service Unavailable",
		StatusCode: http.StatusServiceUnavailable,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header: http.Header{
			"Content-Type":       {"application/json; charset=UTF-8"},
			"Retry-After":        {noRetry},
			headerTransportError: {transportKind(req.Context(), err)},
		},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

// transportKind names a failure that left no HTTP answer.
func transportKind(ctx context.Context, err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode >= 400 && re.Response.StatusCode < 500 {
		// The token endpoint refused our service account.
		return reasonCredential
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return reasonTimeout
	case errors.Is(err, context.Canceled):
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return reasonTimeout
		}
		return reasonCanceled
	}
	return reasonNetwork
}
