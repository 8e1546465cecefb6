package detector

import (
	"strings"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/prometheus/common/model"
)

// An anomaly that comes back in bursts — a cache TTL beyond the token's lifetime stampedes at
// every expiry and is quiet in between — is one incident: quiet that no change explains, while
// the hour's average still holds, is a lull, and the episode stays open through it (up to
// recur_within). Bursts further apart than recur_within are separate episodes.
func TestRecurringBurstsAreOneEpisode(t *testing.T) {
	const step = 30 * time.Second
	quiet := fleetStep{instances: 4, inbound: 5, work: 0.01}
	stampede := fleetStep{instances: 4, inbound: 5, work: 0.5}
	cycles := func(gap int) []fleetStep {
		steps := fleet(10, quiet)
		for range 4 {
			steps = append(append(steps, fleet(20, stampede)...), fleet(gap, quiet)...)
		}
		return append(steps, fleet(200, quiet)...)
	}
	tests := []struct {
		name   string
		steps  []fleetStep
		firing int
	}{
		// Without the lull, the first episode resolved in the first gap and the second, which
		// learned the gap, stayed open through the rest: two; without either, four.
		{"four stampedes 20 minutes apart are one episode", cycles(40), 1},
		{"four stampedes 75 minutes apart are four episodes", cycles(150), 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fleetRule(config.RelationBounded)
			cfg.AverageOver, cfg.RecurWithin = model.Duration(time.Hour), model.Duration(time.Hour)
			events := runFleet(t, NewRule(cfg, global(step)), quiet, tc.steps, step)
			if got := len(firings(events)); got != tc.firing {
				t.Errorf("%d episodes fired, want %d", got, tc.firing)
			}
			if last := events[len(events)-1]; !last.Resolved {
				t.Errorf("the last episode never resolved: %+v", last)
			}
		})
	}
}

// A resolved episode's work is spent: averaged in, it kept the average_over gate open for
// hours, and the healthy echoes that follow a fix (caches refilled together refresh together)
// paged on the instant alone.
func TestResolvedEpisodeLeavesNoAverageBehind(t *testing.T) {
	const step = 30 * time.Second
	quiet := fleetStep{instances: 4, inbound: 5, work: 0.01}
	echo := fleetStep{instances: 4, inbound: 5, work: 0.05}
	steps := append(fleet(10, quiet), fleet(60, fleetStep{instances: 4, inbound: 5, work: 0.5})...)
	steps = append(steps, fleet(150, quiet)...) // resolves, and is quiet past average_over's recurrence
	steps = append(append(steps, fleet(20, echo)...), fleet(100, quiet)...)
	cfg := fleetRule(config.RelationBounded)
	cfg.AverageOver, cfg.RecurWithin = model.Duration(time.Hour), model.Duration(time.Hour)
	fired := firings(runFleet(t, NewRule(cfg, global(step)), quiet, steps, step))
	if len(fired) != 1 {
		logFirings(t, fired)
		t.Errorf("%d episodes fired, want the thrash's alone", len(fired))
	}
}

// History is not screened for episodes: an incident it held must not teach a band that hides
// the same incident coming back. A bounded level's band is its spread, not history's largest
// points; a proportional fit's reaches bursts that recur (peakQuantile), not one seen once.
func TestIncidentInHistoryDoesNotHideItsReturn(t *testing.T) {
	const step = 30 * time.Second
	tests := []struct {
		relation    string
		healthy     fleetStep
		past, again float64 // the work of the incident in history, and of its return
	}{
		{config.RelationBounded, fleetStep{instances: 4, inbound: 5, work: 0.01}, 0.5, 0.3},
		{config.RelationProportional, fleetStep{instances: 4, inbound: 5, work: 0.05}, 2, 1},
	}
	for _, tc := range tests {
		t.Run(tc.relation, func(t *testing.T) {
			r := NewRule(fleetRule(tc.relation), global(step))
			base := time.Duration(global(step).BaselineStep)
			i := 0
			for at := t0.Add(-24 * time.Hour); at.Before(t0); at = at.Add(base) {
				s := tc.healthy
				if i%100 == 50 { // under 1 % of the day's points: one burst of an earlier incident
					s.work = tc.past
				}
				r.AddHistory(s.input(at))
				i++
			}
			again := tc.healthy
			again.work = tc.again
			var fired []Event
			for i, s := range append(fleet(10, tc.healthy), fleet(60, again)...) {
				fired = append(fired, firings(r.Eval(s.input(t0.Add(time.Duration(i)*step))))...)
			}
			if len(fired) != 1 {
				t.Errorf("%d episodes fired, want the incident's return", len(fired))
			}
		})
	}
}

