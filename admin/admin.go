// Package admin serves pushd's admin API: JSON over HTTP to look at
// campaigns and to change their rate, pause, resume or cancel them, and to
// manage the blacklist and whitelist (entries, CSV import and export) and
// the audiences (stored recipient lists, imported and exported as CSV), to
// create, preview, test, schedule and approve campaigns in pushd itself
// (console campaigns), to manage the console's users, and to read the
// audit log. It also serves the operator console: server-rendered pages on
// the same operations (see console.go and docs/console.md), and the
// sign-in page: users sign in at /login and get a session cookie (sessions
// are kept in the store, so they survive a restart and work on every
// instance). Every other request needs that cookie or a bearer token from
// a tokens file (roles viewer, operator,
// admin), and every change is written to an audit trail: who, what, when,
// before and after.
//
// It is not where campaigns are controlled or lists applied: it calls the
// Control, the ListStore and the Auditor its caller passes in (the
// dispatcher and the store) and keeps no campaign or list state of its own.
package admin

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/lists"
)

// Control is what the admin module needs from the dispatcher.
//
// Errors wrapping dispatcher.ErrNotFound or dispatcher.ErrConflict are shown
// to the client as they are (404 and 409), so their text should be written
// for operators; any other error is logged and answered with a bare 500.
type Control interface {
	// Campaigns returns every campaign.
	Campaigns(ctx context.Context) ([]dispatcher.CampaignInfo, error)
	// Campaign returns one campaign.
	Campaign(ctx context.Context, id string) (dispatcher.CampaignInfo, error)
	// SetCampaignRate sets the operator's rate of a campaign (0: no
	// campaign limit); nil clears it, so the messages' rate applies again.
	SetCampaignRate(ctx context.Context, id string, perSecond *float64) (dispatcher.CampaignInfo, error)
	// PauseCampaign pauses a campaign.
	PauseCampaign(ctx context.Context, id string) (dispatcher.CampaignInfo, error)
	// ResumeCampaign resumes a paused campaign.
	ResumeCampaign(ctx context.Context, id string) (dispatcher.CampaignInfo, error)
	// CancelCampaign cancels a campaign for good.
	CancelCampaign(ctx context.Context, id string) (dispatcher.CampaignInfo, error)
	// Limits returns the global and provider buckets.
	Limits() []dispatcher.LimitInfo
	// SetLimit sets the operator's rate and burst of a level (global,
	// apns, fcm) for the whole cluster; nil goes back to the configured
	// values.
	SetLimit(ctx context.Context, level string, ls *dispatcher.LimitSetting) ([]dispatcher.LimitInfo, error)
}

// AuditEntry is one change made through the admin module.
type AuditEntry struct {
	At time.Time `json:"at"`
	// Actor is "<role>:<first 8 hex digits of the token's SHA-256>" for
	// a bearer token (never the token), "user:<name>" for a signed-in
	// user, "address:<client address>" for a failed sign-in.
	Actor string `json:"actor"`
	// Action names the change, for example "campaign.pause".
	Action string `json:"action"`
	// Target is what was changed, for example a campaign id.
	Target string `json:"target"`
	// Before and After are the target as JSON before and after the change.
	Before json.RawMessage `json:"before"`
	After  json.RawMessage `json:"after"`
}

// Auditor records changes. The store implements it.
type Auditor interface {
	Audit(ctx context.Context, e AuditEntry) error
}

