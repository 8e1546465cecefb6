package detector

import "time"

// State is where a group's episode lifecycle stands.
type State int

// States of a group, as exported in emergent_group_state.
const (
	StateUnknown  State = -1 // data missing or bad: nothing fires or resolves
	StateInactive State = 0
	StatePending  State = 1
	StateFiring   State = 2
	StateLearning State = 3 // too little history to judge: nothing fires
)

func (s State) String() string {
	switch s {
	case StateUnknown:
		return "unknown"
	case StatePending:
		return "pending"
	case StateFiring:
		return "firing"
	case StateLearning:
		return "learning"
	}
	return "inactive"
}

// lifecycle is the pending → firing → resolved machine of one group. Every time it holds comes
// from step timestamps, so replaying the same data gives the same start and end.
type lifecycle struct {
	state State
	// The times are steps' times in Unix nanoseconds (unixNano), 0 for none: 8 B where a
	// time.Time takes 24, in every group of every rule (the flush window keeps its steps so
	// too).
	pendingSince int64
	// instantSince is the first of the unbroken steps that breached at the instant, before a
	// gate on longer evidence (self-generated traffic's average_over) let them count: once it
	// does, the episode has been pending since then, as Prometheus counts `for` from the
	// condition, not from when it was confirmed. Zero when the last step did not breach.
	instantSince int64
	firingSince  int64
	clearSince   int64 // first non-breaching step while firing; zero while breaching
	// Recurrence: an anomaly that comes back in bursts (a cache TTL beyond the token's
	// lifetime stampedes at every expiry, quiet between) is one incident, not a page per
	// burst. A group that fires again within recurWithin (step's) of its last breach learns
	// that quiet gap, and its episode stays open through quiet that long (plus resolve_for).
	lastBreach int64         // latest breaching step while firing
	keepFor    time.Duration // quiet the current episode is kept open through, beyond resolve_for
	// reburstSince is the first step of a breach within that kept quiet, zero when none: it
	// counts as the anomaly back only once it has lasted for, as a firing would. Healthy bursts
	// shorter than that (caches refilled together by the fix's deploy, refreshing together)
	// kept a fixed stampede's episode open for 16 hours (fleetsim seed 16290,
	// ttl-beyond-lifetime-01).
	reburstSince int64
}

// unixNano is t in Unix nanoseconds, 0 for the zero time: how lifecycle keeps its times. A
// step at exactly 1970-01-01T00:00:00Z would read as none; nanoseconds fit an int64 until 2262.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fromUnixNano is the time unixNano kept (in UTC), the zero time for 0.
func fromUnixNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

type transition int

const (
	noChange transition = iota
	fired
	resolved
)

// step advances the machine with one known observation. breach is evaluated with the firing
// thresholds when inactive or pending and with the hysteresis thresholds when firing; instant
// is the breach before a gate on longer evidence (breach implies it). hold keeps a pending
// episode from firing (a transient is settling); its pending time still counts. lull says a
// firing episode's quiet may be a lull between bursts rather than the end: it is kept open
// through it (the kind decides how long it may be one).
// An episode that fires within recurWithin of the last one's final breach is a recurrence.
func (l *lifecycle) step(at time.Time, breach, instant, hold, lull bool, forDur, resolveFor, recurWithin time.Duration) transition {
	t := at.UnixNano()
	switch {
	case !breach && !instant:
		l.instantSince = 0
	case l.instantSince == 0:
		l.instantSince = t
	}
	switch l.state {
	case StateInactive, StateUnknown, StateLearning:
		if !breach {
			l.state = StateInactive
			return noChange
		}
		l.state, l.pendingSince = StatePending, l.instantSince
		if time.Duration(t-l.pendingSince) >= forDur && !hold {
			l.fire(t, recurWithin)
			return fired
		}
	case StatePending:
		if !breach {
			l.state = StateInactive
			return noChange
		}
		if time.Duration(t-l.pendingSince) >= forDur && !hold {
			l.fire(t, recurWithin)
			return fired
		}
	case StateFiring:
		// Past resolve_for the quiet is held open only by a learned gap or a lull: a breach
		// there is the anomaly back once it lasts for.
		if breach && l.clearSince != 0 && time.Duration(t-l.clearSince) >= resolveFor {
			if l.reburstSince == 0 {
				l.reburstSince = t
			}
			// Not yet the anomaly back, nor while a transient settles (a deploy's cold caches), as
			// a pending episode would not fire; nor resolved while it may be.
			if time.Duration(t-l.reburstSince) < forDur || hold {
				return noChange
			}
		}
		if breach {
			l.clearSince, l.lastBreach, l.reburstSince = 0, t, 0
			return noChange
		}
		l.reburstSince = 0
		if l.clearSince == 0 {
			l.clearSince = t
		}
		quiet := time.Duration(t - l.clearSince)
		if quiet >= resolveFor+l.keepFor && !lull {
			l.state = StateInactive
			return resolved
		}
	}
	return noChange
}

// breachLasted is how long the instant has breached by the step at, one interval counted for
// the step itself.
func (l *lifecycle) breachLasted(at time.Time, interval time.Duration) time.Duration {
	if l.instantSince == 0 {
		return interval
	}
	return time.Duration(at.UnixNano()-l.instantSince) + interval
}

// restore makes an episode an earlier process had open firing at t, with the quiet gap it had
// learned when it fired.
func (l *lifecycle) restore(at time.Time, keepFor time.Duration) {
	t := at.UnixNano()
	l.state, l.firingSince, l.clearSince, l.lastBreach, l.keepFor, l.reburstSince = StateFiring, t, 0, t, keepFor, 0
}

// fire starts an episode at t, learning the quiet gap since the last one's final breach if it
// came back within recurWithin.
func (l *lifecycle) fire(t int64, recurWithin time.Duration) {
	l.keepFor = 0
	if gap := time.Duration(l.pendingSince - l.lastBreach); l.lastBreach != 0 && gap <= recurWithin {
		l.keepFor = gap
	}
	l.state, l.firingSince, l.clearSince, l.lastBreach, l.reburstSince = StateFiring, t, 0, t, 0
}
