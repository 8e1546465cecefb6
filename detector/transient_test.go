package detector

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/prometheus/common/model"
)

// fleetStep is one evaluation step of a group with instances: how many are live, which
// deploy generation names them (a new generation renames every instance: a rolling deploy),
// inbound, the work signal, and whether the cache was reset.
type fleetStep struct {
	instances, generation int
	inbound, work         float64
	cacheReset            bool
	working               int     // instances the work's breakdown names, where it differs from instances
	next                  int     // of the instances, how many the next generation names (a rolling deploy under way)
	count                 float64 // replica_count's value; none when 0
}

// with is s changed by f.
func with(s fleetStep, f func(*fleetStep)) fleetStep { f(&s); return s }

// fleet repeats a step n times.
func fleet(n int, s fleetStep) []fleetStep {
	out := make([]fleetStep, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func (s fleetStep) input(at time.Time) Input {
	live := Values{}
	for k := range s.instances {
		gen := s.generation
		if k < s.next {
			gen++
		}
		live[fmt.Sprintf("pod-g%d-%d", gen, k)] = 1
	}
	in := Input{
		Time: at, Groups: map[string]map[string]string{key: service},
		Inbound: Values{key: s.inbound}, Signals: []Values{{key: s.work}},
		Replicas: map[string]Values{key: live}, CacheResets: Values{},
	}
	if s.cacheReset {
		in.CacheResets[key] = 1
	}
	if s.working > 0 {
		working := Values{}
		for k := range s.working {
			working[fmt.Sprintf("pod-%d", k)] = s.work / float64(s.working)
		}
		in.Instances = map[string]Values{key: working}
	}
	if s.count > 0 {
		in.ReplicaCount = Values{key: s.count}
	}
	return in
}

// fleetRule watches one signal of the given relation, with a replicas query and no ceiling:
// every level is learned.
func fleetRule(relation string) config.Rule {
	r := tokenRule(relation)
	r.Signals[0].Ceiling, r.Signals[0].MaxRatio = 0, 0
	r.Replicas, r.CacheResets = "replicas", "resets"
	r.InstanceLabel = "instance"
	r.Settle = model.Duration(10 * time.Minute)
	return r
}

// runFleet feeds a day of healthy history at the baseline step, then evaluates the steps.
func runFleet(t *testing.T, r *Rule, healthy fleetStep, steps []fleetStep, interval time.Duration) []Event {
	t.Helper()
	addDay(r, interval, func(time.Time) fleetStep { return healthy })
	return evalFleet(r, steps, interval)
}

// addDay feeds the day before t0 as history, day(at) at each baseline step at.
func addDay(r *Rule, interval time.Duration, day func(at time.Time) fleetStep) {
	base := time.Duration(global(interval).BaselineStep)
	for at := t0.Add(-24 * time.Hour); at.Before(t0); at = at.Add(base) {
		r.AddHistory(day(at).input(at))
	}
}

// evalFleet evaluates the steps from t0, one per interval, and returns every event.
func evalFleet(r *Rule, steps []fleetStep, interval time.Duration) (events []Event) {
	for i, s := range steps {
		events = append(events, r.Eval(s.input(t0.Add(time.Duration(i)*interval)))...)
	}
	return events
}

// firedOnceAt checks that nothing fired (fireStep < 0) or that one episode started at step
// fireStep, and returns it; false when there is none to look at further.
func firedOnceAt(t *testing.T, fired []Event, step time.Duration, fireStep int) (Episode, bool) {
	t.Helper()
	if fireStep < 0 {
		if len(fired) > 0 {
			t.Fatalf("fired at step %d: %s", int(fired[0].Episode.Start.Sub(t0)/step), fired[0].Episode.Explanation.Diagnosis)
		}
		return Episode{}, false
	}
	if len(fired) != 1 {
		logFirings(t, fired)
		t.Fatalf("want one episode, got %d", len(fired))
	}
	ep := fired[0].Episode
	if got := int(ep.Start.Sub(t0) / step); got != fireStep {
		t.Errorf("started at step %d, want %d", got, fireStep)
	}
	return ep, true
}

// logFirings logs when each episode fired and its summary, for a test about to fail on them.
func logFirings(t *testing.T, fired []Event) {
	t.Helper()
	for _, ev := range fired {
		t.Logf("fired at %s: %s", ev.At.Sub(t0), ev.Episode.Summary)
	}
}

func firings(events []Event) []Event {
	var out []Event
	for _, ev := range events {
		if !ev.Resolved && !ev.Updated {
			out = append(out, ev)
		}
	}
	return out
}

func TestTransients(t *testing.T) {
	const step = 30 * time.Second
	// 24 instances with many per-process caches each, refreshing 5-minute tokens: 1.3 mints/s
	// while healthy, forty times a fleet-wide ceiling of 0.033/s.
	busy := fleetStep{instances: 24, inbound: 50, work: 1.3}
	quiet := fleetStep{instances: 4, inbound: 5, work: 0.004}
	cat := func(parts ...[]fleetStep) []fleetStep {
		var out []fleetStep
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	tests := []struct {
		name     string
		relation string
		healthy  fleetStep
		steps    []fleetStep
		fireStep int    // -1: nothing fires
		words    string // in the firing diagnosis
	}{
		{
			name: "a busy fleet's healthy minting is its normal", relation: config.RelationBounded,
			healthy: busy, steps: fleet(60, busy), fireStep: -1,
		},
		{
			name: "the same fleet thrashing pages", relation: config.RelationBounded,
			healthy: busy, steps: cat(fleet(10, busy), fleet(30, with(busy, func(s *fleetStep) { s.work = 40 }))),
			fireStep: 14, words: "token mints 40/s",
		},
		{
			// New pods refresh every cache once: 12 minutes of extra mints, longer than for, and
			// no more than the caches a healthy level of 0.001/s per pod allows (tokens that live
			// at most two hours: 7 caches a pod, 36 mints for the five new pods).
			name: "a rolling deploy's cold caches do not page", relation: config.RelationBounded,
			healthy: quiet,
			steps: cat(fleet(10, quiet), fleet(8, with(quiet, func(s *fleetStep) { s.generation, s.instances, s.work = 1, 5, 0.05 })),
				fleet(16, with(quiet, func(s *fleetStep) { s.generation, s.work = 1, 0.05 })), fleet(40, with(quiet, func(s *fleetStep) { s.generation = 1 }))),
			fireStep: -1,
		},
		{
			// The deploy brought the bug, a warm-up's pace that does not end: still up a settle
			// time after the last new pod, it pages then (pending counted from onset) and names
			// the deploy.
			name: "work still up after a deploy pages and names it", relation: config.RelationBounded,
			healthy: quiet,
			steps: cat(fleet(10, quiet), fleet(4, with(quiet, func(s *fleetStep) { s.generation, s.instances, s.work = 1, 5, 0.04 })),
				fleet(60, with(quiet, func(s *fleetStep) { s.generation, s.work = 1, 0.04 }))),
			fireStep: 34, words: "still up 10m after rolling deploy at 00:05 UTC (5 new instances)",
		},
		{
			// A thrash the deploy shipped mints more in five minutes after the deploy's last
			// change than the new pods' caches could warming up: it pages then, not a settle
			// after that change.
			name: "work past what a deploy's cold caches take pages before the settle", relation: config.RelationBounded,
			healthy: quiet,
			steps: cat(fleet(10, quiet), fleet(4, with(quiet, func(s *fleetStep) { s.generation, s.instances, s.work = 1, 5, 0.2 })),
				fleet(60, with(quiet, func(s *fleetStep) { s.generation, s.work = 1, 0.2 }))),
			fireStep: 23, words: "beyond the level since 00:07 UTC, when rolling deploy at 00:05 UTC (5 new instances) last changed: more than its new instances' cold caches take (at most 36)",
		},
		{
			// A rolling deploy replacing one pod every two minutes: while old and new pods both
			// run, a provider that keeps a few tokens revokes the old caches' as the new ones
			// mint, and they mint again, more than the new pods' caches take. Over when the
			// last pod is replaced, it is a warm-up, and waits out the settle.
			name: "churn while a rolling deploy replaces pods one by one waits out the settle", relation: config.RelationBounded,
			healthy: quiet,
			steps: cat(fleet(10, quiet), func() (out []fleetStep) {
				for i := range 16 {
					out = append(out, with(quiet, func(s *fleetStep) { s.next, s.work = 1+i/4, 0.2 }))
				}
				return out
			}(), fleet(40, with(quiet, func(s *fleetStep) { s.generation = 1 }))),
			fireStep: -1,
		},
		{
			// A cache flushed every two minutes is refilled every time: its mints are the
			// flushes' (the flush-storm rule's), however many, until the resets stop.
			name: "mints after cache reset upon cache reset wait out the settle", relation: config.RelationBounded,
			healthy: quiet,
			steps: cat(fleet(10, quiet), func() (out []fleetStep) {
				for i := range 30 {
					out = append(out, with(quiet, func(s *fleetStep) { s.work, s.cacheReset = 0.2, i%4 == 0 }))
				}
				return out
			}(), fleet(30, quiet)),
			fireStep: -1,
		},
		{
			name: "a healthy scale-out raises bounded work per instance, explained", relation: config.RelationBounded,
			healthy:  quiet,
			steps:    cat(fleet(10, quiet), fleet(60, with(quiet, func(s *fleetStep) { s.instances, s.work = 12, 0.012 }))),
			fireStep: -1,
		},
		{
			// Per-pod state: six pods each refresh their own cache from Redis; inbound flat, Redis
			// commands 1.4x — under a 50 % unexplained share, over the replica-scaling one.
			name: "work per request that grows with replicas pages as replica scaling", relation: config.RelationProportional,
			healthy:  fleetStep{instances: 2, inbound: 10, work: 50},
			steps:    cat(fleet(10, fleetStep{instances: 2, inbound: 10, work: 50}), fleet(60, fleetStep{instances: 6, inbound: 10, work: 70})),
			fireStep: 30, words: "instances went 2 → 6",
		},
		{
			name: "a scale-out that follows demand is not replica scaling", relation: config.RelationProportional,
			healthy:  fleetStep{instances: 2, inbound: 10, work: 50},
			steps:    cat(fleet(10, fleetStep{instances: 2, inbound: 10, work: 50}), fleet(60, fleetStep{instances: 6, inbound: 30, work: 150})),
			fireStep: -1,
		},
		{
			// An autoscaler following a rise to 1.8x its usual, under what counts as a surge:
			// per-pod refreshes raise work per request by a third, as they would with inbound
			// flat, but the instances grew no faster than their load.
			name: "a scale-out with its load under a surge is not replica scaling", relation: config.RelationProportional,
			healthy:  fleetStep{instances: 2, inbound: 10, work: 50},
			steps:    cat(fleet(10, fleetStep{instances: 2, inbound: 10, work: 50}), fleet(60, fleetStep{instances: 4, inbound: 18, work: 120})),
			fireStep: -1,
		},
		{
			// An autoscaler that acts 45 minutes into a fourfold surge: the surge fills the hour
			// before the scale-out, so the level before it is read from the three hours before.
			// Per-pod refreshes keep work per request up by two fifths once the surge is over.
			name: "a scale-out late into a long surge is not replica scaling", relation: config.RelationProportional,
			healthy: fleetStep{instances: 2, inbound: 10, work: 50},
			steps: cat(fleet(90, fleetStep{instances: 2, inbound: 40, work: 200}), fleet(30, fleetStep{instances: 4, inbound: 40, work: 280}),
				fleet(120, fleetStep{instances: 4, inbound: 10, work: 70})),
			fireStep: -1,
		},
		{
			name: "the rebuild after a cache reset does not page", relation: config.RelationProportional,
			healthy: fleetStep{instances: 2, inbound: 10, work: 50},
			steps: cat(fleet(10, fleetStep{instances: 2, inbound: 10, work: 50}),
				fleet(2, fleetStep{instances: 2, inbound: 10, work: 400, cacheReset: true}),
				fleet(16, fleetStep{instances: 2, inbound: 10, work: 400}), fleet(30, fleetStep{instances: 2, inbound: 10, work: 50})),
			fireStep: -1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRule(fleetRule(tc.relation), global(step))
			fired := firings(runFleet(t, r, tc.healthy, tc.steps, step))
			ep, ok := firedOnceAt(t, fired, step, tc.fireStep)
			if !ok {
				return
			}
			if text := ep.Summary + " | " + ep.Explanation.Diagnosis; !strings.Contains(text, tc.words) {
				t.Errorf("words %q do not say %q", text, tc.words)
			}
		})
	}
}

// A healthy fleet's caches, warmed together by a deploy, refresh together again at each token
// lifetime: ten minutes at five times the level once an hour. Averaged over average_over the
// bursts are the level; a thrash of the same height that stays is not.
func TestAverageOverHoldsBackBursts(t *testing.T) {
	const step = 30 * time.Second
	quiet := fleetStep{instances: 4, inbound: 5, work: 0.01}
	burst := fleetStep{instances: 4, inbound: 5, work: 0.05}
	bursts := fleet(10, quiet)
	for range 3 {
		bursts = append(append(bursts, fleet(20, burst)...), fleet(100, quiet)...)
	}
	tests := []struct {
		name        string
		averageOver time.Duration
		steps       []fleetStep
		fires       bool
	}{
		{"echoes of a deploy, judged on the instant, page", 0, bursts, true},
		{"echoes of a deploy, averaged over an hour, do not", time.Hour, bursts, false},
		{"a thrash that stays pages all the same", time.Hour, append(fleet(10, quiet), fleet(120, fleetStep{instances: 4, inbound: 5, work: 0.5})...), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fleetRule(config.RelationBounded)
			cfg.AverageOver, cfg.RecurWithin = model.Duration(tc.averageOver), model.Duration(tc.averageOver)
			fired := firings(runFleet(t, NewRule(cfg, global(step)), quiet, tc.steps, step))
			if got := len(fired) > 0; got != tc.fires {
				t.Errorf("fired %d episodes, want firing %v", len(fired), tc.fires)
			}
		})
	}
}

// A group born a few minutes ago has learned nothing yet: it is learning, and pages nothing.
// Once it has its hour of history (four baseline steps) it judges, whatever the hour
// boundary: a thrash then pages.
func TestLearningGroupDoesNotPage(t *testing.T) {
	const step = 30 * time.Second
	r := NewRule(fleetRule(config.RelationBounded), global(step))
	var events []Event
	i := 0
	eval := func(n int, s fleetStep) {
		for range n {
			events = append(events, r.Eval(s.input(t0.Add(time.Duration(i)*step)))...)
			i++
		}
	}
	eval(20, fleetStep{instances: 2, inbound: 3, work: 0.5})
	if len(events) > 0 {
		t.Fatalf("a group without history paged: %s", events[0].Episode.Summary)
	}
	if st := r.Status()[0].State; st != StateLearning {
		t.Errorf("state %s, want learning", st)
	}
	eval(60, fleetStep{instances: 2, inbound: 3, work: 0.01})
	if st := r.Status()[0].State; st != StateInactive {
		t.Fatalf("after 40 minutes of history the state is %s, want inactive", st)
	}
	eval(20, fleetStep{instances: 2, inbound: 3, work: 2})
	if len(firings(events)) != 1 {
		t.Errorf("a thrash after the group learned fired %d episodes, want 1", len(firings(events)))
	}
}

// An open episode that gets much worse is news, once per worsening, with the new numbers.
func TestWorseningIsAnUpdate(t *testing.T) {
	const step = 30 * time.Second
	busy := fleetStep{instances: 4, inbound: 10, work: 0.01}
	steps := append(fleet(10, busy), fleet(20, fleetStep{instances: 4, inbound: 10, work: 0.14})...)
	steps = append(steps, fleet(20, fleetStep{instances: 4, inbound: 10, work: 19})...)
	var updates []Event
	for _, ev := range runFleet(t, NewRule(fleetRule(config.RelationBounded), global(step)), busy, steps, step) {
		if ev.Updated {
			updates = append(updates, ev)
		}
	}
	if len(updates) != 1 {
		t.Fatalf("want one update for 0.14/s → 19/s, got %d", len(updates))
	}
	if s := updates[0].Episode.Summary; !strings.Contains(s, "token mints 19/s") {
		t.Errorf("update summary %q does not carry the new rate", s)
	}
}

// A signal marked replica_scaling_only pages on work per request up while instances grew, and
// only then: healthy events move it tenfold where instances cannot be seen (a deploy behind one
// aggregated endpoint warms every pod's local cache from Redis).
func TestReplicaScalingOnlySignal(t *testing.T) {
	const step = 30 * time.Second
	two := fleetStep{instances: 2, inbound: 10, work: 5}
	tests := []struct {
		name  string
		steps []fleetStep
		fires bool
	}{
		{"a tenfold burst with the same instances explains", append(fleet(10, two), fleet(60, fleetStep{instances: 2, inbound: 10, work: 50})...), false},
		{"work per request up as instances went 2 → 6 pages", append(fleet(10, two), fleet(60, fleetStep{instances: 6, inbound: 10, work: 15})...), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fleetRule(config.RelationProportional)
			cfg.Signals[0].ReplicaScalingOnly = true
			fired := firings(runFleet(t, NewRule(cfg, global(step)), two, tc.steps, step))
			if got := len(fired) > 0; got != tc.fires {
				t.Errorf("fired %d episodes, want firing %v", len(fired), tc.fires)
			}
		})
	}
}

