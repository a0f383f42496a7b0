package dispatcher

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"sync"
	"sync/atomic"

	"github.com/pushd/pushd/ratelimit"
)

// LimitSetting is an operator's rate and burst for the global or a
// provider bucket, for the whole cluster (0: no limit; a burst of 0 takes
// ratelimit.DefaultBurst).
type LimitSetting struct {
	PerSecond float64 `json:"per_second"`
	Burst     int     `json:"burst"`
}

// LimitStore keeps the operators' limit settings, shared by the
// instances. The store implements it.
type LimitStore interface {
	// RateLimits returns the settings by level.
	RateLimits(ctx context.Context) (map[string]LimitSetting, error)
	// SetRateLimit stores a level's setting, or with nil deletes it.
	SetRateLimit(ctx context.Context, level string, ls *LimitSetting) error
}

// LimitInfo is a global or provider bucket as the control API shows it.
type LimitInfo struct {
	// Level is global, apns or fcm.
	Level string `json:"level"`
	// PerSecond and Burst are in force for the whole cluster: the
	// operator's setting if there is one, else the configured values.
	PerSecond float64 `json:"per_second"`
	Burst     int     `json:"burst"`
	// Configured is the value from the configuration.
	Configured LimitSetting `json:"configured"`
	// Operator is the operator's setting, nil when there is none.
	Operator *LimitSetting `json:"operator"`
	// InstanceShare is this instance's part of PerSecond (PerSecond
	// divided by the instances consuming), 0 for no limit.
	InstanceShare float64 `json:"instance_share"`
}

// limitLevels are the levels of the global and provider buckets.
func limitLevels() []string {
	out := []string{LevelGlobal}
	for _, p := range Platforms {
		out = append(out, p.Provider())
	}
	return out
}

// limiter owns the global and provider token buckets: the configured
// limits, the operators' settings that win over them (kept in a
// LimitStore shared by the instances), and this instance's share of each
// cluster-wide rate.
type limiter struct {
	log   *slog.Logger
	met   Metrics
	store LimitStore // nil: operators' settings last until the process ends

	global    *ratelimit.Bucket
	perPlat   [numPlatforms]*ratelimit.Bucket
	instances atomic.Int64

	mu        sync.Mutex // guards cfg and overrides
	cfg       Limits
	overrides map[string]LimitSetting // operators' settings by level
}

func newLimiter(lim Limits, clock ratelimit.Clock, log *slog.Logger, met Metrics, store LimitStore) *limiter {
	l := &limiter{log: log, met: met, store: store, cfg: lim}
	l.instances.Store(1)
	l.global = ratelimit.NewBucket(lim.GlobalPerSecond, lim.GlobalBurst, clock)
	for _, p := range Platforms {
		l.perPlat[p] = ratelimit.NewBucket(lim.ProviderPerSecond[p], lim.ProviderBurst[p], clock)
	}
	l.report()
	return l
}

// share divides a cluster-wide rate among the instances.
func (l *limiter) share(perSecond float64) float64 {
	if perSecond <= 0 {
		return 0
	}
	return perSecond / float64(max(1, l.instances.Load()))
}

// setInstances records the number of instances consuming and rescales the
// global and provider buckets. It reports whether the number changed, so
// that the caller rescales the campaigns' buckets too.
func (l *limiter) setInstances(n int) bool {
	n = max(n, 1)
	if l.instances.Swap(int64(n)) == int64(n) {
		return false
	}
	l.log.Info("instances consuming changed; rates rescaled", "instances", n)
	l.apply()
	return true
}

// effective returns the configured limits with the operators' settings
// applied.
func (l *limiter) effective() Limits {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.cfg
	if o, ok := l.overrides[LevelGlobal]; ok {
		lim.GlobalPerSecond, lim.GlobalBurst = o.PerSecond, o.Burst
	}
	for _, p := range Platforms {
		if o, ok := l.overrides[p.Provider()]; ok {
			lim.ProviderPerSecond[p], lim.ProviderBurst[p] = o.PerSecond, o.Burst
		}
	}
	return lim
}

