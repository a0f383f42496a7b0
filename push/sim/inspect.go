package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// errBadConfig prefixes the errors of PUT /sim/config.
var errBadConfig = errors.New("bad config")

// configJSON is the shape of GET and PUT /sim/config:
//
//	{
//	  "latency": "5ms",             // Go duration string, or a number of milliseconds
//	  "jitter": 2,                  // same
//	  "retry_after": "2s",          // same; whole seconds on the wire
//	  "apns_errors": "too_many=0.05,unavailable=0.01",      // ParseErrorMix syntax...
//	  "fcm_errors": {"unregistered": 0.01, "internal": 0.001}, // ...or an object
//	  "track_tokens": true,
//	  "record_last": 100,
//	  "seed": 42
//	}
//
// A PUT changes only the fields it gives; unknown fields are refused. Both
// answer with the whole configuration then in force.
type configJSON struct {
	Latency     *jsonDuration `json:"latency,omitempty"`
	Jitter      *jsonDuration `json:"jitter,omitempty"`
	RetryAfter  *jsonDuration `json:"retry_after,omitempty"`
	APNsErrors  *jsonMix      `json:"apns_errors,omitempty"`
	FCMErrors   *jsonMix      `json:"fcm_errors,omitempty"`
	TrackTokens *bool         `json:"track_tokens,omitempty"`
	RecordLast  *int          `json:"record_last,omitempty"`
	Seed        *int64        `json:"seed,omitempty"`
}

func toConfigJSON(c Config) configJSON {
	lat, jit, ra := jsonDuration(c.Latency), jsonDuration(c.Jitter), jsonDuration(c.RetryAfter)
	am, fm := jsonMix(c.APNsErrors), jsonMix(c.FCMErrors)
	return configJSON{
		Latency: &lat, Jitter: &jit, RetryAfter: &ra,
		APNsErrors: &am, FCMErrors: &fm,
		TrackTokens: &c.TrackTokens, RecordLast: &c.RecordLast, Seed: &c.Seed,
	}
}

// apply returns c with the fields given in j.
func (j configJSON) apply(c Config) Config {
	if j.Latency != nil {
		c.Latency = time.Duration(*j.Latency)
	}
	if j.Jitter != nil {
		c.Jitter = time.Duration(*j.Jitter)
	}
	if j.RetryAfter != nil {
		c.RetryAfter = time.Duration(*j.RetryAfter)
	}
	if j.APNsErrors != nil {
		c.APNsErrors = ErrorMix(*j.APNsErrors)
	}
	if j.FCMErrors != nil {
		c.FCMErrors = ErrorMix(*j.FCMErrors)
	}
	if j.TrackTokens != nil {
		c.TrackTokens = *j.TrackTokens
	}
	if j.RecordLast != nil {
		c.RecordLast = *j.RecordLast
	}
	if j.Seed != nil {
		c.Seed = *j.Seed
	}
	return c
}

// jsonDuration is a duration written as a Go duration string ("250ms") or
// as a number of milliseconds.
type jsonDuration time.Duration

func (d jsonDuration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

func (d *jsonDuration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("want a duration like \"250ms\": %w", err)
		}
		*d = jsonDuration(v)
		return nil
	}
	ms, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("want a duration string or a number of milliseconds, got %s", b)
	}
	*d = jsonDuration(ms * float64(time.Millisecond))
	return nil
}

// jsonMix is an ErrorMix written in ParseErrorMix syntax or as an object of
// the same keys.
type jsonMix ErrorMix

func (m jsonMix) MarshalJSON() ([]byte, error) {
	return json.Marshal(ErrorMix(m).String())
}

