// Package configs loads and checks pushd's configuration: built-in defaults
// (the documented example file, embedded), an optional YAML file, and
// PUSHD_<SECTION>_<KEY> environment variables, in rising precedence.
//
// It is the only package besides cmd that knows viper. It hands out typed
// values; it does not build clients or read secrets beyond checking that
// the files named exist.
package configs

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/viper"

	"github.com/pushd/pushd/ratelimit"
)

// Example is the documented example configuration; its values are the
// defaults.
//
//go:embed pushd.example.yaml
var Example []byte

// Config is the whole configuration. Each field's default is in
// pushd.example.yaml, next to its documentation.
type Config struct {
	Log        Log        `mapstructure:"log"`
	AMQP       AMQP       `mapstructure:"amqp"`
	APNs       APNs       `mapstructure:"apns"`
	FCM        FCM        `mapstructure:"fcm"`
	RateLimit  RateLimit  `mapstructure:"ratelimit"`
	Lists      Lists      `mapstructure:"lists"`
	Sim        Sim        `mapstructure:"sim"`
	Dispatcher Dispatcher `mapstructure:"dispatcher"`
	Metrics    Metrics    `mapstructure:"metrics"`
	Admin      Admin      `mapstructure:"admin"`
	Scheduler  Scheduler  `mapstructure:"scheduler"`
	Store      Store      `mapstructure:"store"`
	Secrets    Secrets    `mapstructure:"secrets"`
}

// Log configures logging.
type Log struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
}

// AMQP configures the RabbitMQ connection and topology.
type AMQP struct {
	URL            string        `mapstructure:"url"`
	Exchange       string        `mapstructure:"exchange"`
	RoutingKey     string        `mapstructure:"routing_key"`
	HighRoutingKey string        `mapstructure:"high_routing_key"`
	Queue          string        `mapstructure:"queue"`
	HighQueue      string        `mapstructure:"high_queue"`
	DeadExchange   string        `mapstructure:"dead_exchange"`
	DeadQueue      string        `mapstructure:"dead_queue"`
	EventsExchange string        `mapstructure:"events_exchange"`
	DeliveryLimit  int           `mapstructure:"delivery_limit"`
	Prefetch       int           `mapstructure:"prefetch"`
	HighPrefetch   int           `mapstructure:"high_prefetch"`
	Heartbeat      time.Duration `mapstructure:"heartbeat"`
	ReconnectMin   time.Duration `mapstructure:"reconnect_min"`
	ReconnectMax   time.Duration `mapstructure:"reconnect_max"`
}

// APNs configures Apple's push service.
type APNs struct {
	Host             string        `mapstructure:"host"`
	KeyFile          string        `mapstructure:"key_file"`
	KeyID            string        `mapstructure:"key_id"`
	TeamID           string        `mapstructure:"team_id"`
	CertFile         string        `mapstructure:"cert_file"`
	CertPasswordFile string        `mapstructure:"cert_password_file"`
	Topic            string        `mapstructure:"topic"`
	CAFile           string        `mapstructure:"ca_file"`
	Connections      int           `mapstructure:"connections"`
	Workers          int           `mapstructure:"workers"`
	Timeout          time.Duration `mapstructure:"timeout"`
}

// HasCredentials reports whether token or certificate auth is configured.
func (a APNs) HasCredentials() bool { return a.KeyFile != "" || a.CertFile != "" }

// FCM configures Firebase Cloud Messaging.
type FCM struct {
	Endpoint        string        `mapstructure:"endpoint"`
	CredentialsFile string        `mapstructure:"credentials_file"`
	ProjectID       string        `mapstructure:"project_id"`
	CAFile          string        `mapstructure:"ca_file"`
	Workers         int           `mapstructure:"workers"`
	Timeout         time.Duration `mapstructure:"timeout"`
}

// RateLimit configures the global and provider token buckets.
type RateLimit struct {
	GlobalPerSecond float64 `mapstructure:"global_per_second"`
	GlobalBurst     int     `mapstructure:"global_burst"`
	APNsPerSecond   float64 `mapstructure:"apns_per_second"`
	APNsBurst       int     `mapstructure:"apns_burst"`
	FCMPerSecond    float64 `mapstructure:"fcm_per_second"`
	FCMBurst        int     `mapstructure:"fcm_burst"`
}

