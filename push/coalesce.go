package push

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Coalescing limits.
const (
	// maxPending is how many bytes a coalescing connection holds before
	// its writers wait for the flusher: several HTTP/2 frames of the
	// largest size, a few hundred requests of a push service.
	maxPending = 256 << 10
	// closeFlushTimeout bounds how long Close waits for the bytes written
	// before it (a GOAWAY, the last frames) to reach the network.
	closeFlushTimeout = time.Second
)

// CoalesceWrites wraps the connection of an HTTP/2 client so that the
// frames of concurrent requests leave in as few TLS records and system
// calls as the network allows, each written by one long-lived goroutine.
//
// An HTTP/2 client writes every request in two flushes (its HEADERS, then
// its DATA), each a TLS record, an AES-GCM seal and a write system call,
// made from a goroutine the client starts for that request. At tens of
// thousands of pushes a second this is most of a sender's CPU time, and
// the request's goroutine also grows its stack to seal the record (a copy
// of its stack for every push). The coalescing connection's Write only
// copies the bytes into a buffer; its flusher goroutine writes everything
// buffered at once, so the frames written while it was writing the last
// batch share one record and one system call.
//
// Write returns once the bytes are buffered, as a kernel socket buffer
// does. An error from the network is returned by every later Write, and
// closes the underlying connection, so that the client's reader fails its
// requests in flight, as it does when the server goes away. Writers wait
// while maxPending bytes are not yet flushed. Close flushes what was
// written before it (up to closeFlushTimeout), then closes the connection.
//
// The connection returned for a *tls.Conn has its ConnectionState, which
// HTTP/2 clients read; the one for another connection has none.
func CoalesceWrites(conn net.Conn) net.Conn {
	c := &coalescingConn{Conn: conn, flushed: make(chan struct{})}
	c.work.L = &c.mu
	c.room.L = &c.mu
	go c.flush()
	if tc, ok := conn.(*tls.Conn); ok {
		return coalescingTLSConn{c, tc}
	}
	return c
}

// onWriterWait, when set (by tests), is called as a writer starts waiting
// for room.
var onWriterWait func()

// coalescingConn is the connection CoalesceWrites returns.
type coalescingConn struct {
	net.Conn

	mu      sync.Mutex
	work    sync.Cond // the flusher waits for bytes or close
	room    sync.Cond // writers wait for the pending bytes to be taken
	pending []byte
	err     error // the first write error; sticky
	closing bool
	flushed chan struct{} // closed when the flusher returned
}

// Write buffers p for the flusher.
func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.pending) >= maxPending && c.err == nil && !c.closing {
		if onWriterWait != nil {
			onWriterWait()
		}
		c.room.Wait()
	}
	switch {
	case c.err != nil:
		return 0, c.err
	case c.closing:
		return 0, net.ErrClosed
	}
	if len(c.pending) == 0 {
		c.work.Signal()
	}
	c.pending = append(c.pending, p...)
	return len(p), nil
}

// flush writes what is pending, all of it at a time, until the connection
// is closed or a write fails.
func (c *coalescingConn) flush() {
	defer close(c.flushed)
	var out []byte
	for {
		c.mu.Lock()
		for len(c.pending) == 0 && !c.closing {
			c.work.Wait()
		}
		if len(c.pending) == 0 {
			c.mu.Unlock()
			return
		}
		out, c.pending = c.pending, out[:0]
		c.room.Broadcast()
		c.mu.Unlock()
		if _, err := c.Conn.Write(out); err != nil {
			c.mu.Lock()
			c.err = err
			c.pending = nil
			c.room.Broadcast()
			c.mu.Unlock()
			c.Conn.Close()
			return
		}
	}
}

// Close flushes the bytes written so far, for at most closeFlushTimeout,
// and closes the connection.
func (c *coalescingConn) Close() error {
	c.mu.Lock()
	already := c.closing
	c.closing = true
	c.work.Signal()
	c.room.Broadcast()
	c.mu.Unlock()
	if !already {
		c.Conn.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
	}
	<-c.flushed // a second Close does not cut the first one's flush short
	return c.Conn.Close()
}

// coalescingTLSConn is a coalescing connection over a TLS connection: it
// has the TLS connection's state, as HTTP/2 clients expect of one.
type coalescingTLSConn struct {
	*coalescingConn
	tls *tls.Conn
}

// ConnectionState returns the state of the TLS connection.
func (c coalescingTLSConn) ConnectionState() tls.ConnectionState { return c.tls.ConnectionState() }

// ErrNoHTTP2 is returned by DialHTTP2 when the server did not negotiate
// HTTP/2.
var ErrNoHTTP2 = errors.New("server does not speak HTTP/2")

// DialHTTP2 dials addr over TLS with cfg (whose NextProtos must offer
// "h2"), checks that the server agreed to HTTP/2, and returns the
// connection with its writes coalesced (CoalesceWrites), for an HTTP/2
// client. A server that did not agree is hung up on, with an error that
// wraps ErrNoHTTP2.
func DialHTTP2(ctx context.Context, d *net.Dialer, network, addr string, cfg *tls.Config) (net.Conn, error) {
	td := tls.Dialer{NetDialer: d, Config: cfg}
	conn, err := td.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if p := conn.(*tls.Conn).ConnectionState().NegotiatedProtocol; p != "h2" {
		conn.Close()
		return nil, fmt.Errorf("%s (ALPN %q): %w", addr, p, ErrNoHTTP2)
	}
	return CoalesceWrites(conn), nil
}
