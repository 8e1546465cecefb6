package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/detector"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slacktest"
)

// labelKey renders a label set as a stable map key: {a="1", b="2"}.
func labelKey(labels map[string]string) string {
	return "{" + detector.GroupString(labels) + "}"
}

// amAlert is an alert as Alertmanager's API v2 shows it, or as a client posts it.
type amAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	EndsAt      time.Time         `json:"endsAt"`
	Status      struct {
		State string `json:"state"`
	} `json:"status"`
}

// matches reports whether every label in want has its value (an empty value: label absent).
func (a amAlert) matches(want map[string]string) bool {
	for k, v := range want {
		if a.Labels[k] != v {
			return false
		}
	}
	return true
}

// amPost is one POST a daemon made to Alertmanager, as the proxy in between saw it.
type amPost struct {
	at     time.Time
	alerts []amAlert
}

// amProxy sits between one emergentd and the real Alertmanager and keeps every alert that
// daemon posted, so the test knows who sent what (Alertmanager merges replicas' alerts).
type amProxy struct {
	name   string
	target string
	srv    *httptest.Server

	mu    sync.Mutex
	posts []amPost
}

func newAMProxy(t *testing.T, name, target string) *amProxy {
	p := &amProxy{name: name, target: target}
	p.srv = httptest.NewServer(p)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *amProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	at := time.Now()
	req, err := http.NewRequestWithContext(r.Context(), r.Method, p.target+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	req.Header = r.Header.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	// Recorded once Alertmanager has accepted it: what the test reads from the proxy,
	// Alertmanager already holds.
	if r.Method == http.MethodPost && r.URL.Path == "/api/v2/alerts" && resp.StatusCode/100 == 2 {
		var alerts []amAlert
		if err := json.Unmarshal(body, &alerts); err == nil {
			p.mu.Lock()
			p.posts = append(p.posts, amPost{at: at, alerts: alerts})
			p.mu.Unlock()
		}
	}
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// posted returns every alert the daemon posted that matches want, with when it was posted.
func (p *amProxy) posted(want map[string]string) []amPost {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []amPost
	for _, post := range p.posts {
		var got []amAlert
		for _, a := range post.alerts {
			if a.matches(want) {
				got = append(got, a)
			}
		}
		if len(got) > 0 {
			out = append(out, amPost{at: post.at, alerts: got})
		}
	}
	return out
}

// seenAlert is what the watcher knows of one label set in Alertmanager.
type seenAlert struct {
	first, last time.Time   // first and last poll that listed it
	alert       amAlert     // as last listed
	present     bool        // listed by the latest poll
	starts      []time.Time // every distinct startsAt listed for the label set (its episodes)
}

// amWatcher polls the real Alertmanager's API and remembers every alert it ever listed, and
// when: detection and resolution times come from here, and so does "nothing ever fired".
type amWatcher struct {
	url string

	mu     sync.Mutex
	seen   map[string]*seenAlert
	lastOK time.Time
	err    error
}

func newAMWatcher(url string) *amWatcher {
	return &amWatcher{url: url, seen: map[string]*seenAlert{}}
}

// getAlerts lists the alerts Alertmanager holds as active (resolved ones are not listed).
func getAlerts(ctx context.Context, amURL string) ([]amAlert, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, amURL+"/api/v2/alerts", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v2/alerts: %s", resp.Status)
	}
	var alerts []amAlert
	return alerts, json.NewDecoder(resp.Body).Decode(&alerts)
}

func (w *amWatcher) run(ctx context.Context) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		alerts, err := getAlerts(cctx, w.url)
		cancel()
		now := time.Now()
		w.mu.Lock()
		if err != nil {
			if ctx.Err() == nil {
				w.err = err
			}
		} else {
			w.lastOK = now
			for _, s := range w.seen {
				s.present = false
			}
			for _, a := range alerts {
				k := labelKey(a.Labels)
				s, ok := w.seen[k]
				if !ok {
					s = &seenAlert{first: now}
					w.seen[k] = s
				}
				s.last, s.alert, s.present = now, a, true
				if !slices.ContainsFunc(s.starts, a.StartsAt.Equal) {
					s.starts = append(s.starts, a.StartsAt)
				}
			}
		}
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// find returns the alerts ever listed that match want.
func (w *amWatcher) find(want map[string]string) []seenAlert {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []seenAlert
	for _, s := range w.seen {
		if s.alert.matches(want) {
			c := *s
			c.starts = slices.Clone(s.starts)
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].first.Before(out[j].first) })
	return out
}

