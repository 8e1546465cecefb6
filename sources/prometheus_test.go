package sources

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
)

var testRange = Range{
	Start: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC),
	End:   time.Date(2026, 11, 1, 12, 1, 0, 0, time.UTC),
	Step:  30 * time.Second,
}

// matrixJSON is the query_range answer for a two-series matrix over testRange.
const matrixJSON = `{"status":"success","data":{"resultType":"matrix","result":[
	{"metric":{"service":"api"},"values":[[1793534400,"1"],[1793534430,"2"],[1793534460,"3"]]},
	{"metric":{"service":"web"},"values":[[1793534400,"NaN"],[1793534460,"5.5"]]}]}}`

// apiServer is a fake Prometheus that answers every API call with handle.
func apiServer(t *testing.T, handle http.HandlerFunc) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(handle)
	t.Cleanup(s.Close)
	return s
}

// reply writes a fixed status and body.
func reply(code int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprint(w, body)
	}
}

func newTestSource(t *testing.T, cfg config.Prometheus, logger *slog.Logger, reg prometheus.Registerer) *Prometheus {
	t.Helper()
	if !cfg.HTTPClient.FollowRedirects { // unset: use what the config loader defaults to
		cfg.HTTPClient = commoncfg.DefaultHTTPClientConfig
	}
	p, err := NewPrometheus(cfg, logger, reg)
	if err != nil {
		t.Fatalf("NewPrometheus: %v", err)
	}
	return p
}

