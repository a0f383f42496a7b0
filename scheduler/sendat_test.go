package scheduler

import (
	"errors"
	"testing"
	"time"
)

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := LoadZone(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestWallInstant(t *testing.T) {
	tests := []struct {
		name, zone, wall string
		want             string // UTC
	}{
		{"seoul has no DST", "Asia/Seoul", "2026-12-24T09:00", "2026-12-24T00:00:00Z"},
		{"new york winter", "America/New_York", "2026-01-15T09:00", "2026-01-15T14:00:00Z"},
		{"new york summer", "America/New_York", "2026-07-15T09:00", "2026-07-15T13:00:00Z"},
		// 02:30 is skipped: read with the offset after the change (EDT),
		// the instant New York clocks showed as 01:30 EST.
		{"DST gap", "America/New_York", "2026-03-08T02:30", "2026-03-08T06:30:00Z"},
		// 01:30 happens twice: the first one, EDT.
		{"DST overlap", "America/New_York", "2026-11-01T01:30", "2026-11-01T05:30:00Z"},
		{"seconds", "UTC", "2026-11-01T01:30:15", "2026-11-01T01:30:15Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ParseSendAt(tt.wall)
			if err != nil {
				t.Fatal(err)
			}
			got := WallInstant(a.Wall, mustZone(t, tt.zone)).UTC().Format(time.RFC3339)
			if got != tt.want {
				t.Errorf("WallInstant(%s in %s) = %s, want %s", tt.wall, tt.zone, got, tt.want)
			}
		})
	}
}

func TestParseSendAt(t *testing.T) {
	for _, bad := range []string{"tomorrow", "2026-12-24", "2026-12-24 09:00", "2026-13-01T09:00", "2026-12-24T09:00:00"[:13]} {
		if _, err := ParseSendAt(bad); !errors.Is(err, ErrSendAt) {
			t.Errorf("ParseSendAt(%q) = %v, want ErrSendAt", bad, err)
		}
	}
	a, err := ParseSendAt("2026-12-24T09:00:00+09:00")
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Instant.UTC().Format(time.RFC3339); got != "2026-12-24T00:00:00Z" {
		t.Errorf("RFC 3339 instant = %s", got)
	}
	if a.Wall.Hour() != 9 {
		t.Errorf("RFC 3339 wall hour = %d, want 9", a.Wall.Hour())
	}
	if a, _ := ParseSendAt(""); !a.Now {
		t.Error(`"" is not now`)
	}
}

func TestFireAt(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name, sendAt, zone string
		rtz                bool
		zones              []string
		want               string
	}{
		{"now", "", "Asia/Seoul", true, []string{"America/New_York"}, "2026-12-01T00:00:00Z"},
		{"campaign zone", "2026-12-24T09:00", "Asia/Seoul", false, []string{"Pacific/Kiritimati"}, "2026-12-24T00:00:00Z"},
		{"earliest zone", "2026-12-24T09:00", "America/New_York", true, []string{"America/New_York", "Asia/Seoul"}, "2026-12-24T00:00:00Z"},
		{"campaign zone is earliest", "2026-12-24T09:00", "Asia/Seoul", true, []string{"America/New_York"}, "2026-12-24T00:00:00Z"},
		{"rfc3339 without recipient zones", "2026-12-24T09:00:00+09:00", "America/New_York", false, nil, "2026-12-24T00:00:00Z"},
		{"rfc3339 wall in a recipient zone", "2026-12-24T09:00:00-05:00", "America/New_York", true, []string{"Asia/Seoul"}, "2026-12-24T00:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FireAt(tt.sendAt, tt.zone, tt.rtz, tt.zones, now)
			if err != nil {
				t.Fatal(err)
			}
			if s := got.UTC().Format(time.RFC3339); s != tt.want {
				t.Errorf("FireAt = %s, want %s", s, tt.want)
			}
		})
	}
	if _, err := FireAt("2026-12-24T09:00", "Mars/Olympus", false, nil, now); err == nil {
		t.Error("unknown zone accepted")
	}
	if _, err := FireAt("2026-12-24T09:00", "UTC", true, []string{"Nowhere/Here"}, now); err == nil {
		t.Error("unknown audience zone accepted")
	}
}

func TestNotBefore(t *testing.T) {
	for _, tt := range []struct{ zone, want string }{
		{"Asia/Seoul", "2026-12-24T00:00:00Z"},
		{"America/New_York", "2026-12-24T14:00:00Z"},
		{"", "2026-12-24T08:00:00Z"}, // the campaign's zone, Europe/Paris
	} {
		got, ok, err := NotBefore("2026-12-24T09:00", "Europe/Paris", tt.zone)
		if err != nil || !ok {
			t.Fatalf("NotBefore(%q) = %v, %v", tt.zone, ok, err)
		}
		if s := got.UTC().Format(time.RFC3339); s != tt.want {
			t.Errorf("NotBefore in %q = %s, want %s", tt.zone, s, tt.want)
		}
	}
	if _, ok, err := NotBefore("", "UTC", "Asia/Seoul"); ok || err != nil {
		t.Errorf(`NotBefore("") = %v, %v; want false, nil`, ok, err)
	}
}
