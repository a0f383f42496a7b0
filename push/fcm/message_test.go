package fcm

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"firebase.google.com/go/v4/messaging"

	"github.com/pushd/pushd/dispatcher"
)

func offlineSender(t *testing.T) *Sender {
	t.Helper()
	return newSender(t, Config{Endpoint: "https://127.0.0.1:1/v1", ProjectID: "demo"})
}

func template(t *testing.T, s *Sender, n *dispatcher.Notification) messaging.Message {
	t.Helper()
	return prepare(t, s, n).(*message).tmpl
}

func ptr[T any](v T) *T { return &v }

func TestPrepareRenders(t *testing.T) {
	s := offlineSender(t)
	hour := time.Hour
	for _, tc := range []struct {
		name string
		n    dispatcher.Notification
		want messaging.Message
	}{
		{
			name: "full",
			n: dispatcher.Notification{
				Title: "T", Body: "B", Sound: "default", Badge: ptr(2), TTLSeconds: ptr(3600), CollapseKey: "sale",
				Data: map[string]json.RawMessage{
					"deeplink": json.RawMessage(`"app://sale"`),
					"n":        json.RawMessage(`42`),
					"obj":      json.RawMessage(`{ "a" : [1, 2] }`),
					"flag":     json.RawMessage(`true`),
					"esc":      json.RawMessage(`"line\nbreak \u00e9"`),
				},
				FCM: dispatcher.FCMOptions{ChannelID: "promo"},
			},
			want: messaging.Message{
				Notification: &messaging.Notification{Title: "T", Body: "B"},
				Data:         map[string]string{"deeplink": "app://sale", "n": "42", "obj": `{"a":[1,2]}`, "flag": "true", "esc": "line\nbreak é"},
				Android: &messaging.AndroidConfig{
					Priority: "high", TTL: &hour, CollapseKey: "sale",
					Notification: &messaging.AndroidNotification{ChannelID: "promo", Sound: "default", NotificationCount: ptr(2)},
				},
			},
		},
		{
			name: "data only, normal priority",
			n:    dispatcher.Notification{Data: map[string]json.RawMessage{"k": json.RawMessage(`"v"`)}, Priority: "normal"},
			want: messaging.Message{Data: map[string]string{"k": "v"}, Android: &messaging.AndroidConfig{Priority: "normal"}},
		},
		{
			name: "title only, explicit high",
			n:    dispatcher.Notification{Title: "T", Priority: "high"},
			want: messaging.Message{Notification: &messaging.Notification{Title: "T"}, Android: &messaging.AndroidConfig{Priority: "high"}},
		},
		{
			name: "badge zero, ttl zero",
			n:    dispatcher.Notification{Badge: ptr(0), TTLSeconds: ptr(0)},
			want: messaging.Message{Android: &messaging.AndroidConfig{Priority: "high", TTL: ptr(time.Duration(0)),
				Notification: &messaging.AndroidNotification{NotificationCount: ptr(0)}}},
		},
		{
			name: "ttl past time.Duration capped, not negative",
			n:    dispatcher.Notification{Title: "T", TTLSeconds: ptr(10_000_000_000)},
			want: messaging.Message{Notification: &messaging.Notification{Title: "T"},
				Android: &messaging.AndroidConfig{Priority: "high", TTL: ptr(time.Duration(math.MaxInt64/int64(time.Second)) * time.Second)}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := template(t, s, &tc.n)
			if !reflect.DeepEqual(got, tc.want) {
				gb, _ := json.Marshal(&got)
				wb, _ := json.Marshal(&tc.want)
				t.Errorf("template = %s\nwant       %s", gb, wb)
			}
		})
	}
}

func TestPrepareDoesNotAliasBadge(t *testing.T) {
	s := offlineSender(t)
	n := &dispatcher.Notification{Badge: ptr(5)}
	tmpl := template(t, s, n)
	*n.Badge = 9
	if got := *tmpl.Android.Notification.NotificationCount; got != 5 {
		t.Errorf("template badge changed with the notification: %d", got)
	}
}

