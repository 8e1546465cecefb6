package bench

import (
	"math"
	"sort"
	"time"

	"github.com/emergent-sh/emergent/config"
)

// MatchTolerance widens an incident on both sides when matching episodes: rate windows (2–10
// minutes) make a detector see an incident's edges late, so an episode that begins a few
// minutes after a short incident ended is still that incident's.
const MatchTolerance = 5 * time.Minute

// Kinds are the incident kinds, in table order.
var Kinds = []string{config.KindSelfGenerated, config.KindFlushStorm}

// KindScore counts one detector's results for one kind.
type KindScore struct {
	Incidents int // incidents of the kind
	Detected  int // incidents matched by at least one episode
	Episodes  int // episodes of the kind
	TruePos   int // episodes that match an incident
	// Duplicates are matching episodes beyond the first for the same incident (pages again).
	Duplicates int
	Delays     []time.Duration // per detected incident: first matching episode start − incident start
	// DefinedDelays are the same from when the incident met its definition (Incident.Defined).
	DefinedDelays []time.Duration
}

// FalsePos is the number of episodes that match no incident.
func (k KindScore) FalsePos() int { return k.Episodes - k.TruePos }

// Precision is matching episodes over all episodes (1 when there are none).
func (k KindScore) Precision() float64 {
	if k.Episodes == 0 {
		return 1
	}
	return float64(k.TruePos) / float64(k.Episodes)
}

// Recall is detected incidents over incidents (1 when there are none).
func (k KindScore) Recall() float64 {
	if k.Incidents == 0 {
		return 1
	}
	return float64(k.Detected) / float64(k.Incidents)
}

// F1 is the harmonic mean of precision and recall.
func (k KindScore) F1() float64 {
	p, r := k.Precision(), k.Recall()
	if p+r == 0 {
		return 0
	}
	return 2 * p * r / (p + r)
}

// DelayQuantile returns the q-quantile of detection delays (nearest rank), MaxInt64 if none.
func (k KindScore) DelayQuantile(q float64) time.Duration { return quantile(k.Delays, q) }

// DefinedDelayQuantile is DelayQuantile measured from the incidents' definition times.
func (k KindScore) DefinedDelayQuantile(q float64) time.Duration { return quantile(k.DefinedDelays, q) }

