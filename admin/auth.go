package admin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/pushd/pushd/dispatcher"
)

// SessionCookie is the name of the cookie that POST /login sets: a random
// 256-bit session id, HttpOnly, SameSite=Strict, Path=/, Secure when the
// request came over TLS. The store keeps only its SHA-256.
const SessionCookie = "pushd_session"

// Reasons of failed authentication: the values of the reason label of
// pushd_admin_auth_failures_total, a bounded set.
const (
	reasonNoCredentials  = "no_credentials"  // an API request with neither token nor cookie
	reasonBadToken       = "bad_token"       // a bearer token that is not in the tokens file
	reasonBadPassword    = "bad_password"    // a sign-in with a wrong password
	reasonUnknownUser    = "unknown_user"    // a sign-in as a user that does not exist
	reasonDisabled       = "disabled"        // a disabled user's sign-in or session
	reasonRateLimited    = "rate_limited"    // a sign-in refused by the failure limits (429)
	reasonExpiredSession = "expired_session" // a session idle or old for too long
	reasonUnknownSession = "unknown_session" // a cookie of no session (signed out, ended, forged)
)

var authFailureReasons = []string{reasonNoCredentials, reasonBadToken, reasonBadPassword, reasonUnknownUser,
	reasonDisabled, reasonRateLimited, reasonExpiredSession, reasonUnknownSession}

// touchEvery is how often a session's last use is written to the store:
// idle time is counted to the second.
const touchEvery = time.Second

var (
	errTokensOff    = unauthenticated("admin.tokens_file is not configured: bearer tokens are refused")
	errNoCredential = unauthenticated("missing Authorization: Bearer token or session cookie")
	errSessionGone  = unauthenticated("no such session (signed out or ended): sign in again")
	errSessionOld   = unauthenticated("session expired: sign in again")
	errUserDisabled = unauthenticated("user disabled")
)

func newAuthFailures(reg prometheus.Registerer) *prometheus.CounterVec {
	c := promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
		Name: "pushd_admin_auth_failures_total",
		Help: "Admin requests and sign-ins refused for their credentials, by reason.",
	}, []string{"reason"})
	for _, r := range authFailureReasons {
		c.WithLabelValues(r)
	}
	return c
}

// authenticate returns who sent r: the bearer token of its Authorization
// header if it has one, else the session of its cookie. A refusal comes
// with its reason (for the metric), unless it is pushd's own failure.
func (s *Server) authenticate(r *http.Request) (p principal, reason string, err error) {
	if h := r.Header.Get("Authorization"); h != "" {
		return s.bearer(h)
	}
	if c, err := r.Cookie(SessionCookie); err == nil && c.Value != "" && s.users != nil {
		return s.sessionPrincipal(r.Context(), c.Value)
	}
	if s.tokens == nil && s.users == nil {
		return principal{}, reasonNoCredentials, errNoTokensFile
	}
	return principal{}, reasonNoCredentials, errNoCredential
}

// bearer returns the principal of an Authorization header.
func (s *Server) bearer(h string) (principal, string, error) {
	if s.tokens == nil {
		if s.users == nil {
			return principal{}, reasonBadToken, errNoTokensFile
		}
		return principal{}, reasonBadToken, errTokensOff
	}
	scheme, token, _ := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return principal{}, reasonBadToken, unauthenticated("Authorization must be Bearer <token>")
	}
	p, ok := s.tokens.lookup(token)
	if !ok {
		return principal{}, reasonBadToken, unauthenticated("invalid token")
	}
	return p, "", nil
}