// apply sets the buckets to this instance's share of the limits in force.
func (l *limiter) apply() {
	lim := l.effective()
	l.global.Set(l.share(lim.GlobalPerSecond), lim.GlobalBurst)
	for _, p := range Platforms {
		l.perPlat[p].Set(l.share(lim.ProviderPerSecond[p]), lim.ProviderBurst[p])
	}
	l.report()
}

// report publishes the global and provider rates as metrics.
func (l *limiter) report() {
	r, _ := l.global.Limit()
	l.met.RateLimit(LevelGlobal, r)
	for _, p := range Platforms {
		r, _ := l.perPlat[p].Limit()
		l.met.RateLimit(p.Provider(), r)
	}
}

// setOverrides replaces the operators' settings and applies them when they
// changed.
func (l *limiter) setOverrides(o map[string]LimitSetting) {
	l.mu.Lock()
	same := maps.Equal(l.overrides, o)
	if !same {
		l.overrides = o
	}
	l.mu.Unlock()
	if !same {
		l.log.Info("rate limits changed", "operator_settings", o)
		l.apply()
	}
}

// sync reads the operators' settings from the store, so that a change
// made through another instance applies here too.
func (l *limiter) sync(ctx context.Context) {
	if l.store == nil {
		return
	}
	o, err := l.store.RateLimits(ctx)
	if err != nil {
		l.log.Warn("cannot read rate limit settings", "err", err)
		return
	}
	l.setOverrides(o)
}

// infos returns the global and provider buckets as the control API shows
// them.
func (l *limiter) infos() []LimitInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []LimitInfo
	for _, level := range limitLevels() {
		li := LimitInfo{Level: level, Configured: LimitSetting{l.cfg.GlobalPerSecond, l.cfg.GlobalBurst}}
		if level != LevelGlobal {
			p := platformOfProvider(level)
			li.Configured = LimitSetting{l.cfg.ProviderPerSecond[p], l.cfg.ProviderBurst[p]}
		}
		inForce := li.Configured
		if o, ok := l.overrides[level]; ok {
			li.Operator, inForce = &o, o
		}
		li.PerSecond, li.Burst = inForce.PerSecond, inForce.Burst
		li.InstanceShare = l.share(li.PerSecond)
		out = append(out, li)
	}
	return out
}

// setConfigured replaces the configured limits (a configuration reload).
func (l *limiter) setConfigured(lim Limits) {
	l.mu.Lock()
	l.cfg = lim
	l.mu.Unlock()
	l.apply()
}

// set stores an operator's setting of a level, or with nil deletes it, and
// applies it here at once.
func (l *limiter) set(ctx context.Context, level string, ls *LimitSetting) ([]LimitInfo, error) {
	known := false
	for _, lv := range limitLevels() {
		known = known || lv == level
	}
	if !known {
		return nil, fmt.Errorf("%w: level %q: want one of global, apns, fcm", ErrNotFound, level)
	}
	if ls != nil && (ls.PerSecond < 0 || math.IsNaN(ls.PerSecond) || math.IsInf(ls.PerSecond, 0)) {
		return nil, fmt.Errorf("%w: per_second must be a finite number, 0 or more", ErrInvalid)
	}
	if ls != nil {
		if err := ratelimit.CheckBurst(ls.PerSecond, ls.Burst); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	if l.store != nil {
		if err := l.store.SetRateLimit(ctx, level, ls); err != nil {
			return nil, err
		}
	}
	l.mu.Lock()
	o := maps.Clone(l.overrides)
	l.mu.Unlock()
	if o == nil {
		o = map[string]LimitSetting{}
	}
	if ls == nil {
		delete(o, level)
	} else {
		o[level] = *ls
	}
	l.setOverrides(o)
	return l.infos(), nil
}

// platformOfProvider returns the platform whose provider is named name.
func platformOfProvider(name string) Platform {
	for _, p := range Platforms {
		if p.Provider() == name {
			return p
		}
	}
	return PlatformUnknown
}
