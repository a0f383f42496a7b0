package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/push/apns"
	"github.com/pushd/pushd/push/fcm"
	"github.com/pushd/pushd/scheduler"
)

// CampaignDefs keeps the campaigns created in pushd (the console and its
// API). The store implements it, writing each change's audit record in
// the change's transaction. Errors wrapping dispatcher.ErrNotFound,
// ErrConflict or ErrInvalid are shown to the client (404, 409, 400); one
// with a Forbidden() method returning true is a 403.
type CampaignDefs interface {
	CreateCampaignDef(ctx context.Context, d scheduler.Definition, actor string) (scheduler.Definition, error)
	CampaignDef(ctx context.Context, id string) (scheduler.Definition, error)
	CampaignDefs(ctx context.Context) ([]scheduler.Definition, error)
	// EditCampaignDef applies edit to a draft, scheduled or missed
	// campaign.
	EditCampaignDef(ctx context.Context, id, actor string, edit func(*scheduler.Definition) error) (before, after scheduler.Definition, err error)
	ScheduleCampaignDef(ctx context.Context, id, actor string, requireApproval bool) (scheduler.Definition, error)
	ApproveCampaignDef(ctx context.Context, id, actor string) (scheduler.Definition, error)
	CancelCampaignDef(ctx context.Context, id, actor string) (before, after scheduler.Definition, err error)
	// NextCampaignTest takes the id of a draft's next test send.
	NextCampaignTest(ctx context.Context, id, actor string) (testID string, d scheduler.Definition, err error)
}

// TestSender sends a console campaign's notification now, as its own test
// campaign testID, to every whitelisted device and to the audience's
// recipients whose user id is whitelisted, and says how many devices that
// is.
type TestSender interface {
	SendTest(ctx context.Context, testID string, notification json.RawMessage, audienceID string) (devices int, err error)
}

// Sources of a campaign in GET /api/campaigns.
const (
	sourceAMQP    = "amqp"
	sourceConsole = "console"
)

var (
	errNoCampaignDefs = &clientError{kindUnavailable, "console campaigns not configured"}
	errNoTests        = &clientError{kindUnavailable, "test sends not configured"}
)

// campaignView is a campaign in GET /api/campaigns: the engine's view,
// its source, and for a console campaign its definition. Status is the
// definition's state until the campaign runs, then the engine's status
// ("finished" only once the whole audience is published).
type campaignView struct {
	dispatcher.CampaignInfo
	Source     string                `json:"source"`
	Definition *scheduler.Definition `json:"definition,omitempty"`
}

// consoleView merges a definition with the engine's campaign (nil before
// it runs).
func consoleView(d scheduler.Definition, info *dispatcher.CampaignInfo) campaignView {
	v := campaignView{Source: sourceConsole, Definition: &d}
	if info != nil {
		v.CampaignInfo = *info
	} else {
		v.CampaignInfo = dispatcher.CampaignInfo{
			ID: d.ID, RatePerSecond: d.RatePerSecond, RateSource: "message",
			CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt,
		}
	}
	switch {
	case info == nil, d.State == scheduler.DefCancelled:
		v.Status = dispatcher.Status(d.State)
	case v.Status == dispatcher.StatusFinished && !d.PublishedAll:
		v.Status = dispatcher.StatusRunning
	}
	v.CreatedAt = d.CreatedAt
	return v
}

func (s *Server) listCampaigns(w http.ResponseWriter, r *http.Request, _ principal) error {
	q := r.URL.Query()
	limit, err := pageLimit(q)
	if err != nil {
		return err
	}
	var after *campaignCursor
	if v := q.Get("after"); v != "" {
		c, err := decodeCampaignCursor(v)
		if err != nil {
			return badRequest("after: not a cursor from a previous page's next")
		}
		after = &c
	}
	out, err := s.allCampaigns(r.Context())
	if err != nil {
		return err
	}
	page, next := campaignPage(out, after, limit)
	return writeJSON(w, http.StatusOK, campaignList{Campaigns: page, Next: next})
}