// Behind an aggregating endpoint replicas show one series whatever the pods; replica_count (the
// probes each pod answers) still grows with them, and counts the instances in multiples of its
// usual value: per-pod state doing more work per request as the pods triple is seen and named
// there too, where without the count it is not, and a count that wobbles around half again its
// usual value is no scaling (fleetsim seed 62433, replica-scaling-13: 2 → 4 pods behind one
// endpoint, cache misses per request up 1.9x, missed three times).
func TestReplicaCountBehindOneEndpoint(t *testing.T) {
	const step = 30 * time.Second
	healthy := fleetStep{instances: 1, inbound: 10, work: 5, count: 0.1}
	tripled := fleetStep{instances: 1, inbound: 10, work: 15, count: 0.3}
	wobble := make([]fleetStep, 60)
	for i := range wobble {
		wobble[i] = with(tripled, func(s *fleetStep) { s.count = 0.14 + 0.02*float64(i%2) })
	}
	tests := []struct {
		name     string
		count    bool // the rule reads replica_count
		steps    []fleetStep
		fireStep int // -1: never
		words    string
	}{
		{"pods tripled behind one endpoint, work per request up, pages", true, append(fleet(10, healthy), fleet(60, tripled)...), 30,
			"instances behind its one endpoint went 1 → 3 times their usual number (replica_count)"},
		{"without replica_count the same is not seen", false, append(fleet(10, healthy), fleet(60, tripled)...), -1, ""},
		{"a count wobbling around half again its usual is no scaling event", true, append(fleet(10, healthy), wobble...), -1, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fleetRule(config.RelationProportional)
			cfg.Signals[0].ReplicaScalingOnly = true
			if tc.count {
				cfg.ReplicaCount = "count"
			}
			r := NewRule(cfg, global(step))
			fired := firings(runFleet(t, r, healthy, tc.steps, step))
			ep, ok := firedOnceAt(t, fired, step, tc.fireStep)
			if ok && !strings.Contains(ep.Explanation.Diagnosis, tc.words) {
				t.Errorf("diagnosis %q does not say %q", ep.Explanation.Diagnosis, tc.words)
			}
			// A scaling event at every wobble would hold back whatever else the group does.
			if ev := r.groups[key].instances.event; tc.fireStep < 0 && tc.count && ev != nil {
				t.Errorf("the count's wobble made a %s (%d → %d)", ev.Kind, ev.From, ev.To)
			}
		})
	}
}

