package apns

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sideshow/apns2"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/push/pushtest"
)

// FuzzRender checks Prepare on notifications built from arbitrary text. It
// must never panic, and either
//
//   - refuse a collapse key over 64 bytes, the reserved data key "aps", or a
//     payload over dispatcher.MaxPayloadBytes (wrapping ErrPayloadTooLarge),
//     exactly when the notification has one of these problems; or
//   - render a payload of at most MaxPayloadBytes bytes, exactly as long as
//     json.Marshal makes it (the size checked is the size sent), that is
//     valid UTF-8 JSON in which aps.alert.title and aps.alert.body are the
//     given texts, and the data key sits at the top level with its value;
//     sound, badge, collapse id, push type, priority and TTL (capped past
//     time.Duration) as given.
//
// The body is body repeated bodyRepeat times, so that small inputs reach the
// limit. value is the data value when it is valid JSON, else it is made a
// JSON string. Text that is not valid UTF-8 reaches the device with each bad
// byte replaced by U+FFFD. Seeds beyond these are in testdata/fuzz/FuzzRender.
func FuzzRender(f *testing.F) {
	s, err := New(Config{Host: "https://127.0.0.1:1", Topic: "com.example.app"}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(s.Close)

	type in struct {
		title, body                 string
		bodyRepeat                  uint16
		key, value, sound, collapse string
		badge, ttl                  int
		background                  bool
	}
	seeds := []in{
		{title: "Spring sale", body: "50% off today", key: "deeplink", value: `"app://sale"`, sound: "default", collapse: "sale", badge: 3, ttl: 3600},
		{title: "Soldes d'été 🎉 — «50 %»", body: "日本語のテキスト 中文 한국어", key: "ключ", value: `"значение 😀"`, badge: -1, ttl: -1},
		{title: "e\u0301 n\u0303 a\u030a\u0323", body: "👩‍👩‍👧‍👦 🇫🇷 \U0010FFFF \uFEFF", key: "emoji 😀", value: `["a", {"b" : [1, 2.5e3, -0]}]`, badge: 0, ttl: 0},
		{title: `"quoted" \ back\\slash \"`, body: "<b>&amp;</b> \u2028\u2029 \x00\x01\x1f\x7f \t\r\n", key: `k"e\y<`, value: `"\u2028 <i> \ud83d\ude00 \\"`, sound: `"\`, badge: -1, ttl: -1},
		{title: "bad \xff\xfe utf-8 \xed\xa0\x80", body: "\xc3", key: "k\xff", value: "\"\xf9 in a data string\"", badge: -1, ttl: -1},
		{title: "not JSON", key: "k", value: "{ \xff", badge: -1, ttl: -1},
		{body: "background", key: "sync", value: `{"inbox":true}`, background: true, badge: 1, ttl: 60},
		{title: "collapse", collapse: strings.Repeat("k", 65), badge: -1, ttl: -1},
		{title: "reserved", key: "aps", value: `{}`, badge: -1, ttl: -1},
		{key: "only", value: `1`, badge: -1, ttl: -1},
		{title: "longest ttl", badge: -1, ttl: maxDurationSeconds},
		{title: "ttl past time.Duration", badge: -1, ttl: maxDurationSeconds + 1},
		{title: "ttl of MaxInt", badge: -1, ttl: math.MaxInt},
	}
	// Payloads of exactly MaxPayloadBytes, and one body unit over, with
	// bodies of one-byte, multi-byte and escaped characters.
	for _, unit := range []string{"a", "€", "😀", "\u2028", "\x01"} {
		sd := in{title: "Ünïcödé é€😀\"\\\n\x01<>&", body: unit, key: "k\"ey", value: `"v€"`, badge: -1, ttl: -1}
		pad, n, err := pushtest.EdgeSize(dispatcher.MaxPayloadBytes, func(pad, n int) (int, error) {
			p, err := renderPayload(&dispatcher.Notification{Title: sd.title + strings.Repeat("x", pad), Body: repeated(unit, uint16(n)), Data: map[string]json.RawMessage{sd.key: json.RawMessage(sd.value)}}, false)
			return len(p), err
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
		f.Add(sd.title, sd.body, sd.bodyRepeat, sd.key, sd.value, sd.sound, sd.collapse, sd.badge, sd.ttl, sd.background)
	}

	f.Fuzz(func(t *testing.T, title, body string, bodyRepeat uint16, key, value, sound, collapse string, badge, ttl int, background bool) {
		body = repeated(body, bodyRepeat)
		n := &dispatcher.Notification{Title: title, Body: body, Sound: sound, CollapseKey: collapse}
		if key != "" {
			raw := json.RawMessage(value)
			if !json.Valid(raw) {
				raw, _ = json.Marshal(value)
			}
			n.Data = map[string]json.RawMessage{key: raw}
		}
		if badge >= 0 {
			n.Badge = &badge
		}
		if ttl >= 0 {
			n.TTLSeconds = &ttl
		}
		if background {
			n.APNs.PushType = "background"
		}
		want := referencePayload(t, n, background)

		m, err := s.Prepare(n)
		switch {
		case len(collapse) > maxCollapseID:
			if err == nil || !strings.Contains(err.Error(), "collapse_key") {
				t.Fatalf("collapse key of %d bytes: err = %v", len(collapse), err)
			}
			return
		case key == "aps":
			if err == nil || !strings.Contains(err.Error(), "reserved") {
				t.Fatalf(`data key "aps": err = %v`, err)
			}
			return
		case len(want) > dispatcher.MaxPayloadBytes:
			if !errors.Is(err, dispatcher.ErrPayloadTooLarge) {
				t.Fatalf("payload of %d bytes: err = %v, want ErrPayloadTooLarge", len(want), err)
			}
			return
		case err != nil:
			t.Fatalf("Prepare of a payload of %d bytes: %v", len(want), err)
		}

		tmpl := m.(*message).tmpl
		payload := tmpl.Payload.([]byte)
		if len(payload) > dispatcher.MaxPayloadBytes {
			t.Fatalf("payload is %d bytes, limit %d", len(payload), dispatcher.MaxPayloadBytes)
		}
		if !json.Valid(payload) || !utf8.Valid(payload) {
			t.Fatalf("payload is not valid UTF-8 JSON: %q", payload)
		}
		if len(payload) != len(want) {
			t.Fatalf("payload is %d bytes, json.Marshal gives %d:\n%s\n%s", len(payload), len(want), payload, want)
		}
		again, err := json.Marshal(json.RawMessage(payload))
		if err != nil || !bytes.Equal(again, payload) {
			t.Fatalf("apns2 would send %q, not the %q measured (err %v)", again, payload, err)
		}

		got := decodeNumbers(t, payload).(map[string]any)
		aps, ok := got["aps"].(map[string]any)
		if !ok {
			t.Fatalf("no aps object in %s", payload)
		}
		if background {
			if !reflect.DeepEqual(aps, map[string]any{"content-available": json.Number("1")}) {
				t.Fatalf("background aps = %v", aps)
			}
		} else {
			alert, _ := aps["alert"].(map[string]any)
			for name, text := range map[string]string{"title": title, "body": body} {
				v, present := alert[name]
				if text == "" && present || text != "" && v != wireText(text) {
					t.Fatalf("aps.alert.%s = %q, want %q", name, v, text)
				}
			}
			if v, present := aps["sound"]; sound == "" && present || sound != "" && v != wireText(sound) {
				t.Fatalf("aps.sound = %q, want %q", v, sound)
			}
			if v, present := aps["badge"]; n.Badge == nil && present || n.Badge != nil && v != json.Number(strconv.Itoa(badge)) {
				t.Fatalf("aps.badge = %v, want %d", v, badge)
			}
		}
		wantKeys := 1
		if key != "" {
			wantKeys++
			v, ok := got[wireText(key)]
			if !ok {
				t.Fatalf("data key %q not at the top level of %s", key, payload)
			}
			if w := decodeNumbers(t, n.Data[key]); !reflect.DeepEqual(v, w) {
				t.Fatalf("data value %v, want %v", v, w)
			}
		}
		if len(got) != wantKeys {
			t.Fatalf("top-level keys of %s: %d, want %d", payload, len(got), wantKeys)
		}

		if tmpl.CollapseID != collapse || tmpl.Topic != "com.example.app" || tmpl.DeviceToken != "" {
			t.Fatalf("collapse id %q, topic %q, token %q", tmpl.CollapseID, tmpl.Topic, tmpl.DeviceToken)
		}
		wantType, wantPrio := apns2.PushTypeAlert, apns2.PriorityHigh
		if background {
			wantType, wantPrio = apns2.PushTypeBackground, apns2.PriorityLow
		}
		if tmpl.PushType != wantType || tmpl.Priority != wantPrio {
			t.Fatalf("push type %q, priority %d; want %q, %d", tmpl.PushType, tmpl.Priority, wantType, wantPrio)
		}
		if n.TTLSeconds == nil && m.(*message).ttl != -1 || n.TTLSeconds != nil && m.(*message).ttl != time.Duration(min(ttl, maxDurationSeconds))*time.Second {
			t.Fatalf("ttl %v for ttl_seconds %d", m.(*message).ttl, ttl)
		}
	})
}

// maxDurationSeconds is the longest TTL a time.Duration holds, in seconds.
const maxDurationSeconds = math.MaxInt64 / int(time.Second)

// referencePayload is n's payload as json.Marshal encodes it from maps: the
// same text as Prepare's payload, with keys in another order.
func referencePayload(t *testing.T, n *dispatcher.Notification, background bool) []byte {
	t.Helper()
	aps := map[string]any{}
	if background {
		aps["content-available"] = 1
	} else {
		alert := map[string]string{}
		if n.Title != "" {
			alert["title"] = n.Title
		}
		if n.Body != "" {
			alert["body"] = n.Body
		}
		if len(alert) > 0 {
			aps["alert"] = alert
		}
		if n.Sound != "" {
			aps["sound"] = n.Sound
		}
		if n.Badge != nil {
			aps["badge"] = *n.Badge
		}
	}
	p := map[string]any{"aps": aps}
	for k, v := range n.Data {
		// json.Marshal passes a RawMessage's bytes through; Prepare
		// replaces those that are not UTF-8 with U+FFFD.
		p[k] = json.RawMessage(wireText(string(v)))
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatalf("reference payload: %v", err)
	}
	return b
}

// decodeNumbers decodes one JSON value, numbers kept as written.
func decodeNumbers(t *testing.T, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("decode %q: %v", b, err)
	}
	return v
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
