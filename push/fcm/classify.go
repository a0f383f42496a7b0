package fcm

import (
	"context"
	"errors"
	"net/http"
	"time"

	"firebase.google.com/go/v4/errorutils"
	"firebase.google.com/go/v4/messaging"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/push"
)

// Fixed reasons for failures that carry no FCM code.
const (
	reasonTimeout        = "timeout"         // the send did not complete in time
	reasonNetwork        = "network"         // connection refused, reset, TLS failure...
	reasonCanceled       = "canceled"        // the caller gave up (shutdown)
	reasonCredential     = "credential"      // the token endpoint refused our service account
	reasonInvalidMessage = "invalid_message" // the client refused the message before sending it
	reasonUnknown        = "unknown"         // an error answer with no recognised code
)

// FCM error codes (google.firebase.fcm.v1.FcmError), as in Result.Reason.
const (
	codeUnregistered     = "UNREGISTERED"
	codeInvalidArgument  = "INVALID_ARGUMENT"
	codeSenderIDMismatch = "SENDER_ID_MISMATCH"
	codeQuotaExceeded    = "QUOTA_EXCEEDED"
	codeUnavailable      = "UNAVAILABLE"
	codeInternal         = "INTERNAL"
	codeThirdPartyAuth   = "THIRD_PARTY_AUTH_ERROR"
	codeUnauthenticated  = "UNAUTHENTICATED"
	codePermissionDenied = "PERMISSION_DENIED"
)

// classify maps the error of one messaging Send to a dispatcher.Result.
//
//	nil                                          Sent
//	UNREGISTERED                                 InvalidToken
//	INVALID_ARGUMENT                             Failed (even when it names
//	                                             message.token: only UNREGISTERED
//	                                             proves a token dead, so only it
//	                                             triggers feedback and blacklisting)
//	SENDER_ID_MISMATCH                           Failed
//	QUOTA_EXCEEDED, UNAVAILABLE, INTERNAL        RetryLater, Retry-After honoured
//	THIRD_PARTY_AUTH_ERROR                       RetryLater, Credential
//	UNAUTHENTICATED, PERMISSION_DENIED (status)  RetryLater, Credential
//	transport failure (oneAttempt)               RetryLater, "timeout"/"network"/"canceled";
//	                                             "credential" (+Credential) if the token endpoint refused us
//	other 429 and 5xx                            RetryLater, Retry-After honoured
//	other 4xx, anything else                     Failed
//	refused by the client before sending         Failed, "invalid_message"
//
// Reason is the FCM errorCode when there is one, else the Google status
// (NOT_FOUND...), else a fixed word: a bounded set, fit for a metric label.
func classify(err error, now time.Time) dispatcher.Result {
	if err == nil {
		return dispatcher.Result{Outcome: dispatcher.Sent, Status: http.StatusOK}
	}
	resp := errorutils.HTTPResponse(err)
	if resp == nil {
		// No answer reached the client. oneAttempt turns transport
		// errors into answers, so this is an error reading an answer's
		// body, or a message the client refused to send.
		switch {
		case errorutils.IsDeadlineExceeded(err):
			return dispatcher.Result{Outcome: dispatcher.RetryLater, Reason: reasonTimeout, Err: err}
		case errorutils.IsUnavailable(err), errorutils.IsUnknown(err):
			return dispatcher.Result{Outcome: dispatcher.RetryLater, Reason: reasonNetwork, Err: err}
		case errors.Is(err, context.DeadlineExceeded):
			// The client's own wait between retries, which
			// oneAttempt prevents, returns the bare context error.
			return dispatcher.Result{Outcome: dispatcher.RetryLater, Reason: reasonTimeout, Err: err}
		case errors.Is(err, context.Canceled):
			return dispatcher.Result{Outcome: dispatcher.RetryLater, Reason: reasonCanceled, Err: err}
		}
		return dispatcher.Result{Outcome: dispatcher.Failed, Reason: reasonInvalidMessage, Err: err}
	}
	if kind := resp.Header.Get(headerTransportError); kind != "" {
		return dispatcher.Result{Outcome: dispatcher.RetryLater, Reason: kind, Credential: kind == reasonCredential, Err: err}
	}

	r := dispatcher.Result{Outcome: dispatcher.Failed, Status: resp.StatusCode, Err: err}
	retryAfter := push.RetryAfter(resp.Header.Get(headerRetryAfter), now)
	switch r.Reason = messagingCode(err); r.Reason {
	case codeUnregistered:
		r.Outcome = dispatcher.InvalidToken
	case codeSenderIDMismatch:
		// Failed: the token belongs to another sender.
	case codeQuotaExceeded, codeUnavailable, codeInternal:
		r.Outcome = dispatcher.RetryLater
		r.RetryAfter = retryAfter
	case codeThirdPartyAuth:
		r.Outcome = dispatcher.RetryLater
		r.Credential = true
	default:
		r.Reason = platformCode(err)
		switch {
		case r.Reason == codeUnauthenticated, r.Reason == codePermissionDenied:
			r.Outcome = dispatcher.RetryLater
			r.Credential = true
		case r.Status == http.StatusTooManyRequests, r.Status >= 500 && r.Status <= 599:
			r.Outcome = dispatcher.RetryLater
			r.RetryAfter = retryAfter
		}
	}
	return r
}

// messagingCode returns the FCM errorCode of err, or "" if it carries none
// the client knows.
func messagingCode(err error) string {
	switch {
	case messaging.IsUnregistered(err):
		return codeUnregistered
	case messaging.IsInvalidArgument(err):
		return codeInvalidArgument
	case messaging.IsSenderIDMismatch(err):
		return codeSenderIDMismatch
	case messaging.IsQuotaExceeded(err):
		return codeQuotaExceeded
	case messaging.IsUnavailable(err):
		return codeUnavailable
	case messaging.IsInternal(err):
		return codeInternal
	case messaging.IsThirdPartyAuthError(err): // also the older APNS_AUTH_ERROR
		return codeThirdPartyAuth
	}
	return ""
}

// platformCode returns the Google status of err (from the answer's body, or
// derived from its HTTP status by the client), or "unknown".
func platformCode(err error) string {
	switch {
	case errorutils.IsInvalidArgument(err):
		return "INVALID_ARGUMENT"
	case errorutils.IsFailedPrecondition(err):
		return "FAILED_PRECONDITION"
	case errorutils.IsOutOfRange(err):
		return "OUT_OF_RANGE"
	case errorutils.IsUnauthenticated(err):
		return codeUnauthenticated
	case errorutils.IsPermissionDenied(err):
		return codePermissionDenied
	case errorutils.IsNotFound(err):
		return "NOT_FOUND"
	case errorutils.IsConflict(err):
		return "CONFLICT"
	case errorutils.IsAborted(err):
		return "ABORTED"
	case errorutils.IsAlreadyExists(err):
		return "ALREADY_EXISTS"
	case errorutils.IsResourceExhausted(err):
		return "RESOURCE_EXHAUSTED"
	case errorutils.IsCancelled(err):
		return "CANCELLED"
	case errorutils.IsDataLoss(err):
		return "DATA_LOSS"
	case errorutils.IsInternal(err):
		return "INTERNAL"
	case errorutils.IsUnavailable(err):
		return "UNAVAILABLE"
	case errorutils.IsDeadlineExceeded(err):
		return "DEADLINE_EXCEEDED"
	}
	return reasonUnknown
}
