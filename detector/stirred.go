package detector

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"time"
)

// A cold start replays global.replay so that episodes under way come back with their starts.
// Most groups did nothing in it worth replaying: a start-up may replay only what the rules
// remember (Memory) for every group, after the history read back up to there, and the whole
// window for the groups that may have done something in it (Stirred), whose state it then takes
// from that replay (Adopt).

// Stirred returns, by GroupString, the labels of the groups whose steps from from to to may
// hold what a replay from from would judge differently from one that began later: an episode,
// a breach or a state other than inactive since from, an instance or cache-reset event since
// from, what the kind finds in the history's steps there (kind.stirred), and an episode start
// an earlier process exported (carried, by GroupString), which a replay from from may carry.
func (r *Rule) Stirred(from, to time.Time, carried map[string]Carried) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, g := range r.sorted {
		key := GroupString(g.labels)
		if _, ok := carried[key]; ok || g.stirred(r, from, to) {
			out[key] = g.labels
		}
	}
	return out
}

// Groups is the number of groups the rule has seen.
func (r *Rule) Groups() int { return len(r.sorted) }

func (g *group) stirred(r *Rule, from, to time.Time) bool {
	switch {
	case g.episode != nil, g.life.state != StateInactive, g.life.lastBreach >= unixNano(from), g.carried != nil:
		return true
	case g.instances.event != nil && !g.instances.event.Last.Before(from):
		return true
	}
	return r.kind.stirred(r, g, from, to)
}

// stirredSelfGenerated says whether the history's steps from from to to show the instances
// changing in number or grown past their usual number, or a signal's work over its thresholds
// at the lower ones of a firing episode (hysteresis, replicaShare): what could have opened or
// held an episode, or held a scale-out the replay would remember. A step's value is its mean, so
// a breach of a few minutes in a quiet step may not show: such an episode, over before the
// replay of what the rules remember, pages nobody at a start either. Unlike group.raised it
// leaves the noise test out: a lower bar stirs more groups, never fewer.
func (r *Rule) stirredSelfGenerated(g *group, from, to time.Time) bool {
	share := math.Min(r.cfg.MinUnexplainedShare, replicaShare) * r.cfg.Hysteresis
	rate := r.cfg.MinUnexplainedRate * r.cfg.Hysteresis
	count := math.NaN()
	for at := from.Truncate(r.baselineStep); !at.After(to); at = at.Add(r.baselineStep) {
		unix := at.Unix()
		instances := 0
		if r.replicasCol >= 0 {
			if c, ok := r.instancesAtTime(g, unix); ok {
				if (isNum(count) && c != count) || g.grown(c) {
					return true
				}
				count, instances = c, int(c)
			}
		}
		inbound, ok := g.hist.raw(unix, 0)
		if !ok {
			continue
		}
		for s, sig := range r.cfg.Signals {
			work, ok := g.hist.raw(unix, 1+s)
			if !ok || work <= 0 {
				continue
			}
			expected, _, ok := g.expectedWork(s, sig, math.Max(0, inbound), instances)
			if unexplained := work - expected; ok && unexplained >= share*work && unexplained >= rate {
				return true
			}
		}
	}
	return false
}

// Adopt takes from from, a rule of the same configuration evaluated up to the same step, the
// groups whose GroupString is in keys: their state as from has it replaces this rule's, history
// included. The rule also takes from's carried episodes and how it carried them (Carry,
// Restore): a taken group's carried start is judged as from judged it (a restore fires one at
// its first known step, a carry only if it breaches), and this rule's other groups must carry
// nothing, as the start-up's first pass does. Both rules' histories must hold the same steps
// (the same clock), or nothing is taken and the error says so.
func (r *Rule) Adopt(from *Rule, keys map[string]map[string]string) error {
	if !slices.Equal(r.clock.stamp, from.clock.stamp) || !slices.Equal(r.clock.store.stamp, from.clock.store.stamp) {
		return fmt.Errorf("rule %s: the histories hold different steps", r.cfg.Name)
	}
	r.carried, r.carriedBy, r.restoring = from.carried, from.carriedBy, from.restoring
	for _, fg := range from.sorted {
		if _, ok := keys[GroupString(fg.labels)]; !ok {
			continue
		}
		if old, ok := r.groups[fg.key]; ok {
			r.drop(old)
		}
		g := r.fromState(fg.saved(nil, from.held[fg]))
		copy(g.hist.data, fg.hist.data)
		copy(g.hist.learn, fg.hist.learn)
		r.groups[g.key] = g
		i, _ := slices.BinarySearchFunc(r.sorted, g.key, byKey)
		r.sorted = slices.Insert(r.sorted, i, g)
		r.setEpisode(g, g.episode)
	}
	r.generation++ // GroupInputs bound to a dropped group bind again
	return nil
}

// drop removes group g from the rule; its columns stay in the store, for the group that takes
// its key.
func (r *Rule) drop(g *group) {
	delete(r.groups, g.key)
	if i, ok := slices.BinarySearchFunc(r.sorted, g.key, byKey); ok {
		r.sorted = slices.Delete(r.sorted, i, i+1)
	}
	delete(r.open, g)
	delete(r.held, g)
	r.clock.members = slices.DeleteFunc(r.clock.members, func(h *history) bool { return h == &g.hist })
}

// ReadsDiffer returns a group of keys for which r and other read different values: in the
// raw history at some baseline step from from to to (one of them missing it included), or in
// any query's input at the step each evaluated last; false where none does. Two processes that
// read the same series agree, and a query that reads other series for a group, narrowed to it,
// shows here.
func (r *Rule) ReadsDiffer(other *Rule, keys map[string]map[string]string, from, to time.Time) (string, bool) {
	in := func(rr *Rule) map[string]*group {
		out := make(map[string]*group, len(keys))
		for _, g := range rr.sorted {
			if k := GroupString(g.labels); keys[k] != nil {
				out[k] = g
			}
		}
		return out
	}
	mine, theirs := in(r), in(other)
	for k := range keys {
		a, b := mine[k], theirs[k]
		if a == nil || b == nil {
			if a != b {
				return k, true
			}
			continue
		}
		if !sameInput(a.inputAt(r.step), b.inputAt(other.step)) {
			return k, true
		}
		for at := from.Truncate(r.baselineStep); !at.After(to); at = at.Add(r.baselineStep) {
			for c := range r.historyColumns() {
				va, okA := a.hist.raw(at.Unix(), c)
				vb, okB := b.hist.raw(at.Unix(), c)
				if okA != okB || okA && va != vb {
					return k, true
				}
			}
		}
	}
	return "", false
}

// sameInput reports whether two inputs hold the same readings and breakdowns (NaN equal to NaN).
func sameInput(a, b *GroupInput) bool {
	same := func(x, y float64) bool { return x == y || math.IsNaN(x) && math.IsNaN(y) }
	reading := func(x, y Reading) bool { return x.OK == y.OK && same(x.Value, y.Value) }
	breakdown := func(x, y Breakdown) bool { return x.OK == y.OK && maps.EqualFunc(x.Series, y.Series, same) }
	return reading(a.Inbound, b.Inbound) && reading(a.Keys, b.Keys) && reading(a.Commands, b.Commands) &&
		reading(a.Writes, b.Writes) && reading(a.CacheResets, b.CacheResets) && reading(a.ReplicaCount, b.ReplicaCount) &&
		slices.EqualFunc(a.Signals, b.Signals, reading) &&
		breakdown(a.Instances, b.Instances) && breakdown(a.Replicas, b.Replicas) && breakdown(a.Flushes, b.Flushes)
}
