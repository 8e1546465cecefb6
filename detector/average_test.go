package detector

import (
	"math"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/prometheus/common/model"
)

// A surge whose work the fit's ratio through the origin overstates explains no work after it:
// per-pod caches scaled out once inbound is back page as soon as they would have without it.
func TestSurgeExplainsNoWorkAfterIt(t *testing.T) {
	const step = 30 * time.Second
	// Healthy work is 2 per request plus a floor of 50/s; inbound moves between 20 and 68/s, so
	// the ratio through the origin (over 3) overstates work per request at 100/s by a fifth.
	work := func(in float64) float64 { return 2*in + 50 }
	r := NewRule(fleetRule(config.RelationProportional), global(step))
	r.cfg.AverageOver, r.cfg.RecurWithin = model.Duration(time.Hour), model.Duration(time.Hour)
	r.cfg.Signals[0].ReplicaScalingOnly = true
	base := time.Duration(global(step).BaselineStep)
	i := 0
	for at := t0.Add(-24 * time.Hour); at.Before(t0); at = at.Add(base) {
		in := 20 + 8*float64(i%7)
		r.AddHistory(fleetStep{instances: 4, inbound: in, work: work(in)}.input(at))
		i++
	}
	usual := fleetStep{instances: 4, inbound: 37, work: work(37)}
	steps := append(fleet(20, usual), fleet(120, fleetStep{instances: 4, inbound: 100, work: work(100)})...)
	scaledOut := len(steps) + 20
	steps = append(steps, fleet(20, usual)...)
	// 4 → 10 pods, each refreshing its own cache from Redis: 1.5 times the work per request.
	steps = append(steps, fleet(360, fleetStep{instances: 10, inbound: 37, work: 1.5 * work(37)})...)
	var fired []Event
	for i, s := range steps {
		fired = append(fired, firings(r.Eval(s.input(t0.Add(time.Duration(i)*step))))...)
	}
	if len(fired) != 1 {
		t.Fatalf("%d episodes fired, want the replica scaling's", len(fired))
	}
	// Unexplained work is a third of the work: the average's share passes replicaShare 85
	// minutes after the scale-out; with the hour of surge's shortfall averaged in, 97.
	if delay := fired[0].At.Sub(t0.Add(time.Duration(scaledOut) * step)); delay > 90*time.Minute {
		t.Errorf("fired %s after the scale-out, want within 90m", delay)
	}
}

// Caches refilled together refresh together once per token lifetime: when that is longer than
// average_over, each refresh is a lifetime's work in minutes, which averaging over the hour
// cannot spread. A group whose history holds such bursts again and again has learned them; a
// burst seen once or twice in history is an earlier incident's and teaches nothing.
func TestBurstsRecurringBeyondAverageOver(t *testing.T) {
	const step = 30 * time.Second
	const cycle = 150 * time.Minute // the token lifetime: a refresh of every cache per cycle
	const burstLen = 5 * time.Minute
	quiet := fleetStep{instances: 1, inbound: 50, work: 0.002}
	burst := fleetStep{instances: 1, inbound: 50, work: 0.3}
	tests := []struct {
		name          string
		historyBursts int // in the day of history, the last ones before now
		fires         bool
	}{
		{"refreshes every 2h30m all day long are the group's own", 9, false},
		{"three bursts in history are a habit", burstRecurrences, false},
		{"two bursts in history are no habit: the same burst pages", burstRecurrences - 1, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRule(fleetRule(config.RelationProportional), global(step))
			r.cfg.AverageOver, r.cfg.RecurWithin = model.Duration(time.Hour), model.Duration(time.Hour)
			addDay(r, step, func(at time.Time) fleetStep {
				if ago := t0.Sub(at); ago%cycle < burstLen && int(ago/cycle) <= tc.historyBursts { // at 1, 2 … cycles ago
					return burst
				}
				return quiet
			})
			var fired []Event
			for i := range int(3 * cycle / step) {
				at := t0.Add(time.Duration(i) * step)
				s := quiet
				if at.Sub(t0)%cycle >= cycle-burstLen {
					s = burst
				}
				fired = append(fired, firings(r.Eval(s.input(at)))...)
			}
			if got := len(fired) > 0; got != tc.fires {
				logFirings(t, fired)
				t.Errorf("fired %d episodes, want firing %v", len(fired), tc.fires)
			}
		})
	}
}