// max_per_instance bounds what history may teach one instance, so a bug present all week is not
// learned as normal; it holds only where the instances are seen. The same week of mints at 0.5/s
// per instance pages on four instances, and is the group's own level when one series is all
// there is: an aggregating endpoint of many pods looks exactly like that.
func TestMaxPerInstanceCapsOnlyWhereInstancesAreSeen(t *testing.T) {
	const step = 30 * time.Second
	tests := []struct {
		name  string
		week  fleetStep
		pages bool
	}{
		{"a bug all week on four instances pages", fleetStep{instances: 4, inbound: 5, work: 2}, true},
		{"the same work behind one series is its level", fleetStep{instances: 1, inbound: 5, work: 0.5}, false},
		// Inbound counted at an ingress is one series; the work's breakdown tells the pods apart.
		{"one inbound series, four instances minting, pages", fleetStep{instances: 1, inbound: 5, work: 0.5, working: 4}, true},
		{"under the cap, four instances learn their level", fleetStep{instances: 4, inbound: 5, work: 0.2}, false},
		// Once named apart they stay apart: a breakdown that shows one at a time (the others
		// between refreshes) does not lift the cap.
		{"instances once named apart keep the cap", fleetStep{instances: 1, inbound: 5, work: 0.5, working: 1}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fleetRule(config.RelationBounded)
			cfg.Signals[0].MaxPerInstance = 0.1
			steps := fleet(120, tc.week)
			if tc.week.working == 1 {
				steps[0].working = 4 // for one step, shorter than for
			}
			fired := firings(runFleet(t, NewRule(cfg, global(step)), tc.week, steps, step))
			if got := len(fired) > 0; got != tc.pages {
				t.Fatalf("paged %v, want %v (%d episodes)", got, tc.pages, len(fired))
			}
			if want := fmt.Sprintf("0.1/s per instance × %d", tc.week.instances); tc.pages && !strings.Contains(fired[0].Episode.Summary, want) {
				t.Errorf("summary %q does not give the capped level", fired[0].Episode.Summary)
			}
		})
	}
}

