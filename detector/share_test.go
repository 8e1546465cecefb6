package detector

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/prometheus/common/model"
)

// testClock is a rule's clock over a store of its own with cols columns, none shared.
func testClock(length, step time.Duration, cols int) *historyClock {
	s := newHistoryStore(length, step)
	hc := make([]historyColumn, cols)
	for i := range hc {
		hc[i].store = s.column("sum", "")
	}
	return newHistoryClock(s, hc)
}

// sharingRules are the shipped rules' shape: both read inbound with the same query, and
// token-minting's Redis-commands signal is flush-storm's commands query.
func sharingRules() []config.Rule {
	token := fleetRule(config.RelationProportional)
	token.Inbound, token.Replicas = "inbound", "replicas"
	token.AverageOver = model.Duration(30 * time.Minute)
	token.Signals = []config.Signal{
		{Name: "token_mints", Unit: "token mints", Query: "mints", Relation: config.RelationProportional, PerInstance: true},
		{Name: "redis_commands", Unit: "Redis commands", Query: "commands", Relation: config.RelationProportional, ReplicaScalingOnly: true},
	}
	flush := flushRule()
	flush.Inbound, flush.Commands, flush.Flushes, flush.Keys = "inbound", "commands", "flushes", "keys"
	return []config.Rule{token, flush}
}

// sharingInputs are both rules' inputs at step i (of a minute) of two groups: healthy history,
// then a token thrash in one group (token-minting fires: its steps stop teaching) and a flush
// storm in the other (flush-storm fires while token-minting still learns there), so the rules
// mask the shared Redis-commands column at different steps.
func sharingInputs(i int, at time.Time) []Input {
	groups := map[string]map[string]string{}
	in := []Input{{Time: at, Groups: groups, Inbound: Values{}, Signals: []Values{{}, {}}, Replicas: map[string]Values{}},
		{Time: at, Groups: groups, Inbound: Values{}, Commands: Values{}, Keys: Values{}, Flushes: map[string]Values{}}}
	// Both relearn at a baseline step (relearnPhase 3000 s and 3300 s): flush-storm, evaluated
	// second, before storing the step another rule stored first.
	for g, name := range []string{"api-33", "web-22"} {
		k := `service="` + name + `"`
		groups[k] = map[string]string{"service": name}
		inbound := 20 + 5*float64((i/7+g)%5) + float64((i*37+g)%101)/10 // varies: ratio and floor are learned
		mints, commands, flushes := 0.002*inbound+0.1, 3*inbound+4, float64(i/300)
		if g == 0 && i >= 200 && i < 260 {
			mints *= 40
		}
		if g == 1 && i >= 300 && i < 330 {
			flushes += float64(i - 300)
			commands *= 2
		}
		live := Values{}
		for p := range 3 {
			live["pod-"+strconv.Itoa(p)] = 1
		}
		in[0].Inbound[k], in[0].Signals[0][k], in[0].Signals[1][k], in[0].Replicas[k] = inbound, mints, commands, live
		in[1].Inbound[k], in[1].Commands[k], in[1].Keys[k] = inbound, commands, 1000+float64(i%7)
		in[1].Flushes[k] = Values{`cmd="flushdb"`: flushes}
	}
	return in
}

// sharingGlobal has a history of 6 h, so a day's history and the evaluation wrap its ring: a
// rule relearning at a baseline step before storing it reads the step its store replaces.
func sharingGlobal() config.Global {
	g := global(time.Minute)
	g.History = model.Duration(6 * time.Hour)
	return g
}

// feed gives rules a day of history at the baseline step, then evaluates steps [from, to).
func feed(rules []*Rule, from, to int, history bool) (events []Event) {
	if history {
		for i := range 12 * 24 {
			step := i*5 - 12*24*5
			for ri, in := range sharingInputs(step, t0.Add(time.Duration(step)*time.Minute)) {
				rules[ri].AddHistory(in)
			}
		}
	}
	for i := from; i < to; i++ {
		for ri, in := range sharingInputs(i, t0.Add(time.Duration(i)*time.Minute)) {
			events = append(events, rules[ri].Eval(in)...)
		}
	}
	return events
}

// averagePeaks is each signal's averagePeak, nil before relearn has set them.
func averagePeaks(g *group) []float64 {
	if !g.peaksLearned {
		return nil
	}
	out := make([]float64, len(g.signals))
	for i, s := range g.signals {
		out[i] = s.averagePeak
	}
	return out
}

// learned is what a rule has learned and sees, to compare rules that must agree.
func learned(r *Rule) string {
	var b bytes.Buffer
	for _, g := range r.sorted {
		fmt.Fprint(&b, g.key)
		if len(g.signals) > 0 { // a rule without signals learns no fits, and its file holds none
			fmt.Fprintf(&b, " fitted %v", g.fitted)
		}
		for _, s := range g.signals {
			fmt.Fprintf(&b, " fit %+v %v level %+v %v", s.fit, s.fitOK, s.level, s.levelOK)
		}
		fmt.Fprintf(&b, " peaks %v cmdPer %v replicas %v view %v\n", averagePeaks(g), g.cmdPer, g.usualReplicas, g.hist.view(nil))
	}
	fmt.Fprintf(&b, "%+v", r.Status())
	return b.String()
}

