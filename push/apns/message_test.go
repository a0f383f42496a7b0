package apns

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sideshow/apns2"

	"github.com/pushd/pushd/dispatcher"
)

// offlineSender returns a Sender that is never asked to connect.
func offlineSender(t *testing.T, cfg Config) *Sender {
	t.Helper()
	if cfg.Host == "" {
		cfg.Host = "https://127.0.0.1:1"
	}
	return newSender(t, cfg)
}

// rendered returns the template Prepare built for n.
func rendered(t *testing.T, s *Sender, n *dispatcher.Notification) apns2.Notification {
	t.Helper()
	return prepare(t, s, n).(*message).tmpl
}

func decodePayload(t *testing.T, tmpl apns2.Notification) map[string]any {
	t.Helper()
	b, ok := tmpl.Payload.([]byte)
	if !ok {
		t.Fatalf("payload is %T, want []byte rendered once", tmpl.Payload)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("payload %s is not JSON: %v", b, err)
	}
	return v
}

func ptr[T any](v T) *T { return &v }

func TestPrepareRenders(t *testing.T) {
	s := offlineSender(t, Config{Topic: "com.example.app"})
	for _, tc := range []struct {
		name     string
		n        dispatcher.Notification
		payload  string
		priority int
		pushType apns2.EPushType
		topic    string
	}{
		{
			name:    "alert with sound, badge and data at the top level",
			n:       dispatcher.Notification{Title: "T", Body: "B", Sound: "default", Badge: ptr(3), Data: map[string]json.RawMessage{"deeplink": json.RawMessage(`"app://sale"`), "n": json.RawMessage(`42`), "obj": json.RawMessage(`{ "a" : [1, 2] }`), "flag": json.RawMessage(`true`)}},
			payload: `{"aps":{"alert":{"title":"T","body":"B"},"sound":"default","badge":3},"deeplink":"app://sale","flag":true,"n":42,"obj":{"a":[1,2]}}`, priority: 10, pushType: "alert", topic: "com.example.app",
		},
		{
			name:    "body only",
			n:       dispatcher.Notification{Body: "B"},
			payload: `{"aps":{"alert":{"body":"B"}}}`, priority: 10, pushType: "alert", topic: "com.example.app",
		},
		{
			name:    "badge zero clears the badge",
			n:       dispatcher.Notification{Badge: ptr(0)},
			payload: `{"aps":{"badge":0}}`, priority: 10, pushType: "alert", topic: "com.example.app",
		},
		{
			name:    "normal priority and own topic",
			n:       dispatcher.Notification{Title: "T", Priority: "normal", APNs: dispatcher.APNsOptions{Topic: "com.example.other"}},
			payload: `{"aps":{"alert":{"title":"T"}}}`, priority: 5, pushType: "alert", topic: "com.example.other",
		},
		{
			name:    "high priority",
			n:       dispatcher.Notification{Title: "T", Priority: "high"},
			payload: `{"aps":{"alert":{"title":"T"}}}`, priority: 10, pushType: "alert", topic: "com.example.app",
		},
		{
			name:    "background drops alert, sound and badge",
			n:       dispatcher.Notification{Title: "T", Body: "B", Sound: "s", Badge: ptr(1), Priority: "high", Data: map[string]json.RawMessage{"sync": json.RawMessage(`"inbox"`)}, APNs: dispatcher.APNsOptions{PushType: "background"}},
			payload: `{"aps":{"content-available":1},"sync":"inbox"}`, priority: 5, pushType: "background", topic: "com.example.app",
		},
		{
			name:    "other push type kept",
			n:       dispatcher.Notification{Title: "T", APNs: dispatcher.APNsOptions{PushType: "voip", Topic: "com.example.app.voip"}},
			payload: `{"aps":{"alert":{"title":"T"}}}`, priority: 10, pushType: "voip", topic: "com.example.app.voip",
		},
		{
			name:    "escaped as apns2 sends it",
			n:       dispatcher.Notification{Title: `a "quoted" <b>&</b>`, Body: "line\nbreak\ttab\\ \x01 \u2028", Data: map[string]json.RawMessage{"html": json.RawMessage(`"<i>"`)}},
			payload: `{"aps":{"alert":{"title":"a \"quoted\" \u003cb\u003e\u0026\u003c/b\u003e","body":"line\nbreak\ttab\\ \u0001 \u2028"}},"html":"\u003ci\u003e"}`, priority: 10, pushType: "alert", topic: "com.example.app",
		},
		{
			name:    "bytes of data values that are not UTF-8 become U+FFFD",
			n:       dispatcher.Notification{Title: "t\xff", Data: map[string]json.RawMessage{"k": json.RawMessage("\"a\xf9b\xc3\""), "l": json.RawMessage("[\"\xed\xa0\x80 é\"]")}},
			payload: "{\"aps\":{\"alert\":{\"title\":\"t\\ufffd\"}},\"k\":\"a\uFFFDb\uFFFD\",\"l\":[\"\uFFFD\uFFFD\uFFFD é\"]}", priority: 10, pushType: "alert", topic: "com.example.app",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := rendered(t, s, &tc.n)
			if got := string(tmpl.Payload.([]byte)); got != tc.payload {
				t.Errorf("payload = %s\nwant      %s", got, tc.payload)
			}
			if tmpl.Priority != tc.priority || tmpl.PushType != tc.pushType || tmpl.Topic != tc.topic {
				t.Errorf("priority %d, push type %q, topic %q; want %d, %q, %q",
					tmpl.Priority, tmpl.PushType, tmpl.Topic, tc.priority, tc.pushType, tc.topic)
			}
			if tmpl.DeviceToken != "" {
				t.Error("template carries a device token")
			}
		})
	}
}

