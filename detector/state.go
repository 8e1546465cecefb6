package detector

import (
	"encoding/gob"
	"fmt"
	"slices"
	"time"
)

// What a rule has learned and has under way, as a process hands it to its restart through a
// local file (Rule.WriteState, Rule.ReadState): every group's history, baselines, averages,
// lifecycle, episode and transient state, so the restart evaluates its next step exactly as the
// process would have. The types mirror the unexported ones field for field, because gob only
// encodes exported fields; TestStateCoversEveryField fails when a field is added to one of
// them and not here.

type groupState struct {
	Key    string
	Labels map[string]string
	// Cols are the history's columns as the rule sees them (history.view), one sample per ring
	// slot: the layout of a file from before rules shared a store, which loads the same way.
	Cols              [][]sample16
	Learned, Phase    int64
	Fits              []proportionalFit
	FitOK             []bool
	Levels            []boundedLevel
	LevelOK           []bool
	Averages          []averageState
	Held              []averageState // a firing episode's work over resolve_for (stillOver)
	AveragePeaks      []float64
	LongestExcursions []time.Duration // nil in a file from before them
	ExcessMeans       []float64       // nil in a file from before them
	StepSums          []stepSum       // the averaged columns' baseline step under way; nil before them
	CmdPer            float64
	UsualReplicas     float64
	UsualCount        float64 // 0 in a file from before replica_count: unknown until relearned
	InstancesApart    bool
	Instances         instancesState
	Learning          bool
	Life              lifeState
	Unknown           bool
	Episode           *episodeState
	SignalSeen        []time.Time
	Flush             *flushSnapshot
	Last              explanationState
	Carried           Carried
	QuietSinceCarry   bool
}

type averageState struct {
	Work, Expected float64
	At             time.Time
}

type instancesState struct {
	Names    []string
	NamesSet bool // names was not nil (gob decodes an empty slice as nil)
	Born     time.Time
	Event    Transient
	Scale    ScaleOut
}

type lifeState struct {
	State                                             State
	PendingSince, FiringSince, ClearSince, LastBreach time.Time
	KeepFor                                           time.Duration
	ReburstSince                                      time.Time
	InstantSince                                      time.Time // zero in a file from before it
}

// explanationState keeps Explanation's unexported instantBreach; its lull, warmUp and keptFor
// are the step's own, read by the lifecycle and the words in the same step, and are not kept.
type explanationState struct {
	Explanation
	InstantBreach bool
}

type episodeState struct {
	Episode
	InstantBreach  bool
	Notified       float64
	NotifiedAt     time.Time
	NotifiedSignal string
}

type flushSnapshot struct {
	Counters                   map[string]countState
	Flushes, Collapses, Writes []countState
	Keys                       float64
	Lows                       [collapseSteps]float64
	KeysFrom, KeysTo           float64
	StormStart, LastEvent      time.Time
	StormEvents                float64
	Seen                       bool
}

type countState struct {
	At time.Time
	N  float64
}

// ruleState heads a rule's part of the file: the history clock, then one groupState per group.
type ruleState struct {
	Stamps []uint32
	Groups int
}

// WriteState encodes the rule's state to enc (see ReadState).
func (r *Rule) WriteState(enc *gob.Encoder) error {
	if err := enc.Encode(ruleState{Stamps: r.clock.stamp, Groups: len(r.sorted)}); err != nil {
		return fmt.Errorf("rule %s: %w", r.cfg.Name, err)
	}
	var cols [][]sample16 // each group's view, encoded before the next reuses it
	for _, g := range r.sorted {
		cols = g.hist.view(cols)
		if err := enc.Encode(g.saved(cols, r.held[g])); err != nil {
			return fmt.Errorf("rule %s, group %s: %w", r.cfg.Name, g.key, err)
		}
	}
	return nil
}

// ReadState replaces the rule's state with what WriteState encoded for the same configuration.
func (r *Rule) ReadState(dec *gob.Decoder) error {
	var rs ruleState
	if err := dec.Decode(&rs); err != nil {
		return fmt.Errorf("rule %s: %w", r.cfg.Name, err)
	}
	if len(rs.Stamps) != len(r.clock.stamp) {
		return fmt.Errorf("rule %s: history of %d steps, want %d (history or baseline_step changed)", r.cfg.Name, len(rs.Stamps), len(r.clock.stamp))
	}
	store := r.clock.store
	if store.rules == 1 { // its own: what it held goes, as the groups do
		store = newHistoryStore(r.historyLen, r.baselineStep)
		store.columns, store.rules = r.clock.store.columns, 1
	}
	r.clock = &historyClock{stepSec: r.clock.stepSec, stamp: rs.Stamps, store: store, cols: r.clock.cols}
	r.groups, r.sorted, r.open, r.held = make(map[string]*group, rs.Groups), make([]*group, 0, rs.Groups), map[*group]bool{}, map[*group][]average{}
	r.generation++ // the engine's GroupInputs are bound to the groups replaced
	for range rs.Groups {
		var gs groupState
		if err := dec.Decode(&gs); err != nil {
			return fmt.Errorf("rule %s: %w", r.cfg.Name, err)
		}
		if len(gs.Cols) != r.historyColumns() {
			return fmt.Errorf("rule %s, group %s: %d history columns, want %d", r.cfg.Name, gs.Key, len(gs.Cols), r.historyColumns())
		}
		for _, col := range gs.Cols {
			if len(col) != len(rs.Stamps) {
				return fmt.Errorf("rule %s, group %s: a history column of %d steps, want %d", r.cfg.Name, gs.Key, len(col), len(rs.Stamps))
			}
		}
		g := r.fromState(gs)
		r.groups[gs.Key] = g
		r.sorted = append(r.sorted, g)
		r.setEpisode(g, g.episode)
	}
	slices.SortFunc(r.sorted, keyOrder)
	return nil
}

