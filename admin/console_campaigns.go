package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/scheduler"
)

// campaignsPerPage is how many campaigns the list shows at once.
const campaignsPerPage = 100

// campaignRow is a campaign in the list.
type campaignRow struct {
	campaignView
	Name string
	// Done of Total recipients are resolved; Total is the audience's
	// size for a console campaign, what was received for another.
	Done, Total int64
}

type campaignsPage struct {
	Rows []campaignRow
	// Page is the 1-based page number; Prev and Next are 0 when there is
	// no such page.
	Page, Prev, Next, Pages int
	Count                   int
}

// audienceSizes returns the number of recipients of each audience, by
// id; nil when audiences are not configured or can't be read (the pages
// then count what was received).
func (s *Server) audienceSizes(ctx context.Context) map[string]int64 {
	if s.audiences == nil {
		return nil
	}
	as, err := s.audiences.Audiences(ctx)
	if err != nil {
		s.log.WarnContext(ctx, "console: read audiences", "err", err)
		return nil
	}
	out := make(map[string]int64, len(as))
	for _, a := range as {
		out[a.ID] = a.Recipients
	}
	return out
}

// progressOf returns how many of a campaign's recipients are resolved,
// and of how many.
func progressOf(v campaignView, sizes map[string]int64) (done, total int64) {
	c := v.Counters
	done = c.Sent + c.Failed + c.Filtered + c.Dropped + c.Cancelled
	total = c.Received
	if v.Definition != nil {
		if n, ok := sizes[v.Definition.AudienceID]; ok && n > total {
			total = n
		}
	}
	return done, max(total, done)
}

func (s *Server) campaignsPage(w http.ResponseWriter, r *http.Request, p principal) error {
	all, err := s.allCampaigns(r.Context())
	if err != nil {
		return err
	}
	sizes := s.audienceSizes(r.Context())
	pg := campaignsPage{Count: len(all), Page: 1}
	pg.Pages = max(1, (len(all)+campaignsPerPage-1)/campaignsPerPage)
	if v := r.URL.Query().Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > pg.Pages {
			return notFound("page %q: there are %d pages", v, pg.Pages)
		}
		pg.Page = n
	}
	if pg.Page > 1 {
		pg.Prev = pg.Page - 1
	}
	if pg.Page < pg.Pages {
		pg.Next = pg.Page + 1
	}
	lo := (pg.Page - 1) * campaignsPerPage
	for _, v := range all[lo:min(lo+campaignsPerPage, len(all))] {
		row := campaignRow{campaignView: v, Name: v.ID}
		if v.Definition != nil && v.Definition.Name != "" {
			row.Name = v.Definition.Name
		}
		row.Done, row.Total = progressOf(v, sizes)
		pg.Rows = append(pg.Rows, row)
	}
	s.render(w, r, http.StatusOK, "campaigns", s.pageData(w, r, p, "Campaigns", "campaigns", pg))
	return nil
}

// Actions on a campaign, as the console names them.
const (
	actEdit     = "edit"
	actTest     = "test"
	actSchedule = "schedule"
	actApprove  = "approve"
	actPause    = "pause"
	actResume   = "resume"
	actCancel   = "cancel"
	actRate     = "rate"
)

// allowedActions returns the actions p may take on campaign v now:
// those its status allows, none for viewers.
func (s *Server) allowedActions(v campaignView, p principal) map[string]bool {
	out := map[string]bool{}
	if p.role < roleOperator {
		return out
	}
	if d := v.Definition; d != nil && d.State != scheduler.DefRunning {
		switch d.State {
		case scheduler.DefDraft:
			out[actEdit], out[actTest], out[actSchedule], out[actCancel] = true, s.tests != nil, true, true
		case scheduler.DefAwaitingApproval:
			out[actApprove], out[actCancel] = d.ScheduledBy != p.actor, true
		case scheduler.DefScheduled:
			out[actEdit], out[actCancel] = true, true
		case scheduler.DefMissed:
			out[actEdit], out[actSchedule] = true, true
		}
		return out
	}
	switch v.Status {
	case dispatcher.StatusRunning:
		out[actPause], out[actCancel], out[actRate] = true, true, true
	case dispatcher.StatusPaused:
		out[actResume], out[actCancel], out[actRate] = true, true, true
	}
	return out
}

