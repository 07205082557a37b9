package azuretest

import (
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// metadata is what an Azure Stack Hub answers on GET /metadata/endpoints (the Azure CLI's
// `az cloud register --endpoint-resource-manager` reads the same document).
type metadata struct {
	GalleryEndpoint string         `json:"galleryEndpoint"`
	GraphEndpoint   string         `json:"graphEndpoint"`
	PortalEndpoint  string         `json:"portalEndpoint"`
	Authentication  metadataAuthen `json:"authentication"`
}

type metadataAuthen struct {
	LoginEndpoint string   `json:"loginEndpoint"`
	Audiences     []string `json:"audiences"`
}

func (e *Emulator) serveMetadata(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "only GET is supported")
		return
	}
	if r.URL.Query().Get("api-version") == "" {
		writeError(w, http.StatusBadRequest, "MissingApiVersionParameter",
			"The api-version query parameter (?api-version=) is required for all requests.")
		return
	}
	base := e.URL() + "/"
	login := base
	if e.opts.ADFS {
		login = base + "adfs"
	}
	writeJSON(w, http.StatusOK, metadata{
		GalleryEndpoint: base + "gallery/",
		GraphEndpoint:   "https://graph.windows.net/",
		PortalEndpoint:  base + "portal/",
		Authentication: metadataAuthen{
			LoginEndpoint: login,
			Audiences:     []string{e.opts.Audience},
		},
	})
}

// Entra error body, as the v2.0 token endpoint sends it.
type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
	ErrorCodes  []int  `json:"error_codes"`
}

func writeOAuthError(w http.ResponseWriter, status int, code string, aadsts int, msg string) {
	writeJSON(w, status, oauthError{
		Error:       code,
		Description: fmt.Sprintf("AADSTS%d: %s", aadsts, msg),
		ErrorCodes:  []int{aadsts},
	})
}

// serveIdentity answers the OpenID configuration MSAL reads first and the token endpoint:
//
//	GET  /{tenant}/v2.0/.well-known/openid-configuration
//	POST /{tenant}/oauth2/v2.0/token
//
// or, with Options.ADFS, GET /adfs/.well-known/openid-configuration and POST /adfs/oauth2/token.
func (e *Emulator) serveIdentity(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	tenant := parts[0]
	if e.opts.ADFS {
		e.serveADFS(w, r, strings.ToLower(strings.Join(parts[1:], "/")))
		return
	}
	if !strings.EqualFold(tenant, e.opts.TenantID) {
		writeOAuthError(w, http.StatusBadRequest, "invalid_tenant", 90002,
			fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID.", tenant))
		return
	}
	rest := strings.ToLower(strings.Join(parts[1:], "/"))
	authority := e.URL() + "/" + tenant
	switch {
	case rest == "v2.0/.well-known/openid-configuration" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]any{
			"token_endpoint":                        authority + "/oauth2/v2.0/token",
			"authorization_endpoint":                authority + "/oauth2/v2.0/authorize",
			"issuer":                                authority + "/v2.0",
			"jwks_uri":                              authority + "/discovery/v2.0/keys",
			"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
			"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
			"tenant_region_scope":                   "EU",
			"cloud_instance_name":                   "azurestack.local",
		})
	case rest == "oauth2/v2.0/token" && r.Method == http.MethodPost:
		e.serveToken(w, r)
	default:
		writeOAuthError(w, http.StatusNotFound, "invalid_request", 900561,
			fmt.Sprintf("The endpoint only accepts POST requests. Received a %s request.", r.Method))
	}
}

