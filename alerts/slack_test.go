package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	commoncfg "github.com/prometheus/common/config"
	"github.com/slack-go/slack"

	"github.com/emergent-sh/emergent/config"
)

// rateLimitedSlack is an incoming webhook that answers its first limited requests with 429 and
// Retry-After, then accepts.
func rateLimitedSlack(t *testing.T, limited int, retryAfter string) (*recorder, *httptest.Server) {
	return newRecorder(t, func(n int, w http.ResponseWriter, _ *http.Request) bool {
		if n <= limited {
			w.Header().Set("Retry-After", retryAfter)
			w.WriteHeader(http.StatusTooManyRequests)
			return false
		}
		_, _ = io.WriteString(w, "ok")
		return true
	})
}

// sleepRecorder makes a Retrier that records its waits instead of sleeping, with no backoff of
// its own: any wait it records is the receiver's Retry-After.
type sleepRecorder struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *sleepRecorder) retrier() Retrier {
	return Retrier{
		Rand: func() float64 { return 0 },
		Sleep: func(ctx context.Context, d time.Duration) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.waits = append(s.waits, d)
			return ctx.Err()
		},
	}
}

func (s *sleepRecorder) recorded() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.waits)
}

// Slack answers an incoming webhook with 429 and Retry-After: the retrier waits at least
// that long and the message is delivered once.
func TestSlackWebhookRateLimited(t *testing.T) {
	rec, srv := rateLimitedSlack(t, 1, "1")
	sleeps := &sleepRecorder{}
	retrier := sleeps.retrier()
	m, _ := startManager(t, []config.Receiver{
		{Name: "slack", Type: config.ReceiverSlack, WebhookURL: commoncfg.Secret(srv.URL + "/services/T0/B0/secret")},
	}, routeAll("slack"), managerOptions{retrier: retrier})

	m.Update(t0, []*Alert{testAlert("checkout", t0, time.Time{})})
	stop(t, m)

	if n := rec.requests(); n != 2 {
		t.Errorf("got %d requests, want 2 (429, then the retry)", n)
	}
	if n := len(rec.accepted()); n != 1 {
		t.Fatalf("delivered %d times, want once", n)
	}
	if waits := sleeps.recorded(); len(waits) != 1 || waits[0] < time.Second {
		t.Errorf("waits = %v, want one of at least the 1s Retry-After", waits)
	}
	var msg slack.WebhookMessage
	mustUnmarshal(t, rec.accepted()[0], &msg)
	if msg.Text != "checkout mints tokens nobody asked for" || msg.Blocks == nil || len(msg.Blocks.BlockSet) == 0 {
		t.Errorf("message = text %q, blocks %v; want the summary and blocks", msg.Text, msg.Blocks)
	}
}

// In bot mode the resolve is a reply in the firing message's thread, and the firing message
// is edited to show the episode resolved.
func TestSlackBotThreadsResolve(t *testing.T) {
	srv := slackBotServer(t)

	rt := &recordingTransport{}
	m, _ := startManager(t, []config.Receiver{{
		Name: "slack-bot", Type: config.ReceiverSlack,
		Token: "xoxb-not-a-real-token", Channel: "#emergent", APIURL: srv.GetAPIURL(),
	}}, routeAll("slack-bot"), managerOptions{
		httpClient: func(config.Receiver) (*http.Client, error) { return &http.Client{Transport: rt}, nil },
	})

	firing := testAlert("checkout", t0, time.Time{})
	for i := range 3 { // every evaluation hands the alert again
		m.Update(t0.Add(time.Duration(i)*30*time.Second), []*Alert{firing})
	}
	waitFor(t, "the firing post", func() bool { return len(rt.get()) == 1 })
	m.Update(t0.Add(5*time.Minute), []*Alert{testAlert("checkout", t0, t0.Add(5*time.Minute))})
	stop(t, m)

	calls := rt.get()
	var methods []string
	for _, c := range calls {
		methods = append(methods, c.method)
	}
	if want := []string{"chat.postMessage", "chat.postMessage", "chat.update"}; !slices.Equal(methods, want) {
		t.Fatalf("API calls = %v, want %v", methods, want)
	}
	post, reply, edit := calls[0], calls[1], calls[2]
	var resp struct {
		OK      bool   `json:"ok"`
		Channel string `json:"channel"`
		TS      string `json:"ts"`
	}
	mustUnmarshal(t, post.resp, &resp)
	if !resp.OK || resp.TS == "" {
		t.Fatalf("firing post answered %s", post.resp)
	}

	if post.form.Get("channel") != "#emergent" || post.form.Get("thread_ts") != "" {
		t.Errorf("firing post: channel %q thread_ts %q", post.form.Get("channel"), post.form.Get("thread_ts"))
	}
	if got := post.form.Get("text"); got != "checkout mints tokens nobody asked for" {
		t.Errorf("firing post text = %q", got)
	}
	if blocks := post.form.Get("blocks"); !strings.Contains(blocks, "FIRING: Self-generated traffic · token-cache") || !strings.Contains(blocks, firing.GeneratorURL) {
		t.Errorf("firing post blocks lack the header or the graph link: %s", blocks)
	}
	if reply.form.Get("thread_ts") != resp.TS || !strings.Contains(reply.form.Get("text"), "Resolved") {
		t.Errorf("resolve: thread_ts %q text %q; want a reply in thread %q", reply.form.Get("thread_ts"), reply.form.Get("text"), resp.TS)
	}
	if edit.form.Get("ts") != resp.TS || edit.form.Get("channel") != resp.Channel || !strings.Contains(edit.form.Get("blocks"), "RESOLVED") {
		t.Errorf("edit: channel %q ts %q blocks %s; want the firing message marked resolved", edit.form.Get("channel"), edit.form.Get("ts"), edit.form.Get("blocks"))
	}
}

