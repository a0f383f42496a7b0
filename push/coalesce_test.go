package push

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// gateConn is the network under a coalescing connection: each Write
// reports that it began on entered and waits for a value on release (or a
// write deadline), then records its bytes or fails with fail.
type gateConn struct {
	net.Conn // nil: only the methods below are used

	entered chan struct{}
	release chan struct{}
	fail    error

	mu       sync.Mutex
	writes   []string
	deadline chan struct{} // closed by SetWriteDeadline
	closed   chan struct{}
}

func newGateConn() *gateConn {
	return &gateConn{
		entered:  make(chan struct{}, 16),
		release:  make(chan struct{}, 16),
		deadline: make(chan struct{}),
		closed:   make(chan struct{}),
	}
}

func (g *gateConn) Write(p []byte) (int, error) {
	g.entered <- struct{}{}
	select {
	case <-g.release: // a release given before the deadline wins
	default:
		select {
		case <-g.release:
		case <-g.deadline:
			return 0, os.ErrDeadlineExceeded
		}
	}
	if g.fail != nil {
		return 0, g.fail
	}
	g.mu.Lock()
	g.writes = append(g.writes, string(p))
	g.mu.Unlock()
	return len(p), nil
}

func (g *gateConn) SetWriteDeadline(time.Time) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.deadline:
	default:
		close(g.deadline)
	}
	return nil
}

func (g *gateConn) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.closed:
	default:
		close(g.closed)
	}
	return nil
}

func (g *gateConn) written() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.writes...)
}

func mustWrite(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if n, err := c.Write([]byte(s)); n != len(s) || err != nil {
		t.Fatalf("Write(%q) = %d, %v", s, n, err)
	}
}

// TestCoalesceWritesJoinsWrites checks that what is written while the
// network is busy leaves in one write, in order.
func TestCoalesceWritesJoinsWrites(t *testing.T) {
	g := newGateConn()
	c := CoalesceWrites(g)
	mustWrite(t, c, "a")
	<-g.entered // the flusher is writing "a"
	for _, s := range []string{"b", "cc", "ddd"} {
		mustWrite(t, c, s) // returns at once: buffered
	}
	g.release <- struct{}{}
	<-g.entered
	g.release <- struct{}{}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := g.written(), []string{"a", "bccddd"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("network writes %q, want %q", got, want)
	}
}

// TestCoalesceWritesKeepsEachWriteWhole writes records from many
// goroutines through a real connection and checks that every record
// arrives whole, each goroutine's in its order.
func TestCoalesceWritesKeepsEachWriteWhole(t *testing.T) {
	client, server := net.Pipe()
	c := CoalesceWrites(client)
	const writers, records = 32, 200
	read := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(server)
		read <- b
	}()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range records {
				rec := fmt.Sprintf("<%02d:%04d>", w, i)
				if _, err := c.Write([]byte(rec)); err != nil {
					t.Errorf("Write: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	got := <-read
	next := make([]int, writers)
	n := 0
	for rec := range strings.SplitSeq(strings.TrimSuffix(strings.TrimPrefix(string(got), "<"), ">"), "><") {
		var w, i int
		if _, err := fmt.Sscanf(rec, "%02d:%04d", &w, &i); err != nil || w >= writers {
			t.Fatalf("record %q torn: %v", rec, err)
		}
		if i != next[w] {
			t.Fatalf("writer %d: record %d after %d", w, i, next[w]-1)
		}
		next[w]++
		n++
	}
	if n != writers*records {
		t.Errorf("%d records arrived, want %d", n, writers*records)
	}
}

// TestCoalesceWritesErrorIsSticky checks that a failed network write fails
// every later Write and closes the connection, so that the HTTP/2 client's
// reader fails the requests in flight.
func TestCoalesceWritesErrorIsSticky(t *testing.T) {
	g := newGateConn()
	g.fail = errors.New("connection reset by peer")
	c := CoalesceWrites(g)
	mustWrite(t, c, "a") // buffered: the failure is not known yet
	<-g.entered
	g.release <- struct{}{}
	<-g.closed
	if _, err := c.Write([]byte("b")); !errors.Is(err, g.fail) {
		t.Errorf("Write after the failure: %v, want %v", err, g.fail)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// TestCoalesceWritesCloseFlushes checks that Close sends what was written
// before it, then closes, and that Write fails after Close.
func TestCoalesceWritesCloseFlushes(t *testing.T) {
	g := newGateConn()
	c := CoalesceWrites(g)
	mustWrite(t, c, "a")
	<-g.entered
	mustWrite(t, c, "goaway")
	g.release <- struct{}{} // "a"
	g.release <- struct{}{} // what follows it
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.closed:
	default:
		t.Error("Close returned with the network connection open")
	}
	if got := strings.Join(g.written(), ""); got != "agoaway" {
		t.Errorf("network got %q, want %q", got, "agoaway")
	}
	if _, err := c.Write([]byte("late")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v, want net.ErrClosed", err)
	}
}

// TestCoalesceWritesCloseDoesNotWaitForever checks that Close returns when
// the network does not take the bytes: it sets a write deadline.
func TestCoalesceWritesCloseDoesNotWaitForever(t *testing.T) {
	g := newGateConn()
	c := CoalesceWrites(g)
	mustWrite(t, c, "stuck")
	<-g.entered // never released: only the deadline ends this write
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	<-g.closed
	if got := g.written(); len(got) != 0 {
		t.Errorf("network got %q from a write that timed out", got)
	}
}

// TestCoalesceWritesBoundsPending checks that a writer waits once
// maxPending bytes wait for the network, and goes on once they are taken.
func TestCoalesceWritesBoundsPending(t *testing.T) {
	waiting := make(chan struct{}, 1)
	onWriterWait = func() { waiting <- struct{}{} }
	t.Cleanup(func() { onWriterWait = nil })

	g := newGateConn()
	c := CoalesceWrites(g)
	mustWrite(t, c, "a")
	<-g.entered
	big := bytes.Repeat([]byte{'x'}, maxPending)
	if _, err := c.Write(big); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Write([]byte("y"))
		done <- err
	}()
	<-waiting // the last writer waits for room
	g.release <- struct{}{}
	<-g.entered // the flusher took the big write: the writer goes on
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	g.release <- struct{}{}
	<-g.entered
	g.release <- struct{}{}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	got := g.written()
	if len(got) != 3 || got[0] != "a" || len(got[1]) != maxPending || got[2] != "y" {
		lens := make([]int, len(got))
		for i, s := range got {
			lens[i] = len(s)
		}
		t.Errorf("network writes of %v bytes, want [1 %d 1]", lens, maxPending)
	}
}

// TestCoalesceWritesConnectionState checks that the TLS state of the
// wrapped connection shows through (HTTP/2 clients read it), and that a
// plain connection gets none.
func TestCoalesceWritesConnectionState(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	tc, err := tls.Dial("tcp", srv.Listener.Addr().String(), &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	c := CoalesceWrites(tc)
	defer c.Close()
	type stater interface{ ConnectionState() tls.ConnectionState }
	got := c.(stater).ConnectionState()
	if want := tc.ConnectionState(); !got.HandshakeComplete || got.Version != want.Version || got.CipherSuite != want.CipherSuite {
		t.Errorf("ConnectionState %+v, want the TLS connection's %+v", got, want)
	}

	client, server := net.Pipe()
	defer server.Close()
	plain := CoalesceWrites(client)
	defer plain.Close()
	if _, ok := plain.(stater); ok {
		t.Error("a coalescing connection over a plain one has a TLS state")
	}
}