func TestPrometheusQueryRange(t *testing.T) {
	const query = `sum by (service) (rate(http_requests_total[5m]))`
	tests := []struct {
		name         string
		handler      http.HandlerFunc
		wantErr      []string // substrings of the error; nil means success
		wantSeries   int
		wantSamples  int
		wantWarnings Warnings
	}{
		{
			name:        "matrix",
			handler:     reply(200, matrixJSON),
			wantSeries:  2,
			wantSamples: 5,
		},
		{
			name: "warnings passed through",
			handler: reply(200, `{"status":"success","warnings":["store eu-1 unavailable"],
				"data":{"resultType":"matrix","result":[]}}`),
			wantWarnings: Warnings{"store eu-1 unavailable"},
		},
		{
			name:    "server error",
			handler: reply(503, "upstream connect error or disconnect/reset before headers"),
			wantErr: []string{`query "` + query + `"`, "server error: 503", "upstream connect error"},
		},
		{
			name:    "bad query",
			handler: reply(422, `{"status":"error","errorType":"execution","error":"many-to-many matching not allowed"}`),
			wantErr: []string{`query "` + query + `"`, "execution", "many-to-many matching not allowed"},
		},
		{
			name:    "bad request",
			handler: reply(400, `{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": parse error"}`),
			wantErr: []string{`query "` + query + `"`, "bad_data", "parse error"},
		},
		{
			name:    "not a matrix",
			handler: reply(200, `{"status":"success","data":{"resultType":"vector","result":[]}}`),
			wantErr: []string{`query "` + query + `"`, "result is a vector, want a matrix"},
		},
		{
			name:    "not JSON",
			handler: reply(200, `<html>login</html>`),
			wantErr: []string{`query "` + query + `"`, "bad_response"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got struct {
				query, start, end, step, timeout string
			}
			srv := apiServer(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/api/v1/query_range" {
					http.NotFound(w, r)
					return
				}
				if err := r.ParseForm(); err != nil {
					t.Errorf("ParseForm: %v", err)
				}
				got.query, got.start, got.end = r.Form.Get("query"), r.Form.Get("start"), r.Form.Get("end")
				got.step, got.timeout = r.Form.Get("step"), r.Form.Get("timeout")
				tt.handler(w, r)
			})
			reg := prometheus.NewPedanticRegistry()
			p := newTestSource(t, config.Prometheus{URL: srv.URL, Timeout: model.Duration(7 * time.Second)}, nil, reg)

			m, warnings, err := p.QueryRange(context.Background(), query, testRange)

			if got.query != query || got.start != "1793534400" || got.end != "1793534460" || got.step != "30" || got.timeout != "7s" {
				t.Errorf("server got %+v; want the query, start/end as Unix seconds, step 30, timeout 7s", got)
			}
			if fmt.Sprint(warnings) != fmt.Sprint(tt.wantWarnings) {
				t.Errorf("warnings = %q, want %q", warnings, tt.wantWarnings)
			}
			outcome := "success"
			if tt.wantErr != nil {
				outcome = "error"
				if err == nil {
					t.Fatalf("got no error, want one containing %q", tt.wantErr)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
			} else if err != nil {
				t.Fatalf("QueryRange: %v", err)
			}
			if len(m) != tt.wantSeries {
				t.Errorf("got %d series, want %d", len(m), tt.wantSeries)
			}
			if v := testutil.ToFloat64(p.metrics.samples); v != float64(tt.wantSamples) {
				t.Errorf("samples metric = %v, want %d", v, tt.wantSamples)
			}
			want := fmt.Sprintf(`
# HELP emergent_prometheus_queries_total Queries sent to Prometheus, by outcome (success or error).
# TYPE emergent_prometheus_queries_total counter
emergent_prometheus_queries_total{outcome="error"} %d
emergent_prometheus_queries_total{outcome="success"} %d
`, btoi(outcome == "error"), btoi(outcome == "success"))
			if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "emergent_prometheus_queries_total"); err != nil {
				t.Error(err)
			}
			if n := testutil.CollectAndCount(p.metrics.duration); n != 1 {
				t.Errorf("duration histogram has %d series, want 1", n)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestPrometheusMatrixValues(t *testing.T) {
	srv := apiServer(t, reply(200, matrixJSON))
	p := newTestSource(t, config.Prometheus{URL: srv.URL}, nil, nil)
	m, _, err := p.QueryRange(context.Background(), "q", testRange)
	if err != nil {
		t.Fatal(err)
	}
	if got := m[0].Metric["service"]; got != "api" {
		t.Errorf("first series service = %q, want api", got)
	}
	if got := m[0].Values[2]; got.Timestamp.Time().Unix() != 1793534460 || got.Value != 3 {
		t.Errorf("third sample = %v, want 3 @1793534460", got)
	}
}

// logRecorder collects log records.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r)
	return nil
}
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

func (h *logRecorder) warnings() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.records {
		if r.Level == slog.LevelWarn {
			r.Attrs(func(a slog.Attr) bool {
				if a.Key == "warning" {
					out = append(out, a.Value.String())
				}
				return true
			})
		}
	}
	return out
}

func TestPrometheusWarningsLoggedOnce(t *testing.T) {
	var calls atomic.Int32
	srv := apiServer(t, func(w http.ResponseWriter, r *http.Request) {
		// The first two answers repeat one warning, the third adds another.
		ws := `["store eu-1 unavailable"]`
		if calls.Add(1) == 3 {
			ws = `["store eu-1 unavailable","store us-1 unavailable"]`
		}
		reply(200, `{"status":"success","warnings":`+ws+`,"data":{"resultType":"matrix","result":[]}}`)(w, r)
	})
	logs := &logRecorder{}
	p := newTestSource(t, config.Prometheus{URL: srv.URL}, slog.New(logs), nil)
	for i := 0; i < 3; i++ {
		if _, warnings, err := p.QueryRange(context.Background(), "q", testRange); err != nil || len(warnings) == 0 {
			t.Fatalf("call %d: warnings %q, err %v", i, warnings, err)
		}
	}
	want := []string{"store eu-1 unavailable", "store us-1 unavailable"}
	if got := logs.warnings(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("logged warnings %q, want %q (each once)", got, want)
	}
}

func TestPrometheusTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := apiServer(t, func(w http.ResponseWriter, r *http.Request) {
		select { // hang until the client gives up (or the test ends)
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	p := newTestSource(t, config.Prometheus{URL: srv.URL, Timeout: model.Duration(100 * time.Millisecond)}, nil, nil)

	start := time.Now()
	_, _, err := p.QueryRange(context.Background(), "slow_query", testRange)
	elapsed := time.Since(start)
	if err == nil {
		t.Fatal("got no error from a hanging server")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v is not context.DeadlineExceeded", err)
	}
	for _, s := range []string{`query "slow_query"`, "timed out after 100ms"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
	if elapsed > 5*time.Second {
		t.Errorf("query took %s; the 100ms timeout was not honoured", elapsed)
	}

	// The caller's own deadline is reported as such, not as the source's timeout.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err = p.QueryRange(ctx, "slow_query", testRange)
	if !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "timed out") {
		t.Errorf("cancelled caller: got %v, want context.Canceled without 'timed out'", err)
	}
}

func TestPrometheusConcurrencyBound(t *testing.T) {
	const bound, queries = 3, 20
	var inFlight, maxInFlight atomic.Int32
	srv := apiServer(t, func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := maxInFlight.Load()
			if n <= m || maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond) // hold the slot so that queries overlap
		reply(200, matrixJSON)(w, r)
	})
	p := newTestSource(t, config.Prometheus{URL: srv.URL, MaxConcurrentQueries: bound}, nil, nil)

	var wg sync.WaitGroup
	errs := make(chan error, queries)
	for i := 0; i < queries; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if i%2 == 0 { // Check shares the bound with QueryRange
				_, err = p.Check(context.Background(), fmt.Sprintf("q%d", i))
			} else {
				_, _, err = p.QueryRange(context.Background(), fmt.Sprintf("q%d", i), testRange)
			}
			if err != nil && !strings.Contains(err.Error(), "want a matrix") {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := maxInFlight.Load(); got != bound {
		t.Errorf("max queries in flight = %d, want exactly the bound %d", got, bound)
	}
}

func TestPrometheusWaitingForSlotHonoursContext(t *testing.T) {
	release := make(chan struct{})
	srv := apiServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		reply(200, matrixJSON)(w, r)
	})
	p := newTestSource(t, config.Prometheus{URL: srv.URL, MaxConcurrentQueries: 1}, nil, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _, _ = p.QueryRange(context.Background(), "holder", testRange)
	}()
	// Wait until the holder has the only slot.
	for len(p.slots) == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, _, err := p.QueryRange(ctx, "waiter", testRange)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "waiting for a query slot") {
		t.Errorf("got %v, want a deadline error while waiting for a slot", err)
	}
	close(release)
	<-done
}