// Lists configures the blacklist and whitelist.
type Lists struct {
	WhitelistOnly          bool          `mapstructure:"whitelist_only"`
	BlacklistInvalidTokens bool          `mapstructure:"blacklist_invalid_tokens"`
	PollInterval           time.Duration `mapstructure:"poll_interval"`
}

// Sim configures the built-in simulator.
type Sim struct {
	Latency time.Duration `mapstructure:"latency"`
}

// Dispatcher configures retries and shutdown.
type Dispatcher struct {
	MaxAttempts int           `mapstructure:"max_attempts"`
	RetryBase   time.Duration `mapstructure:"retry_base"`
	RetryMax    time.Duration `mapstructure:"retry_max"`
	// BreakerFailures is how many consecutive provider-down answers (no
	// answer, or a 5xx) open a provider's breaker. Default 10.
	BreakerFailures int `mapstructure:"breaker_failures"`
	// BreakerProbe is how often an open breaker lets one send through to
	// probe the provider. Default 1s.
	BreakerProbe    time.Duration `mapstructure:"breaker_probe"`
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout"`
	MaxHold         time.Duration `mapstructure:"max_hold"`
	CampaignIdle    time.Duration `mapstructure:"campaign_idle"`
	LedgerFlush     time.Duration `mapstructure:"ledger_flush"`
	LedgerRetention time.Duration `mapstructure:"ledger_retention"`
	LedgerLease     time.Duration `mapstructure:"ledger_lease"`
}

// Metrics configures the metrics and health endpoint.
type Metrics struct {
	Addr string `mapstructure:"addr"`
}

// Admin configures the admin API.
type Admin struct {
	Addr           string `mapstructure:"addr"`
	TokensFile     string `mapstructure:"tokens_file"`
	MaxImportBytes int64  `mapstructure:"max_import_bytes"`
	// MaxAudienceBytes bounds an audience import's CSV, which is
	// streamed rather than held in memory. Default: 2 GiB.
	MaxAudienceBytes int64 `mapstructure:"max_audience_bytes"`
	// ImportReadTimeout is how long an import's body may wait for its
	// next bytes. Default 30s.
	ImportReadTimeout time.Duration `mapstructure:"import_read_timeout"`
	// RequireApproval: a scheduled console campaign waits for another
	// user's approval. Default false.
	RequireApproval bool `mapstructure:"require_approval"`
	// Pprof serves Go's profiles under /debug/pprof/ to admins. Default
	// false.
	Pprof bool `mapstructure:"pprof"`
	// TimeZone is the IANA zone of a console campaign's send_at when it
	// names none. Default UTC.
	TimeZone string `mapstructure:"time_zone"`
	// SessionIdle ends a console session unused for this long. Default
	// 30m.
	SessionIdle time.Duration `mapstructure:"session_idle"`
	// SessionMax ends a console session this long after its sign-in.
	// Default 12h.
	SessionMax time.Duration `mapstructure:"session_max"`
	// SignInUserFailures and SignInAddressFailures are the failed
	// sign-ins a user name, and a client address, may have within
	// SignInFailureWindow before they are refused. Defaults 5, 20, 15m.
	SignInUserFailures    int           `mapstructure:"signin_user_failures"`
	SignInAddressFailures int           `mapstructure:"signin_address_failures"`
	SignInFailureWindow   time.Duration `mapstructure:"signin_failure_window"`
	// TLSCertFile and TLSKeyFile, both or neither, make the admin
	// listener serve HTTPS. Default: plain HTTP.
	TLSCertFile string `mapstructure:"tls_cert_file"`
	TLSKeyFile  string `mapstructure:"tls_key_file"`
}

// Secrets configures how pushd treats the files that hold secrets.
type Secrets struct {
	// UnsafePermissions is what pushd does at start with a secret file
	// (admin tokens, APNs key, certificate and its password, FCM service
	// account, TLS key) that is not private (owned by pushd's user and
	// 0600, or by root and 0640 at most): refuse (the default: pushd does
	// not start) or warn.
	UnsafePermissions string `mapstructure:"unsafe_permissions"`
}