// allCampaigns returns the campaigns of both sources, newest first.
func (s *Server) allCampaigns(ctx context.Context) ([]campaignView, error) {
	cs, err := s.ctl.Campaigns(ctx)
	if err != nil {
		return nil, err
	}
	var defs []scheduler.Definition
	if s.defs != nil {
		if defs, err = s.defs.CampaignDefs(ctx); err != nil {
			return nil, err
		}
	}
	byID := make(map[string]bool, len(defs))
	for _, d := range defs {
		byID[d.ID] = true
	}
	out := make([]campaignView, 0, len(cs)+len(defs))
	engine := make(map[string]*dispatcher.CampaignInfo, len(cs))
	for i := range cs {
		c := &cs[i]
		if byID[c.ID] {
			engine[c.ID] = c
			continue
		}
		src := sourceAMQP
		if base, ok := testBase(c.ID); ok && byID[base] {
			src = sourceConsole
		}
		out = append(out, campaignView{CampaignInfo: *c, Source: src})
	}
	for _, d := range defs {
		out = append(out, consoleView(d, engine[d.ID]))
	}
	slices.SortStableFunc(out, func(a, b campaignView) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return out, nil
}

// testBase returns the campaign id of a test send "<id>.test-N".
func testBase(id string) (base string, ok bool) {
	i := strings.LastIndex(id, ".test-")
	if i <= 0 {
		return "", false
	}
	return id[:i], true
}

func (s *Server) getCampaign(w http.ResponseWriter, r *http.Request, _ principal) error {
	v, err := s.campaignView(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, v)
}

// campaignView returns campaign id, from either source.
func (s *Server) campaignView(ctx context.Context, id string) (campaignView, error) {
	if s.defs != nil {
		d, err := s.defs.CampaignDef(ctx, id)
		if err == nil {
			info, err := s.ctl.Campaign(ctx, id)
			switch {
			case err == nil:
				return consoleView(d, &info), nil
			case errors.Is(err, dispatcher.ErrNotFound):
				return consoleView(d, nil), nil
			}
			return campaignView{}, err
		}
		if !errors.Is(err, dispatcher.ErrNotFound) {
			return campaignView{}, err
		}
	}
	c, err := s.ctl.Campaign(ctx, id)
	if err != nil {
		return campaignView{}, err
	}
	src := sourceAMQP
	if base, ok := testBase(id); ok && s.defs != nil {
		if _, err := s.defs.CampaignDef(ctx, base); err == nil {
			src = sourceConsole
		}
	}
	return campaignView{CampaignInfo: c, Source: src}, nil
}

// campaignRequest is the body of POST /api/campaigns and PUT
// /api/campaigns/{id}; in a PUT, absent fields keep their value.
type campaignRequest struct {
	ID                *string         `json:"id"`
	Name              *string         `json:"name"`
	Notification      json.RawMessage `json:"notification"`
	Audience          *string         `json:"audience"`
	RatePerSecond     *float64        `json:"rate_per_second"`
	SendAt            *string         `json:"send_at"`
	TimeZone          *string         `json:"time_zone"`
	RecipientTimeZone *bool           `json:"recipient_time_zone"`
}

// apply sets d's fields from the request and checks them; errors are 400s
// that name the field.
func (req *campaignRequest) apply(d *scheduler.Definition) error {
	if req.Name != nil {
		d.Name = *req.Name
	}
	if req.Notification != nil {
		if _, err := renderPreview(req.Notification); err != nil {
			return err
		}
		d.Notification = req.Notification
	}
	if req.Audience != nil {
		d.AudienceID = *req.Audience
	}
	if req.RatePerSecond != nil {
		if v := *req.RatePerSecond; v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return badRequest("rate_per_second: must be a number >= 0 (0: no campaign limit)")
		}
		d.RatePerSecond = *req.RatePerSecond
	}
	if req.SendAt != nil {
		if _, err := scheduler.ParseSendAt(*req.SendAt); err != nil {
			return badRequest("send_at: %v", err)
		}
		d.SendAt = *req.SendAt
	}
	if req.TimeZone != nil {
		if _, err := scheduler.LoadZone(*req.TimeZone); err != nil {
			return badRequest("time_zone: %v", err)
		}
		d.TimeZone = *req.TimeZone
	}
	if req.RecipientTimeZone != nil {
		d.RecipientTimeZone = *req.RecipientTimeZone
	}
	return nil
}

func (s *Server) createCampaign(w http.ResponseWriter, r *http.Request, p principal) error {
	var req campaignRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	out, err := s.createDef(r.Context(), p, &req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, consoleView(out, nil))
}