func TestPrometheusCredentials(t *testing.T) {
	const user, password = "emergent", "s3cret-Pa55word"
	tests := []struct {
		name    string
		url     func(srv string) string
		http    commoncfg.HTTPClientConfig
		handler http.HandlerFunc // after the credentials check
		wantErr string
	}{
		{
			name: "basic auth from http config, server echoes the password",
			url:  func(srv string) string { return srv },
			http: commoncfg.HTTPClientConfig{
				BasicAuth:       &commoncfg.BasicAuth{Username: user, Password: commoncfg.Secret(password)},
				FollowRedirects: true,
			},
			handler: func(w http.ResponseWriter, r *http.Request) {
				_, pw, _ := r.BasicAuth()
				reply(502, "proxy rejected password "+pw)(w, r)
			},
			wantErr: "proxy rejected password <secret>",
		},
		{
			name: "userinfo in the URL, server echoes the URL",
			url:  func(srv string) string { return strings.Replace(srv, "http://", "http://"+user+":"+password+"@", 1) },
			http: commoncfg.DefaultHTTPClientConfig,
			handler: func(w http.ResponseWriter, r *http.Request) {
				_, pw, _ := r.BasicAuth()
				reply(500, "cannot serve http://"+user+":"+pw+"@prometheus")(w, r)
			},
			wantErr: "server error: 500",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var authorized atomic.Bool
			srv := apiServer(t, func(w http.ResponseWriter, r *http.Request) {
				u, pw, ok := r.BasicAuth()
				authorized.Store(ok && u == user && pw == password)
				tt.handler(w, r)
			})
			p := newTestSource(t, config.Prometheus{URL: tt.url(srv.URL), HTTPClient: tt.http}, nil, nil)
			checkErr := func(err error) {
				t.Helper()
				if err == nil {
					t.Fatal("got no error")
				}
				if strings.Contains(err.Error(), password) {
					t.Errorf("error leaks the password: %v", err)
				}
			}
			_, _, err := p.QueryRange(context.Background(), "up", testRange)
			checkErr(err)
			if !authorized.Load() {
				t.Error("server did not receive the credentials")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			_, err = p.Check(context.Background(), "up")
			checkErr(err)
			checkErr(p.Ready(context.Background()))

			// A connection error names the URL: it must come without userinfo.
			srv.Close()
			_, _, err = p.QueryRange(context.Background(), "up", testRange)
			checkErr(err)
			if strings.Contains(err.Error(), user+":") {
				t.Errorf("error keeps the URL's userinfo: %v", err)
			}
			if !strings.Contains(err.Error(), strings.TrimPrefix(srv.URL, "http://")) {
				t.Errorf("error %q should still name the server", err)
			}
		})
	}
}