// stampedesThen runs three stampedes 20 minutes apart (the second learns the gap, so the third's
// episode is kept open through quiet that long), then after, from the step the last stampede
// ends at (the fix), with recur_within an hour. It returns the events and that step.
func stampedesThen(t *testing.T, after ...fleetStep) (events []Event, fixed int) {
	t.Helper()
	const step = 30 * time.Second
	steps := fleet(10, recurQuiet)
	for range 3 {
		steps = append(append(steps, fleet(20, recurStampede)...), fleet(40, recurQuiet)...)
	}
	fixed = len(steps) - 40
	cfg := fleetRule(config.RelationBounded)
	cfg.AverageOver, cfg.RecurWithin = model.Duration(time.Hour), model.Duration(time.Hour)
	return runFleet(t, NewRule(cfg, global(step)), recurQuiet, append(steps[:fixed], after...), step), fixed
}

var (
	recurQuiet    = fleetStep{instances: 4, inbound: 5, work: 0.01}
	recurStampede = fleetStep{instances: 4, inbound: 5, work: 0.5}
)

// lastResolved returns the last event, which must be a resolve.
func lastResolved(t *testing.T, events []Event) Event {
	t.Helper()
	last := events[len(events)-1]
	if !last.Resolved {
		t.Fatalf("the episode never resolved; last event: %+v", last)
	}
	return last
}

// Once a recurring episode is kept open through its quiet, only a burst that lasts for is the
// anomaly back. After the fix, caches refilled together by its deploy refresh together: short
// healthy bursts more often than the kept gap, which kept a fixed stampede's episode open all
// day.
func TestShortBurstsDoNotKeepARecurringEpisodeOpen(t *testing.T) {
	deployed, burst := recurQuiet, recurStampede
	deployed.generation, burst.generation = 1, 1 // the fix is a rolling deploy
	after := fleet(40, deployed)
	for range 20 { // then a 1.5-minute burst every 8 minutes for 160 minutes
		after = append(append(after, fleet(3, burst)...), fleet(13, deployed)...)
	}
	events, fixed := stampedesThen(t, after...)
	last := lastResolved(t, events)
	// The kept gap (20 min) and resolve_for (2 min) after the last stampede, and a burst under
	// way (for, 2 min).
	const bound = 24 * time.Minute
	if since := last.At.Sub(t0.Add(time.Duration(fixed) * 30 * time.Second)); since > bound {
		t.Errorf("resolved %s after the fix, want within %s", since, bound)
	}
}

// A burst in a recurring episode's kept quiet that does not last for is not the anomaly back:
// it sends no "worsened" update either, which would page for what the episode then resolves
// without.
func TestShortBurstInKeptQuietSendsNoUpdate(t *testing.T) {
	spike := fleetStep{instances: 4, inbound: 5, work: 3} // six times the stampedes, for a minute
	quiet := append(fleet(40, recurQuiet), fleet(2, spike)...)
	events, _ := stampedesThen(t, append(quiet, fleet(120, recurQuiet)...)...)
	for _, ev := range events {
		if ev.Updated {
			t.Errorf("update at %s: %s", ev.At.Sub(t0), ev.Episode.Summary)
		}
	}
	lastResolved(t, events)
}

// A deploy's cold caches warming up in a recurring episode's kept quiet are a transient, not
// the anomaly back, however long they take within settle: as a pending episode would not fire
// on them, they do not keep the episode open. It resolves when the same deploy without the
// warm-up lets it, or at the warm-up's end if that is later: not while work is up.
func TestWarmUpInKeptQuietIsNotTheAnomalyBack(t *testing.T) {
	const warmSteps = 8 // the new pods' cold caches, for four minutes (settle is ten)
	deployed := fleetStep{instances: 4, generation: 1, inbound: 5, work: 0.01}
	warmUp := deployed
	warmUp.work = 0.5
	resolvedAt := func(warm fleetStep) time.Time {
		// A rolling deploy ten minutes after the last stampede.
		events, _ := stampedesThen(t, append(append(fleet(20, recurQuiet), fleet(warmSteps, warm)...), fleet(100, deployed)...)...)
		return lastResolved(t, events).At
	}
	got, without := resolvedAt(warmUp), resolvedAt(deployed)
	if want := without.Add(warmSteps * 30 * time.Second); got.After(want) {
		t.Errorf("resolved at %s with the warm-up, %s without: the warm-up counted as the anomaly back", got.Sub(t0), without.Sub(t0))
	}
}

