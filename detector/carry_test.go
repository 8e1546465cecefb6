package detector

import (
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/prometheus/common/model"
)

// TestGroupWithoutRedisIsQuiet: inbound names every service, and only some have a Redis. A
// storm rule's group that never had a keyspace is inactive, not unknown (forever); one whose
// keyspace vanished is unknown (the exporter is gone, not the flushes).
func TestGroupWithoutRedisIsQuiet(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    series
		want State
	}{
		{"never had Redis", series{inbound: "5x10"}, StateInactive},
		{"Redis vanished", series{inbound: "5x10", keys: "500x5"}, StateUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRule(flushRule(), global(time.Minute))
			run(t, r, tc.s, t0, time.Minute)
			if got := r.Status()[0].State; got != tc.want {
				t.Errorf("state %v, want %v", got, tc.want)
			}
		})
	}
}

// TestCarryKeepsTheStartOfAnEpisodeOlderThanTheReplay: an episode an earlier process had open
// keeps its start when the replay finds it breaching at every step after the carry bound, and
// does not when the group was quiet after it (the old episode ended; this one is new).
func TestCarryKeepsTheStartOfAnEpisodeOlderThanTheReplay(t *testing.T) {
	earlier := t0.Add(-3 * time.Hour)
	for _, tc := range []struct {
		name, work string
		wantStart  time.Time
	}{
		{"breaching throughout", "2x20", earlier},
		{"quiet, then breaching", "0x5 2x20", t0.Add(8 * time.Minute)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRule(tokenRule("proportional"), global(time.Minute))
			r.Carry(map[string]Carried{GroupString(service): {Start: earlier}}, t0.Add(time.Minute))
			events := run(t, r, series{inbound: "5x25", work: tc.work}, t0, time.Minute)
			if len(events) == 0 {
				t.Fatal("no episode fired")
			}
			if got := events[0].Episode.Start; !got.Equal(tc.wantStart) {
				t.Errorf("start %v, want %v", got, tc.wantStart)
			}
		})
	}
}

// TestRestoredAverageStartsWhereItWas: a restored replay is shorter than an average remembers,
// so the average starts from the history's steps before it instead of from the expected work:
// it comes out near where a process that never stopped had it, not at "nothing unexplained".
func TestRestoredAverageStartsWhereItWas(t *testing.T) {
	cfg := tokenRule("proportional")
	cfg.AverageOver, cfg.RecurWithin = model.Duration(30*time.Minute), model.Duration(30*time.Minute)
	g := global(time.Minute)
	at := t0.Add(24 * time.Hour) // the restart's first replayed step
	work := func(ts time.Time) float64 {
		if ts.After(at.Add(-2 * time.Hour)) {
			return 0.09 // 44 % unexplained: under the share that fires, so nothing fires
		}
		return 0.05 // 0.01 per request
	}
	input := func(ts time.Time) Input {
		return Input{Time: ts, Groups: map[string]map[string]string{key: service},
			Inbound: Values{key: 5}, Signals: []Values{{key: work(ts)}}}
	}
	kept, restored := NewRule(cfg, g), NewRule(cfg, g)
	restored.Restore(nil, at)
	for ts := t0; ts.Before(at); ts = ts.Add(time.Minute) {
		if ts.Before(at.Add(-3 * time.Hour)) {
			if ts.Unix()%300 == 0 {
				kept.AddHistory(input(ts))
			}
		} else {
			kept.Eval(input(ts))
		}
		if ts.Unix()%300 == 0 {
			restored.AddHistory(input(ts))
		}
	}
	if evs := append(kept.Eval(input(at)), restored.Eval(input(at))...); len(evs) != 0 {
		t.Fatalf("events %+v: the test's work must stay under what fires", evs)
	}
	k, r := kept.groups[key].signals[0].average, restored.groups[key].signals[0].average
	keptExcess, restoredExcess := k.work-k.expected, r.work-r.expected
	t.Logf("average unexplained work at the restart: kept %.4f/s, restored %.4f/s", keptExcess, restoredExcess)
	if keptExcess < 0.03 || math.Abs(restoredExcess-keptExcess) > 0.1*keptExcess {
		t.Errorf("restored average unexplained %.4f/s, kept %.4f/s: want within 10 %%", restoredExcess, keptExcess)
	}
}

// TestHistoryOfGrownReplicasDoesNotTeach: a history read at start-up holds the steps after a
// scale-out that a live process kept from its baselines (work under observation while the
// instances are past their usual number). Learned from, they would make the per-pod work that
// grew with the replicas this group's healthy level.
func TestHistoryOfGrownReplicasDoesNotTeach(t *testing.T) {
	cfg := tokenRule(config.RelationBounded)
	cfg.Replicas = "r"
	r := NewRule(cfg, global(time.Minute))
	scaledOut := t0.Add(-3 * 24 * time.Hour) // 3 of the 7 days: the usual count stays 2
	for ts := t0.Add(-7 * 24 * time.Hour); ts.Before(t0); ts = ts.Add(5 * time.Minute) {
		pods, perPod := 2, 0.001
		if !ts.Before(scaledOut) {
			pods, perPod = 6, 0.003 // each new pod's own token cache refreshes more often
		}
		live := Values{}
		for p := range pods {
			live[strconv.Itoa(p)] = 1
		}
		r.AddHistory(Input{Time: ts, Groups: map[string]map[string]string{key: service},
			Inbound: Values{key: 5}, Signals: []Values{{key: perPod * float64(pods)}}, Replicas: map[string]Values{key: live}})
	}
	grp := r.groups[key]
	grp.relearn(r, t0)
	if lvl := grp.signals[0].level.PerInstance; !grp.signals[0].levelOK || math.Abs(lvl-0.001) > 0.0002 {
		t.Errorf("learned a healthy level of %.4f/s per instance (ok %v); want the 2 pods' 0.001, not the scaled-out 0.003", lvl, grp.signals[0].levelOK)
	}
}

// TestHistoryOfCacheResetsDoesNotTeach: a history read at start-up holds the refills after each
// cache reset, which a live process kept from its baselines (its reset events hold while the
// cache_resets query reports them, and a settle more). Learned from, a flush's refill became
// the level of a group whose caches otherwise never mint in a step, and a restart judged its
// next thrash against it.
func TestHistoryOfCacheResetsDoesNotTeach(t *testing.T) {
	r := NewRule(fleetRule(config.RelationBounded), global(time.Minute))
	for ts := t0.Add(-7 * 24 * time.Hour); ts.Before(t0); ts = ts.Add(15 * time.Minute) {
		step := fleetStep{instances: 4, inbound: 5}
		if ts.Sub(t0.Add(-7*24*time.Hour))%(4*time.Hour) < time.Hour { // a flush every 4 hours, refilled within the hour
			step.cacheReset, step.work = true, 0.02
		}
		r.AddHistory(step.input(ts))
	}
	grp := r.groups[key]
	grp.relearn(r, t0)
	if lvl := grp.signals[0].level.PerInstance; !grp.signals[0].levelOK || lvl != 0 {
		t.Errorf("learned a healthy level of %.4f/s per instance (ok %v); want 0: only the refills after cache resets minted", lvl, grp.signals[0].levelOK)
	}
}