func TestNewPrometheusErrors(t *testing.T) {
	tests := []struct {
		name, url, wantErr string
	}{
		{"empty", "", "prometheus URL is empty"},
		{"no scheme", "prometheus:9090", "want http(s)://host"},
		{"bad scheme", "ftp://prometheus:9090", "want http(s)://host"},
		{"unparsable with password", "http://user:pa ss@prom:9090/%zz", "invalid prometheus URL"},
		{"no host, password", "http://user:hunter2@/", "invalid prometheus URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewPrometheus(config.Prometheus{URL: tt.url}, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "pa ss") || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
}

func TestPrometheusResponseTooLarge(t *testing.T) {
	big := `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"pad":"` +
		strings.Repeat("x", 4096) + `"},"values":[]}]}}`
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			srv := apiServer(t, func(w http.ResponseWriter, r *http.Request) {
				if !chunked {
					w.Header().Set("Content-Length", fmt.Sprint(len(big)))
				}
				w.WriteHeader(200)
				fmt.Fprint(w, big[:10])
				w.(http.Flusher).Flush() // forces chunked encoding when no length is set
				fmt.Fprint(w, big[10:])
			})
			p, err := newPrometheus(config.Prometheus{URL: srv.URL, HTTPClient: commoncfg.DefaultHTTPClientConfig}, nil, nil, 1024)
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = p.QueryRange(context.Background(), "huge", testRange)
			if !errors.Is(err, ErrResponseTooLarge) || !strings.Contains(err.Error(), `query "huge"`) {
				t.Errorf("got %v, want ErrResponseTooLarge naming the query", err)
			}
		})
	}

	// Just under the limit passes.
	srv := apiServer(t, reply(200, matrixJSON))
	p, err := newPrometheus(config.Prometheus{URL: srv.URL, HTTPClient: commoncfg.DefaultHTTPClientConfig}, nil, nil, int64(len(matrixJSON)))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.QueryRange(context.Background(), "q", testRange); err != nil {
		t.Errorf("response of exactly the limit: %v", err)
	}
}

