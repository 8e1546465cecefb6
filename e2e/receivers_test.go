package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
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
	first, last time.Time // first and last poll that listed it
	alert       amAlert   // as last listed
	present     bool      // listed by the latest poll
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
			out = append(out, *s)
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