// progressView is the live part of the campaign page: what GET
// /campaign/{id}/progress answers, and what the page shows first.
type progressView struct {
	Status   string              `json:"status"`
	Counters dispatcher.Counters `json:"counters"`
	InFlight int64               `json:"in_flight"`
	Done     int64               `json:"done"`
	Total    int64               `json:"total"`
	// Text are the page's texts by data-field name.
	Text map[string]string `json:"text"`
	// Chart is the points of the chart's polyline.
	Chart string `json:"chart"`
	// Actions are those the viewer may take now.
	Actions []string `json:"actions"`
	// Final: nothing more will change.
	Final bool `json:"final"`
}

// progress returns the live part of campaign v for p, and records its
// counters in the rate sampler.
func (s *Server) progress(ctx context.Context, v campaignView, p principal) progressView {
	var sizes map[string]int64
	if v.Definition != nil && s.audiences != nil {
		if a, err := s.audiences.Audience(ctx, v.Definition.AudienceID); err == nil {
			sizes = map[string]int64{a.ID: a.Recipients}
		}
	}
	done, total := progressOf(v, sizes)
	c := v.Counters
	rt := s.console.rates.observe(v.ID, c.Sent, done)
	pv := progressView{
		Status: string(v.Status), Counters: c, InFlight: v.InFlight, Done: done, Total: total,
		Chart: rt.Points,
		Final: v.Status == dispatcher.StatusCancelled || v.Status == dispatcher.Status(scheduler.DefMissed),
	}
	for a, ok := range s.allowedActions(v, p) {
		if ok {
			pv.Actions = append(pv.Actions, a)
		}
	}
	slices.Sort(pv.Actions)
	pct := 0.0
	if total > 0 {
		pct = math.Floor(float64(done) * 100 / float64(total))
	}
	t := map[string]string{
		"status":    string(v.Status),
		"received":  strconv.FormatInt(c.Received, 10),
		"sent":      strconv.FormatInt(c.Sent, 10),
		"failed":    strconv.FormatInt(c.Failed, 10),
		"filtered":  strconv.FormatInt(c.Filtered, 10),
		"dropped":   strconv.FormatInt(c.Dropped, 10),
		"cancelled": strconv.FormatInt(c.Cancelled, 10),
		"in_flight": strconv.FormatInt(v.InFlight, 10),
		"done":      fmt.Sprintf("%d of %d (%.0f%%)", done, total, pct),
		"rate":      rateText(v),
		"chart_top": formatRate(rt.Top) + "/s",
		"sends":     "—",
		"eta":       "—",
	}
	if rt.Known {
		t["sends"] = formatRate(rt.Sent) + "/s"
	}
	switch {
	case v.Status == dispatcher.StatusFinished || v.Status == dispatcher.StatusCancelled:
		t["eta"] = "done"
	case v.Status == dispatcher.StatusPaused:
		t["eta"] = "paused"
	case v.Status == dispatcher.StatusRunning && rt.Known:
		if eta := formatETA(total-done, rt.Done); eta != "" {
			t["eta"] = eta + " at the current rate"
		} else {
			t["eta"] = "not moving"
		}
	}
	pv.Text = t
	return pv
}

// rateText describes a campaign's rate and where it comes from.
func rateText(v campaignView) string {
	rate := "no campaign limit"
	if v.RatePerSecond > 0 {
		rate = formatRate(v.RatePerSecond) + "/s"
	}
	switch v.RateSource {
	case "operator":
		return rate + " (set by an operator)"
	case "message":
		if v.Definition != nil {
			return rate
		}
		return rate + " (from its messages)"
	}
	return rate
}