// A bounded level is the history's ninetieth percentile, but not beyond levelSpan times its
// median: an earlier incident that held a quarter of the history (three on a service's first
// day, behind an aggregating endpoint the cap per instance cannot hold) is not learned as the
// group's level, nor as the bursts the average_over gate lets by, while a busy plateau three
// times the quiet hours' still is.
func TestEarlierIncidentIsNotLearnedAsLevel(t *testing.T) {
	const step = 30 * time.Second
	quiet := fleetStep{instances: 1, inbound: 20, work: 0.0167}
	tests := []struct {
		name   string
		before fleetStep // the history's first quarter; quiet after it
		now    fleetStep
		pages  bool
	}{
		{"the incident again pages", fleetStep{instances: 1, inbound: 20, work: 1.3}, fleetStep{instances: 1, inbound: 20, work: 1.3}, true},
		{"a busy plateau is the level", fleetStep{instances: 1, inbound: 60, work: 0.05}, fleetStep{instances: 1, inbound: 60, work: 0.05}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fleetRule(config.RelationBounded)
			cfg.AverageOver = model.Duration(time.Hour)
			r := NewRule(cfg, global(step))
			addDay(r, step, func(at time.Time) fleetStep {
				if since := at.Sub(t0.Add(-24 * time.Hour)); since < 12*time.Hour && since%(4*time.Hour) < 90*time.Minute {
					return tc.before // three episodes of an hour and a half, as bursts to the average
				}
				return quiet
			})
			events := evalFleet(r, append(fleet(10, quiet), fleet(120, tc.now)...), step)
			if got := len(firings(events)) > 0; got != tc.pages {
				t.Fatalf("paged %v, want %v", got, tc.pages)
			}
		})
	}
}

