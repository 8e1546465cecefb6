package alerts

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/config"
)

func TestAlertmanagerPayload(t *testing.T) {
	tests := []struct {
		name     string
		path     string // where the Alertmanager is served
		wantPath string
	}{
		{name: "root", path: "", wantPath: "/api/v2/alerts"},
		{name: "path prefix", path: "/alertmanager/", wantPath: "/alertmanager/api/v2/alerts"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec, srv := newRecorder(t, func(_ int, w http.ResponseWriter, r *http.Request) bool {
				if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
					w.WriteHeader(http.StatusBadRequest)
					return false
				}
				return true
			})
			m, _ := startManager(t, []config.Receiver{
				{Name: "am", Type: config.ReceiverAlertmanager, URLs: []string{srv.URL + tc.path}},
			}, routeAll("am"), managerOptions{})

			firing := testAlert("checkout", t0.Add(-5*time.Minute), time.Time{})
			resolved := testAlert("billing", t0.Add(-30*time.Minute), t0.Add(-time.Minute))
			m.Update(t0, []*Alert{firing, resolved})
			stop(t, m)

			bodies := rec.accepted()
			if len(bodies) != 1 {
				t.Fatalf("got %d requests, want both alerts in one", len(bodies))
			}
			if rec.paths[0] != tc.wantPath {
				t.Errorf("path = %q, want %q", rec.paths[0], tc.wantPath)
			}
			var got []postableAlert
			mustUnmarshal(t, bodies[0], &got)
			if len(got) != 2 {
				t.Fatalf("got %d alerts, want 2: %s", len(got), bodies[0])
			}
			want := map[string]struct{ startsAt, endsAt time.Time }{
				// Firing: valid for 4·max(evaluation interval 30s, resend delay 1m).
				"checkout": {t0.Add(-5 * time.Minute), t0.Add(4 * time.Minute)},
				// Resolved: its own end.
				"billing": {t0.Add(-30 * time.Minute), t0.Add(-time.Minute)},
			}
			for _, a := range got {
				w, ok := want[a.Labels["service"]]
				if !ok {
					t.Fatalf("unexpected alert %v", a.Labels)
				}
				if !a.StartsAt.Equal(w.startsAt) || !a.EndsAt.Equal(w.endsAt) {
					t.Errorf("%s: startsAt, endsAt = %s, %s; want %s, %s", a.Labels["service"], a.StartsAt, a.EndsAt, w.startsAt, w.endsAt)
				}
				for k, v := range map[string]string{"alertname": "SelfGeneratedTraffic", "rule": "token-cache", "severity": "critical", "kind": "self_generated_traffic", "cluster": "eu-1"} {
					if a.Labels[k] != v {
						t.Errorf("%s: label %s = %q, want %q", a.Labels["service"], k, a.Labels[k], v)
					}
				}
				if a.Annotations["summary"] == "" || !strings.HasPrefix(a.GeneratorURL, "http://prometheus:9090/graph") {
					t.Errorf("%s: annotations or generatorURL missing: %+v", a.Labels["service"], a)
				}
			}
		})
	}
}

// One Alertmanager is down; the other gets the alert at once, and the down one gets it,
// once, when it comes back.
func TestAlertmanagerDownComesBack(t *testing.T) {
	back := make(chan struct{})
	down, downSrv := newRecorder(t, func(_ int, w http.ResponseWriter, _ *http.Request) bool {
		select {
		case <-back:
			return true
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
			return false
		}
	})
	up, upSrv := newRecorder(t, nil)
	m, _ := startManager(t, []config.Receiver{
		{Name: "am", Type: config.ReceiverAlertmanager, URLs: []string{downSrv.URL, upSrv.URL}},
	}, routeAll("am"), managerOptions{})

	m.Update(t0, []*Alert{testAlert("checkout", t0, time.Time{})})
	waitFor(t, "the up Alertmanager to get the alert", func() bool { return len(up.accepted()) == 1 })
	waitFor(t, "retries against the down Alertmanager", func() bool { return down.requests() >= 3 })
	if n := len(down.accepted()); n != 0 {
		t.Fatalf("down Alertmanager accepted %d requests", n)
	}
	close(back)
	waitFor(t, "the Alertmanager that came back to get the alert", func() bool { return len(down.accepted()) == 1 })
	stop(t, m)

	if n := len(down.accepted()); n != 1 {
		t.Errorf("Alertmanager that came back got %d deliveries, want 1", n)
	}
	var got []postableAlert
	mustUnmarshal(t, down.accepted()[0], &got)
	if len(got) != 1 || got[0].Labels["service"] != "checkout" {
		t.Errorf("delivered %+v, want the checkout alert", got)
	}
}

