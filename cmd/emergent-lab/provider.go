package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// provider is the integration the service calls: an OAuth-like token endpoint that allows
// maxActive active tokens per client (one by default). Minting a token revokes the client's
// oldest active one beyond maxActive, and a call with a revoked or expired token gets 401. It is
// what turns a per-instance token cache into a ping-pong: with more instances than active
// tokens, each instance's mint revokes a token another instance holds. With as many tokens as
// instances, each keeps its own, until the service scales out past that.
type provider struct {
	expiry    time.Duration
	maxActive int
	now       func() time.Time

	mu     sync.Mutex
	active map[string][]issuedToken // by client ID, oldest first, at most maxActive

	issued prometheus.Counter
	calls  *prometheus.CounterVec
}

type issuedToken struct {
	token   string
	expires time.Time
}

func newProvider(expiry time.Duration, maxActive int, reg prometheus.Registerer) *provider {
	p := &provider{
		expiry:    expiry,
		maxActive: max(1, maxActive),
		now:       time.Now,
		active:    map[string][]issuedToken{},
		issued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lab_provider_tokens_issued_total", Help: "Tokens the integration's provider issued (each revokes the client's oldest beyond --token.max-active).",
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

// mint issues a new token for client and revokes its oldest active ones beyond maxActive.
func (p *provider) mint(client string) tokenResponse {
	var b [12]byte
	_, _ = rand.Read(b[:])
	tok := client + "." + hex.EncodeToString(b[:])
	p.mu.Lock()
	toks := append(p.active[client], issuedToken{token: tok, expires: p.now().Add(p.expiry)})
	if n := len(toks) - p.maxActive; n > 0 {
		toks = slices.Delete(toks, 0, n)
	}
	p.active[client] = toks
	p.mu.Unlock()
	p.issued.Inc()
	return tokenResponse{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int(p.expiry / time.Second)}
}

// valid reports whether tok is one of its client's active, unexpired tokens.
func (p *provider) valid(tok string) bool {
	client, _, ok := strings.Cut(tok, ".")
	if !ok {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, cur := range p.active[client] {
		if cur.token == tok {
			return p.now().Before(cur.expires)
		}
	}
	return false
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
