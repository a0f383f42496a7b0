package dispatcher

import (
	"context"
	"fmt"
	"maps"
	"math"
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

// effectiveLimits returns the configured limits with the operators'
// settings applied.
func (d *Dispatcher) effectiveLimits() Limits {
	d.limMu.Lock()
	defer d.limMu.Unlock()
	lim := d.cfg.Limits
	if o, ok := d.overrides[LevelGlobal]; ok {
		lim.GlobalPerSecond, lim.GlobalBurst = o.PerSecond, o.Burst
	}
	for _, p := range Platforms {
		if o, ok := d.overrides[p.Provider()]; ok {
			lim.ProviderPerSecond[p], lim.ProviderBurst[p] = o.PerSecond, o.Burst
		}
	}
	return lim
}

// applyLimits sets the global and provider buckets to this instance's
// share of the limits in force.
func (d *Dispatcher) applyLimits() {
	lim := d.effectiveLimits()
	d.global.Set(d.share(lim.GlobalPerSecond), lim.GlobalBurst)
	for _, p := range Platforms {
		d.perPlat[p].Set(d.share(lim.ProviderPerSecond[p]), lim.ProviderBurst[p])
	}
	d.reportLimits()
}

// setOverrides replaces the operators' settings and applies them when they
// changed.
func (d *Dispatcher) setOverrides(o map[string]LimitSetting) {
	d.limMu.Lock()
	same := maps.Equal(d.overrides, o)
	if !same {
		d.overrides = o
	}
	d.limMu.Unlock()
	if !same {
		d.log.Info("rate limits changed", "operator_settings", o)
		d.applyLimits()
	}
}

// syncLimits reads the operators' settings from the store, so that a
// change made through another instance applies here too.
func (d *Dispatcher) syncLimits(ctx context.Context) {
	if d.limits == nil {
		return
	}
	o, err := d.limits.RateLimits(ctx)
	if err != nil {
		d.log.Warn("cannot read rate limit settings", "err", err)
		return
	}
	d.setOverrides(o)
}

// Limits returns the global and provider buckets.
func (d *Dispatcher) Limits() []LimitInfo {
	d.limMu.Lock()
	defer d.limMu.Unlock()
	var out []LimitInfo
	for _, level := range limitLevels() {
		li := LimitInfo{Level: level, Configured: LimitSetting{d.cfg.Limits.GlobalPerSecond, d.cfg.Limits.GlobalBurst}}
		if level != LevelGlobal {
			p := platformOfProvider(level)
			li.Configured = LimitSetting{d.cfg.Limits.ProviderPerSecond[p], d.cfg.Limits.ProviderBurst[p]}
		}
		inForce := li.Configured
		if o, ok := d.overrides[level]; ok {
			li.Operator, inForce = &o, o
		}
		li.PerSecond, li.Burst = inForce.PerSecond, inForce.Burst
		li.InstanceShare = d.share(li.PerSecond)
		out = append(out, li)
	}
	return out
}

// SetConfiguredLimits replaces the configured global and provider limits
// (a configuration reload). Operators' settings still win over them.
func (d *Dispatcher) SetConfiguredLimits(lim Limits) {
	d.limMu.Lock()
	d.cfg.Limits = lim
	d.limMu.Unlock()
	d.applyLimits()
}

// SetLimit sets the operator's rate and burst of a level (global, apns,
// fcm) for the whole cluster, or with nil goes back to the configured
// values. It applies at once here and within SyncInterval on the other
// instances, and it survives restarts (with a store).
func (d *Dispatcher) SetLimit(ctx context.Context, level string, ls *LimitSetting) ([]LimitInfo, error) {
	known := false
	for _, l := range limitLevels() {
		known = known || l == level
	}
	if !known {
		return nil, fmt.Errorf("%w: level %q: want one of global, apns, fcm", ErrNotFound, level)
	}
	if ls != nil && (ls.PerSecond < 0 || math.IsNaN(ls.PerSecond) || math.IsInf(ls.PerSecond, 0) || ls.Burst < 0) {
		return nil, fmt.Errorf("%w: per_second must be a finite number, 0 or more, and burst 0 or more", ErrInvalid)
	}
	if d.limits != nil {
		if err := d.limits.SetRateLimit(ctx, level, ls); err != nil {
			return nil, err
		}
	}
	d.limMu.Lock()
	o := maps.Clone(d.overrides)
	d.limMu.Unlock()
	if o == nil {
		o = map[string]LimitSetting{}
	}
	if ls == nil {
		delete(o, level)
	} else {
		o[level] = *ls
	}
	d.setOverrides(o)
	return d.Limits(), nil
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
