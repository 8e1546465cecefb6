package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	commoncfg "github.com/prometheus/common/config"

	"github.com/emergent-sh/emergent/config"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestWebhookPayload(t *testing.T) {
	firing := testAlert("checkout", t0.Add(-5*time.Minute), time.Time{})
	resolved := testAlert("checkout", t0.Add(-5*time.Minute), t0)
	other := testAlert("billing", t0.Add(-2*time.Minute), time.Time{})
	tests := []struct {
		name   string
		golden string
		// calls are the Notify calls; the golden file holds the last request's body.
		calls [][]*Alert
	}{
		{name: "firing", golden: "webhook-firing.json", calls: [][]*Alert{{firing}}},
		{name: "resolved", golden: "webhook-resolved.json", calls: [][]*Alert{{firing}, {resolved}}},
		{name: "two alerts", golden: "webhook-two-alerts.json", calls: [][]*Alert{{firing, other}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec, srv := newRecorder(t, nil)
			w, err := NewWebhook(config.Receiver{Name: "ops-hook", Type: config.ReceiverWebhook, URL: commoncfg.Secret(srv.URL)}, nil, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			for _, alerts := range tc.calls {
				if _, err := w.Notify(context.Background(), alerts...); err != nil {
					t.Fatal(err)
				}
			}
			bodies := rec.accepted()
			if len(bodies) != len(tc.calls) {
				t.Fatalf("got %d requests, want %d", len(bodies), len(tc.calls))
			}
			compareGolden(t, filepath.Join("testdata", tc.golden), bodies[len(bodies)-1])
		})
	}
}

// A webhook posts each transition once, and a resolve only after its firing: the Manager's
// one dedup stage, with the webhook's episode log as its memory of what was posted.
func TestWebhookOncePerTransition(t *testing.T) {
	rec, srv := newRecorder(t, nil)
	m, _ := startManager(t, []config.Receiver{{Name: "hook", Type: config.ReceiverWebhook, URL: commoncfg.Secret(srv.URL)}},
		routeAll("hook"), managerOptions{})
	orphan := testAlert("billing", t0.Add(-time.Hour), t0) // resolved, never posted firing
	firing := testAlert("checkout", t0, time.Time{})
	resolved := testAlert("checkout", t0, t0.Add(time.Minute))
	for i, a := range []*Alert{orphan, firing, firing, resolved, resolved, firing} {
		m.Update(t0.Add(time.Duration(i)*time.Second), []*Alert{a})
	}
	stop(t, m)
	var statuses []string
	for _, b := range rec.accepted() {
		var msg webhookMessage
		mustUnmarshal(t, b, &msg)
		statuses = append(statuses, msg.Status)
	}
	if want := []string{"firing", "resolved"}; !reflect.DeepEqual(statuses, want) {
		t.Errorf("posted %v, want %v", statuses, want)
	}
}

// compareGolden compares got with the golden file as JSON, or rewrites the file with -update.
func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		var out bytes.Buffer
		if err := json.Indent(&out, got, "", "  "); err != nil {
			t.Fatal(err)
		}
		out.WriteByte('\n')
		if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	var g, w any
	mustUnmarshal(t, got, &g)
	mustUnmarshal(t, want, &w)
	if !reflect.DeepEqual(g, w) {
		t.Errorf("payload differs from %s (run with -update to accept it)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}