// A bounded signal's expectation grows with the live instances, so instances added with their
// load that each do more pages at the replica-scaling share as instances added without it do:
// per-pod caches past what the provider keeps revoke each other whatever brought the pods.
// Mints per instance up 1.6x (a share of 0.38, under min_unexplained_share) as 4 → 11 pods came
// with inbound up 2.5x.
func TestBoundedWorkPerInstanceUpAfterLoadDrivenScaleOut(t *testing.T) {
	const step = 30 * time.Second
	four := fleetStep{instances: 4, inbound: 40, work: 0.4}
	tests := []struct {
		name  string
		after fleetStep
		pages bool
	}{
		{"each pod as before explains", fleetStep{instances: 11, inbound: 100, work: 1.1}, false},
		{"each pod doing 1.6x pages", fleetStep{instances: 11, inbound: 100, work: 1.76}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			steps := append(fleet(10, four), fleet(60, tc.after)...)
			fired := firings(runFleet(t, NewRule(fleetRule(config.RelationBounded), global(step)), four, steps, step))
			if got := len(fired) > 0; got != tc.pages {
				t.Fatalf("paged %v, want %v (%d episodes)", got, tc.pages, len(fired))
			}
			if tc.pages && !strings.Contains(fired[0].Episode.Explanation.Diagnosis, "work tracks replica count") {
				t.Errorf("diagnosis %q does not name replica scaling", fired[0].Episode.Explanation.Diagnosis)
			}
		})
	}
}