// saved is the group's state, with cols its history's view and held its Rule.held.
func (g *group) saved(cols [][]sample16, held []average) groupState {
	gs := groupState{
		Key: g.key, Labels: g.labels, Cols: cols, Learned: int64(g.learned), Phase: int64(g.phase),
		CmdPer: g.cmdPer, UsualReplicas: g.usualReplicas, UsualCount: g.usualCount, InstancesApart: g.instancesApart,
		Instances: instancesState{Names: g.instances.names, NamesSet: g.instances.names != nil, Born: fromUnixNano(g.instances.born), Event: valueOf(g.instances.event), Scale: valueOf(g.instances.scale)},
		Learning:  g.learning,
		Life: lifeState{State: g.life.state, PendingSince: fromUnixNano(g.life.pendingSince), FiringSince: fromUnixNano(g.life.firingSince),
			ClearSince: fromUnixNano(g.life.clearSince), LastBreach: fromUnixNano(g.life.lastBreach), KeepFor: g.life.keepFor,
			ReburstSince: fromUnixNano(g.life.reburstSince), InstantSince: fromUnixNano(g.life.instantSince)},
		Unknown: g.unknown, SignalSeen: make([]time.Time, len(g.signals)),
		Last:    explanationState{Explanation: g.last, InstantBreach: g.last.instantBreach},
		Carried: g.carry(), QuietSinceCarry: g.quietSinceCarry, StepSums: g.stepSums,
	}
	// The file keeps a slice per field, as the group did: a slice absent until relearn or a
	// firing episode filled it is absent in the file too.
	n := len(g.signals)
	if g.fitted {
		gs.Fits, gs.FitOK = make([]proportionalFit, n), make([]bool, n)
		gs.Levels, gs.LevelOK = make([]boundedLevel, n), make([]bool, n)
	}
	if g.peaksLearned {
		gs.AveragePeaks = make([]float64, n)
	}
	for _, a := range held {
		gs.Held = append(gs.Held, averageState{Work: a.work, Expected: a.expected, At: a.at})
	}
	for i, sg := range g.signals {
		gs.SignalSeen[i] = sg.seen
		gs.LongestExcursions = append(gs.LongestExcursions, sg.longestExcursion)
		gs.ExcessMeans = append(gs.ExcessMeans, sg.excessMean)
		gs.Averages = append(gs.Averages, averageState{Work: sg.average.work, Expected: sg.average.expected, At: sg.average.at})
		if g.fitted {
			gs.Fits[i], gs.FitOK[i], gs.Levels[i], gs.LevelOK[i] = sg.fit, sg.fitOK, sg.level, sg.levelOK
		}
		if g.peaksLearned {
			gs.AveragePeaks[i] = sg.averagePeak
		}
	}
	if ep := g.episode; ep != nil {
		gs.Episode = &episodeState{Episode: *ep, InstantBreach: ep.Explanation.instantBreach,
			Notified: ep.notified, NotifiedAt: ep.notifiedAt, NotifiedSignal: ep.notifiedSignal}
	}
	if f := g.flush; f != nil {
		fs := &flushSnapshot{Counters: make(map[string]countState, len(f.counters)), Keys: f.keys, Lows: f.lows,
			KeysFrom: f.keysFrom, KeysTo: f.keysTo, StormStart: f.stormStart, LastEvent: f.lastEvent,
			StormEvents: f.stormEvents, Seen: f.seen}
		for _, c := range f.counters {
			fs.Counters[c.id] = countState{At: c.at, N: c.value}
		}
		fs.Flushes, fs.Collapses, fs.Writes = f.flushes.saved(), f.collapses.saved(), f.writes.saved()
		gs.Flush = fs
	}
	return gs
}

