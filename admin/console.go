package admin

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The console: server-rendered pages over the same operations as the JSON
// API, for operators in a browser. Every page works without JavaScript
// (forms post, then redirect); a little plain JavaScript makes the
// progress of a campaign live and shows an upload's progress. Templates
// and assets are embedded and parsed once; nothing is loaded from
// outside the process. See docs/console.md.

//go:embed web/templates web/static
var consoleFS embed.FS

// Cookies of the console. Neither is a secret.
const (
	// zoneCookie holds the operator's display time zone.
	zoneCookie = "pushd_zone"
	// flashCookie carries a message across a redirect, read once.
	flashCookie = "pushd_flash"
)

// consolePolicy is the Content-Security-Policy of the pages: nothing from
// outside the process, no inline script or style.
const consolePolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// consoleZones are the display zones suggested in the zone selector;
// any IANA name is accepted.
var consoleZones = []string{
	"UTC", "Asia/Seoul", "Asia/Tokyo", "Asia/Shanghai", "Asia/Singapore", "Asia/Kolkata",
	"Europe/London", "Europe/Paris", "Europe/Berlin", "America/New_York", "America/Chicago",
	"America/Los_Angeles", "America/Sao_Paulo", "Australia/Sydney",
}

// console is the state of the console: its parsed templates, and the
// recent samples of the campaigns' counters that its rates and charts
// come from.
type console struct {
	pages pages
	rates *rateSampler
}

// pages holds the parsed templates, one per page, each with the layout.
type pages map[string]*template.Template

