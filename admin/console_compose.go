package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/scheduler"
)

// The new and edit campaign forms. Preview renders the notification with
// the senders' own renderers (renderPreview, as POST
// /api/campaigns/{id}/preview does) without saving it; Save draft
// creates or edits the campaign as the API does.

// dataRow is a key/value pair of a notification's data.
type dataRow struct{ Key, Value string }

// blankDataRows is how many empty data rows the form offers.
const blankDataRows = 2

// composeForm is the new or edit campaign form, as the operator filled
// it in.
type composeForm struct {
	// Edit: the campaign ID exists and can't change.
	Edit  bool
	State string

	ID, Name, Title, Body string
	Data                  []dataRow
	DeepLink, Sound       string
	Badge, Priority, TTL  string
	CollapseKey           string
	Topic, PushType       string
	Channel               string

	Audience, SendAt, TimeZone, Rate string
	RecipientTimeZone                bool

	Errors    fieldErrors
	Preview   *previewView
	Audiences []Audience
	Zones     []string
	PushTypes []string
}

// previewView is the preview of a notification on both platforms.
type previewView struct {
	Title, Body, App string
	Sides            []previewSide
}

// previewSide is the preview on one platform.
type previewSide struct {
	// Name and Class name the platform; Payload what its provider gets;
	// SizeID is the id of the size's text; Now how the platform says
	// "now"; Channel the FCM channel, on Android.
	Name, Class, Payload, SizeID, Now, Channel string
	preview
	// Pretty is the payload, indented.
	Pretty string
}

// formPushTypes are offered in the push type field, "" first (alert).
var formPushTypes = []string{"", "alert", "background", "voip", "complication", "fileprovider",
	"mdm", "location", "liveactivity", "pushtotalk", "widgets", "controls"}

// composeFields map the API's field names in error messages to the
// form's fields, most specific first.
var composeFields = [][2]string{
	{"deeplink", "notification.data.deeplink: "},
	{"data", "notification.data"},
	{"priority", "notification.priority: "},
	{"ttl", "notification.ttl_seconds: "},
	{"badge", "notification.badge: "},
	{"collapse_key", "notification.collapse_key: "},
	{"apns_push_type", "notification.apns.push_type: "},
	{"send_at", "send_at: "},
	{"time_zone", "time_zone: "},
	{"audience", "audience: "},
	{"rate_per_second", "rate_per_second: "},
	{"id", "id: "},
	{"id", `id "`},
	{"body", "notification: "},
}

// readComposeForm reads the form of r.
func readComposeForm(r *http.Request) composeForm {
	v := func(k string) string { return strings.TrimSpace(r.PostFormValue(k)) }
	f := composeForm{
		ID: v("id"), Name: v("name"), Title: r.PostFormValue("title"), Body: r.PostFormValue("body"),
		DeepLink: v("deeplink"), Sound: v("sound"), Badge: v("badge"), Priority: v("priority"), TTL: v("ttl"),
		CollapseKey: v("collapse_key"), Topic: v("apns_topic"), PushType: v("apns_push_type"), Channel: v("fcm_channel"),
		Audience: v("audience"), SendAt: v("send_at"), TimeZone: v("time_zone"), Rate: v("rate_per_second"),
		RecipientTimeZone: r.PostFormValue("recipient_time_zone") != "",
		Errors:            fieldErrors{},
	}
	keys, values := r.PostForm["data_key"], r.PostForm["data_value"]
	for i, k := range keys {
		row := dataRow{Key: strings.TrimSpace(k)}
		if i < len(values) {
			row.Value = values[i]
		}
		if row.Key != "" || row.Value != "" {
			f.Data = append(f.Data, row)
		}
	}
	return f
}

