package admin

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/pushd/pushd/dispatcher"
)

// signInFS holds the sign-in page: a minimal, semantic form whose controls
// carry DESIGN.md's names ("Username", "Password", "Sign in").
//
//go:embed web/login.html
var signInFS embed.FS

func parseSignIn() (*template.Template, error) {
	return template.ParseFS(signInFS, "web/login.html")
}

// signInPage is what the sign-in template shows.
type signInPage struct {
	// Error says why the last attempt failed.
	Error string
	// Username is the name last typed.
	Username string
	// Next is the same-origin path to go to once signed in.
	Next string
}

// maxSignInBytes bounds the body of POST /login.
const maxSignInBytes = 16 << 10

// Defaults of the failed sign-in limits.
const (
	defaultUserFailures    = 5
	defaultAddressFailures = 20
	defaultFailureWindow   = 15 * time.Minute
	// failureKeys bounds how many user names, and how many addresses,
	// the limits remember.
	failureKeys = 10000
)

// Messages of the sign-in page.
const (
	msgMissing  = "Enter your username and password."
	msgWrong    = "Wrong username or password."
	msgDisabled = "This account is disabled."
)

// signInForm answers GET /login with the sign-in page.
func (s *Server) signInForm(w http.ResponseWriter, r *http.Request) {
	s.renderSignIn(w, r, http.StatusOK, signInPage{Next: safeNext(r.URL.Query().Get("next"))})
}

// signIn answers POST /login (form fields username, password and
// optionally next): a session cookie and 303 to next (or /) on success;
// the page again with the error (or, for clients that accept JSON and not
// HTML, {"error": ...}) on failure. Failures are limited per user name
// and per client address (429 with Retry-After), counted, logged and
// audited.
func (s *Server) signIn(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if s.users == nil {
		s.writeError(w, r, errNoUsers)
		return
	}
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/x-www-form-urlencoded" {
		s.writeError(w, r, unsupportedMediaType("Content-Type must be application/x-www-form-urlencoded, got %q", ct))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxSignInBytes)
	if err := r.ParseForm(); err != nil {
		var tooLarge *http.MaxBytesError
		if !errors.As(err, &tooLarge) {
			err = badRequest("sign-in form: %v", err)
		}
		s.writeError(w, r, err)
		return
	}
	name := strings.ToLower(strings.TrimSpace(r.PostForm.Get("username")))
	pw := r.PostForm.Get("password")
	page := signInPage{Username: name, Next: safeNext(r.PostForm.Get("next"))}
	if name == "" || pw == "" {
		page.Error = msgMissing
		s.renderSignIn(w, r, http.StatusBadRequest, page)
		return
	}

	now := s.now()
	addr := clientAddress(r)
	if wait := s.signInWait(r, name, addr, now); wait > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
		page.Error = "Too many failed sign-ins. Try again in " + roughly(wait) + "."
		s.renderSignIn(w, r, http.StatusTooManyRequests, page)
		return
	}

	u, err := s.users.User(ctx, name)
	known := err == nil
	if err != nil && !errors.Is(err, dispatcher.ErrNotFound) {
		s.writeError(w, r, err)
		return
	}
	hash := u.PasswordHash
	if !known {
		// Take as long as for a user that exists.
		hash = s.dummyHash()
	}
	ok, err := s.comparePassword(ctx, hash, pw)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	reason := ""
	switch {
	case !known:
		reason, page.Error = reasonUnknownUser, msgWrong
	case !ok:
		reason, page.Error = reasonBadPassword, msgWrong
	case u.Disabled:
		reason, page.Error = reasonDisabled, msgDisabled
	}
	if reason != "" {
		s.userFailures.fail(name, now)
		s.addressFailures.fail(addr, now)
		target := ""
		if known {
			target = name // names that do not exist may be passwords typed in the wrong field
		}
		s.signInFailed(r, reason, target, addr, now)
		s.renderSignIn(w, r, http.StatusUnauthorized, page)
		return
	}

	s.userFailures.reset(name)
	if c, err := r.Cookie(SessionCookie); err == nil && c.Value != "" {
		// A new session id at each sign-in; the browser's previous
		// session, whoever it was, ends.
		if err := s.users.EndSession(ctx, sessionHash(c.Value), "", "", now); err != nil {
			s.log.WarnContext(ctx, "cannot end the previous session of a browser that signed in", "err", err)
		}
	}
	value, id := newSessionID()
	if err := s.users.CreateSession(ctx, Session{IDHash: id, User: u.Name, CreatedAt: now, LastSeen: now, Address: addr}, userActor(u.Name)); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.setSessionCookie(w, r, value)
	http.Redirect(w, r, page.Next, http.StatusSeeOther)
}

