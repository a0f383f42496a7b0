package apns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/sideshow/apns2"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/push"
)

// Fixed reasons for answers that carry no APNs reason.
const (
	reasonTimeout  = "timeout"  // the push did not complete in time
	reasonNetwork  = "network"  // connection refused, reset, TLS failure...
	reasonCanceled = "canceled" // the caller gave up (shutdown)
	reasonUnknown  = "unknown"  // an answer with a reason APNs does not document
)

// capture is the context of one push. Besides carrying the deadline, it is
// a slot that captureTransport fills with what apns2.Response does not
// expose: the HTTP status and the Retry-After header. One allocation per
// push holds both the context node and the slot.
type capture struct {
	context.Context
	status     int
	retryAfter time.Duration
}

type captureKey struct{}

// Value returns the capture itself for captureKey.
func (c *capture) Value(key any) any {
	if key == (captureKey{}) {
		return c
	}
	return c.Context.Value(key)
}

// captureTransport records the status and Retry-After of each answer into the
// capture found in the request's context. It runs in the pushing goroutine
// (http.Client calls RoundTrip synchronously), so the capture needs no lock.
type captureTransport struct {
	next http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (t *captureTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	if c, ok := req.Context().Value(captureKey{}).(*capture); ok {
		c.status = resp.StatusCode
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			c.retryAfter = push.RetryAfter(resp.Header.Get("Retry-After"), time.Now())
		}
	}
	return resp, nil
}

// classify maps the outcome of one push to a dispatcher.Result. c holds what
// captureTransport saw of the answer (nil when nothing was captured).
func classify(resp *apns2.Response, err error, c *capture) dispatcher.Result {
	var status int
	var retryAfter time.Duration
	if c != nil {
		status, retryAfter = c.status, c.retryAfter
	}
	if err != nil {
		if status != 0 {
			// An answer came but its body could not be read or
			// decoded: judge by its status alone.
			r := classifyStatus(status, "", time.Time{}, retryAfter)
			r.Err = err
			return r
		}
		return dispatcher.Result{Outcome: dispatcher.RetryLater, Reason: transportReason(err), Err: err}
	}
	if status == 0 {
		status = resp.StatusCode
	}
	return classifyStatus(status, resp.Reason, resp.Timestamp.Time, retryAfter)
}

// transportReason names a failure that left no HTTP answer.
func transportReason(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return reasonTimeout
	case errors.Is(err, context.Canceled):
		return reasonCanceled
	}
	return reasonNetwork
}

// classifyStatus maps an APNs answer (status, reason) to a Result. Apple's
// reasons are listed in "Handling notification responses from APNs".
//
//	200                                     Sent
//	410 (Unregistered, ExpiredToken, any)   InvalidToken, At = APNs timestamp
//	400 BadDeviceToken                      InvalidToken
//	400 IdleTimeout                         RetryLater (a connection matter)
//	400 other                               Failed
//	403 (any)                               RetryLater, Credential
//	404, 405, 413, other 4xx                Failed
//	429                                     RetryLater, Retry-After honoured
//	500, 503, other 5xx                     RetryLater, Retry-After honoured
//	anything else                           Failed
//
// Reason is Apple's reason when it is one Apple documents, "unknown"
// otherwise, so it stays a bounded metric label; Err carries the raw text.
func classifyStatus(status int, reason string, ts time.Time, retryAfter time.Duration) dispatcher.Result {
	if status == http.StatusOK {
		return dispatcher.Result{Outcome: dispatcher.Sent, Status: status}
	}
	r := dispatcher.Result{
		Outcome: dispatcher.Failed,
		Reason:  reasonUnknown,
		Status:  status,
		Err:     fmt.Errorf("apns: status %d, reason %q", status, reason),
	}
	if knownReason(reason) {
		r.Reason = reason
	}
	switch {
	case status == http.StatusGone:
		r.Outcome = dispatcher.InvalidToken
		r.At = ts
	case status == http.StatusBadRequest && reason == apns2.ReasonBadDeviceToken:
		r.Outcome = dispatcher.InvalidToken
	case status == http.StatusBadRequest && reason == apns2.ReasonIdleTimeout:
		r.Outcome = dispatcher.RetryLater
	case status == http.StatusForbidden:
		r.Outcome = dispatcher.RetryLater
		r.Credential = true
	case status == http.StatusTooManyRequests, status >= 500 && status <= 599:
		r.Outcome = dispatcher.RetryLater
		r.RetryAfter = retryAfter
	}
	return r
}

// knownReason reports whether r is a reason APNs documents.
func knownReason(r string) bool {
	switch r {
	case apns2.ReasonBadCollapseID, apns2.ReasonBadDeviceToken, apns2.ReasonBadExpirationDate,
		apns2.ReasonBadMessageID, apns2.ReasonBadPriority, apns2.ReasonBadTopic,
		apns2.ReasonDeviceTokenNotForTopic, apns2.ReasonDuplicateHeaders, apns2.ReasonIdleTimeout,
		apns2.ReasonInvalidPushType, apns2.ReasonMissingDeviceToken, apns2.ReasonMissingTopic,
		apns2.ReasonPayloadEmpty, apns2.ReasonTopicDisallowed, apns2.ReasonBadCertificate,
		apns2.ReasonBadCertificateEnvironment, apns2.ReasonExpiredProviderToken, apns2.ReasonForbidden,
		apns2.ReasonInvalidProviderToken, apns2.ReasonMissingProviderToken, apns2.ReasonBadPath,
		apns2.ReasonMethodNotAllowed, apns2.ReasonExpiredToken, apns2.ReasonUnregistered,
		apns2.ReasonPayloadTooLarge, apns2.ReasonTooManyProviderTokenUpdates, apns2.ReasonTooManyRequests,
		apns2.ReasonInternalServerError, apns2.ReasonServiceUnavailable, apns2.ReasonShutdown:
		return true
	}
	return false
}

// CloseIdleConnections closes the idle connections of the wrapped transport.
func (t *captureTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
