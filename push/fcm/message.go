package fcm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"firebase.google.com/go/v4/messaging"

	"github.com/pushd/pushd/dispatcher"
)

// message is a notification rendered for FCM, shared by every recipient of a
// batch.
type message struct {
	s *Sender
	// tmpl is copied by value for each send, which only sets Token; the
	// structures it points to are shared and never written after Prepare.
	tmpl messaging.Message
}

// Prepare renders n into an FCM v1 message template:
//
//   - notification {title, body}, omitted when both are empty;
//   - data: each key of n.Data, a JSON string value unquoted, any other
//     value as its (compacted) JSON text, since FCM data values are strings;
//   - android: priority "high" (default) or "normal", ttl from TTLSeconds,
//     collapse_key, and android.notification {channel_id, sound,
//     notification_count = badge} when any of them is set.
//
// It fails with an error wrapping dispatcher.ErrPayloadTooLarge when the
// message, as the client will encode it (without the token), exceeds
// dispatcher.MaxPayloadBytes, and with another error for a data key FCM
// reserves.
func (s *Sender) Prepare(n *dispatcher.Notification) (dispatcher.Message, error) {
	tmpl, b, err := render(n)
	if err != nil {
		return nil, err
	}
	if len(b) > dispatcher.MaxPayloadBytes {
		return nil, fmt.Errorf("%w: fcm message is %d bytes, limit %d", dispatcher.ErrPayloadTooLarge, len(b), dispatcher.MaxPayloadBytes)
	}
	return &message{s: s, tmpl: tmpl}, nil
}

// RenderMessage returns the FCM v1 message JSON of n as the Sender sends
// it (see Prepare), without the token and the {"message": ...} envelope,
// and without checking its size.
func RenderMessage(n *dispatcher.Notification) ([]byte, error) {
	_, b, err := render(n)
	return b, err
}

// render builds the message template of n and its JSON encoding.
func render(n *dispatcher.Notification) (messaging.Message, []byte, error) {
	var tmpl messaging.Message
	if n.Title != "" || n.Body != "" {
		tmpl.Notification = &messaging.Notification{Title: n.Title, Body: n.Body}
	}
	if len(n.Data) > 0 {
		tmpl.Data = make(map[string]string, len(n.Data))
		for k, v := range n.Data {
			if reservedDataKey(k) {
				return tmpl, nil, fmt.Errorf("fcm: data key %q is reserved by FCM", k)
			}
			s, err := dataValue(v)
			if err != nil {
				return tmpl, nil, fmt.Errorf("fcm: data key %q: %w", k, err)
			}
			tmpl.Data[k] = s
		}
	}
	android := &messaging.AndroidConfig{Priority: "high", CollapseKey: n.CollapseKey}
	if n.Priority == "normal" {
		android.Priority = "normal"
	}
	if ttl, ok := n.TTL(); ok {
		android.TTL = &ttl
	}
	if n.FCM.ChannelID != "" || n.Sound != "" || n.Badge != nil {
		an := &messaging.AndroidNotification{ChannelID: n.FCM.ChannelID, Sound: n.Sound}
		if n.Badge != nil {
			badge := *n.Badge
			an.NotificationCount = &badge
		}
		android.Notification = an
	}
	tmpl.Android = android

	// Encoded exactly as the client will (encoding/json, HTML escaping
	// included), minus the token and the {"message":...} envelope.
	b, err := json.Marshal(&tmpl)
	if err != nil {
		return tmpl, nil, fmt.Errorf("fcm: encode message: %w", err)
	}
	return tmpl, b, nil
}

// reservedDataKey reports whether FCM refuses k as a data key: "from",
// "message_type", or a key starting with "google." or "gcm.notification.".
func reservedDataKey(k string) bool {
	return k == "from" || k == "message_type" ||
		strings.HasPrefix(k, "google.") || strings.HasPrefix(k, "gcm.notification.")
}

// dataValue turns a JSON value into an FCM data string: a JSON string is
// unquoted, anything else is kept as compact JSON text.
func dataValue(v json.RawMessage) (string, error) {
	v = bytes.TrimSpace(v)
	if len(v) > 0 && v[0] == '"' {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", fmt.Errorf("invalid JSON string: %w", err)
		}
		return s, nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, v); err != nil {
		return "", fmt.Errorf("invalid JSON value: %w", err)
	}
	return buf.String(), nil
}

// Send sends the message to one device and classifies FCM's answer. It makes
// exactly one HTTP request (see oneAttempt) and waits at most the configured
// timeout (and at most 10 ms more: see push.Deadlines).
func (m *message) Send(ctx context.Context, to *dispatcher.Recipient) dispatcher.Result {
	msg := m.tmpl
	msg.Token = to.Token
	_, err := m.s.client.Send(m.s.deadlines.Context(ctx), &msg)
	r := classify(err, time.Now())
	if r.Err != nil {
		r.Err = fmt.Errorf("fcm: send to %s: %w", dispatcher.ShortToken(to.Token), r.Err)
	}
	return r
}
