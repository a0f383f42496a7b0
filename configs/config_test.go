package configs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadExampleFile(t *testing.T) {
	// The example is both documentation and the defaults: loading it as a
	// file must give exactly the defaults.
	fromFile, err := Load("pushd.example.yaml", env(nil))
	if err != nil {
		t.Fatalf("load example: %v", err)
	}
	defaults, err := Load("", env(nil))
	if err != nil {
		t.Fatalf("load defaults: %v", err)
	}
	if *fromFile != *defaults {
		t.Errorf("example file differs from defaults:\n%+v\n%+v", fromFile, defaults)
	}
	if defaults.AMQP.URL != "amqp://guest:guest@127.0.0.1:5672/" || defaults.AMQP.Heartbeat != 10*time.Second || defaults.APNs.Workers != 256 {
		t.Errorf("unexpected defaults: %+v", defaults)
	}
	if defaults.Store.ListSnapshotRetention != 30*24*time.Hour || defaults.Store.CampaignRetention != 30*24*time.Hour {
		t.Errorf("store retention defaults: %+v", defaults.Store)
	}
	if defaults.Admin.RequireApproval || defaults.Admin.TimeZone != "UTC" || defaults.Scheduler.MaxLate != time.Hour || defaults.Scheduler.Lease != 30*time.Second {
		t.Errorf("unexpected console campaign defaults: %+v %+v", defaults.Admin, defaults.Scheduler)
	}
	a := defaults.Admin
	if a.SessionIdle != 30*time.Minute || a.SessionMax != 12*time.Hour || a.SignInUserFailures != 5 || a.SignInAddressFailures != 20 ||
		a.SignInFailureWindow != 15*time.Minute || a.TLSCertFile != "" || a.TLSKeyFile != "" || defaults.Secrets.UnsafePermissions != "refuse" {
		t.Errorf("unexpected account defaults: %+v %+v", a, defaults.Secrets)
	}
}

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{}
	for _, k := range []string{"admin.tokens_file", "admin.tls_cert_file", "admin.tls_key_file", "apns.key_file", "apns.cert_password_file", "apns.ca_file", "fcm.credentials_file"} {
		path := filepath.Join(dir, k)
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		env[EnvName(k)] = path
	}
	env["PUSHD_APNS_KEY_ID"], env["PUSHD_APNS_TEAM_ID"] = "K", "T"
	c, err := Load("", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, f := range c.SecretFiles() {
		keys = append(keys, f.Key)
		if f.Path != filepath.Join(dir, f.Key) {
			t.Errorf("%s: path %s", f.Key, f.Path)
		}
	}
	// Not the certificate nor the CAs: they are public.
	if got := strings.Join(keys, " "); got != "admin.tokens_file admin.tls_key_file apns.key_file apns.cert_password_file fcm.credentials_file" {
		t.Errorf("secret files %s", got)
	}
}

