package apns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// maxAnswer bounds the body of an answer read: APNs answers with a small
// JSON object (reason, timestamp).
const maxAnswer = 64 << 10

// answerResult classifies an answer from APNs and closes its body. The body
// is read only when the push was refused: a 200 has none.
func answerResult(resp *http.Response) dispatcher.Result {
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return classifyStatus(resp.StatusCode, "", time.Time{}, 0)
	}
	var retryAfter time.Duration
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		retryAfter = push.RetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	var answer apns2.Response
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAnswer)).Decode(&answer); err != nil && err != io.EOF {
		// The body could not be read or decoded: judge by the status
		// alone.
		r := classifyStatus(resp.StatusCode, "", time.Time{}, retryAfter)
		r.Err = fmt.Errorf("apns: status %d, unreadable answer: %w", resp.StatusCode, err)
		return r
	}
	return classifyStatus(resp.StatusCode, answer.Reason, answer.Timestamp.Time, retryAfter)
}

// transportResult classifies a push that got no answer: it is retried
// later.
func transportResult(err error) dispatcher.Result {
	return dispatcher.Result{Outcome: dispatcher.RetryLater, Reason: transportReason(err), Err: err}
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
