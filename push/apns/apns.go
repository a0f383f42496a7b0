// Package apns sends pushd notifications to the Apple Push Notification
// service (APNs) over HTTP/2, with github.com/sideshow/apns2's provider
// tokens, certificates, notification and answer types.
//
// A Sender holds a few long-lived HTTP/2 connections (one HTTP/2 transport
// each, used round-robin) and authenticates with a .p8 signing key (token
// auth, apns2/token) or a client certificate (apns2/certificate). Prepare
// renders a notification once per batch: its payload, and the request
// headers all its pushes share. The returned dispatcher.Message is then sent
// to each iOS recipient and every answer is classified into a
// dispatcher.Result.
//
// Each push is the request apns2's Client.Push sends, byte for byte
// (TestRequestIsApns2s checks it), handed straight to the HTTP/2 transport:
// not built again for each push by apns2 and copied by net/http's Client,
// which is a fifth of the cost of a push in a bare apns2 client
// (docs/benchmarks.md).
//
// The package does not retry, throttle or keep any state about recipients:
// the dispatcher owns those decisions. It never logs device tokens or key
// material.
package apns

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sideshow/apns2/certificate"
	"github.com/sideshow/apns2/token"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/push"
)

// Defaults applied by New to zero Config fields.
const (
	// DefaultConnections is the number of HTTP/2 connections when
	// Config.Connections is 0.
	DefaultConnections = 2
	// DefaultTimeout is the per-push timeout when Config.Timeout is 0.
	DefaultTimeout = 10 * time.Second
)

// Config is the APNs part of the pushd configuration.
type Config struct {
	// Host is the base URL of the APNs API: https://api.push.apple.com
	// (production), https://api.sandbox.push.apple.com (sandbox), or any
	// stand-in such as https://127.0.0.1:8443. An http:// URL speaks HTTP/2
	// in clear text (h2c, prior knowledge), for local stand-ins only.
	// Required.
	Host string
	// KeyFile, KeyID and TeamID select token authentication: the path of
	// the .p8 signing key from Apple, its key id and the developer team id.
	// Give all three or none.
	KeyFile string
	KeyID   string
	TeamID  string
	// CertFile selects certificate authentication: a .p12 file, or a PEM
	// file holding both the certificate and its private key.
	// CertPassword decrypts it (empty when not encrypted).
	CertFile     string
	CertPassword string
	// Topic is the apns-topic (usually the app's bundle id) used when a
	// notification does not name one. Required with token authentication
	// unless every notification carries its own topic.
	Topic string
	// RootCAs verifies the server certificate; nil means the system roots
	// (so SSL_CERT_FILE and SSL_CERT_DIR work).
	RootCAs *x509.CertPool
	// Connections is the number of HTTP/2 connections used round-robin.
	// Default 2.
	Connections int
	// Timeout bounds each push, connection set-up included. Default 10s.
	Timeout time.Duration
}

// Validate reports the first problem with the configuration, naming the
// field. It does not read any file.
func (c *Config) Validate() error {
	if _, _, err := parseHost(c.Host); err != nil {
		return err
	}
	token := c.KeyFile != "" || c.KeyID != "" || c.TeamID != ""
	if token && (c.KeyFile == "" || c.KeyID == "" || c.TeamID == "") {
		return errors.New("apns: key_file, key_id and team_id go together: give all three or none")
	}
	if token && c.CertFile != "" {
		return errors.New("apns: give either key_file (token auth) or cert_file (certificate auth), not both")
	}
	if c.Connections < 0 {
		return fmt.Errorf("apns: connections must be 0 (default %d) or more, got %d", DefaultConnections, c.Connections)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("apns: timeout must be 0 (default %s) or more, got %s", DefaultTimeout, c.Timeout)
	}
	return nil
}

// parseHost checks an APNs base URL and reports whether it is clear-text
// HTTP/2 (h2c). It returns the URL without a trailing slash, as apns2 appends
// "/3/device/<token>" to it.
func parseHost(host string) (base string, h2c bool, err error) {
	if host == "" {
		return "", false, errors.New("apns: host is required (e.g. https://api.push.apple.com)")
	}
	u, err := url.Parse(host)
	if err != nil {
		return "", false, fmt.Errorf("apns: host %q: %w", host, err)
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return "", false, fmt.Errorf("apns: host %q: scheme must be https or http", host)
	case u.Host == "":
		return "", false, fmt.Errorf("apns: host %q: no host name", host)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return "", false, fmt.Errorf("apns: host %q: must be a plain base URL", host)
	}
	return strings.TrimRight(host, "/"), u.Scheme == "http", nil
}