func TestSendCarriesTemplate(t *testing.T) {
	s, f := setup(t)
	n := &dispatcher.Notification{
		Title: "Spring sale", Body: "50% off", Sound: "default", Badge: ptr(1), TTLSeconds: ptr(3600), CollapseKey: "sale",
		Data: map[string]json.RawMessage{"deeplink": json.RawMessage(`"app://sale"`), "n": json.RawMessage(`42`)},
		FCM:  dispatcher.FCMOptions{ChannelID: "promo"},
	}
	tok := regToken("carry")
	if r := send(prepare(t, s, n), tok); r.Outcome != dispatcher.Sent {
		t.Fatalf("send: %+v", r)
	}
	got := f.received()[0].message
	want := map[string]any{
		"token":        tok,
		"notification": map[string]any{"title": "Spring sale", "body": "50% off"},
		"data":         map[string]any{"deeplink": "app://sale", "n": "42"},
		"android": map[string]any{
			"priority": "high", "ttl": "3600s", "collapse_key": "sale",
			"notification": map[string]any{"channel_id": "promo", "sound": "default", "notification_count": float64(1)},
		},
	}
	if !reflect.DeepEqual(got, want) {
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(want)
		t.Errorf("server got %s\nwant       %s", gb, wb)
	}
}

func TestPrepareSizeLimit(t *testing.T) {
	s := offlineSender(t)
	// Multi-byte runes and characters that JSON must escape (encoding/json
	// also turns < > & into \u003c...), so byte and character counts
	// differ.
	const mixed = "é€😀\"\\\n\x01<>&"
	at := func(fill int) *dispatcher.Notification {
		return &dispatcher.Notification{
			Title: "Ünïcödé " + mixed,
			Body:  mixed + strings.Repeat("a", fill),
			Data:  map[string]json.RawMessage{"k\"ey<": json.RawMessage(`"v€&"`), "n": json.RawMessage(`1`)},
		}
	}
	m0 := prepare(t, s, at(0)).(*message)
	b0, err := json.Marshal(&m0.tmpl)
	if err != nil {
		t.Fatal(err)
	}
	fill := dispatcher.MaxPayloadBytes - len(b0)

	m := prepare(t, s, at(fill)).(*message)
	b, _ := json.Marshal(&m.tmpl)
	if len(b) != dispatcher.MaxPayloadBytes {
		t.Fatalf("edge message is %d bytes, want %d", len(b), dispatcher.MaxPayloadBytes)
	}
	if m.tmpl.Notification.Body != at(fill).Body || m.tmpl.Data[`k"ey<`] != "v€&" {
		t.Error("text does not survive rendering")
	}

	_, err = s.Prepare(at(fill + 1))
	if !errors.Is(err, dispatcher.ErrPayloadTooLarge) {
		t.Fatalf("Prepare one byte over: err = %v, want ErrPayloadTooLarge", err)
	}
	if !strings.Contains(err.Error(), "4097") {
		t.Errorf("error %q does not name the size", err)
	}
}

func TestPrepareErrors(t *testing.T) {
	s := offlineSender(t)
	for _, tc := range []struct {
		name string
		data map[string]json.RawMessage
		want string
	}{
		{"reserved from", map[string]json.RawMessage{"from": json.RawMessage(`"x"`)}, "reserved"},
		{"reserved google. prefix", map[string]json.RawMessage{"google.c.a": json.RawMessage(`"x"`)}, "reserved"},
		{"invalid JSON", map[string]json.RawMessage{"k": json.RawMessage(`{`)}, "invalid JSON"},
		{"invalid JSON string", map[string]json.RawMessage{"k": json.RawMessage(`"unterminated`)}, "invalid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Prepare(&dispatcher.Notification{Data: tc.data})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Prepare: err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}
