package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushd/pushd/configs"
)

// secretFile writes a file with mode perm.
func secretFile(t *testing.T, name, content string, perm os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil { // past the umask
		t.Fatal(err)
	}
	return path
}

func TestSecretFilesRefusedOrWarned(t *testing.T) {
	tokens := secretFile(t, "tokens", "admin:"+adminToken+"\n", 0o644)
	creds := secretFile(t, "fcm.json", "{}", 0o600)
	writable := secretFile(t, "apns-password", "x", 0o622)
	cfg := &configs.Config{}
	cfg.Admin.TokensFile, cfg.FCM.CredentialsFile, cfg.APNs.CertPasswordFile = tokens, creds, writable

	cfg.Secrets.UnsafePermissions = "refuse"
	err := checkSecretFiles(cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		t.Fatal("a 0644 tokens file accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		"admin.tokens_file: " + tokens + " has mode 0644", "chmod 600 " + tokens, "secrets.unsafe_permissions: warn",
		"apns.cert_password_file: " + writable + " has mode 0622",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, creds) {
		t.Errorf("a private file refused:\n%s", msg)
	}

	cfg.Secrets.UnsafePermissions = "warn"
	var logs bytes.Buffer
	if err := checkSecretFiles(cfg, slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
		t.Fatalf("warn mode: %v", err)
	}
	for _, want := range []string{"level=WARN", "chmod 600", "key=admin.tokens_file", "path=" + tokens, "mode=0644", "key=apns.cert_password_file"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("warning lacks %q:\n%s", want, logs.String())
		}
	}
	if strings.Contains(logs.String(), adminToken) {
		t.Error("a secret in the logs")
	}
}

// TestStartRefusesReadableSecrets checks that pushd itself does not start
// with a tokens file others may read, nor with an invalid TLS key, and
// says why.
func TestStartRefusesReadableSecrets(t *testing.T) {
	t.Parallel()
	tokens := secretFile(t, "tokens", "admin:"+adminToken+"\n", 0o644)
	start := func(env map[string]string) error {
		env["PUSHD_STORE_DSN"] = filepath.Join(t.TempDir(), "pushd.db")
		return run(context.Background(), nil, func(k string) string { return env[k] }, io.Discard)
	}
	err := start(map[string]string{"PUSHD_ADMIN_TOKENS_FILE": tokens})
	if err == nil || !strings.Contains(err.Error(), "chmod 600 "+tokens) {
		t.Errorf("0644 tokens file: %v", err)
	}
	cert := secretFile(t, "tls.crt", "not a certificate", 0o644)
	key := secretFile(t, "tls.key", "not a key", 0o600)
	err = start(map[string]string{"PUSHD_ADMIN_TLS_CERT_FILE": cert, "PUSHD_ADMIN_TLS_KEY_FILE": key})
	if err == nil || !strings.Contains(err.Error(), "admin.tls_key_file "+key) {
		t.Errorf("invalid TLS key: %v", err)
	}
	if err := os.Chmod(key, 0o604); err != nil {
		t.Fatal(err)
	}
	err = start(map[string]string{"PUSHD_ADMIN_TLS_CERT_FILE": cert, "PUSHD_ADMIN_TLS_KEY_FILE": key})
	if err == nil || !strings.Contains(err.Error(), "admin.tls_key_file: "+key+" has mode 0604") {
		t.Errorf("0604 TLS key: %v", err)
	}
}

// TestUnsafeSecret checks PostgreSQL's rule, for pushd running as uid 1000
// and as root.
func TestUnsafeSecret(t *testing.T) {
	for _, tc := range []struct {
		perm        os.FileMode
		owner, euid uint32
		known       bool
		want        string // a part of the problem; "" for none
	}{
		{0o600, 1000, 1000, true, ""},
		{0o400, 1000, 1000, true, ""},
		{0o640, 1000, 1000, true, "group or others"},
		{0o604, 1000, 1000, true, "group or others"},
		{0o610, 1000, 1000, true, "group or others"},
		{0o640, 0, 1000, true, ""}, // root:pushd 0640, as deploy/ installs them
		{0o440, 0, 1000, true, ""},
		{0o644, 0, 1000, true, "others may read it"},
		{0o660, 0, 1000, true, "the group may write it"},
		{0o600, 1001, 1000, true, "owned by uid 1001"},
		{0o640, 0, 0, true, ""},
		{0o644, 0, 0, true, "others"},
		{0o600, 0, 0, false, ""},
		{0o640, 0, 0, false, "group or others"}, // owner unknown: the strict rule
	} {
		got := unsafeSecret(tc.perm, tc.owner, tc.known, tc.euid)
		if (got == "") != (tc.want == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%04o owned by %d (known %v), pushd as %d: %q, want %q", tc.perm, tc.owner, tc.known, tc.euid, got, tc.want)
		}
	}
}
