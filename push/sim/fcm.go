package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// FCM limits.
const (
	fcmMaxRequest = 64 << 10 // bytes of a messages:send request body
	fcmMaxData    = 4096     // bytes of message.data keys and values
)

// Token prefixes with a fixed FCM answer, checked before the error mix.
const (
	FCMUnregisteredPrefix   = "unregistered"   // 404 NOT_FOUND, errorCode UNREGISTERED
	FCMInvalidPrefix        = "invalid"        // 400 INVALID_ARGUMENT
	FCMThirdPartyAuthPrefix = "thirdpartyauth" // 401 UNAUTHENTICATED, errorCode THIRD_PARTY_AUTH_ERROR
)

// fcmRequest is the body of messages:send. Only the fields the simulator
// checks are decoded.
type fcmRequest struct {
	ValidateOnly      bool        `json:"validate_only"`
	ValidateOnlyCamel bool        `json:"validateOnly"`
	Message           *fcmMessage `json:"message"`
}

type fcmMessage struct {
	Token     string                     `json:"token"`
	Topic     string                     `json:"topic"`
	Condition string                     `json:"condition"`
	Data      map[string]json.RawMessage `json:"data"`
}

// fcmProblem is an FCM error answer about to be written.
type fcmProblem struct {
	kind    kind
	message string
	field   string // for a google.rpc.BadRequest field violation, "" for none
}

