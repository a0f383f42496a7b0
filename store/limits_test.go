package store

import (
	"context"
	"reflect"
	"testing"

	"github.com/pushd/pushd/dispatcher"
)

func TestRateLimits(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	if got, err := s.RateLimits(ctx); err != nil || len(got) != 0 {
		t.Fatalf("new store: %v, %v", got, err)
	}
	if err := s.SetRateLimit(ctx, "global", &dispatcher.LimitSetting{PerSecond: 1500.5, Burst: 100}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRateLimit(ctx, "apns", &dispatcher.LimitSetting{PerSecond: 10}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRateLimit(ctx, "apns", &dispatcher.LimitSetting{PerSecond: 20, Burst: 5}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRateLimit(ctx, "fcm", &dispatcher.LimitSetting{PerSecond: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRateLimit(ctx, "fcm", nil); err != nil {
		t.Fatal(err)
	}
	want := map[string]dispatcher.LimitSetting{"global": {PerSecond: 1500.5, Burst: 100}, "apns": {PerSecond: 20, Burst: 5}}
	// Kept across a restart.
	s = reopen(t, b)
	if got, err := s.RateLimits(ctx); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("after reopen: %v, %v; want %v", got, err, want)
	}
}
