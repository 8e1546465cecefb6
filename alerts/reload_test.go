package alerts

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	commoncfg "github.com/prometheus/common/config"

	"github.com/emergent-sh/emergent/config"
)

// A reload builds a new Manager, whose first Update hands every current alert, resolved ones
// included, to receivers with one-slot queues. The new page is delivered everywhere; the
// webhook still gets the resolve it owes (its state file says the firing was posted) but not
// those of episodes it was never paged for, and none of them costs the page.
func TestReloadedReceiverKeepsPages(t *testing.T) {
	hook, hookSrv := newRecorder(t, nil)
	am, amSrv := newRecorder(t, nil)
	receivers := []config.Receiver{
		{Name: "hook", Type: config.ReceiverWebhook, URL: commoncfg.Secret(hookSrv.URL), QueueSize: 1,
			StateFile: filepath.Join(t.TempDir(), "hook-state.json")},
		{Name: "am", Type: config.ReceiverAlertmanager, URLs: []string{amSrv.URL}, QueueSize: 1},
	}
	start := t0.Add(-time.Hour)

	before, _ := startManager(t, receivers, routeAll("hook", "am"), managerOptions{})
	before.Update(t0, []*Alert{testAlert("paged", start, time.Time{})})
	stop(t, before)
	if len(hook.accepted()) != 1 || len(am.accepted()) != 1 {
		t.Fatalf("before the reload: webhook got %d posts, Alertmanager %d; want the page once each", len(hook.accepted()), len(am.accepted()))
	}

	after, _ := startManager(t, receivers, routeAll("hook", "am"), managerOptions{})
	now := t0.Add(5 * time.Minute)
	after.Update(now, []*Alert{
		testAlert("paged", start, now.Add(-time.Minute)),
		testAlert("never-paged-1", start, now.Add(-2*time.Minute)),
		testAlert("never-paged-2", start, now.Add(-3*time.Minute)),
		testAlert("new", now, time.Time{}),
	})
	stop(t, after)

	var hookGot []string
	for _, b := range hook.accepted()[1:] { // after the first Manager's page
		var msg webhookMessage
		mustUnmarshal(t, b, &msg)
		for _, a := range msg.Alerts {
			hookGot = append(hookGot, a.Labels["service"]+" "+a.Status)
		}
	}
	if want := []string{"paged resolved", "new firing"}; !slices.Equal(hookGot, want) {
		t.Errorf("webhook got %v after the reload, want %v", hookGot, want)
	}
	if got := testutil.ToFloat64(after.metrics.dropped.WithLabelValues("hook")); got != 0 {
		t.Errorf("webhook dropped %v notifications, want 0", got)
	}

	var amFiring []string
	for _, b := range am.accepted()[1:] {
		var alerts []postableAlert
		mustUnmarshal(t, b, &alerts)
		for _, a := range alerts {
			if a.EndsAt.After(now) {
				amFiring = append(amFiring, a.Labels["service"])
			}
		}
	}
	if !slices.Equal(amFiring, []string{"new"}) {
		t.Errorf("Alertmanager got firing %v after the reload, want [new]: a resolve it was never sent firing pushed out the page", amFiring)
	}
}