func TestPrepareTTL(t *testing.T) {
	s := offlineSender(t, Config{})
	longest := time.Duration(math.MaxInt64/int64(time.Second)) * time.Second
	for _, tc := range []struct {
		seconds int // -1: none
		want    time.Duration
	}{
		{-1, -1},
		{0, 0},
		{3600, time.Hour},
		{10_000_000_000, longest}, // past time.Duration: capped, not negative
	} {
		n := &dispatcher.Notification{Title: "T"}
		if tc.seconds >= 0 {
			n.TTLSeconds = &tc.seconds
		}
		if got := prepare(t, s, n).(*message).ttl; got != tc.want {
			t.Errorf("ttl for ttl_seconds %d = %v, want %v", tc.seconds, got, tc.want)
		}
	}
}

func TestPrepareRoundTripsText(t *testing.T) {
	s := offlineSender(t, Config{})
	title := "Soldes d'été 🎉 — «50 %»"
	body := "日本語のテキスト\n\"quotes\" \\ </script> & \u2028 \x00 end"
	data := map[string]json.RawMessage{"ключ": json.RawMessage(`"значение"`), "emoji 😀": json.RawMessage(`["a","b"]`)}
	v := decodePayload(t, rendered(t, s, &dispatcher.Notification{Title: title, Body: body, Data: data}))
	alert := v["aps"].(map[string]any)["alert"].(map[string]any)
	if alert["title"] != title || alert["body"] != body {
		t.Errorf("alert = %q / %q, want %q / %q", alert["title"], alert["body"], title, body)
	}
	if v["ключ"] != "значение" || !reflect.DeepEqual(v["emoji 😀"], []any{"a", "b"}) {
		t.Errorf("data keys = %v", v)
	}
}

