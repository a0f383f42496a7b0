package dispatcher

import (
	"context"
	"errors"
	"math"
	"testing"
)

func limitOf(t *testing.T, infos []LimitInfo, level string) LimitInfo {
	t.Helper()
	for _, li := range infos {
		if li.Level == level {
			return li
		}
	}
	t.Fatalf("no level %s in %+v", level, infos)
	return LimitInfo{}
}

func TestSetLimitAppliesAtOnceAndGoesBack(t *testing.T) {
	var cfg Config
	cfg.Limits.ProviderPerSecond[Android] = 9500
	b := setup(t, cfg)
	ctx := context.Background()
	infos, err := b.d.SetLimit(ctx, "fcm", &LimitSetting{PerSecond: 300, Burst: 30})
	if err != nil {
		t.Fatal(err)
	}
	li := limitOf(t, infos, "fcm")
	if li.PerSecond != 300 || li.Burst != 30 || li.Configured.PerSecond != 9500 || li.Operator == nil || li.InstanceShare != 300 {
		t.Errorf("fcm after set: %+v", li)
	}
	if r, burst := b.d.lim.perPlat[Android].Limit(); r != 300 || burst != 30 {
		t.Errorf("fcm bucket %v/%d, want 300/30 at once", r, burst)
	}
	if _, err := b.d.SetLimit(ctx, "global", &LimitSetting{PerSecond: 1000}); err != nil {
		t.Fatal(err)
	}
	if r, _ := b.d.lim.global.Limit(); r != 1000 {
		t.Errorf("global bucket %v, want 1000", r)
	}
	// Back to the configuration.
	infos, err = b.d.SetLimit(ctx, "fcm", nil)
	if err != nil {
		t.Fatal(err)
	}
	if li := limitOf(t, infos, "fcm"); li.PerSecond != 9500 || li.Operator != nil {
		t.Errorf("fcm after reset: %+v", li)
	}
	if r, _ := b.d.lim.perPlat[Android].Limit(); r != 9500 {
		t.Errorf("fcm bucket %v after reset, want 9500", r)
	}
	if got, _ := b.limits.RateLimits(ctx); len(got) != 1 || got["global"].PerSecond != 1000 {
		t.Errorf("stored settings %v, want only global", got)
	}
}

func TestConfiguredLimitsReloaded(t *testing.T) {
	b := setup(t, Config{})
	var lim Limits
	lim.GlobalPerSecond, lim.ProviderPerSecond[IOS] = 5000, 700
	b.d.SetConfiguredLimits(lim)
	if r, _ := b.d.lim.perPlat[IOS].Limit(); r != 700 {
		t.Errorf("apns bucket %v after reload, want 700", r)
	}
	// An operator's setting still wins.
	if _, err := b.d.SetLimit(context.Background(), "apns", &LimitSetting{PerSecond: 50}); err != nil {
		t.Fatal(err)
	}
	lim.ProviderPerSecond[IOS] = 800
	b.d.SetConfiguredLimits(lim)
	li := limitOf(t, b.d.Limits(), "apns")
	if r, _ := b.d.lim.perPlat[IOS].Limit(); r != 50 || li.Configured.PerSecond != 800 {
		t.Errorf("apns bucket %v, configured %v; want the operator's 50 and 800 configured", r, li.Configured.PerSecond)
	}
}

func TestSetLimitRefusesBadInput(t *testing.T) {
	b := setup(t, Config{})
	ctx := context.Background()
	if _, err := b.d.SetLimit(ctx, "sms", &LimitSetting{PerSecond: 1}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown level: %v", err)
	}
	for _, ls := range []LimitSetting{{PerSecond: -1}, {PerSecond: 1, Burst: -2}, {PerSecond: 1, Burst: math.MaxInt}} {
		if _, err := b.d.SetLimit(ctx, "apns", &ls); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v", ls, err)
		}
	}
	if got, _ := b.limits.RateLimits(ctx); len(got) != 0 {
		t.Errorf("refused settings were stored: %v", got)
	}
}

func TestLimitSetThroughAnotherInstanceApplies(t *testing.T) {
	b := setup(t, Config{})
	// Another instance writes the shared store.
	if err := b.limits.SetRateLimit(context.Background(), "apns", &LimitSetting{PerSecond: 42}); err != nil {
		t.Fatal(err)
	}
	b.tick(t)
	if r, _ := b.d.lim.perPlat[IOS].Limit(); r != 42 {
		t.Fatalf("apns bucket %v after a sync, want the stored 42", r)
	}
	// Two instances consuming: each takes half.
	b.d.lim.setInstances(2)
	if r, _ := b.d.lim.perPlat[IOS].Limit(); r != 21 {
		t.Errorf("apns bucket %v with 2 instances, want 21", r)
	}
	if li := limitOf(t, b.d.Limits(), "apns"); li.PerSecond != 42 || li.InstanceShare != 21 {
		t.Errorf("apns %+v", li)
	}
}
