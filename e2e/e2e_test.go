package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"
)

// Bounds, in evaluation intervals (2 s), from onset to the alert listed by Alertmanager.
// A token alert needs the rate window to pass the threshold (a few seconds at the lab's
// rates), `for` (10 intervals), the evaluation delay (1), alignment to the next step (≤ 1)
// and delivery; a flush storm needs three uploads (0.5/s), a scrape, the delay and a step.
const (
	tokenAlertBound = 16
	stormAlertBound = 8
	// rate window (10) + the quiet a lull may hold, average_over (10: the lab's fix is a mode
	// switched in place, no change the rule sees; resolve_for's 5 run within it) + delay,
	// steps and delivery.
	resolveBound = 27
	// quietFor is how long after the onsets the controls are watched: the token rule's `for`
	// plus ten intervals, and the whole 40 s surge plus `for`; longer if the rules settle
	// (ledger's scale-out must stay quiet past settle and `for`).
	quietFor = 60 * time.Second
)

func intervals(d time.Duration) float64 { return d.Seconds() / evalInterval.Seconds() }

// waitFor polls cond until it returns nil; after timeout it fails with cond's last error.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// alertFor is the label matcher of the alert a Prometheus-reading daemon raises for one
// service (no source label; an empty value means the label is absent).
func alertFor(alertname, svc string) map[string]string {
	return map[string]string{"alertname": alertname, "service": svc, "cluster": "e2e", "source": ""}
}

