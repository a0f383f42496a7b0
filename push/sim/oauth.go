package sim

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"
)

const (
	// jwtBearerGrant is the grant type of the OAuth2 service-account flow
	// (RFC 7523).
	jwtBearerGrant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	// accessTokenLifetime is how long issued access tokens are honoured.
	accessTokenLifetime = time.Hour
)

// handleToken answers POST /token as Google's OAuth2 token endpoint does for
// a service account: a form with grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer
// and a signed JWT assertion. The assertion's shape is checked, not its
// signature; the access token returned is then accepted by the FCM routes.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, "invalid_request", "Malformed token request: "+err.Error())
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != jwtBearerGrant {
		writeOAuthError(w, "unsupported_grant_type", fmt.Sprintf("Invalid grant_type: %q", gt))
		return
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	var claims struct {
		Iss string `json:"iss"`
		Aud string `json:"aud"`
	}
	if !decodeJWT(r.PostForm.Get("assertion"), &hdr, &claims) || hdr.Alg == "" || claims.Iss == "" {
		writeOAuthError(w, "invalid_grant", "Invalid JWT: the assertion must be a signed JWT with alg, iss and aud.")
		return
	}
	token, err := newAccessToken()
	if err != nil {
		http.Error(w, "cannot issue token", http.StatusInternalServerError)
		return
	}
	now := time.Now()
	s.issued.Range(func(k, v any) bool { // forget expired tokens; there are few
		if now.After(v.(time.Time)) {
			s.issued.Delete(k)
		}
		return true
	})
	s.issued.Store(token, now.Add(accessTokenLifetime))
	s.metrics.tokensIssued.Inc()
	s.logger.Debug("sim issued access token", slog.String("iss", claims.Iss))

	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"access_token": token,
		"token_type":   "Bearer",
		"expires_in":   int(accessTokenLifetime / time.Second),
	})
}

func writeOAuthError(w http.ResponseWriter, code, desc string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

// newAccessToken returns a fresh opaque access token in Google's style.
func newAccessToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "ya29.sim-" + base64.RawURLEncoding.EncodeToString(b), nil
}

// validAccessToken reports whether tok was issued by this simulator and has
// not expired.
func (s *Server) validAccessToken(tok string) bool {
	v, ok := s.issued.Load(tok)
	return ok && time.Now().Before(v.(time.Time))
}

// serviceAccount is the JSON of a Google service-account key file.
type serviceAccount struct {
	Type                    string `json:"type"`
	ProjectID               string `json:"project_id"`
	PrivateKeyID            string `json:"private_key_id"`
	PrivateKey              string `json:"private_key"`
	ClientEmail             string `json:"client_email"`
	ClientID                string `json:"client_id"`
	AuthURI                 string `json:"auth_uri"`
	TokenURI                string `json:"token_uri"`
	AuthProviderX509CertURL string `json:"auth_provider_x509_cert_url"`
	ClientX509CertURL       string `json:"client_x509_cert_url"`
	UniverseDomain          string `json:"universe_domain"`
}

// WriteServiceAccount writes to path (mode 0600) a Google service-account
// key file for projectID with a fresh RSA key, whose token_uri is tokenURI,
// e.g. s.URL()+"/token". golang.org/x/oauth2/google and the firebase client
// accept it and fetch their access tokens from the simulator. The key is
// worthless anywhere else.
func WriteServiceAccount(path, tokenURI, projectID string) error {
	if tokenURI == "" {
		return errors.New("write service account: token URI is required")
	}
	if projectID == "" {
		return errors.New("write service account: project id is required")
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("write service account: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("write service account: encode key: %w", err)
	}
	keyID := make([]byte, 20)
	_, _ = rand.Read(keyID)
	email := "pushsim@" + projectID + ".iam.gserviceaccount.com"
	sa := serviceAccount{
		Type:                    "service_account",
		ProjectID:               projectID,
		PrivateKeyID:            hex.EncodeToString(keyID),
		PrivateKey:              string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		ClientEmail:             email,
		ClientID:                "100000000000000000001",
		AuthURI:                 "https://accounts.google.com/o/oauth2/auth",
		TokenURI:                tokenURI,
		AuthProviderX509CertURL: "https://www.googleapis.com/oauth2/v1/certs",
		ClientX509CertURL:       "https://www.googleapis.com/robot/v1/metadata/x509/" + email,
		UniverseDomain:          "googleapis.com",
	}
	b, err := json.MarshalIndent(sa, "", "  ")
	if err != nil {
		return fmt.Errorf("write service account: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write service account: %w", err)
	}
	return nil
}
