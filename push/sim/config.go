package sim

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Config sets how the simulator answers. The zero value answers every valid
// request at once with success.
type Config struct {
	// Latency is added to every answer. Default 0.
	Latency time.Duration
	// Jitter spreads the latency uniformly over Latency±Jitter (never below
	// zero). Default 0.
	Jitter time.Duration
	// APNsErrors is the random error mix for APNs answers. Default none.
	APNsErrors ErrorMix
	// FCMErrors is the random error mix for FCM answers. Default none.
	FCMErrors ErrorMix
	// RetryAfter is sent as a Retry-After header with 429 and 503 answers,
	// in whole seconds rounded up. 0 (the default) omits the header.
	RetryAfter time.Duration
	// TrackTokens counts requests per device token (Count, Tokens,
	// Stats.Tokens, Stats.Duplicates). It costs a map entry per distinct
	// token: turn it off for huge load runs. Default false.
	TrackTokens bool
	// Seed seeds the random generator of the error mixes, so a run with the
	// same seed and the same request order gets the same errors. 0 (the
	// default) picks a random seed.
	Seed int64
	// RecordLast keeps the last RecordLast requests of each provider (token,
	// headers, body) for Recorded. 0 (the default) keeps none.
	RecordLast int
}

// maxRecordLast bounds Config.RecordLast so a typo cannot eat the memory.
const maxRecordLast = 100_000

// Validate reports the first bad field of c, named as in the struct.
func (c Config) Validate() error {
	switch {
	case c.Latency < 0:
		return fmt.Errorf("invalid Latency %v: must be 0 or more", c.Latency)
	case c.Jitter < 0:
		return fmt.Errorf("invalid Jitter %v: must be 0 or more", c.Jitter)
	case c.RetryAfter < 0:
		return fmt.Errorf("invalid RetryAfter %v: must be 0 or more", c.RetryAfter)
	case c.RecordLast < 0 || c.RecordLast > maxRecordLast:
		return fmt.Errorf("invalid RecordLast %d: must be 0 to %d", c.RecordLast, maxRecordLast)
	}
	if err := c.APNsErrors.Validate(); err != nil {
		return fmt.Errorf("invalid APNsErrors: %w", err)
	}
	if err := c.FCMErrors.Validate(); err != nil {
		return fmt.Errorf("invalid FCMErrors: %w", err)
	}
	return nil
}

// ErrorMix gives, per request, the probability (0 to 1) of each provider
// error. It is applied after the deterministic token rules; the
// probabilities add up to at most 1, the rest being successes.
type ErrorMix struct {
	// Unregistered: APNs 410 Unregistered / FCM 404 UNREGISTERED.
	Unregistered float64
	// BadToken: APNs 400 BadDeviceToken / FCM 400 INVALID_ARGUMENT.
	BadToken float64
	// TooMany: APNs 429 TooManyRequests / FCM 429 QUOTA_EXCEEDED.
	TooMany float64
	// Unavailable: APNs 503 ServiceUnavailable / FCM 503 UNAVAILABLE.
	Unavailable float64
	// Internal: APNs 500 InternalServerError / FCM 500 INTERNAL.
	Internal float64
}

// mixKeys are the keys of the ParseErrorMix syntax, in ErrorMix field order.
var mixKeys = [numMixErrors]string{"unregistered", "bad_token", "too_many", "unavailable", "internal"}

// mixError indexes the errors of an ErrorMix.
type mixError int

const (
	mixUnregistered mixError = iota
	mixBadToken
	mixTooMany
	mixUnavailable
	mixInternal
	numMixErrors
	mixNone mixError = -1
)

func (m *ErrorMix) field(e mixError) *float64 {
	switch e {
	case mixUnregistered:
		return &m.Unregistered
	case mixBadToken:
		return &m.BadToken
	case mixTooMany:
		return &m.TooMany
	case mixUnavailable:
		return &m.Unavailable
	default:
		return &m.Internal
	}
}

func (m ErrorMix) values() [numMixErrors]float64 {
	return [numMixErrors]float64{m.Unregistered, m.BadToken, m.TooMany, m.Unavailable, m.Internal}
}

// Validate checks that each probability is within 0..1 and that they add up
// to at most 1.
func (m ErrorMix) Validate() error {
	sum := 0.0
	for i, p := range m.values() {
		if math.IsNaN(p) || p < 0 || p > 1 {
			return fmt.Errorf("%s: probability must be within 0..1, got %v", mixKeys[i], p)
		}
		sum += p
	}
	if sum > 1+1e-9 {
		return fmt.Errorf("probabilities add up to %v, more than 1", sum)
	}
	return nil
}

// IsZero reports whether the mix never produces an error.
func (m ErrorMix) IsZero() bool { return m == ErrorMix{} }

// String returns the mix in ParseErrorMix syntax, zero entries left out
// ("" for no errors).
func (m ErrorMix) String() string {
	var b strings.Builder
	for i, p := range m.values() {
		if p == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(mixKeys[i])
		b.WriteByte('=')
		b.WriteString(strconv.FormatFloat(p, 'g', -1, 64))
	}
	return b.String()
}

// ParseErrorMix parses a comma-separated list of key=probability, for
// example "unregistered=0.01,too_many=0.05,unavailable=0.2". Keys are
// unregistered, bad_token, too_many, unavailable and internal; each at most
// once; probabilities are within 0..1 and add up to at most 1. An empty
// string is no errors.
func ParseErrorMix(s string) (ErrorMix, error) {
	var m ErrorMix
	var seen [numMixErrors]bool
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		key, val, ok := strings.Cut(item, "=")
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if !ok || key == "" || val == "" {
			return ErrorMix{}, fmt.Errorf("error mix %q: want key=probability, e.g. too_many=0.05", item)
		}
		e := mixNone
		for i, k := range mixKeys {
			if strings.EqualFold(key, k) {
				e = mixError(i)
			}
		}
		if e == mixNone {
			return ErrorMix{}, fmt.Errorf("error mix %q: unknown key %q (want one of %s)", item, key, strings.Join(mixKeys[:], ", "))
		}
		if seen[e] {
			return ErrorMix{}, fmt.Errorf("error mix %q: key %q given twice", item, key)
		}
		seen[e] = true
		p, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return ErrorMix{}, fmt.Errorf("error mix %q: %q is not a number", item, val)
		}
		if math.IsNaN(p) || p < 0 || p > 1 {
			return ErrorMix{}, fmt.Errorf("error mix %q: probability must be within 0..1", item)
		}
		*m.field(e) = p
	}
	if err := m.Validate(); err != nil {
		return ErrorMix{}, fmt.Errorf("error mix %q: %w", s, err)
	}
	return m, nil
}

// cumulative returns the running sums of the mix, for drawing an error with
// one uniform number. Out-of-range values are clamped, so a mix that was not
// validated still yields a usable table.
func (m ErrorMix) cumulative() (c [numMixErrors]float64) {
	sum := 0.0
	for i, p := range m.values() {
		if math.IsNaN(p) || p < 0 {
			p = 0
		}
		sum = min(sum+p, 1)
		c[i] = sum
	}
	return c
}

// pick maps a uniform u in [0,1) to the error it draws, or mixNone.
func pick(c *[numMixErrors]float64, u float64) mixError {
	for i, t := range c {
		if u < t {
			return mixError(i)
		}
	}
	return mixNone
}

// retryAfterValue renders d as whole seconds rounded up, "" for d <= 0.
func retryAfterValue(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	secs := (d + time.Second - 1) / time.Second
	return strconv.FormatInt(int64(secs), 10)
}