// The level history teaches the average_over gate comes from bursts that came back down:
// not from one an episode cut short (an incident's opening, held back by the gate), one
// under way now, or steps with instances grown past their usual number.
func TestAveragePeakLearnsOnlyBurstsThatEnded(t *testing.T) {
	const step = 30 * time.Second
	base := time.Duration(global(step).BaselineStep)
	quiet := fleetStep{instances: 2, inbound: 50, work: 0.002}
	burst := fleetStep{instances: 2, inbound: 50, work: 0.3}
	const every = 30 // baseline steps between bursts: 2h30m
	tests := []struct {
		name  string
		point func(i int) (s fleetStep, taught bool) // history point i of the day, at 5m
		learn bool
	}{
		{"one burst, however long its tail", func(i int) (fleetStep, bool) {
			if i == 100 {
				return burst, true
			}
			return quiet, true
		}, false},
		{"bursts that came back down", func(i int) (fleetStep, bool) {
			if i%every == 5 {
				return burst, true
			}
			return quiet, true
		}, true},
		{"bursts an episode cut short", func(i int) (fleetStep, bool) {
			switch {
			case i%every == 5:
				return burst, true
			case i%every > 5 && i%every < 12: // the episode's steps do not teach
				return quiet, false
			}
			return quiet, true
		}, false},
		{"bursts under grown replicas", func(i int) (fleetStep, bool) {
			if i%every == 5 {
				return fleetStep{instances: 6, inbound: 50, work: 0.3}, true
			}
			return quiet, true
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fleetRule(config.RelationProportional)
			cfg.AverageOver, cfg.RecurWithin = model.Duration(time.Hour), model.Duration(time.Hour)
			r := NewRule(cfg, global(step))
			i := 0
			for at := t0.Add(-24 * time.Hour); at.Before(t0); at = at.Add(base) {
				s, taught := tc.point(i)
				if taught {
					r.AddHistory(s.input(at))
				} else { // as an episode's step is stored: inbound and instances, no work
					r.group(key, service)
					r.groups[key].hist.put(at.Unix(), []float64{s.inbound, math.NaN(), float64(s.instances)}, false)
				}
				i++
			}
			r.Eval(quiet.input(t0))
			peak := r.groups[key].signals[0].averagePeak
			if got := peak > 0; got != tc.learn {
				t.Errorf("learned %g, want learning %v", peak, tc.learn)
			}
		})
	}
}

// An episode has been pending since its work first breached at the instant, not since the
// average_over gate agreed: a sustained tenfold thrash whose averaged share takes about 7
// minutes to pass fires when it passes (for = 5m is over by then), not `for` later. The gate's
// own moment is what the same rule with for = 0 fires at.
func TestForCountsFromTheInstantBreach(t *testing.T) {
	const step = 30 * time.Second
	healthy := fleetStep{instances: 4, inbound: 40, work: 2}
	for _, tc := range []struct {
		name   string
		thrash float64 // work during the thrash, per healthy work
		// fireAfter is when it fires after the thrash began, given the gate's moment g.
		fireAfter func(g time.Duration) time.Duration
	}{
		{"a gate slower than for fires with the gate", 10, func(g time.Duration) time.Duration { return max(g, 5*time.Minute) }},
		{"a gate faster than for fires after for", 100, func(time.Duration) time.Duration { return 5 * time.Minute }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			steps := append(fleet(20, healthy), fleet(60, fleetStep{instances: 4, inbound: 40, work: tc.thrash * healthy.work})...)
			fireAt := func(forDur time.Duration) time.Duration {
				cfg := fleetRule(config.RelationProportional)
				cfg.For, cfg.AverageOver = model.Duration(forDur), model.Duration(time.Hour)
				fired := firings(runFleet(t, NewRule(cfg, global(step)), healthy, steps, step))
				if len(fired) != 1 {
					t.Fatalf("for = %s: %d episodes fired, want the thrash's", forDur, len(fired))
				}
				return fired[0].At.Sub(t0.Add(20 * step))
			}
			gate := fireAt(0)
			if want, got := tc.fireAfter(gate), fireAt(5*time.Minute); got != want {
				t.Errorf("fired %s after the thrash began, want %s (the gate passed after %s)", got, want, gate)
			}
		})
	}
}

