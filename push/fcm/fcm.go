// Package fcm sends pushd notifications to Firebase Cloud Messaging through
// its HTTP v1 API, with the official client (firebase.google.com/go/v4
// messaging).
//
// A Sender owns the HTTP transport (TLS roots, connection pool, HTTP/2 health
// checks) and the OAuth 2 token source of a service account. Prepare renders a
// notification into a messaging.Message template once per batch; the returned
// dispatcher.Message sends a copy of it to each Android recipient, one HTTP
// request per send, and classifies the answer into a dispatcher.Result.
//
// The package does not retry: the firebase client's own retries are switched
// off (see oneAttempt) because the dispatcher owns retries and must not have a
// sender goroutine sleep. It never logs registration tokens or credentials.
package fcm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/messaging"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/option"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/push"
)

// Defaults applied by New to zero Config fields.
const (
	// DefaultEndpoint is the FCM HTTP v1 base URL.
	DefaultEndpoint = "https://fcm.googleapis.com/v1"
	// DefaultConcurrency is the expected number of parallel sends.
	DefaultConcurrency = 256
	// DefaultTimeout bounds each send.
	DefaultTimeout = 10 * time.Second
)

// messagingScope is the OAuth 2 scope FCM HTTP v1 requires.
const messagingScope = "https://www.googleapis.com/auth/firebase.messaging"

// Transport tuning.
const (
	dialTimeout         = 10 * time.Second
	tcpKeepAlive        = 30 * time.Second
	tlsHandshakeTimeout = 10 * time.Second
	idleConnTimeout     = 90 * time.Second
	// HTTP/2 health check: ping a connection silent for 15 s, drop it if
	// the ping is not answered within 5 s.
	sendPingTimeout = 15 * time.Second
	pingTimeout     = 5 * time.Second
	// maxDialsInFlight bounds the TLS connections dialed at once (see
	// newBaseTransport).
	maxDialsInFlight = 8
)

// Config is the FCM part of the pushd configuration.
type Config struct {
	// Endpoint is the base URL of the FCM v1 API, /v1 included (added to a
	// URL with no path). Default
	// https://fcm.googleapis.com/v1; a stand-in may be
	// https://127.0.0.1:8443/v1 or, in clear text (HTTP/1.1),
	// http://127.0.0.1:9000/v1.
	Endpoint string
	// CredentialsFile is the path of a service-account JSON key. Empty
	// means no authentication, for simulators and stand-ins only. The
	// key's token_uri is reached through the same transport, so a local
	// stand-in for it is trusted with RootCAs too.
	CredentialsFile string
	// ProjectID is the Firebase project. Default: the project_id of the
	// credentials file; required without one.
	ProjectID string
	// RootCAs verifies the servers' certificates; nil means the system
	// roots.
	RootCAs *x509.CertPool
	// Concurrency is the expected number of parallel sends; it sizes the
	// idle connection pool. Default 256.
	Concurrency int
	// Timeout bounds each send. Default 10s.
	Timeout time.Duration
}

// Validate reports the first problem with the configuration, naming the
// field. It does not read any file.
func (c *Config) Validate() error {
	if _, err := parseEndpoint(c.Endpoint); err != nil {
		return err
	}
	if c.CredentialsFile == "" && c.ProjectID == "" {
		return errors.New("fcm: project_id is required when no credentials_file is given")
	}
	if c.Concurrency < 0 {
		return fmt.Errorf("fcm: concurrency must be 0 (default %d) or more, got %d", DefaultConcurrency, c.Concurrency)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("fcm: timeout must be 0 (default %s) or more, got %s", DefaultTimeout, c.Timeout)
	}
	return nil
}

// parseEndpoint checks the endpoint and returns it without a trailing slash
// (the client appends /projects/<id>/messages:send). A bare host
// ("http://127.0.0.1:9000") gets the API version path "/v1", as Google's
// own base URL has it.
func parseEndpoint(endpoint string) (string, error) {
	if endpoint == "" {
		return DefaultEndpoint, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", fmt.Errorf("fcm: endpoint %q: %w", endpoint, err)
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return "", fmt.Errorf("fcm: endpoint %q: scheme must be https or http", endpoint)
	case u.Host == "":
		return "", fmt.Errorf("fcm: endpoint %q: no host name", endpoint)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return "", fmt.Errorf("fcm: endpoint %q: must be a plain base URL", endpoint)
	}
	if strings.Trim(u.Path, "/") == "" {
		return strings.TrimRight(endpoint, "/") + "/v1", nil
	}
	return strings.TrimRight(endpoint, "/"), nil
}

// Sender sends notifications to FCM. It is safe for concurrent use.
type Sender struct {
	client *messaging.Client
	// sends carries the sends (see newSendTransport).
	sends push.Transport
	// deadlines gives each send its context with the configured timeout.
	deadlines push.Deadlines
}

var _ dispatcher.Provider = (*Sender)(nil)

