package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// provider is the integration the service calls: an OAuth-like token endpoint that allows ONE
// active token per client. Minting a token revokes the client's previous one, and a call with a
// revoked or expired token gets 401. It is what turns a per-instance token cache into a
// ping-pong: each instance's mint revokes the token another instance holds.
type provider struct {
	expiry time.Duration
	now    func() time.Time

	mu     sync.Mutex
	active map[string]issuedToken // by client ID

	issued prometheus.Counter
	calls  *prometheus.CounterVec
}

type issuedToken struct {
	token   string
	expires time.Time
}

func newProvider(expiry time.Duration, reg prometheus.Registerer) *provider {
	p := &provider{
		expiry: expiry,
		now:    time.Now,
		active: map[string]issuedToken{},
		issued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lab_provider_tokens_issued_total", Help: "Tokens the integration's provider issued (each revokes the client's previous one).",
		}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lab_provider_calls_total", Help: "Calls to the integration's protected resource, by response code.",
		}, []string{"code"}),
	}
	reg.MustRegister(p.issued, p.calls)
	return p
}

// tokenResponse is the provider's answer to a mint, in OAuth's shape.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"` // seconds
}

// mint issues a new token for client and revokes its previous one.
func (p *provider) mint(client string) tokenResponse {
	var b [12]byte
	_, _ = rand.Read(b[:])
	tok := client + "." + hex.EncodeToString(b[:])
	p.mu.Lock()
	p.active[client] = issuedToken{token: tok, expires: p.now().Add(p.expiry)}
	p.mu.Unlock()
	p.issued.Inc()
	return tokenResponse{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int(p.expiry / time.Second)}
}

// valid reports whether tok is its client's active, unexpired token.
func (p *provider) valid(tok string) bool {
	client, _, ok := strings.Cut(tok, ".")
	if !ok {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	cur, ok := p.active[client]
	return ok && cur.token == tok && p.now().Before(cur.expires)
}

// serveToken handles POST /provider/token with form field client_id.
func (p *provider) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	client := r.FormValue("client_id")
	if client == "" || strings.Contains(client, ".") {
		http.Error(w, "client_id is required and may not contain '.'", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(p.mint(client))
}

// serveResource handles GET /provider/resource with "Authorization: Bearer <token>".
func (p *provider) serveResource(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	code := http.StatusOK
	if !ok || !p.valid(tok) {
		code = http.StatusUnauthorized
	}
	p.calls.WithLabelValues(strconv.Itoa(code)).Inc()
	if code != http.StatusOK {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		http.Error(w, "token revoked or expired", code)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"ok":true}` + "\n"))
}
