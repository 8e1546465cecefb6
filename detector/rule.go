// Package detector finds self-generated traffic and flush storms in series it is fed. It owns
// baselines, the detectors, the episode lifecycle and the explanations. It does no I/O: the
// engine queries, this package decides.
package detector

import (
	"hash/fnv"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/emergent-sh/emergent/config"
)

// Values maps a group key to the value of one query at one step.
type Values map[string]float64

// Input is what one evaluation step of one rule sees, for every group, as the engine queried it.
type Input struct {
	Time time.Time
	// Failed is set when a query of the rule errored or came back partial: every group is
	// unknown at this step.
	Failed bool
	// Seen holds the input of each group seen in any query: how the engine feeds a rule, the
	// same GroupInput for a group from step to step. The maps below are the other way, read
	// only when Seen is nil.
	Seen []*GroupInput
	// Groups maps each group key seen in any query to its group labels.
	Groups map[string]map[string]string

	Inbound Values
	Signals []Values // in the rule's signal order
	// Instances holds, per group, the value of the breakdown query per instance.
	Instances map[string]Values
	// Replicas holds, per group, one value per live instance (the replicas query).
	Replicas map[string]Values
	// ReplicaCount is, per group, a number in proportion to its live instances (replica_count).
	ReplicaCount Values
	// CacheResets is above zero for groups whose cache was reset (restarted, flushed) within its
	// ranges; the rule holds a reset for cache_refill.
	CacheResets Values
	// Flushes holds, per group, raw flush-command counters per series.
	Flushes  map[string]Values
	Keys     Values
	Commands Values
	Writes   Values
}

// Episode is one anomaly of one group, from the step it fired to the step it resolved.
type Episode struct {
	Kind     string
	Rule     string
	Severity string
	Labels   map[string]string // the rule's group labels
	Start    time.Time
	End      time.Time // zero while active
	Summary  string
	// Explanation holds the numbers at the latest evaluated step.
	Explanation Explanation
	// RecurrenceGap is the quiet its bursts came back after when it fired, which it stays open
	// through beyond resolve_for; 0 when it is no recurrence. Exported and read back with Start.
	RecurrenceGap time.Duration
	// Revision counts the updates sent because the episode got much worse (0: as it fired).
	Revision       int
	notified       float64   // observed work at the last firing or update event
	notifiedAt     time.Time // and its step
	notifiedSignal string    // and the signal it was
}

// Active reports whether the episode has not resolved.
func (e *Episode) Active() bool { return e.End.IsZero() }

// Carried is what an earlier process tells of an episode it had open (see Carry and Restore).
type Carried struct {
	Start         time.Time
	RecurrenceGap time.Duration
}

// Event is a change in an episode.
type Event struct {
	Resolved bool // the episode resolved
	// Updated is set when an open episode got much worse than what was last sent: its new
	// numbers are news (a firing event has neither flag).
	Updated bool
	At      time.Time // the step the event happened at
	Episode Episode
}

// GroupStatus is a group's state at the latest step, for metrics and the web UI.
type GroupStatus struct {
	Labels      map[string]string
	State       State
	Explanation Explanation
}

// Rule evaluates one configured rule over every group it sees.
type Rule struct {
	cfg          config.Rule
	kind         kind
	interval     time.Duration
	baselineStep time.Duration
	historyLen   time.Duration
	groups       map[string]*group
	sorted       []*group        // by key, so events come out in a stable order
	open         map[*group]bool // the groups with an active episode (Active reads only these)
	// held is each signal's work averaged over resolve_for while firing (stillOver), for the
	// groups that hold one (group.holding): a few groups at a time, where a field of every
	// group's signalState was 40 B per signal.
	held           map[*group][]average
	cmdCol         int           // history column of Redis commands, -1 if the rule reads none
	replicasCol    int           // history column of the instance count, -1 if none
	countCol       int           // history column of replica_count, -1 if none
	clock          *historyClock // the time grid of every group's history
	row            []float64     // scratch for historyRow
	liveDecay      decay         // average_over at the evaluation interval (averageDecay)
	fit            fitScratch
	inboundScratch []float64 // inboundBefore's and inboundPerInstance's, one after the other
	// carried are the starts of episodes an earlier process had open, by GroupString; an
	// episode whose breach was under way by carriedBy is that episode (see Carry).
	carried   map[string]Carried
	carriedBy time.Time
	// restoring says the carried episodes were open at an earlier process's last step and the
	// replay begins at carriedBy (see Restore).
	restoring bool
	// past are an earlier process's episodes by GroupString, and forgotten the same by group
	// key once the group is made: the history steps they cover do not teach (see Forget).
	past      map[string][]Span
	forgotten map[string][]Span
	// averaging: a history column of the rule is a step average (StepAveraged).
	averaging bool
	// step numbers the steps evaluated (seen): a group's input is the one of this step.
	step uint64
	// generation numbers the sets of groups (ReadState makes a new one), so a GroupInput
	// bound to a group of an earlier set binds again.
	generation uint64
	fromMaps   []GroupInput // scratch: an Input by maps read into GroupInputs
}