func (m *jsonMix) UnmarshalJSON(b []byte) error {
	var s string
	if len(b) > 0 && b[0] == '{' {
		var obj map[string]float64
		if err := json.Unmarshal(b, &obj); err != nil {
			return fmt.Errorf("want an object of probabilities: %w", err)
		}
		items := make([]string, 0, len(obj))
		for k, v := range obj {
			items = append(items, k+"="+strconv.FormatFloat(v, 'g', -1, 64))
		}
		s = strings.Join(items, ",")
	} else if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a string like \"too_many=0.05\" or an object: %w", err)
	}
	mix, err := ParseErrorMix(s)
	if err != nil {
		return err
	}
	*m = jsonMix(mix)
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeAPIError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func (s *Server) handleStats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Stats())
}

// handleToken1 answers GET /sim/tokens/{token}.
func (s *Server) handleToken1(w http.ResponseWriter, r *http.Request) {
	t := r.PathValue("token")
	c := s.tokens.get(t)
	writeJSON(w, http.StatusOK, map[string]any{"token": t, "count": c.received, "accepted": c.accepted})
}

// recordedJSON is a recorded request with its body shown as JSON when it is
// JSON.
type recordedJSON struct {
	Provider string      `json:"provider"`
	Token    string      `json:"token"`
	Header   http.Header `json:"header"`
	Body     any         `json:"body"`
	At       time.Time   `json:"at"`
}

func (s *Server) handleRecorded(w http.ResponseWriter, r *http.Request) {
	p := r.PathValue("provider")
	if p != APNs && p != FCM {
		writeAPIError(w, http.StatusNotFound, fmt.Errorf("unknown provider %q: want %q or %q", p, APNs, FCM))
		return
	}
	reqs := s.Recorded(p)
	out := make([]recordedJSON, len(reqs))
	for i, q := range reqs {
		out[i] = recordedJSON{Provider: q.Provider, Token: q.Token, Header: q.Header, At: q.At, Body: string(q.Body)}
		if json.Valid(q.Body) {
			out[i].Body = json.RawMessage(q.Body)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleReset(w http.ResponseWriter, _ *http.Request) {
	s.Reset()
	s.logger.Info("simulator counts reset")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleGetConfig(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, toConfigJSON(s.Config()))
}

// handlePutConfig answers PUT /sim/config; see configJSON for the shape.
func (s *Server) handlePutConfig(w http.ResponseWriter, r *http.Request) {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	var j configJSON
	if err := dec.Decode(&j); err != nil {
		writeAPIError(w, http.StatusBadRequest, fmt.Errorf("%w: %v", errBadConfig, err))
		return
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		writeAPIError(w, http.StatusBadRequest, fmt.Errorf("%w: trailing data after the JSON object", errBadConfig))
		return
	}
	cfg := j.apply(s.Config())
	if err := cfg.Validate(); err != nil {
		writeAPIError(w, http.StatusBadRequest, fmt.Errorf("%w: %v", errBadConfig, err))
		return
	}
	s.SetConfig(cfg)
	s.logger.Info("simulator config changed",
		slog.Duration("latency", cfg.Latency), slog.Duration("jitter", cfg.Jitter),
		slog.String("apns_errors", cfg.APNsErrors.String()), slog.String("fcm_errors", cfg.FCMErrors.String()),
		slog.Duration("retry_after", cfg.RetryAfter))
	writeJSON(w, http.StatusOK, toConfigJSON(s.Config()))
}

func (s *Server) handleCA(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, _ = w.Write(s.certs.caPEM)
}

func (s *Server) handleIndex(w http.ResponseWriter, _ *http.Request) {
	var b bytes.Buffer
	b.WriteString("pushsim: APNs and FCM simulator\n\n")
	b.WriteString("POST /3/device/{token}                     APNs (HTTP/2)\n")
	b.WriteString("POST /v1/projects/{project}/messages:send  FCM HTTP v1\n")
	b.WriteString("POST /token                                OAuth2 token endpoint (service accounts)\n")
	b.WriteString("GET  /sim/stats | /sim/tokens/{token} | /sim/recorded/{apns,fcm} | /sim/config | /sim/ca.pem\n")
	b.WriteString("PUT  /sim/config     POST /sim/reset\n")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(b.Bytes())
}
