package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopTimeout is how long a child gets to exit after SIGTERM before it is
// killed. pushd's own shutdown deadline defaults to 20s.
const stopTimeout = 60 * time.Second

// child is a process pushbench started (pushsim or pushd), with the tail of
// its output for error messages.
type child struct {
	name    string
	cmd     *exec.Cmd
	started time.Time // just before the process was started
	out     *tail
	exited  chan struct{} // closed when the process has exited
	err     error         // Wait's result, set before exited is closed
	stop    func() error
}

// startChild starts path with args and env added to pushbench's
// environment. The child is killed if pushbench dies (Pdeathsig). lines,
// when not nil, receives each line the child writes to stdout.
func startChild(name, path string, args, env []string, lines func(string)) (*child, error) {
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	// A process group of its own keeps the terminal's ^C away from the
	// child: pushbench stops its children itself, in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	c := &child{name: name, cmd: cmd, out: &tail{max: 64 << 10}, exited: make(chan struct{})}
	cmd.Stderr = c.out
	var pw *io.PipeWriter
	if lines != nil {
		var pr *io.PipeReader
		pr, pw = io.Pipe()
		cmd.Stdout = io.MultiWriter(c.out, pw)
		go func() {
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				lines(sc.Text())
			}
			_, _ = io.Copy(io.Discard, pr)
		}()
	} else {
		cmd.Stdout = c.out
	}
	c.started = time.Now()
	if err := cmd.Start(); err != nil {
		if pw != nil {
			pw.Close()
		}
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		c.err = cmd.Wait()
		if pw != nil {
			pw.Close()
		}
		close(c.exited)
	}()
	c.stop = sync.OnceValue(func() error {
		select {
		case <-c.exited:
			return c.exitError("exited early")
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
			return c.exitError("exited on SIGTERM")
		case <-time.After(stopTimeout):
			_ = cmd.Process.Kill()
			<-c.exited
			return fmt.Errorf("%s did not exit within %v of SIGTERM; killed%s", name, stopTimeout, c.out.excerpt())
		}
	})
	return c, nil
}

// pid is the child's process id.
func (c *child) pid() int { return c.cmd.Process.Pid }

// exitError describes how the child ended; nil for status 0.
func (c *child) exitError(how string) error {
	if c.err == nil {
		return nil
	}
	return fmt.Errorf("%s %s: %w%s", c.name, how, c.err, c.out.excerpt())
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// excerpt returns the last lines written, indented, for an error message;
// "" when there are none.
func (t *tail) excerpt() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := bytes.TrimSpace(t.buf)
	if len(b) == 0 {
		return ""
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return "\n\t" + strings.Join(lines, "\n\t")
}

// simulator is the pushsim process shared by every round.
type simulator struct {
	*child
	url    string
	caFile string
}

// startSimulator runs pushsim on a free loopback port, writing its CA to
// dir, and waits until it announces its URL.
func startSimulator(ctx context.Context, path, dir string, latency time.Duration) (*simulator, error) {
	caFile := dir + "/sim-ca.pem"
	urls := make(chan string, 1)
	c, err := startChild("pushsim", path, []string{
		"-addr", "127.0.0.1:0",
		"-ca-out", caFile,
		"-track-tokens=false",
		"-latency", latency.String(),
		"-log-level", "warn",
	}, nil, func(line string) {
		if u, ok := strings.CutPrefix(line, "pushsim listening on "); ok {
			select {
			case urls <- strings.TrimSpace(u):
			default:
			}
		}
	})
	if err != nil {
		return nil, err
	}
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case u := <-urls:
		return &simulator{child: c, url: u, caFile: caFile}, nil
	case <-c.exited:
		return nil, c.exitError("exited at start")
	case <-timer.C:
		err = errors.New("pushsim did not announce its URL within 30s")
	case <-ctx.Done():
		err = context.Cause(ctx)
	}
	return nil, errors.Join(err, c.stop())
}