// handleFCM answers POST /v1/projects/{project}/messages:send as FCM HTTP
// v1 does.
func (s *Server) handleFCM(w http.ResponseWriter, r *http.Request) {
	st := s.state.Load()
	project := r.PathValue("project")

	var (
		body  []byte
		req   fcmRequest
		token string
	)
	p := fcmProblem{kind: kindOK}
	if auth := header(r.Header, "Authorization"); auth != "" {
		raw, ok := cutPrefixFold(auth, "bearer ")
		if !ok || !s.validAccessToken(strings.TrimSpace(raw)) {
			p = fcmProblem{kind: kindFCMUnauthenticated, message: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential."}
		}
	}
	if p.kind == kindOK && r.ContentLength > fcmMaxRequest {
		p = fcmProblem{kind: kindFCMInvalidArgument, message: fmt.Sprintf("Request payload size exceeds the limit: %d bytes.", fcmMaxRequest)}
	}
	if r.ContentLength <= fcmMaxRequest {
		buf, err := s.readBody(r, fcmMaxRequest)
		defer s.putBuf(buf)
		if err != nil {
			s.count(provFCM, kindCanceled, "", false, st)
			return
		}
		body = buf.Bytes()
	}
	if p.kind == kindOK {
		p = checkFCM(body, &req)
		if req.Message != nil {
			token = req.Message.Token
		}
	}
	if p.kind == kindOK && token != "" {
		switch {
		case strings.HasPrefix(token, FCMUnregisteredPrefix):
			p = fcmProblem{kind: kindFCMUnregistered, message: "Requested entity was not found."}
		case strings.HasPrefix(token, FCMInvalidPrefix):
			p = fcmProblem{kind: kindFCMInvalidArgument, message: "The registration token is not a valid FCM registration token", field: "message.token"}
		case strings.HasPrefix(token, FCMThirdPartyAuthPrefix):
			p = fcmProblem{kind: kindFCMThirdPartyAuth, message: "Auth error from APNS or Web Push Service"}
		}
	}
	if p.kind == kindOK {
		p = fcmMixProblem(s.draw(provFCM, st))
	}
	dryRun := req.ValidateOnly || req.ValidateOnlyCamel
	if p.kind == kindOK && dryRun {
		p.kind = kindDryRun
	}
	s.record(provFCM, r, token, body, st)
	if !delay(r, st) {
		s.count(provFCM, kindCanceled, token, false, st)
		return
	}

	h := w.Header()
	h["Content-Type"] = []string{"application/json; charset=UTF-8"}
	if p.kind == kindOK || p.kind == kindDryRun {
		b := make([]byte, 0, 96+len(project))
		b = append(b, `{"name":"projects/`...)
		b = append(b, project...)
		b = append(b, "/messages/"...)
		if dryRun {
			b = append(b, "fake_message_id"...)
		} else {
			b = append(b, "0:"...)
			b = strconv.AppendInt(b, time.Now().UnixMicro(), 10)
			b = append(b, '%')
			b = strconv.AppendUint(b, s.nextMessage.Add(1), 16)
		}
		b = append(b, "\"}\n"...)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(b)
		s.count(provFCM, p.kind, token, false, st)
		return
	}
	retry := writeFCMError(w, p, st)
	s.count(provFCM, p.kind, token, retry, st)
}

// handleFCMOther answers unknown paths under /v1/.
func (s *Server) handleFCMOther(w http.ResponseWriter, r *http.Request) {
	st := s.state.Load()
	p := fcmProblem{kind: kindFCMNotFound, message: "Requested entity was not found."}
	w.Header()["Content-Type"] = []string{"application/json; charset=UTF-8"}
	writeFCMError(w, p, st)
	s.count(provFCM, p.kind, "", false, st)
}

// checkFCM decodes body into req and validates the message as FCM does.
func checkFCM(body []byte, req *fcmRequest) fcmProblem {
	if int64(len(body)) > fcmMaxRequest {
		return fcmProblem{kind: kindFCMInvalidArgument, message: fmt.Sprintf("Request payload size exceeds the limit: %d bytes.", fcmMaxRequest)}
	}
	if err := json.Unmarshal(body, req); err != nil {
		return fcmProblem{kind: kindFCMInvalidArgument, message: "Invalid JSON payload received. " + err.Error()}
	}
	m := req.Message
	if m == nil {
		return fcmProblem{kind: kindFCMInvalidArgument, message: "Request contains an invalid argument: message is required.", field: "message"}
	}
	targets := 0
	for _, t := range []string{m.Token, m.Topic, m.Condition} {
		if t != "" {
			targets++
		}
	}
	switch {
	case targets == 0:
		return fcmProblem{kind: kindFCMInvalidArgument, message: "Recipient of the message is not set.", field: "message"}
	case targets > 1:
		return fcmProblem{kind: kindFCMInvalidArgument, message: "Exactly one of message.token, message.topic and message.condition must be set.", field: "message"}
	case m.Token != "" && !validFCMToken(m.Token):
		return fcmProblem{kind: kindFCMInvalidArgument, message: "The registration token is not a valid FCM registration token", field: "message.token"}
	}
	size := 0
	for k, v := range m.Data {
		switch {
		case k == "" || k == "from" || k == "message_type" || strings.HasPrefix(k, "google.") || strings.HasPrefix(k, "gcm."):
			return fcmProblem{kind: kindFCMInvalidArgument, message: fmt.Sprintf("Invalid data payload key: %q is reserved.", k), field: "message.data"}
		case len(v) == 0 || v[0] != '"':
			return fcmProblem{kind: kindFCMInvalidArgument, message: fmt.Sprintf("Invalid value at 'message.data[%s].value' (TYPE_STRING): %s", k, v), field: "message.data"}
		}
		size += len(k) + len(v) - 2
	}
	if size > fcmMaxData {
		return fcmProblem{kind: kindFCMInvalidArgument, message: fmt.Sprintf("Message is too big: data payload is %d bytes, limit %d.", size, fcmMaxData), field: "message.data"}
	}
	return fcmProblem{kind: kindOK}
}

// fcmMixProblem maps a drawn error to its FCM answer.
func fcmMixProblem(e mixError) fcmProblem {
	switch e {
	case mixUnregistered:
		return fcmProblem{kind: kindFCMUnregistered, message: "Requested entity was not found."}
	case mixBadToken:
		return fcmProblem{kind: kindFCMInvalidArgument, message: "The registration token is not a valid FCM registration token", field: "message.token"}
	case mixTooMany:
		return fcmProblem{kind: kindFCMQuotaExceeded, message: "Quota exceeded for quota metric 'Send requests' and limit 'Send requests per minute'."}
	case mixUnavailable:
		return fcmProblem{kind: kindFCMUnavailable, message: "The service is currently unavailable."}
	case mixInternal:
		return fcmProblem{kind: kindFCMInternal, message: "Internal error encountered."}
	}
	return fcmProblem{kind: kindOK}
}

// googleStatus returns the canonical status of a Google API error with the
// HTTP status code.
func googleStatus(code int) string {
	switch code {
	case http.StatusBadRequest:
		return "INVALID_ARGUMENT"
	case http.StatusUnauthorized:
		return "UNAUTHENTICATED"
	case http.StatusForbidden:
		return "PERMISSION_DENIED"
	case http.StatusNotFound:
		return "NOT_FOUND"
	case http.StatusTooManyRequests:
		return "RESOURCE_EXHAUSTED"
	case http.StatusServiceUnavailable:
		return "UNAVAILABLE"
	}
	return "INTERNAL"
}

// googleError is the JSON error body of Google APIs.
type googleError struct {
	Error googleErrorBody `json:"error"`
}

type googleErrorBody struct {
	Code    int              `json:"code"`
	Message string           `json:"message"`
	Status  string           `json:"status"`
	Details []map[string]any `json:"details,omitempty"`
}

// writeFCMError writes p in Google's error format, with an FcmError detail
// whose errorCode the firebase client's IsUnregistered, IsQuotaExceeded...
// look at. It reports whether Retry-After was sent.
func writeFCMError(w http.ResponseWriter, p fcmProblem, st *state) (retryAfter bool) {
	info := &kinds[p.kind]
	e := googleErrorBody{Code: info.status, Message: p.message, Status: googleStatus(info.status)}
	switch p.kind {
	case kindFCMUnauthenticated, kindFCMNotFound:
		// Failures before FCM proper: no FcmError detail.
	default:
		e.Details = append(e.Details, map[string]any{
			"@type":     "type.googleapis.com/google.firebase.fcm.v1.FcmError",
			"errorCode": info.reason,
		})
	}
	if p.field != "" {
		e.Details = append(e.Details, map[string]any{
			"@type":           "type.googleapis.com/google.rpc.BadRequest",
			"fieldViolations": []map[string]string{{"field": p.field, "description": p.message}},
		})
	}
	h := w.Header()
	h["Content-Type"] = []string{"application/json; charset=UTF-8"}
	if (info.status == http.StatusTooManyRequests || info.status == http.StatusServiceUnavailable) && st.retryAfter != "" {
		h["Retry-After"] = []string{st.retryAfter}
		retryAfter = true
	}
	b, err := json.MarshalIndent(googleError{Error: e}, "", "  ")
	if err != nil {
		b = []byte(`{"error":{"code":500,"status":"INTERNAL"}}`)
	}
	w.WriteHeader(info.status)
	_, _ = w.Write(append(b, '\n'))
	return retryAfter
}

// validFCMToken reports whether t looks like an FCM registration token:
// 1 to 4096 characters of [A-Za-z0-9_:.-].
func validFCMToken(t string) bool {
	if len(t) == 0 || len(t) > 4096 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c == '-' || c == ':' || c == '.') {
			return false
		}
	}
	return true
}
