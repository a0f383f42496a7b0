package admin

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"net/http"
	"time"

	"github.com/pushd/pushd/dispatcher"
)

// routes registers every route with the least role that may use it.
// Viewers may only look (GET); operators and admins may also change
// campaigns and lists.
func (s *Server) routes() {
	s.handle("GET /api/campaigns", roleViewer, s.listCampaigns)
	s.handle("GET /api/campaigns/{id}", roleViewer, s.getCampaign)
	s.handle("PUT /api/campaigns/{id}/rate", roleOperator, s.setCampaignRate)
	s.handle("POST /api/campaigns/{id}/pause", roleOperator, s.campaignChange("campaign.pause", s.ctl.PauseCampaign))
	s.handle("POST /api/campaigns/{id}/resume", roleOperator, s.campaignChange("campaign.resume", s.ctl.ResumeCampaign))
	s.handle("POST /api/campaigns/{id}/cancel", roleOperator, s.cancelCampaign)

	// Campaigns created in pushd; see campaign_defs.go.
	s.handle("POST /api/campaigns", roleOperator, s.defsRoute(s.createCampaign))
	s.handle("PUT /api/campaigns/{id}", roleOperator, s.defsRoute(s.editCampaign))
	s.handle("POST /api/campaigns/{id}/preview", roleOperator, s.defsRoute(s.previewCampaign))
	s.handle("POST /api/campaigns/{id}/schedule", roleOperator, s.defsRoute(s.scheduleCampaign))
	s.handle("POST /api/campaigns/{id}/approve", roleOperator, s.defsRoute(s.approveCampaign))
	s.handle("POST /api/campaigns/{id}/test", roleOperator, s.defsRoute(s.testCampaign))

	s.handle("GET /api/audit", roleOperator, s.getAudit)

	// {level} is global, apns or fcm.
	s.handle("GET /api/limits", roleViewer, s.getLimits)
	s.handle("PUT /api/limits/{level}", roleOperator, s.setLimit)
	s.handle("DELETE /api/limits/{level}", roleOperator, s.setLimit)

	// {name} is blacklist or whitelist; listRoute answers 404 otherwise.
	s.handle("GET /api/lists/{name}", roleViewer, s.listRoute(s.getList))
	s.handle("GET /api/lists/{name}/entries", roleViewer, s.listRoute(s.listEntries))
	s.handle("POST /api/lists/{name}/entries", roleOperator, s.listRoute(s.addListEntries))
	s.handle("DELETE /api/lists/{name}/entries", roleOperator, s.listRoute(s.removeListEntries))
	s.handleBody("POST /api/lists/{name}/import", roleOperator, s.maxImport, s.listRoute(s.importList))
	s.handle("GET /api/lists/{name}/export", roleViewer, s.listRoute(s.exportList))
	// Snapshots of what replace imports and restores replaced; see
	// snapshots.go.
	s.handle("GET /api/lists/{name}/snapshots", roleViewer, s.listRoute(s.listSnapshots))
	s.handle("GET /api/lists/{name}/snapshots/{id}/export", roleViewer, s.listRoute(s.exportSnapshot))
	s.handle("POST /api/lists/{name}/snapshots/{id}/restore", roleOperator, s.listRoute(s.restoreSnapshot))

	s.handleBody("POST /api/audiences", roleOperator, s.maxAudience, s.audienceRoute(s.importAudience))
	s.handle("GET /api/audiences", roleViewer, s.audienceRoute(s.listAudiences))
	s.handle("GET /api/audiences/{id}", roleViewer, s.audienceRoute(s.getAudience))
	s.handle("GET /api/audiences/{id}/export", roleViewer, s.audienceRoute(s.exportAudience))
	s.handle("DELETE /api/audiences/{id}", roleOperator, s.audienceRoute(s.deleteAudience))

	// Users and sessions; see users.go and signin.go. The sign-in routes
	// are public (isPublicPath).
	s.handle("GET /api/users", roleAdmin, s.usersRoute(s.listUsers))
	s.handle("GET /api/users/{name}", roleAdmin, s.usersRoute(s.getUser))
	s.handle("POST /api/users", roleAdmin, s.usersRoute(s.createUser))
	s.handle("PUT /api/users/{name}", roleAdmin, s.usersRoute(s.updateUser))
	s.mux.HandleFunc("GET /login", s.signInForm)
	s.mux.HandleFunc("POST /login", s.signIn)
	s.mux.HandleFunc("POST /logout", s.signOut)

	// The console's pages; see console.go.
	s.consoleRoutes()
	// Go's profiles, admins only, when admin.pprof is on; see pprof.go.
	s.pprofRoutes()
}

