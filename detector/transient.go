package detector

import (
	"math"
	"slices"
	"time"
)

// Transient events: a rolling deploy (new instance names), a scale-out or scale-in (the number
// of instances changes) and a reset of the cache (a Redis restart or flush). Each explains work
// for a while — new caches start cold and refresh once, a flushed Redis is refilled — and pages
// only if the work is still up once the rule's settle time has passed since the last of them.

// Transient is the latest deploy, scaling event or cache reset of a group, from its first change to
// its last.
type Transient struct {
	Kind         string    // TransientDeploy, TransientScaleOut, TransientScaleIn, TransientCacheReset
	Start, Last  time.Time // first and latest change of the event
	From, To     int       // instances before it and now
	NewInstances int       // instance names that appeared during it
	CacheReset   bool      // the cache was reset during it
	// Multiples: From and To count multiples of replica_count's usual value (Rule.liveReplicas).
	Multiples bool
	// Reset is the latest step the rule's cache_resets query saw a reset at; the refill is a
	// transient until cache_refill after it. Zero without a reset.
	Reset time.Time
	// Excess is, per signal, the events a bounded signal counted beyond its expected level since
	// Last (warmUpSpent); nil before the first such step.
	Excess []float64
}

// Kinds of Transient events.
const (
	TransientDeploy     = "rolling deploy"
	TransientScaleOut   = "scale-out"
	TransientScaleIn    = "scale-in"
	TransientCacheReset = "cache reset"
)

// instanceTracker follows the live instances of one group.
type instanceTracker struct {
	names []string // sorted names seen at the last step with replicas data; nil before
	born  int64    // first step with replicas data, in Unix nanoseconds (unixNano); 0 before
	// event and scale are nil until the group's first event and scale-out. Inline they took
	// 176 B of every group of every rule, though flush-storm's never set them and a
	// token-minting group only once it has deployed, scaled or had its cache reset.
	event *Transient
	scale *ScaleOut
}

// ScaleOut is the latest scale-out of a group and the inbound around it: instances multiplied
// with their load (an autoscaler following a rise) leave work per request where it was, while
// instances multiplied with inbound flat make per-instance state do more work per request (the
// third incident). Decided once, a settle after the event's last change, so inbound that drifts
// with the time of day while the instances stay up does not move the verdict.
type ScaleOut struct {
	Start, Last   time.Time // the event's first and latest change; zero without one in effect
	From          int       // instances before it
	InboundBefore float64   // median inbound in the hour before Start (history); NaN if unknown
	// InboundPerInstance is the inbound each instance brings by itself (health probes), as
	// learned at Start (Rule.inboundPerInstance); 0 if unknown.
	InboundPerInstance float64
	InboundSum         float64 // inbound summed over the steps of the settle after Last
	InboundSteps       int
	Decided            bool // the settle after Last is over: InboundSum is all of it
}

// inboundAfter is the mean inbound over the settle after the scale-out's last change.
func (s *ScaleOut) inboundAfter() float64 { return s.InboundSum / float64(s.InboundSteps) }

// known reports whether inbound before and after the scale-out are both known.
func (s *ScaleOut) known() bool { return s.Decided && isNum(s.InboundBefore) }

// loadDriven reports whether inbound grew with the instances: instances that grew less than
// replicaGrowth times as much as inbound did followed their load, as did instances added to a
// group that had no inbound before. The inbound each instance brings by itself (its health
// probes) grows with the instances whatever the load, so it is taken out of both sides, and
// one instance's worth of it kept on both as the precision users are told from probes with:
// probes alone, before and after, are no load (fleetsim tuning seed 51888, healthy-18: 5 -> 15
// pods at night, inbound all probes and up 3x with them, read as load).
// Where users are most of inbound, the ratio is what it was.
func (s *ScaleOut) loadDriven(instances int) bool {
	probes := s.InboundPerInstance
	before := math.Max(0, s.InboundBefore-probes*float64(s.From)) + probes
	after := math.Max(0, s.inboundAfter()-probes*float64(instances)) + probes
	if before <= 0 {
		return after > 0
	}
	instanceGrowth := float64(instances) / float64(max(1, s.From))
	return instanceGrowth < replicaGrowth*after/before
}

// observe records the live instances at t (nil when the rule reads no replicas or the group has
// none this step) and whether the cache resets query sees a reset at t. settle joins changes
// closer than it into one event; a reset holds the event open for refill after the last step
// that saw it, as its cache refills that long.
func (it *instanceTracker) observe(t time.Time, live Values, reset bool, settle, refill time.Duration) {
	var lastReset time.Time // read before a new event replaces the one that holds it
	if it.event != nil {
		lastReset = it.event.Reset
	}
	if reset {
		lastReset = t
	}
	refilling := !lastReset.IsZero() && t.Sub(lastReset) < max(refill, time.Nanosecond)
	if live != nil && !it.same(live) {
		names := make([]string, 0, len(live))
		for n, v := range live {
			if isNum(v) {
				names = append(names, n)
			}
		}
		slices.Sort(names)
		if it.born == 0 {
			it.born = unixNano(t)
		}
		// Instances that come up one by one as a group is born (or first seen) are its birth,
		// not a scaling event.
		if it.names != nil && time.Duration(t.UnixNano()-it.born) >= settle {
			added := 0
			for _, n := range names {
				if _, found := slices.BinarySearch(it.names, n); !found {
					added++
				}
			}
			if added > 0 || len(names) != len(it.names) {
				it.change(t, settle, len(it.names))
				it.event.NewInstances += added
				it.event.To = len(names)
				it.event.Kind = instanceEventKind(*it.event)
			}
		}
		it.names = names
	}
	if refilling {
		n := len(it.names)
		fresh := it.change(t, settle, n)
		it.event.CacheReset, it.event.Reset = true, lastReset
		if fresh || it.event.Kind == "" {
			it.event.Kind, it.event.To = TransientCacheReset, n
		}
	}
}

