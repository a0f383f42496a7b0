package apns

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/sideshow/apns2"

	"github.com/pushd/pushd/dispatcher"
)

// maxCollapseID is the longest apns-collapse-id APNs accepts, in bytes.
const maxCollapseID = 64

// message is a notification rendered for APNs, shared by every recipient of
// a batch.
type message struct {
	s *Sender
	// tmpl is the notification as apns2 models it, without a device
	// token; its Payload is the payload rendered once, as []byte, already
	// in the form apns2's json.Marshal gives it, so it goes out byte for
	// byte.
	tmpl apns2.Notification
	// payload is tmpl.Payload.
	payload []byte
	// header holds the request headers every push of the message sends:
	// all but apns-expiration and authorization. Pushes share it: a
	// RoundTripper does not modify a request.
	header http.Header
	// timed caches header with those two, for as long as they stay the
	// same (a second; the provider token's 50 minutes).
	timed atomic.Pointer[timedHeader]
	// ttl is the notification's time to live, or -1 for none. The
	// apns-expiration header is computed from it at each push, so a batch
	// sent slowly by a throttled campaign does not expire early.
	ttl time.Duration
}

// timedHeader is a message's header with an apns-expiration and a provider
// token.
type timedHeader struct {
	expiration int64 // Unix seconds; 0 for none
	bearer     string
	header     http.Header
}

// Prepare renders n into an APNs payload:
//
//	{"aps":{"alert":{"title":..,"body":..},"sound":..,"badge":..}, <data keys>}
//
// with each key of n.Data at the top level, its JSON value compacted. A
// "background" push carries {"aps":{"content-available":1}} and priority 5
// instead, as Apple requires. Prepare fails with an error wrapping
// dispatcher.ErrPayloadTooLarge when the payload exceeds
// dispatcher.MaxPayloadBytes.
func (s *Sender) Prepare(n *dispatcher.Notification) (dispatcher.Message, error) {
	pushType := n.APNs.PushType
	if pushType == "" {
		pushType = string(apns2.PushTypeAlert)
	}
	topic := n.APNs.Topic
	if topic == "" {
		topic = s.topic
	}
	if topic == "" && s.needTopic {
		return nil, errors.New("apns: no topic: set notification.apns.topic or the apns topic setting (token authentication requires one)")
	}
	if len(n.CollapseKey) > maxCollapseID {
		return nil, fmt.Errorf("apns: collapse_key is %d bytes, APNs allows %d", len(n.CollapseKey), maxCollapseID)
	}
	payload, err := RenderPayload(n)
	if err != nil {
		return nil, err
	}
	if len(payload) > dispatcher.MaxPayloadBytes {
		return nil, fmt.Errorf("%w: apns payload is %d bytes, limit %d", dispatcher.ErrPayloadTooLarge, len(payload), dispatcher.MaxPayloadBytes)
	}
	m := &message{
		s: s,
		tmpl: apns2.Notification{
			CollapseID: n.CollapseKey,
			Topic:      topic,
			Priority:   priority(n.Priority, pushType),
			PushType:   apns2.EPushType(pushType),
			Payload:    payload,
		},
		payload: payload,
		ttl:     -1,
	}
	m.header = requestHeader(&m.tmpl)
	if ttl, ok := n.TTL(); ok {
		m.ttl = ttl
	}
	return m, nil
}

// requestHeader returns the headers apns2's Client.Push sends for n, but
// apns-expiration and authorization, which change over time.
func requestHeader(n *apns2.Notification) http.Header {
	h := make(http.Header, 6)
	h.Set("Content-Type", "application/json; charset=utf-8")
	if n.Topic != "" {
		h.Set("apns-topic", n.Topic)
	}
	if n.ApnsID != "" {
		h.Set("apns-id", n.ApnsID)
	}
	if n.CollapseID != "" {
		h.Set("apns-collapse-id", n.CollapseID)
	}
	if n.Priority > 0 {
		h.Set("apns-priority", strconv.Itoa(n.Priority))
	}
	pushType := n.PushType
	if pushType == "" {
		pushType = apns2.PushTypeAlert
	}
	h.Set("apns-push-type", string(pushType))
	return h
}

// RenderPayload returns the APNs payload JSON of n, byte for byte as the
// Sender sends it (see Prepare), without checking its size.
func RenderPayload(n *dispatcher.Notification) ([]byte, error) {
	return renderPayload(n, n.APNs.PushType == string(apns2.PushTypeBackground))
}

// priority maps a pushd priority to apns-priority. Apple requires 5 for
// background pushes.
func priority(p, pushType string) int {
	if p == "normal" || pushType == string(apns2.PushTypeBackground) {
		return apns2.PriorityLow
	}
	return apns2.PriorityHigh
}

