package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/lists"
)

// errorKind is a kind of error caused by the request rather than by pushd.
type errorKind int

const (
	kindBadRequest errorKind = iota + 1
	kindUnauthenticated
	kindForbidden
	kindNoRoute
	kindMethodNotAllowed
	kindNotFound
	kindUnsupportedMediaType
	kindUnavailable // a part of the API that is not configured
)

// clientError is an error caused by the request (or, for kindUnavailable,
// by the configuration); its message is for the client.
type clientError struct {
	kind errorKind
	msg  string
}

func (e *clientError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &clientError{kindBadRequest, fmt.Sprintf(format, args...)}
}

func unauthenticated(msg string) error { return &clientError{kindUnauthenticated, msg} }

func forbidden(msg string) error { return &clientError{kindForbidden, msg} }

func notFound(format string, args ...any) error {
	return &clientError{kindNotFound, fmt.Sprintf(format, args...)}
}

func unsupportedMediaType(format string, args ...any) error {
	return &clientError{kindUnsupportedMediaType, fmt.Sprintf(format, args...)}
}

var (
	errNoTokensFile = unauthenticated("admin.tokens_file is not configured: the admin API refuses every request")
	errCrossOrigin  = forbidden("cross-origin request refused")
	errNoRoute      = &clientError{kindNoRoute, "no such route"}
	errMethod       = &clientError{kindMethodNotAllowed, "method not allowed"}
	errNoLists      = &clientError{kindUnavailable, "lists not configured"}
)

// errorStatus maps an error to the status and the message the client sees.
// It is the only place that does.
func errorStatus(err error) (status int, msg string) {
	var ce *clientError
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &ce):
		switch ce.kind {
		case kindBadRequest:
			return http.StatusBadRequest, ce.msg
		case kindUnauthenticated:
			return http.StatusUnauthorized, ce.msg
		case kindForbidden:
			return http.StatusForbidden, ce.msg
		case kindNoRoute:
			return http.StatusNotFound, ce.msg
		case kindMethodNotAllowed:
			return http.StatusMethodNotAllowed, ce.msg
		case kindNotFound:
			return http.StatusNotFound, ce.msg
		case kindUnsupportedMediaType:
			return http.StatusUnsupportedMediaType, ce.msg
		case kindUnavailable:
			return http.StatusServiceUnavailable, ce.msg
		}
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", tooLarge.Limit)
	case errors.Is(err, dispatcher.ErrNotFound):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, dispatcher.ErrConflict):
		return http.StatusConflict, err.Error()
	case errors.Is(err, dispatcher.ErrInvalid), errors.Is(err, lists.ErrInvalid):
		return http.StatusBadRequest, err.Error()
	}
	return http.StatusInternalServerError, "internal error"
}

type errorBody struct {
	Error string `json:"error"`
}

// writeError answers with err as {"error": "..."}, and logs it if it is
// pushd's fault: its text is not for the client.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := errorStatus(err)
	if status == http.StatusInternalServerError {
		s.log.ErrorContext(r.Context(), "admin request failed",
			"method", r.Method, "route", r.Pattern, "path", r.URL.Path, "err", err)
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="pushd admin"`)
	}
	_ = writeJSON(w, status, errorBody{Error: msg})
}

// writeJSON answers with v. It fails only if v can't be encoded, before
// anything is written; a failure to write means the client is gone and is
// not reported.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
	return nil
}

// decodeJSON reads r's body, one JSON object with only known fields, into
// v. The body must be declared application/json (415 otherwise: a form or
// text/plain body is what a cross-site page can send without asking), and
// its object keys must be unique and spelt exactly as v's fields
// (encoding/json would take "RATE_PER_SECOND" for rate_per_second, and
// the last of two "rate_per_second"). The body's size is already bounded
// by the route.
func decodeJSON(r *http.Request, v any) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return err
		}
		return badRequest("request body: %v", err)
	}
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); len(body) > 0 && (err != nil || mt != "application/json") {
		return unsupportedMediaType("Content-Type must be application/json, got %q", ct)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	if err == nil {
		if err = dec.Decode(&struct{}{}); err == nil {
			return badRequest("request body: more than one JSON value")
		} else if errors.Is(err, io.EOF) {
			return checkKeys(body, reflect.TypeOf(v))
		}
	}
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return badRequest("request body: empty, want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("request body: truncated JSON")
	case errors.As(err, &syntax):
		return badRequest("request body: invalid JSON at offset %d: %v", syntax.Offset, syntax)
	case errors.As(err, &typ) && typ.Field == "":
		return badRequest("request body: want a JSON object, got %s", typ.Value)
	case errors.As(err, &typ):
		return badRequest("request body: %s: want %s, got %s", typ.Field, typ.Type, typ.Value)
	}
	// Unknown fields.
	return badRequest("request body: %v", err)
}