type group struct {
	key    string
	labels map[string]string
	// hist is held in the group rather than pointed to: a separate allocation (104 B in a
	// 112 B class) per group and rule, where the group's own size class had room for it.
	hist    history
	learned int32 // hour (of the group's phase) of the last learning; 32 bits, beside phase
	phase   int32 // seconds into each hour at which the group relearns
	// signals is what the group keeps of each work signal, in the rule's signal order: one
	// slice of a struct rather than a slice per field (eight headers of 24 B in every group of
	// every rule, and up to eight allocations, each rounded up to its size class).
	signals []signalState
	// stepSums are the averaged history columns' values so far in the baseline step under way
	// (addStep), nil until the rule averages one.
	stepSums      []stepSum
	cmdPer        float64 // usual Redis commands per inbound request; NaN if unknown
	usualReplicas float64 // the median number of live instances in the history; NaN if unknown
	// usualCount is replica_count's median in the history's steps whose replicas show one
	// series; NaN if unknown (group.instancesOf).
	usualCount float64
	instances  instanceTracker
	life       lifecycle
	episode    *Episode // the active episode
	flush      *flushState
	last       Explanation
	// carried is the episode an earlier process had open for this group (nil if none): only a
	// restart's groups have one, so the others keep a pointer, not its 32 B.
	carried *Carried
	// input is the group's input at Rule.step when inputStep is that step (inputAt): a step's,
	// not state to save.
	input     *GroupInput
	inputStep uint64

	// The flags are kept together: apart, each took a word of its own.

	// instancesApart: the work's breakdown (instances query) has named two or more instances at
	// one step, so its instance label tells instances apart whatever the replicas show (inbound
	// counted at an ingress is one series while each pod exports its own work).
	instancesApart bool
	learning       bool // a signal with data has too little history to judge
	unknown        bool
	// quietSinceCarry is set when a known step past the rule's carriedBy did not breach: the
	// carried episode ended, and nothing is carried.
	quietSinceCarry bool
	// fitted: relearn has run, so each signal's fit and level (and fitOK, levelOK) are learned
	// ones; before it, Band has nothing to draw.
	fitted bool
	// peaksLearned: relearn has set each signal's averagePeak; before it the average_over
	// gate has no peak to pass.
	peaksLearned bool
	// holding: a firing episode has averaged its steps into Rule.held (stillOver).
	holding bool
}

// signalState is what a group keeps of one work signal.
type signalState struct {
	fit   proportionalFit
	level boundedLevel // meaningful for bounded signals
	// average is the signal's work and expected work averaged over average_over; averagePeak
	// the averaged excess of work its history's recurring bursts reached (learnAveragePeaks).
	average     average
	averagePeak float64
	// excessMean is how far the history's work ran over its fit on average, per instance for a
	// per-instance signal: what the average adds to the fit (fitScratch.excessMean).
	excessMean float64
	// seen is when the signal last had a value, to tell "never existed" (zero work) from
	// "disappeared" (unknown).
	seen time.Time
	// longestExcursion is the longest its history's work stayed raised (group.raised) before
	// coming back down (learnAveragePeaks; Rule.outlasts).
	longestExcursion time.Duration
	fitOK, levelOK   bool
}

// signalGone is how long a work series may be absent before it counts as zero rather than as
// missing data: a counter that existed and vanished is a scrape problem until proven otherwise.
const signalGone = time.Hour

// NewRule prepares a rule for evaluation, with a history of its own. interval is the
// evaluation step; g gives the baseline step and history length.
func NewRule(cfg config.Rule, g config.Global) *Rule {
	return newRule(cfg, g, newHistoryStore(time.Duration(g.History), time.Duration(g.BaselineStep)))
}

// NewRules prepares the rules of a configuration, in its order. Rules that group alike share
// one history store: a query two of them learn from (inbound, Redis commands) is kept once per
// group. They must then be evaluated at the same steps with the same answers to the same
// queries, as the engine evaluates them.
func NewRules(cfgs []config.Rule, g config.Global) []*Rule {
	stores := map[string]*historyStore{}
	out := make([]*Rule, 0, len(cfgs))
	for _, cfg := range cfgs {
		by := strings.Join(cfg.GroupBy, "\xff")
		s, ok := stores[by]
		if !ok {
			s = newHistoryStore(time.Duration(g.History), time.Duration(g.BaselineStep))
			stores[by] = s
		}
		out = append(out, newRule(cfg, g, s))
	}
	return out
}

func newRule(cfg config.Rule, g config.Global, store *historyStore) *Rule {
	r := &Rule{
		cfg:          cfg,
		kind:         kinds[cfg.Kind],
		interval:     time.Duration(g.EvaluationInterval),
		baselineStep: time.Duration(g.BaselineStep),
		historyLen:   time.Duration(g.History),
		groups:       map[string]*group{},
		open:         map[*group]bool{},
		held:         map[*group][]average{},
		cmdCol:       -1,
		replicasCol:  -1,
		countCol:     -1,
	}
	if r.kind == nil { // config validates kinds: only a caller that skipped it gets here
		panic("detector: rule " + cfg.Name + " has unknown kind " + cfg.Kind)
	}
	n := 1 + len(cfg.Signals)
	if cfg.Commands != "" {
		r.cmdCol, n = n, n+1
	}
	if cfg.Replicas != "" {
		r.replicasCol, n = n, n+1
	}
	if cfg.ReplicaCount != "" && r.replicasCol >= 0 {
		r.countCol = n
	}
	cols := make([]historyColumn, 0, r.historyColumns())
	add := func(read, query string, masked bool) {
		// The masked columns are the work: StepAveraged's queries.
		cols = append(cols, historyColumn{store: store.column(read, query), masked: masked, averaged: masked})
		r.averaging = r.averaging || masked
	}
	add("sum", cfg.Inbound, false)
	for _, s := range cfg.Signals {
		add("sum", s.Query, true)
	}
	if r.cmdCol >= 0 {
		add("sum", cfg.Commands, true)
	}
	if r.replicasCol >= 0 {
		// One value per live instance, the series of one instance_label value adding up: how many
		// there are depends on the label as much as on the query.
		add("count by "+cfg.InstanceLabel, cfg.Replicas, false)
	}
	if r.countCol >= 0 {
		add("sum", cfg.ReplicaCount, false)
	}
	store.rules++
	r.clock = newHistoryClock(store, cols)
	return r
}

