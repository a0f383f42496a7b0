package fcm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"firebase.google.com/go/v4/messaging"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/push/pushtest"
)

// FuzzRender checks Prepare on notifications built from arbitrary text. It
// must never panic, and either
//
//   - refuse a data key FCM reserves, or a message whose JSON (as the client
//     encodes it, without the token) is over dispatcher.MaxPayloadBytes
//     (wrapping ErrPayloadTooLarge), exactly when the notification has one
//     of these problems; or
//   - build the expected template, whose JSON is at most MaxPayloadBytes
//     bytes of valid UTF-8, with notification.title and notification.body
//     the given texts, message.data holding only strings (the data value
//     itself if a JSON string, else its compact JSON text), and android.ttl
//     the given ttl in seconds.
//
// The body is body repeated bodyRepeat times, so that small inputs reach the
// limit. value is the data value when it is valid JSON, else it is made a
// JSON string. Text that is not valid UTF-8 reaches the device with each bad
// byte replaced by U+FFFD. Seeds beyond these are in testdata/fuzz/FuzzRender.
func FuzzRender(f *testing.F) {
	s, err := New(context.Background(), Config{Endpoint: "https://127.0.0.1:1/v1", ProjectID: "demo"}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(s.Close)

	type in struct {
		title, body                          string
		bodyRepeat                           uint16
		key, value, sound, collapse, channel string
		badge, ttl                           int
		normal                               bool
	}
	seeds := []in{
		{title: "Spring sale", body: "50% off today", key: "deeplink", value: `"app://sale"`, sound: "default", collapse: "sale", channel: "promo", badge: 3, ttl: 3600},
		{title: "Soldes d'été 🎉 — «50 %»", body: "日本語のテキスト 中文 한국어", key: "ключ", value: `"значение 😀"`, badge: -1, ttl: -1, normal: true},
		{title: "e\u0301 n\u0303 a\u030a\u0323", body: "👩‍👩‍👧‍👦 🇫🇷 \U0010FFFF \uFEFF", key: "emoji 😀", value: `["a", {"b" : [1, 2.5e3, -0]}]`, badge: 0, ttl: 0},
		{title: `"quoted" \ back\\slash \"`, body: "<b>&amp;</b> \u2028\u2029 \x00\x01\x1f\x7f \t\r\n", key: `k"e\y<`, value: ` "\u2028 <i> \ud83d\ude00 \\" `, sound: `"\`, badge: -1, ttl: -1},
		{title: "bad \xff\xfe utf-8 \xed\xa0\x80", body: "\xc3", key: "k\xff", value: "\"\xf9 in a data string\"", badge: -1, ttl: -1},
		{title: "not UTF-8 in a data object", key: "k", value: "{\"a\": \"\xf9\"}", badge: -1, ttl: -1},
		{title: "not JSON", key: "k", value: "{ \xff", badge: -1, ttl: -1},
		{key: "only", value: `1`, badge: -1, ttl: 2419200},
		{title: "reserved", key: "from", value: `"x"`, badge: -1, ttl: -1},
		{title: "reserved prefix", key: "google.c.a.e", value: `"1"`, badge: -1, ttl: -1},
		{title: "reserved prefix", key: "gcm.notification.body", value: `"1"`, badge: -1, ttl: -1},
		{title: "longest ttl", badge: -1, ttl: maxDurationSeconds},
		{title: "ttl past time.Duration", badge: -1, ttl: maxDurationSeconds + 1},
		{title: "ttl of MaxInt", badge: -1, ttl: math.MaxInt},
	}
	// Messages of exactly MaxPayloadBytes, and one body unit over, with
	// bodies of one-byte, multi-byte and escaped characters.
	for _, unit := range []string{"a", "€", "😀", "\u2028", "\x01"} {
		sd := in{title: "Ünïcödé é€😀\"\\\n\x01<>&", body: unit, key: "k\"ey<", value: `"v€&"`, badge: -1, ttl: -1}
		pad, n, err := pushtest.EdgeSize(dispatcher.MaxPayloadBytes, func(pad, n int) (int, error) {
			m, err := s.Prepare(&dispatcher.Notification{Title: sd.title + strings.Repeat("x", pad), Body: repeated(unit, uint16(n)), Data: map[string]json.RawMessage{sd.key: json.RawMessage(sd.value)}})
			if err != nil {
				return 0, err
			}
			b, err := json.Marshal(&m.(*message).tmpl)
			return len(b), err
		})
		if err != nil {
			f.Fatalf("edge seed of %q: %v", unit, err)
		}
		sd.title += strings.Repeat("x", pad)
		sd.bodyRepeat = uint16(n)
		seeds = append(seeds, sd)
		sd.bodyRepeat++
		seeds = append(seeds, sd)
	}
	for _, sd := range seeds {
		f.Add(sd.title, sd.body, sd.bodyRepeat, sd.key, sd.value, sd.sound, sd.collapse, sd.channel, sd.badge, sd.ttl, sd.normal)
	}

	f.Fuzz(func(t *testing.T, title, body string, bodyRepeat uint16, key, value, sound, collapse, channel string, badge, ttl int, normal bool) {
		body = repeated(body, bodyRepeat)
		n := &dispatcher.Notification{Title: title, Body: body, Sound: sound, CollapseKey: collapse, FCM: dispatcher.FCMOptions{ChannelID: channel}}
		var dataString string
		if key != "" {
			raw := json.RawMessage(value)
			if !json.Valid(raw) {
				raw, _ = json.Marshal(value)
			}
			n.Data = map[string]json.RawMessage{key: raw}
			dataString = fcmDataString(t, raw)
		}
		if badge >= 0 {
			n.Badge = &badge
		}
		if ttl >= 0 {
			n.TTLSeconds = &ttl
		}
		if normal {
			n.Priority = "normal"
		}
		want := expectedMessage(n, dataString)
		wantJSON, err := json.Marshal(&want)
		if err != nil {
			t.Fatalf("encode the expected message: %v", err)
		}

		m, err := s.Prepare(n)
		switch {
		case key == "from" || key == "message_type" || strings.HasPrefix(key, "google.") || strings.HasPrefix(key, "gcm.notification."):
			if err == nil || !strings.Contains(err.Error(), "reserved") {
				t.Fatalf("data key %q: err = %v, want it refused as reserved", key, err)
			}
			return
		case len(wantJSON) > dispatcher.MaxPayloadBytes:
			if !errors.Is(err, dispatcher.ErrPayloadTooLarge) {
				t.Fatalf("message of %d bytes: err = %v, want ErrPayloadTooLarge", len(wantJSON), err)
			}
			return
		case err != nil:
			t.Fatalf("Prepare of a message of %d bytes: %v", len(wantJSON), err)
		}

		tmpl := m.(*message).tmpl
		if !reflect.DeepEqual(tmpl, want) {
			got, _ := json.Marshal(&tmpl)
			t.Fatalf("template %s\nwant     %s", got, wantJSON)
		}
		b, err := json.Marshal(&tmpl)
		if err != nil {
			t.Fatalf("encode the template: %v", err)
		}
		if len(b) > dispatcher.MaxPayloadBytes {
			t.Fatalf("message is %d bytes, limit %d", len(b), dispatcher.MaxPayloadBytes)
		}
		if !json.Valid(b) || !utf8.Valid(b) {
			t.Fatalf("message is not valid UTF-8 JSON: %q", b)
		}

		var got struct {
			Notification *map[string]any `json:"notification"`
			Data         *map[string]any `json:"data"`
			Android      struct {
				TTL *string `json:"ttl"`
			} `json:"android"`
			Token *string `json:"token"`
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
		if got.Token != nil {
			t.Fatalf("template carries a token: %s", b)
		}
		if title == "" && body == "" {
			if got.Notification != nil {
				t.Fatalf("notification without title or body: %s", b)
			}
		} else {
			for name, text := range map[string]string{"title": title, "body": body} {
				v, present := (*got.Notification)[name]
				if text == "" && present || text != "" && v != wireText(text) {
					t.Fatalf("notification.%s = %q, want %q", name, v, text)
				}
			}
		}
		if key == "" {
			if got.Data != nil {
				t.Fatalf("data without a data key: %s", b)
			}
		} else {
			if got.Data == nil || len(*got.Data) != 1 {
				t.Fatalf("message.data is not one key: %s", b)
			}
			v, ok := (*got.Data)[wireText(key)].(string)
			if !ok || v != wireText(dataString) {
				t.Fatalf("message.data[%q] = %#v, want the string %q", key, (*got.Data)[wireText(key)], dataString)
			}
		}
		if ttl >= 0 {
			if w := strconv.Itoa(min(ttl, maxDurationSeconds)) + "s"; got.Android.TTL == nil || *got.Android.TTL != w {
				t.Fatalf("android.ttl for %d seconds: %v, want %q", ttl, got.Android.TTL, w)
			}
		} else if got.Android.TTL != nil {
			t.Fatalf("android.ttl %q without a ttl", *got.Android.TTL)
		}
	})
}

// maxDurationSeconds is the longest TTL a time.Duration holds, in seconds.
const maxDurationSeconds = math.MaxInt64 / int(time.Second)

// expectedMessage is the template Prepare should build for n, whose data
// value, if any, is dataString.
func expectedMessage(n *dispatcher.Notification, dataString string) messaging.Message {
	var want messaging.Message
	if n.Title != "" || n.Body != "" {
		want.Notification = &messaging.Notification{Title: n.Title, Body: n.Body}
	}
	for k := range n.Data {
		want.Data = map[string]string{k: dataString}
	}
	want.Android = &messaging.AndroidConfig{Priority: "high", CollapseKey: n.CollapseKey}
	if n.Priority == "normal" {
		want.Android.Priority = "normal"
	}
	if n.TTLSeconds != nil {
		ttl := time.Duration(min(*n.TTLSeconds, maxDurationSeconds)) * time.Second
		want.Android.TTL = &ttl
	}
	if n.Sound != "" || n.Badge != nil || n.FCM.ChannelID != "" {
		want.Android.Notification = &messaging.AndroidNotification{ChannelID: n.FCM.ChannelID, Sound: n.Sound, NotificationCount: n.Badge}
	}
	return want
}

// fcmDataString is a valid JSON value as an FCM data string: a JSON string
// decoded, anything else as compact JSON text.
func fcmDataString(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("decode %q: %v", raw, err)
	}
	if s, ok := v.(string); ok {
		return s
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		t.Fatalf("compact %q: %v", raw, err)
	}
	return buf.String()
}

// wireText is s as it reads once encoded by encoding/json: each byte that
// is not part of valid UTF-8 becomes U+FFFD.
func wireText(s string) string {
	return string([]rune(s))
}

// repeated returns s repeated n times (once for n 0), but no longer than
// needed to pass three times the payload limit.
func repeated(s string, n uint16) string {
	if n <= 1 || s == "" {
		return s
	}
	return strings.Repeat(s, min(int(n), 3*dispatcher.MaxPayloadBytes/len(s)+1))
}
