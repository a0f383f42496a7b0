package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/pushd/pushd/internal/audiencecsv"
)

// audienceResult is what runAudience measured.
type audienceResult struct {
	Rows       int           `json:"rows"`
	Bytes      int64         `json:"bytes"`
	Took       time.Duration `json:"took_ns"`
	CPU        time.Duration `json:"cpu_ns"`           // pushd's user+system time during the import
	RSSBefore  int64         `json:"rss_before_bytes"` // VmRSS just before the import
	PeakBefore int64         `json:"peak_rss_before_bytes"`
	PeakAfter  int64         `json:"peak_rss_after_bytes"` // VmHWM after it
	Recipients int64         `json:"recipients"`
}

// growth is how much pushd's peak RSS rose above its RSS before the
// import.
func (r audienceResult) growth() int64 { return r.PeakAfter - r.RSSBefore }

func (r audienceResult) String() string {
	const mb = 1 << 20
	return fmt.Sprintf("%d rows (%.0f MB of CSV) imported in %.1f s (%.0f rows/s), pushd CPU %.1f s; pushd RSS %.1f MB before, peak %.1f MB after (peak before %.1f MB): grew %.1f MB",
		r.Rows, float64(r.Bytes)/mb, r.Took.Seconds(), float64(r.Rows)/r.Took.Seconds(), r.CPU.Seconds(),
		float64(r.RSSBefore)/mb, float64(r.PeakAfter)/mb, float64(r.PeakBefore)/mb, float64(r.growth())/mb)
}

// runAudience starts pushd with an empty store and imports an audience of
// rows generated recipients through its admin API (POST /api/audiences, the
// body streamed), timing the request and reading pushd's RSS from
// /proc/PID/status before (VmRSS) and after (VmHWM, the peak).
func (b *bench) runAudience(ctx context.Context, rows int, stdout io.Writer) (res audienceResult, err error) {
	top, _ := benchTopology()
	defer func() {
		if derr := deleteTopology(b.cfg.amqpURL, top); derr != nil {
			err = errors.Join(err, derr)
		}
	}()
	dir := filepath.Join(b.dir, "audience")
	if err := mkdir(dir); err != nil {
		return res, err
	}
	env, _, err := b.pushdEnv(top, dir)
	if err != nil {
		return res, err
	}
	const token = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tokens := filepath.Join(dir, "admin-tokens")
	if err := os.WriteFile(tokens, []byte("operator:"+token+"\n"), 0o600); err != nil {
		return res, err
	}
	env = append(env, "PUSHD_ADMIN_TOKENS_FILE="+tokens)
	adminAddr := envValue(env, "PUSHD_ADMIN_ADDR")

	d, err := startChild("pushd", b.cfg.pushd, nil, env, nil)
	if err != nil {
		return res, err
	}
	defer func() {
		if serr := d.stop(); serr != nil {
			err = errors.Join(err, serr)
		}
	}()
	// The admin API is all the import needs: not /readyz, which also
	// waits for the queue consumers.
	if err := waitAdmin(ctx, d, "http://"+adminAddr+"/api/audiences", token); err != nil {
		return res, fmt.Errorf("pushd start-up: %w", err)
	}
	status := func(key string) (int64, error) {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.pid()))
		if err != nil {
			return 0, err
		}
		return parseStatusKB(raw, key)
	}
	if res.RSSBefore, err = status("VmRSS"); err != nil {
		return res, err
	}
	if res.PeakBefore, err = status("VmHWM"); err != nil {
		return res, err
	}

	fmt.Fprintf(stdout, "audience: importing %d rows through POST /api/audiences ...\n", rows)
	body := &countingReader{r: &audiencecsv.Reader{N: rows}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+adminAddr+"/api/audiences?name=pushbench", body)
	if err != nil {
		return res, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "text/csv")
	cpu := procCPU(d.pid(), b.tck)
	cpu0, err := cpu()
	if err != nil {
		return res, err
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return res, fmt.Errorf("import: %w", err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	res.Took = time.Since(start)
	if err != nil {
		return res, fmt.Errorf("import: %w", err)
	}
	if resp.StatusCode != http.StatusCreated {
		return res, fmt.Errorf("import: %s: %s", resp.Status, answer)
	}
	var a struct {
		Recipients int64 `json:"recipients"`
	}
	if err := json.Unmarshal(answer, &a); err != nil {
		return res, fmt.Errorf("import answer %q: %w", answer, err)
	}
	cpu1, err := cpu()
	if err != nil {
		return res, err
	}
	res.CPU = cpu1 - cpu0
	if res.PeakAfter, err = status("VmHWM"); err != nil {
		return res, err
	}
	res.Rows, res.Bytes, res.Recipients = rows, body.n, a.Recipients
	if a.Recipients != int64(rows) {
		return res, fmt.Errorf("import: %d recipients stored, want %d", a.Recipients, rows)
	}
	return res, nil
}

// waitAdmin polls url with token until it answers 200, for at most a
// minute from now; it gives up early when c exits.
func waitAdmin(ctx context.Context, c *child, url, token string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no 200 from %s: %w", url, ctx.Err())
		case <-c.exited:
			return errors.New("exited before the admin API answered")
		case <-tick.C:
		}
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
