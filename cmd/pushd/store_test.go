package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushd/pushd/cmd/internal/synth"
	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/internal/testwait"
	"github.com/pushd/pushd/push/sim"
	"github.com/pushd/pushd/queue/queuetest"
)

// observeFor lets d pass: an observation window, for checks that something
// does not happen (no dead letter, no send) while it could.
func observeFor(t *testing.T, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	testwait.For(t, d+time.Minute, fmt.Sprintf("an observation window of %v", d), func() bool { return time.Now().After(deadline) })
}

// mustRun runs a command the test needs as root, failing loudly.
func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// fill writes zeros to a file in dir until the file system is full.
func fill(t *testing.T, dir string) (remove func()) {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", dir, err)
			}
			break
		}
	}
	// Fill the last partial blocks too.
	for _, err := f.Write(chunk[:512]); err == nil; _, err = f.Write(chunk[:512]) {
	}
	_ = f.Close()
	return func() {
		if err := os.Remove(path); err != nil {
			t.Error(err)
		}
	}
}

// TestStoreThatCannotBeWrittenNeverDeadLetters breaks pushd's store while
// it runs (its tmpfs filled to the brim, or its files made immutable) and
// publishes a batch of a new campaign: pushd must wait, report not ready
// and pushd_store_up 0, dead-letter nothing, and deliver the batch by itself
// once the store takes writes again.
func TestStoreThatCannotBeWrittenNeverDeadLetters(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test mounts a tmpfs and uses chattr: run it as root (CI does)")
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		// breakStore makes the store's files unwritable and returns the
		// repair.
		breakStore func(t *testing.T, dir string) (repair func())
	}{
		{
			name: "tmpfs full",
			setup: func(t *testing.T, dir string) {
				mustRun(t, "mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", dir)
				t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
			},
			breakStore: fill,
		},
		{
			name:  "files immutable",
			setup: func(*testing.T, string) {},
			breakStore: func(t *testing.T, dir string) func() {
				files, _ := filepath.Glob(filepath.Join(dir, "pushd.db*"))
				mustRun(t, "chattr", append([]string{"+i"}, files...)...)
				repair := func() { mustRun(t, "chattr", append([]string{"-i"}, files...)...) }
				t.Cleanup(func() { _ = exec.Command("chattr", append([]string{"-i"}, files...)...).Run() })
				return repair
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			tc.setup(t, dir)
			h := newHarness(t, sim.Config{})
			h.env["PUSHD_STORE_DSN"] = filepath.Join(dir, "pushd.db")
			d := h.spawnBinary(plainBinary, nil)
			before := h.publish(synth.Options{Campaign: "before-outage", Recipients: 200, IOSPercent: 50}, dispatcher.Normal)
			testwait.For(t, time.Minute, "the first campaign delivered", func() bool { return h.sent(before) == before.Recipients })

			repair := tc.breakStore(t, dir)
			o := h.publish(synth.Options{Campaign: "during-outage", Recipients: 300, IOSPercent: 50}, dispatcher.Normal)
			testwait.For(t, time.Minute, "pushd_store_up 0", costly(func() bool { return scrape(t, d.metrics)["pushd_store_up"] == 0 }))
			if ready(d) {
				t.Error("/readyz says ready while the store cannot be written")
			}
			// The broker would dead-letter a requeued batch within
			// milliseconds (delivery limit 10); give it seconds.
			observeFor(t, 3*time.Second)
			if n := queuetest.Ready(t, h.ch, h.top.DeadQueue); n != 0 {
				t.Fatalf("%d messages dead-lettered while the store could not be written", n)
			}
			if n := h.sent(o); n != 0 {
				t.Errorf("%d recipients of the new campaign sent without their campaign recorded", n)
			}

			repair()
			testwait.For(t, time.Minute, "pushd_store_up 1", costly(func() bool { return scrape(t, d.metrics)["pushd_store_up"] == 1 }))
			testwait.For(t, time.Minute, "ready again", costly(func() bool { return ready(d) }))
			testwait.For(t, time.Minute, "the waiting campaign delivered", func() bool { return h.sent(o) == o.Recipients })
			if dups := h.delivered(o, true); dups != 0 {
				t.Errorf("%d duplicates", dups)
			}
			if err := d.stop(); err != nil {
				t.Fatal(err)
			}
			h.lanesEmpty()
			h.deadQueueEmpty()
		})
	}
}
