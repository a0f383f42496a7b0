package dispatcher

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

const validBatch = `{
  "schema": "pushd.batch/v1",
  "batch_id": "spring-sale/000017",
  "campaign": {"id": "spring-sale", "rate_per_second": 500, "test": false},
  "notification": {
    "title": "Spring sale", "body": "50% off today",
    "data": {"deeplink": "app://sale", "n": 3},
    "sound": "default", "badge": 1,
    "priority": "high", "ttl_seconds": 3600, "collapse_key": "sale",
    "apns": {"topic": "com.example.app", "push_type": "alert"},
    "fcm": {"channel_id": "promo"}
  },
  "recipients": [
    {"platform": "ios", "token": "` + iosToken + `", "user_id": "u-1"},
    {"platform": "android", "token": "fcm:APA91b-token_1", "user_id": "u-2"}
  ],
  "not_before": "2026-11-26T22:00:00+09:00",
  "expires_at": "2026-11-27T22:00:00+09:00",
  "producer_extra": {"ignored": true}
}`

const iosToken = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestDecodeBatchValid(t *testing.T) {
	b, err := DecodeBatch([]byte(validBatch))
	if err != nil {
		t.Fatal(err)
	}
	if b.BatchID != "spring-sale/000017" || b.Campaign.ID != "spring-sale" || b.Campaign.RatePerSecond != 500 {
		t.Errorf("batch fields: %+v", b)
	}
	n := b.Notification
	if n.Title != "Spring sale" || *n.Badge != 1 || *n.TTLSeconds != 3600 || n.APNs.Topic != "com.example.app" || n.FCM.ChannelID != "promo" {
		t.Errorf("notification fields: %+v", n)
	}
	if string(n.Data["deeplink"]) != `"app://sale"` || string(n.Data["n"]) != "3" {
		t.Errorf("data: %v", n.Data)
	}
	if b.Recipients[0].Platform != IOS || b.Recipients[1].Platform != Android || b.Recipients[1].UserID != "u-2" {
		t.Errorf("recipients: %+v", b.Recipients)
	}
	want := time.Date(2026, 11, 27, 13, 0, 0, 0, time.UTC)
	if !b.ExpiresAt.Equal(want) {
		t.Errorf("expires_at = %v, want %v", b.ExpiresAt, want)
	}
	if !b.Expired(want) || b.Expired(want.Add(-time.Second)) {
		t.Error("Expired wrong at the boundary")
	}
}