// healthy reports an error unless a poll succeeded after t (the watcher is alive and seeing).
func (w *amWatcher) healthy(after time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.lastOK.After(after) {
		return fmt.Errorf("no successful Alertmanager poll since %s (last error: %v)", after.Format(time.TimeOnly), w.err)
	}
	return nil
}

// slackMessage is one chat.postMessage or chat.update the Slack fake received.
type slackMessage struct {
	at       time.Time
	method   string // "chat.postMessage" or "chat.update"
	channel  string
	ts       string // the message's ts (assigned for posts, targeted for updates)
	threadTS string
	text     string
	blocks   string // the Block Kit JSON
}

// render is the message as a reader sees it: the fallback text and the blocks' text.
func (m slackMessage) render() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s ts=%s", m.method, m.ts)
	if m.threadTS != "" {
		fmt.Fprintf(&b, " thread=%s", m.threadTS)
	}
	fmt.Fprintf(&b, "] %s", m.text)
	var blocks slack.Blocks
	if m.blocks != "" && json.Unmarshal([]byte(m.blocks), &blocks) == nil {
		for _, blk := range blocks.BlockSet {
			switch blk := blk.(type) {
			case *slack.HeaderBlock:
				fmt.Fprintf(&b, "\n    # %s", blk.Text.Text)
			case *slack.SectionBlock:
				if blk.Text != nil {
					fmt.Fprintf(&b, "\n    %s", strings.ReplaceAll(blk.Text.Text, "\n", " "))
				}
				var fields []string
				for _, f := range blk.Fields {
					fields = append(fields, strings.ReplaceAll(f.Text, "\n", " "))
				}
				if len(fields) > 0 {
					fmt.Fprintf(&b, "\n    %s", strings.Join(fields, " | "))
				}
			case *slack.ContextBlock:
				for _, e := range blk.ContextElements.Elements {
					if t, ok := e.(*slack.TextBlockObject); ok {
						fmt.Fprintf(&b, "\n    (%s)", t.Text)
					}
				}
			}
		}
	}
	return b.String()
}

// slackFake is slack-go's slacktest server in bot mode, with chat.postMessage and chat.update
// recorded (slacktest has no chat.update, and gives messages posted in the same second the
// same ts, which would tangle the threads this test checks).
type slackFake struct {
	srv *slacktest.Server

	mu       sync.Mutex
	messages []slackMessage
	next     int
}

func newSlackFake(t *testing.T) *slackFake {
	f := &slackFake{}
	f.srv = slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/chat.postMessage", f.handle("chat.postMessage"))
		c.Handle("/chat.update", f.handle("chat.update"))
	})
	f.srv.Start()
	t.Cleanup(f.srv.Stop)
	return f
}

// apiURL is the base URL for the api_url setting.
func (f *slackFake) apiURL() string { return f.srv.GetAPIURL() }

func (f *slackFake) handle(method string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		form, err := url.ParseQuery(string(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// slack-go sends the token as a form field for chat.* and as a header elsewhere.
		if form.Get("token") != slackToken && r.Header.Get("Authorization") != "Bearer "+slackToken {
			_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": "invalid_auth"})
			return
		}
		m := slackMessage{
			at: time.Now(), method: method, channel: form.Get("channel"), ts: form.Get("ts"),
			threadTS: form.Get("thread_ts"), text: form.Get("text"), blocks: form.Get("blocks"),
		}
		f.mu.Lock()
		if method == "chat.postMessage" {
			f.next++
			m.ts = fmt.Sprintf("1700000000.%06d", f.next)
		}
		f.messages = append(f.messages, m)
		f.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": m.channel, "ts": m.ts, "text": m.text})
	}
}

func (f *slackFake) all() []slackMessage {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]slackMessage(nil), f.messages...)
}

// about returns the messages whose text or blocks mention service="name" (the summary names
// the group), plus the thread replies and edits of those messages.
func (f *slackFake) about(service string) []slackMessage {
	all := f.all()
	mine := map[string]bool{}
	var out []slackMessage
	for _, m := range all {
		if strings.Contains(m.text, fmt.Sprintf("service=%q", service)) || strings.Contains(m.blocks, "service="+service) {
			if m.method == "chat.postMessage" && m.threadTS == "" {
				mine[m.ts] = true
			}
			out = append(out, m)
			continue
		}
		if mine[m.threadTS] || (m.method == "chat.update" && mine[m.ts]) {
			out = append(out, m)
		}
	}
	return out
}

// hookReceiver is the name of the primary daemon's webhook receiver, which every payload
// must carry.
const hookReceiver = "oncall-webhook"

