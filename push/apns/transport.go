//lint:file-ignore SA1019 http2.Transport is deprecated in favour of net/http's Transport, on purpose kept here: see newTransport.

package apns

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"time"

	"golang.org/x/net/http2"

	"github.com/pushd/pushd/push"
)

// Connection tuning. The ping settings make a connection that silently died
// (NAT timeout, half-open TCP) fail within readIdleTimeout+pingTimeout
// instead of swallowing pushes until their timeout.
const (
	dialTimeout     = 10 * time.Second
	tcpKeepAlive    = 15 * time.Second
	readIdleTimeout = 15 * time.Second
	pingTimeout     = 5 * time.Second
)

// newTransport returns the HTTP/2 transport of one apns2 client: TLS with our
// roots (and client certificate), or clear-text HTTP/2 (h2c, prior knowledge)
// for an http:// stand-in.
//
// It is golang.org/x/net/http2.Transport, as in apns2 itself and in the bare
// client pushd is measured against, although x/net now deprecates it in
// favour of net/http's Transport: net/http starts one dial for every request
// waiting on a cold pool (hundreds of TLS handshakes at start-up, which Apple
// treats as abuse), while http2.Transport makes the waiting requests share a
// single dial. Its connections coalesce the frames of concurrent pushes
// into as few TLS records and writes as the network allows
// (push.CoalesceWrites).
func newTransport(roots *x509.CertPool, cert tls.Certificate, h2c bool) push.Transport {
	dialer := &net.Dialer{Timeout: dialTimeout, KeepAlive: tcpKeepAlive}
	tlsConf := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if len(cert.Certificate) > 0 {
		tlsConf.Certificates = []tls.Certificate{cert}
	}
	tr := &http2.Transport{
		TLSClientConfig: tlsConf,
		ReadIdleTimeout: readIdleTimeout,
		PingTimeout:     pingTimeout,
		// Open another connection when one is at the server's stream
		// limit, rather than queueing behind it.
		StrictMaxConcurrentStreams: false,
	}
	if h2c {
		tr.AllowHTTP = true
		tr.DialTLSContext = func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			conn, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return push.CoalesceWrites(conn), nil
		}
		return tr
	}
	tr.DialTLSContext = func(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
		conn, err := push.DialHTTP2(ctx, dialer, network, addr, cfg)
		if err != nil {
			return nil, fmt.Errorf("apns: %w", err)
		}
		return conn, nil
	}
	return tr
}