// Config returns the rule's configuration.
func (r *Rule) Config() config.Rule { return r.cfg }

// Memory is how far back the rule's evaluation state reaches when a replay restores an earlier
// process's (Restore): average_over, the flush window or a transient's settling, then for and
// resolve_for of the episode they feed. A cache reset holds its event cache_refill longer, and
// the replay must see the reset to hold it (a history step stamps it up to a baseline step
// late). Not recur_within: a burst back after more quiet than
// that pages as a new episode, as a recurrence would page too, where replaying two hours more
// would double a restart's work. The work
// averages reach further back (averageSettled time constants); a restored replay starts them
// from the history's steps instead (warmAverage).
func (r *Rule) Memory() time.Duration {
	transient := r.transientMemory()
	if r.cfg.CacheResets != "" {
		transient += time.Duration(r.cfg.CacheRefill)
	}
	return max(time.Duration(r.cfg.AverageOver), time.Duration(r.cfg.Window), transient) +
		time.Duration(r.cfg.For) + time.Duration(r.cfg.ResolveFor)
}

// Carry hands the rule the starts of episodes an earlier process had open, by the group's
// labels. A replay sees only its own window, so an episode older than it would fire again with
// the window's first steps as its start: a new identity, a second page. An episode that fires
// for one of these groups, breaching at every step it could judge after by (the replay's
// first steps: a rate or a window needs its samples), is the same episode and keeps the
// earlier start; the average_over gate, which starts afresh, does not count. Each start is
// used once, and the group's history from it on does not teach. Call it before AddHistory.
func (r *Rule) Carry(episodes map[string]Carried, by time.Time) {
	r.carried, r.carriedBy = episodes, by
}

// Span is a stretch of time from From up to To, both included.
type Span struct{ From, To time.Time }

// Forget hands over an earlier process's episodes by GroupString, from each start to its last
// step seen: their steps of the history, and the steps they were pending (for before each
// start), do not teach, as they did not teach that process. Without it a process started
// after another learned the other's incidents as bursts of a healthy group, where the other
// had not, and judged differently from it (fleetsim seed 47760, replica-scaling-16: token cache
// misses' averaged bursts 0.0517/s read back against 0.0378/s, and a page the process that
// never stopped did not send). Call it before AddHistory; Eval drops them.
func (r *Rule) Forget(episodes map[string][]Span) {
	r.past, r.forgotten = episodes, nil
	for _, g := range r.groups {
		r.forgetOf(g)
	}
}

// forgetOf files the earlier process's episodes of g under its key.
func (r *Rule) forgetOf(g *group) {
	spans, ok := r.past[GroupString(g.labels)]
	if !ok {
		return
	}
	if r.forgotten == nil {
		r.forgotten = map[string][]Span{}
	}
	r.forgotten[g.key] = spans
}

// forgets reports whether history step t of g lies in an earlier process's episode or the for
// before it.
func (r *Rule) forgets(g *group, t time.Time) bool {
	for _, sp := range r.forgotten[g.key] {
		if !t.Before(sp.From.Add(-time.Duration(r.cfg.For))) && !t.After(sp.To) {
			return true
		}
	}
	return false
}

// Restore is Carry for the episodes an earlier process had open at the last step it evaluated,
// with a replay that begins at from, before that step. Each that began before from was open all
// through the replay's first steps: its group fires at its first known step, with its start and
// with the quiet gap it had learned. One that began later is the replay's to find, as Carry
// finds it. Call it before AddHistory.
func (r *Rule) Restore(episodes map[string]Carried, from time.Time) {
	r.carried, r.carriedBy, r.restoring = episodes, from, true
}

func (r *Rule) group(key string, labels map[string]string) (*group, bool) {
	if g, ok := r.groups[key]; ok {
		return g, false
	}
	g := &group{
		key:           key,
		labels:        labels,
		learned:       -1,
		phase:         relearnPhase(key),
		cmdPer:        math.NaN(),
		usualReplicas: math.NaN(),
		usualCount:    math.NaN(),
		signals:       make([]signalState, len(r.cfg.Signals)),
	}
	g.hist.init(r.clock, key)
	r.kind.newGroup(g)
	if c, ok := r.carried[GroupString(labels)]; ok {
		g.carried = &c
	}
	if len(r.past) > 0 {
		r.forgetOf(g)
	}
	r.groups[key] = g
	i, _ := slices.BinarySearchFunc(r.sorted, key, byKey)
	r.sorted = slices.Insert(r.sorted, i, g)
	return g, true
}

// carry is the episode an earlier process had open for the group; zero if none.
func (g *group) carry() Carried {
	if g.carried == nil {
		return Carried{}
	}
	return *g.carried
}

// dropHeld forgets the averages a firing episode kept of the group's steps (Rule.held).
func (r *Rule) dropHeld(g *group) {
	if g.holding {
		delete(r.held, g)
		g.holding = false
	}
}