// hookMessage is Alertmanager's webhook payload (version 4) as the far end decodes it.
type hookMessage struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []hookAlert       `json:"alerts"`
}

// hookAlert is one alert of a payload: the times as sent, and parsed.
type hookAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	RawStartsAt  string            `json:"startsAt"`
	RawEndsAt    string            `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`

	StartsAt, EndsAt time.Time `json:"-"`
}

// Every key of Alertmanager's webhook payload and of its alerts: none may be missing.
var (
	hookMessageKeys = []string{"version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels",
		"commonLabels", "commonAnnotations", "externalURL", "alerts"}
	hookAlertKeys = []string{"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
	// alertnames of the kinds routed to the webhook.
	hookAlertnames = map[string]string{"self_generated_traffic": "SelfGeneratedTraffic", "flush_storm": "FlushStorm"}
)

// hookPost is one alert of one payload, with when it arrived.
type hookPost struct {
	at time.Time
	hookAlert
}

// webhookSink is the far end of the primary daemon's webhook receiver, on 127.0.0.1: it
// decodes every payload strictly as Alertmanager's webhook JSON (version 4) and keeps its
// alerts in arrival order, and every way a request broke the format.
type webhookSink struct {
	srv  *httptest.Server
	path string // secret: the part of the URL the daemon is given in a file; never logged

	mu       sync.Mutex
	posts    []hookPost
	problems []string
}

func newWebhookSink(t *testing.T) *webhookSink {
	token := make([]byte, 16)
	if _, err := rand.Read(token); err != nil {
		t.Fatal(err)
	}
	h := &webhookSink{path: "/hooks/" + hex.EncodeToString(token)}
	h.srv = httptest.NewServer(h) // on 127.0.0.1
	t.Cleanup(h.srv.Close)
	return h
}

// url is the receiver's URL, a secret: written to the daemon's url_file, never logged.
func (h *webhookSink) url() string { return h.srv.URL + h.path }

// secret is what must never appear in logs, metrics or the served configuration.
func (h *webhookSink) secret() string { return strings.TrimPrefix(h.path, "/hooks/") }

func (h *webhookSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var problems []string
	switch {
	case r.Method != http.MethodPost:
		problems = append(problems, fmt.Sprintf("%s request, want POST", r.Method))
	case r.URL.Path != h.path:
		problems = append(problems, "POST to a path other than the configured URL's")
	case !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json"):
		problems = append(problems, fmt.Sprintf("Content-Type %q, want application/json", r.Header.Get("Content-Type")))
	}
	var msg hookMessage
	if len(problems) == 0 {
		msg, problems = decodeHook(body, at)
	}
	h.mu.Lock()
	for _, p := range problems {
		h.problems = append(h.problems, fmt.Sprintf("payload at %s: %s", at.Format("15:04:05.000"), p))
	}
	for _, a := range msg.Alerts {
		h.posts = append(h.posts, hookPost{at: at, hookAlert: a})
	}
	h.mu.Unlock()
	if len(problems) > 0 && len(msg.Alerts) == 0 {
		http.Error(w, "not an Alertmanager webhook payload", http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// decodeHook decodes one payload received at at and lists everything wrong with it.
func decodeHook(body []byte, at time.Time) (hookMessage, []string) {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	var msg hookMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&msg); err != nil {
		bad("does not decode as Alertmanager's webhook payload: %v", err)
		return hookMessage{}, problems
	}
	var keys struct {
		Message map[string]json.RawMessage
		Alerts  []map[string]json.RawMessage
	}
	_ = json.Unmarshal(body, &keys.Message)
	_ = json.Unmarshal(keys.Message["alerts"], &keys.Alerts)
	for _, k := range hookMessageKeys {
		if _, ok := keys.Message[k]; !ok {
			bad("lacks the key %q", k)
		}
	}
	for i, a := range keys.Alerts {
		for _, k := range hookAlertKeys {
			if _, ok := a[k]; !ok {
				bad("alert %d lacks the key %q", i, k)
			}
		}
	}
	if msg.Version != "4" {
		bad("version %q, want \"4\"", msg.Version)
	}
	if msg.Receiver != hookReceiver {
		bad("receiver %q, want %q", msg.Receiver, hookReceiver)
	}
	if msg.TruncatedAlerts != 0 {
		bad("truncatedAlerts %d", msg.TruncatedAlerts)
	}
	if len(msg.Alerts) == 0 {
		bad("no alerts")
	}
	if !strings.HasPrefix(msg.GroupKey, "{}:") {
		bad("groupKey %q, want {}:<labels>", msg.GroupKey)
	}
	if labelKey(msg.GroupLabels) != labelKey(msg.CommonLabels) {
		bad("groupLabels %s, commonLabels %s: emergent groups by the labels its alerts share", labelKey(msg.GroupLabels), labelKey(msg.CommonLabels))
	}
	firing := false
	for i := range msg.Alerts {
		a := &msg.Alerts[i]
		firing = firing || a.Status == "firing"
		for _, p := range checkHookAlert(a, at) {
			bad("alert %d %s: %s", i, labelKey(a.Labels), p)
		}
		for k, v := range msg.CommonLabels {
			if a.Labels[k] != v {
				bad("commonLabels has %s=%q, alert %d has %q", k, v, i, a.Labels[k])
			}
		}
		for k, v := range msg.CommonAnnotations {
			if a.Annotations[k] != v {
				bad("commonAnnotations has %s, alert %d differs", k, i)
			}
		}
	}
	if want := map[bool]string{true: "firing", false: "resolved"}[firing]; msg.Status != want {
		bad("status %q, want %q (firing if any alert fires)", msg.Status, want)
	}
	return msg, problems
}

// checkHookAlert parses an alert's times and lists what is wrong with it.
func checkHookAlert(a *hookAlert, at time.Time) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	var err error
	if a.StartsAt, err = time.Parse(time.RFC3339Nano, a.RawStartsAt); err != nil || !strings.HasSuffix(a.RawStartsAt, "Z") {
		bad("startsAt %q is not an RFC 3339 UTC time (%v)", a.RawStartsAt, err)
	} else if a.StartsAt.IsZero() || a.StartsAt.After(at) {
		bad("startsAt %s, received %s", a.RawStartsAt, at.UTC().Format(time.RFC3339Nano))
	}
	switch a.Status {
	case "firing":
		if a.RawEndsAt != "0001-01-01T00:00:00Z" {
			bad("firing with endsAt %q, want 0001-01-01T00:00:00Z", a.RawEndsAt)
		}
	case "resolved":
		if a.EndsAt, err = time.Parse(time.RFC3339Nano, a.RawEndsAt); err != nil || !strings.HasSuffix(a.RawEndsAt, "Z") {
			bad("endsAt %q is not an RFC 3339 UTC time (%v)", a.RawEndsAt, err)
		} else if !a.EndsAt.After(a.StartsAt) || a.EndsAt.After(at) {
			bad("resolved with endsAt %s: want after startsAt %s and before it was received %s",
				a.RawEndsAt, a.RawStartsAt, at.UTC().Format(time.RFC3339Nano))
		}
	default:
		bad("status %q, want firing or resolved", a.Status)
	}
	kind := a.Labels["kind"]
	if name, ok := hookAlertnames[kind]; !ok || a.Labels["alertname"] != name {
		bad("alertname %q of kind %q: only the routed kinds, under their alertnames", a.Labels["alertname"], kind)
	}
	for _, l := range []string{"rule", "severity", "service"} {
		if a.Labels[l] == "" {
			bad("lacks the label %q", l)
		}
	}
	if a.Labels["cluster"] != "e2e" || a.Labels["source"] != "" {
		bad("external labels cluster=%q source=%q, want the primary's cluster=\"e2e\" alone", a.Labels["cluster"], a.Labels["source"])
	}
	for _, k := range []string{"summary", "description", "diagnosis", "remedy"} {
		if strings.TrimSpace(a.Annotations[k]) == "" {
			bad("annotation %q is empty", k)
		}
	}
	if group := fmt.Sprintf("service=%q: ", a.Labels["service"]); !strings.HasPrefix(a.Annotations["summary"], group) {
		bad("summary does not begin with its group %q: %q", group, a.Annotations["summary"])
	}
	if len(a.Fingerprint) != 16 {
		bad("fingerprint %q", a.Fingerprint)
	}
	if !strings.HasPrefix(a.GeneratorURL, "http://127.0.0.1:") || !strings.Contains(a.GeneratorURL, "/graph?") {
		bad("generatorURL %q is not a graph of the suite's Prometheus", a.GeneratorURL)
	}
	return problems
}

// alerts returns every alert the webhook received that matches want, in arrival order.
func (h *webhookSink) alerts(want map[string]string) []hookPost {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []hookPost
	for _, p := range h.posts {
		if (amAlert{Labels: p.Labels}).matches(want) {
			out = append(out, p)
		}
	}
	return out
}

// broken lists every way a payload broke the format so far.
func (h *webhookSink) broken() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.problems)
}