// same reports whether live names the instances of the last step, and them only: most steps
// of most groups, which then cost no sorted copy (a start-up replays the shipped six hours,
// 720 steps of every group).
func (it *instanceTracker) same(live Values) bool {
	if it.names == nil {
		return false
	}
	n := 0
	for name, v := range live {
		if !isNum(v) {
			continue
		}
		if _, found := slices.BinarySearch(it.names, name); !found {
			return false
		}
		n++
	}
	return n == len(it.names)
}

// change extends the current event to t or starts a new one; it reports a new one.
func (it *instanceTracker) change(t time.Time, settle time.Duration, before int) bool {
	if it.settling(t, settle) {
		it.event.Last = t
		clear(it.event.Excess) // counted from the last change (warmUpSpent)
		return false
	}
	if it.event == nil {
		it.event = new(Transient)
	}
	*it.event = Transient{Start: t, Last: t, From: before, To: before}
	return true
}

// longestTokenLifetime is the longest-lived access tokens commonly issued (two hours): a cache
// holds its token at most that long, so a healthy cache refreshes at least once in it.
const longestTokenLifetime = 2 * time.Hour

// warmUpSpent adds one step's events of bounded signal s beyond expected to the event being
// settled, and returns them since its last change, what its new instances' caches could mint
// warming up, and whether the events are past that. A cold cache mints once and then holds its
// token; a healthy instance's caches refresh at least once per longestTokenLifetime, so they
// number at most its level times that, and the instances an event started warm up in at most
// that many mints each, past the counting noise. Work beyond it is no warm-up, and need not wait
// out the settle (fleetsim: every token thrash a deploy shipped paged at the deploy's end plus
// settle, seven minutes after it began). The count starts again at each change: while old and
// new instances both run, a provider that keeps a few tokens revokes the old caches' as the
// new ones mint, and they mint again (fleetsim seed 63564, healthy-25: 32 caches, 34 tokens
// kept, twice the bound in a rolling deploy). An event with a cache reset has no such bound: a
// cache flushed on every upload is emptied again and again, and its refills are the flushes'
// doing, which the flush-storm rule reports (fleetsim: six false episodes on flush_on_write).
func (it *instanceTracker) warmUpSpent(s, signals int, events, perInstance float64) (excess, budget float64, spent bool) {
	e := it.event
	if e == nil || e.CacheReset {
		return 0, 0, false
	}
	if e.Excess == nil {
		e.Excess = make([]float64, signals)
	}
	e.Excess[s] += events
	budget = float64(e.NewInstances) * perInstance * longestTokenLifetime.Seconds()
	return e.Excess[s], budget, e.Excess[s] > budget+noiseSigmas*math.Sqrt(math.Max(budget, 1))
}

// replicaGrowth is how much the number of instances must change to be a scaling event rather
// than a deploy: a rolling deploy adds one surge pod at a time, a scaling event at least half
// as many again as there were.
const replicaGrowth = 1.5

func instanceEventKind(e Transient) string {
	switch {
	case e.From > 0 && float64(e.To) >= replicaGrowth*float64(e.From):
		return TransientScaleOut
	case e.To > 0 && float64(e.From) >= replicaGrowth*float64(e.To):
		return TransientScaleIn
	case e.NewInstances > 0:
		return TransientDeploy
	}
	return e.Kind
}

// settling reports whether t is within settle of the group's latest event.
func (it *instanceTracker) settling(t time.Time, settle time.Duration) bool {
	return it.event != nil && !it.event.Last.IsZero() && t.Sub(it.event.Last) < settle
}

// recent returns the latest event if it ended within window of t.
func (it *instanceTracker) recent(t time.Time, window time.Duration) (Transient, bool) {
	if it.event == nil || it.event.Last.IsZero() || t.Sub(it.event.Last) > window {
		return Transient{}, false
	}
	ev := *it.event
	ev.Excess = nil // the tracker's own count, which explanations served elsewhere must not share
	return ev, true
}

// settledSince reports whether the group's latest event changed anything at or after ns (Unix
// nanoseconds) and its last change had been over for at least over by t.
func (it *instanceTracker) settledSince(ns int64, t time.Time, over time.Duration) bool {
	e := it.event
	return e != nil && !e.Last.IsZero() && e.Last.UnixNano() >= ns && t.Sub(e.Last) >= over
}

// count is the number of live instances at the last step with data, 0 when unknown.
func (it *instanceTracker) count() int { return len(it.names) }