// The average_over gate holds the rate floor to the steps the work has been over it, not to
// the whole average: an idle thrash of 0.08 mints/s against 0.003 passes the gate's share in
// about two and a half minutes, and fires once for is over, where its average took eight
// minutes to pass min_unexplained_rate (0.01/s) outright.
func TestAveragedRateFloorCountsFromTheBreach(t *testing.T) {
	const step = 30 * time.Second
	quiet := fleetStep{instances: 3, inbound: 0.2, work: 0.003}
	cfg := fleetRule(config.RelationBounded)
	cfg.For, cfg.AverageOver = model.Duration(5*time.Minute), model.Duration(time.Hour)
	steps := append(fleet(20, quiet), fleet(40, fleetStep{instances: 3, inbound: 0.2, work: 0.08})...)
	fired := firings(runFleet(t, NewRule(cfg, global(step)), quiet, steps, step))
	if len(fired) != 1 {
		logFirings(t, fired)
		t.Fatalf("%d episodes fired, want the thrash's", len(fired))
	}
	if got, want := fired[0].At.Sub(t0.Add(20*step)), 5*time.Minute; got != want {
		t.Errorf("fired %s after the thrash began, want %s (for)", got, want)
	}
}

// Work counted a few events per rate window passes and fails the noise test from step to step.
// A firing episode's step whose share and rate still hold is judged against the counting noise
// of a window resolve_for longer, so it stays one episode through the quiet stretches; a fix,
// which takes share and rate down, still resolves resolve_for after it.
func TestClearAtTheCountingNoiseFloor(t *testing.T) {
	const step = 30 * time.Second
	healthy := fleetStep{instances: 1, inbound: 40, work: 0.002}
	high := fleetStep{instances: 1, inbound: 40, work: 6.0 / 120}  // 6 misses in the 2-minute window
	quiet := fleetStep{instances: 1, inbound: 40, work: 2.0 / 120} // 2: under the noise test alone
	steps := fleet(20, healthy)
	for range 4 { // a stretch of quiet longer than resolve_for, then the work back for longer than for
		steps = append(steps, fleet(6, high)...)
		steps = append(steps, fleet(12, quiet)...)
	}
	fixed := len(steps)
	steps = append(steps, fleet(20, healthy)...)
	cfg := fleetRule(config.RelationProportional)
	cfg.Signals[0].EventQuantum = 1.0 / 120 // a [2m] rate
	events := runFleet(t, NewRule(cfg, global(step)), healthy, steps, step)
	if fired := firings(events); len(fired) != 1 {
		t.Fatalf("%d episodes fired, want one through the quiet stretches", len(fired))
	}
	var resolvedAt time.Time
	for _, ev := range events {
		if ev.Resolved {
			resolvedAt = ev.At
		}
	}
	if want := t0.Add(time.Duration(fixed)*step + time.Duration(cfg.ResolveFor)); resolvedAt.Before(want) || resolvedAt.After(want.Add(step)) {
		t.Errorf("resolved at %s, want resolve_for after the fix: %s", resolvedAt.Format("15:04:05"), want.Format("15:04:05"))
	}
}

// An idle thrash counted two events per rate window fails the instant's noise test at every
// step (3σ of counting noise is three events), so for never ran out and it never paged; over
// average_over its events add up past that window's counting noise. Work under the unexplained
// rate stays silent however long it lasts.
func TestCountedWorkIsJudgedFromItsAverage(t *testing.T) {
	const step = 30 * time.Second
	healthy := fleetStep{instances: 1, inbound: 0.5, work: 0.002}
	tests := []struct {
		name  string
		work  float64
		pages bool
	}{
		{"two mints per window for three hours pages", 2.0 / 120, true},
		{"one per window is under the unexplained rate", 1.0 / 120, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fleetRule(config.RelationBounded)
			cfg.Signals[0].EventQuantum = 1.0 / 120 // a [2m] rate
			cfg.AverageOver = model.Duration(time.Hour)
			steps := append(fleet(20, healthy), fleet(360, fleetStep{instances: 1, inbound: 0.5, work: tc.work})...)
			fired := firings(runFleet(t, NewRule(cfg, global(step)), healthy, steps, step))
			if got := len(fired) > 0; got != tc.pages {
				t.Fatalf("paged %v, want %v", got, tc.pages)
			}
		})
	}
}

// refreshBursts is a token cache's misses when its caches refresh together once per token
// lifetime (cycle, not a multiple of the baseline step, so history samples each burst at a
// different height of its rise and fall): 0.002/s between bursts, 90 misses in ten minutes.
func refreshBursts(at time.Time) float64 {
	const cycle, burstLen = 101 * time.Minute, 10 * time.Minute
	into := at.Sub(t0.Add(-48*time.Hour)) % cycle
	if into >= burstLen {
		return 0.002
	}
	return 0.002 + 0.3*(1-math.Abs(2*into.Seconds()/burstLen.Seconds()-1))
}

