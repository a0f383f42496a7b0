package sim

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// APNs limits, as Apple documents them.
const (
	apnsMaxPayload     = 4096 // bytes, every push type but VoIP
	apnsMaxVoIPPayload = 5120
	apnsMaxCollapseID  = 64
	apnsTokenLifetime  = time.Hour // provider tokens older than this are refused
)

// Token prefixes with a fixed APNs answer, checked before the error mix.
const (
	APNsUnregisteredPrefix = "deadbeefdeadbeef" // 410 Unregistered
	APNsBadTokenPrefix     = "bad0bad0bad0bad0" // 400 BadDeviceToken
)

// validPushType reports whether pt is an apns-push-type Apple documents.
func validPushType(pt string) bool {
	switch pt {
	case "alert", "background", "voip", "complication", "fileprovider", "mdm",
		"location", "liveactivity", "pushtotalk", "widgets", "controls":
		return true
	}
	return false
}

// apnsBearer is the last provider token found well formed. Clients reuse a
// token for tens of minutes, so checking it once is enough.
type apnsBearer struct {
	raw string
	iat int64
}

// handleAPNs answers POST /3/device/{token} as APNs does.
func (s *Server) handleAPNs(w http.ResponseWriter, r *http.Request) {
	st := s.state.Load()
	token := r.PathValue("token")

	limit := int64(apnsMaxPayload)
	if header(r.Header, "Apns-Push-Type") == "voip" {
		limit = apnsMaxVoIPPayload
	}
	var body []byte
	k := kindOK
	if r.ContentLength > limit {
		k = kindAPNsPayloadTooLarge
	} else {
		buf, err := s.readBody(r, limit)
		defer s.putBuf(buf)
		if err != nil {
			s.count(provAPNs, kindCanceled, token, false, st)
			return
		}
		body = buf.Bytes()
	}
	if k == kindOK {
		k = s.checkAPNs(r, token, body, limit)
	}
	if k == kindOK {
		switch {
		case hasPrefixFold(token, APNsUnregisteredPrefix):
			k = kindAPNsUnregistered
		case hasPrefixFold(token, APNsBadTokenPrefix):
			k = kindAPNsBadDeviceToken
		default:
			k = apnsMixKind(s.draw(provAPNs, st))
		}
	}
	s.record(provAPNs, r, token, body, st)
	if !delay(r, st) {
		s.count(provAPNs, kindCanceled, token, false, st)
		return
	}

	id := header(r.Header, "Apns-Id")
	if k == kindAPNsBadMessageID || id == "" {
		id = newUUID()
	}
	h := w.Header()
	h["Apns-Id"] = []string{id}
	retry := writeAPNsAnswer(w, k, st)
	s.count(provAPNs, k, token, retry, st)
}

// writeAPNsAnswer writes the answer k and reports whether it carried
// Retry-After.
func writeAPNsAnswer(w http.ResponseWriter, k kind, st *state) (retryAfter bool) {
	info := &kinds[k]
	if k == kindOK {
		w.WriteHeader(http.StatusOK)
		return false
	}
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	if (info.status == http.StatusTooManyRequests || info.status == http.StatusServiceUnavailable) && st.retryAfter != "" {
		h["Retry-After"] = []string{st.retryAfter}
		retryAfter = true
	}
	b := make([]byte, 0, 80)
	b = append(b, `{"reason":"`...)
	b = append(b, info.reason...)
	b = append(b, '"')
	if k == kindAPNsUnregistered {
		b = append(b, `,"timestamp":`...)
		b = strconv.AppendInt(b, time.Now().UnixMilli(), 10)
	}
	b = append(b, '}')
	w.WriteHeader(info.status)
	_, _ = w.Write(b)
	return retryAfter
}

// handleAPNsOther answers the APNs paths and methods Apple refuses.
func (s *Server) handleAPNsOther(w http.ResponseWriter, r *http.Request) {
	st := s.state.Load()
	k := kindAPNsBadPath
	if rest, ok := strings.CutPrefix(r.URL.Path, "/3/device/"); ok {
		switch {
		case r.Method != http.MethodPost:
			k = kindAPNsMethodNotAllowed
		case rest == "":
			k = kindAPNsMissingDeviceToken
		}
	}
	w.Header()["Apns-Id"] = []string{newUUID()}
	writeAPNsAnswer(w, k, st)
	s.count(provAPNs, k, "", false, st)
}

// checkAPNs validates a request the way Apple does, in Apple's order:
// credentials, device token, headers, payload.
func (s *Server) checkAPNs(r *http.Request, token string, body []byte, limit int64) kind {
	auth := header(r.Header, "Authorization")
	if auth != "" {
		raw, ok := cutPrefixFold(auth, "bearer ")
		if !ok {
			return kindAPNsInvalidProviderToken
		}
		if k := s.checkProviderToken(strings.TrimSpace(raw)); k != kindOK {
			return k
		}
	}
	if !validAPNsToken(token) {
		return kindAPNsBadDeviceToken
	}
	h := r.Header
	if id := header(h, "Apns-Id"); id != "" && !validUUID(id) {
		return kindAPNsBadMessageID
	}
	switch p := header(h, "Apns-Priority"); p {
	case "", "1", "5", "10":
	default:
		return kindAPNsBadPriority
	}
	if e := header(h, "Apns-Expiration"); e != "" {
		if _, err := strconv.ParseInt(e, 10, 64); err != nil {
			return kindAPNsBadExpirationDate
		}
	}
	if pt := header(h, "Apns-Push-Type"); pt != "" && !validPushType(pt) {
		return kindAPNsInvalidPushType
	}
	if len(header(h, "Apns-Collapse-Id")) > apnsMaxCollapseID {
		return kindAPNsBadCollapseID
	}
	if auth != "" && header(h, "Apns-Topic") == "" {
		return kindAPNsMissingTopic
	}
	switch {
	case int64(len(body)) > limit:
		return kindAPNsPayloadTooLarge
	case len(bytes.TrimSpace(body)) == 0:
		return kindAPNsPayloadEmpty
	case !json.Valid(body) || !hasAPSObject(body):
		return kindAPNsBadPayload
	}
	return kindOK
}