// Sender sends notifications to APNs. It is safe for concurrent use.
type Sender struct {
	tok *token.Token // nil with certificate auth
	// base is the host URL; a push goes to base.Path+"/3/device/<token>".
	base *url.URL
	// conns are the HTTP/2 transports, one connection each.
	conns     []push.Transport
	next      atomic.Uint64
	topic     string
	needTopic bool
	// deadlines gives each push its context with the configured timeout.
	deadlines push.Deadlines
}

var _ dispatcher.Provider = (*Sender)(nil)

// New loads the credentials named in cfg and builds the HTTP/2 clients. It
// does not connect: connections are opened by the first pushes. Errors name
// the problem (unreadable key file, wrong password...) without printing key
// material.
func New(cfg Config, logger *slog.Logger) (*Sender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	host, h2c, _ := parseHost(cfg.Host)
	if cfg.Connections == 0 {
		cfg.Connections = DefaultConnections
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}

	var (
		tok  *token.Token
		cert tls.Certificate
		auth = "none"
	)
	switch {
	case cfg.KeyFile != "":
		key, err := token.AuthKeyFromFile(cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("apns: load key_file %q: %w", cfg.KeyFile, err)
		}
		// One token shared by every connection. apns2 signs it on first
		// use and again once it is TokenTimeout (3000 s = 50 min) old
		// (token.Token.Expired): inside Apple's rule that a provider
		// token be refreshed no more often than every 20 minutes
		// (TooManyProviderTokenUpdates) and be no older than 60 minutes
		// (ExpiredProviderToken). Sharing it keeps it one token, not one
		// per connection. Should APNs call it expired sooner, renewToken
		// drops it once it is 20 minutes old.
		tok = &token.Token{AuthKey: key, KeyID: cfg.KeyID, TeamID: cfg.TeamID}
		if _, err := tok.Generate(); err != nil {
			return nil, fmt.Errorf("apns: sign provider token with key_file %q: %w", cfg.KeyFile, err)
		}
		auth = "token"
	case cfg.CertFile != "":
		var err error
		if strings.HasSuffix(strings.ToLower(cfg.CertFile), ".p12") {
			cert, err = certificate.FromP12File(cfg.CertFile, cfg.CertPassword)
		} else {
			cert, err = certificate.FromPemFile(cfg.CertFile, cfg.CertPassword)
		}
		if err != nil {
			return nil, fmt.Errorf("apns: load cert_file %q: %w", cfg.CertFile, err)
		}
		auth = "certificate"
	}

	base, err := url.Parse(host)
	if err != nil {
		return nil, err // parseHost parsed it already
	}
	s := &Sender{
		tok:       tok,
		base:      base,
		topic:     cfg.Topic,
		needTopic: tok != nil,
		deadlines: push.Deadlines{Timeout: cfg.Timeout},
	}
	for range cfg.Connections {
		s.conns = append(s.conns, newTransport(cfg.RootCAs, cert, h2c))
	}
	logger.Info("apns sender ready", "host", host, "auth", auth, "connections", cfg.Connections, "timeout", cfg.Timeout)
	if auth == "none" {
		logger.Warn("apns sender has no credentials; only a stand-in will accept its pushes", "host", host)
	}
	return s, nil
}

// minTokenAge is Apple's limit on provider token updates: a token
// replaced sooner draws 429 TooManyProviderTokenUpdates.
const minTokenAge = 20 * time.Minute

// renewToken makes the next push sign a new provider token, after APNs
// answered 403 ExpiredProviderToken although apns2 (which renews at 50
// minutes) still holds it valid: the clocks disagree, or Apple revoked
// it. Apple's 20-minute minimum still holds: a younger token is kept, and
// the pushes are retried later. It reports whether the token was dropped.
func (s *Sender) renewToken() bool {
	if s.tok == nil {
		return false
	}
	s.tok.Lock()
	defer s.tok.Unlock()
	if time.Since(time.Unix(s.tok.IssuedAt, 0)) < minTokenAge {
		return false
	}
	s.tok.IssuedAt = 0 // Expired: GenerateIfExpired signs a new one
	return true
}

// conn returns the next connection's transport, round-robin.
func (s *Sender) conn() push.Transport {
	return s.conns[(s.next.Add(1)-1)%uint64(len(s.conns))]
}

// Close closes the idle connections. Pushes still in flight finish; later
// pushes would open new connections. Calling Close twice is harmless.
func (s *Sender) Close() {
	for _, c := range s.conns {
		c.CloseIdleConnections()
	}
}