// Config configures the admin module.
type Config struct {
	// TokensFile holds the bearer tokens, one ROLE:TOKEN per line (roles
	// viewer, operator, admin; blank lines and lines starting with # are
	// ignored). It is read again when it changes. Default: none, and then
	// bearer tokens are refused with 401 (and every request, unless Users
	// is set).
	TokensFile string
	// Users keeps the console's users and sessions. Default: none, and
	// then /login and /api/users answer 503.
	Users UserStore
	// SessionIdle ends a session not used for this long
	// (admin.session_idle). Default: 30 minutes.
	SessionIdle time.Duration
	// SessionMax ends a session this long after its sign-in
	// (admin.session_max). Default: 12 hours.
	SessionMax time.Duration
	// UserFailures and AddressFailures are how many failed sign-ins a user
	// name, and a client address, may have within FailureWindow of the
	// first before they are refused (429) until the window ends.
	// Defaults: 5, 20 and 15 minutes.
	UserFailures, AddressFailures int
	FailureWindow                 time.Duration
	// PasswordCost is the bcrypt cost of new password hashes. Default:
	// bcrypt.DefaultCost (10).
	PasswordCost int
	// TLS, if set, makes Run serve HTTPS with it (admin.tls_cert_file and
	// admin.tls_key_file). Session cookies are Secure over TLS.
	TLS *tls.Config
	// Metrics registers the admin module's metrics
	// (pushd_admin_auth_failures_total). Default: a registry of its own.
	Metrics prometheus.Registerer
	// MaxBodyBytes bounds request bodies, but for CSV imports
	// (MaxImportBytes). Default: 1 MiB.
	MaxBodyBytes int64
	// Lists keeps the blacklist and whitelist. Default: none, and then the
	// list routes answer 503.
	Lists ListStore
	// OnListChange, if set, is called with the list after each change made
	// through the API, before the answer, so that this instance applies it
	// at once rather than when it next polls the store. It should return
	// quickly.
	OnListChange func(lists.Name)
	// MaxImportBytes bounds the body of a CSV import. Default: 256 MiB.
	MaxImportBytes int64
	// ImportReadTimeout is how long the body of a list or audience import
	// may wait for its next bytes before the import fails (400), so that
	// a client that stops sending does not hold an import, and the list
	// import lock, for the import's whole time limit. Default: 30s.
	ImportReadTimeout time.Duration
	// Audiences keeps the audiences. Default: none, and then the audience
	// routes answer 503.
	Audiences AudienceStore
	// MaxAudienceBytes bounds the body of an audience import, which is
	// streamed (ten million recipients are about 1 GiB). Default: 2 GiB.
	MaxAudienceBytes int64
	// Now is the clock, for audit entries, tokens file checks, sessions and
	// sign-in limits. Default: time.Now.
	Now func() time.Time

	// Campaigns keeps the campaigns created in pushd. Default: none, and
	// then their routes answer 503 (the AMQP campaigns work as before).
	Campaigns CampaignDefs
	// Tests makes the test sends of console campaigns. Default: none, and
	// then POST /api/campaigns/{id}/test answers 503.
	Tests TestSender
	// RequireApproval: a scheduled campaign waits for another user's
	// approval (admin.require_approval). Default: false.
	RequireApproval bool
	// Pprof serves Go's profiles under /debug/pprof/ to admins
	// (admin.pprof). Default: false, and then those paths answer 404.
	Pprof bool
	// TimeZone is the zone of a campaign's send_at when it gives none
	// (admin.time_zone). Default: UTC.
	TimeZone string
	// AuditLog reads the audit log for GET /api/audit. Default: none, and
	// then that route answers 503.
	AuditLog AuditReader
	// OnSchedule, if set, is called after a console campaign is scheduled,
	// approved or edited while scheduled, before the answer, so that this
	// instance's scheduler looks at its fire_at at once rather than at its
	// next poll (the scheduler's Wake). It must not block.
	OnSchedule func()
}

const (
	defaultMaxBodyBytes      = 1 << 20
	defaultMaxImportBytes    = 256 << 20
	defaultImportReadTimeout = 30 * time.Second
	// shutdownTimeout bounds how long Run waits for requests in flight.
	shutdownTimeout = 10 * time.Second
	// auditTimeout bounds one audit write.
	auditTimeout = 5 * time.Second
)

// Server is the admin module. Its handler is safe for concurrent use.
type Server struct {
	ctl     Control
	auditor Auditor
	log     *slog.Logger
	now     func() time.Time
	maxBody int64
	tokens  *tokenFile // nil: no tokens file configured
	mux     *http.ServeMux
	handler http.Handler
	tls     *tls.Config // nil: plain HTTP

	users           UserStore // nil: /login and /api/users answer 503
	sessionIdle     time.Duration
	sessionMax      time.Duration
	userFailures    *failureLimit
	addressFailures *failureLimit
	passwordCost    int
	hashing         chan struct{} // holds a value per bcrypt running
	dummyOnce       sync.Once
	dummy           string // see dummyHash
	signInTmpl      *template.Template
	authFailures    *prometheus.CounterVec

	lists        ListStore // nil: the list routes answer 503
	onListChange func(lists.Name)
	maxImport    int64
	importIdle   time.Duration // Config.ImportReadTimeout
	importing    chan struct{} // holds a value while an import runs

	audiences       AudienceStore // nil: the audience routes answer 503
	maxAudience     int64
	defs            CampaignDefs // nil: console campaign routes answer 503
	tests           TestSender   // nil: test sends answer 503
	requireApproval bool
	pprof           bool // serve /debug/pprof/ to admins
	timeZone        string
	auditLog        AuditReader // nil: GET /api/audit answers 503
	onSchedule      func()      // never nil

	console console // the console's templates and rates; see console.go
}