// One episode is posted once however often it is handed over, and a restart with the state
// file neither posts it again nor loses its resolve.
func TestSlackDedupAcrossRestarts(t *testing.T) {
	rec, srv := newRecorder(t, nil)
	stateFile := filepath.Join(t.TempDir(), "slack-state.json")
	firing := testAlert("checkout", t0, time.Time{})
	resolved := testAlert("checkout", t0, t0.Add(10*time.Minute))
	orphan := testAlert("billing", t0.Add(-time.Hour), t0) // resolved, never posted firing

	steps := []struct {
		name      string
		updates   [][]*Alert // one Manager (process) per step
		wantPosts int
	}{
		{"resolve of an episode never posted is not posted", [][]*Alert{{orphan}}, 0},
		{"firing handed over ten times posts once", slices.Repeat([][]*Alert{{firing}}, 10), 1},
		{"after restart, still firing: no second post", [][]*Alert{{firing}, {firing}}, 1},
		{"after restart, resolved: the resolve is posted", [][]*Alert{{resolved}, {resolved}}, 2},
		{"after restart, resolved again: nothing", [][]*Alert{{resolved}}, 2},
	}
	for _, step := range steps {
		m, _ := startManager(t, []config.Receiver{
			{Name: "slack", Type: config.ReceiverSlack, WebhookURL: commoncfg.Secret(srv.URL), StateFile: stateFile},
		}, routeAll("slack"), managerOptions{})
		for i, alerts := range step.updates {
			m.Update(t0.Add(time.Duration(i)*30*time.Second), alerts)
		}
		stop(t, m)
		if n := len(rec.accepted()); n != step.wantPosts {
			t.Fatalf("%s: %d posts in all, want %d", step.name, n, step.wantPosts)
		}
	}

	var f episodeLogFile
	data, err := os.ReadFile(stateFile)
	if err != nil {
		t.Fatal(err)
	}
	mustUnmarshal(t, data, &f)
	if len(f.Episodes) != 1 {
		t.Fatalf("state file records %d episodes, want 1: %s", len(f.Episodes), data)
	}
	for _, r := range f.Episodes {
		if r.FiredAt.IsZero() || r.ResolvedAt.IsZero() {
			t.Errorf("state file records %+v, want the episode fired and resolved", r)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(stateFile))
	if len(entries) != 1 {
		t.Errorf("state directory holds %d files, want only the state file (no temporary files left)", len(entries))
	}
}

func TestEpisodeLogPrunesOldEpisodes(t *testing.T) {
	file := filepath.Join(t.TempDir(), "state.json")
	now := t0
	clock := func() time.Time { return now }
	l, err := openEpisodeLog(file, clock)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.put("old", episodeRecord{FiredAt: now.Add(-8 * 24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := l.put("recent", episodeRecord{FiredAt: now.Add(-8 * 24 * time.Hour), ResolvedAt: now.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	l, err = openEpisodeLog(file, clock)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.get("old"); ok {
		t.Error("episode last posted 8 days ago was kept")
	}
	if _, ok := l.get("recent"); !ok {
		t.Error("episode resolved an hour ago was pruned")
	}
}

func TestSlackMessage(t *testing.T) {
	tests := []struct {
		name     string
		alert    *Alert
		wantText string
		want     []string // fragments of the blocks' texts and URLs
	}{
		{
			name:     "firing",
			alert:    testAlert("checkout", t0.Add(-5*time.Minute), time.Time{}),
			wantText: "checkout mints tokens nobody asked for",
			want: []string{
				"🔥 FIRING: Self-generated traffic · token-cache · service=checkout",
				"*Observed*\n11.5 token mints/s",
				"*Expected*\n0.0241 token mints/s",
				"*Unexplained*\n99.8 % of the work",
				"*Inbound*\n12 req/s now, usually 11.2 req/s (normal)",
				"*Instances*\n12",
				"*Diagnosis*\n12 instances mint tokens independently; mints track instance count, not demand → cache is not shared.",
				"*Remedy*\nShare the token cache",
				"Open graph",
				"http://prometheus:9090/graph?g0.expr=",
				"rule `token-cache` · severity critical · started 2025-03-14 09:25:00 UTC",
			},
		},
		{
			name:     "resolved",
			alert:    testAlert("checkout", t0.Add(-5*time.Minute), t0),
			wantText: "Resolved: checkout mints tokens nobody asked for",
			want: []string{
				"✅ RESOLVED: Self-generated traffic · token-cache · service=checkout",
				"resolved 2025-03-14 09:30:00 UTC after 5m0s",
			},
		},
		{
			name: "mrkdwn is escaped",
			alert: func() *Alert {
				a := testAlert("checkout", t0, time.Time{})
				a.Details.Diagnosis = "<!channel> & friends"
				a.Annotations["summary"] = "a < b"
				return a
			}(),
			wantText: "a &lt; b",
			want:     []string{"&lt;!channel&gt; &amp; friends"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text, blocks := slackMessage(tc.alert)
			if text != tc.wantText {
				t.Errorf("text = %q, want %q", text, tc.wantText)
			}
			got := blockTexts(t, blocks)
			for _, w := range tc.want {
				if !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, w) }) {
					t.Errorf("no block contains %q; texts:\n%s", w, strings.Join(got, "\n--\n"))
				}
			}
		})
	}
}

func TestSig3(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{0, "0"}, {12, "12"}, {11.52, "11.5"}, {99.79, "99.8"}, {1234, "1230"},
		{0.02412, "0.0241"}, {0.0012345, "0.00123"}, {-3.14159, "-3.14"},
		{math.NaN(), "n/a"}, {math.Inf(1), "n/a"},
	}
	for _, tc := range tests {
		if got := sig3(tc.in); got != tc.want {
			t.Errorf("sig3(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestClassifySlackError(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		wantRetry bool
		wantAfter time.Duration
	}{
		{"rate limited", &slack.RateLimitedError{RetryAfter: 3 * time.Second}, true, 3 * time.Second},
		{"server error", slack.StatusCodeError{Code: 502, Status: "502 Bad Gateway"}, true, 0},
		{"not found", slack.StatusCodeError{Code: 404, Status: "404 Not Found"}, false, 0},
		{"channel not found", slack.SlackErrorResponse{Err: "channel_not_found"}, false, 0},
		{"internal error", slack.SlackErrorResponse{Err: "internal_error"}, true, 0},
		{"network", &url.Error{Op: "Post", URL: "http://x", Err: errors.New("connection refused")}, true, 0},
		{"bad URL", &url.Error{Op: "parse", URL: "http://x", Err: errors.New("invalid")}, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			retry, after := classifySlackError(fmt.Errorf("wrapped: %w", tc.err))
			if retry != tc.wantRetry || after != tc.wantAfter {
				t.Errorf("got retry %v after %s, want %v %s", retry, after, tc.wantRetry, tc.wantAfter)
			}
		})
	}
}

// blockTexts returns every text and URL in blocks.
func blockTexts(t *testing.T, blocks []slack.Block) []string {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(blocks); err != nil {
		t.Fatal(err)
	}
	var v any
	mustUnmarshal(t, buf.Bytes(), &v)
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "text" || k == "url") {
					out = append(out, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(v)
	return out
}

// recordingTransport records Slack API calls: method, form and response body.
type recordingTransport struct {
	mu    sync.Mutex
	calls []apiCall
}

type apiCall struct {
	method string
	form   url.Values
	resp   []byte
}

func (rt *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	respBody, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(respBody))
	form, _ := url.ParseQuery(string(body))
	rt.mu.Lock()
	rt.calls = append(rt.calls, apiCall{method: path.Base(req.URL.Path), form: form, resp: respBody})
	rt.mu.Unlock()
	return resp, nil
}

func (rt *recordingTransport) get() []apiCall {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return slices.Clone(rt.calls)
}

// Slack rate-limits a burst: the first two requests get 429 with Retry-After. Every message is
// still delivered once, each after Slack's wait, and in the order the transitions happened (a
// resolve never overtakes its firing message).
func TestSlackRateLimitKeepsOrder(t *testing.T) {
	rec, srv := rateLimitedSlack(t, 2, "2")
	sleeps := &sleepRecorder{}
	retrier := sleeps.retrier()
	m, _ := startManager(t, []config.Receiver{
		{Name: "slack", Type: config.ReceiverSlack, WebhookURL: commoncfg.Secret(srv.URL + "/services/T0/B0/secret")},
	}, routeAll("slack"), managerOptions{retrier: retrier})

	m.Update(t0, []*Alert{testAlert("checkout", t0, time.Time{}), testAlert("billing", t0, time.Time{})})
	m.Update(t0.Add(time.Minute), []*Alert{testAlert("checkout", t0, t0.Add(time.Minute)), testAlert("billing", t0, time.Time{})})
	stop(t, m)

	var got []string
	for _, b := range rec.accepted() {
		var msg slack.WebhookMessage
		mustUnmarshal(t, b, &msg)
		got = append(got, msg.Text)
	}
	want := []string{"checkout mints tokens nobody asked for", "billing mints tokens nobody asked for", "Resolved: checkout mints tokens nobody asked for"}
	if !slices.Equal(got, want) {
		t.Errorf("delivered %q, want %q in that order, once each", got, want)
	}
	if waits := sleeps.recorded(); len(waits) != 2 || waits[0] < 2*time.Second || waits[1] < 2*time.Second {
		t.Errorf("waits = %v, want two of at least the 2s Retry-After", waits)
	}
}
