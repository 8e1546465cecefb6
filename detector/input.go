package detector

import "math"

// GroupInput is one group's inputs at one step. The engine keeps one per group it has seen and
// refills it at every step (Input.Seen), so a group's values are read where they are: looked
// up by the group's key in a map per query, they cost about 26 string lookups and inserts per
// group and step, and the walk of every group's key, a fifth of a cycle at 100 000 groups.
type GroupInput struct {
	Key    string
	Labels map[string]string
	// Each query's value for the group at the step.
	Inbound, Keys, Commands, Writes, CacheResets, ReplicaCount Reading
	Signals                                                    []Reading // in the rule's signal order
	// Breakdowns: per instance (Instances, Replicas) or per flush-counter series (Flushes).
	Instances, Replicas, Flushes Breakdown

	// The rule's group these inputs are for, found once by Key: bound while boundTo is the
	// rule and boundAt its groups' generation (ReadState replaces them).
	group   *group
	boundTo *Rule
	boundAt uint64
}

// Reading is one query's value for a group at a step.
type Reading struct {
	Value float64
	OK    bool // the query had a series of the group at the step (Value may still be NaN)
}

// value is the reading, NaN without one (as a missing map key read).
func (rd Reading) value() float64 {
	if !rd.OK {
		return math.NaN()
	}
	return rd.Value
}

// Breakdown is a breakdown query's series of one group at a step, by sub-key.
type Breakdown struct {
	Series Values
	OK     bool // the query had series of the group at the step
}

// noInput is the input of a group that no query saw at a step.
var noInput GroupInput

// bind returns the rule's group for gi, made if new; bound once, it is not looked up again.
func (r *Rule) bind(gi *GroupInput) *group {
	if gi.group == nil || gi.boundTo != r || gi.boundAt != r.generation {
		gi.group, _ = r.group(gi.Key, gi.Labels)
		gi.boundTo, gi.boundAt = r, r.generation
	}
	return gi.group
}

// seen makes the groups of in that the rule does not know yet, and says where each group's
// input is at this step (group.input, group.inputStep). An input by maps (Seen nil: tests
// build them) is read into GroupInputs first, for every group the rule knows, as each group's
// key was looked up in the maps.
func (r *Rule) seen(in Input) {
	r.step++
	if in.Seen != nil {
		for _, gi := range in.Seen {
			g := r.bind(gi)
			g.input, g.inputStep = gi, r.step
		}
		return
	}
	for key, labels := range in.Groups {
		r.group(key, labels)
	}
	if cap(r.fromMaps) < len(r.sorted) {
		r.fromMaps = make([]GroupInput, len(r.sorted))
	}
	r.fromMaps = r.fromMaps[:len(r.sorted)]
	for i, g := range r.sorted {
		r.fromMaps[i] = fromMaps(in, g.key, g.labels)
		g.input, g.inputStep = &r.fromMaps[i], r.step
	}
}

// inputAt is the group's input at the rule's current step (seen), noInput if none saw it.
func (g *group) inputAt(step uint64) *GroupInput {
	if g.inputStep != step {
		return &noInput
	}
	return g.input
}

// fromMaps is the group key's input in an Input by maps.
func fromMaps(in Input, key string, labels map[string]string) GroupInput {
	read := func(vs Values) Reading {
		v, ok := vs[key]
		return Reading{Value: v, OK: ok}
	}
	breakdown := func(bs map[string]Values) Breakdown {
		vs, ok := bs[key]
		return Breakdown{Series: vs, OK: ok}
	}
	gi := GroupInput{
		Key: key, Labels: labels,
		Inbound: read(in.Inbound), Keys: read(in.Keys), Commands: read(in.Commands), Writes: read(in.Writes),
		CacheResets: read(in.CacheResets), ReplicaCount: read(in.ReplicaCount),
		Instances: breakdown(in.Instances), Replicas: breakdown(in.Replicas), Flushes: breakdown(in.Flushes),
	}
	if len(in.Signals) > 0 {
		gi.Signals = make([]Reading, len(in.Signals))
		for i, vs := range in.Signals {
			gi.Signals[i] = read(vs)
		}
	}
	return gi
}
