package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
)

func newTestProvider(t *testing.T, expiry time.Duration) (*provider, string) {
	return newTestProviderK(t, expiry, 1)
}

func newTestProviderK(t *testing.T, expiry time.Duration, maxActive int) (*provider, string) {
	t.Helper()
	p := newProvider(expiry, maxActive, prometheus.NewRegistry())
	mux := http.NewServeMux()
	mux.HandleFunc("/provider/token", p.serveToken)
	mux.HandleFunc("/provider/resource", p.serveResource)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return p, srv.URL + "/provider"
}

func TestProviderAllowsOneActiveTokenPerClient(t *testing.T) {
	p, url := newTestProvider(t, time.Minute)
	ctx := context.Background()
	a := &providerClient{base: url, clientID: "checkout", http: http.DefaultClient}
	other := &providerClient{base: url, clientID: "billing", http: http.DefaultClient}

	first, expiry, err := a.mint(ctx)
	if err != nil || expiry != time.Minute {
		t.Fatalf("mint: %q %s %v", first, expiry, err)
	}
	otherTok, _, _ := other.mint(ctx)
	if code, _ := a.use(ctx, first); code != http.StatusOK {
		t.Errorf("fresh token: %d, want 200", code)
	}
	second, _, _ := a.mint(ctx)
	if code, _ := a.use(ctx, first); code != http.StatusUnauthorized {
		t.Errorf("token revoked by a newer mint: %d, want 401", code)
	}
	if code, _ := a.use(ctx, second); code != http.StatusOK {
		t.Errorf("newest token: %d, want 200", code)
	}
	if code, _ := other.use(ctx, otherTok); code != http.StatusOK {
		t.Errorf("another client's token was revoked: %d", code)
	}
	for _, bad := range []string{"", "garbage", "checkout.0000"} {
		if code, _ := a.use(ctx, bad); code != http.StatusUnauthorized {
			t.Errorf("token %q: %d, want 401", bad, code)
		}
	}

	p.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	if code, _ := a.use(ctx, second); code != http.StatusUnauthorized {
		t.Errorf("expired token: %d, want 401", code)
	}
	if got := testutil.ToFloat64(p.issued); got != 3 {
		t.Errorf("tokens issued = %g, want 3", got)
	}
}

func testInstance(t *testing.T, name, providerURL string, m mode) *instance {
	t.Helper()
	in := newInstance(instanceConfig{
		name: name, service: "checkout", redisAddr: "127.0.0.1:1", providerURL: providerURL,
		mode: m, keys: 10, margin: 10 * time.Second,
	}, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { in.cache.Close(); in.tokensR.Close() })
	return in
}