// heldOf returns the averages a firing episode keeps of the group's steps, one per signal,
// zero when new.
func (r *Rule) heldOf(g *group) []average {
	h, ok := r.held[g]
	if !ok {
		h = make([]average, len(r.cfg.Signals))
		r.held[g], g.holding = h, true
	}
	return h
}

// byKey and keyOrder order groups by key (r.sorted).
func byKey(g *group, key string) int { return strings.Compare(g.key, key) }
func keyOrder(a, b *group) int       { return byKey(a, b.key) }

// setEpisode opens (ep) or closes (nil) the group's active episode, and keeps r.open.
func (r *Rule) setEpisode(g *group, ep *Episode) {
	g.episode = ep
	if ep != nil {
		r.open[g] = true
	} else {
		delete(r.open, g)
	}
}

// Column layout of a group's history as the rule reads it: inbound, then each signal, then
// Redis commands and the instance count if the rule reads them (the history is most of what a
// group costs: no column without a query). The signals and Redis commands are masked: only
// steps that teach (historyRow's learnable) show them.
func (r *Rule) historyColumns() int {
	return 1 + len(r.cfg.Signals) + min(1, r.cmdCol+1) + min(1, r.replicasCol+1) + min(1, r.countCol+1)
}

// historyRow is what the group's input stores in its history, as queried: whether the masked
// columns teach is history.put's learnable, as another rule may learn from the same values.
func (r *Rule) historyRow(in *GroupInput) []float64 {
	if r.row == nil {
		r.row = make([]float64, r.historyColumns())
	}
	row := r.row // history.put copies it into the group's columns
	row[0] = in.Inbound.value()
	for i := range r.cfg.Signals {
		row[1+i] = math.NaN()
		if i < len(in.Signals) {
			row[1+i] = in.Signals[i].value()
		}
	}
	if r.cmdCol >= 0 {
		row[r.cmdCol] = in.Commands.value()
	}
	if r.replicasCol >= 0 {
		row[r.replicasCol] = math.NaN()
		if in.Replicas.OK {
			row[r.replicasCol] = float64(len(in.Replicas.Series))
		}
	}
	if r.countCol >= 0 {
		row[r.countCol] = in.ReplicaCount.value()
	}
	return row
}

// AddHistory stores one past step in the groups' baselines without evaluating it; the engine
// feeds the history it fetched at start-up through here, at the baseline step.
func (r *Rule) AddHistory(in Input) {
	if in.Failed {
		return
	}
	if in.Seen != nil {
		for _, gi := range in.Seen {
			r.addHistory(r.bind(gi), gi, in.Time)
		}
		return
	}
	for key, labels := range in.Groups {
		g, _ := r.group(key, labels)
		gi := fromMaps(in, key, labels)
		r.addHistory(g, &gi, in.Time)
	}
}

// AddResets holds the cache resets in reads at in.Time, as AddHistory does, without a history
// row: the engine reads them over the gap between the history's last step and the replay's
// first, which neither reads (the history ends a baseline step before the replay, whose ranges
// reach back minutes), while a reset in it would still hold the replay's first hour.
func (r *Rule) AddResets(in Input) {
	if in.Failed {
		return
	}
	at := func(g *group, gi *GroupInput) {
		if gi.CacheResets.value() > 0 {
			g.instances.observe(in.Time, nil, true, time.Duration(r.cfg.Settle), time.Duration(r.cfg.CacheRefill))
		}
	}
	if in.Seen != nil {
		for _, gi := range in.Seen {
			at(r.bind(gi), gi)
		}
		return
	}
	for key, labels := range in.Groups {
		g, _ := r.group(key, labels)
		gi := fromMaps(in, key, labels)
		at(g, &gi)
	}
}

func (r *Rule) addHistory(g *group, in *GroupInput, t time.Time) {
	// An episode's steps do not teach, in the history as live, nor do the steps it was
	// pending: without this, the start of an episode older than the replay would be learned
	// as the group's normal.
	carried := g.carry()
	learnable := carried.Start.IsZero() || t.Before(carried.Start.Add(-time.Duration(r.cfg.For)))
	learnable = learnable && (len(r.forgotten) == 0 || !r.forgets(g, t))
	// Nor do the steps a cache reset holds, as they do not live: a process that read them back
	// learned a flush's refill as the level (fleetsim seed 58367, token-thrash-10: mints of
	// 0.008/s after a FLUSHDB taught 0.0003/s per instance where the process that never stopped
	// had 0, and a restart paged the thrash 8.5 minutes after it did).
	g.instances.observe(t, nil, in.CacheResets.value() > 0, time.Duration(r.cfg.Settle), time.Duration(r.cfg.CacheRefill))
	learnable = learnable && !g.instances.settling(t, r.settleAfter(g.instances.event))
	g.hist.put(t.Unix(), r.historyRow(in), learnable)
	if g.instances.born == 0 {
		g.instances.born = unixNano(t) // a group with history is not being born
	}
	for s := range r.cfg.Signals {
		if s < len(in.Signals) && in.Signals[s].OK {
			g.signals[s].seen = t
		}
	}
}