// notification returns the notification the form describes, or records
// what is wrong with its fields.
func (f *composeForm) notification() json.RawMessage {
	n := dispatcher.Notification{
		Title: f.Title, Body: f.Body, Sound: f.Sound, Priority: f.Priority, CollapseKey: f.CollapseKey,
		APNs: dispatcher.APNsOptions{Topic: f.Topic, PushType: f.PushType},
		FCM:  dispatcher.FCMOptions{ChannelID: f.Channel},
	}
	whole := func(field, s string) *int {
		if s == "" {
			return nil
		}
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			f.Errors.add(field, "A whole number, 0 or more.")
			return nil
		}
		return &v
	}
	n.Badge, n.TTLSeconds = whole("badge", f.Badge), whole("ttl", f.TTL)
	if len(f.Data) > 0 || f.DeepLink != "" {
		n.Data = make(map[string]json.RawMessage)
	}
	for i, row := range f.Data {
		switch {
		case row.Key == "":
			f.Errors.add("data", fmt.Sprintf("Data row %d has a value but no key.", i+1))
			continue
		case n.Data[row.Key] != nil:
			f.Errors.add("data", fmt.Sprintf("Data key %q is given twice.", row.Key))
			continue
		}
		n.Data[row.Key], _ = json.Marshal(row.Value) // a string: can't fail
	}
	if f.DeepLink != "" {
		if n.Data["deeplink"] != nil {
			f.Errors.add("deeplink", "The deep link is data key \"deeplink\"; remove that data row or this field.")
		}
		n.Data["deeplink"], _ = json.Marshal(f.DeepLink)
	}
	raw, _ := json.Marshal(n) // strings, numbers and raw JSON strings: can't fail
	return raw
}

// request returns the API request the form stands for.
func (f *composeForm) request(defaultZone string) *campaignRequest {
	req := &campaignRequest{Notification: f.notification()}
	if !f.Edit && f.ID != "" {
		req.ID = &f.ID
	}
	name := f.Name
	if name == "" {
		name = f.ID
	}
	req.Name = &name
	req.Audience = &f.Audience
	rate := 0.0
	if f.Rate != "" {
		v, err := strconv.ParseFloat(f.Rate, 64)
		if err != nil {
			f.Errors.add("rate_per_second", "A number, 0 or more (0: no campaign limit).")
		}
		rate = v
	}
	req.RatePerSecond = &rate
	req.SendAt = &f.SendAt
	zone := f.TimeZone
	if zone == "" {
		zone = defaultZone
	}
	req.TimeZone = &zone
	req.RecipientTimeZone = &f.RecipientTimeZone
	return req
}

// formOf fills the form from a stored campaign.
func formOf(d scheduler.Definition) composeForm {
	f := composeForm{
		Edit: true, State: string(d.State), ID: d.ID, Name: d.Name, Audience: d.AudienceID,
		SendAt: d.SendAt, TimeZone: d.TimeZone, RecipientTimeZone: d.RecipientTimeZone,
		Rate: formatRate(d.RatePerSecond), Errors: fieldErrors{},
	}
	if d.RatePerSecond == 0 {
		f.Rate = ""
	}
	var n dispatcher.Notification
	_ = json.Unmarshal(d.Notification, &n) // checked when it was saved
	f.Title, f.Body, f.Sound, f.Priority, f.CollapseKey = n.Title, n.Body, n.Sound, n.Priority, n.CollapseKey
	f.Topic, f.PushType, f.Channel = n.APNs.Topic, n.APNs.PushType, n.FCM.ChannelID
	if n.Badge != nil {
		f.Badge = strconv.Itoa(*n.Badge)
	}
	if n.TTLSeconds != nil {
		f.TTL = strconv.Itoa(*n.TTLSeconds)
	}
	keys := make([]string, 0, len(n.Data))
	for k := range n.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		var s string
		if json.Unmarshal(n.Data[k], &s) != nil {
			s = string(n.Data[k]) // not a string: shown, and saved, as text
		}
		if k == "deeplink" {
			f.DeepLink = s
			continue
		}
		f.Data = append(f.Data, dataRow{Key: k, Value: s})
	}
	return f
}

// showCompose renders the form with status.
func (s *Server) showCompose(w http.ResponseWriter, r *http.Request, p principal, status int, f composeForm) error {
	as, err := s.audienceList(r.Context())
	if err != nil {
		return err
	}
	f.Audiences, f.Zones, f.PushTypes = as, consoleZones, formPushTypes
	for range blankDataRows {
		f.Data = append(f.Data, dataRow{})
	}
	title := "New campaign"
	if f.Edit {
		title = "Edit " + f.ID
	}
	s.render(w, r, status, "compose", s.pageData(w, r, p, title, "campaigns", f))
	return nil
}

