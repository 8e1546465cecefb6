package detector

import (
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/config"
)

// quietKey is a second group beside key in the adoption tests: nothing happens to it.
const quietKey = `service="quiet"`

// withQuiet adds quietKey to in, doing what key does at its quietest.
func withQuiet(in Input) Input {
	out := in
	out.Groups = map[string]map[string]string{key: service, quietKey: {"service": "quiet"}}
	one := func(v Values) Values {
		if v == nil {
			return nil
		}
		w := maps.Clone(v)
		w[quietKey] = 0.001
		return w
	}
	out.Inbound, out.Keys = one(in.Inbound), nil
	if in.Inbound == nil {
		out.Inbound = Values{quietKey: 5}
	}
	if in.Keys != nil {
		out.Keys = maps.Clone(in.Keys)
		out.Keys[quietKey] = 1000
	}
	out.Signals = nil
	for _, v := range in.Signals {
		out.Signals = append(out.Signals, one(v))
	}
	if in.Replicas != nil {
		out.Replicas = maps.Clone(in.Replicas)
		out.Replicas[quietKey] = Values{"pod-a": 1, "pod-b": 1}
	}
	return out
}

// TestAdoptTakesTheReplayOfOthers: a rule that replayed a short window for two groups, and took
// one group's state from a rule that replayed that group alone over the whole window (Adopt),
// evaluates that group from there exactly as a rule that replayed everything did, and keeps
// the other group.
func TestAdoptTakesTheReplayOfOthers(t *testing.T) {
	for _, tc := range stateCases() {
		t.Run(tc.name, func(t *testing.T) {
			const steps, stop, short = 500, 340, 325
			g := global(time.Minute)
			base := int(time.Duration(g.BaselineStep) / time.Minute)
			at := func(i int, both bool) Input {
				in := tc.input(i)
				in.Time, in.Groups = t0.Add(time.Duration(i)*time.Minute), map[string]map[string]string{key: service}
				if both {
					in = withQuiet(in)
				}
				return in
			}
			full, alone, main := NewRule(tc.rule, g), NewRule(tc.rule, g), NewRule(tc.rule, g)
			for i := -12 * 24 * base; i < 0; i += base { // a day of history
				full.AddHistory(at(i, true))
				alone.AddHistory(at(i, false))
				main.AddHistory(at(i, true))
			}
			var want []Event
			for i := range stop {
				want = append(want, full.Eval(at(i, true))...)
				alone.Eval(at(i, false))
				if i < short {
					if i%base == 0 {
						main.AddHistory(at(i, true)) // read back, as the start-up does
					}
				} else {
					main.Eval(at(i, true))
				}
			}
			if err := main.Adopt(alone, map[string]map[string]string{GroupString(service): service}); err != nil {
				t.Fatal(err)
			}
			if main.Groups() != 2 {
				t.Fatalf("%d groups after Adopt, want 2", main.Groups())
			}
			var got []Event
			for i := stop; i < steps; i++ {
				want = append(want, full.Eval(at(i, true))...)
				got = append(got, main.Eval(at(i, true))...)
				if w, g := fmt.Sprintf("%+v", status(full)), fmt.Sprintf("%+v", status(main)); w != g {
					t.Fatalf("step %d: status\n got  %s\n want %s", i, g, w)
				}
			}
			var after []Event
			for _, ev := range want {
				if !ev.At.Before(t0.Add(stop * time.Minute)) {
					after = append(after, ev)
				}
			}
			if len(want) == 0 {
				t.Fatal("no event at all: the input no longer tests anything")
			}
			if w, g := fmt.Sprintf("%+v", after), fmt.Sprintf("%+v", got); w != g {
				t.Errorf("events after the adoption:\n got  %s\n want %s", g, w)
			}
		})
	}
}

// status is the GroupStatus of key's group in r.
func status(r *Rule) GroupStatus {
	for _, st := range r.Status() {
		if GroupString(st.Labels) == GroupString(service) {
			return st
		}
	}
	return GroupStatus{}
}

func TestAdoptNeedsTheSameSteps(t *testing.T) {
	rule := tokenRule(config.RelationBounded)
	a, b := NewRule(rule, global(time.Minute)), NewRule(rule, global(time.Minute))
	in := Input{Time: t0, Groups: map[string]map[string]string{key: service}, Inbound: Values{key: 1}, Signals: []Values{{key: 0.001}}}
	a.AddHistory(in)
	if err := a.Adopt(b, map[string]map[string]string{GroupString(service): service}); err == nil {
		t.Error("Adopt from a rule whose history holds other steps: no error")
	}
}

// TestStirred: of a day's history read back, a group is stirred since from when its steps there
// show work over the thresholds, or a changed number of instances, or an earlier process had an
// episode of it open; not when that was before from.
func TestStirred(t *testing.T) {
	healthy := fleetStep{instances: 2, inbound: 10, work: 0.004}
	raisedAt := func(when time.Time) func(at time.Time) fleetStep {
		return func(at time.Time) fleetStep {
			if at.Equal(when) {
				return with(healthy, func(s *fleetStep) { s.work = 0.5 })
			}
			return healthy
		}
	}
	from := t0.Add(-2 * time.Hour)
	for _, tc := range []struct {
		name    string
		day     func(at time.Time) fleetStep
		carried map[string]Carried
		want    bool
	}{
		{"quiet", func(time.Time) fleetStep { return healthy }, nil, false},
		{"work raised an hour ago", raisedAt(t0.Add(-time.Hour)), nil, true},
		{"work raised before from", raisedAt(t0.Add(-5 * time.Hour)), nil, false},
		{"instances doubled an hour ago", func(at time.Time) fleetStep {
			if at.Before(t0.Add(-time.Hour)) {
				return healthy
			}
			return with(healthy, func(s *fleetStep) { s.instances, s.work = 4, 0.008 })
		}, nil, true},
		{"an earlier process's episode", func(time.Time) fleetStep { return healthy }, map[string]Carried{key: {Start: t0.Add(-3 * time.Hour)}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRule(fleetRule(config.RelationBounded), global(time.Minute))
			addDay(r, time.Minute, tc.day)
			r.Eval(tc.day(t0).input(t0)) // learns what the history says
			_, got := r.Stirred(from, t0, tc.carried)[key]
			if got != tc.want {
				t.Errorf("stirred %v, want %v", got, tc.want)
			}
		})
	}
}