func quantile(delays []time.Duration, q float64) time.Duration {
	if len(delays) == 0 {
		return time.Duration(math.MaxInt64)
	}
	ds := append([]time.Duration(nil), delays...)
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	i := int(math.Ceil(q*float64(len(ds)))) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

func (k *KindScore) add(o KindScore) {
	k.Incidents += o.Incidents
	k.Detected += o.Detected
	k.Episodes += o.Episodes
	k.TruePos += o.TruePos
	k.Duplicates += o.Duplicates
	k.Delays = append(k.Delays, o.Delays...)
	k.DefinedDelays = append(k.DefinedDelays, o.DefinedDelays...)
}

// ControlScore counts alert episodes on the services of one control type.
type ControlScore struct {
	Services    int
	ServiceDays float64
	Events      int // control events (surges, deploys, NAB windows...)
	// Episodes are all episodes on these services (they have no incidents: every one is false).
	Episodes int
	// DuringEvents are the episodes that overlap one of the events.
	DuringEvents int
}

// PerServiceDay is false episodes per service-day.
func (c ControlScore) PerServiceDay() float64 {
	if c.ServiceDays == 0 {
		return 0
	}
	return float64(c.Episodes) / c.ServiceDays
}

func (c *ControlScore) add(o ControlScore) {
	c.Services += o.Services
	c.ServiceDays += o.ServiceDays
	c.Events += o.Events
	c.Episodes += o.Episodes
	c.DuringEvents += o.DuringEvents
}

// Score is one detector's results on one or more datasets.
type Score struct {
	Detector string
	Kinds    map[string]*KindScore
	Controls map[string]*ControlScore
	// Scenarios breaks recall and delay down by scenario.
	Scenarios map[string]*KindScore
	// Missed, False and Repeated list what went wrong, for the report's evidence: Repeated
	// holds the episodes after the first of an incident (pages again).
	Missed   []Incident
	False    []Episode
	Repeated []Episode
	// Slow lists the detected incidents whose first page came after SlowDelay.
	Slow []SlowDetection
}

// SlowDelay is the delay target for the shipped rules, for + 2 evaluation intervals
// (5m + 2 × 30s): detections slower than it are listed as evidence.
const SlowDelay = 6 * time.Minute

// SlowDetection is an incident detected after SlowDelay, and how long after its start.
type SlowDetection struct {
	Incident Incident
	Delay    time.Duration
}

// Overall pools both kinds.
func (s *Score) Overall() KindScore {
	var o KindScore
	for _, k := range Kinds {
		if ks, ok := s.Kinds[k]; ok {
			o.add(*ks)
		}
	}
	return o
}

func newScore(detector string) *Score {
	s := &Score{Detector: detector, Kinds: map[string]*KindScore{}, Controls: map[string]*ControlScore{}, Scenarios: map[string]*KindScore{}}
	for _, k := range Kinds {
		s.Kinds[k] = &KindScore{}
	}
	return s
}

// Add pools another score (another seed) into s.
func (s *Score) Add(o *Score) {
	for k, ks := range o.Kinds {
		if s.Kinds[k] == nil {
			s.Kinds[k] = &KindScore{}
		}
		s.Kinds[k].add(*ks)
	}
	for k, cs := range o.Controls {
		if s.Controls[k] == nil {
			s.Controls[k] = &ControlScore{}
		}
		s.Controls[k].add(*cs)
	}
	for k, ks := range o.Scenarios {
		if s.Scenarios[k] == nil {
			s.Scenarios[k] = &KindScore{}
		}
		s.Scenarios[k].add(*ks)
	}
	s.Missed = append(s.Missed, o.Missed...)
	s.False = append(s.False, o.False...)
	s.Repeated = append(s.Repeated, o.Repeated...)
	s.Slow = append(s.Slow, o.Slow...)
}

func overlaps(aFrom, aTo, bFrom, bTo time.Time) bool {
	return !aFrom.After(bTo) && !bFrom.After(aTo)
}

// matches reports whether an episode is the incident's: same kind and service, overlapping
// the incident widened by MatchTolerance.
func matches(ep Episode, in Incident, open time.Time) bool {
	return ep.Kind == in.Kind && ep.Service == in.Service &&
		overlaps(ep.Start, ep.endOr(open), in.Start.Add(-MatchTolerance), in.End.Add(MatchTolerance))
}

// scoreKind scores the episodes of one kind against the incidents of that kind.
func scoreKind(ds *Dataset, eps []Episode, kind string) KindScore {
	var ks KindScore
	var ins []Incident
	for _, in := range scoredIncidents(ds) {
		if in.Kind == kind {
			ins = append(ins, in)
		}
	}
	ks.Incidents = len(ins)
	first := make([]time.Time, len(ins))
	hits := make([]int, len(ins))
	for _, ep := range eps {
		if ep.Kind != kind {
			continue
		}
		ks.Episodes++
		matched := false
		for i, in := range ins {
			if matches(ep, in, ds.End) {
				matched = true
				hits[i]++
				if first[i].IsZero() || ep.Start.Before(first[i]) {
					first[i] = ep.Start
				}
			}
		}
		if matched {
			ks.TruePos++
		}
	}
	for i, in := range ins {
		if hits[i] > 0 {
			ks.Detected++
			ks.Duplicates += hits[i] - 1
			ks.Delays = append(ks.Delays, first[i].Sub(in.Start))
			ks.DefinedDelays = append(ks.DefinedDelays, first[i].Sub(definedAt(in)))
		}
	}
	return ks
}

// scoredIncidents are the incidents that reach into the scored range: one over before it is
// history, which no detector is asked about (a generator labelling by physics may write them).
func scoredIncidents(ds *Dataset) []Incident {
	var out []Incident
	for _, in := range ds.Incidents {
		if !in.End.Before(ds.EvalFrom) {
			out = append(out, in)
		}
	}
	return out
}

func definedAt(in Incident) time.Time {
	if in.Defined.IsZero() {
		return in.Start
	}
	return in.Defined
}

// ScoreDataset scores one detector's episodes on one dataset.
func ScoreDataset(ds *Dataset, detector string, eps []Episode) *Score {
	s := newScore(detector)
	for _, k := range Kinds {
		ks := scoreKind(ds, eps, k)
		s.Kinds[k] = &ks
	}
	// Per scenario: recall and delay.
	for _, in := range scoredIncidents(ds) {
		sc := s.Scenarios[in.Scenario]
		if sc == nil {
			sc = &KindScore{}
			s.Scenarios[in.Scenario] = sc
		}
		sc.Incidents++
		var firstAt time.Time
		var matched []Episode
		for _, ep := range eps {
			if matches(ep, in, ds.End) {
				matched = append(matched, ep)
				if firstAt.IsZero() || ep.Start.Before(firstAt) {
					firstAt = ep.Start
				}
			}
		}
		if firstAt.IsZero() {
			s.Missed = append(s.Missed, in)
			continue
		}
		for _, ep := range matched {
			if ep.Start.After(firstAt) {
				s.Repeated = append(s.Repeated, ep)
			}
		}
		sc.Detected++
		if d := firstAt.Sub(in.Start); d > SlowDelay {
			s.Slow = append(s.Slow, SlowDetection{Incident: in, Delay: d})
		}
		sc.Delays = append(sc.Delays, firstAt.Sub(in.Start))
		sc.DefinedDelays = append(sc.DefinedDelays, firstAt.Sub(definedAt(in)))
	}
	for _, ep := range eps {
		ok := false
		for _, in := range ds.Incidents {
			if matches(ep, in, ds.End) {
				ok = true
				break
			}
		}
		if !ok {
			s.False = append(s.False, ep)
		}
	}
	// Controls: every episode on a control service is false; those overlapping an event are
	// the ones the event caused.
	days := ds.EvalDays()
	for _, svc := range ds.Services {
		if svc.Kind != "" {
			continue
		}
		cs := s.Controls[svc.Scenario]
		if cs == nil {
			cs = &ControlScore{}
			s.Controls[svc.Scenario] = cs
		}
		cs.Services++
		cs.ServiceDays += days
		var events []ControlEvent
		for _, ev := range ds.Controls {
			if ev.Service == svc.Name {
				events = append(events, ev)
			}
		}
		cs.Events += len(events)
		for _, ep := range eps {
			if ep.Service != svc.Name {
				continue
			}
			cs.Episodes++
			for _, ev := range events {
				if overlaps(ep.Start, ep.endOr(ds.End), ev.Start, ev.End) {
					cs.DuringEvents++
					break
				}
			}
		}
	}
	return s
}