// A firing episode's quiet that no change explains, while its hour's average still holds, is
// a lull between bursts: a cache TTL beyond the token's lifetime stampedes at every expiry,
// quiet for a token lifetime in between, and each stampede after the first paged again. A fix
// is a change the rule sees: quiet that outlasts a deploy's settle and resolve_for resolves.
func TestLullBetweenBurstsIsNotTheEnd(t *testing.T) {
	const step = 30 * time.Second
	deployed, deployedStampede := recurQuiet, recurStampede
	deployed.generation, deployedStampede.generation = 1, 1
	stampede := fleet(20, recurStampede)
	cat := func(parts ...[]fleetStep) []fleetStep {
		var out []fleetStep
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	// settle (10 minutes) and resolve_for (2) after the deploy's one step, 10 minutes into the quiet.
	const fixedAt = 10*time.Minute + 10*time.Minute + 2*time.Minute
	// Quiet past average_over (an hour) and recur_within (two), however long the average holds.
	tail := fleet(300, recurQuiet)
	tests := []struct {
		name          string
		steps         []fleetStep
		firing        int
		resolvedAfter time.Duration // after the first stampede's last step; 0: not checked
	}{
		{"a stampede 20 minutes after the last is the same episode",
			cat(stampede, fleet(40, recurQuiet), stampede, tail), 1, 0},
		{"a deploy in the quiet that did not fix it",
			cat(stampede, fleet(20, recurQuiet), fleet(20, deployed), fleet(20, deployedStampede), fleet(300, deployed)), 1, 0},
		{"a deploy that fixed it resolves once settled",
			cat(stampede, fleet(20, recurQuiet), fleet(200, deployed)), 1, fixedAt},
		// Its average would hold for over two hours: the lull ends at average_over.
		{"a fix that shows no change resolves once the quiet outlives average_over",
			cat(stampede, tail), 1, time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fleetRule(config.RelationBounded)
			cfg.AverageOver, cfg.RecurWithin = model.Duration(time.Hour), model.Duration(2*time.Hour)
			events := runFleet(t, NewRule(cfg, global(step)), recurQuiet, append(fleet(10, recurQuiet), tc.steps...), step)
			if got := len(firings(events)); got != tc.firing {
				t.Errorf("%d episodes fired, want %d", got, tc.firing)
			}
			last := lastResolved(t, events)
			if tc.resolvedAfter > 0 {
				quietFrom := t0.Add(30 * step) // the first stampede's last step is the 30th
				if got := last.At.Sub(quietFrom); got < tc.resolvedAfter-2*step || got > tc.resolvedAfter+2*step {
					t.Errorf("resolved %s into the quiet, want %s", got, tc.resolvedAfter)
				}
			}
		})
	}
}

// While a lull holds an episode open, its words say so: "back within what inbound explains"
// alone, on an alert still firing, read as a resolve that never came.
func TestLullIsNamedWhileItHolds(t *testing.T) {
	const step = 30 * time.Second
	cfg := fleetRule(config.RelationBounded)
	cfg.AverageOver, cfg.RecurWithin = model.Duration(time.Hour), model.Duration(2*time.Hour)
	r := NewRule(cfg, global(step))
	// Ten minutes of quiet after a stampede: past resolve_for (2 minutes) and the rate's tail.
	steps := append(append(fleet(10, recurQuiet), fleet(20, recurStampede)...), fleet(20, recurQuiet)...)
	runFleet(t, r, recurQuiet, steps, step)
	active := r.Active()
	if len(active) != 1 {
		t.Fatalf("%d episodes open ten minutes into the quiet, want the stampede's", len(active))
	}
	if d := active[0].Explanation.Diagnosis; !strings.Contains(d, "back within") || !strings.Contains(d, "held open as a lull between bursts") {
		t.Errorf("diagnosis while the lull holds: %q", d)
	}
}