// TestAlertmanagerItems checks when an alert is due to Alertmanager across evaluations.
func TestAlertmanagerItems(t *testing.T) {
	firing := testAlert("checkout", t0, time.Time{})
	resolvedAt := func(end time.Time) *Alert { return testAlert("checkout", t0, end) }
	type want struct {
		resolved bool
		endsAt   time.Time
		prio     priority
	}
	steps := []struct {
		name   string
		now    time.Time
		alerts []*Alert
		want   []want
	}{
		{"new firing is sent", t0, []*Alert{firing}, []want{{false, t0.Add(4 * time.Minute), prioFiring}}},
		{"not again before the resend delay", t0.Add(30 * time.Second), []*Alert{firing}, nil},
		{"resent after the resend delay", t0.Add(time.Minute), []*Alert{firing}, []want{{false, t0.Add(5 * time.Minute), prioFiringResend}}},
		{"resolve is sent at once", t0.Add(90 * time.Second), []*Alert{resolvedAt(t0.Add(80 * time.Second))}, []want{{true, t0.Add(80 * time.Second), prioResolve}}},
		{"resolve not again before the resend delay", t0.Add(2 * time.Minute), []*Alert{resolvedAt(t0.Add(80 * time.Second))}, nil},
		{"resolve resent", t0.Add(150 * time.Second), []*Alert{resolvedAt(t0.Add(80 * time.Second))}, []want{{true, t0.Add(80 * time.Second), prioResolvedResend}}},
		{"a resolve no longer handed over is not sent", t0.Add(20 * time.Minute), nil, nil},
		{"firing wins over a resolved alert with the same labels", t0.Add(21 * time.Minute), []*Alert{resolvedAt(t0.Add(20 * time.Minute)), testAlert("checkout", t0.Add(21*time.Minute), time.Time{})}, []want{{false, t0.Add(25 * time.Minute), prioFiring}}},
		{"an alert that left and came back is new", t0.Add(22 * time.Minute), nil, nil},
		{"then fires again", t0.Add(22*time.Minute + time.Second), []*Alert{firing}, []want{{false, t0.Add(26*time.Minute + time.Second), prioFiring}}},
		{"a resolve never sent firing (after a reload) is sent as a resend", t0.Add(23 * time.Minute), []*Alert{testAlert("billing", t0, t0.Add(22*time.Minute))}, []want{{true, t0.Add(22 * time.Minute), prioResolvedResend}}},
	}
	r := &receiver{resendDelay: time.Minute, validFor: 4 * time.Minute, sent: map[string]sentState{}}
	for i, step := range steps {
		got := r.alertmanagerItems(step.now, step.alerts)
		if len(got) != len(step.want) {
			t.Fatalf("step %d %q: got %d items, want %d", i, step.name, len(got), len(step.want))
		}
		for j, w := range step.want {
			g := got[j]
			if g.resolved != w.resolved || !g.alert.EndsAt.Equal(w.endsAt) || g.prio != w.prio {
				t.Errorf("step %d %q: got resolved=%v endsAt=%s prio=%d, want %v %s %d", i, step.name, g.resolved, g.alert.EndsAt, g.prio, w.resolved, w.endsAt, w.prio)
			}
		}
	}
	if !firing.EndsAt.IsZero() {
		t.Errorf("the caller's alert was modified")
	}
}

func TestAlertmanagerStatus(t *testing.T) {
	tests := []struct {
		status    int
		header    string
		wantErr   bool
		wantRetry bool
		wantAfter time.Duration
	}{
		{status: 200},
		{status: 400, wantErr: true},
		{status: 404, wantErr: true},
		{status: 429, header: "7", wantErr: true, wantRetry: true, wantAfter: 7 * time.Second},
		{status: 429, wantErr: true, wantRetry: true},
		{status: 500, wantErr: true, wantRetry: true},
		{status: 503, header: "2", wantErr: true, wantRetry: true, wantAfter: 2 * time.Second},
	}
	for _, tc := range tests {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			_, srv := newRecorder(t, func(_ int, w http.ResponseWriter, _ *http.Request) bool {
				if tc.header != "" {
					w.Header().Set("Retry-After", tc.header)
				}
				w.WriteHeader(tc.status)
				return tc.status == 200
			})
			am, err := NewAlertmanager(srv.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			retry, err := am.Notify(context.Background(), testAlert("checkout", t0, time.Time{}))
			if (err != nil) != tc.wantErr || retry != tc.wantRetry {
				t.Fatalf("Notify = %v, %v; want error %v, retry %v", retry, err, tc.wantErr, tc.wantRetry)
			}
			after, ok := RetryAfter(err)
			if ok != (tc.wantAfter > 0) || after != tc.wantAfter {
				t.Errorf("RetryAfter = %s, %v; want %s", after, ok, tc.wantAfter)
			}
		})
	}
}
