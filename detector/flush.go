package detector

import (
	"math"
	"slices"
	"time"
)

// flushState follows one group's flush-command counters and keyspace between steps.
type flushState struct {
	// counters are the flush-command counters by series key. A group has a few (one per Redis
	// and command), so a slice searched in turn, where a map was about 500 B per group.
	counters  []counterSeen
	flushes   countWindow            // flush increments within the window
	collapses countWindow            // keyspace collapses within the window
	writes    countWindow            // writes per step within the window
	keys      float64                // keyspace size at the last step; NaN if unknown
	lows      [collapseSteps]float64 // keyspace sizes of the last steps, for their low
	keysFrom  float64                // keyspace size before the latest collapse
	keysTo    float64                // keyspace size right after it
	// The storm under way: when it began, its flushes and collapses, the latest of them.
	stormStart, lastEvent time.Time
	stormEvents           float64
	seen                  bool // the group had a known step before
}

type counterSeen struct {
	id    string
	value float64
	at    time.Time
}

func newFlushState() *flushState {
	f := &flushState{keys: math.NaN(), keysFrom: math.NaN(), keysTo: math.NaN()}
	for i := range f.lows {
		f.lows[i] = math.NaN()
	}
	return f
}

// collapseSteps is how many past steps a keyspace collapse is measured against: a flush empties
// the keyspace below anything it held lately, while keys that expire in waves swing around
// their level from one scrape to the next without falling under half of its recent low.
const collapseSteps = 4

// recentLow is the smallest keyspace of the last steps; NaN until one is known.
func (f *flushState) recentLow() float64 {
	low := math.NaN()
	for _, k := range f.lows {
		if isNum(k) && (!isNum(low) || k < low) {
			low = k
		}
	}
	return low
}

// counterMemory is how long a vanished counter's last value is kept: a Redis that comes back
// within it is compared with what it had, not counted as new flushes.
const counterMemory = 24 * time.Hour

// observeFlushes returns how many flushes happened since the last step. Redis lists a command
// only after its first call, so a counter series that appears for a known group counts from 0;
// a counter that went down was reset (Redis restarted) and counts from 0 too.
func (f *flushState) observeFlushes(t time.Time, series Values) float64 {
	total := 0.0
	for id, v := range series {
		if !isNum(v) {
			continue
		}
		i := slices.IndexFunc(f.counters, func(c counterSeen) bool { return c.id == id })
		ok := i >= 0
		var prev counterSeen
		if ok {
			prev = f.counters[i]
		}
		switch {
		case ok && v >= prev.value:
			total += v - prev.value
		case ok: // reset
			total += v
		case f.seen: // a series born after we started watching: its first flush(es)
			total += v
		}
		if ok {
			f.counters[i].value, f.counters[i].at = v, t
		} else {
			f.counters = append(f.counters, counterSeen{id: id, value: v, at: t})
		}
	}
	f.counters = slices.DeleteFunc(f.counters, func(c counterSeen) bool { return t.Sub(c.at) > counterMemory })
	return total
}

// windowSteps is how many steps the flush window holds when the rule is evaluated once per
// interval: those after now−window up to now, and one more, added before the oldest is dropped.
func (r *Rule) windowSteps() int {
	if r.interval <= 0 {
		return 1
	}
	return int(time.Duration(r.cfg.Window)/r.interval) + 1
}

// flushCommandsWatched reports whether the rule reads flush commands. Where it does, they are
// the evidence and keyspace collapses only explain: a keyspace also empties by itself (keys
// written together expire together, a Redis restarts without persistence), and a healthy one
// that did so every few minutes read as a storm. Without them, collapses are all there is.
func (r *Rule) flushCommandsWatched() bool { return r.cfg.Flushes != "" }