// campaignPageData is the campaign page.
type campaignPageData struct {
	C            campaignView
	Name         string
	Notification dispatcher.Notification
	Audience     *Audience
	Actions      map[string]bool
	Progress     progressView
	Audit        []AuditRecord
	// AuditError says why the trail is missing.
	AuditError string
	// RateValue is the Rate per second field; RateError its message.
	RateValue, RateError string
}

func (s *Server) campaignPage(w http.ResponseWriter, r *http.Request, p principal) error {
	return s.showCampaign(w, r, p, http.StatusOK, "", nil)
}

// showCampaign renders campaign {id}'s page with status, a message about
// the page (an action refused) and the rate field's error.
func (s *Server) showCampaign(w http.ResponseWriter, r *http.Request, p principal, status int, pageErr string, rateErr *string) error {
	ctx := r.Context()
	id := r.PathValue("id")
	v, err := s.campaignView(ctx, id)
	if err != nil {
		return err
	}
	pd := campaignPageData{C: v, Name: v.ID, Actions: s.allowedActions(v, p), Progress: s.progress(ctx, v, p)}
	if v.RatePerSecond > 0 {
		pd.RateValue = formatRate(v.RatePerSecond)
	}
	if rateErr != nil {
		pd.RateError, pd.RateValue = *rateErr, r.PostFormValue("rate_per_second")
	}
	if d := v.Definition; d != nil {
		if d.Name != "" {
			pd.Name = d.Name
		}
		_ = json.Unmarshal(d.Notification, &pd.Notification) // checked when it was saved
		if s.audiences != nil {
			if a, err := s.audiences.Audience(ctx, d.AudienceID); err == nil {
				pd.Audience = &a
			}
		}
	}
	if p.role >= roleOperator && s.auditLog != nil {
		recs, err := s.auditLog.AuditEntries(ctx, AuditQuery{Target: id, Limit: 20})
		if err != nil {
			s.log.WarnContext(ctx, "console: read the audit trail", "campaign", id, "err", err)
			pd.AuditError = "The audit trail can't be read right now."
		}
		pd.Audit = recs
	}
	data := s.pageData(w, r, p, pd.Name, "campaigns", pd)
	data.Error = pageErr
	s.render(w, r, status, "campaign", data)
	return nil
}

// campaignProgress answers the live part of the campaign page, in JSON,
// for its script to poll.
func (s *Server) campaignProgress(w http.ResponseWriter, r *http.Request, p principal) error {
	v, err := s.campaignView(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.progress(r.Context(), v, p))
}

// campaignDo is an action on campaign id; it answers what to tell the
// operator.
type campaignDo func(ctx context.Context, r *http.Request, p principal, id string) (string, error)

// errRateField is a bad Rate per second: shown next to the field.
type errRateField struct{ msg string }

func (e *errRateField) Error() string { return e.msg }