// audienceList returns the audiences for the form's select; none when
// audiences are not configured.
func (s *Server) audienceList(ctx context.Context) ([]Audience, error) {
	if s.audiences == nil {
		return nil, nil
	}
	return s.audiences.Audiences(ctx)
}

func (s *Server) newCampaignPage(w http.ResponseWriter, r *http.Request, p principal) error {
	return s.showCompose(w, r, p, http.StatusOK, composeForm{TimeZone: s.timeZone, Errors: fieldErrors{}})
}

func (s *Server) editCampaignPage(w http.ResponseWriter, r *http.Request, p principal) error {
	d, err := s.defs.CampaignDef(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if !editable(d.State) {
		return fmt.Errorf("campaign %q is %s; only a draft, scheduled or missed campaign can be edited: %w", d.ID, d.State, dispatcher.ErrConflict)
	}
	return s.showCompose(w, r, p, http.StatusOK, formOf(d))
}

func editable(st scheduler.DefState) bool {
	return st == scheduler.DefDraft || st == scheduler.DefScheduled || st == scheduler.DefMissed
}

func (s *Server) newCampaignForm(w http.ResponseWriter, r *http.Request, p principal) error {
	return s.composeSubmit(w, r, p, readComposeForm(r))
}

func (s *Server) editCampaignForm(w http.ResponseWriter, r *http.Request, p principal) error {
	d, err := s.defs.CampaignDef(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	f := readComposeForm(r)
	f.Edit, f.ID, f.State = true, d.ID, string(d.State)
	return s.composeSubmit(w, r, p, f)
}

// composeSubmit handles the form's buttons: "Add data row" shows it again
// with one more row, Preview shows it with the preview, Save draft saves
// it and goes to the campaign's page.
func (s *Server) composeSubmit(w http.ResponseWriter, r *http.Request, p principal, f composeForm) error {
	switch r.PostFormValue("action") {
	case "addrow":
		f.Data = append(f.Data, make([]dataRow, 1)...)
		return s.showCompose(w, r, p, http.StatusOK, f)
	case "preview":
		raw := f.notification()
		status := http.StatusOK
		if len(f.Errors) == 0 {
			ans, err := renderPreview(raw)
			f.Preview = previewOf(raw, ans)
			if err != nil {
				status = s.formError(r, f.Errors, err, composeFields)
			}
		} else {
			status = http.StatusBadRequest
		}
		return s.showCompose(w, r, p, status, f)
	}
	req := f.request(s.timeZone)
	if len(f.Errors) > 0 {
		return s.showCompose(w, r, p, http.StatusBadRequest, f)
	}
	var d scheduler.Definition
	var err error
	if f.Edit {
		d, err = s.editDef(r.Context(), p, f.ID, req)
	} else {
		d, err = s.createDef(r.Context(), p, req)
	}
	if err != nil {
		return s.showCompose(w, r, p, s.formError(r, f.Errors, err, composeFields), f)
	}
	msg := "Draft saved."
	if f.Edit {
		msg = "Saved."
	}
	redirectFlash(w, r, "/campaign/"+url.PathEscape(d.ID), msg)
	return nil
}

// previewOf is the preview of the notification raw, rendered as ans.
func previewOf(raw json.RawMessage, ans previewAnswer) *previewView {
	var n dispatcher.Notification
	_ = json.Unmarshal(raw, &n) // made by the form: valid
	pv := &previewView{Title: n.Title, Body: n.Body, App: n.APNs.Topic}
	if pv.App == "" {
		pv.App = "Your app"
	}
	pv.Sides = []previewSide{
		{Name: "iOS", Class: "ios", Payload: "APNs payload", SizeID: "apns-size", Now: "now",
			preview: ans.APNs, Pretty: indentJSON(ans.APNs.Payload)},
		{Name: "Android", Class: "android", Payload: "FCM message", SizeID: "fcm-size", Now: "· now", Channel: n.FCM.ChannelID,
			preview: ans.FCM, Pretty: indentJSON(ans.FCM.Payload)},
	}
	return pv
}