// Eval evaluates one step and returns the episodes that fired or resolved at it, in group order.
func (r *Rule) Eval(in Input) []Event {
	t := in.Time
	var events []Event
	r.past, r.forgotten = nil, nil // the history is in: what it must not teach is marked
	r.seen(in)
	for _, g := range r.sorted {
		if in.Failed {
			g.unknown = true
			continue
		}
		g.relearn(r, t)
		// A restored episode is firing from its group's first known step: judged as firing.
		carried := g.carry()
		restored := r.restoring && g.life.state != StateFiring && !carried.Start.IsZero() && carried.Start.Before(r.carriedBy)
		before := g.life
		if restored {
			g.life.restore(t, carried.RecurrenceGap)
		}
		gi := g.inputAt(r.step)
		breach, known, hold, ex := r.kind.eval(r, g, gi, t)
		g.unknown = !known
		if restored && !known {
			g.life, restored = before, false
		}
		if known && !breach && !ex.instantBreach && g.life.state != StateFiring && t.After(r.carriedBy) {
			g.quietSinceCarry = true
		}
		aligned := t.Unix()%int64(r.baselineStep/time.Second) == 0
		if r.averaging {
			g.addStep(r, gi)
		}
		if aligned {
			// Only settled, quiet steps teach: not an episode, not a transient still settling, not
			// instances grown past their usual number, whose work is under observation. A lull's
			// quiet steps do: the work between stampedes is the service's own (a process started
			// later masks them with the episode, Forget; a few steps of history).
			learnable := known && (g.life.state == StateInactive || ex.lull && !ex.instantBreach) && !breach && !hold && !ex.replicasGrew()
			g.hist.put(t.Unix(), g.stepRow(r, gi), learnable)
		}
		if !known {
			continue
		}
		// A burst that comes back within recur_within of the last is the same anomaly.
		tr := g.life.step(t, breach, breach || ex.instantBreach, hold, ex.lull, time.Duration(r.cfg.For), time.Duration(r.cfg.ResolveFor), time.Duration(r.cfg.RecurWithin))
		if restored && g.life.state == StateFiring {
			tr = fired // the restored episode, announced as a replay that saw it begin would
		}
		if tr != noChange || g.life.state != StateInactive {
			ex = r.explained(ex, g.labels, breach) // words only where someone will read them
		}
		g.last = ex
		switch tr {
		case fired:
			start := t
			if s := carried.Start; !s.IsZero() && s.Before(t) && (!g.quietSinceCarry || restored) {
				start = s
			}
			g.carried = nil // used once
			r.setEpisode(g, &Episode{
				Kind: r.cfg.Kind, Rule: r.cfg.Name, Severity: r.cfg.Severity,
				Labels: g.labels, Start: start, RecurrenceGap: g.life.keepFor, Summary: ex.Summary, Explanation: ex, notified: ex.Observed, notifiedAt: t, notifiedSignal: ex.Signal,
			})
			events = append(events, Event{At: t, Episode: *g.episode})
		case resolved:
			r.kind.resolved(g)
			if g.episode != nil {
				g.episode.End, g.episode.Summary, g.episode.Explanation = t, ex.Summary, ex
				events = append(events, Event{Resolved: true, At: t, Episode: *g.episode})
				r.setEpisode(g, nil)
			}
		default:
			if ep := g.episode; ep != nil {
				ep.Summary, ep.Explanation = ex.Summary, ex
				// News is the same work grown, while it breaches: another signal's numbers are no
				// comparison, and a dip is no update. Nor is a burst in a recurring episode's kept
				// quiet that has not lasted for: it is not the anomaly back (lifecycle.step).
				sameWork := ex.Signal == ep.notifiedSignal
				if breach && g.life.reburstSince == 0 && sameWork && worsened(ep.notified, ex.Observed) && t.Sub(ep.notifiedAt) >= time.Duration(r.cfg.ResolveFor) {
					ep.notified, ep.notifiedAt, ep.notifiedSignal = ex.Observed, t, ex.Signal
					ep.Revision++
					events = append(events, Event{Updated: true, At: t, Episode: *ep})
				}
			}
		}
	}
	return events
}

// explained returns ex with the kind's words. ex is passed by value so that Eval's own copy
// does not escape to the heap through the interface call: a quiet group's step allocates
// nothing for its explanation (it was one allocation of about 500 B per group per step).
func (r *Rule) explained(ex Explanation, labels map[string]string, over bool) Explanation {
	r.kind.explain(r, &ex, labels, over)
	return ex
}

