package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pushd/pushd/push/sim"
)

// profileToken is the admin bearer token pushbench gives a pushd it
// profiles (-profile): a throwaway pushd on loopback, for /debug/pprof.
const profileToken = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

// envValue returns the value of key in env (KEY=value entries), or "".
func envValue(env []string, key string) string {
	v := ""
	for _, kv := range env {
		if s, ok := strings.CutPrefix(kv, key+"="); ok {
			v = s
		}
	}
	return v
}

// profileEnv returns what pushd's environment needs for pushbench to take
// its CPU profile (admin.pprof on, an admin token in a file in dir), or
// nil without -profile.
func (b *bench) profileEnv(dir string) ([]string, error) {
	if b.cfg.profile == "" {
		return nil, nil
	}
	tokens := filepath.Join(dir, "profile-admin-tokens")
	if err := os.WriteFile(tokens, []byte("admin:"+profileToken+"\n"), 0o600); err != nil {
		return nil, err
	}
	return []string{"PUSHD_ADMIN_PPROF=true", "PUSHD_ADMIN_TOKENS_FILE=" + tokens}, nil
}

// profilePushd takes a CPU profile of the pushd at adminAddr for
// -profile-for once the simulator has accepted a tenth of the round's
// pushes since base, into -profile's directory. It returns at once without
// -profile; otherwise what it returns, on done, is an error to note.
func (b *bench) profilePushd(ctx context.Context, name string, round int, adminAddr string, base sim.Stats) (done <-chan error) {
	ch := make(chan error, 1)
	if b.cfg.profile == "" {
		ch <- nil
		return ch
	}
	go func() {
		tick := time.NewTicker(pollInterval)
		defer tick.Stop()
		for {
			if st, err := b.poll.stats(ctx); err == nil && both(st).Accepted-both(base).Accepted >= int64(b.cfg.n/10) {
				break
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
				ch <- ctx.Err()
				return
			}
		}
		file := b.profileFile(strings.ReplaceAll(name, "+", "-"), round)
		ch <- fetchProfile(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", adminAddr, int(b.cfg.profileFor.Seconds())), file)
	}()
	return ch
}

// fetchProfile saves the profile at url, read with pushbench's admin
// token, as file.
func fetchProfile(ctx context.Context, url, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+profileToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("profile: %s: %s", resp.Status, msg)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("profile: %w", err)
	}
	return f.Close()
}