// signInWait returns how long a sign-in as name from addr is refused, 0
// if it may try. A refusal is counted and logged every time, and audited
// once per key and window (a flood must not become a flood of writes).
func (s *Server) signInWait(r *http.Request, name, addr string, now time.Time) time.Duration {
	du, firstU := s.userFailures.wait(name, now)
	da, firstA := s.addressFailures.wait(addr, now)
	wait := max(du, da)
	if wait == 0 {
		return 0
	}
	s.authFailed(r, reasonRateLimited, "")
	if firstU || firstA {
		s.audit(r.Context(), AuditEntry{At: now, Actor: addressActor(addr), Action: "auth.login_failed",
			After: s.marshalAudit(map[string]string{"reason": reasonRateLimited, "address": addr})})
	}
	return wait
}

// signInFailed counts, logs and audits a failed sign-in. target is the
// user name if it exists.
func (s *Server) signInFailed(r *http.Request, reason, target, addr string, now time.Time) {
	s.authFailed(r, reason, target)
	s.audit(r.Context(), AuditEntry{At: now, Actor: addressActor(addr), Action: "auth.login_failed", Target: target,
		After: s.marshalAudit(map[string]string{"reason": reason, "address": addr})})
}

// addressActor is how the audit log names a client that is not signed in.
func addressActor(addr string) string { return "address:" + addr }

// signOut answers POST /logout: it ends the session of the cookie (in the
// store, audited as auth.logout), clears the cookie and sends the browser
// to the sign-in page.
func (s *Server) signOut(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(SessionCookie); err == nil && c.Value != "" && s.users != nil {
		id := sessionHash(c.Value)
		_, u, err := s.users.Session(r.Context(), id)
		if err == nil {
			err = s.users.EndSession(r.Context(), id, userActor(u.Name), "auth.logout", s.now())
		}
		if err != nil && !errors.Is(err, dispatcher.ErrNotFound) {
			s.writeError(w, r, err)
			return
		}
	}
	clearSessionCookie(w, r)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// renderSignIn answers with the sign-in page, or with page.Error as JSON
// to a client that accepts JSON and not HTML.
func (s *Server) renderSignIn(w http.ResponseWriter, r *http.Request, status int, page signInPage) {
	if page.Error != "" && wantsJSON(r) {
		_ = writeJSON(w, status, errorBody{Error: page.Error})
		return
	}
	var buf bytes.Buffer
	if err := s.signInTmpl.Execute(&buf, page); err != nil {
		s.writeError(w, r, fmt.Errorf("sign-in page: %w", err))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", consolePolicy)
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// wantsJSON reports whether the client asks for JSON rather than HTML.
func wantsJSON(r *http.Request) bool {
	a := r.Header.Get("Accept")
	return strings.Contains(a, "application/json") && !strings.Contains(a, "text/html")
}

// safeNext returns next if it is a path on this origin, "/" otherwise:
// a sign-in must not send the browser to another site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") ||
		strings.ContainsFunc(next, func(c rune) bool { return c < 0x20 || c == 0x7f || c == '\\' }) {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Path == "/login" || u.Path == "/logout" {
		return "/"
	}
	return next
}

// roughly says how long d is, for people.
func roughly(d time.Duration) string {
	if d > time.Minute {
		return strconv.Itoa(int((d+time.Minute-1)/time.Minute)) + " minutes"
	}
	return strconv.Itoa(int((d+time.Second-1)/time.Second)) + " seconds"
}

// dummyHash returns a hash of a random password, compared with what is
// typed for a user that does not exist, so that such a sign-in takes as
// long as a wrong password: the time does not tell which names exist.
func (s *Server) dummyHash() string {
	s.dummyOnce.Do(func() {
		value, _ := newSessionID()
		h, err := bcrypt.GenerateFromPassword([]byte(value[:maxPasswordBytes/2]), s.passwordCost)
		if err == nil {
			s.dummy = string(h)
		}
	})
	return s.dummy
}