// TestRealStack runs every scenario on one stack: the incidents start at the same moment on
// services of their own, and the controls run alongside them.
func TestRealStack(t *testing.T) {
	began := time.Now()
	w := startWorld(t)
	t.Logf("stack up in %s: Prometheus %s, VictoriaMetrics %s, Alertmanager %s, %d services",
		time.Since(began).Round(time.Millisecond), w.prom.URL, w.vm.URL, w.am.URL, len(w.services))
	w.warmUp(t)
	t.Logf("warm-up done %s after start", time.Since(began).Round(time.Millisecond))

	// The settle the daemons run with (a scaling event's raised work pages only after it): the
	// scale-out's alert bound and how long the controls are watched include it.
	settle, err := settleOf(w.rulesText(daemonConfig{promURL: w.prom.URL, delay: evalDelay}))
	if err != nil {
		t.Fatal(err)
	}
	quiet := max(quietFor, settle+tokenFor+10*evalInterval)
	// Before onset the scaled services run scaledFrom instances, each exporting as a target of
	// its own; their idle listeners export nothing.
	for _, svc := range []string{"inventory", "ledger"} {
		waitFor(t, 2*rateWindow, svc+"'s instances before onset", func() error { return w.checkLive(svc, scaledFrom) })
	}

	onsets := w.startIncidents(t)
	onset := onsets["checkout"]
	incidents := []string{"checkout", "reports", "media", "inventory"}
	controls := []string{"search", "catalog", "files", "billing", "sessions", "ledger"}

	t.Run("fragmented", func(t *testing.T) {
		a := w.waitDetected(t, "SelfGeneratedTraffic", "checkout", onsets["checkout"], tokenAlertBound)
		for _, want := range []string{"2 instances do the work independently", "not shared"} {
			if !strings.Contains(a.Annotations["diagnosis"], want) {
				t.Errorf("diagnosis does not say %q: %q", want, a.Annotations["diagnosis"])
			}
		}
		if !strings.Contains(a.Annotations["summary"], "token mints") {
			t.Errorf("summary does not name token mints: %q", a.Annotations["summary"])
		}
		w.waitSlack(t, "checkout", "Self-generated traffic", "instances")
		w.checkWords(t, "SelfGeneratedTraffic", "checkout", false)
	})

	t.Run("fragmented-idle", func(t *testing.T) {
		a := w.waitDetected(t, "SelfGeneratedTraffic", "reports", onsets["reports"], tokenAlertBound)
		if !strings.Contains(a.Annotations["diagnosis"], "2 instances do the work independently") {
			t.Errorf("diagnosis does not name the instances minting: %q", a.Annotations["diagnosis"])
		}
		if !strings.Contains(a.Annotations["diagnosis"], "idle but busy") {
			t.Errorf("diagnosis does not say idle but busy (only the prober calls): %q", a.Annotations["diagnosis"])
		}
		w.waitSlack(t, "reports", "Self-generated traffic", "idle")
		w.checkWords(t, "SelfGeneratedTraffic", "reports", false, "idle but busy")
	})

	t.Run("flushstorm", func(t *testing.T) {
		a := w.waitDetected(t, "FlushStorm", "media", onsets["media"], stormAlertBound)
		// Already at firing, a few uploads in: the lag of rate(uploads_total[window]) is
		// corrected while the storm is younger than the window.
		if !strings.Contains(a.Annotations["diagnosis"], "FLUSHDB/FLUSHALL per write (upload) → the cache is flushed on the write path") {
			t.Errorf("diagnosis at firing does not name the write path: %q", a.Annotations["diagnosis"])
		}
		if a.Labels["severity"] != "critical" {
			t.Errorf("severity %q, want the rule's critical", a.Labels["severity"])
		}
		w.waitSlack(t, "media", "Flush storm", "FLUSHDB")
		w.checkWords(t, "FlushStorm", "media", false, "FLUSHDB/FLUSHALL per write")

		// Ground truth from the raw counters: every upload flushed once (the exporter and the
		// lab are scraped at different moments, so a dozen uploads in, off by one is 8%).
		truth, err := w.query(`max(redis_commands_total{service="media",cmd="flushdb"}) / sum(uploads_total{service="media"})`)
		if err != nil || truth < 0.8 || truth > 1.25 {
			t.Fatalf("the lab did not flush once per upload: %g flushes per upload (%v)", truth, err)
		}
		// And it stays there once the storm is older than the rate window, where the writes
		// are summed over the steps since the first flush.
		var ep episode
		waitFor(t, 2*rateWindow+10*evalInterval, "the media episode's diagnosis to settle on the write path", func() error {
			var err error
			if ep, err = w.daemons["primary"].episode("flush_storm", "media"); err != nil {
				return err
			}
			if r := ep.Numbers["flushes_per_write"]; r < 0.5 || r > 2 || !strings.Contains(ep.Diagnosis, "→ the cache is flushed on the write path") {
				return fmt.Errorf("flushes per write %.3g: %q", r, ep.Diagnosis)
			}
			return nil
		})
		t.Logf("media: %.2f FLUSHDB per upload in the raw counters; the detector said %q at firing, and %.3g (%q) %s after onset",
			truth, between(a.Annotations["diagnosis"], "", " FLUSHDB"), ep.Numbers["flushes_per_write"],
			between(ep.Diagnosis, "", ";"), time.Since(onsets["media"]).Round(time.Second))
	})

	t.Run("scale-out", func(t *testing.T) {
		// Per-pod state: inventory's six per-instance caches revoke each other's tokens where
		// two did not. Inbound is flat; mints grow with the replicas.
		waitFor(t, rateWindow+5*evalInterval, "inventory's "+strconv.Itoa(scaledTo)+" instances, each minting", func() error {
			if err := w.checkLive("inventory", scaledTo); err != nil {
				return err
			}
			n, err := w.query(`count(token_mint_count{service="inventory"} > 0)`)
			if err != nil || n != scaledTo {
				return fmt.Errorf("%g instances minted, want %d (%v)", n, scaledTo, err)
			}
			return nil
		})
		bound := tokenAlertBound + intervals(settle)
		t.Logf("inventory: scaled %d → %d instances; rules settle %s (bound %.0f intervals)", scaledFrom, scaledTo, settle, bound)
		a := w.waitDetected(t, "SelfGeneratedTraffic", "inventory", onsets["inventory"], bound)
		want := fmt.Sprintf("instances went %d → %d", scaledFrom, scaledTo)
		if !strings.Contains(a.Annotations["diagnosis"], want) {
			t.Errorf("Alertmanager's diagnosis does not say %q: %q", want, a.Annotations["diagnosis"])
		}
		if ep, err := w.daemons["primary"].episode("self_generated_traffic", "inventory"); err != nil {
			t.Error(err)
		} else if !strings.Contains(ep.Diagnosis, want) {
			t.Errorf("the API's diagnosis does not say %q: %q", want, ep.Diagnosis)
		}
		w.waitSlack(t, "inventory", "Self-generated traffic", want)
		w.checkWords(t, "SelfGeneratedTraffic", "inventory", false)
	})

	t.Run("replicas", func(t *testing.T) {
		// A second emergentd on the same Prometheus, started while the episodes are under
		// way: it rebuilds them from Prometheus history alone.
		started := time.Now()
		w.startDaemon("replica", daemonConfig{promURL: w.prom.URL, delay: evalDelay})
		for _, c := range []struct{ alertname, svc string }{
			{"SelfGeneratedTraffic", "checkout"}, {"SelfGeneratedTraffic", "reports"}, {"FlushStorm", "media"},
		} {
			want := alertFor(c.alertname, c.svc)
			var fromReplica, fromPrimary amAlert
			waitFor(t, 30*time.Second, "the replica's "+c.alertname+" for "+c.svc, func() error {
				var err error
				fromReplica, err = firstFiring(w.proxies["replica"], want)
				return err
			})
			fromPrimary, err := firstFiring(w.proxies["primary"], want)
			if err != nil {
				t.Fatal(err)
			}
			if !fromReplica.StartsAt.Equal(fromPrimary.StartsAt) {
				t.Errorf("%s/%s: replica startsAt %s, primary %s", c.alertname, c.svc,
					fromReplica.StartsAt.Format(time.RFC3339), fromPrimary.StartsAt.Format(time.RFC3339))
			}
			if labelKey(fromReplica.Labels) != labelKey(fromPrimary.Labels) {
				t.Errorf("%s/%s: replica labels %s, primary %s", c.alertname, c.svc, labelKey(fromReplica.Labels), labelKey(fromPrimary.Labels))
			}
			held, err := getAlerts(context.Background(), w.am.URL)
			if err != nil {
				t.Fatal(err)
			}
			var matching []amAlert
			for _, a := range held {
				if a.matches(want) {
					matching = append(matching, a)
				}
			}
			if len(matching) != 1 || !matching[0].StartsAt.Equal(fromPrimary.StartsAt) {
				t.Errorf("%s/%s: Alertmanager holds %d alerts %v, want one starting %s", c.alertname, c.svc, len(matching), matching, fromPrimary.StartsAt)
			}
			t.Logf("%s/%s: both replicas posted startsAt %s; Alertmanager holds one alert (replica started %s after the episode began)",
				c.alertname, c.svc, fromPrimary.StartsAt.Format(time.TimeOnly), started.Sub(fromPrimary.StartsAt).Round(time.Second))
		}
	})

	t.Run("fragmented-to-shared-resolves", func(t *testing.T) {
		want := alertFor("SelfGeneratedTraffic", "checkout")
		switched := time.Now()
		if err := w.setMode(w.services["checkout"], url.Values{"m": {"shared"}}); err != nil {
			t.Fatal(err)
		}
		var resolvedAt time.Time
		waitFor(t, time.Duration(resolveBound)*evalInterval+30*time.Second, "checkout's alert to resolve in Alertmanager", func() error {
			for _, s := range w.watcher.find(want) {
				if s.present {
					return errors.New("still listed")
				}
				resolvedAt = s.last
			}
			return nil
		})
		took := resolvedAt.Sub(switched)
		t.Logf("checkout: switched fragmented → shared; Alertmanager resolved it %.1f intervals later (%s; bound %d)",
			intervals(took), took.Round(100*time.Millisecond), resolveBound)
		if intervals(took) > resolveBound {
			t.Errorf("resolved %.1f intervals after the fix, want at most %d", intervals(took), resolveBound)
		}
		// Both replicas sent the resolve, with the same end.
		var ends []time.Time
		for _, name := range []string{"primary", "replica"} {
			var end time.Time
			waitFor(t, 15*time.Second, name+"'s resolved checkout alert", func() error {
				for _, p := range w.proxies[name].posted(want) {
					for _, a := range p.alerts {
						if !a.EndsAt.IsZero() && !a.EndsAt.After(p.at) {
							end = a.EndsAt
							return nil
						}
					}
				}
				return errors.New("no resolved post yet")
			})
			ends = append(ends, end)
		}
		if !ends[0].Equal(ends[1]) {
			t.Errorf("replicas resolved at different ends: primary %s, replica %s", ends[0], ends[1])
		}
		// Slack: a reply in the firing message's thread, and the message edited to resolved.
		waitFor(t, 15*time.Second, "the resolve in Slack", func() error {
			var firingTS string
			var reply, edit bool
			for _, m := range w.slack.about("checkout") {
				switch {
				case m.method == "chat.postMessage" && m.threadTS == "":
					firingTS = m.ts
				case m.method == "chat.postMessage" && m.threadTS == firingTS && strings.Contains(m.text, "Resolved"):
					reply = true
				case m.method == "chat.update" && m.ts == firingTS && strings.HasPrefix(m.text, "Resolved:"):
					edit = true
				}
			}
			if !reply || !edit {
				return fmt.Errorf("thread reply %v, edit %v", reply, edit)
			}
			return nil
		})
		for _, m := range w.slack.about("checkout") {
			if m.threadTS != "" || m.method == "chat.update" {
				t.Logf("Slack: %s", m.render())
			}
		}
		// The webhook's resolve, Slack's and Alertmanager's: the same words, the work back.
		eps := w.checkWords(t, "SelfGeneratedTraffic", "checkout", true)
		r := eps[len(eps)-1].resolved
		t.Logf("checkout: the webhook, Slack and Alertmanager resolved it at %s: %s", r.RawEndsAt, r.Annotations["summary"])
	})

	t.Run("victoriametrics", func(t *testing.T) {
		// The daemon reading VictoriaMetrics evaluates vmEvalDelay behind, past the 30 s VM
		// hides; its bound is the Prometheus bound plus that extra delay.
		extra := intervals(vmEvalDelay - evalDelay)
		for _, c := range []struct {
			alertname, svc string
			bound          float64
		}{
			{"SelfGeneratedTraffic", "checkout", tokenAlertBound + extra},
			{"SelfGeneratedTraffic", "reports", tokenAlertBound + extra},
			{"FlushStorm", "media", stormAlertBound + extra},
		} {
			want := map[string]string{"alertname": c.alertname, "service": c.svc, "source": "victoriametrics"}
			var fromVM amAlert
			var seen []seenAlert
			waitFor(t, time.Duration(c.bound)*evalInterval+30*time.Second, "VictoriaMetrics' "+c.alertname+" for "+c.svc+" in Alertmanager", func() error {
				var err error
				if fromVM, err = firstFiring(w.proxies["victoriametrics"], want); err != nil {
					return err
				}
				if seen = w.watcher.find(want); len(seen) == 0 {
					return errors.New("posted, not listed by Alertmanager yet")
				}
				return nil
			})
			fromProm, err := firstFiring(w.proxies["primary"], alertFor(c.alertname, c.svc))
			if err != nil {
				t.Fatal(err)
			}
			delay := seen[0].first.Sub(onsets[c.svc])
			t.Logf("%s/%s via VictoriaMetrics: onset→Alertmanager %.1f intervals (bound %.0f); episode start %s vs %s via Prometheus (%+.0f intervals)",
				c.alertname, c.svc, intervals(delay), c.bound, fromVM.StartsAt.Format(time.TimeOnly),
				fromProm.StartsAt.Format(time.TimeOnly), intervals(fromVM.StartsAt.Sub(fromProm.StartsAt)))
			if intervals(delay) > c.bound {
				t.Errorf("%s/%s via VictoriaMetrics: %.1f intervals after onset, want at most %.0f", c.alertname, c.svc, intervals(delay), c.bound)
			}
			if d := intervals(fromVM.StartsAt.Sub(fromProm.StartsAt)); d < -3 || d > 3 {
				t.Errorf("%s/%s: VictoriaMetrics' episode starts %+.0f intervals from Prometheus's, want within 3", c.alertname, c.svc, d)
			}
		}
	})

	t.Run("quiet", func(t *testing.T) {
		// Watch the controls for quietFor after the onsets (the VictoriaMetrics daemon sees
		// that period vmEvalDelay later): poll for anything raised about them anywhere, and
		// fail as soon as something is.
		latest := onset
		for _, at := range onsets {
			if at.After(latest) {
				latest = at
			}
		}
		until := latest.Add(quiet + vmEvalDelay)
		for {
			if v := w.controlViolations(controls); len(v) > 0 {
				t.Fatalf("a control raised an alert %s after onset:\n%s", time.Since(latest).Round(time.Second), strings.Join(v, "\n"))
			}
			if time.Now().After(until) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err := w.watcher.healthy(latest.Add(quiet)); err != nil {
			t.Fatal(err)
		}
		// Quiet because known and inactive, not because unseen: every control group has a
		// state, 0, in both daemons. A group may be pending for less than for — a healthy burst
		// shorter than for never pages (a shared cache's instances refreshing together at the
		// token's expiry, more of them after a scale-out) — so each must be 0 within for.
		for _, svc := range controls {
			for _, name := range []string{"primary", "victoriametrics"} {
				for _, rule := range []string{"token-minting", "redis-flush-storm"} {
					var st float64
					var ok bool
					for deadline := time.Now().Add(tokenFor + 2*evalInterval); ; time.Sleep(evalInterval / 4) {
						states, err := w.daemons[name].groupStates()
						if err != nil {
							t.Fatal(err)
						}
						if st, ok = states[rule+"/"+svc]; (ok && st == 0) || time.Now().After(deadline) {
							break
						}
					}
					if !ok || st != 0 {
						t.Errorf("%s: emergentd %s has %s in state %v (present %v) for longer than for (%s), want 0: known and quiet", svc, name, rule, st, ok, tokenFor)
					}
				}
			}
		}
		// The controls did happen: each check below reads Prometheus.
		w.checkHappened(t, onsets)
		t.Logf("controls quiet for %s after onset (the VictoriaMetrics daemon for the same data-time period): %s",
			time.Since(latest).Round(time.Second), strings.Join(controls, ", "))
	})

	// After the quiet period, the longest the incidents have run: every episode's firing, its
	// updates and its resolve, the same in the webhook, Slack and Alertmanager.
	t.Run("words", func(t *testing.T) {
		for _, c := range []struct{ alertname, svc string }{
			{"SelfGeneratedTraffic", "checkout"}, {"SelfGeneratedTraffic", "reports"},
			{"FlushStorm", "media"}, {"SelfGeneratedTraffic", "inventory"},
		} {
			t.Run(c.svc, func(t *testing.T) {
				logWords(t, c.svc, w.checkWords(t, c.alertname, c.svc, c.svc == "checkout"))
			})
		}
		w.checkSecretKept(t, "primary")
	})

	for name, d := range w.daemons {
		select {
		case err := <-d.done:
			t.Errorf("emergentd %s stopped during the run: %v", name, err)
		default:
		}
	}
	t.Logf("scenarios done %s after start (evaluation interval %s)", time.Since(began).Round(time.Second), evalInterval)

	if *updateQuickstart {
		// While the stack is still up: the run just checked becomes `emergentd replay`'s
		// quick start, and only if every scenario passed.
		t.Run("quickstart-recording", func(t *testing.T) {
			if w.t.Failed() {
				t.Fatalf("a scenario failed: not recording %s from this run", quickstartFile)
			}
			w.recordQuickstart(t, incidents, controls)
		})
	}
}

// controlViolations lists everything ever raised about the controls: alerts Alertmanager
// listed, alerts any daemon posted, Slack messages, webhook posts; and any blind meta-alert.
func (w *world) controlViolations(controls []string) []string {
	var out []string
	for _, svc := range controls {
		for _, s := range w.watcher.find(map[string]string{"service": svc}) {
			out = append(out, fmt.Sprintf("%s: Alertmanager listed %s (first %s)", svc, labelKey(s.alert.Labels), s.first.Format(time.TimeOnly)))
		}
		for name, p := range w.proxies {
			for _, post := range p.posted(map[string]string{"service": svc}) {
				out = append(out, fmt.Sprintf("%s: emergentd %s posted %s", svc, name, labelKey(post.alerts[0].Labels)))
			}
		}
		for _, m := range w.slack.about(svc) {
			out = append(out, fmt.Sprintf("%s: Slack got %s", svc, m.render()))
		}
		for _, p := range w.hook.alerts(map[string]string{"service": svc}) {
			out = append(out, fmt.Sprintf("%s: the webhook got %s %s: %s", svc, p.Status, labelKey(p.Labels), p.Annotations["summary"]))
		}
	}
	for _, s := range w.watcher.find(map[string]string{"alertname": "EmergentDetectorBlind"}) {
		out = append(out, "a detector went blind: "+labelKey(s.alert.Labels))
	}
	return out
}

// warmUp waits until Prometheus holds warmUpData of samples for every target and the primary
// daemon knows every group of both rules, quiet.
func (w *world) warmUp(t *testing.T) {
	waitFor(t, 2*time.Minute, "healthy history and every group known", func() error {
		n, err := w.query(fmt.Sprintf("min(count_over_time(up[%s]))", model.Duration(warmUpData)))
		if err != nil {
			return err
		}
		if want := warmUpData.Seconds()/scrapeInterval.Seconds() - 2; n < want {
			return fmt.Errorf("%g samples per target in the last %s, want %g", n, warmUpData, want)
		}
		states, err := w.daemons["primary"].groupStates()
		if err != nil {
			return err
		}
		for _, svc := range w.order {
			for _, rule := range []string{"token-minting", "redis-flush-storm"} {
				if st, ok := states[rule+"/"+svc]; !ok || st != 0 {
					return fmt.Errorf("%s/%s is in state %v (present %v)", rule, svc, st, ok)
				}
			}
		}
		return nil
	})
}

// startIncidents starts every scenario at once and returns when each began.
func (w *world) startIncidents(t *testing.T) map[string]time.Time {
	var mu sync.Mutex
	onsets := map[string]time.Time{}
	at := func(svc string, fn func(*service) error) func() error {
		return func() error {
			now := time.Now()
			if err := fn(w.services[svc]); err != nil {
				return err
			}
			mu.Lock()
			onsets[svc] = now
			mu.Unlock()
			return nil
		}
	}
	mode := func(params url.Values) func(*service) error {
		return func(s *service) error { return w.setMode(s, params) }
	}
	parallel(t,
		at("checkout", mode(url.Values{"m": {"fragmented"}})),
		at("reports", mode(url.Values{"m": {"fragmented"}, "idle": {"true"}})),
		at("media", mode(url.Values{"upload_rate": {fmt.Sprint(uploadsPerSecond)}})),
		at("catalog", mode(url.Values{"m": {"surge"}})),
		// A maintenance FLUSHDB, from an operator's client.
		at("billing", func(s *service) error {
			rdb := redis.NewClient(&redis.Options{Addr: s.redis.Addr, Protocol: 2, DisableIdentity: true})
			defer rdb.Close()
			return rdb.FlushDB(context.Background()).Err()
		}),
		at("sessions", func(s *service) error { return w.restartRedis(context.Background(), s) }),
		at("inventory", mode(url.Values{"active": {strconv.Itoa(scaledTo)}})),
		at("ledger", mode(url.Values{"active": {strconv.Itoa(scaledTo)}})),
	)
	for svc, at := range onsets {
		t.Logf("onset %-8s %s", svc, at.Format("15:04:05.000"))
	}
	return onsets
}

// waitDetected waits for the alert of a Prometheus-reading daemon for svc in the real
// Alertmanager and checks it arrived within bound intervals of onset, with stable labels.
func (w *world) waitDetected(t *testing.T, alertname, svc string, onset time.Time, bound float64) amAlert {
	t.Helper()
	want := alertFor(alertname, svc)
	var s seenAlert
	waitFor(t, time.Duration(bound)*evalInterval+30*time.Second, alertname+" for "+svc+" in Alertmanager", func() error {
		found := w.watcher.find(want)
		if len(found) == 0 {
			return errors.New("not listed")
		}
		s = found[0]
		return nil
	})
	delay := s.first.Sub(onset)
	t.Logf("%s: onset→Alertmanager %.1f intervals (%s; bound %.0f); episode startsAt %.1f intervals after onset",
		svc, intervals(delay), delay.Round(100*time.Millisecond), bound, intervals(s.alert.StartsAt.Sub(onset)))
	t.Logf("%s: summary: %s", svc, s.alert.Annotations["summary"])
	t.Logf("%s: diagnosis: %s", svc, s.alert.Annotations["diagnosis"])
	if intervals(delay) > bound {
		t.Errorf("%s reached Alertmanager %.1f intervals after onset, want at most %.0f", alertname, intervals(delay), bound)
	}
	a := s.alert
	for _, l := range []string{"kind", "rule", "severity"} {
		if a.Labels[l] == "" {
			t.Errorf("alert lacks the stable label %q: %s", l, labelKey(a.Labels))
		}
	}
	if a.StartsAt.Before(onset.Add(-evalInterval)) {
		t.Errorf("episode starts %s, before the onset %s", a.StartsAt, onset)
	}
	return a
}

// waitSlack waits for the firing message about svc and checks its text.
func (w *world) waitSlack(t *testing.T, svc string, wants ...string) {
	t.Helper()
	var msg slackMessage
	waitFor(t, 30*time.Second, "Slack message about "+svc, func() error {
		for _, m := range w.slack.about(svc) {
			if m.method == "chat.postMessage" && m.threadTS == "" {
				msg = m
				return nil
			}
		}
		return errors.New("none yet")
	})
	if msg.channel != slackChannel {
		t.Errorf("posted to %q, want %q", msg.channel, slackChannel)
	}
	all := msg.text + msg.blocks
	for _, want := range wants {
		if !strings.Contains(all, want) {
			t.Errorf("Slack message about %s lacks %q: %s", svc, want, msg.render())
		}
	}
	t.Logf("Slack: %s", msg.render())
}

// firstFiring returns the first firing alert matching want that a daemon posted.
func firstFiring(p *amProxy, want map[string]string) (amAlert, error) {
	for _, post := range p.posted(want) {
		for _, a := range post.alerts {
			if a.EndsAt.After(post.at) {
				return a, nil
			}
		}
	}
	return amAlert{}, fmt.Errorf("emergentd %s posted no firing alert matching %v", p.name, want)
}

// checkHappened proves the controls were not vacuous: each did what it stands for.
func (w *world) checkHappened(t *testing.T, onsets map[string]time.Time) {
	t.Helper()
	since := func(svc string) string {
		return fmt.Sprintf("%ds", int(time.Since(onsets[svc]).Seconds())+5)
	}
	for _, c := range []struct {
		what string
		q    string
		ok   func(float64) bool
	}{
		{"catalog surged (peak inbound / inbound before the surge)",
			fmt.Sprintf(`max_over_time(sum(rate(http_requests_total{service="catalog"}[10s]))[%s:1s]) / sum(rate(http_requests_total{service="catalog"}[10s] offset %s))`,
				since("catalog"), since("catalog")),
			func(v float64) bool { return v >= 3 }},
		{"billing had exactly one FLUSHDB", `max(redis_commands_total{service="billing",cmd="flushdb"})`,
			func(v float64) bool { return v == 1 }},
		{"sessions' Redis restarted (process id changes)",
			fmt.Sprintf(`changes(redis_process_id{service="sessions"}[%s])`, since("sessions")),
			func(v float64) bool { return v >= 1 }},
		{"files handled uploads", fmt.Sprintf(`sum(increase(uploads_total{service="files"}[%s]))`, since("billing")),
			func(v float64) bool { return v >= 10 }},
		{"files never flushed", `count(redis_commands_total{service="files",cmd=~"flushdb|flushall"}) or vector(0)`,
			func(v float64) bool { return v == 0 }},
		{"search minted at most a couple of tokens for all its requests (shared cache)",
			`sum(token_mint_count{service="search"}) / sum(http_requests_total{service="search"})`,
			func(v float64) bool { return v < 0.02 }},
		{"ledger scaled out (instances live)", fmt.Sprintf(`count(%s)`, liveQuery("ledger")),
			func(v float64) bool { return v == scaledTo }},
		{"ledger's new instances served (every live instance handled requests)",
			`count(sum by (instance) (http_requests_total{service="ledger",handler="/api/work"}) > 0)`,
			func(v float64) bool { return v == scaledTo }},
		{"ledger minted at most a couple of tokens for all its requests (shared cache, scaled out)",
			`sum(token_mint_count{service="ledger"}) / sum(http_requests_total{service="ledger"})`,
			func(v float64) bool { return v < 0.02 }},
	} {
		v, err := w.query(c.q)
		if err != nil {
			t.Errorf("%s: %v", c.what, err)
			continue
		}
		t.Logf("control: %s: %.3g", c.what, v)
		if !c.ok(v) {
			t.Errorf("control did not happen: %s: %g (%s)", c.what, v, c.q)
		}
	}
}

// liveQuery is one series per live instance of svc, as the rules' replicas query counts them.
func liveQuery(svc string) string {
	return fmt.Sprintf(`sum by (service, instance) (rate(http_requests_total{service=%q}[%s]))`, svc, model.Duration(rateWindow))
}

// checkLive checks that svc has want live instances, each under its own instance label, the
// address of a target of its own, and every target but theirs down (an idle listener answers
// 503: up=0, no series).
func (w *world) checkLive(svc string, want int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, _, _, err := w.promAPI.Query(ctx, liveQuery(svc), time.Now())
	if err != nil {
		return err
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return fmt.Errorf("%s: want a vector, got %v", liveQuery(svc), v)
	}
	targets := map[string]bool{}
	for _, tgt := range w.services[svc].targets {
		targets[tgt] = true
	}
	live := map[string]bool{}
	for _, smp := range vec {
		inst := string(smp.Metric["instance"])
		if !targets[inst] || live[inst] {
			return fmt.Errorf("%s: instance %q is not one target of its own (targets %v)", svc, inst, w.services[svc].targets)
		}
		live[inst] = true
	}
	if len(live) != want {
		return fmt.Errorf("%s: %d live instances %v, want %d", svc, len(live), live, want)
	}
	up, err := w.query(fmt.Sprintf(`count(up{job="lab",service=%q} == 1)`, svc))
	if err != nil || up != float64(want) {
		return fmt.Errorf("%s: %g lab targets up, want %d (%v)", svc, up, want, err)
	}
	return nil
}

// between returns the part of s after from (from its start if from is "") and before to.
func between(s, from, to string) string {
	if from != "" {
		_, s, _ = strings.Cut(s, from)
	}
	s, _, _ = strings.Cut(s, to)
	return s
}