// apiHandler handles an authenticated request allowed for p. It writes the
// response on success; an error it returns is answered by writeError.
type apiHandler func(w http.ResponseWriter, r *http.Request, p principal) error

// handle registers h for pattern, for principals with role need or above.
// Its request bodies are bounded by MaxBodyBytes.
func (s *Server) handle(pattern string, need role, h apiHandler) {
	s.handleBody(pattern, need, s.maxBody, h)
}

// handleBody is handle with request bodies bounded by maxBody.
func (s *Server) handleBody(pattern string, need role, maxBody int64, h apiHandler) {
	s.register(pattern, need, maxBody, h, s.writeError)
}

// register registers h for pattern, for principals with role need or
// above, with request bodies bounded by maxBody; onError answers the
// errors, the API's in JSON, the console's as a page.
func (s *Server) register(pattern string, need role, maxBody int64, h apiHandler, onError func(http.ResponseWriter, *http.Request, error)) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		p := principalFrom(r.Context())
		if p.role < need {
			onError(w, r, forbidden("role "+p.role.String()+" may not do this; it needs "+need.String()))
			return
		}
		if r.ContentLength > maxBody {
			// Refused before any work, whether the route reads a body or
			// not; MaxBytesReader catches bodies of unknown length.
			onError(w, r, &http.MaxBytesError{Limit: maxBody})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		if err := h(w, r, p); err != nil {
			onError(w, r, err)
		}
	})
}

// serve authenticates every request but the public ones (the sign-in
// routes and static assets), then routes it. Campaign ids may contain "/"
// escaped as %2F: ServeMux matches the escaped path one segment at a time
// and unescapes {id}, so no route needs to do anything for it.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	var actor string
	defer func() {
		// Debug only: request logs are for troubleshooting; changes are in
		// the audit trail.
		s.log.LogAttrs(r.Context(), slog.LevelDebug, "admin request",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", sw.status), slog.String("actor", actor),
			slog.Duration("duration", time.Since(start)))
	}()
	if !isPublicPath(r.URL.Path) {
		p, reason, err := s.authenticate(r)
		if err != nil {
			// A browser without a session is sent to the sign-in page:
			// not a failure worth counting.
			if reason != "" && (reason != reasonNoCredentials || isAPIPath(r.URL.Path)) {
				s.authFailed(r, reason, "")
			}
			s.refuse(sw, r, reason, err)
			return
		}
		actor = p.actor
		r = r.WithContext(withPrincipal(r.Context(), p))
	}
	if _, pattern := s.mux.Handler(r); pattern == "" {
		s.noRoute(sw, r)
		return
	}
	s.mux.ServeHTTP(sw, r)
}

// noRoute answers a request that no route matches. The mux knows whether
// the path exists with other methods (405 and Allow) or not (404), but says
// it in plain text: ask it, then answer in JSON.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) {
	rec := &discardWriter{header: make(http.Header)}
	s.mux.ServeHTTP(rec, r)
	if rec.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", rec.header.Get("Allow"))
		s.writeError(w, r, errMethod)
		return
	}
	s.writeError(w, r, errNoRoute)
}

// rateRequest is the body of PUT /api/campaigns/{id}/rate.
type rateRequest struct {
	// RatePerSecond is required: a number >= 0 (0: no campaign limit), or
	// null to clear the operator's rate. Raw, to tell null from missing.
	RatePerSecond json.RawMessage `json:"rate_per_second"`
}

func (s *Server) setCampaignRate(w http.ResponseWriter, r *http.Request, p principal) error {
	var req rateRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	var rate *float64
	switch string(req.RatePerSecond) {
	case "":
		return badRequest("rate_per_second is required: a number >= 0 (0: no campaign limit), or null to clear the operator's rate")
	case "null":
	default:
		var v float64
		if err := json.Unmarshal(req.RatePerSecond, &v); err != nil {
			return badRequest("rate_per_second must be a number >= 0, or null to clear the operator's rate")
		}
		if v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
			return badRequest("rate_per_second must be >= 0 and finite, got %v", v)
		}
		rate = &v
	}
	id := r.PathValue("id")
	return s.change(w, r, p, "campaign.rate", id, func(ctx context.Context) (dispatcher.CampaignInfo, error) {
		return s.ctl.SetCampaignRate(ctx, id, rate)
	})
}

