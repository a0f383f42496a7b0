package sim

import (
	"strings"
	"testing"
	"time"
)

func TestParseErrorMix(t *testing.T) {
	tests := []struct {
		in      string
		want    ErrorMix
		wantErr string // substring; "" for success
	}{
		{in: "", want: ErrorMix{}},
		{in: " , ", want: ErrorMix{}},
		{in: "unregistered=0.01,too_many=0.05,unavailable=0.2", want: ErrorMix{Unregistered: 0.01, TooMany: 0.05, Unavailable: 0.2}},
		{in: " bad_token = 0.5 , internal=0.5 ", want: ErrorMix{BadToken: 0.5, Internal: 0.5}},
		{in: "TOO_MANY=1", want: ErrorMix{TooMany: 1}},
		{in: "unavailable=0", want: ErrorMix{}},
		{in: "too_many", wantErr: "want key=probability"},
		{in: "too_many=", wantErr: "want key=probability"},
		{in: "=0.1", wantErr: "want key=probability"},
		{in: "timeout=0.1", wantErr: `unknown key "timeout"`},
		{in: "too_many=lots", wantErr: "not a number"},
		{in: "too_many=1.5", wantErr: "within 0..1"},
		{in: "too_many=-0.1", wantErr: "within 0..1"},
		{in: "too_many=NaN", wantErr: "within 0..1"},
		{in: "too_many=0.1,too_many=0.2", wantErr: "given twice"},
		{in: "too_many=0.6,internal=0.6", wantErr: "more than 1"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseErrorMix(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseErrorMix(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseErrorMix(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseErrorMix(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			back, err := ParseErrorMix(got.String())
			if err != nil || back != got {
				t.Fatalf("round trip through String %q = %+v, %v", got.String(), back, err)
			}
		})
	}
}

func TestErrorMixString(t *testing.T) {
	m := ErrorMix{Unregistered: 0.01, Internal: 0.5}
	if got, want := m.String(), "unregistered=0.01,internal=0.5"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	if got := (ErrorMix{}).String(); got != "" {
		t.Errorf("zero String = %q", got)
	}
	if !(ErrorMix{}).IsZero() || m.IsZero() {
		t.Error("IsZero wrong")
	}
}

func TestPick(t *testing.T) {
	c := ErrorMix{Unregistered: 0.1, TooMany: 0.2, Internal: 0.1}.cumulative()
	tests := []struct {
		u    float64
		want mixError
	}{
		{0, mixUnregistered},
		{0.0999, mixUnregistered},
		{0.1, mixTooMany},
		{0.2999, mixTooMany},
		{0.3001, mixInternal},
		{0.3999, mixInternal},
		{0.4001, mixNone},
		{0.9999, mixNone},
	}
	for _, tt := range tests {
		if got := pick(&c, tt.u); got != tt.want {
			t.Errorf("pick(%v) = %d, want %d", tt.u, got, tt.want)
		}
	}
	// An unvalidated mix is clamped, never panics or goes past 1.
	over := ErrorMix{Unregistered: 0.8, BadToken: 0.8, TooMany: -1}.cumulative()
	if over[numMixErrors-1] != 1 || pick(&over, 0.9) != mixBadToken || pick(&over, 0.5) != mixUnregistered {
		t.Errorf("clamped table = %v", over)
	}
}

func TestRetryAfterValue(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, ""},
		{-time.Second, ""},
		{time.Nanosecond, "1"},
		{time.Second, "1"},
		{1500 * time.Millisecond, "2"},
		{time.Minute, "60"},
	}
	for _, tt := range tests {
		if got := retryAfterValue(tt.d); got != tt.want {
			t.Errorf("retryAfterValue(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestSetConfigClamps(t *testing.T) {
	s, err := New(Config{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.SetConfig(Config{Latency: -time.Second, RecordLast: -3, FCMErrors: ErrorMix{TooMany: 2}})
	got := s.Config()
	if got.Latency != 0 || got.RecordLast != 0 {
		t.Errorf("Config after SetConfig of bad values = %+v", got)
	}
	if e := s.draw(provFCM, s.state.Load()); e != mixTooMany {
		t.Errorf("draw with TooMany clamped to 1 = %d, want too_many", e)
	}
}
