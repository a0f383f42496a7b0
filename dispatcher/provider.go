package dispatcher

import (
	"context"
	"time"
)

// Provider is a push service (APNs, FCM, or the simulator speaking their
// protocols). Prepare renders a notification once per batch; the Message it
// returns is then sent to each recipient of that platform.
type Provider interface {
	// Prepare renders n into the provider's payload. It returns an error
	// wrapping ErrPayloadTooLarge when the payload exceeds MaxPayloadBytes,
	// and other errors for notifications the provider cannot express.
	Prepare(n *Notification) (Message, error)
}

// Message is a rendered notification, ready to be sent to any number of
// recipients. Send is called concurrently from many goroutines.
type Message interface {
	// Send delivers the message to one recipient and classifies the answer.
	// It must honour ctx cancellation.
	Send(ctx context.Context, to *Recipient) Result
}

// Outcome is what the dispatcher does with a recipient after a send attempt.
type Outcome uint8

// Outcomes of a send attempt. Providers map every answer to one of these.
const (
	// Sent: the provider accepted the notification.
	Sent Outcome = iota
	// RetryLater: a transient problem (throttling, provider outage,
	// timeout, network error, credential fault); try again after a delay.
	RetryLater
	// InvalidToken: the token will never work again (unregistered, bad
	// device token). Not retried; reported as feedback.
	InvalidToken
	// Failed: a permanent failure for this message (bad payload, bad
	// topic...). Not retried.
	Failed
	numOutcomes
)

// Outcomes lists every outcome, for pre-building metric series.
var Outcomes = [...]Outcome{Sent, RetryLater, InvalidToken, Failed}

// String returns the outcome as used in metric labels and logs.
func (o Outcome) String() string {
	switch o {
	case Sent:
		return "sent"
	case RetryLater:
		return "retry"
	case InvalidToken:
		return "invalid_token"
	case Failed:
		return "failed"
	}
	return "unknown"
}

// Result is the classified answer of a provider to one send.
type Result struct {
	Outcome Outcome
	// Reason is the provider's own reason when there is one
	// ("Unregistered", "UNAVAILABLE", "TooManyRequests", "timeout").
	Reason string
	// Status is the HTTP status of the answer, 0 when none came.
	Status int
	// RetryAfter is the delay the provider asked for (Retry-After), or 0.
	RetryAfter time.Duration
	// Credential marks a RetryLater caused by our own credentials being
	// refused (expired provider token, bad service account): an operator
	// must act, the device tokens are fine.
	Credential bool
	// At is the provider's timestamp for an invalid token (APNs reports when
	// the token stopped being valid), zero when not given.
	At time.Time
	// Err is the underlying error, if any, for logs.
	Err error
}