// renderPayload builds the APNs JSON payload, byte for byte as it goes on
// the wire. apns2 passes the payload through json.Marshal, which compacts it
// and escapes <, >, &, U+2028 and U+2029 as \u003c and so on; the payload is
// put through the same transformation here, so that the size checked is the
// size sent. Strings are encoded by encoding/json (quotes, control
// characters, invalid UTF-8), data values compacted, keys sorted so the
// payload is stable. Neither json.Compact nor json.Marshal checks UTF-8, so
// bytes of a data value that are not UTF-8 (they can only be inside its
// strings) are replaced by U+FFFD, one for each, as encoding/json does in
// the other strings: a payload is always valid UTF-8 JSON.
func renderPayload(n *dispatcher.Notification, background bool) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(256)
	enc := json.NewEncoder(&buf)
	str := func(s string) {
		_ = enc.Encode(s)           // a string always encodes
		buf.Truncate(buf.Len() - 1) // Encode appends a newline
	}

	buf.WriteString(`{"aps":{`)
	if background {
		buf.WriteString(`"content-available":1`)
	} else {
		sep := false
		comma := func() {
			if sep {
				buf.WriteByte(',')
			}
			sep = true
		}
		if n.Title != "" || n.Body != "" {
			comma()
			buf.WriteString(`"alert":{`)
			if n.Title != "" {
				buf.WriteString(`"title":`)
				str(n.Title)
			}
			if n.Body != "" {
				if n.Title != "" {
					buf.WriteByte(',')
				}
				buf.WriteString(`"body":`)
				str(n.Body)
			}
			buf.WriteByte('}')
		}
		if n.Sound != "" {
			comma()
			buf.WriteString(`"sound":`)
			str(n.Sound)
		}
		if n.Badge != nil {
			comma()
			fmt.Fprintf(&buf, `"badge":%d`, *n.Badge)
		}
	}
	buf.WriteByte('}')

	keys := make([]string, 0, len(n.Data))
	for k := range n.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if k == "aps" {
			return nil, errors.New("apns: data key \"aps\" is reserved")
		}
		buf.WriteByte(',')
		str(k)
		buf.WriteByte(':')
		start := buf.Len()
		if err := json.Compact(&buf, n.Data[k]); err != nil {
			return nil, fmt.Errorf("apns: data key %q: invalid JSON value: %w", k, err)
		}
		if v := buf.Bytes()[start:]; !utf8.Valid(v) {
			v = replaceInvalidUTF8(v)
			buf.Truncate(start)
			buf.Write(v)
		}
	}
	buf.WriteByte('}')
	wire, err := json.Marshal(json.RawMessage(buf.Bytes()))
	if err != nil {
		return nil, fmt.Errorf("apns: render payload: %w", err)
	}
	return wire, nil
}

// replaceInvalidUTF8 returns a copy of b with each byte that is not part of
// a valid UTF-8 sequence replaced by U+FFFD.
func replaceInvalidUTF8(b []byte) []byte {
	out := make([]byte, 0, len(b)+2*utf8.UTFMax)
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size == 1 {
			out = utf8.AppendRune(out, utf8.RuneError)
		} else {
			out = append(out, b[:size]...)
		}
		b = b[size:]
	}
	return out
}

// Send pushes the message to one device and classifies Apple's answer. It is
// called concurrently; it waits at most the configured timeout (and at most
// 10 ms more: see push.Deadlines).
func (m *message) Send(ctx context.Context, to *dispatcher.Recipient) dispatcher.Result {
	resp, err := m.s.conn().RoundTrip(m.request(m.s.deadlines.Context(ctx), to.Token))
	if err != nil {
		return transportResult(hideToken(err, to.Token))
	}
	res := answerResult(resp)
	if res.Credential && res.Reason == apns2.ReasonExpiredProviderToken {
		m.s.renewToken()
	}
	return res
}

// request is the request apns2's Client.Push makes for the message to
// token: POST <host>/3/device/<token>, the payload, the message's headers.
func (m *message) request(ctx context.Context, token string) *http.Request {
	u := *m.s.base
	u.Path += "/3/device/" + token
	r := (&http.Request{
		Method:     http.MethodPost,
		URL:        &u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     m.timedHeader(),
		Host:       u.Host,
	}).WithContext(ctx)
	r.Body, _ = m.body()
	r.GetBody = m.body // lets the transport resend it on a fresh connection
	r.ContentLength = int64(len(m.payload))
	return r
}

// timedHeader returns the message's headers with this push's
// apns-expiration and provider token.
func (m *message) timedHeader() http.Header {
	if m.ttl < 0 && m.s.tok == nil {
		return m.header
	}
	var (
		exp    int64
		bearer string
	)
	if m.ttl >= 0 {
		exp = time.Now().Add(m.ttl).Unix()
	}
	if m.s.tok != nil {
		bearer = m.s.tok.GenerateIfExpired()
	}
	if t := m.timed.Load(); t != nil && t.expiration == exp && t.bearer == bearer {
		return t.header
	}
	h := m.header.Clone()
	if m.ttl >= 0 {
		h.Set("apns-expiration", strconv.FormatInt(exp, 10))
	}
	if bearer != "" {
		h.Set("authorization", "bearer "+bearer)
	}
	m.timed.Store(&timedHeader{expiration: exp, bearer: bearer, header: h})
	return h
}

// payloadBody is a request body reading a message's payload.
type payloadBody struct{ bytes.Reader }

func (*payloadBody) Close() error { return nil }

// body returns a new reader of the payload.
func (m *message) body() (io.ReadCloser, error) {
	b := new(payloadBody)
	b.Reset(m.payload)
	return b, nil
}

// hideToken strips the request URL, which holds the full device token, from
// a transport error so it can be logged.
func hideToken(err error, tok string) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("apns: push to %s: %w", dispatcher.ShortToken(tok), ue.Err)
	}
	return fmt.Errorf("apns: push to %s: %w", dispatcher.ShortToken(tok), err)
}
