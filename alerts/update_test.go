package alerts

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/config"
	commoncfg "github.com/prometheus/common/config"
)

// An episode that got much worse is news on every channel, once, with its new numbers: a Slack
// reply in the thread plus the original edited, the webhook posted again, Alertmanager sent
// at once rather than at the next resend.
func TestUpdatesReachEveryReceiver(t *testing.T) {
	srv := slackBotServer(t)
	hook, hookSrv := newRecorder(t, nil)
	am, amSrv := newRecorder(t, nil)

	rt := &recordingTransport{}
	m, _ := startManager(t, []config.Receiver{
		{Name: "slack-bot", Type: config.ReceiverSlack, Token: "xoxb-not-a-real-token", Channel: "#emergent", APIURL: srv.GetAPIURL()},
		{Name: "hook", Type: config.ReceiverWebhook, URL: commoncfg.Secret(hookSrv.URL)},
		{Name: "am", Type: config.ReceiverAlertmanager, URLs: []string{amSrv.URL}},
	}, routeAll("slack-bot", "hook", "am"), managerOptions{
		httpClient: func(r config.Receiver) (*http.Client, error) {
			if r.Type == config.ReceiverSlack {
				return &http.Client{Transport: rt}, nil
			}
			return http.DefaultClient, nil
		},
	})

	firing := testAlert("checkout", t0, time.Time{})
	worse := testAlert("checkout", t0, time.Time{})
	worse.Revision, worse.Annotations["summary"] = 1, "checkout mints 19/s, 100x worse"
	m.Update(t0, []*Alert{firing})
	waitFor(t, "the firing everywhere", func() bool { return len(rt.get()) == 1 && hook.requests() == 1 && am.requests() == 1 })
	for i := 1; i <= 3; i++ { // the update is handed on every evaluation after; it goes out once
		m.Update(t0.Add(time.Duration(i)*10*time.Second), []*Alert{worse})
	}
	waitFor(t, "the update everywhere", func() bool { return len(rt.get()) == 3 && hook.requests() == 2 && am.requests() == 2 })
	stop(t, m)

	var methods []string
	for _, c := range rt.get() {
		methods = append(methods, c.method)
	}
	if want := []string{"chat.postMessage", "chat.postMessage", "chat.update"}; !slices.Equal(methods, want) {
		t.Fatalf("Slack API calls = %v, want %v", methods, want)
	}
	reply, edit := rt.get()[1], rt.get()[2]
	if reply.form.Get("thread_ts") == "" || !strings.Contains(reply.form.Get("text"), "100x worse") {
		t.Errorf("update reply: thread_ts %q text %q; want the new summary in the thread", reply.form.Get("thread_ts"), reply.form.Get("text"))
	}
	if !strings.Contains(edit.form.Get("blocks"), "FIRING (worse)") {
		t.Errorf("the original message was not edited to the update: %s", edit.form.Get("blocks"))
	}
	for name, rec := range map[string]*recorder{"webhook": hook, "alertmanager": am} {
		bodies := rec.accepted()
		if len(bodies) != 2 || !strings.Contains(string(bodies[1]), "100x worse") {
			t.Errorf("%s got %d posts; the second must carry the new summary: %s", name, len(bodies), bodies)
		}
	}
}