// TestRulesShareHistoryColumns: rules made together keep one column per distinct query and
// group (inbound once, Redis commands once), and evaluate exactly as rules with a history each:
// the same events, states, words, learned baselines and history as each sees it.
func TestRulesShareHistoryColumns(t *testing.T) {
	cfgs := sharingRules()
	g := sharingGlobal()
	shared := NewRules(cfgs, g)
	private := []*Rule{NewRule(cfgs[0], g), NewRule(cfgs[1], g)}
	store := shared[0].clock.store
	if shared[1].clock.store != store || len(store.columns) != 4 {
		t.Fatalf("columns %q, want 4 in one store: inbound, mints, commands and the instance count", store.columns)
	}
	// A rule grouping by other labels may have groups of the same key (label values) whose
	// sums differ: it keeps a store of its own.
	byJob := cfgs[1]
	byJob.GroupBy = []string{"job"}
	if rs := NewRules([]config.Rule{cfgs[0], byJob}, g); rs[0].clock.store == rs[1].clock.store {
		t.Error("rules grouping by other labels share a store")
	}
	// Live instances are counted by the instance label: the same query counted by another
	// label is another column.
	byPod := cfgs[0]
	byPod.Name, byPod.InstanceLabel = "by-pod", "pod"
	rs := NewRules([]config.Rule{cfgs[0], byPod}, g)
	if s := rs[0].clock.store; len(s.columns) != 5 || rs[0].clock.cols[3].store == rs[1].clock.cols[3].store {
		t.Errorf("columns %q: the instance counts by instance and by pod share one", s.columns)
	}
	const steps = 500
	var want, got []Event
	for i := 0; i < steps; i += 50 { // compared every 50 steps, so a difference shows where it began
		want = append(want, feed(private, i, i+50, i == 0)...)
		got = append(got, feed(shared, i, i+50, i == 0)...)
		for ri := range shared {
			if w, s := learned(private[ri]), learned(shared[ri]); w != s {
				t.Fatalf("rule %s, up to step %d:\n shared  %s\n private %s", cfgs[ri].Name, i+50, s, w)
			}
		}
	}
	fired := map[string]int{}
	for _, ev := range want {
		if !ev.Resolved && !ev.Updated {
			fired[ev.Episode.Rule]++
		}
	}
	if fired["token-minting"] == 0 || fired["redis-flush-storm"] == 0 {
		t.Fatalf("fired %v: each rule must fire once, or the masks are not tested", fired)
	}
	if w, s := fmt.Sprintf("%+v", want), fmt.Sprintf("%+v", got); w != s {
		t.Errorf("events:\n shared  %s\n private %s", s, w)
	}
	if n := len(store.members); n != 2 {
		t.Errorf("the store holds %d groups' columns, want 2", n)
	}
}

// TestStateFromPrivateHistoriesLoadsShared: a state file written by rules with a history each
// (the layout of every earlier file: each rule's columns as it sees them) loads into rules that
// share a store, which then evaluate exactly as the rules that never stopped.
func TestStateFromPrivateHistoriesLoadsShared(t *testing.T) {
	cfgs := sharingRules()
	g := sharingGlobal()
	const stop, steps = 280, 500
	kept := []*Rule{NewRule(cfgs[0], g), NewRule(cfgs[1], g)}
	before := feed(kept, 0, stop, true)
	var buf bytes.Buffer
	enc := gob.NewEncoder(&buf)
	for _, r := range kept {
		if err := r.WriteState(enc); err != nil {
			t.Fatal(err)
		}
	}
	restarted := NewRules(cfgs, g)
	dec := gob.NewDecoder(&buf)
	for _, r := range restarted {
		if err := r.ReadState(dec); err != nil {
			t.Fatal(err)
		}
	}
	for ri := range kept {
		if w, s := learned(kept[ri]), learned(restarted[ri]); w != s {
			t.Fatalf("rule %s read back:\n got  %s\n want %s", cfgs[ri].Name, s, w)
		}
	}
	want, got := feed(kept, stop, steps, false), feed(restarted, stop, steps, false)
	if len(before)+len(want) == 0 {
		t.Fatal("no event at all: the input no longer tests anything")
	}
	if w, s := fmt.Sprintf("%+v", want), fmt.Sprintf("%+v", got); w != s {
		t.Errorf("events after the restart:\n got  %s\n want %s", s, w)
	}
	for ri := range kept {
		if w, s := learned(kept[ri]), learned(restarted[ri]); w != s {
			t.Errorf("rule %s at the end:\n got  %s\n want %s", cfgs[ri].Name, s, w)
		}
	}
}