func TestEnvironmentOverrides(t *testing.T) {
	c, err := Load("", env(map[string]string{
		"PUSHD_AMQP_URL":                  "amqp://u:p@rabbit:5672/v",
		"PUSHD_APNS_HOST":                 "https://127.0.0.1:8443",
		"PUSHD_FCM_ENDPOINT":              "http://127.0.0.1:9000/v1",
		"PUSHD_AMQP_PREFETCH":             "3",
		"PUSHD_AMQP_HEARTBEAT":            "2s",
		"PUSHD_METRICS_ADDR":              "127.0.0.1:0",
		"PUSHD_STORE_DSN":                 "postgres://db/pushd",
		"PUSHD_APNS_TOPIC":                "com.example.app",
		"PUSHD_DISPATCHER_MAX_ATTEMPTS":   "7",
		"PUSHD_DISPATCHER_BREAKER_PROBE":  "250ms",
		"PUSHD_RATELIMIT_APNS_PER_SECOND": "1200.5",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.AMQP.URL != "amqp://u:p@rabbit:5672/v" || c.APNs.Host != "https://127.0.0.1:8443" ||
		c.FCM.Endpoint != "http://127.0.0.1:9000/v1" || c.AMQP.Prefetch != 3 || c.AMQP.Heartbeat != 2*time.Second ||
		c.Metrics.Addr != "127.0.0.1:0" || c.Store.DSN != "postgres://db/pushd" || c.APNs.Topic != "com.example.app" ||
		c.Dispatcher.MaxAttempts != 7 || c.RateLimit.APNsPerSecond != 1200.5 || c.RateLimit.FCMPerSecond != 9500 ||
		c.Dispatcher.BreakerProbe != 250*time.Millisecond || c.Dispatcher.BreakerFailures != 10 {
		t.Errorf("overrides not applied: %+v", c)
	}
}

func TestFileThenEnvironment(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pushd.yaml")
	if err := os.WriteFile(path, []byte("amqp:\n  prefetch: 5\n  high_prefetch: 2\napns:\n  topic: from.file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, env(map[string]string{"PUSHD_AMQP_PREFETCH": "9"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.AMQP.Prefetch != 9 || c.AMQP.HighPrefetch != 2 || c.APNs.Topic != "from.file" {
		t.Errorf("got prefetch %d high %d topic %q", c.AMQP.Prefetch, c.AMQP.HighPrefetch, c.APNs.Topic)
	}
}

func TestBadValuesNameTheKey(t *testing.T) {
	tests := []struct {
		env  map[string]string
		file string
		want string
	}{
		{env: map[string]string{"PUSHD_AMQP_URL": "http://nope"}, want: "amqp.url"},
		{env: map[string]string{"PUSHD_AMQP_PREFETCH": "0"}, want: "amqp.prefetch"},
		{env: map[string]string{"PUSHD_AMQP_PREFETCH": "many"}, want: "prefetch"},
		{env: map[string]string{"PUSHD_AMQP_HEARTBEAT": "soon"}, want: "heartbeat"},
		{env: map[string]string{"PUSHD_APNS_HOST": "ftp://x"}, want: "apns.host"},
		{env: map[string]string{"PUSHD_APNS_KEY_FILE": "/nonexistent.p8", "PUSHD_APNS_KEY_ID": "K", "PUSHD_APNS_TEAM_ID": "T"}, want: "apns.key_file"},
		{env: map[string]string{"PUSHD_APNS_KEY_ID": "K"}, want: "apns.key_file"},
		{env: map[string]string{"PUSHD_FCM_ENDPOINT": "not a url"}, want: "fcm.endpoint"},
		{env: map[string]string{"PUSHD_FCM_CREDENTIALS_FILE": "/nonexistent.json"}, want: "fcm.credentials_file"},
		{env: map[string]string{"PUSHD_METRICS_ADDR": "9090"}, want: "metrics.addr"},
		{env: map[string]string{"PUSHD_LOG_LEVEL": "loud"}, want: "log.level"},
		{env: map[string]string{"PUSHD_DISPATCHER_RETRY_MAX": "1ms"}, want: "dispatcher.retry_max"},
		{env: map[string]string{"PUSHD_RATELIMIT_FCM_PER_SECOND": "-1"}, want: "ratelimit.fcm_per_second"},
		{env: map[string]string{"PUSHD_RATELIMIT_GLOBAL_BURST": "-2"}, want: "ratelimit.global_burst"},
		{env: map[string]string{"PUSHD_RATELIMIT_APNS_BURST": "9223372036854775807"}, want: "ratelimit.apns_burst"},
		{env: map[string]string{"PUSHD_DISPATCHER_MAX_HOLD": "0s"}, want: "dispatcher.max_hold"},
		{env: map[string]string{"PUSHD_DISPATCHER_BREAKER_FAILURES": "0"}, want: "dispatcher.breaker_failures"},
		{env: map[string]string{"PUSHD_DISPATCHER_BREAKER_PROBE": "-1s"}, want: "dispatcher.breaker_probe"},
		{env: map[string]string{"PUSHD_ADMIN_TIME_ZONE": "Mars/Olympus"}, want: "admin.time_zone"},
		{env: map[string]string{"PUSHD_SCHEDULER_MAX_LATE": "0s"}, want: "scheduler.max_late"},
		{env: map[string]string{"PUSHD_SCHEDULER_LEASE": "-1s"}, want: "scheduler.lease"},
		{env: map[string]string{"PUSHD_STORE_LIST_SNAPSHOT_RETENTION": "10m"}, want: "store.list_snapshot_retention"},
		{env: map[string]string{"PUSHD_STORE_CAMPAIGN_RETENTION": "1h"}, want: "store.campaign_retention"},
		{env: map[string]string{"PUSHD_STORE_CAMPAIGN_RETENTION": "-720h"}, want: "store.campaign_retention"},
		{env: map[string]string{"PUSHD_STORE_LIST_SNAPSHOT_RETENTION": "-1h"}, want: "store.list_snapshot_retention"},
		{env: map[string]string{"PUSHD_ADMIN_SESSION_IDLE": "0s"}, want: "admin.session_idle"},
		{env: map[string]string{"PUSHD_ADMIN_SESSION_MAX": "-1h"}, want: "admin.session_max"},
		{env: map[string]string{"PUSHD_ADMIN_SIGNIN_USER_FAILURES": "0"}, want: "admin.signin_user_failures"},
		{env: map[string]string{"PUSHD_ADMIN_SIGNIN_ADDRESS_FAILURES": "-3"}, want: "admin.signin_address_failures"},
		{env: map[string]string{"PUSHD_ADMIN_SIGNIN_FAILURE_WINDOW": "0s"}, want: "admin.signin_failure_window"},
		{env: map[string]string{"PUSHD_ADMIN_TLS_CERT_FILE": "config_test.go"}, want: "admin.tls_key_file (PUSHD_ADMIN_TLS_KEY_FILE): must be set with admin.tls_cert_file"},
		{env: map[string]string{"PUSHD_ADMIN_TLS_KEY_FILE": "config_test.go"}, want: "admin.tls_cert_file (PUSHD_ADMIN_TLS_CERT_FILE): must be set"},
		{env: map[string]string{"PUSHD_ADMIN_TLS_CERT_FILE": "config_test.go", "PUSHD_ADMIN_TLS_KEY_FILE": "/nonexistent.key"}, want: "admin.tls_key_file"},
		{env: map[string]string{"PUSHD_SECRETS_UNSAFE_PERMISSIONS": "ignore"}, want: "secrets.unsafe_permissions"},
		{file: "apns:\n  keyfile: x\n", want: `unknown key "apns.keyfile"`},
		{file: "amqp: [\n", want: "config file"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			path := ""
			if tt.file != "" {
				path = filepath.Join(t.TempDir(), "c.yaml")
				if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Load(path, env(tt.env))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v, want one naming %q", err, tt.want)
			}
		})
	}
}

func TestEnvName(t *testing.T) {
	if got := EnvName("apns.key_file"); got != "PUSHD_APNS_KEY_FILE" {
		t.Errorf("EnvName = %q", got)
	}
}
