package detector

import (
	"fmt"
	"github.com/emergent-sh/emergent/internal/format"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// Explanation is why a group is (or is not) anomalous, in numbers, with the likely cause and fix.
type Explanation struct {
	// Self-generated traffic: the signal with the largest unexplained share.
	Signal           string
	Unit             string
	Observed         float64       // work per second (flush storm: flushes or collapses in the window)
	Expected         float64       // work per second inbound explains (flush storm: min_flushes)
	Unexplained      float64       // Observed − Expected, per second
	UnexplainedShare float64       // Unexplained / Observed, 0..1
	Inbound          float64       // inbound requests per second
	InboundUsual     float64       // usual inbound: seasonal, or recent while fewer days; NaN if unknown
	InboundDays      int           // past days InboundUsual is taken from; 0: the recent past
	InboundRecent    time.Duration // with no days, how far back the recent usual looks
	InboundState     string
	Instances        int // instances doing the work, 0 if no breakdown query
	// Replicas is the number of live instances (0 without a replicas query); UsualReplicas
	// their median over the history (NaN if unknown).
	Replicas      int
	UsualReplicas float64
	// PerInstance is a bounded signal's learned healthy level per instance; NaN otherwise.
	PerInstance float64
	// Transient is the deploy, scaling event or restart the group went through recently.
	Transient *Transient
	// ScaledFrom is the instances before the scale-out they are still grown by and inbound in
	// the hour before it and the settle after it, once known; ScaledFrom is 0 otherwise.
	ScaledFrom                                int
	InboundBeforeScaling, InboundAfterScaling float64
	// ProbesPerInstance is the inbound each instance brings by itself, taken out of both
	// (ScaleOut.InboundPerInstance); 0 if none was.
	ProbesPerInstance float64

	// Flush storm.
	Flushes                 float64 // flush commands within the window
	Collapses               float64 // keyspace collapses within the window
	Window                  time.Duration
	KeysNow, KeysBefore     float64
	KeysAfter               float64   // keyspace size right after the latest collapse
	StormEvents             float64   // flushes and collapses since the storm began
	StormStart, LastFlush   time.Time // first and latest flush or collapse of the storm
	Writes                  float64   // writes (uploads) within the window
	FlushesPerWrite         float64
	CommandsPerRequest      float64
	UsualCommandsPerRequest float64

	Summary   string
	Diagnosis string
	Remedy    string
	// Description is the numbers in one paragraph, for receivers that show plain text.
	Description string
	// Counts says Observed and Expected are counts within Window (a storm's flushes against the
	// count that makes one), not rates; Unit names what is counted.
	Counts bool
	// Bounded says Signal is a bounded signal (its work is held to a level per instance). The
	// flags sit together at the end: beside Unit, Bounded took a word of its own.
	Bounded bool
	// ReplicasInMultiples says Replicas and UsualReplicas count multiples of replica_count's
	// usual value: the replicas query shows one series (an aggregating endpoint).
	ReplicasInMultiples bool

	// instantBreach: the step breaches before the average_over gate (any signal).
	instantBreach bool
	// warmUp, when set: a bounded signal breaches with more events since a settling transient's
	// last change than its new caches could mint warming up (instanceTracker.warmUpSpent), no
	// reason to hold.
	warmUp *warmUp
	// lull: the step is quiet, but the work averaged over average_over is still unexplained and
	// nothing the rule can see (a deploy, a scaling event, a cache reset) came since the last
	// breach to end it: a firing episode's quiet that may be a lull between bursts.
	lull bool
	// keptFor, on a firing storm that came back within recur_within: the quiet it came back
	// after, which it is held open through past resolve_for.
	keptFor time.Duration
}

// Remedies the seeds' post-mortems learned.
const (
	RemedyShareCache = "Share the cache across instances (Redis or Memcached instead of APCu or a per-pod " +
		"filesystem cache), take a lock around minting (SET NX PX) so one instance refreshes, and set " +
		"cache_ttl = token_expiry − safety_margin."
	RemedyFlushStorm = "Take the flush off the write path: invalidate only the keys a write touches (or a " +
		"tag), rebuild lazily behind a lock (single-flight), and never FLUSHDB/FLUSHALL from application code."
)

// num is how every number in an explanation is written (internal/format).
var num = format.Num

// GroupString renders group labels as `service="checkout"`, sorted by name.
func GroupString(labels map[string]string) string {
	names := make([]string, 0, len(labels))
	for k := range labels {
		names = append(names, k)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = fmt.Sprintf("%s=%q", k, labels[k])
	}
	return strings.Join(parts, ", ")
}

func (r *Rule) explainSelfGenerated(ex *Explanation, labels map[string]string, over bool) {
	ex.Remedy = r.cfg.Remedy
	if ex.Remedy == "" {
		ex.Remedy = RemedyShareCache
	}
	expectation := "expected " + num(ex.Expected) + "/s"
	switch {
	case isNum(ex.PerInstance) && ex.PerInstance > 0 && ex.Replicas > 0 && ex.ReplicasInMultiples:
		expectation += fmt.Sprintf(" (%s/s for its usual instances × %d)", num(ex.PerInstance), ex.Replicas)
	case isNum(ex.PerInstance) && ex.PerInstance > 0 && ex.Replicas > 0:
		expectation += fmt.Sprintf(" (%s/s per instance × %d)", num(ex.PerInstance), ex.Replicas)
	}
	if !over {
		ex.Summary = fmt.Sprintf("%s: %s back to %s/s, %s; inbound %s/s",
			GroupString(labels), ex.Unit, num(ex.Observed), expectation, num(ex.Inbound))
		ex.Diagnosis = fmt.Sprintf("%s back within what inbound and the instances explain (%s/s against %s/s expected)",
			ex.Unit, num(ex.Observed), num(ex.Expected))
		if ex.lull {
			ex.Diagnosis += fmt.Sprintf("; held open as a lull between bursts: the last %s's average is still unexplained "+
				"and no deploy, scaling event or cache reset came (a cache TTL beyond the token's lifetime stampedes at each expiry)",
				model.Duration(r.cfg.AverageOver))
		}
		return
	}
	perReq := "n/a"
	if ex.Inbound > 0 {
		perReq = num(ex.Observed / ex.Inbound)
	}
	ex.Summary = fmt.Sprintf("%s: %s %s/s (%s per inbound request), %s; %.0f%% unexplained by inbound %s/s",
		GroupString(labels), ex.Unit, num(ex.Observed), perReq, expectation, 100*ex.UnexplainedShare, num(ex.Inbound))

	var why []string
	switch {
	case ex.replicasGrew():
		from, inbound := num(ex.UsualReplicas), "is "+inboundWords(ex)
		if tr := ex.Transient; tr != nil && tr.Kind == TransientScaleOut {
			from = strconv.Itoa(tr.From)
		}
		if ex.ScaledFrom > 0 {
			from = strconv.Itoa(ex.ScaledFrom)
			inbound = fmt.Sprintf("went %s/s → %s/s around it (now %s/s)", num(ex.InboundBeforeScaling), num(ex.InboundAfterScaling), num(ex.Inbound))
			if ex.ProbesPerInstance > 0 {
				inbound += fmt.Sprintf(", %s/s of it per instance what each answers by itself (health probes)", num(ex.ProbesPerInstance))
			}
		}
		rose := "rose from none"
		if ex.Expected > 0 {
			rose = "rose " + num(ex.Observed/ex.Expected) + "x"
		}
		went := fmt.Sprintf("instances went %s → %d", from, ex.Replicas)
		if ex.ReplicasInMultiples {
			went = fmt.Sprintf("instances behind its one endpoint went %s → %d times their usual number (replica_count)", from, ex.Replicas)
		}
		why = append(why, fmt.Sprintf("%s while inbound %s; %s per request %s → work tracks replica count, "+
			"not demand: per-instance cache or state (APCu per PHP-FPM master, filesystem cache per pod)",
			went, inbound, ex.Unit, rose))
	case ex.Instances >= 2:
		why = append(why, fmt.Sprintf("%d instances do the work independently; it tracks instance count, "+
			"not demand → the cache is not shared (per-instance cache: APCu per PHP-FPM master, filesystem cache per pod)",
			ex.Instances))
	}
	switch ex.InboundState {
	case InboundIdle:
		why = append(why, fmt.Sprintf("idle but busy: %s/s %s while inbound is %s → work no user asked for",
			num(ex.Observed), ex.Unit, inboundWords(ex)))
	case InboundSurging:
		why = append(why, fmt.Sprintf("inbound is surging (%sx its usual %s/s), but %s grew beyond what the surge explains",
			num(ex.Inbound/ex.InboundUsual), num(ex.InboundUsual), ex.Unit))
	default:
		switch {
		case ex.Expected > 0 && ex.Bounded:
			why = append(why, fmt.Sprintf("%s run at %sx the level this service's instances keep when healthy, whatever the demand", ex.Unit, num(ex.Observed/ex.Expected)))
		case ex.Expected > 0:
			why = append(why, fmt.Sprintf("%s run at %sx what inbound explains", ex.Unit, num(ex.Observed/ex.Expected)))
		}
	}
	switch tr := ex.Transient; {
	case tr != nil && ex.warmUp != nil:
		take := "at most " + num(ex.warmUp.budget)
		if ex.warmUp.budget == 0 {
			take = "none: its level is 0"
		}
		why = append(why, fmt.Sprintf("%s %s beyond the level since %s, when %s last changed: more than its new instances' cold caches take (%s), not a warm-up",
			num(ex.warmUp.excess), ex.warmUp.unit, tr.Last.UTC().Format("15:04 UTC"), tr, take))
	case tr != nil:
		why = append(why, "still up "+model.Duration(r.settleAfter(tr)).String()+" after "+tr.String()+": not a warm-up")
	}
	ex.Diagnosis = strings.Join(why, "; ")
}

// warmUp is what a bounded signal did beyond its level since a transient's last change, and
// what the transient's cold caches could take (instanceTracker.warmUpSpent): the words of a page that did
// not wait out the settle.
type warmUp struct {
	excess, budget float64
	unit           string
}

// String describes the event: "scale-out at 12:04 UTC (2 → 6 instances)".
func (t Transient) String() string {
	s := t.Kind + " at " + t.Start.UTC().Format("15:04 UTC")
	switch {
	case t.Kind == TransientCacheReset:
		return s + " (Redis restarted or flushed)"
	case t.From != t.To && t.Multiples:
		return s + fmt.Sprintf(" (instances %d → %d times their usual number, by replica_count)", t.From, t.To)
	case t.From != t.To && t.NewInstances > 0:
		return s + fmt.Sprintf(" (%d → %d instances, %d new)", t.From, t.To, t.NewInstances)
	case t.From != t.To:
		return s + fmt.Sprintf(" (%d → %d instances)", t.From, t.To)
	}
	return s + fmt.Sprintf(" (%d new instances)", t.NewInstances)
}

// inboundWords says inbound now against its usual level and what that level is taken from,
// so no claim is made without its basis.
func inboundWords(ex *Explanation) string {
	now := num(ex.Inbound) + "/s"
	switch {
	case !isNum(ex.InboundUsual):
		return now + " (usual inbound unknown: too little history)"
	case ex.InboundDays > 0:
		return fmt.Sprintf("%s (usual %s/s at this time of day over %d days)", now, num(ex.InboundUsual), ex.InboundDays)
	}
	return fmt.Sprintf("%s (usual %s/s over the last %s)", now, num(ex.InboundUsual), model.Duration(ex.InboundRecent))
}

func (r *Rule) explainFlush(ex *Explanation, labels map[string]string, over bool) {
	ex.Remedy = r.cfg.Remedy
	if ex.Remedy == "" {
		ex.Remedy = RemedyFlushStorm
	}
	since := ""
	if !ex.StormStart.IsZero() {
		since = fmt.Sprintf("; %s flushes or collapses since %s", num(ex.StormEvents), ex.StormStart.UTC().Format("15:04 UTC"))
	}
	if !over {
		last := "none in the window"
		if !ex.LastFlush.IsZero() {
			last = "the last at " + ex.LastFlush.UTC().Format("15:04:05 UTC")
		}
		ex.Summary = fmt.Sprintf("%s: flushes stopped (%s)%s", GroupString(labels), last, since)
		ex.Diagnosis = "no FLUSHDB/FLUSHALL since " + last
		if !r.flushCommandsWatched() {
			ex.Diagnosis = "no FLUSHDB/FLUSHALL or keyspace collapse since " + last
		}
		if ex.keptFor > 0 {
			// Still firing: the storm came back after this much quiet once, so quiet is no end yet.
			ex.Summary = fmt.Sprintf("%s: flushes paused (%s)%s", GroupString(labels), last, since)
			ex.Diagnosis += fmt.Sprintf("; the storm came back after %s of quiet before, so it is held open until %s without one",
				model.Duration(ex.keptFor.Round(time.Minute)), model.Duration((time.Duration(r.cfg.ResolveFor) + ex.keptFor).Round(time.Minute)))
		}
		return
	}
	ex.Summary = fmt.Sprintf("%s: %s flushes and %s keyspace collapses in the last %s (storm at %s)%s",
		GroupString(labels), num(ex.Flushes), num(ex.Collapses), model.Duration(ex.Window), num(ex.Expected), since)
	var why []string
	if isNum(ex.FlushesPerWrite) {
		onWrite := ""
		if ex.FlushesPerWrite >= 0.5 && ex.FlushesPerWrite <= 2 {
			onWrite = " → the cache is flushed on the write path"
		}
		why = append(why, fmt.Sprintf("%s FLUSHDB/FLUSHALL per write (upload)%s", num(ex.FlushesPerWrite), onWrite))
	}
	if isNum(ex.CommandsPerRequest) {
		s := fmt.Sprintf("%s Redis commands per inbound request", num(ex.CommandsPerRequest))
		if u := ex.UsualCommandsPerRequest; isNum(u) && u > 0 {
			s += fmt.Sprintf(" vs %s usual (%sx)", num(u), num(ex.CommandsPerRequest/u))
			if ex.CommandsPerRequest >= 2*u {
				s += ": the rebuild is the load"
			}
		}
		why = append(why, s)
	}
	if ex.Collapses > 0 && isNum(ex.KeysBefore) && isNum(ex.KeysAfter) {
		why = append(why, fmt.Sprintf("keyspace collapsed from %s to %s keys (now %s)", num(ex.KeysBefore), num(ex.KeysAfter), num(ex.KeysNow)))
	}
	ex.Diagnosis = strings.Join(why, "; ")
}

// describeSelfGenerated is a self-generated traffic episode's numbers in one paragraph.
func describeSelfGenerated(ex *Explanation) string {
	usual := "usual inbound unknown"
	if isNum(ex.InboundUsual) {
		usual = "usual " + num(ex.InboundUsual) + "/s"
	}
	d := fmt.Sprintf("Observed %s %s/s, expected %s/s (%.0f%% unexplained). Inbound %s/s, %s (%s).",
		num(ex.Observed), ex.Unit, num(ex.Expected), 100*ex.UnexplainedShare, num(ex.Inbound), usual, ex.InboundState)
	if ex.Instances > 0 {
		d += fmt.Sprintf(" %d instances doing the work.", ex.Instances)
	}
	return withWhy(d, ex)
}

// describeFlush is a flush storm's numbers in one paragraph.
func describeFlush(ex *Explanation) string {
	return withWhy(fmt.Sprintf("%s flushes and %s keyspace collapses in %s.", num(ex.Flushes), num(ex.Collapses), model.Duration(ex.Window)), ex)
}

func withWhy(d string, ex *Explanation) string {
	if ex.Diagnosis != "" {
		d += " Why: " + ex.Diagnosis + "."
	}
	return d
}
