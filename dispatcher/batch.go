package dispatcher

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/pushd/pushd/internal/safetext"
)

// Schema is the value of the "schema" field of every batch this version of
// pushd accepts.
const Schema = "pushd.batch/v1"

// Limits of the pushd.batch/v1 contract.
const (
	// MaxRecipients is the most recipients one batch message may carry.
	MaxRecipients = 1000
	// MaxMessageBytes is the largest batch message body accepted.
	MaxMessageBytes = 1 << 20
	// MaxPayloadBytes is the largest provider payload pushd sends; APNs and
	// FCM both refuse more.
	MaxPayloadBytes = 4096
	// MaxIDLength bounds batch and campaign ids (they end up in queue names,
	// headers and logs).
	MaxIDLength = 200
)

// Errors returned by DecodeBatch, checked with errors.Is. Each is wrapped with
// a message naming what was wrong.
var (
	// ErrMalformed means the message is not a JSON object at all.
	ErrMalformed = errors.New("malformed message")
	// ErrSchema means the message is JSON but breaks pushd.batch/v1.
	ErrSchema = errors.New("schema violation")
	// ErrTooLarge means the message body exceeds MaxMessageBytes.
	ErrTooLarge = errors.New("message too large")
	// ErrPayloadTooLarge means a rendered provider payload exceeds
	// MaxPayloadBytes. Providers return it from Prepare.
	ErrPayloadTooLarge = errors.New("payload too large")
)

// Platform is the kind of device a recipient is on; it selects the provider.
type Platform uint8

// Platforms. PlatformUnknown is what an unrecognised "platform" value decodes
// to; such a recipient is dropped, not the batch.
const (
	PlatformUnknown Platform = iota
	IOS
	Android
	numPlatforms
)

// Platforms lists the platforms pushd can send to.
var Platforms = [...]Platform{IOS, Android}

// String returns the platform as written in messages ("ios", "android").
func (p Platform) String() string {
	switch p {
	case IOS:
		return "ios"
	case Android:
		return "android"
	}
	return "unknown"
}

// Provider returns the name of the push service for the platform, as used in
// metric labels ("apns", "fcm").
func (p Platform) Provider() string {
	switch p {
	case IOS:
		return "apns"
	case Android:
		return "fcm"
	}
	return "unknown"
}

// ParsePlatform maps "ios" and "android" (any case) to a Platform; anything
// else is PlatformUnknown.
func ParsePlatform(s string) Platform {
	switch strings.ToLower(s) {
	case "ios":
		return IOS
	case "android":
		return Android
	}
	return PlatformUnknown
}

// MarshalText implements encoding.TextMarshaler.
func (p Platform) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler. It never fails: an
// unknown platform is a per-recipient problem, not a broken message.
func (p *Platform) UnmarshalText(b []byte) error {
	*p = ParsePlatform(string(b))
	return nil
}

// Batch is one pushd.batch/v1 message: a notification and up to
// MaxRecipients recipients of one campaign.
type Batch struct {
	Schema       string       `json:"schema"`
	BatchID      string       `json:"batch_id"`
	Campaign     Campaign     `json:"campaign"`
	Notification Notification `json:"notification"`
	Recipients   []Recipient  `json:"recipients"`
	NotBefore    *time.Time   `json:"not_before,omitempty"`
	ExpiresAt    *time.Time   `json:"expires_at,omitempty"`
}

// Campaign groups batches; its rate, status and counters are shared by all of
// them.
type Campaign struct {
	ID string `json:"id"`
	// RatePerSecond is the campaign's send rate; 0 means no campaign limit.
	RatePerSecond float64 `json:"rate_per_second,omitempty"`
	// Test restricts the campaign to whitelisted recipients.
	Test bool `json:"test,omitempty"`
}

// Notification is what every recipient of a batch receives. Providers render
// it once per batch.
type Notification struct {
	Title string `json:"title,omitempty"`
	Body  string `json:"body,omitempty"`
	// Data holds custom keys. They reach the app as top-level keys of the
	// APNs payload and as FCM message.data (non-string values as JSON text).
	Data        map[string]json.RawMessage `json:"data,omitempty"`
	Sound       string                     `json:"sound,omitempty"`
	Badge       *int                       `json:"badge,omitempty"`
	Priority    string                     `json:"priority,omitempty"` // "high" or "normal"; empty means high
	TTLSeconds  *int                       `json:"ttl_seconds,omitempty"`
	CollapseKey string                     `json:"collapse_key,omitempty"`
	APNs        APNsOptions                `json:"apns,omitzero"`
	FCM         FCMOptions                 `json:"fcm,omitzero"`
}

// APNsOptions are the Apple-specific parts of a notification.
type APNsOptions struct {
	Topic    string `json:"topic,omitempty"`
	PushType string `json:"push_type,omitempty"`
}

// FCMOptions are the Google-specific parts of a notification.
type FCMOptions struct {
	ChannelID string `json:"channel_id,omitempty"`
}

// Recipient is one device to notify.
type Recipient struct {
	Platform Platform `json:"platform"`
	Token    string   `json:"token"`
	UserID   string   `json:"user_id,omitempty"`
}

// apnsPushTypes are the apns-push-type values Apple documents.
var apnsPushTypes = map[string]bool{
	"alert": true, "background": true, "voip": true, "complication": true,
	"fileprovider": true, "mdm": true, "location": true, "liveactivity": true,
	"pushtotalk": true, "widgets": true, "controls": true,
}