// Counted work's level is learned from blocks of enough events: a point's counting noise at the
// usual instances, taken into the level per instance, grew with every instance added (its noise
// grows with their square root) and hid per-pod caches refreshing twice as often behind it
// (fleetsim seed 11924, replica-scaling-11: 6 → 17 pods, 0.05 → 0.28 mints/s, missed).
func TestCountedLevelIsNotItsNoiseTimesTheInstances(t *testing.T) {
	const step = 30 * time.Second
	counts := []float64{3, 8, 5, 7, 4, 9, 6, 6, 2, 10} // mints per [2m] window at 6 pods: 6 on average
	window := func(i, pods int, perPod float64) fleetStep {
		n := counts[i%len(counts)] * float64(pods) / 6 * perPod
		return fleetStep{instances: pods, inbound: 17, work: n / 120}
	}
	tests := []struct {
		name   string
		perPod float64 // mints per pod after 6 → 17 pods, as a multiple of before
		pages  bool
	}{
		{"each pod as before explains", 1, false},
		{"each pod minting twice as often pages", 2, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fleetRule(config.RelationBounded)
			cfg.Signals[0].EventQuantum = 1.0 / 120 // a [2m] rate
			cfg.AverageOver = model.Duration(time.Hour)
			r := NewRule(cfg, global(step))
			i := 0
			addDay(r, step, func(time.Time) fleetStep { i++; return window(i, 6, 1) })
			var steps []fleetStep
			for i := range 20 {
				steps = append(steps, window(i, 6, 1))
			}
			for i := range 240 {
				steps = append(steps, window(i/4, 17, tc.perPod)) // a window's count holds for four steps
			}
			fired := firings(evalFleet(r, steps, step))
			if got := len(fired) > 0; got != tc.pages {
				t.Fatalf("paged %v, want %v (%d episodes)", got, tc.pages, len(fired))
			}
		})
	}
}