// relearn refits a group's baselines once per hour of data time, at the group's phase in the
// hour, so every replica that sees the same data learns the same numbers at the same step, and
// a fleet's groups relearn spread over the hour, not all in one evaluation.
func (g *group) relearn(r *Rule, t time.Time) {
	hour := int32((t.Unix() - int64(g.phase)) / 3600)
	// A learning group relearns at every baseline step until it has learned: a service born
	// now pages after its first hour, not after the hour boundary that follows it.
	newPoint := g.learning && t.Unix()%int64(r.baselineStep/time.Second) == 0
	if hour == g.learned && !newPoint {
		return
	}
	g.learned = hour
	n := len(r.cfg.Signals)
	g.fitted = true
	sc := &r.fit
	g.usualReplicas, g.usualCount = math.NaN(), math.NaN()
	if r.countCol >= 0 {
		counts := sc.in[:0]
		g.hist.each(func(i int) {
			if n, c := g.hist.at(i, r.replicasCol), g.hist.at(i, r.countCol); n <= 1 && isNum(c) && c > 0 {
				counts = append(counts, c)
			}
		})
		sc.in = counts
		if len(counts) >= minLearnPoints {
			g.usualCount = median(counts)
		}
	}
	if r.replicasCol >= 0 {
		reps := sc.in[:0]
		g.hist.each(func(i int) {
			if c := r.instancesAt(g, i); isNum(c) && c > 0 {
				reps = append(reps, c)
			}
		})
		sc.in = reps
		if len(reps) >= minLearnPoints {
			g.usualReplicas = median(reps)
		}
	}
	sc.levelMedians = slices.Grow(sc.levelMedians[:0], n)[:n]
	for s := range n {
		sc.levelMedians[s] = math.NaN()
		if r.cfg.Signals[s].Relation == config.RelationBounded {
			g.signals[s].level, sc.levelMedians[s], g.signals[s].levelOK = r.learnBounded(g, s)
			continue
		}
		in, work, blocks := sc.in[:0], sc.work[:0], sc.blocks[:0]
		perInstance := r.cfg.Signals[s].PerInstance
		last := t.Unix() / excessBlockSec
		g.hist.each(func(i int) {
			x, w := g.hist.at(i, 0), g.hist.at(i, 1+s)
			if !isNum(x) || !isNum(w) || r.grownAt(g, i) {
				return
			}
			if reps := r.replicasAt(g, i); perInstance {
				x, w = x/reps, w/reps // work/n = ratio·inbound/n + floor per instance
			}
			in, work = append(in, x), append(work, w)
			blocks = append(blocks, int32(last-g.hist.unixAt(i)/excessBlockSec))
		})
		sc.in, sc.work, sc.blocks = in, work, blocks
		fit, ok := sc.fit(in, work, r.historyQuantum(s))
		g.signals[s].fit, g.signals[s].fitOK, g.signals[s].excessMean = fit, ok, 0
		if ok {
			g.signals[s].excessMean = sc.excessMean(fit, in, work, blocks, r.historyLen, r.baselineStep)
		}
	}
	g.peaksLearned = true
	r.learnAveragePeaks(g, t)
	g.cmdPer = math.NaN()
	if r.cmdCol < 0 {
		return
	}
	per := sc.in[:0]
	g.hist.each(func(i int) {
		x, c := g.hist.at(i, 0), g.hist.at(i, r.cmdCol)
		if isNum(x) && isNum(c) && x > 0 && !r.grownAt(g, i) {
			per = append(per, c/x)
		}
	})
	sc.in = per
	if len(per) >= minFitPoints {
		g.cmdPer = median(per)
	}
}

// learnBounded learns signal s's healthy level per instance from the group's history; without
// a replicas query every step counts as one instance. med is the median per instance the level
// is bounded by.
func (r *Rule) learnBounded(g *group, s int) (lvl boundedLevel, med float64, ok bool) {
	sc := &r.fit
	per := sc.work[:0]
	g.hist.each(func(i int) {
		if w := g.hist.at(i, 1+s); isNum(w) && !r.grownAt(g, i) {
			per = append(per, w/r.replicasAt(g, i))
		}
	})
	sc.work = per
	return sc.learnLevel(per, r.historyQuantum(s))
}

// excessMean is how far work ran over fit on average in the history gathered for it (in and
// work, per instance for a per-instance signal; blocks numbers each point's excessBlock back
// from now): the median over blocks of the mean excess of their points, 0 for none. The fit's
// medians leave out the bursts of a healthy fleet (per-process caches refilled together by a
// deploy refresh together once per token lifetime), so the work averaged over average_over
// ran over it at every burst while its mean ran over it all along (fleetsim seed 29605,
// flush-on-write-29: 126 caches, 88 misses in eight minutes every 1 h 40 m against a fit of
// 0.012/s, ten false episodes). Blocks, not all of history, so an earlier incident moves only
// the blocks it covers; a block under half full (the history's ends) does not count.
func (sc *fitScratch) excessMean(fit proportionalFit, in, work []float64, blocks []int32, history, step time.Duration) float64 {
	n := int(history/excessBlock) + 2 // the blocks the history's steps fall in
	sc.blockSum = slices.Grow(sc.blockSum[:0], n)[:n]
	sc.blockSteps = slices.Grow(sc.blockSteps[:0], n)[:n]
	clear(sc.blockSum)
	clear(sc.blockSteps)
	for i, b := range blocks {
		if b >= 0 && int(b) < n {
			sc.blockSum[b] += work[i] - math.Max(fit.Ratio*in[i]+fit.Floor, fit.AllRatio*in[i])
			sc.blockSteps[b]++
		}
	}
	means := sc.sorted[:0]
	full := int(excessBlock / step)
	for b, steps := range sc.blockSteps {
		if 2*steps >= full {
			means = append(means, sc.blockSum[b]/float64(steps))
		}
	}
	sc.sorted = means
	if len(means) == 0 {
		return 0
	}
	return math.Max(0, median(means))
}

// excessBlock is the length of excessMean's blocks: two refresh cycles of the longest-lived
// tokens, so a block holds a fleet's refresh burst whatever its phase.
const (
	excessBlock    = 2 * longestTokenLifetime
	excessBlockSec = int64(excessBlock / time.Second)
)