// evalFlush counts flushes and keyspace collapses within the window. One flush or one restart
// is an event; min_flushes of them within the window is a storm.
func (r *Rule) evalFlush(g *group, in *GroupInput, t time.Time) (breach, known bool, ex Explanation) {
	f := g.flush
	window := time.Duration(r.cfg.Window)
	series, haveFlushes := in.Flushes.Series, in.Flushes.OK
	keys := in.Keys.value()
	switch {
	case r.cfg.Keys != "" && isNum(keys):
	case r.cfg.Keys == "" && r.cfg.Flushes != "" && haveFlushes:
	case !f.seen:
		// A group with no Redis of its own (inbound comes from every service) has nothing to
		// flush: it is quiet, not unknown, or the rule would show it unknown forever.
		return false, true, ex
	default:
		// Redis, its exporter or the scrape is gone: a missing keyspace is not a flush.
		return false, false, ex
	}

	collapsesCount, steps := !r.flushCommandsWatched(), r.windowSteps()
	events := f.observeFlushes(t, series)
	if events > 0 {
		f.flushes.add(t, events, steps)
	}
	collapsed := false
	if isNum(keys) {
		if low := f.recentLow(); isNum(low) && low >= r.cfg.MinKeys && keys <= (1-r.cfg.CollapseFraction)*low {
			collapsed = true
			f.collapses.add(t, 1, steps)
			f.keysFrom, f.keysTo = f.keys, keys
			if collapsesCount {
				events = max(events, 1) // a FLUSHDB usually shows as both: one event
			}
		}
		f.keys = keys
		copy(f.lows[1:], f.lows[:])
		f.lows[0] = keys
		if collapsed { // the rebuild is measured from the next step, not against the empty keyspace
			for i := range f.lows {
				f.lows[i] = math.NaN()
			}
		}
	}
	if events > 0 {
		f.lastEvent = t
	}
	if w := in.Writes.value(); isNum(w) && w > 0 {
		f.writes.add(t, w*r.interval.Seconds(), steps)
	}
	f.seen = true
	since := t.Add(-window)
	f.flushes.dropThrough(since)
	f.collapses.dropThrough(since)
	f.writes.dropThrough(since)

	ex.Flushes, ex.Collapses = f.flushes.sum(), f.collapses.sum()
	ex.Observed = ex.Flushes
	if collapsesCount {
		ex.Observed = math.Max(ex.Flushes, ex.Collapses)
	}
	ex.Expected = float64(r.cfg.MinFlushes)
	ex.Window = window
	ex.KeysNow, ex.KeysBefore, ex.KeysAfter = keys, f.keysFrom, f.keysTo
	ex.Inbound = in.Inbound.value()
	season := g.hist.seasonalAt(t.Unix(), 0)
	ex.InboundUsual = season.Usual
	if isNum(ex.Inbound) {
		ex.InboundState = classifyInbound(ex.Inbound, season, r.cfg.IdleInbound)
	}
	// Flushes per write is measured from the first flush in the window on: the flushes after it
	// against the writes after it. Writes before the storm would dilute the answer, and counting
	// the first flush without its write would inflate it.
	ex.Writes = f.writes.sum()
	ex.FlushesPerWrite = math.NaN()
	if f.flushes.len() > 1 {
		first := f.flushes.item(0)
		after, rateAtFirst := 0.0, 0.0
		for i := range f.writes.len() {
			if w := f.writes.item(i); w.at > first.at {
				after += w.n
			} else {
				rateAtFirst = w.n / r.interval.Seconds()
			}
		}
		// Writes come as rate(x[W]), which trails a storm's start by about W/2: summed over
		// the steps since the first flush, they fall short while the storm is young. The
		// difference of two rates, (rate now − rate at the first flush)·W, counts the writes
		// between them exactly while they are under W apart (with no writes before the storm).
		if win := time.Duration(r.cfg.WritesRateWindow); win > 0 {
			if now := in.Writes.value(); isNum(now) && time.Duration(t.UnixNano()-first.at) < win {
				after = math.Max(after, (now-rateAtFirst)*win.Seconds())
			}
		}
		if after > 0 {
			ex.FlushesPerWrite = (ex.Flushes - first.n) / after
		}
	}
	ex.CommandsPerRequest = math.NaN()
	if c := in.Commands.value(); isNum(c) && isNum(ex.Inbound) && ex.Inbound > 0 {
		ex.CommandsPerRequest = c / ex.Inbound
	}
	ex.UsualCommandsPerRequest = g.cmdPer

	// A storm begins when min_flushes fall within the window and goes on while flushes do: once
	// firing, each step with an event (a flush, or a collapse where flush commands are not
	// watched) keeps it breaching, so it resolves resolve_for after the last one rather than a
	// whole window later.
	if g.life.state == StateFiring {
		breach = events > 0
	} else {
		breach = ex.Observed >= float64(r.cfg.MinFlushes)
	}
	switch {
	case g.life.state != StateFiring && breach:
		f.stormStart = t
		if f.flushes.len() > 0 {
			// in t's location, as the flush's own time was: t.Add keeps it
			f.stormStart = t.Add(time.Duration(f.flushes.item(0).at - t.UnixNano()))
		}
		f.stormEvents = math.Max(f.flushes.sum(), ex.Observed)
	case g.life.state == StateFiring:
		f.stormEvents += events
	}
	if !f.stormStart.IsZero() {
		ex.StormStart, ex.StormEvents = f.stormStart, f.stormEvents
	}
	ex.LastFlush = f.lastEvent
	if g.life.state == StateFiring {
		ex.keptFor = g.life.keepFor
	}
	return breach, true, ex
}