// TestFragmentedCachePingPong is the seed's bug in miniature: two instances with their own
// token cache, served alternately, mint on every call after the first two.
func TestFragmentedCachePingPong(t *testing.T) {
	_, url := newTestProvider(t, time.Minute)
	ctx := context.Background()
	a := testInstance(t, "a", url, modeFragmented)
	b := testInstance(t, "b", url, modeFragmented)
	const calls = 20
	for i := range calls {
		in := a
		if i%2 == 1 {
			in = b
		}
		if err := in.callIntegration(ctx); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	mints := testutil.ToFloat64(a.m.tokens.mints) + testutil.ToFloat64(b.m.tokens.mints)
	if mints != calls {
		t.Errorf("%g mints for %d alternating calls, want one per call (each revokes the other's token)", mints, calls)
	}
	if got := testutil.ToFloat64(a.m.integration.WithLabelValues("401")); got != calls/2-1 {
		t.Errorf("instance a got %g 401s, want %d", got, calls/2-1)
	}

	// One instance alone keeps its token: no ping-pong without a second cache.
	solo := testInstance(t, "solo", url, modeFragmented)
	for range 10 {
		if err := solo.callIntegration(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(solo.m.tokens.mints); got != 1 {
		t.Errorf("a single instance minted %g tokens, want 1", got)
	}
}

func TestLoadProfileRates(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name        string
		p           loadProfile
		req, upload float64
	}{
		{"shared", loadProfile{Mode: modeShared, Rate: 2, UploadRate: 0.5}, 2, 0.5},
		{"idle", loadProfile{Mode: modeFragmented, Idle: true, Rate: 2, UploadRate: 0.5}, 0, 0},
		{"surging", loadProfile{Mode: modeSurge, Rate: 2, SurgeUntil: now.Add(time.Minute)}, 10, 0},
		{"surge over", loadProfile{Mode: modeSurge, Rate: 2, SurgeUntil: now.Add(-time.Second)}, 2, 0},
	} {
		req, up := tc.p.rates(now, 5)
		if req != tc.req || up != tc.upload {
			t.Errorf("%s: rates %g, %g; want %g, %g", tc.name, req, up, tc.req, tc.upload)
		}
	}
}

func TestConfigBounds(t *testing.T) {
	good := labConfig{
		instances: 2, active: 2, tokenMaxActive: 1, rate: 2, uploadRate: 0.2, duration: time.Minute, healthInterval: 3 * time.Second,
		keys: 100, expiry: time.Minute, margin: 10 * time.Second, surgeFactor: 5, surgeFor: time.Minute,
	}
	if err := good.validate(); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	for _, tc := range []struct {
		want   string
		change func(*labConfig)
	}{
		{"--rate", func(c *labConfig) { c.rate = maxRate + 1 }},
		{"--upload-rate", func(c *labConfig) { c.uploadRate = -1 }},
		{"--duration", func(c *labConfig) { c.duration = 0 }},
		{"--duration", func(c *labConfig) { c.duration = 25 * time.Hour }},
		{"--instances", func(c *labConfig) { c.instances = 0 }},
		{"--active", func(c *labConfig) { c.active = 0 }},
		{"--active", func(c *labConfig) { c.active = 3 }},
		{"--active", func(c *labConfig) { c.instanceAddrs = []string{"127.0.0.1:0"} }}, // one instance, two active
		{"--token.max-active", func(c *labConfig) { c.tokenMaxActive = 0 }},
		{"--token.max-active", func(c *labConfig) { c.tokenMaxActive = maxTokensActive + 1 }},
		{"--health-interval", func(c *labConfig) { c.healthInterval = time.Millisecond }},
		{"--token.safety-margin", func(c *labConfig) { c.margin = 2 * time.Minute }},
		{"--surge.factor", func(c *labConfig) { c.surgeFactor = 100 }},
	} {
		c := good
		tc.change(&c)
		if err := c.validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s out of bounds: err = %v", tc.want, err)
		}
	}
	if _, err := parseMode("apcu"); err == nil {
		t.Error("unknown mode accepted")
	}
}

func TestProviderMaxActive(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		maxActive, mints int
	}{
		{1, 3}, {2, 5}, {3, 5}, {5, 3},
	} {
		_, url := newTestProviderK(t, time.Minute, tc.maxActive)
		a := &providerClient{base: url, clientID: "checkout", http: http.DefaultClient}
		other := &providerClient{base: url, clientID: "billing", http: http.DefaultClient}
		otherTok, _, _ := other.mint(ctx)
		var toks []string
		for range tc.mints {
			tok, _, err := a.mint(ctx)
			if err != nil {
				t.Fatal(err)
			}
			toks = append(toks, tok)
		}
		for i, tok := range toks {
			want := http.StatusUnauthorized
			if i >= tc.mints-tc.maxActive { // the maxActive most recent
				want = http.StatusOK
			}
			if code, _ := a.use(ctx, tok); code != want {
				t.Errorf("max-active %d: token %d of %d: %d, want %d", tc.maxActive, i+1, tc.mints, code, want)
			}
		}
		if code, _ := other.use(ctx, otherTok); code != http.StatusOK {
			t.Errorf("max-active %d: another client's token was revoked: %d", tc.maxActive, code)
		}
	}
}

// TestPerInstanceCachesAgainstMaxActive: per-instance caches served round-robin mint once each
// while the provider keeps as many tokens as there are instances, and on every call once there
// are more instances than tokens (the third seed: the same service, scaled out).
func TestPerInstanceCachesAgainstMaxActive(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		instances, maxActive, calls int
		wantMints                   float64
	}{
		{2, 1, 20, 20}, // the seed's ping-pong
		{2, 2, 20, 2},  // healthy: one token each
		{6, 6, 24, 6},
		{3, 2, 24, 24},
		{6, 2, 24, 24}, // scaled out past the provider's limit: every call mints
	} {
		_, url := newTestProviderK(t, time.Minute, tc.maxActive)
		ins := make([]*instance, tc.instances)
		for i := range ins {
			ins[i] = testInstance(t, fmt.Sprintf("i%d", i), url, modeFragmented)
		}
		var mints float64
		for i := range tc.calls {
			if err := ins[i%len(ins)].callIntegration(ctx); err != nil {
				t.Fatalf("%d instances, max-active %d: call %d: %v", tc.instances, tc.maxActive, i, err)
			}
		}
		for _, in := range ins {
			mints += testutil.ToFloat64(in.m.tokens.mints)
		}
		if mints != tc.wantMints {
			t.Errorf("%d instances, max-active %d: %g mints for %d round-robin calls, want %g",
				tc.instances, tc.maxActive, mints, tc.calls, tc.wantMints)
		}
	}
}