// The fit's medians leave out a healthy fleet's bursts; the average expects the history's mean
// excess over the fit on top. Learned by blocks, so an earlier incident in a few hours of
// history does not raise it.
func TestExcessMeanIsTheBurstsMean(t *testing.T) {
	const step = 30 * time.Second
	const burstsMean = 90.0 / (101 * 60) // misses per second the bursts add, over a cycle
	tests := []struct {
		name     string
		work     func(at time.Time) float64
		min, max float64
	}{
		{"steady work runs over its fit by nothing", func(time.Time) float64 { return 0.017 }, 0, 0.001},
		{"refresh bursts run over it by their mean", refreshBursts, 0.6 * burstsMean, 1.4 * burstsMean},
		{"an earlier incident in three hours of history does not raise it", func(at time.Time) float64 {
			if at.After(t0.Add(-20*time.Hour)) && at.Before(t0.Add(-17*time.Hour)) {
				return 1
			}
			return refreshBursts(at)
		}, 0.6 * burstsMean, 1.4 * burstsMean},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRule(fleetRule(config.RelationProportional), global(step))
			base := time.Duration(global(step).BaselineStep)
			for at := t0.Add(-48 * time.Hour); at.Before(t0); at = at.Add(base) {
				r.AddHistory(fleetStep{instances: 1, inbound: 50, work: tc.work(at)}.input(at))
			}
			r.Eval(fleetStep{instances: 1, inbound: 50, work: tc.work(t0)}.input(t0))
			g, _ := r.group(key, service)
			if got := g.signals[0].excessMean; got < tc.min || got > tc.max {
				t.Errorf("excess mean %.4f/s, want %.4f–%.4f (fit %+v)", got, tc.min, tc.max, g.signals[0].fit)
			}
		})
	}
}

// With the bursts' mean expected, an incident that keeps the work above it still pages.
func TestIncidentAboveRefreshBurstsPages(t *testing.T) {
	const step = 30 * time.Second
	r := NewRule(fleetRule(config.RelationProportional), global(step))
	r.cfg.AverageOver, r.cfg.RecurWithin = model.Duration(time.Hour), model.Duration(2*time.Hour)
	addDay(r, step, func(at time.Time) fleetStep { return fleetStep{instances: 1, inbound: 50, work: refreshBursts(at)} })
	var fired []Event
	for i := range int(4 * time.Hour / step) {
		at := t0.Add(time.Duration(i) * step)
		fired = append(fired, firings(r.Eval(fleetStep{instances: 1, inbound: 50, work: refreshBursts(at) + 0.03}.input(at)))...)
	}
	if len(fired) != 1 {
		logFirings(t, fired)
		t.Fatalf("%d episodes fired, want the incident's", len(fired))
	}
}

// The band a proportional fit learns from history's single-point bursts (warm-ups after
// deploys) hides an instant's rise under it, but once the hour's average is unexplained past
// what history's recurring bursts reached, the work is not one of them: the instant is judged
// against the spread of single points without the band (fleetsim seed 37789,
// replica-scaling-27: Redis commands 3-5 times their expected under a band from history's
// warm-ups, missed).
func TestSustainedRiseUnderTheBandPages(t *testing.T) {
	const step = 30 * time.Second
	healthy := fleetStep{instances: 4, inbound: 50, work: 100}
	tests := []struct {
		name  string
		work  float64 // after the first 10 minutes
		pages bool
	}{
		{"work as before explains", 100, false},
		{"work three times its expected pages", 300, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRule(fleetRule(config.RelationProportional), global(step))
			r.cfg.AverageOver = model.Duration(time.Hour)
			i := 0
			addDay(r, step, func(time.Time) fleetStep {
				s := healthy
				s.work += float64(i%7 - 3) // the spread of single points
				if i%16 == 8 {             // a warm-up burst in one point in sixteen
					s.work = 500
				}
				i++
				return s
			})
			after := healthy
			after.work = tc.work
			fired := firings(evalFleet(r, append(fleet(20, healthy), fleet(240, after)...), step))
			if got := len(fired) > 0; got != tc.pages {
				t.Fatalf("paged %v, want %v (%d episodes)", got, tc.pages, len(fired))
			}
		})
	}
}