// limitRequest is the body of PUT /api/limits/{level}.
type limitRequest struct {
	// PerSecond is required: a number >= 0 (0: no limit).
	PerSecond *float64 `json:"per_second"`
	// Burst is optional, 0 or more (0: a tenth of a second's worth).
	Burst int `json:"burst"`
}

func (s *Server) getLimits(w http.ResponseWriter, _ *http.Request, _ principal) error {
	return writeJSON(w, http.StatusOK, map[string]any{"limits": s.ctl.Limits()})
}

// setLimit sets a level's rate (PUT) or goes back to the configured one
// (DELETE) and answers with every level. The store audits it, in the
// change's transaction.
func (s *Server) setLimit(w http.ResponseWriter, r *http.Request, p principal) error {
	level := r.PathValue("level")
	var ls *dispatcher.LimitSetting
	if r.Method == http.MethodPut {
		var req limitRequest
		if err := decodeJSON(r, &req); err != nil {
			return err
		}
		if req.PerSecond == nil {
			return badRequest("per_second is required: a number >= 0 (0: no limit); DELETE goes back to the configured rate")
		}
		ls = &dispatcher.LimitSetting{PerSecond: *req.PerSecond, Burst: req.Burst}
	}
	after, err := s.ctl.SetLimit(noted(r.Context(), p, "limit.set"), level, ls)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"limits": after})
}

// campaignChange returns the handler of a POST that changes a campaign with
// do and records it as action.
func (s *Server) campaignChange(action string, do func(ctx context.Context, id string) (dispatcher.CampaignInfo, error)) apiHandler {
	return func(w http.ResponseWriter, r *http.Request, p principal) error {
		id := r.PathValue("id")
		return s.change(w, r, p, action, id, func(ctx context.Context) (dispatcher.CampaignInfo, error) {
			return do(ctx, id)
		})
	}
}

// change makes a change to campaign id with do and answers with the
// campaign after it. The store writes the change's audit record, as action
// by p, in the change's own transaction (see package audit): a change
// whose record cannot be written fails and does not stand.
func (s *Server) change(w http.ResponseWriter, r *http.Request, p principal, action, id string, do func(context.Context) (dispatcher.CampaignInfo, error)) error {
	after, err := s.changeCampaign(r.Context(), p, action, id, do)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, after)
}

// changeCampaign is change without the answer: the API and the console
// both use it.
func (s *Server) changeCampaign(ctx context.Context, p principal, action, id string, do func(context.Context) (dispatcher.CampaignInfo, error)) (dispatcher.CampaignInfo, error) {
	after, err := do(noted(ctx, p, action))
	if err != nil {
		return dispatcher.CampaignInfo{}, s.notRunning(ctx, id, err)
	}
	return after, nil
}

// audit records an event that is not a change in the store (a refused
// sign-in), so that it has no transaction to share: a failed write is
// logged, with the entry so that it is not lost, and the request goes on.
// It does not stop because the client went away. Changes are audited by
// the store, in their own transaction (see noted).
//
//lint:ignore U1000 the sign-in routes (auth branch) record refused sign-ins with it
func (s *Server) audit(ctx context.Context, e AuditEntry) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
	defer cancel()
	if err := s.auditor.Audit(ctx, e); err != nil {
		s.log.ErrorContext(ctx, "admin audit write failed; the change was made",
			"err", err, "at", e.At, "actor", e.Actor, "action", e.Action, "target", e.Target,
			"before", string(e.Before), "after", string(e.After))
	}
}

// marshalAudit returns v as JSON for an audit entry, or nil (logged) if
// it cannot be encoded.
//
//lint:ignore U1000 the sign-in routes (auth branch) use it with audit
func (s *Server) marshalAudit(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		s.log.Error("admin audit: encode", "err", err)
		return nil
	}
	return b
}

// statusWriter remembers the status written, for the request log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// discardWriter keeps the status and headers of a response and drops its
// body.
type discardWriter struct {
	header http.Header
	status int
}

func (w *discardWriter) Header() http.Header { return w.header }

func (w *discardWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *discardWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return len(b), nil
}