func TestPrometheusRangeValidation(t *testing.T) {
	srv := apiServer(t, func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("invalid range reached the server: %s", r.URL)
	})
	p := newTestSource(t, config.Prometheus{URL: srv.URL}, nil, nil)
	t0 := testRange.Start
	tests := []struct {
		name    string
		r       Range
		wantErr string
	}{
		{"zero step", Range{Start: t0, End: t0, Step: 0}, "must be positive"},
		{"sub-millisecond step", Range{Start: t0, End: t0, Step: 1500 * time.Microsecond}, "whole number of milliseconds"},
		{"end before start", Range{Start: t0, End: t0.Add(-time.Second), Step: time.Second}, "before start"},
		{"too many points", Range{Start: t0, End: t0.Add(MaxPointsPerSeries * time.Second), Step: time.Second}, "11001 steps"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := p.QueryRange(context.Background(), "q", tt.r)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), `query "q"`) {
				t.Errorf("got %v, want an error naming the query and containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestPrometheusCheck(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		wantErr string
	}{
		{"vector", reply(200, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1793534400,"1"]}]}}`), ""},
		{"scalar", reply(200, `{"status":"success","data":{"resultType":"scalar","result":[1793534400,"1"]}}`), ""},
		{"parse error", reply(400, `{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected"}`), "parse error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var path string
			srv := apiServer(t, func(w http.ResponseWriter, r *http.Request) {
				path = r.URL.Path
				tt.handler(w, r)
			})
			p := newTestSource(t, config.Prometheus{URL: srv.URL + "/prefix/"}, nil, nil)
			_, err := p.Check(context.Background(), "sum(up)")
			if path != "/prefix/api/v1/query" {
				t.Errorf("request path %q, want /prefix/api/v1/query", path)
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("Check: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), `query "sum(up)"`) {
				t.Errorf("got %v, want an error naming the query and containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestPrometheusReady(t *testing.T) {
	const buildinfo = `{"status":"success","data":{"version":"2.42.0","revision":"","branch":"","buildUser":"","buildDate":"","goVersion":"go1.20"}}`
	tests := []struct {
		name    string
		routes  map[string]http.HandlerFunc
		wantErr string
	}{
		{"ready", map[string]http.HandlerFunc{"/-/ready": reply(200, "Prometheus Server is Ready.\n")}, ""},
		{"starting", map[string]http.HandlerFunc{"/-/ready": reply(503, "Service Unavailable")}, "HTTP 503: Service Unavailable"},
		{"no ready endpoint, buildinfo answers", map[string]http.HandlerFunc{"/api/v1/status/buildinfo": reply(200, buildinfo)}, ""},
		{"no ready endpoint, buildinfo fails", map[string]http.HandlerFunc{"/api/v1/status/buildinfo": reply(500, "boom")}, "buildinfo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mux := http.NewServeMux()
			for path, h := range tt.routes {
				mux.HandleFunc(path, h)
			}
			srv := apiServer(t, mux.ServeHTTP)
			p := newTestSource(t, config.Prometheus{URL: srv.URL}, nil, nil)
			err := p.Ready(context.Background())
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("Ready: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestPrometheusSharedRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv := apiServer(t, reply(200, matrixJSON))
	a := newTestSource(t, config.Prometheus{URL: srv.URL}, nil, reg)
	b := newTestSource(t, config.Prometheus{URL: srv.URL}, nil, reg)
	for _, p := range []*Prometheus{a, b} {
		if _, _, err := p.QueryRange(context.Background(), "q", testRange); err != nil {
			t.Fatal(err)
		}
	}
	if v := testutil.ToFloat64(a.metrics.samples); v != 10 {
		t.Errorf("shared samples counter = %v, want 10", v)
	}
}

// closedURL returns the URL of a port nothing listens on.
func closedURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func TestPrometheusConnectionRefused(t *testing.T) {
	p := newTestSource(t, config.Prometheus{URL: closedURL(t)}, nil, nil)
	_, _, err := p.QueryRange(context.Background(), "up", testRange)
	if err == nil || !strings.Contains(err.Error(), `query "up"`) {
		t.Errorf("got %v, want a connection error naming the query", err)
	}
	if err := p.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "readiness") {
		t.Errorf("Ready: got %v, want a readiness error", err)
	}
}

// Ensure the JSON fixtures stay valid; a typo would otherwise turn a success case into a
// decoding-error case that still "passes" an error expectation.
func TestFixturesAreJSON(t *testing.T) {
	for _, s := range []string{matrixJSON} {
		if !json.Valid([]byte(s)) {
			t.Errorf("invalid fixture: %s", s)
		}
	}
}

// TestErrorsNameWhatAnswered: when something other than the query API answers (a wrong path
// prefix, a login page, a proxy's error page), the error names the URL tried, without its
// credentials, and says when HTML came back.
func TestErrorsNameWhatAnswered(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    []string
	}{
		{"404 from a wrong path", http.NotFound, []string{"404", "(from http://127.0.0.1:", "/prom/api/v1/query_range)"}},
		{"an HTML page with 200", func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprint(w, "<html><body>Sign in</body></html>")
		}, []string{"/prom/api/v1/query_range answered with HTML, not the Prometheus API"}},
		{"a proxy's 502 page", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprint(w, "<html><body>Bad gateway</body></html>")
		}, []string{"502", "(from http://127.0.0.1:"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			u := strings.Replace(srv.URL, "http://", "http://admin:hunter2@", 1) + "/prom"
			p, err := NewPrometheus(config.Prometheus{URL: u, Timeout: model.Duration(time.Second)}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = p.QueryRange(context.Background(), "up", testRange)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q carries the password", err)
			}
		})
	}
}