// Work raised while the instances are grown pages once it outlasts the excursions the group's
// history came back down from, whatever their height: new pods warming per-pod local caches
// raise Redis commands as much as per-pod caches that stay hot, often more, and the band and
// the average's gate (heights) hid the second behind the first.
func TestRaisedWorkThatOutlastsHistorysExcursionsPages(t *testing.T) {
	const step = 30 * time.Second
	base := time.Duration(global(step).BaselineStep)
	two := fleetStep{instances: 2, inbound: 10, work: 5}
	warming := fleetStep{instances: 2, inbound: 10, work: 25} // every deploy: 30 minutes of cold caches
	tests := []struct {
		name  string
		steps []fleetStep
		pages bool
	}{
		{"per-request work 1.9x for hours after 2 → 6 pages", fleet(240, fleetStep{instances: 6, inbound: 10, work: 9.5}), true},
		{"a warm-up as long as the deploys' does not", append(fleet(60, fleetStep{instances: 6, inbound: 10, work: 25}), fleet(180, fleetStep{instances: 6, inbound: 10, work: 5})...), false},
		// Work that wanders from its fit long after a scale-out is not what the scale-out brought.
		{"a rise an hour after the scale-out is not the instances'", append(fleet(120, fleetStep{instances: 6, inbound: 10, work: 5}), fleet(240, fleetStep{instances: 6, inbound: 10, work: 9.5})...), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fleetRule(config.RelationProportional)
			cfg.Signals[0].ReplicaScalingOnly = true
			cfg.AverageOver = model.Duration(time.Hour)
			r := NewRule(cfg, global(step))
			addDay(r, step, func(at time.Time) fleetStep {
				if at.Sub(t0)%(6*time.Hour) >= -30*time.Minute && at.Sub(t0)%(6*time.Hour) < 0 { // half an hour every six
					return warming
				}
				return two
			})
			fired := firings(evalFleet(r, append(fleet(10, two), tc.steps...), step))
			if got := len(fired) > 0; got != tc.pages {
				t.Fatalf("paged %v, want %v (%d episodes)", got, tc.pages, len(fired))
			}
			if tc.pages {
				// Past the history's longest excursion (30 minutes) and a baseline step.
				if after := fired[0].Episode.Start.Sub(t0.Add(10 * step)); after < 30*time.Minute+base {
					t.Errorf("paged %s after the scale-out, before the deploys' warm-ups would have settled", after)
				}
			}
		})
	}
}

// A rolling deploy empties every cache at once: at low traffic the last of them warm up long
// after the rollout, within deploy_settle. The same warm-up after a scale-out pages once settle
// is over, and so does a deploy's that outlasts deploy_settle.
func TestDeploySettle(t *testing.T) {
	const step = 30 * time.Second
	quiet := fleetStep{instances: 4, inbound: 0.5, work: 0.004}
	// Fifteen minutes at five times the level: 14 mints beyond it, within what the new pods'
	// caches take (36), so only the settle holds it back.
	warm := func(minutes int, f func(*fleetStep)) []fleetStep {
		s := fleetStep{instances: 4, inbound: 0.5, work: 0.02}
		f(&s)
		return fleet(minutes*int(time.Minute/step), s)
	}
	deployed := func(s *fleetStep) { s.generation = 1 }
	for _, tc := range []struct {
		name  string
		steps []fleetStep
		fires bool
	}{
		{"a deploy's warm-up within deploy_settle", append(append(fleet(10, quiet), warm(15, deployed)...), fleet(40, with(quiet, deployed))...), false},
		{"a scale-out's warm-up past settle", append(append(fleet(10, quiet), warm(15, func(s *fleetStep) { s.instances = 8 })...), fleet(40, with(quiet, func(s *fleetStep) { s.instances = 8 }))...), true},
		{"a deploy's warm-up past deploy_settle", append(append(fleet(10, quiet), warm(25, deployed)...), fleet(40, with(quiet, deployed))...), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fleetRule(config.RelationBounded)
			cfg.DeploySettle = 2 * cfg.Settle
			fired := firings(runFleet(t, NewRule(cfg, global(step)), quiet, tc.steps, step))
			if got := len(fired) > 0; got != tc.fires {
				logFirings(t, fired)
				t.Errorf("fired %d episodes, want firing %v", len(fired), tc.fires)
			}
		})
	}
}