// createDef creates the draft that req describes, for the API and the
// console.
func (s *Server) createDef(ctx context.Context, p principal, req *campaignRequest) (scheduler.Definition, error) {
	d := scheduler.Definition{TimeZone: s.timeZone}
	if req.ID != nil {
		d.ID = *req.ID
		if d.ID == "" || strings.Contains(d.ID, ".test-") {
			return d, badRequest("id: must be non-empty and may not contain \".test-\" (test sends use it)")
		}
	}
	switch {
	case req.Notification == nil:
		return d, badRequest("notification: required")
	case req.Audience == nil || *req.Audience == "":
		return d, badRequest("audience: required")
	}
	if err := req.apply(&d); err != nil {
		return d, err
	}
	return s.defs.CreateCampaignDef(ctx, d, p.actor)
}

func (s *Server) editCampaign(w http.ResponseWriter, r *http.Request, p principal) error {
	var req campaignRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	after, err := s.editDef(r.Context(), p, r.PathValue("id"), &req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, consoleView(after, nil))
}

// editDef applies req to campaign id, for the API and the console.
func (s *Server) editDef(ctx context.Context, p principal, id string, req *campaignRequest) (scheduler.Definition, error) {
	if req.ID != nil && *req.ID != id {
		return scheduler.Definition{}, badRequest("id: a campaign's id can't be changed")
	}
	_, after, err := s.defs.EditCampaignDef(ctx, id, p.actor, req.apply)
	if err != nil {
		return after, err
	}
	if after.State == scheduler.DefScheduled {
		s.onSchedule()
	}
	return after, nil
}

// preview is one provider's rendering of a notification.
type preview struct {
	// Payload is the APNs payload or the FCM v1 message, as sent.
	Payload json.RawMessage `json:"payload,omitempty"`
	Bytes   int             `json:"bytes"`
	Limit   int             `json:"limit"`
	Fits    bool            `json:"fits"`
	Error   string          `json:"error,omitempty"`
}

type previewAnswer struct {
	APNs preview `json:"apns"`
	FCM  preview `json:"fcm"`
}

// renderPreview checks a notification as pushd.batch/v1 does and renders
// it with the senders' own renderers. A notification that breaks the
// schema, or whose rendering is refused or is over the limit, is an error
// naming the field notification; the preview comes back with it.
func renderPreview(raw json.RawMessage) (previewAnswer, error) {
	var ans previewAnswer
	body := fmt.Appendf(nil, `{"schema":%q,"batch_id":"preview","campaign":{"id":"preview"},"notification":%s,"recipients":[{"platform":"ios","token":"preview"}]}`,
		dispatcher.Schema, raw)
	b, err := dispatcher.DecodeBatch(body)
	if err != nil {
		return ans, badRequest("notification: %v", err)
	}
	one := func(render func(*dispatcher.Notification) ([]byte, error)) preview {
		out, err := render(&b.Notification)
		pv := preview{Payload: out, Bytes: len(out), Limit: dispatcher.MaxPayloadBytes}
		pv.Fits = err == nil && pv.Bytes <= pv.Limit
		if err != nil {
			pv.Error = err.Error()
		}
		return pv
	}
	ans.APNs, ans.FCM = one(apns.RenderPayload), one(fcm.RenderMessage)
	for name, pv := range map[string]preview{"apns": ans.APNs, "fcm": ans.FCM} {
		switch {
		case pv.Error != "":
			return ans, badRequest("notification: %s", pv.Error)
		case !pv.Fits:
			return ans, badRequest("notification: the %s payload is %d bytes, over the limit of %d", name, pv.Bytes, pv.Limit)
		}
	}
	return ans, nil
}

