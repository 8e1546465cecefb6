package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func newTestProvider(t *testing.T, expiry time.Duration) (*provider, string) {
	t.Helper()
	p := newProvider(expiry, prometheus.NewRegistry())
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
		instances: 2, rate: 2, uploadRate: 0.2, duration: time.Minute, healthInterval: 3 * time.Second,
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