// discardRedisLog silences go-redis' own logger: the test instances have no Redis, and /api/work
// fails (502) on its cache read, after the integration calls this package tests.
type discardRedisLog struct{}

func (discardRedisLog) Printf(context.Context, string, ...any) {}

func init() { redis.SetLogger(discardRedisLog{}) }

// arrivals counts the requests that reached one slot, by path, as they arrive.
type arrivals struct {
	mu     sync.Mutex
	byPath map[string]int
}

func (a *arrivals) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.byPath[r.URL.Path]++
		a.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (a *arrivals) count(path string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.byPath[path]
}

// testLab is a lab whose children are slots served in this process, against a test provider.
func testLab(t *testing.T, instances, active, maxActive int) (*lab, []*slot, string) {
	l, slots, _, web := testLabArrivals(t, instances, active, maxActive)
	return l, slots, web
}

func testLabArrivals(t *testing.T, instances, active, maxActive int) (*lab, []*slot, []*arrivals, string) {
	t.Helper()
	_, providerURL := newTestProviderK(t, time.Minute, maxActive)
	cfg := labConfig{
		service: "checkout", instances: instances, active: active, tokenMaxActive: maxActive, mode: modeFragmented,
		rate: 2, duration: time.Minute, healthInterval: time.Second, keys: 10, expiry: time.Minute,
		margin: 10 * time.Second, surgeFactor: 5, surgeFor: time.Minute, redisAddr: "127.0.0.1:1",
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	l, err := newLab(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	slots := make([]*slot, instances)
	arr := make([]*arrivals, instances)
	for i := range slots {
		slots[i] = newSlot(instanceConfig{
			name: fmt.Sprintf("instance-%d", i+1), service: "checkout", redisAddr: "127.0.0.1:1",
			providerURL: providerURL, mode: modeFragmented, keys: 10, margin: 10 * time.Second,
		}, i < active, slog.New(slog.DiscardHandler))
		arr[i] = &arrivals{byPath: map[string]int{}}
		srv := httptest.NewServer(arr[i].wrap(slots[i].handler()))
		t.Cleanup(func() { srv.Close(); slots[i].setActive(false) })
		l.children = append(l.children, &child{name: slots[i].cfg.name, addr: strings.TrimPrefix(srv.URL, "http://")})
	}
	l.ready.Store(true)
	web := httptest.NewServer(l.handler())
	t.Cleanup(web.Close)
	return l, slots, arr, web.URL
}

func httpGet(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// mintsExported reads token_mint_count from an instance's /metrics.
func mintsExported(t *testing.T, addr string) string {
	t.Helper()
	code, body := httpGet(t, "http://"+addr+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("%s/metrics: %d", addr, code)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, "token_mint_count "); ok {
			return v
		}
	}
	t.Fatalf("%s/metrics has no token_mint_count:\n%s", addr, body)
	return ""
}

func TestScaling(t *testing.T) {
	l, slots, web := testLab(t, 4, 2, 2)
	post := func(q url.Values) (int, string) {
		resp, err := http.PostForm(web+"/mode", q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	// Out of bounds: refused, nothing changes.
	for _, v := range []string{"0", "5", "-1", "two"} {
		code, body := post(url.Values{"active": {v}, "m": {"shared"}})
		if code != http.StatusBadRequest || !strings.Contains(body, "active must be an integer in [1, 4]") {
			t.Errorf("active=%s: %d %q, want 400 naming the bounds", v, code, body)
		}
	}
	if p := l.currentProfile(); p.Active != 2 || p.Mode != modeFragmented {
		t.Fatalf("a refused change changed the profile: %+v", p)
	}

	// Slot 2 has served and minted; it keeps its token across scalings it survives, and
	// starts empty after being scaled in and out again.
	addr2 := l.children[1].addr
	if code, body := httpGet(t, "http://"+addr2+"/healthz"); code != http.StatusOK {
		t.Fatalf("active instance's /healthz: %d %s", code, body)
	}
	for _, step := range []struct {
		active int
		params url.Values
		// mints is instance-2's token_mint_count after the step ("" while inactive), then
		// after one more /healthz.
		mints, after string
	}{
		{4, nil, "1", "1"},                             // scale out: instance 2 untouched
		{1, nil, "", ""},                               // scale in: instance 2 gone
		{3, url.Values{"m": {"shared"}}, "0", "0"},     // back as a fresh pod, in the new mode (shared: no Redis, no mint)
		{2, url.Values{"m": {"fragmented"}}, "0", "1"}, // fragmented again: its empty cache mints
		{2, url.Values{"rate": {"3"}}, "1", "1"},       // no scaling: nothing restarts
	} {
		q := url.Values{"active": {fmt.Sprint(step.active)}}
		for k, v := range step.params {
			q[k] = v
		}
		if code, body := post(q); code != http.StatusOK {
			t.Fatalf("POST /mode %s: %d %s", q.Encode(), code, body)
		}
		if p := l.currentProfile(); p.Active != step.active {
			t.Errorf("active=%d: profile says %d", step.active, p.Active)
		}
		for i, s := range slots {
			want := i < step.active
			if s.active() != want {
				t.Errorf("active=%d: instance-%d active %v, want %v", step.active, i+1, s.active(), want)
			}
			code, _ := httpGet(t, "http://"+l.children[i].addr+"/metrics")
			if wantCode := map[bool]int{true: 200, false: 503}[want]; code != wantCode {
				t.Errorf("active=%d: instance-%d /metrics %d, want %d", step.active, i+1, code, wantCode)
			}
			if !want {
				for _, path := range []string{"/healthz", "/api/work", "/api/upload"} {
					if code, _ := httpGet(t, "http://"+l.children[i].addr+path); code != http.StatusServiceUnavailable {
						t.Errorf("active=%d: inactive instance-%d answered %s with %d, want 503", step.active, i+1, path, code)
					}
				}
				if code, _ := httpGet(t, "http://"+l.children[i].addr+"/-/healthy"); code != http.StatusOK {
					t.Errorf("inactive instance-%d's process is not healthy: %d", i+1, code)
				}
			}
		}
		if step.mints == "" {
			continue
		}
		if got := mintsExported(t, addr2); got != step.mints {
			t.Errorf("active=%d %v: instance-2 exports %s mints, want %s", step.active, step.params, got, step.mints)
		}
		httpGet(t, "http://"+addr2+"/healthz")
		if got := mintsExported(t, addr2); got != step.after {
			t.Errorf("active=%d %v: after a probe instance-2 exports %s mints, want %s", step.active, step.params, got, step.after)
		}
	}
	var listed struct {
		Instances []string `json:"instances"`
		Active    int      `json:"active"`
	}
	_, body := httpGet(t, web+"/api/v1/instances")
	if err := json.Unmarshal([]byte(body), &listed); err != nil || len(listed.Instances) != 4 || listed.Active != 2 {
		t.Errorf("/api/v1/instances: %s (%v), want 4 instances, 2 active", body, err)
	}
}

// TestLoadReachesActiveInstancesOnly: the load balancer and the prober send to the active
// instances, all of them, and nothing to the others.
func TestLoadReachesActiveInstancesOnly(t *testing.T) {
	for _, tc := range []struct{ instances, active int }{{1, 1}, {4, 1}, {4, 3}, {6, 6}} {
		l, _, arr, _ := testLabArrivals(t, tc.instances, tc.active, 1)
		l.cfg.healthInterval = minHealthInterval
		l.profile.Rate, l.profile.UploadRate = 100, 10
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		l.runLoad(ctx)
		cancel()
		l.wg.Wait()
		for i, a := range arr {
			for _, path := range []string{"/api/work", "/api/upload", "/healthz"} {
				n := a.count(path)
				switch {
				case i >= tc.active && n > 0:
					t.Errorf("%d/%d active: inactive instance-%d got %d %s requests", tc.active, tc.instances, i+1, n, path)
				case i < tc.active && n == 0 && path != "/api/upload": // uploads are too few to reach each
					t.Errorf("%d/%d active: instance-%d got no %s", tc.active, tc.instances, i+1, path)
				}
			}
		}
	}
}