func (s *Server) previewCampaign(w http.ResponseWriter, r *http.Request, _ principal) error {
	d, err := s.defs.CampaignDef(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	// A stored notification was checked when it was saved; the preview
	// shows the sizes even so.
	ans, _ := renderPreview(d.Notification)
	return writeJSON(w, http.StatusOK, ans)
}

func (s *Server) scheduleCampaign(w http.ResponseWriter, r *http.Request, p principal) error {
	d, err := s.scheduleDef(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, consoleView(d, nil))
}

// scheduleDef schedules campaign id, for the API and the console.
func (s *Server) scheduleDef(ctx context.Context, p principal, id string) (scheduler.Definition, error) {
	d, err := s.defs.ScheduleCampaignDef(ctx, id, p.actor, s.requireApproval)
	if err != nil {
		return d, err
	}
	if d.State == scheduler.DefScheduled {
		s.onSchedule()
	}
	return d, nil
}

func (s *Server) approveCampaign(w http.ResponseWriter, r *http.Request, p principal) error {
	d, err := s.approveDef(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, consoleView(d, nil))
}

// approveDef approves campaign id, for the API and the console.
func (s *Server) approveDef(ctx context.Context, p principal, id string) (scheduler.Definition, error) {
	d, err := s.defs.ApproveCampaignDef(ctx, id, p.actor)
	var f interface{ Forbidden() bool }
	if errors.As(err, &f) && f.Forbidden() {
		return d, forbidden(err.Error())
	}
	if err != nil {
		return d, err
	}
	s.onSchedule()
	return d, nil
}

// testAnswer is the answer of POST /api/campaigns/{id}/test.
type testAnswer struct {
	Campaign string `json:"campaign"`
	Devices  int    `json:"devices"`
}

func (s *Server) testCampaign(w http.ResponseWriter, r *http.Request, p principal) error {
	ans, err := s.sendTest(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, ans)
}

// sendTest makes a test send of campaign id, for the API and the console.
func (s *Server) sendTest(ctx context.Context, p principal, id string) (testAnswer, error) {
	if s.tests == nil {
		return testAnswer{}, errNoTests
	}
	testID, d, err := s.defs.NextCampaignTest(ctx, id, p.actor)
	if err != nil {
		return testAnswer{}, err
	}
	n, err := s.tests.SendTest(ctx, testID, d.Notification, d.AudienceID)
	if err != nil {
		return testAnswer{}, fmt.Errorf("test send %s: %w", testID, err)
	}
	return testAnswer{Campaign: testID, Devices: n}, nil
}

// cancelCampaign cancels a console campaign in any state that is not
// final (a running one also in the engine), or an AMQP campaign as
// before.
func (s *Server) cancelCampaign(w http.ResponseWriter, r *http.Request, p principal) error {
	v, err := s.cancel(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, v)
}

// cancel cancels campaign id, for the API and the console. It answers
// the campaign after the change: an AMQP campaign as the engine has it
// (a dispatcher.CampaignInfo), a console campaign as a campaignView.
func (s *Server) cancel(ctx context.Context, p principal, id string) (any, error) {
	engineCancel := func() (any, error) {
		return s.changeCampaign(ctx, p, "campaign.cancel", id, func(ctx context.Context) (dispatcher.CampaignInfo, error) {
			return s.ctl.CancelCampaign(ctx, id)
		})
	}
	if s.defs == nil {
		return engineCancel()
	}
	cur, err := s.campaignView(ctx, id)
	switch {
	case errors.Is(err, dispatcher.ErrNotFound):
		return engineCancel()
	case err != nil:
		return nil, err
	case cur.Definition == nil:
		return engineCancel()
	case cur.Status == dispatcher.StatusFinished:
		return nil, fmt.Errorf("campaign %q is finished: %w", id, dispatcher.ErrConflict)
	}
	before, _, err := s.defs.CancelCampaignDef(ctx, id, p.actor)
	if err != nil {
		return nil, err
	}
	if before.State == scheduler.DefRunning {
		// The scheduler stops publishing at its next progress; the engine
		// stops sending what is queued. An engine that has the campaign
		// cancelled already (or not at all) has nothing more to do.
		_, err := s.ctl.CancelCampaign(ctx, id)
		if err != nil && !errors.Is(err, dispatcher.ErrNotFound) && !errors.Is(err, dispatcher.ErrConflict) {
			return nil, err
		}
	}
	return s.campaignView(ctx, id)
}

// notRunning turns the engine's not found for a console campaign that has
// not started yet into a conflict that says so; other errors are kept.
func (s *Server) notRunning(ctx context.Context, id string, err error) error {
	if s.defs == nil || !errors.Is(err, dispatcher.ErrNotFound) {
		return err
	}
	d, derr := s.defs.CampaignDef(ctx, id)
	if derr != nil {
		return err
	}
	return fmt.Errorf("campaign %q is %s; pause, resume and rate work once it runs: %w", id, d.State, dispatcher.ErrConflict)
}

// defsRoute answers 503 when console campaigns are not configured.
func (s *Server) defsRoute(h apiHandler) apiHandler {
	return func(w http.ResponseWriter, r *http.Request, p principal) error {
		if s.defs == nil {
			return errNoCampaignDefs
		}
		return h(w, r, p)
	}
}