// New returns a Server. It loads the tokens file, if any; the error names
// the file and the line of a bad entry (never the token).
func New(cfg Config, ctl Control, audit Auditor, logger *slog.Logger) (*Server, error) {
	if ctl == nil || audit == nil || logger == nil {
		return nil, errors.New("admin: control, auditor and logger are required")
	}
	s := &Server{
		ctl:     ctl,
		auditor: audit,
		log:     logger,
		now:     cfg.Now,
		maxBody: cfg.MaxBodyBytes,
		mux:     http.NewServeMux(),

		lists:        cfg.Lists,
		onListChange: cfg.OnListChange,
		maxImport:    cfg.MaxImportBytes,
		importIdle:   cmp.Or(max(cfg.ImportReadTimeout, 0), defaultImportReadTimeout),
		importing:    make(chan struct{}, 1),

		audiences:       cfg.Audiences,
		maxAudience:     cmp.Or(max(cfg.MaxAudienceBytes, 0), defaultMaxAudienceBytes),
		defs:            cfg.Campaigns,
		tests:           cfg.Tests,
		requireApproval: cfg.RequireApproval,
		pprof:           cfg.Pprof,
		timeZone:        cfg.TimeZone,
		auditLog:        cfg.AuditLog,
		onSchedule:      cfg.OnSchedule,

		tls:          cfg.TLS,
		users:        cfg.Users,
		sessionIdle:  cmp.Or(max(cfg.SessionIdle, 0), 30*time.Minute),
		sessionMax:   cmp.Or(max(cfg.SessionMax, 0), 12*time.Hour),
		passwordCost: cmp.Or(cfg.PasswordCost, bcrypt.DefaultCost),
		hashing:      make(chan struct{}, runtime.GOMAXPROCS(0)),
	}
	window := cmp.Or(max(cfg.FailureWindow, 0), defaultFailureWindow)
	s.userFailures = newFailureLimit(cmp.Or(max(cfg.UserFailures, 0), defaultUserFailures), window, failureKeys)
	s.addressFailures = newFailureLimit(cmp.Or(max(cfg.AddressFailures, 0), defaultAddressFailures), window, failureKeys)
	if s.passwordCost < bcrypt.MinCost || s.passwordCost > bcrypt.MaxCost {
		return nil, fmt.Errorf("admin: password cost %d: want %d to %d", s.passwordCost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	reg := cfg.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s.authFailures = newAuthFailures(reg)
	tmpl, err := parseSignIn()
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	s.signInTmpl = tmpl
	if s.onSchedule == nil {
		s.onSchedule = func() {}
	}
	if s.timeZone == "" {
		s.timeZone = "UTC"
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.maxBody <= 0 {
		s.maxBody = defaultMaxBodyBytes
	}
	if s.maxImport <= 0 {
		s.maxImport = defaultMaxImportBytes
	}
	switch {
	case cfg.TokensFile == "" && s.users == nil:
		logger.Warn("admin.tokens_file is not configured: the admin API refuses every request")
	case cfg.TokensFile == "":
		logger.Info("admin.tokens_file is not configured: bearer tokens are refused; users sign in at /login")
	default:
		tf, err := loadTokenFile(cfg.TokensFile, s.now, logger)
		if err != nil {
			return nil, fmt.Errorf("admin: %w", err)
		}
		s.tokens = tf
	}
	s.routes()

	// Browsers send session cookies across sites (SameSite=Strict aside):
	// refuse cross-origin changes on every route, /login and /logout
	// included, whatever the credentials.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.log.DebugContext(r.Context(), "admin request refused: cross-origin",
			"method", r.Method, "path", r.URL.Path,
			"sec_fetch_site", r.Header.Get("Sec-Fetch-Site"), "origin", r.Header.Get("Origin"))
		s.writeError(w, r, errCrossOrigin)
	}))
	s.handler = secureHeaders(cop.Handler(http.HandlerFunc(s.serve)))
	return s, nil
}

// secureHeaders sets the headers every answer carries, refusals
// included: not cached, not sniffed, not framed, no referrer outside.
// A route may override them (static assets may be cached).
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

// Handler returns the admin module's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Run serves on ln until ctx ends, then stops taking connections and waits
// for requests in flight (at most 10 seconds) before returning. It does not
// close ln if serving fails before that. With Config.TLS it serves HTTPS.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	if s.tls != nil {
		srv.TLSConfig = s.tls.Clone()
		srv.TLSConfig.MinVersion = max(srv.TLSConfig.MinVersion, tls.VersionTLS12)
		go func() { errc <- srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { errc <- srv.Serve(ln) }()
	}
	select {
	case err := <-errc:
		return fmt.Errorf("admin: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		_ = srv.Close()
		err = fmt.Errorf("admin: shutdown: %w", err)
	}
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		return fmt.Errorf("admin: serve: %w", serr)
	}
	return err
}