// New reads the credentials file, if any, and builds the firebase messaging
// client on pushd's own transport. It does not connect: the first send (or
// token refresh) does. ctx is used only during New; later token refreshes do
// not depend on it being alive.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Sender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	endpoint, _ := parseEndpoint(cfg.Endpoint)
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}

	base := newBaseTransport(cfg.RootCAs, cfg.Concurrency, strings.HasPrefix(endpoint, "https://"))
	sends := newSendTransport(endpoint, cfg.RootCAs, base)
	var rt http.RoundTripper = sends
	projectID, auth := cfg.ProjectID, "none"
	if cfg.CredentialsFile != "" {
		data, err := os.ReadFile(cfg.CredentialsFile)
		if err != nil {
			return nil, fmt.Errorf("fcm: read credentials_file: %w", err)
		}
		if err := checkServiceAccount(data); err != nil {
			return nil, fmt.Errorf("fcm: credentials_file %q: %w", cfg.CredentialsFile, err)
		}
		// The token source keeps this context for every later refresh:
		// detach it from ctx's cancellation, and make it carry a client
		// on our transport, so the token endpoint is reached with our
		// roots and pool. A refresh does not see the sends' contexts
		// (oauth2.TokenSource.Token takes none) and holds every send
		// meanwhile, so it gets the per-send timeout of its own.
		tokenCtx := context.WithValue(context.WithoutCancel(ctx), oauth2.HTTPClient,
			&http.Client{Transport: base, Timeout: cfg.Timeout})
		creds, err := google.CredentialsFromJSONWithType(tokenCtx, data, google.ServiceAccount, messagingScope)
		if err != nil {
			return nil, fmt.Errorf("fcm: credentials_file %q: %w", cfg.CredentialsFile, err)
		}
		if projectID == "" {
			projectID = creds.ProjectID
		}
		if projectID == "" {
			return nil, fmt.Errorf("fcm: credentials_file %q has no project_id; set project_id", cfg.CredentialsFile)
		}
		rt = &oauth2.Transport{Source: oauth2.ReuseTokenSource(nil, creds.TokenSource), Base: sends}
		auth = "service_account"
	}
	hc := &http.Client{Transport: &oneAttempt{next: rt}}

	// The project id is always given, so firebase never goes looking for
	// default credentials or environment variables. With WithHTTPClient,
	// google.golang.org/api/transport/http.NewClient returns hc as is
	// (no credentials of its own) together with the WithEndpoint URL,
	// which, holding "://", is used verbatim.
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: projectID},
		option.WithHTTPClient(hc), option.WithEndpoint(endpoint))
	if err != nil {
		return nil, fmt.Errorf("fcm: firebase app: %w", err)
	}
	client, err := app.Messaging(ctx)
	if err != nil {
		return nil, fmt.Errorf("fcm: messaging client: %w", err)
	}
	logger.Info("fcm sender ready", "endpoint", endpoint, "project_id", projectID, "auth", auth,
		"concurrency", cfg.Concurrency, "timeout", cfg.Timeout)
	if auth == "none" {
		logger.Warn("fcm sender has no credentials; only a stand-in will accept its sends", "endpoint", endpoint)
	}
	return &Sender{client: client, sends: sends, deadlines: push.Deadlines{Timeout: cfg.Timeout}}, nil
}

// checkServiceAccount checks, without any network call, what the token
// source would only find out at the first send: that the key is a service
// account's with a usable private key. Its errors never quote the key.
func checkServiceAccount(data []byte) error {
	var sa struct {
		Type        string `json:"type"`
		ClientEmail string `json:"client_email"`
		PrivateKey  string `json:"private_key"`
	}
	if err := json.Unmarshal(data, &sa); err != nil {
		return fmt.Errorf("not a service-account JSON key: %w", err)
	}
	switch {
	case sa.Type != "service_account":
		return fmt.Errorf("type is %q, want \"service_account\"", sa.Type)
	case sa.ClientEmail == "":
		return errors.New("client_email is missing")
	}
	block, _ := pem.Decode([]byte(sa.PrivateKey))
	if block == nil {
		return errors.New("private_key is not a PEM block")
	}
	if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
		if _, err1 := x509.ParsePKCS1PrivateKey(block.Bytes); err1 != nil {
			return fmt.Errorf("private_key does not parse: %w", err)
		}
	}
	return nil
}

// newBaseTransport returns net/http's transport, which fetches the access
// tokens and carries the sends that sendTransport does not (http://
// endpoints, servers that do not negotiate HTTP/2, endpoints reached
// through a proxy): HTTP/2 over TLS when the server offers it (one
// connection carries many sends, with ping health checks), HTTP/1.1
// otherwise, with an idle pool sized for concurrency parallel sends.
//
// For a TLS endpoint, MaxConnsPerHost bounds the connections being dialed at
// once. Without it, net/http dials one connection per request waiting on a
// cold pool (hundreds of TLS handshakes when a burst of sends starts, all
// but one thrown away). For HTTP/2 it does not bound the connections in use:
// net/http still opens more as the open ones reach the server's stream
// limit. An https server speaking only HTTP/1.1 is, however, limited to
// that many parallel sends; http:// endpoints (always HTTP/1.1) are not.
func newBaseTransport(roots *x509.CertPool, concurrency int, useTLS bool) *http.Transport {
	dialer := &net.Dialer{Timeout: dialTimeout, KeepAlive: tcpKeepAlive}
	t := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   tlsHandshakeTimeout,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          concurrency,
		MaxIdleConnsPerHost:   concurrency,
		IdleConnTimeout:       idleConnTimeout,
		ExpectContinueTimeout: time.Second,
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: sendPingTimeout,
			PingTimeout:     pingTimeout,
		},
	}
	if useTLS {
		t.MaxConnsPerHost = maxDialsInFlight
	}
	return t
}

// Close closes the idle connections. Sends still in flight finish. Calling
// Close twice is harmless.
func (s *Sender) Close() {
	s.sends.CloseIdleConnections()
}