func (e *Emulator) serveADFS(w http.ResponseWriter, r *http.Request, rest string) {
	authority := e.URL() + "/adfs"
	if !strings.EqualFold(strings.SplitN(strings.Trim(r.URL.Path, "/"), "/", 2)[0], "adfs") {
		writeOAuthError(w, http.StatusNotFound, "invalid_request", 900561, "This AD FS authority only serves /adfs/.")
		return
	}
	switch {
	case rest == ".well-known/openid-configuration" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]any{
			"token_endpoint":                        authority + "/oauth2/token",
			"authorization_endpoint":                authority + "/oauth2/authorize",
			"issuer":                                authority,
			"jwks_uri":                              authority + "/discovery/keys",
			"token_endpoint_auth_methods_supported": []string{"client_secret_post", "client_secret_basic", "private_key_jwt"},
			"access_token_issuer":                   "http://" + r.Host + "/adfs/services/trust",
		})
	case rest == "oauth2/token" && r.Method == http.MethodPost:
		e.serveToken(w, r)
	default:
		writeOAuthError(w, http.StatusNotFound, "invalid_request", 900561, "No such AD FS endpoint.")
	}
}

func (e *Emulator) serveToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
		return
	}
	f := r.PostForm
	if f.Get("grant_type") != "client_credentials" {
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", 70003,
			fmt.Sprintf("The app requested an unsupported grant type '%s'.", f.Get("grant_type")))
		return
	}
	clientID, secret := f.Get("client_id"), f.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		clientID, _ = url.QueryUnescape(u)
		secret, _ = url.QueryUnescape(p)
	}
	if !strings.EqualFold(clientID, e.opts.ClientID) {
		writeOAuthError(w, http.StatusBadRequest, "unauthorized_client", 700016,
			fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'.", clientID, e.opts.TenantID))
		return
	}
	if f.Has("client_assertion") {
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", 700027,
			"Client assertion failed signature validation (the emulator accepts client secrets only).")
		return
	}
	if subtle.ConstantTimeCompare([]byte(secret), []byte(e.opts.ClientSecret)) != 1 {
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", 7000215,
			fmt.Sprintf("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", clientID))
		return
	}
	want := strings.TrimSuffix(e.opts.Audience, "/")
	// MSAL adds the OpenID scopes "openid offline_access profile" to the resource's "/.default" scope.
	scope := ""
	for _, s := range strings.Fields(f.Get("scope")) {
		switch s {
		case "openid", "offline_access", "profile":
		default:
			scope = strings.TrimSuffix(strings.TrimSuffix(s, "/.default"), "/")
		}
	}
	if !strings.EqualFold(scope, want) {
		writeOAuthError(w, http.StatusBadRequest, "invalid_scope", 1002012,
			fmt.Sprintf("The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI) %s.", f.Get("scope"), want))
		return
	}
	var b [24]byte
	randRead(b[:])
	token := "azuretest." + hex.EncodeToString(b[:])
	lifetime := e.opts.TokenLifetime
	e.mu.Lock()
	e.tokens[token] = time.Now().Add(lifetime)
	e.mu.Unlock()
	secs := int(lifetime / time.Second)
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type":     "Bearer",
		"expires_in":     secs,
		"ext_expires_in": secs,
		"access_token":   token,
	})
}

// authorize checks the bearer token of an ARM request.
func (e *Emulator) authorize(r *http.Request) *apiError {
	h := r.Header.Get("Authorization")
	if h == "" {
		return newAPIError(http.StatusUnauthorized, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
	}
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return newAPIError(http.StatusUnauthorized, "AuthenticationFailedInvalidHeader",
			"Authentication failed. The 'Authorization' header is provided in an invalid format.")
	}
	e.mu.Lock()
	exp, known := e.tokens[token]
	e.mu.Unlock()
	switch {
	case !known:
		return newAPIError(http.StatusUnauthorized, "InvalidAuthenticationToken", "The access token is invalid.")
	case time.Now().After(exp):
		return newAPIError(http.StatusUnauthorized, "ExpiredAuthenticationToken",
			"The access token expiry UTC time is earlier than current UTC time.")
	}
	return nil
}

// ExpireTokens makes every token issued so far invalid, as if they had expired.
func (e *Emulator) ExpireTokens() {
	e.mu.Lock()
	for k := range e.tokens {
		e.tokens[k] = time.Time{}
	}
	e.mu.Unlock()
}