func TestDecodeBatchErrors(t *testing.T) {
	replace := func(old, new string) string {
		if !strings.Contains(validBatch, old) {
			t.Fatalf("test setup: %q not in batch", old)
		}
		return strings.Replace(validBatch, old, new, 1)
	}
	many := `"recipients": [` + strings.Repeat(`{"platform":"ios","token":"`+iosToken+`"},`, MaxRecipients) + `{"platform":"ios","token":"` + iosToken + `"}]`
	tests := []struct {
		name string
		body string
		kind error
		want string
	}{
		{"empty", ``, ErrMalformed, "not a JSON object"},
		{"not json", `hello`, ErrMalformed, "not a JSON object"},
		{"array", `[1,2]`, ErrMalformed, "not a JSON object"},
		{"truncated", validBatch[:100], ErrMalformed, ""},
		{"too large", `{"x":"` + strings.Repeat("a", MaxMessageBytes) + `"}`, ErrTooLarge, ""},
		{"no schema", replace(`"schema": "pushd.batch/v1",`, ``), ErrSchema, "schema: missing"},
		{"other schema", replace(`pushd.batch/v1`, `pushd.batch/v2`), ErrSchema, "unsupported"},
		{"no batch id", replace(`"batch_id": "spring-sale/000017",`, ``), ErrSchema, "batch_id: missing"},
		{"no campaign", replace(`"id": "spring-sale", `, ``), ErrSchema, "campaign.id: missing"},
		{"negative rate", replace(`"rate_per_second": 500`, `"rate_per_second": -1`), ErrSchema, "rate_per_second"},
		{"rate as string", replace(`"rate_per_second": 500`, `"rate_per_second": "fast"`), ErrSchema, "rate_per_second"},
		{"bad priority", replace(`"priority": "high"`, `"priority": "urgent"`), ErrSchema, "notification.priority"},
		{"bad push type", replace(`"push_type": "alert"`, `"push_type": "shout"`), ErrSchema, "push_type"},
		{"negative ttl", replace(`"ttl_seconds": 3600`, `"ttl_seconds": -5`), ErrSchema, "ttl_seconds"},
		{"aps in data", replace(`"deeplink": "app://sale"`, `"aps": {}`), ErrSchema, "data.aps"},
		{"null data", replace(`"deeplink": "app://sale"`, `"deeplink": null`), ErrSchema, "data.deeplink"},
		{"long collapse key", replace(`"collapse_key": "sale"`, `"collapse_key": "`+strings.Repeat("k", 65)+`"`), ErrSchema, "collapse_key"},
		{"no recipients", replace(validBatch[strings.Index(validBatch, `"recipients"`):strings.Index(validBatch, `],`)+1], `"recipients": []`), ErrSchema, "recipients"},
		{"too many recipients", replace(validBatch[strings.Index(validBatch, `"recipients"`):strings.Index(validBatch, `],`)+1], many), ErrSchema, "1 to 1000"},
		{"bad time", replace(`"2026-11-26T22:00:00+09:00"`, `"tomorrow"`), ErrSchema, "RFC 3339"},
		{"expiry before start", replace(`"2026-11-27T22:00:00+09:00"`, `"2026-11-25T22:00:00+09:00"`), ErrSchema, "expires_at"},
		{"recipients not array", replace(validBatch[strings.Index(validBatch, `"recipients"`):strings.Index(validBatch, `],`)+1], `"recipients": {}`), ErrSchema, "recipients"},
		{"control char id", replace(`"spring-sale/000017"`, `"a\u0001b"`), ErrSchema, "control character"},
		{"bidi override in the campaign id", replace(`"id": "spring-sale"`, `"id": "sale-\u202Etxt.exe"`), ErrSchema, "campaign.id: bidirectional formatting character U+202E"},
		{"C1 control in the batch id", replace(`"spring-sale/000017"`, `"a\u0085b"`), ErrSchema, "batch_id: C1 control character U+0085"},
		{"invalid UTF-8 in the campaign id", replace(`"id": "spring-sale"`, "\"id\": \"sale\xff\""), ErrSchema, "campaign.id: replacement character U+FFFD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeBatch([]byte(tt.body))
			if !errors.Is(err, tt.kind) {
				t.Fatalf("got %v, want %v", err, tt.kind)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestNotificationTTL(t *testing.T) {
	longest := time.Duration(math.MaxInt64/int64(time.Second)) * time.Second
	for _, tc := range []struct {
		seconds int // -1: none
		want    time.Duration
	}{
		{-1, 0},
		{0, 0},
		{3600, time.Hour},
		{int(longest / time.Second), longest},
		{int(longest/time.Second) + 1, longest},
		{10_000_000_000, longest},
		{math.MaxInt, longest},
	} {
		var n Notification
		if tc.seconds >= 0 {
			n.TTLSeconds = &tc.seconds
		}
		if got, ok := n.TTL(); got != tc.want || ok != (tc.seconds >= 0) {
			t.Errorf("TTL() with ttl_seconds %d = %v, %v; want %v", tc.seconds, got, ok, tc.want)
		}
	}
}

func TestRecipientCheck(t *testing.T) {
	tests := []struct {
		r    Recipient
		want error
	}{
		{Recipient{Platform: IOS, Token: iosToken}, nil},
		{Recipient{Platform: IOS, Token: strings.ToUpper(iosToken) + iosToken}, nil},
		{Recipient{Platform: IOS, Token: iosToken[:63]}, ErrBadToken},
		{Recipient{Platform: IOS, Token: iosToken[:62] + "zz"}, ErrBadToken},
		{Recipient{Platform: IOS, Token: ""}, ErrBadToken},
		{Recipient{Platform: IOS, Token: strings.Repeat("ab", 101)}, ErrBadToken},
		{Recipient{Platform: Android, Token: "dGVzdA:APA91bH-x_y.z"}, nil},
		{Recipient{Platform: Android, Token: ""}, ErrBadToken},
		{Recipient{Platform: Android, Token: "has space"}, ErrBadToken},
		{Recipient{Platform: Android, Token: strings.Repeat("a", 4097)}, ErrBadToken},
		{Recipient{Platform: PlatformUnknown, Token: iosToken}, ErrUnknownPlatform},
	}
	for _, tt := range tests {
		if got := tt.r.Check(); got != tt.want {
			t.Errorf("Check(%v, %q) = %v, want %v", tt.r.Platform, ShortToken(tt.r.Token), got, tt.want)
		}
	}
}

func TestUnknownPlatformIsNotABatchError(t *testing.T) {
	b, err := DecodeBatch([]byte(strings.Replace(validBatch, `"platform": "android"`, `"platform": "windows"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if b.Recipients[1].Platform != PlatformUnknown || b.Recipients[1].Check() != ErrUnknownPlatform {
		t.Errorf("got %v", b.Recipients[1].Platform)
	}
}

func TestCheckDoesNotAllocate(t *testing.T) {
	r := Recipient{Platform: IOS, Token: iosToken}
	if n := testing.AllocsPerRun(100, func() { _ = r.Check() }); n != 0 {
		t.Errorf("Check allocates %v times", n)
	}
}
