package detector

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/prometheus/common/model"
)

// TestStateCoversEveryField is a tripwire: the state file mirrors these types field for field
// (state.go); a field added to one of them must be added there too, or a restart loses it.
func TestStateCoversEveryField(t *testing.T) {
	for _, tc := range []struct {
		v      any
		fields int
	}{
		{group{}, 25}, {signalState{}, 9}, {lifecycle{}, 8}, {instanceTracker{}, 4}, {average{}, 3}, {flushState{}, 12},
		{counterSeen{}, 3}, {countAt{}, 2}, {Episode{}, 13}, {Explanation{}, 44}, {historyClock{}, 5},
	} {
		if n := reflect.TypeOf(tc.v).NumField(); n != tc.fields {
			t.Errorf("%T has %d fields, the state file knows %d: update state.go and this count", tc.v, n, tc.fields)
		}
	}
}

// stateCase is a rule and its input at each minute step i of a test that stops a process
// at step 340 of 500: the cases every test of a handed-over state runs.
type stateCase struct {
	name  string
	rule  config.Rule
	input func(i int) Input
}

func stateCases() []stateCase {
	withReplicas := tokenRule(config.RelationBounded)
	withReplicas.Replicas, withReplicas.AverageOver, withReplicas.RecurWithin = "r", model.Duration(10*time.Minute), model.Duration(10*time.Minute)
	recurring := tokenRule(config.RelationBounded)
	recurring.RecurWithin = model.Duration(time.Hour)
	behindOne := fleetRule(config.RelationProportional)
	behindOne.ReplicaCount, behindOne.Signals[0].ReplicaScalingOnly = "count", true
	return []stateCase{
		{"self-generated traffic, replicas scaling and bursts", withReplicas, func(i int) Input {
			pods := 2
			if i > 300 {
				pods = 6
			}
			live := Values{}
			for p := range pods {
				live["pod-"+strconv.Itoa(p)] = 1
			}
			work := 0.002 * float64(pods)
			if i > 320 && i%16 < 8 { // bursts that come back within average_over: a recurrence
				work = 0.5
			}
			return Input{Inbound: Values{key: 5}, Signals: []Values{{key: work}}, Replicas: map[string]Values{key: live}}
		}},
		{"a burst under way in a recurring episode's kept quiet", recurring, func(i int) Input {
			work := 0.002
			// Two stampedes 30 minutes apart (the second learns the gap), then a burst that
			// lasts for and straddles the restart at step 340: it counts from its first step.
			if (i >= 250 && i < 270) || (i >= 300 && i < 320) || (i >= 339 && i < 342) {
				work = 0.5
			}
			return Input{Inbound: Values{key: 5}, Signals: []Values{{key: work}}}
		}},
		{"a load-driven scale-out's verdict after a deploy replaced its event", fleetRule(config.RelationProportional), func(i int) Input {
			// 2 → 4 instances with inbound 10 → 18/s, under a surge: load-driven, though work per
			// request rose a third. A deploy renames the pods before the restart, so only the
			// kept verdict, not the latest event, says so afterwards; then a thrash pages.
			s := fleetStep{instances: 2, inbound: 10, work: 50}
			switch {
			case i >= 420:
				s = fleetStep{instances: 4, generation: 1, inbound: 18, work: 1200}
			case i >= 330:
				s = fleetStep{instances: 4, generation: 1, inbound: 18, work: 120}
			case i > 300:
				s = fleetStep{instances: 4, inbound: 18, work: 120}
			}
			return s.input(time.Time{})
		}},
		{"pods tripled behind one endpoint, counted by replica_count", behindOne, func(i int) Input {
			// Tripled before the restart; the usual count and the event's multiples carry.
			s := fleetStep{instances: 1, inbound: 10, work: 5, count: 0.1}
			if i > 300 {
				s = fleetStep{instances: 1, inbound: 10, work: 15, count: 0.3}
			}
			return s.input(time.Time{})
		}},
		{"flush storm", flushRule(), func(i int) Input {
			flushes := float64(i / 200)
			if i > 350 {
				flushes += float64((i - 350) / 4)
			}
			series := Values{`cmd="flushdb"`: flushes}
			if i >= 400 { // a command first called after the restart counts from its first call
				series[`cmd="flushall"`] = float64(1 + (i-400)/3)
			}
			return Input{Keys: Values{key: 1000 + float64(i%7)}, Flushes: map[string]Values{key: series}}
		}},
	}
}

// TestStateRoundTrip: a rule written out and read back mid-way evaluates the rest exactly as
// the rule that never stopped: the same events, the same group states and words.
func TestStateRoundTrip(t *testing.T) {
	for _, tc := range stateCases() {
		t.Run(tc.name, func(t *testing.T) {
			const steps, stop = 500, 340
			at := func(i int) Input {
				in := tc.input(i)
				in.Time, in.Groups = t0.Add(time.Duration(i)*time.Minute), map[string]map[string]string{key: service}
				return in
			}
			kept := NewRule(tc.rule, global(time.Minute))
			for i := range 12 * 24 { // a day of history at the 5m baseline step
				kept.AddHistory(at(i*5 - 12*24*5))
			}
			var before []Event
			for i := range stop {
				before = append(before, kept.Eval(at(i))...)
			}
			var buf bytes.Buffer
			if err := kept.WriteState(gob.NewEncoder(&buf)); err != nil {
				t.Fatal(err)
			}
			restarted := NewRule(tc.rule, global(time.Minute))
			if err := restarted.ReadState(gob.NewDecoder(&buf)); err != nil {
				t.Fatal(err)
			}
			// What a relearn computes is kept too: the next one is up to an hour away.
			if w, g := fmt.Sprint(averagePeaks(kept.groups[key])), fmt.Sprint(averagePeaks(restarted.groups[key])); w != g {
				t.Errorf("average peaks: got %s, want %s", g, w)
			}
			var want, got []Event
			for i := stop; i < steps; i++ {
				want = append(want, kept.Eval(at(i))...)
				got = append(got, restarted.Eval(at(i))...)
				if w, g := fmt.Sprintf("%+v", kept.Status()), fmt.Sprintf("%+v", restarted.Status()); w != g {
					t.Fatalf("step %d: status\n got  %s\n want %s", i, g, w)
				}
			}
			if len(before)+len(want) == 0 {
				t.Fatal("no event at all: the input no longer tests anything")
			}
			if w, g := fmt.Sprintf("%+v", want), fmt.Sprintf("%+v", got); w != g {
				t.Errorf("events after the restart:\n got  %s\n want %s", g, w)
			}
			t.Logf("%d events before the restart, %d after", len(before), len(want))
		})
	}
}
