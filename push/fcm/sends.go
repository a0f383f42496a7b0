//lint:file-ignore SA1019 http2.Transport is deprecated in favour of net/http's Transport, on purpose kept here: see sendTransport.

package fcm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"

	"golang.org/x/net/http2"

	"github.com/pushd/pushd/push"
)

// sendTransport carries the sends to an https endpoint. It sends over
// golang.org/x/net/http2.Transport, whose connections coalesce the frames of
// concurrent requests (push.CoalesceWrites): net/http's transport cannot
// take such a connection (it negotiates HTTP/2 only on a *tls.Conn). A
// server that does not negotiate HTTP/2 (a stand-in speaking only HTTP/1.1)
// is sent to through net/http's transport (base) from then on.
//
// The access tokens are fetched through base in all cases, and so are the
// sends when a proxy is configured for the endpoint (http2.Transport does
// not go through proxies).
type sendTransport struct {
	h2   *http2.Transport
	base *http.Transport
	// noH2 is set once the server refused HTTP/2.
	noH2 atomic.Bool
}

// newSendTransport returns the transport of the sends to endpoint: base
// itself for an http:// endpoint or when a proxy is configured for it,
// else a sendTransport.
func newSendTransport(endpoint string, roots *x509.CertPool, base *http.Transport) push.Transport {
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme != "https" {
		return base
	}
	if proxy, err := base.Proxy(&http.Request{URL: u}); err != nil || proxy != nil {
		return base
	}
	dialer := &net.Dialer{Timeout: dialTimeout, KeepAlive: tcpKeepAlive}
	tr := &http2.Transport{
		// http/1.1 is offered too, so that a server without HTTP/2
		// completes the handshake and is told apart (push.ErrNoHTTP2).
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12, NextProtos: []string{http2.NextProtoTLS, "http/1.1"}},
		ReadIdleTimeout: sendPingTimeout,
		PingTimeout:     pingTimeout,
		IdleConnTimeout: idleConnTimeout,
		// Open another connection when one is at the server's stream
		// limit, rather than queueing behind it. The requests waiting for
		// a connection share one dial.
		StrictMaxConcurrentStreams: false,
	}
	tr.DialTLSContext = func(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
		conn, err := push.DialHTTP2(ctx, dialer, network, addr, cfg)
		if err != nil {
			return nil, fmt.Errorf("fcm: %w", err)
		}
		return conn, nil
	}
	return &sendTransport{h2: tr, base: base}
}

// RoundTrip implements http.RoundTripper.
func (t *sendTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.noH2.Load() {
		resp, err := t.h2.RoundTrip(req)
		if !errors.Is(err, push.ErrNoHTTP2) {
			return resp, err
		}
		// Nothing of req was sent: the dial stopped at the TLS handshake.
		t.noH2.Store(true)
	}
	return t.base.RoundTrip(req)
}

// CloseIdleConnections closes the idle connections of both transports.
func (t *sendTransport) CloseIdleConnections() {
	t.h2.CloseIdleConnections()
	t.base.CloseIdleConnections()
}
