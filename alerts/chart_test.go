package alerts

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/slack-go/slack/slacktest"
)

// chartUploads is what a fake Slack got through its file-upload API (the three steps slack-go
// takes: files.getUploadURLExternal, the upload, files.completeUploadExternal).
type chartUploads struct {
	mu               sync.Mutex
	body             []byte
	threadTS, chanID string
}

// TestSlackBotPostsTheChartInThePagesThread: as a bot, the firing page is followed by its
// chart, uploaded with slack-go into the page's thread; a chart that cannot be drawn costs the
// page nothing.
func TestSlackBotPostsTheChartInThePagesThread(t *testing.T) {
	up := &chartUploads{}
	var srv *slacktest.Server
	srv = slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/files.getUploadURLExternal", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"ok":true,"upload_url":%q,"file_id":"F1"}`, srv.GetAPIURL()+"upload")
		})
		c.Handle("/upload", func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			up.mu.Lock()
			up.body = b
			up.mu.Unlock()
		})
		c.Handle("/files.completeUploadExternal", func(w http.ResponseWriter, r *http.Request) {
			_ = r.ParseForm()
			up.mu.Lock()
			up.threadTS, up.chanID = r.Form.Get("thread_ts"), r.Form.Get("channel_id")
			up.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"ok":true,"files":[{"id":"F1","title":"chart"}]}`)
		})
	})
	srv.Start()
	t.Cleanup(srv.Stop)

	rt := &recordingTransport{}
	m, _ := startManager(t, []config.Receiver{{
		Name: "slack-bot", Type: config.ReceiverSlack,
		Token: "xoxb-not-a-real-token", Channel: "#emergent", APIURL: srv.GetAPIURL(),
	}}, routeAll("slack-bot"), managerOptions{
		httpClient: func(config.Receiver) (*http.Client, error) { return &http.Client{Transport: rt}, nil },
	})
	png := []byte("\x89PNG\r\n\x1a\n a chart")
	withChart := testAlert("checkout", t0, time.Time{})
	withChart.Chart = func(context.Context) ([]byte, error) { return png, nil }
	broken := testAlert("search", t0, time.Time{})
	broken.Chart = func(context.Context) ([]byte, error) { return nil, fmt.Errorf("prometheus is down") }
	m.Update(t0, []*Alert{withChart, broken})
	waitFor(t, "both pages and the chart", func() bool {
		up.mu.Lock()
		defer up.mu.Unlock()
		return len(rt.get()) >= 2 && up.threadTS != ""
	})
	stop(t, m)

	var pageTS string
	for _, c := range rt.get() {
		if c.method == "chat.postMessage" && bytes.Contains(c.resp, []byte(`"ts"`)) && pageTS == "" {
			var resp struct{ TS string }
			mustUnmarshal(t, c.resp, &resp)
			pageTS = resp.TS
		}
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if !bytes.Contains(up.body, png) {
		t.Errorf("uploaded %q, want the chart's PNG", up.body)
	}
	if up.threadTS != pageTS || up.chanID == "" {
		t.Errorf("chart shared to channel %q thread %q, want the page's thread %q", up.chanID, up.threadTS, pageTS)
	}
	posts := 0
	for _, c := range rt.get() {
		if c.method == "chat.postMessage" {
			posts++
		}
	}
	if posts != 2 {
		t.Errorf("%d pages posted, want 2 (a chart that failed must not cost its page)", posts)
	}
}