// SecretFile is a file named in the configuration that holds a secret.
type SecretFile struct {
	// Key is the configuration key that names the file.
	Key, Path string
}

// SecretFiles returns the secret files the configuration names.
func (c *Config) SecretFiles() []SecretFile {
	var out []SecretFile
	for _, f := range []SecretFile{
		{"admin.tokens_file", c.Admin.TokensFile},
		{"admin.tls_key_file", c.Admin.TLSKeyFile},
		{"apns.key_file", c.APNs.KeyFile},
		{"apns.cert_file", c.APNs.CertFile},
		{"apns.cert_password_file", c.APNs.CertPasswordFile},
		{"fcm.credentials_file", c.FCM.CredentialsFile},
	} {
		if f.Path != "" {
			out = append(out, f)
		}
	}
	return out
}

// Scheduler configures the scheduler of console campaigns.
type Scheduler struct {
	// MaxLate: a campaign whose time passed longer ago than this while no
	// pushd ran becomes missed and is not sent. Default 1h.
	MaxLate time.Duration `mapstructure:"max_late"`
	// Lease is how long an instance holds a campaign it publishes without
	// renewing it; another takes over after that. Default 30s.
	Lease time.Duration `mapstructure:"lease"`
}

// Store configures persistence.
type Store struct {
	DSN string `mapstructure:"dsn"`
	// CampaignRetention: campaigns that ended (finished, cancelled or
	// missed) are deleted this long after they ended, and their ledger
	// rows with them; their audit records stay. 0 keeps them. At least
	// 24h when set. Default 720h (30 days).
	CampaignRetention time.Duration `mapstructure:"campaign_retention"`
	// ListSnapshotRetention: the snapshots that keep what replace imports
	// and restores replaced are deleted this long after they were made
	// (their audit records stay); 0 keeps them. At least 1h when set.
	// Default 720h (30 days).
	ListSnapshotRetention time.Duration `mapstructure:"list_snapshot_retention"`
}

// EnvPrefix prefixes every environment variable pushd reads.
const EnvPrefix = "PUSHD_"