func (r *Rule) fromState(gs groupState) *group {
	g := &group{
		key: gs.Key, labels: gs.Labels, learned: int32(gs.Learned), phase: int32(gs.Phase),
		signals: make([]signalState, len(r.cfg.Signals)), fitted: gs.Fits != nil, peaksLearned: gs.AveragePeaks != nil,
		cmdPer: gs.CmdPer, usualReplicas: gs.UsualReplicas, usualCount: gs.UsualCount, instancesApart: gs.InstancesApart,
		instances: instanceTracker{names: gs.Instances.Names, born: unixNano(gs.Instances.Born), event: eventUnlessNone(gs.Instances.Event), scale: pointerUnlessZero(gs.Instances.Scale)},
		learning:  gs.Learning,
		life: lifecycle{state: gs.Life.State, pendingSince: unixNano(gs.Life.PendingSince), firingSince: unixNano(gs.Life.FiringSince),
			clearSince: unixNano(gs.Life.ClearSince), lastBreach: unixNano(gs.Life.LastBreach), keepFor: gs.Life.KeepFor,
			reburstSince: unixNano(gs.Life.ReburstSince), instantSince: unixNano(gs.Life.InstantSince)},
		unknown: gs.Unknown, last: gs.Last.Explanation, quietSinceCarry: gs.QuietSinceCarry,
	}
	if !gs.Carried.Start.IsZero() || gs.Carried.RecurrenceGap != 0 {
		c := gs.Carried
		g.carried = &c
	}
	g.last.instantBreach = gs.Last.InstantBreach
	if gs.Instances.NamesSet && g.instances.names == nil {
		g.instances.names = []string{}
	}
	g.hist.init(r.clock, gs.Key)
	g.hist.load(gs.Cols)
	if len(gs.StepSums) == r.historyColumns() {
		g.stepSums = gs.StepSums
	}
	// Held averages of another length were started afresh by stillOver, as none are.
	if len(gs.Held) > 0 && len(gs.Held) == len(g.signals) {
		held := r.heldOf(g)
		for i, a := range gs.Held {
			held[i] = average{work: a.Work, expected: a.Expected, at: a.At}
		}
	}
	for i := range g.signals {
		sg := &g.signals[i]
		if i < len(gs.Fits) && i < len(gs.FitOK) {
			sg.fit, sg.fitOK = gs.Fits[i], gs.FitOK[i]
		}
		if i < len(gs.Levels) && i < len(gs.LevelOK) {
			sg.level, sg.levelOK = gs.Levels[i], gs.LevelOK[i]
		}
		if i < len(gs.AveragePeaks) {
			sg.averagePeak = gs.AveragePeaks[i]
		}
		if i < len(gs.Averages) {
			a := gs.Averages[i]
			sg.average = average{work: a.Work, expected: a.Expected, at: a.At}
		}
		if i < len(gs.SignalSeen) {
			sg.seen = gs.SignalSeen[i]
		}
		if i < len(gs.LongestExcursions) { // a file from before them learns them at the next relearn
			sg.longestExcursion = gs.LongestExcursions[i]
		}
		if i < len(gs.ExcessMeans) { // as LongestExcursions
			sg.excessMean = gs.ExcessMeans[i]
		}
	}
	if es := gs.Episode; es != nil {
		ep := es.Episode
		ep.Explanation.instantBreach = es.InstantBreach
		ep.notified, ep.notifiedAt, ep.notifiedSignal = es.Notified, es.NotifiedAt, es.NotifiedSignal
		g.episode = &ep
	}
	if fs := gs.Flush; fs != nil {
		f := newFlushState()
		for id, c := range fs.Counters {
			f.counters = append(f.counters, counterSeen{id: id, value: c.N, at: c.At})
		}
		steps := r.windowSteps()
		f.flushes, f.collapses, f.writes = countWindowOf(fs.Flushes, steps), countWindowOf(fs.Collapses, steps), countWindowOf(fs.Writes, steps)
		f.keys, f.lows, f.keysFrom, f.keysTo = fs.Keys, fs.Lows, fs.KeysFrom, fs.KeysTo
		f.stormStart, f.lastEvent, f.stormEvents, f.seen = fs.StormStart, fs.LastEvent, fs.StormEvents, fs.Seen
		g.flush = f
	}
	return g
}

// valueOf is *p, or the zero value for nil: the state file keeps the instance tracker's event
// and scale-out as values, as it did when the tracker held them inline.
func valueOf[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}

// pointerUnlessZero is valueOf's inverse: nil for the zero value, which the tracker reads as none.
func pointerUnlessZero[T comparable](v T) *T {
	var zero T
	if v == zero {
		return nil
	}
	return &v
}

// eventUnlessNone is valueOf's inverse for the tracker's event, which holds a slice: nil for
// one that never started.
func eventUnlessNone(e Transient) *Transient {
	if e.Start.IsZero() && e.Last.IsZero() {
		return nil
	}
	return &e
}
