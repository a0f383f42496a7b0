// Package admin serves pushd's admin API: JSON over HTTP to look at
// campaigns and to change their rate, pause, resume or cancel them, and to
// manage the blacklist and whitelist (entries, CSV import and export) and
// the audiences (stored recipient lists, imported and exported as CSV), to
// create, preview, test, schedule and approve campaigns in pushd itself
// (console campaigns), and to read the audit log. It also serves the
// operator console: server-rendered pages on the same operations (see
// console.go and docs/console.md). Every
// request needs a bearer token from a tokens file (roles viewer, operator,
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
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

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
	// Actor is "<role>:<first 8 hex digits of the token's SHA-256>"; never
	// the token.
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
	// every request is refused with 401.
	TokensFile string
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
	// Audiences keeps the audiences. Default: none, and then the audience
	// routes answer 503.
	Audiences AudienceStore
	// MaxAudienceBytes bounds the body of an audience import, which is
	// streamed (ten million recipients are about 1 GiB). Default: 2 GiB.
	MaxAudienceBytes int64
	// Now is the clock, for audit entries and tokens file checks. Default:
	// time.Now.
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
	defaultMaxBodyBytes   = 1 << 20
	defaultMaxImportBytes = 256 << 20
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

	lists        ListStore // nil: the list routes answer 503
	onListChange func(lists.Name)
	maxImport    int64
	importing    chan struct{} // holds a value while an import runs

	audiences       AudienceStore // nil: the audience routes answer 503
	maxAudience     int64
	defs            CampaignDefs // nil: console campaign routes answer 503
	tests           TestSender   // nil: test sends answer 503
	requireApproval bool
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
		importing:    make(chan struct{}, 1),

		audiences:       cfg.Audiences,
		maxAudience:     cmp.Or(max(cfg.MaxAudienceBytes, 0), defaultMaxAudienceBytes),
		defs:            cfg.Campaigns,
		tests:           cfg.Tests,
		requireApproval: cfg.RequireApproval,
		timeZone:        cfg.TimeZone,
		auditLog:        cfg.AuditLog,
		onSchedule:      cfg.OnSchedule,
	}
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
	if cfg.TokensFile == "" {
		logger.Warn("admin.tokens_file is not configured: the admin API refuses every request")
	} else {
		tf, err := loadTokenFile(cfg.TokensFile, s.now, logger)
		if err != nil {
			return nil, fmt.Errorf("admin: %w", err)
		}
		s.tokens = tf
	}
	s.routes()

	// Browsers send cookies, not our bearer tokens, across sites, but the
	// web form to come will use cookies: refuse cross-origin changes for
	// every route from the start.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.log.DebugContext(r.Context(), "admin request refused: cross-origin",
			"method", r.Method, "path", r.URL.Path,
			"sec_fetch_site", r.Header.Get("Sec-Fetch-Site"), "origin", r.Header.Get("Origin"))
		s.writeError(w, r, errCrossOrigin)
	}))
	s.handler = cop.Handler(http.HandlerFunc(s.serve))
	return s, nil
}

// Handler returns the admin module's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Run serves on ln until ctx ends, then stops taking connections and waits
// for requests in flight (at most 10 seconds) before returning. It does not
// close ln if serving fails before that.
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
	go func() { errc <- srv.Serve(ln) }()
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