// DecodeBatch parses and validates a pushd.batch/v1 message body. Unknown
// fields are ignored so producers may add their own. Problems with single
// recipients (bad token, unknown platform) are not errors here: see
// Recipient.Check.
func DecodeBatch(body []byte) (*Batch, error) {
	if len(body) > MaxMessageBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(body), MaxMessageBytes)
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, fmt.Errorf("%w: body is not a JSON object", ErrMalformed)
	}
	var b Batch
	if err := json.Unmarshal(trimmed, &b); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		var typ *json.UnmarshalTypeError
		if errors.As(err, &typ) {
			return nil, schemaErr(typ.Field, "must be a JSON %s, got %s", jsonKind(typ.Type.Kind().String()), typ.Value)
		}
		var tm *time.ParseError
		if errors.As(err, &tm) {
			return nil, schemaErr("not_before/expires_at", "must be an RFC 3339 time: %v", err)
		}
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := b.validate(); err != nil {
		return nil, err
	}
	return &b, nil
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "struct", "map":
		return "object"
	case "slice", "array":
		return "array"
	case "bool":
		return "boolean"
	}
	return "number"
}

func schemaErr(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrSchema, field, fmt.Sprintf(format, args...))
}

func (b *Batch) validate() error {
	switch {
	case b.Schema == "":
		return schemaErr("schema", "missing; want %q", Schema)
	case b.Schema != Schema:
		return schemaErr("schema", "unsupported %q; want %q", b.Schema, Schema)
	}
	if err := checkID("batch_id", b.BatchID); err != nil {
		return err
	}
	if err := checkID("campaign.id", b.Campaign.ID); err != nil {
		return err
	}
	if b.Campaign.RatePerSecond < 0 {
		return schemaErr("campaign.rate_per_second", "must be 0 or more")
	}
	if err := b.Notification.validate(); err != nil {
		return err
	}
	if n := len(b.Recipients); n == 0 || n > MaxRecipients {
		return schemaErr("recipients", "must hold 1 to %d entries, got %d", MaxRecipients, n)
	}
	if b.NotBefore != nil && b.ExpiresAt != nil && !b.ExpiresAt.After(*b.NotBefore) {
		return schemaErr("expires_at", "must be after not_before")
	}
	return nil
}

func checkID(field, id string) error {
	if id == "" {
		return schemaErr(field, "missing")
	}
	if len(id) > MaxIDLength {
		return schemaErr(field, "longer than %d bytes", MaxIDLength)
	}
	if err := safetext.Check(id); err != nil {
		return schemaErr(field, "%v", err)
	}
	return nil
}

func (n *Notification) validate() error {
	switch n.Priority {
	case "", "high", "normal":
	default:
		return schemaErr("notification.priority", "must be \"high\" or \"normal\", got %q", n.Priority)
	}
	if n.TTLSeconds != nil && *n.TTLSeconds < 0 {
		return schemaErr("notification.ttl_seconds", "must be 0 or more")
	}
	if n.Badge != nil && *n.Badge < 0 {
		return schemaErr("notification.badge", "must be 0 or more")
	}
	if len(n.CollapseKey) > 64 {
		return schemaErr("notification.collapse_key", "longer than 64 bytes (APNs limit)")
	}
	if pt := n.APNs.PushType; pt != "" && !apnsPushTypes[pt] {
		return schemaErr("notification.apns.push_type", "unknown push type %q", pt)
	}
	for k, v := range n.Data {
		if k == "" {
			return schemaErr("notification.data", "empty key")
		}
		if k == "aps" {
			return schemaErr("notification.data.aps", "reserved by APNs")
		}
		if len(v) == 0 || string(v) == "null" {
			return schemaErr("notification.data."+k, "must not be null")
		}
	}
	if n.Title == "" && n.Body == "" && len(n.Data) == 0 && n.Badge == nil && n.Sound == "" {
		return schemaErr("notification", "empty: give a title, body, data, badge or sound")
	}
	return nil
}

// TTL returns TTLSeconds as a duration, and false when the notification has
// none. A TTL longer than a time.Duration holds (about 292 years) becomes the
// longest one in whole seconds instead of overflowing into a negative or
// short TTL.
func (n *Notification) TTL() (time.Duration, bool) {
	if n.TTLSeconds == nil {
		return 0, false
	}
	const maxSeconds = math.MaxInt64 / int64(time.Second)
	return time.Duration(min(int64(*n.TTLSeconds), maxSeconds)) * time.Second, true
}

// Expired reports whether the batch is past its expires_at at now.
func (b *Batch) Expired(now time.Time) bool {
	return b.ExpiresAt != nil && !now.Before(*b.ExpiresAt)
}

// Recipient problems returned by Check.
var (
	ErrUnknownPlatform = errors.New("unknown platform")
	ErrBadToken        = errors.New("malformed token")
)

// Check reports whether the recipient can be sent to: a known platform and a
// well-formed token (APNs: 64 to 200 hex digits; FCM: 1 to 4096 characters of
// [A-Za-z0-9_:.-]). It does not allocate.
func (r *Recipient) Check() error {
	switch r.Platform {
	case IOS:
		if !validAPNsToken(r.Token) {
			return ErrBadToken
		}
	case Android:
		if !validFCMToken(r.Token) {
			return ErrBadToken
		}
	default:
		return ErrUnknownPlatform
	}
	return nil
}

func validAPNsToken(t string) bool {
	if len(t) < 64 || len(t) > 200 || len(t)%2 != 0 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func validFCMToken(t string) bool {
	if len(t) == 0 || len(t) > 4096 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c == '-' || c == ':' || c == '.') {
			return false
		}
	}
	return true
}

// ShortToken returns a prefix of a device token that is safe to log.
func ShortToken(t string) string {
	if len(t) <= 8 {
		return t
	}
	return t[:8] + "…"
}
