// Package push holds what the provider adapters share: reading the HTTP
// answers of push services. The adapters themselves are its subpackages:
// apns and fcm, and sim, the simulator that stands in for both.
package push

import (
	"net/http"
	"strconv"
	"time"
)

// MaxRetryAfter caps a server's Retry-After, so a bogus value cannot park a
// recipient for years (or overflow a Duration).
const MaxRetryAfter = 24 * time.Hour

// RetryAfter reads a Retry-After value: delay-seconds or an HTTP date. It
// returns 0 for an empty, malformed or past value, and at most
// MaxRetryAfter.
func RetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs > int64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now).Round(time.Second)
	}
	return max(0, min(d, MaxRetryAfter))
}

// Transport is what a provider sends through: an HTTP round tripper whose
// idle connections its Close closes.
type Transport interface {
	http.RoundTripper
	CloseIdleConnections()
}