// Health probes come with the pods: a scale-out at night, when every request is a probe, grows
// inbound with the instances while no user came (fleetsim tuning seed 51888, healthy-18: 5 → 15
// pods, inbound 0.3 → 0.9/s, all probes). Work per request that rose with it is the third
// incident, not load. Where users never go quiet, the quietest inbound per pod is users, and a
// scale-out that came with them is load as before.
func TestProbesAreNotLoad(t *testing.T) {
	const step = 30 * time.Second
	const probes = 0.1 // per pod and second
	diurnal := func(at time.Time) fleetStep {
		in := 2 * probes
		if h := at.Hour(); h >= 7 && h < 21 { // users by day, more than half of it
			in += 100
		}
		return fleetStep{instances: 2, inbound: in, work: 0.5 * in}
	}
	flat := func(time.Time) fleetStep { return fleetStep{instances: 2, inbound: 30, work: 15} }
	tests := []struct {
		name    string
		history func(time.Time) fleetStep
		before  fleetStep
		after   fleetStep
		pages   bool
	}{
		{"probes alone tripled with the pods at night: work per request up 3x pages", diurnal,
			fleetStep{instances: 2, inbound: 2 * probes, work: probes}, fleetStep{instances: 6, inbound: 6 * probes, work: 9 * probes}, true},
		{"users that never go quiet rose with the pods: load", flat,
			fleetStep{instances: 2, inbound: 30, work: 15}, fleetStep{instances: 6, inbound: 66, work: 0.5 * 66 * 1.5}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fleetRule(config.RelationProportional)
			cfg.Signals[0].ReplicaScalingOnly = true
			r := NewRule(cfg, global(step))
			addDay(r, step, tc.history)
			fired := firings(evalFleet(r, append(fleet(10, tc.before), fleet(60, tc.after)...), step))
			if got := len(fired) > 0; got != tc.pages {
				logFirings(t, fired)
				t.Fatalf("paged %v, want %v", got, tc.pages)
			}
			if tc.pages && !strings.Contains(fired[0].Episode.Explanation.Diagnosis, "health probes") {
				t.Errorf("diagnosis %q does not say the probes were taken out", fired[0].Episode.Explanation.Diagnosis)
			}
		})
	}
}

// TestCacheRefillHoldsAReset: a reset the cache_resets query sees at one step (its ranges an
// evaluation interval long) holds the rebuild as a transient for cache_refill after it, as the
// [1h] ranges it replaced did at every step; work still up once the refill and a settle are
// over pages and names the reset.
func TestCacheRefillHoldsAReset(t *testing.T) {
	const step = 30 * time.Second
	healthy := fleetStep{instances: 2, inbound: 10, work: 50}
	rebuild := with(healthy, func(s *fleetStep) { s.work = 400 })
	var steps []fleetStep
	steps = append(steps, fleet(10, healthy)...)
	steps = append(steps, with(rebuild, func(s *fleetStep) { s.cacheReset = true }))
	steps = append(steps, fleet(89, rebuild)...) // 45 minutes of refill
	steps = append(steps, fleet(40, healthy)...)
	for _, tc := range []struct {
		refill   time.Duration
		fireStep int // -1: nothing fires
	}{
		{0, 30},                // only the step that saw it, then settle (10m)
		{20 * time.Minute, 69}, // held at the steps less than 20 minutes after it, then settle
		{time.Hour, -1},        // the rebuild ends within the refill
	} {
		t.Run(tc.refill.String(), func(t *testing.T) {
			cfg := fleetRule(config.RelationProportional)
			cfg.CacheRefill = model.Duration(tc.refill)
			r := NewRule(cfg, global(step))
			fired := firings(runFleet(t, r, healthy, steps, step))
			ep, ok := firedOnceAt(t, fired, step, tc.fireStep)
			if !ok {
				return
			}
			// Fired once the reset's hold and the settle after its last step were over, not before.
			if held := t0.Add(10*step + max(tc.refill-step, 0) + time.Duration(cfg.Settle)); fired[0].At.Before(held) {
				t.Errorf("fired at %s, inside the reset's refill and settle (until %s)", fired[0].At.Sub(t0), held.Sub(t0))
			}
			if !strings.Contains(ep.Explanation.Diagnosis, TransientCacheReset) {
				t.Errorf("diagnosis does not name the cache reset: %s", ep.Explanation.Diagnosis)
			}
		})
	}
}