func TestPrepareSizeLimit(t *testing.T) {
	s := offlineSender(t, Config{})
	// Multi-byte runes and characters that JSON must escape, so byte and
	// character counts differ.
	const mixed = "é€😀\"\\\n\x01<>&"
	at := func(fill int) *dispatcher.Notification {
		return &dispatcher.Notification{
			Title: "Ünïcödé " + mixed,
			Body:  mixed + strings.Repeat("a", fill),
			Data:  map[string]json.RawMessage{"k\"ey": json.RawMessage(`"v€"`)},
		}
	}
	base, err := renderPayload(at(0), false)
	if err != nil {
		t.Fatal(err)
	}
	fill := dispatcher.MaxPayloadBytes - len(base)

	edge := at(fill)
	m, err := s.Prepare(edge)
	if err != nil {
		t.Fatalf("Prepare at exactly %d bytes: %v", dispatcher.MaxPayloadBytes, err)
	}
	payload := m.(*message).tmpl.Payload.([]byte)
	if len(payload) != dispatcher.MaxPayloadBytes || !utf8.Valid(payload) {
		t.Fatalf("payload is %d bytes (valid UTF-8: %v), want %d", len(payload), utf8.Valid(payload), dispatcher.MaxPayloadBytes)
	}
	v := decodePayload(t, m.(*message).tmpl)
	if got := v["aps"].(map[string]any)["alert"].(map[string]any)["body"]; got != edge.Body {
		t.Errorf("body does not round-trip")
	}

	_, err = s.Prepare(at(fill + 1))
	if !errors.Is(err, dispatcher.ErrPayloadTooLarge) {
		t.Fatalf("Prepare one byte over: err = %v, want ErrPayloadTooLarge", err)
	}
	if !strings.Contains(err.Error(), "4097") {
		t.Errorf("error %q does not name the size", err)
	}
}

// TestPrepareEdgeReachesServerIntact checks that the payload measured is the
// payload sent: apns2 re-encodes it (json.Marshal escapes < > & U+2028).
func TestPrepareEdgeReachesServerIntact(t *testing.T) {
	s, f := setup(t)
	n := &dispatcher.Notification{
		Title: "<b>Soldes & promos</b> \u2028",
		Data:  map[string]json.RawMessage{"html": json.RawMessage(`"<a href='x'>&amp;</a>"`), "obj": json.RawMessage(`{ "k" : "<>" }`)},
	}
	base, err := renderPayload(n, false)
	if err != nil {
		t.Fatal(err)
	}
	n.Body = strings.Repeat("€", (dispatcher.MaxPayloadBytes-len(base)-len(`,"body":""`))/3)
	m := prepare(t, s, n)
	if r := send(m, deviceToken("edge")); r.Outcome != dispatcher.Sent {
		t.Fatalf("send: %+v", r)
	}
	got := f.received()[0].body
	want := m.(*message).tmpl.Payload.([]byte)
	if string(got) != string(want) {
		t.Errorf("server got %d bytes, want the %d rendered:\n%s\n%s", len(got), len(want), got, want)
	}
	if len(got) > dispatcher.MaxPayloadBytes || len(got) < dispatcher.MaxPayloadBytes-3 {
		t.Errorf("server got %d bytes, want just under %d", len(got), dispatcher.MaxPayloadBytes)
	}
}

func TestPrepareErrors(t *testing.T) {
	tokenAuth := offlineSender(t, Config{KeyFile: mustP8(t), KeyID: "ABC123DEFG", TeamID: "TEAM123456"})
	plain := offlineSender(t, Config{})
	for _, tc := range []struct {
		name string
		s    *Sender
		n    dispatcher.Notification
		want string
	}{
		{"token auth needs a topic", tokenAuth, dispatcher.Notification{Title: "T"}, "no topic"},
		{"aps data key", plain, dispatcher.Notification{Data: map[string]json.RawMessage{"aps": json.RawMessage(`1`)}}, "reserved"},
		{"collapse key too long", plain, dispatcher.Notification{Title: "T", CollapseKey: strings.Repeat("k", 65)}, "collapse_key"},
		{"invalid data JSON", plain, dispatcher.Notification{Data: map[string]json.RawMessage{"k": json.RawMessage(`{`)}}, "invalid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.s.Prepare(&tc.n)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Prepare: err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	// With its own topic the token-auth notification is fine.
	if _, err := tokenAuth.Prepare(&dispatcher.Notification{Title: "T", APNs: dispatcher.APNsOptions{Topic: "com.example.app"}}); err != nil {
		t.Errorf("Prepare with a topic: %v", err)
	}
}

func mustP8(t *testing.T) string {
	t.Helper()
	path, _ := writeP8(t)
	return path
}