// learnAveragePeaks sets each signal's averagePeak: the averaged excess of work over
// expected (the average_over gate's own measure, replayed over the history's steps as
// warmAverage replays it) that the signal's history reached in bursts that came back: the
// highest of its separate bursts that burstRecurrences bursts at least half as high came with,
// times burstMargin. The gate must pass it too. Bursts that recur less often than average_over
// do not average out within it: forty-four per-process caches refilled together by a deploy
// refresh together once per token lifetime of 1 h 39 m, and each refresh, a lifetime's misses
// in a few minutes, paged (fleetsim tuning seed 15827, healthy-12: six false episodes).
//
// Only a burst that came back down (to half its height) counts. One cut short by steps that do
// not teach (an episode's) is an incident's opening, held back by this gate: learned, each
// return of an incident raised the level the next had to pass. One under way at now may be one
// too.
//
// History holds one sample per baseline step: a burst shorter than the step, when a sample
// catches it, reads as long as the step (a five-minute burst at the shipped 15 m: about three
// times its weight), so sustained work whose averaged excess stays under that waits until the
// bursts leave the history.
//
// The same pass learns each signal's longestExcursion: the longest run of steps with work
// raised (group.raised) that came back down, cut by grown instances or a missing step, read as
// queried (Rule.rawStep) so a process restored from Prometheus learns the same (Rule.outlasts).
//
// Every signal is replayed in one pass over the history: a step's slot, inbound and instance
// count are read once for all of them (per signal, they were half of a relearn).
func (r *Rule) learnAveragePeaks(g *group, now time.Time) {
	tau := time.Duration(r.cfg.AverageOver) // without one, no bursts: the average is each step's
	if tau <= 0 && r.replicasCol < 0 {      // and without instances, no excursions (Rule.outlasts)
		for s := range g.signals {
			g.signals[s].averagePeak = 0
		}
		return
	}
	sc := &r.fit
	if len(sc.bursts) < len(r.cfg.Signals) {
		sc.bursts = make([]burstSearch, len(r.cfg.Signals))
	}
	d := newDecay(tau, r.baselineStep)
	bursts := sc.bursts[:len(r.cfg.Signals)]
	for s := range bursts {
		bursts[s] = burstSearch{peaks: bursts[s].peaks[:0]}
	}
	h := &g.hist
	for at := now.Add(-r.historyLen).Truncate(r.baselineStep); !at.After(now); at = at.Add(r.baselineStep) {
		i, stored := h.slotAt(at.Unix())
		inbound, instances, counted := math.NaN(), 0, false
		if stored {
			inbound = h.at(i, 0)
			if r.replicasCol >= 0 {
				if v := r.instancesAt(g, i); isNum(v) {
					instances, counted = int(v), true
				}
			}
		}
		for s, sig := range r.cfg.Signals {
			b := &bursts[s]
			work, expected, grown, ok := math.NaN(), 0.0, false, false
			if stored {
				work = h.at(i, 1+s)
			}
			if isNum(work) && isNum(inbound) {
				work, expected, grown, ok = g.averagedStep(s, sig, work, inbound, instances)
			}
			// Runs are read as queried (rawStep); a step this rule learns from reads the same, and
			// the work and expectation just read answer it at a sixth of rawStep's cost.
			rawGrown, raised, rawOK := grown, false, ok && counted
			switch {
			case rawOK && !grown:
				raised = g.raised(s, sig, work, expected, instances, r.cfg.MinUnexplainedRate, 1)
			case !ok:
				rawGrown, raised, rawOK = r.rawStep(g, s, sig, at, 1)
			}
			switch {
			case !rawOK || rawGrown:
				b.runFrom = time.Time{} // cut short: not an excursion that came back down
			case raised && b.runFrom.IsZero():
				b.runFrom = at
			case !raised && !b.runFrom.IsZero():
				b.longestRun, b.runFrom = max(b.longestRun, at.Sub(b.runFrom)), time.Time{}
			}
			if !ok || grown {
				b.avg, b.burst = average{}, 0 // cut short: not a burst that came back down
				continue
			}
			avgWork, avgExpected := b.avg.add(at, work, expected, d)
			// A burst is over once its excess has decayed to half its height (an average never
			// quite returns to zero on its own): under an hour at the shipped average_over.
			switch excess := avgWork - avgExpected; {
			case excess > b.burst:
				b.burst = excess
			case b.burst > 0 && excess <= b.burst/2:
				b.peaks, b.burst = append(b.peaks, b.burst), 0
			}
		}
	}
	// A bounded signal's bursts are bounded as its level is (levelSpan): every cache refreshing
	// at once, a healthy fleet's burst, adds a mint per cache, caches/average_over averaged,
	// where the level is up to caches per token lifetime: twice it at most at the shipped hour
	// for tokens living two hours.
	instances := 1.0
	if isNum(g.usualReplicas) {
		instances = max(1, g.usualReplicas)
	}
	for s := range bursts {
		g.signals[s].averagePeak = recurringPeak(bursts[s].peaks)
		if med := sc.levelMedians[s]; med > 0 {
			g.signals[s].averagePeak = min(g.signals[s].averagePeak, levelSpan*med*instances)
		}
		g.signals[s].longestExcursion = bursts[s].longestRun
	}
}

// burstSearch is one signal's replay in learnAveragePeaks: its average, the largest excess of
// the burst under way (0 between bursts), and the heights of the bursts that came back down.
type burstSearch struct {
	avg   average
	burst float64
	peaks []float64
	// runFrom is the first step of the excursion (group.raised) under way, zero if none;
	// longestRun the longest that came back down.
	runFrom    time.Time
	longestRun time.Duration
}