// checkProviderToken checks that raw is a structurally valid APNs provider
// token (ES256 JWT with kid, iss and iat) issued within the last hour. The
// signature cannot be checked: the simulator does not know the key.
func (s *Server) checkProviderToken(raw string) kind {
	var iat int64
	if b := s.bearer.Load(); b != nil && b.raw == raw {
		iat = b.iat
	} else {
		var ok bool
		if iat, ok = parseProviderToken(raw); !ok {
			return kindAPNsInvalidProviderToken
		}
		s.bearer.Store(&apnsBearer{raw: strings.Clone(raw), iat: iat})
	}
	if time.Since(time.Unix(iat, 0)) > apnsTokenLifetime {
		return kindAPNsExpiredProviderToken
	}
	return kindOK
}

// parseProviderToken returns the iat claim of an APNs provider token if the
// token is well formed.
func parseProviderToken(raw string) (iat int64, ok bool) {
	var hdr struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	var claims struct {
		Iss string      `json:"iss"`
		Iat json.Number `json:"iat"`
	}
	if !decodeJWT(raw, &hdr, &claims) || hdr.Alg != "ES256" || hdr.Kid == "" || claims.Iss == "" {
		return 0, false
	}
	iat, err := claims.Iat.Int64()
	if err != nil {
		return 0, false
	}
	return iat, true
}

// decodeJWT splits a compact JWS into its three base64url parts and decodes
// the header and claims JSON objects into hdr and claims. It reports whether
// the token is well formed; the signature must be present but is not
// verified.
func decodeJWT(raw string, hdr, claims any) bool {
	h, rest, ok1 := strings.Cut(raw, ".")
	c, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || h == "" || c == "" || sig == "" || strings.Contains(sig, ".") {
		return false
	}
	if _, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(sig, "=")); err != nil {
		return false
	}
	return decodeJWTPart(h, hdr) && decodeJWTPart(c, claims)
}

func decodeJWTPart(part string, v any) bool {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(part, "="))
	if err != nil {
		return false
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return false
	}
	return json.Unmarshal(b, v) == nil
}

// apnsMixKind maps a drawn error to its APNs answer.
func apnsMixKind(e mixError) kind {
	switch e {
	case mixUnregistered:
		return kindAPNsUnregistered
	case mixBadToken:
		return kindAPNsBadDeviceToken
	case mixTooMany:
		return kindAPNsTooManyRequests
	case mixUnavailable:
		return kindAPNsServiceUnavailable
	case mixInternal:
		return kindAPNsInternalServerError
	}
	return kindOK
}

// validAPNsToken reports whether t is 64 to 200 hex digits.
func validAPNsToken(t string) bool {
	if len(t) < 64 || len(t) > 200 {
		return false
	}
	for i := 0; i < len(t); i++ {
		if !isHex(t[i]) {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// validUUID reports whether id is a UUID in its 8-4-4-4-12 text form.
func validUUID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch i {
		case 8, 13, 18, 23:
			if id[i] != '-' {
				return false
			}
		default:
			if !isHex(id[i]) {
				return false
			}
		}
	}
	return true
}

// newUUID returns a random (version 4) UUID. It need not be unpredictable,
// only unique, so it uses the fast non-cryptographic generator.
func newUUID() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	const digits = "0123456789abcdef"
	var out [36]byte
	j := 0
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		out[j], out[j+1] = digits[c>>4], digits[c&0x0f]
		j += 2
	}
	return string(out[:])
}

// header returns the first value of the header with the canonical name
// key. Unlike http.Header.Get it does not canonicalize key, which allocates
// for names like "apns-id"; the server has canonicalized the request's.
func header(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if !hasPrefixFold(s, prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// hasAPSObject reports whether the valid JSON document b is an object with
// a top-level "aps" member that is an object. It does not allocate.
func hasAPSObject(b []byte) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i++
	for {
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != '"' {
			return false // '}' of an object without aps
		}
		end := skipString(b, i)
		key := b[i+1 : end-1]
		i = skipSpace(b, end)
		i = skipSpace(b, i+1) // past ':'
		if i >= len(b) {
			return false
		}
		if string(key) == "aps" && b[i] == '{' {
			return true
		}
		i = skipSpace(b, skipValue(b, i))
		if i >= len(b) || b[i] != ',' {
			return false
		}
		i++
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string starting at b[i] == '"'.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// skipValue returns the index just past the JSON value starting at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(b)
	}
	for i < len(b) {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
		i++
	}
	return i
}