// parsePages parses every page of web/templates with the layout
// (layout.html, which also holds the parts the pages share).
func parsePages() (pages, error) {
	const layoutFile = "web/templates/layout.html"
	base, err := template.New("").Funcs(templateFuncs).ParseFS(consoleFS, layoutFile)
	if err != nil {
		return nil, fmt.Errorf("console templates: %w", err)
	}
	names, err := fs.Glob(consoleFS, "web/templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("console templates: %w", err)
	}
	out := make(pages, len(names))
	for _, n := range names {
		if n == layoutFile {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(consoleFS, n)
		if err != nil {
			return nil, fmt.Errorf("console templates: %w", err)
		}
		out[strings.TrimSuffix(strings.TrimPrefix(n, "web/templates/"), ".html")] = t
	}
	return out, nil
}

var templateFuncs = template.FuncMap{
	// path escapes a campaign id or other name for a URL path segment.
	"path": url.PathEscape,
	"when": showTime,
	// wall shows a send_at as it was given, with a space for the T.
	"wall": func(s string) string { return strings.Replace(s, "T", " ", 1) },
	// iso is a time for a <time datetime>.
	"iso":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"rate": formatRate,
	"json": indentJSON,
	"has":  func(set map[string]bool, k string) bool { return set[k] },
	// fe is the message of field id, for the fielderror template.
	"fe": func(errs fieldErrors, id string) *fieldMessage {
		if msg := errs[id]; msg != "" {
			return &fieldMessage{ID: id, Msg: msg}
		}
		return nil
	},
	"add": func(a, b int) int { return a + b },
}

// showTime shows a time in the operator's zone, with the zone's
// abbreviation; "—" for the zero time.
func showTime(loc *time.Location, t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.In(loc).Format("2006-01-02 15:04:05 MST")
}

// indentJSON indents a JSON value for reading; anything else comes back
// as it is.
func indentJSON(raw json.RawMessage) string {
	var b bytes.Buffer
	if len(raw) == 0 || json.Indent(&b, raw, "", "  ") != nil {
		return string(raw)
	}
	return b.String()
}

// formatRate writes a rate of sends per second.
func formatRate(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100 || v == math.Trunc(v):
		return strconv.FormatInt(int64(math.Round(v)), 10)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// layout is what every page gets: who is looking, in which zone, and
// the page's own data in Page.
type layout struct {
	Title string
	// Section is the nav entry of the page: campaigns, audiences,
	// lists, audit or users.
	Section string
	Role    string
	Actor   string
	// CanChange: operators and admins; viewers see no action.
	CanChange bool
	// CanAudit: the audit log is for operators and admins.
	CanAudit bool
	IsAdmin  bool
	Zone     *time.Location
	Zones    []string
	// Here is the page's path and query, to come back to after the zone
	// changes.
	Here  string
	Flash string
	// Error is a message about the whole page, such as a refused action.
	Error string
	Page  any
}

// pageData returns the layout of a page for r.
func (s *Server) pageData(w http.ResponseWriter, r *http.Request, p principal, title, section string, page any) *layout {
	return &layout{
		Title:     title,
		Section:   section,
		Role:      p.role.String(),
		Actor:     p.actor,
		CanChange: p.role >= roleOperator,
		CanAudit:  p.role >= roleOperator && s.auditLog != nil,
		IsAdmin:   p.role >= roleAdmin,
		Zone:      s.displayZone(r),
		Zones:     consoleZones,
		Here:      r.URL.RequestURI(),
		Flash:     takeFlash(w, r),
		Page:      page,
	}
}

// render writes page name with data and status. The page is rendered
// into memory first, so that a template failure is a clean 500.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, data *layout) {
	t, ok := s.console.pages[name]
	var b bytes.Buffer
	err := errors.New("no such page")
	if ok {
		err = t.ExecuteTemplate(&b, "layout", data)
	}
	if err != nil {
		s.log.ErrorContext(r.Context(), "console page failed", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", consolePolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// pageError answers an error of a page as a page, with the status the
// API would give it.
func (s *Server) pageError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := errorStatus(err)
	if status == http.StatusInternalServerError {
		s.log.ErrorContext(r.Context(), "console request failed",
			"method", r.Method, "route", r.Pattern, "path", r.URL.Path, "err", err)
	}
	p := principalFrom(r.Context())
	data := s.pageData(w, r, p, http.StatusText(status), "", nil)
	data.Error = msg
	s.render(w, r, status, "error", data)
}

// page registers a console page or form for principals with role need
// or above; its errors are answered as pages.
func (s *Server) page(pattern string, need role, h apiHandler) {
	s.pageBody(pattern, need, s.maxBody, h)
}

// pageBody is page with request bodies bounded by maxBody.
func (s *Server) pageBody(pattern string, need role, maxBody int64, h apiHandler) {
	s.register(pattern, need, maxBody, h, s.pageError)
}

// consoleRoutes registers the console's pages. Each GET is for viewers;
// each POST needs the role of the API route it stands for, and is
// refused (403) otherwise, whatever the page showed.
func (s *Server) consoleRoutes() {
	pg, err := parsePages()
	if err != nil {
		// The templates are compiled in: a test catches this.
		panic(err)
	}
	s.console = console{pages: pg, rates: newRateSampler(s.now)}

	static, _ := fs.Sub(consoleFS, "web/static")
	files := http.StripPrefix("/static/", http.FileServerFS(static))
	s.page("GET /static/{file...}", roleNone, func(w http.ResponseWriter, r *http.Request, _ principal) error {
		w.Header().Set("Cache-Control", "private, max-age=300")
		files.ServeHTTP(w, r)
		return nil
	})
	s.page("GET /{$}", roleViewer, func(w http.ResponseWriter, r *http.Request, _ principal) error {
		http.Redirect(w, r, "/campaigns", http.StatusSeeOther)
		return nil
	})
	s.page("POST /console/zone", roleViewer, s.setZone)

	s.page("GET /campaigns", roleViewer, s.campaignsPage)
	s.page("GET /campaigns/new", roleOperator, s.defsRoute(s.newCampaignPage))
	s.page("POST /campaigns/new", roleOperator, s.defsRoute(s.newCampaignForm))
	s.page("GET /campaign/{id}", roleViewer, s.campaignPage)
	s.handle("GET /campaign/{id}/progress", roleViewer, s.campaignProgress)
	s.page("GET /campaign/{id}/edit", roleOperator, s.defsRoute(s.editCampaignPage))
	s.page("POST /campaign/{id}/edit", roleOperator, s.defsRoute(s.editCampaignForm))
	for action, do := range s.campaignActions() {
		s.page("POST /campaign/{id}/"+action, roleOperator, s.campaignAction(action, do))
	}

	s.page("GET /audiences", roleViewer, s.audienceRoute(s.audiencesPage))
	s.pageBody("POST /audiences", roleOperator, s.maxAudience, s.audienceRoute(s.uploadAudience))
	s.page("POST /audiences/{id}/delete", roleOperator, s.audienceRoute(s.deleteAudienceForm))

	s.page("GET /lists", roleViewer, func(w http.ResponseWriter, r *http.Request, _ principal) error {
		http.Redirect(w, r, "/lists/blacklist", http.StatusSeeOther)
		return nil
	})
	s.page("GET /lists/{name}", roleViewer, s.listRoute(s.listPage))
	s.page("POST /lists/{name}/add", roleOperator, s.listRoute(s.addListForm))
	s.page("POST /lists/{name}/remove", roleOperator, s.listRoute(s.removeListForm))
	s.pageBody("POST /lists/{name}/import", roleOperator, s.maxImport, s.listRoute(s.importListForm))

	s.page("GET /audit", roleOperator, s.auditPage)
	s.page("GET /users", roleAdmin, s.usersPage)
	s.page("POST /users", roleAdmin, s.usersRoute(s.addUserForm))
	for action, h := range s.userForms() {
		s.page("POST /users/{name}/"+action, roleAdmin, s.usersRoute(h))
	}
}

// displayZone is the operator's zone: the zone cookie's if it names a
// zone, else admin.time_zone.
func (s *Server) displayZone(r *http.Request) *time.Location {
	if c, err := r.Cookie(zoneCookie); err == nil {
		if name, err := url.QueryUnescape(c.Value); err == nil && name != "" {
			if loc, err := time.LoadLocation(name); err == nil {
				return loc
			}
		}
	}
	loc, err := time.LoadLocation(s.timeZone)
	if err != nil {
		return time.UTC
	}
	return loc
}

// setZone stores the operator's display zone in a cookie and goes back to
// the page it came from.
func (s *Server) setZone(w http.ResponseWriter, r *http.Request, _ principal) error {
	name := strings.TrimSpace(r.PostFormValue("zone"))
	if _, err := time.LoadLocation(name); err != nil || name == "" {
		return badRequest("time zone %q: want an IANA name such as Asia/Seoul", name)
	}
	http.SetCookie(w, &http.Cookie{
		Name: zoneCookie, Value: url.QueryEscape(name), Path: "/",
		MaxAge: 365 * 24 * 3600, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
	http.Redirect(w, r, localPath(r.PostFormValue("back"), "/campaigns"), http.StatusSeeOther)
	return nil
}

// localPath returns p if it is a path on this server, else def: a
// redirect never leaves the console.
func localPath(p, def string) string {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") {
		return def
	}
	return p
}

// redirectFlash answers a form post: back to to, with msg shown once on
// the page there.
func redirectFlash(w http.ResponseWriter, r *http.Request, to, msg string) {
	http.SetCookie(w, flash(r, msg))
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// flash is the cookie that shows msg once on the next page.
func flash(r *http.Request, msg string) *http.Cookie {
	return &http.Cookie{
		Name: flashCookie, Value: url.QueryEscape(msg), Path: "/",
		MaxAge: 60, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	}
}

// takeFlash returns the message of the flash cookie, and clears it.
func takeFlash(w http.ResponseWriter, r *http.Request) string {
	c, err := r.Cookie(flashCookie)
	if err != nil {
		return ""
	}
	http.SetCookie(w, &http.Cookie{Name: flashCookie, Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	msg, err := url.QueryUnescape(c.Value)
	if err != nil {
		return ""
	}
	return msg
}

// fieldMessage is a message next to the field ID.
type fieldMessage struct{ ID, Msg string }

// fieldErrors are a form's messages by field name; "" is the form's own.
type fieldErrors map[string]string

// add records msg for field, keeping the first one.
func (fe fieldErrors) add(field, msg string) {
	if _, ok := fe[field]; !ok {
		fe[field] = msg
	}
}

// formError puts an operation's error next to the field its message
// names: the API's errors start with the field ("send_at: ..."), or
// name it after a prefix ("create campaign \"x\": audience: ..."). Of
// fields (form name, text that names it), the first whose text starts
// the message or a word of it wins; otherwise the message is the form's
// own. It returns the status to answer with; a server failure is logged
// and shown as such.
func (s *Server) formError(r *http.Request, fe fieldErrors, err error, fields [][2]string) int {
	status, msg := errorStatus(err)
	if status == http.StatusInternalServerError {
		s.log.ErrorContext(r.Context(), "console request failed",
			"method", r.Method, "route", r.Pattern, "path", r.URL.Path, "err", err)
		fe.add("", "pushd failed to do it; the error is logged")
		return status
	}
	for _, f := range fields {
		if i := strings.Index(msg, f[1]); i == 0 || i > 0 && msg[i-1] == ' ' {
			fe.add(f[0], msg)
			return status
		}
	}
	fe.add("", msg)
	return status
}