// recurringPeak is the highest burst whose like (at least half as high) came burstRecurrences
// times, times burstMargin; 0 if none. peaks is sorted.
func recurringPeak(peaks []float64) float64 {
	slices.Sort(peaks)
	for i := len(peaks) - 1; i >= burstRecurrences-1; i-- {
		if peaks[i-burstRecurrences+1] >= peaks[i]/2 {
			return burstMargin * peaks[i]
		}
	}
	return 0
}

// burstMargin is how far past the highest recurring burst of history averaged work must go:
// bursts of one habit differ in height (the load they come at, where a step's sample falls),
// and the next may top the highest of a day by a little without being news.
const burstMargin = 1.25

// burstRecurrences is how many separate bursts of history must reach a level for it to be a
// healthy group's own: one or two are as likely an earlier incident (or its recurrence) as a
// habit, a refresh cycle shorter than the day shows many times a day.
const burstRecurrences = 3

// grownAt reports whether the group's instances at history slot i had grown past replicaGrowth
// times their usual number: such steps do not teach, as they do not when evaluated live, and a
// history read from Prometheus at start-up holds them.
func (r *Rule) grownAt(g *group, i int) bool {
	if r.replicasCol < 0 {
		return false
	}
	return g.grown(r.instancesAt(g, i))
}

// grown reports whether instances is past replicaGrowth times the group's usual number.
func (g *group) grown(instances float64) bool {
	return isNum(g.usualReplicas) && g.usualReplicas > 0 && isNum(instances) && instances >= replicaGrowth*g.usualReplicas
}

// replicasAt is the number of live instances at history slot i; without instance data the
// group counts as one, as evaluation counts it.
func (r *Rule) replicasAt(g *group, i int) float64 {
	if r.replicasCol >= 0 {
		if c := r.instancesAt(g, i); isNum(c) && c > 0 {
			return c
		}
	}
	return 1
}

// instancesAt is the number of live instances history slot i holds: the replicas' count of
// names, or where that is one, instancesOf replica_count's value; NaN where unknown.
func (r *Rule) instancesAt(g *group, i int) float64 {
	names := g.hist.at(i, r.replicasCol)
	if r.countCol < 0 {
		return names
	}
	return g.instancesOf(names, g.hist.at(i, r.countCol))
}

// instancesAtTime is instancesAt at unix time t; false where the history holds no count then.
func (r *Rule) instancesAtTime(g *group, unix int64) (float64, bool) {
	i, held := g.hist.slotAt(unix)
	if !held {
		return math.NaN(), false
	}
	v := r.instancesAt(g, i)
	return v, isNum(v)
}

// instancesOf is the number of live instances from the replicas' count of names and
// replica_count's value: names, unless they are one series and replica_count's usual value is
// known, where the instances are counted in multiples of that usual value, rounded. An aggregating endpoint in
// front of many pods is one series whatever their number, while the probes each pod answers
// (or a replica count) still grow with them; their multiple is all the count can say.
func (g *group) instancesOf(names, count float64) float64 {
	if !isNum(names) || names > 1 || !isNum(count) || count <= 0 || !(g.usualCount > 0) {
		return names
	}
	return max(1, math.Round(count/g.usualCount))
}

// relearnPhase is where in each hour a group relearns: fixed by its key, the same in every
// replica.
func relearnPhase(key string) int32 {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int32(h.Sum32() % 3600)
}

// Status returns every group's state at the latest step, in group order.
func (r *Rule) Status() []GroupStatus {
	out := make([]GroupStatus, 0, len(r.sorted))
	for _, g := range r.sorted {
		st := g.state()
		out = append(out, GroupStatus{Labels: g.labels, State: st, Explanation: g.last})
	}
	return out
}

// AllUnknown reports whether the rule has groups and none of them could be evaluated at the
// latest step: the rule cannot see its data.
func (r *Rule) AllUnknown() bool {
	for _, g := range r.sorted {
		if !g.unknown {
			return false
		}
	}
	return len(r.groups) > 0
}

// StateCounts counts groups by state at the latest step, without building a status list.
func (r *Rule) StateCounts() map[State]int {
	counts := map[State]int{}
	for _, g := range r.sorted {
		counts[g.state()]++
	}
	return counts
}

// ActiveCount is len(Active()), without copying the episodes.
func (r *Rule) ActiveCount() int { return len(r.open) }

// Active returns the active episodes, in group order.
func (r *Rule) Active() []Episode {
	if len(r.open) == 0 {
		return nil
	}
	open := make([]*group, 0, len(r.open))
	for g := range r.open {
		open = append(open, g)
	}
	slices.SortFunc(open, keyOrder)
	out := make([]Episode, 0, len(open))
	for _, g := range open {
		out = append(out, *g.episode)
	}
	return out
}

// state is the group's state at the latest step: unknown and learning override an inactive
// lifecycle (a learning group with an open episode still shows it).
func (g *group) state() State {
	switch {
	case g.unknown:
		return StateUnknown
	case g.learning && g.life.state == StateInactive:
		return StateLearning
	}
	return g.life.state
}

// worsenFactor is how much an open episode's observed work must grow beyond what was last
// notified to be news: a 100x worsening must not hide behind an old page, while the ordinary
// wobble of a firing signal is not worth a message. Updates are also resolve_for apart at
// least, no closer than a resolve could follow a firing: a storm's count grows for a while.
const worsenFactor = 3

func worsened(notified, now float64) bool {
	return isNum(now) && isNum(notified) && notified > 0 && now >= worsenFactor*notified
}