// EnvName returns the environment variable of a key: "apns.key_file" is
// PUSHD_APNS_KEY_FILE.
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// Load reads the defaults, then file (if not empty), then the environment
// through getenv, and validates the result.
func Load(file string, getenv func(string) string) (*Config, error) {
	defaults := viper.New()
	defaults.SetConfigType("yaml")
	if err := defaults.ReadConfig(bytes.NewReader(Example)); err != nil {
		return nil, fmt.Errorf("built-in defaults: %w", err)
	}
	v := viper.New()
	keys := defaults.AllKeys()
	for _, k := range keys {
		v.SetDefault(k, defaults.Get(k))
	}
	if file != "" {
		v.SetConfigFile(file)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("config file %s: %w", file, err)
		}
		for _, k := range v.AllKeys() {
			if !slices.Contains(keys, k) {
				return nil, fmt.Errorf("config file %s: unknown key %q", file, k)
			}
		}
	}
	for _, k := range keys {
		if val, ok := lookup(getenv, EnvName(k)); ok {
			v.Set(k, val)
		}
	}
	var c Config
	if err := v.UnmarshalExact(&c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func lookup(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}

// Validate checks every value and names the first bad key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config key %s (%s): %s", key, EnvName(key), fmt.Sprintf(format, args...)))
	}
	oneOf := func(key, v string, allowed ...string) {
		if !slices.Contains(allowed, v) {
			bad(key, "got %q, want one of %s", v, strings.Join(allowed, ", "))
		}
	}
	positive := func(key string, n int) {
		if n < 1 {
			bad(key, "must be at least 1, got %d", n)
		}
	}
	duration := func(key string, d time.Duration) {
		if d <= 0 {
			bad(key, "must be a positive duration such as 10s, got %s", d)
		}
	}
	file := func(key, path string) {
		if path == "" {
			return
		}
		if _, err := os.Stat(path); err != nil {
			bad(key, "cannot read %s: %v", path, errors.Unwrap(err))
		}
	}
	addr := func(key, a string) {
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad(key, "want host:port, got %q", a)
		}
	}
	httpURL := func(key, raw string) {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(key, "want an http(s) URL, got %q", raw)
		}
	}

	oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf("log.format", c.Log.Format, "json", "text")

	if u, err := url.Parse(c.AMQP.URL); err != nil || (u.Scheme != "amqp" && u.Scheme != "amqps") || u.Host == "" {
		bad("amqp.url", "want amqp://user:pass@host:port/vhost or amqps://...")
	}
	for key, v := range map[string]string{
		"amqp.exchange": c.AMQP.Exchange, "amqp.routing_key": c.AMQP.RoutingKey,
		"amqp.high_routing_key": c.AMQP.HighRoutingKey, "amqp.queue": c.AMQP.Queue,
		"amqp.high_queue": c.AMQP.HighQueue, "amqp.dead_exchange": c.AMQP.DeadExchange,
		"amqp.dead_queue": c.AMQP.DeadQueue, "amqp.events_exchange": c.AMQP.EventsExchange,
	} {
		if v == "" {
			bad(key, "must not be empty")
		}
	}
	if c.AMQP.Queue == c.AMQP.HighQueue {
		bad("amqp.high_queue", "must differ from amqp.queue")
	}
	if c.AMQP.RoutingKey == c.AMQP.HighRoutingKey {
		bad("amqp.high_routing_key", "must differ from amqp.routing_key")
	}
	positive("amqp.delivery_limit", c.AMQP.DeliveryLimit)
	positive("amqp.prefetch", c.AMQP.Prefetch)
	positive("amqp.high_prefetch", c.AMQP.HighPrefetch)
	if c.AMQP.Heartbeat < 2*time.Second {
		bad("amqp.heartbeat", "must be at least 2s, got %s", c.AMQP.Heartbeat)
	}
	duration("amqp.reconnect_min", c.AMQP.ReconnectMin)
	if c.AMQP.ReconnectMax < c.AMQP.ReconnectMin {
		bad("amqp.reconnect_max", "must be at least amqp.reconnect_min")
	}

	switch h := c.APNs.Host; h {
	case "", "production", "sandbox", "development":
	default:
		httpURL("apns.host", h)
	}
	tokenAuth := []string{c.APNs.KeyFile, c.APNs.KeyID, c.APNs.TeamID}
	if slices.Contains(tokenAuth, "") && slices.ContainsFunc(tokenAuth, func(s string) bool { return s != "" }) {
		bad("apns.key_file", "token auth needs apns.key_file, apns.key_id and apns.team_id together")
	}
	if c.APNs.KeyFile != "" && c.APNs.CertFile != "" {
		bad("apns.cert_file", "choose token auth (apns.key_file) or certificate auth, not both")
	}
	file("apns.key_file", c.APNs.KeyFile)
	file("apns.cert_file", c.APNs.CertFile)
	file("apns.cert_password_file", c.APNs.CertPasswordFile)
	file("apns.ca_file", c.APNs.CAFile)
	positive("apns.connections", c.APNs.Connections)
	positive("apns.workers", c.APNs.Workers)
	duration("apns.timeout", c.APNs.Timeout)

	if c.FCM.Endpoint != "" {
		httpURL("fcm.endpoint", c.FCM.Endpoint)
	}
	file("fcm.credentials_file", c.FCM.CredentialsFile)
	file("fcm.ca_file", c.FCM.CAFile)
	positive("fcm.workers", c.FCM.Workers)
	duration("fcm.timeout", c.FCM.Timeout)

	for key, v := range map[string]float64{
		"ratelimit.global_per_second": c.RateLimit.GlobalPerSecond,
		"ratelimit.apns_per_second":   c.RateLimit.APNsPerSecond,
		"ratelimit.fcm_per_second":    c.RateLimit.FCMPerSecond,
	} {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			bad(key, "must be a number, 0 (no limit) or more")
		}
	}
	type bucket struct {
		perSecond float64
		burst     int
	}
	for key, v := range map[string]bucket{
		"ratelimit.global_burst": {c.RateLimit.GlobalPerSecond, c.RateLimit.GlobalBurst},
		"ratelimit.apns_burst":   {c.RateLimit.APNsPerSecond, c.RateLimit.APNsBurst},
		"ratelimit.fcm_burst":    {c.RateLimit.FCMPerSecond, c.RateLimit.FCMBurst},
	} {
		if err := ratelimit.CheckBurst(v.perSecond, v.burst); err != nil {
			bad(key, "%s", err)
		}
	}
	duration("lists.poll_interval", c.Lists.PollInterval)
	if c.Sim.Latency < 0 {
		bad("sim.latency", "must not be negative")
	}

	positive("dispatcher.max_attempts", c.Dispatcher.MaxAttempts)
	duration("dispatcher.retry_base", c.Dispatcher.RetryBase)
	if c.Dispatcher.RetryMax < c.Dispatcher.RetryBase {
		bad("dispatcher.retry_max", "must be at least dispatcher.retry_base")
	}
	positive("dispatcher.breaker_failures", c.Dispatcher.BreakerFailures)
	duration("dispatcher.breaker_probe", c.Dispatcher.BreakerProbe)
	duration("dispatcher.shutdown_timeout", c.Dispatcher.ShutdownTimeout)
	duration("dispatcher.max_hold", c.Dispatcher.MaxHold)
	duration("dispatcher.campaign_idle", c.Dispatcher.CampaignIdle)
	duration("dispatcher.ledger_flush", c.Dispatcher.LedgerFlush)
	if c.Dispatcher.LedgerLease < time.Second {
		bad("dispatcher.ledger_lease", "must be at least 1s (it is renewed every fifth of it)")
	}
	if c.Dispatcher.LedgerRetention < time.Hour {
		bad("dispatcher.ledger_retention", "must be at least 1h (longer than a batch can stay queued or held)")
	}

	addr("metrics.addr", c.Metrics.Addr)
	addr("admin.addr", c.Admin.Addr)
	file("admin.tokens_file", c.Admin.TokensFile)
	if c.Admin.MaxImportBytes < 1 {
		bad("admin.max_import_bytes", "must be at least 1")
	}
	if c.Admin.MaxAudienceBytes < 1 {
		bad("admin.max_audience_bytes", "must be at least 1")
	}
	if _, err := time.LoadLocation(c.Admin.TimeZone); err != nil || c.Admin.TimeZone == "" {
		bad("admin.time_zone", "must be an IANA time zone such as UTC or Asia/Seoul")
	}
	duration("admin.session_idle", c.Admin.SessionIdle)
	duration("admin.import_read_timeout", c.Admin.ImportReadTimeout)
	duration("admin.session_max", c.Admin.SessionMax)
	positive("admin.signin_user_failures", c.Admin.SignInUserFailures)
	positive("admin.signin_address_failures", c.Admin.SignInAddressFailures)
	duration("admin.signin_failure_window", c.Admin.SignInFailureWindow)
	switch {
	case c.Admin.TLSCertFile != "" && c.Admin.TLSKeyFile == "":
		bad("admin.tls_key_file", "must be set with admin.tls_cert_file")
	case c.Admin.TLSCertFile == "" && c.Admin.TLSKeyFile != "":
		bad("admin.tls_cert_file", "must be set with admin.tls_key_file")
	}
	file("admin.tls_cert_file", c.Admin.TLSCertFile)
	file("admin.tls_key_file", c.Admin.TLSKeyFile)
	oneOf("secrets.unsafe_permissions", c.Secrets.UnsafePermissions, "refuse", "warn")
	duration("scheduler.max_late", c.Scheduler.MaxLate)
	duration("scheduler.lease", c.Scheduler.Lease)
	if c.Store.DSN == "" {
		bad("store.dsn", "must not be empty")
	}
	if r := c.Store.CampaignRetention; r != 0 && r < 24*time.Hour {
		bad("store.campaign_retention", "must be 0 (keep them) or at least 24h, longer than a batch of an ended campaign can still come back, got %s", r)
	}
	if r := c.Store.ListSnapshotRetention; r != 0 && r < time.Hour {
		bad("store.list_snapshot_retention", "must be 0 (keep them) or at least 1h, got %s", r)
	}
	return errors.Join(errs...)
}