// campaignActions are the campaign page's buttons, each the same
// operation as its API route.
func (s *Server) campaignActions() map[string]campaignDo {
	engine := func(action string, do func(context.Context, string) (dispatcher.CampaignInfo, error), said string) campaignDo {
		return func(ctx context.Context, _ *http.Request, p principal, id string) (string, error) {
			_, err := s.changeCampaign(ctx, p, action, id, func(ctx context.Context) (dispatcher.CampaignInfo, error) {
				return do(ctx, id)
			})
			return said, err
		}
	}
	needDefs := func(do campaignDo) campaignDo {
		return func(ctx context.Context, r *http.Request, p principal, id string) (string, error) {
			if s.defs == nil {
				return "", errNoCampaignDefs
			}
			return do(ctx, r, p, id)
		}
	}
	return map[string]campaignDo{
		actTest: needDefs(func(ctx context.Context, _ *http.Request, p principal, id string) (string, error) {
			ans, err := s.sendTest(ctx, p, id)
			return fmt.Sprintf("Test sent to %d whitelisted devices, as campaign %s.", ans.Devices, ans.Campaign), err
		}),
		actSchedule: needDefs(func(ctx context.Context, r *http.Request, p principal, id string) (string, error) {
			d, err := s.scheduleDef(ctx, p, id)
			if d.State == scheduler.DefAwaitingApproval {
				return "Scheduled; it waits for another user's approval.", err
			}
			return "Scheduled for " + showTime(s.displayZone(r), d.FireAt) + ".", err
		}),
		actApprove: needDefs(func(ctx context.Context, r *http.Request, p principal, id string) (string, error) {
			d, err := s.approveDef(ctx, p, id)
			return "Approved; scheduled for " + showTime(s.displayZone(r), d.FireAt) + ".", err
		}),
		actPause:  engine("campaign.pause", s.ctl.PauseCampaign, "Paused."),
		actResume: engine("campaign.resume", s.ctl.ResumeCampaign, "Resumed."),
		actCancel: func(ctx context.Context, _ *http.Request, p principal, id string) (string, error) {
			_, err := s.cancel(ctx, p, id)
			return "Cancelled.", err
		},
		actRate: func(ctx context.Context, r *http.Request, p principal, id string) (string, error) {
			rate, err := parseRateField(r.PostFormValue("rate_per_second"))
			if err != nil {
				return "", err
			}
			_, err = s.changeCampaign(ctx, p, "campaign.rate", id, func(ctx context.Context) (dispatcher.CampaignInfo, error) {
				return s.ctl.SetCampaignRate(ctx, id, rate)
			})
			if rate == nil {
				return "The operator's rate is cleared: the campaign's own rate applies.", err
			}
			return "Rate set to " + formatRate(*rate) + " per second.", err
		},
	}
}

// parseRateField reads the Rate per second field: a number >= 0 (0: no
// campaign limit), or empty to clear the operator's rate.
func parseRateField(v string) (*float64, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return nil, &errRateField{"Rate per second: a number, 0 or more (0: no campaign limit); empty clears the operator's rate."}
	}
	return &f, nil
}

// campaignAction returns the handler of a campaign page's button: it
// does the action, then goes back to the page with what happened, or
// shows the page again with why not. Cancel asks for a confirmation
// first, on a page of its own, so that it works without JavaScript.
func (s *Server) campaignAction(action string, do campaignDo) apiHandler {
	return func(w http.ResponseWriter, r *http.Request, p principal) error {
		id := r.PathValue("id")
		back := "/campaign/" + url.PathEscape(id)
		if action == actCancel && r.PostFormValue("confirm") != "yes" {
			if _, err := s.campaignView(r.Context(), id); err != nil {
				return err
			}
			s.render(w, r, http.StatusOK, "confirm", s.pageData(w, r, p, "Cancel "+id, "campaigns", confirmPage{
				Question: fmt.Sprintf("Cancel campaign %s?", id),
				Detail:   "Sends stop within a second; recipients not sent yet will not get it. A cancelled campaign can't be resumed.",
				Action:   back + "/cancel", Button: "Cancel campaign", Back: back, BackText: "Keep it",
			}))
			return nil
		}
		msg, err := do(r.Context(), r, p, id)
		var rf *errRateField
		switch {
		case errors.As(err, &rf):
			return s.showCampaign(w, r, p, http.StatusBadRequest, "", &rf.msg)
		case err != nil:
			status, text := errorStatus(err)
			if status == http.StatusNotFound || status == http.StatusInternalServerError {
				return err
			}
			return s.showCampaign(w, r, p, status, text, nil)
		}
		redirectFlash(w, r, back, msg)
		return nil
	}
}

// confirmPage asks to confirm an action that can't be undone.
type confirmPage struct {
	Question, Detail string
	// Action is where the form posts, with confirm=yes; Button its
	// label.
	Action, Button string
	Back, BackText string
}