// sessionPrincipal returns the principal of a session cookie's value. A
// session that is too old, idle for too long or whose user is disabled is
// ended; one that is used is touched (at most once a second).
func (s *Server) sessionPrincipal(ctx context.Context, value string) (principal, string, error) {
	id := sessionHash(value)
	sess, u, err := s.users.Session(ctx, id)
	switch {
	case errors.Is(err, dispatcher.ErrNotFound):
		return principal{}, reasonUnknownSession, errSessionGone
	case err != nil:
		return principal{}, "", err
	}
	now := s.now()
	actor := userActor(u.Name)
	reason, refusal := "", error(nil)
	switch {
	case u.Disabled:
		reason, refusal = reasonDisabled, errUserDisabled
	case now.Sub(sess.CreatedAt) >= s.sessionMax, now.Sub(sess.LastSeen) >= s.sessionIdle:
		reason, refusal = reasonExpiredSession, errSessionOld
	}
	if refusal != nil {
		if err := s.users.EndSession(ctx, id, actor, "", now); err != nil {
			s.log.WarnContext(ctx, "cannot delete an ended session; housekeeping will", "user", u.Name, "err", err)
		}
		return principal{}, reason, refusal
	}
	if now.Sub(sess.LastSeen) >= touchEvery {
		if err := s.users.TouchSession(ctx, id, now); err != nil {
			s.log.WarnContext(ctx, "cannot record a session's use", "user", u.Name, "err", err)
		}
	}
	return principal{role: parseRole(u.Role), actor: actor, name: u.Name, session: id}, "", nil
}

// userActor is how the audit log names a signed-in user.
func userActor(name string) string { return "user:" + name }

// authFailed counts a failed authentication and logs it at info with the
// client's address (never the token or password). user, if known, is the
// user name concerned.
func (s *Server) authFailed(r *http.Request, reason, user string) {
	s.authFailures.WithLabelValues(reason).Inc()
	attrs := []slog.Attr{slog.String("reason", reason), slog.String("address", clientAddress(r)),
		slog.String("method", r.Method), slog.String("path", r.URL.Path)}
	if user != "" {
		attrs = append(attrs, slog.String("user", user))
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "admin authentication failed", attrs...)
}

// refuse answers a request that authenticate refused: API requests and
// requests with an Authorization header get the error (401 JSON); a
// browser asking for a page is sent to the sign-in page, and back to the
// page after it. A refused session's cookie is cleared.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, reason string, err error) {
	if reason == reasonUnknownSession || reason == reasonExpiredSession || reason == reasonDisabled {
		clearSessionCookie(w, r)
	}
	var ce *clientError
	if isAPIPath(r.URL.Path) || r.Header.Get("Authorization") != "" || !errors.As(err, &ce) || ce.kind != kindUnauthenticated {
		s.writeError(w, r, err)
		return
	}
	target := "/login"
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		target += "?" + url.Values{"next": {r.URL.RequestURI()}}.Encode()
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// isAPIPath reports whether path is the JSON API's (as opposed to the
// console's pages).
func isAPIPath(path string) bool { return path == "/api" || strings.HasPrefix(path, "/api/") }

// isPublicPath reports whether path is served without authentication: the
// sign-in and sign-out routes and the console's static assets.
func isPublicPath(path string) bool {
	return path == "/login" || path == "/logout" || strings.HasPrefix(path, "/static/")
}

// clientAddress is the address that failed sign-ins are counted against:
// the connection's IP address; for IPv6 its /64, which one client
// usually has whole. Forwarding headers are not trusted.
func clientAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		return netip.PrefixFrom(ip, 64).Masked().String()
	}
	return ip.String()
}

// newSessionID returns a new session cookie value (256 random bits,
// base64url) and the hash the store keeps.
func newSessionID() (value, hash string) {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	value = base64.RawURLEncoding.EncodeToString(b[:])
	return value, sessionHash(value)
}

// sessionHash is the store's key of a session cookie value: its hex
// SHA-256.
func sessionHash(value string) string {
	sum := sha256.Sum256([]byte(value))
	return hex.EncodeToString(sum[:])
}

func (s *Server) setSessionCookie(w http.ResponseWriter, r *http.Request, value string) {
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: value, Path: "/",
		MaxAge:   int(s.sessionMax / time.Second),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
}

func clearSessionCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
}
