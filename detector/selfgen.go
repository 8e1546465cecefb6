package detector

import (
	"math"
	"strconv"
	"time"

	"github.com/emergent-sh/emergent/config"
)

// Inbound states, relative to the seasonal baseline.
const (
	InboundNormal   = "normal"
	InboundSurging  = "surging"
	InboundIdle     = "idle"
	InboundLearning = "learning" // no baseline yet
)

// surgeFactor is how far above its usual level inbound must be to count as a surge; the 3σ
// test alone calls ordinary busy hours surges on quiet, regular series.
const surgeFactor = 2

// noiseSigmas is how many residual standard deviations unexplained work must exceed, so
// ordinary jitter around a learned ratio is never "unexplained".
const noiseSigmas = 3

// idleFraction is the share of its usual level under which inbound is idle: what is left when
// users are gone is health checks and crawlers, a few percent of a service's usual demand.
const idleFraction = 0.1

// classifyInbound says whether inbound is normal, surging or idle against its usual level.
func classifyInbound(in float64, s seasonal, idleBelow float64) string {
	switch {
	case in <= 0 || in <= idleBelow:
		return InboundIdle
	case math.IsNaN(s.Usual):
		return InboundLearning
	case s.Usual > 0 && in < idleFraction*s.Usual:
		return InboundIdle
	case in > surgeFactor*s.Usual && in > s.Usual+noiseSigmas*s.Sigma:
		return InboundSurging
	}
	return InboundNormal
}

// expectedWork returns what a signal should do given inbound and the live instances, and the
// noise band around it. ok is false while the signal has too little history and nothing
// configured to fall back on: the group is learning, not quiet.
func (g *group) expectedWork(s int, sig config.Signal, inbound float64, instances int) (expected, sigma float64, ok bool) {
	if sig.Relation == config.RelationBounded {
		return g.expectedBounded(s, sig, instances)
	}
	fit, learned := g.signals[s].fit, g.signals[s].fitOK
	switch {
	case learned:
	case sig.MaxRatio > 0:
		fit = proportionalFit{Ratio: sig.MaxRatio, Floor: sig.MaxFloor}
	default:
		return math.NaN(), math.NaN(), false
	}
	if sig.MaxRatio > 0 {
		fit.Ratio = math.Min(fit.Ratio, sig.MaxRatio)
		fit.AllRatio = math.Min(fit.AllRatio, sig.MaxRatio)
	}
	if sig.MaxFloor > 0 {
		fit.Floor = math.Min(fit.Floor, sig.MaxFloor)
	}
	n := 1.0
	if sig.PerInstance && learned { // the fit is per instance: floor and spread scale with them
		n = float64(max(1, instances))
	}
	// Work inbound could explain in full is explained: the learned floor must not turn a surge
	// that work follows into unexplained work.
	expected = math.Max(fit.Ratio*inbound+fit.Floor*n, fit.AllRatio*inbound)
	return expected, max(g.baseNoise(s, sig, expected, instances), fit.Peak*n/noiseSigmas), true
}

// baseNoise is the noise of a signal's work around expected without the band of history's
// bursts a proportional fit adds: the spread of single points and the counting noise.
func (g *group) baseNoise(s int, sig config.Signal, expected float64, instances int) float64 {
	st, spread, n := &g.signals[s], 0.0, float64(max(1, instances))
	switch {
	case sig.Relation == config.RelationBounded && st.levelOK:
		spread = st.level.Sigma * n
	case sig.Relation == config.RelationBounded:
	case st.fitOK && sig.PerInstance:
		spread = st.fit.Sigma * n
	case st.fitOK:
		spread = st.fit.Sigma
	}
	return max(spread, countingNoise(expected, sig.EventQuantum))
}

// liveReplicas is the replicas answer to follow at this step and whether it counts instances
// in multiples of replica_count's usual value: where replicas shows one series and that usual
// value is known, the series and a name for each further multiple ("name#2", ...), stable so
// a scale-out adds names and a scale-in takes them away as real instances do (instancesOf).
// The multiple moves once the count is replicaCountBand past the one followed: probes counted
// over a rate window wobble, and a count near a half multiple would scale at every step.
func (r *Rule) liveReplicas(g *group, in *GroupInput) (Values, bool) {
	live := in.Replicas.Series
	if r.countCol < 0 || len(live) != 1 || !(g.usualCount > 0) {
		return live, false
	}
	x := in.ReplicaCount.value() / g.usualCount
	if !isNum(x) || x <= 0 {
		return live, false
	}
	n := max(1, math.Round(x))
	if followed := float64(g.instances.count()); followed >= 1 && math.Abs(x-followed) < replicaCountBand {
		n = followed
	}
	if n == 1 {
		return live, true
	}
	out := make(Values, int(n))
	for name, v := range live {
		out[name] = v
		for k := 2; k <= int(n); k++ {
			out[name+"#"+strconv.Itoa(k)] = v
		}
	}
	return out, true
}

// replicaCountBand is how far past the multiple followed replica_count must go to move it:
// three quarters of the usual value, so pods scaled out to 1.75 times their usual number or more
// move it from one to two (a scale-out is 1.5-3x), while a rate window's wobble of a few probes
// does not.
const replicaCountBand = 0.75

// expectedBounded is the group's learned healthy level per instance times its live instances,
// capped by the configured ceiling; the ceiling alone while nothing is learned.
func (g *group) expectedBounded(s int, sig config.Signal, instances int) (expected, sigma float64, ok bool) {
	if !g.signals[s].levelOK {
		if sig.Ceiling > 0 {
			return sig.Ceiling, countingNoise(sig.Ceiling, sig.EventQuantum), true
		}
		return math.NaN(), math.NaN(), false
	}
	lvl := g.signals[s].level
	per := lvl.PerInstance
	// The cap bounds what one instance may do, so it holds only where instances are seen, in
	// the replicas or in the work's breakdown: a group seen as one series in both may be one pod
	// or an aggregating endpoint of twenty (fleetsim seed 15745: 23 pods behind one, 0.49
	// mints/s while healthy, paged five times against the cap), and nothing tells them apart.
	if sig.MaxPerInstance > 0 && (g.usualReplicas >= 2 || g.instancesApart) {
		per = math.Min(per, sig.MaxPerInstance)
	}
	expected = per * float64(max(1, instances))
	if sig.Ceiling > 0 {
		expected = math.Min(expected, sig.Ceiling)
	}
	// No band up to the bursts of history, as proportional fits have: the level is already a
	// high quantile, and a history that held an earlier incident (history is not screened for
	// episodes) taught a band above it that hid the same incident coming back (fleetsim tuning
	// seeds: 7 more replica-scaling incidents found). Healthy bursts are average_over's.
	return expected, g.baseNoise(s, sig, expected, instances), true
}

// countingNoise is the standard deviation of a rate made of Poisson events when expected is
// its mean and quantum what one event adds (1/window): √(events)·quantum. It is never taken
// below one event's worth, so a signal that usually counts nothing in its window does not fire
// on the first two events. The spread learned from history cannot see this: a rate of rare
// events is zero at most points, and so is its median deviation.
func countingNoise(expected, quantum float64) float64 {
	if quantum <= 0 {
		return 0
	}
	return math.Sqrt(math.Max(expected, quantum) * quantum)
}

// evalSelfGenerated compares each work signal with what inbound explains. A group breaches when
// for some signal both the unexplained share and the unexplained rate pass their thresholds
// (scaled by hysteresis while firing) and the excess is beyond the signal's noise.
func (r *Rule) evalSelfGenerated(g *group, in *GroupInput, t time.Time) (breach, known bool, ex Explanation) {
	inbound := in.Inbound.value()
	if !isNum(inbound) {
		// A reset is read over minutes of range: a step that cannot judge must not lose it.
		if in.CacheResets.value() > 0 {
			g.instances.observe(t, nil, true, time.Duration(r.cfg.Settle), time.Duration(r.cfg.CacheRefill))
		}
		return false, false, ex
	}
	inbound = math.Max(0, inbound)
	season := g.hist.seasonalAt(t.Unix(), 0)
	ex.Inbound, ex.InboundUsual = inbound, season.Usual
	ex.InboundState = classifyInbound(inbound, season, r.cfg.IdleInbound)
	ex.InboundDays, ex.InboundRecent = season.Days, recentPoints*r.baselineStep
	ex.Instances = countInstances(in.Instances.Series)
	g.instancesApart = g.instancesApart || ex.Instances >= 2
	// A group missing from the replicas answer is a gap in that query, not zero instances.
	live, multiples := r.liveReplicas(g, in)
	g.instances.observe(t, live, in.CacheResets.value() > 0, time.Duration(r.cfg.Settle), time.Duration(r.cfg.CacheRefill))
	if ev := g.instances.event; ev != nil && ev.Last.Equal(t) {
		ev.Multiples = multiples
	}
	ex.Replicas, ex.UsualReplicas, ex.ReplicasInMultiples = g.instances.count(), g.usualReplicas, multiples
	r.followScaleOut(g, t, inbound)
	if ev, ok := g.instances.recent(t, r.transientMemory()); ok {
		ex.Transient = new(ev) // a copy: &ev put ev on the heap at every step, with or without an event
	}

	scale := 1.0
	if g.life.state == StateFiring {
		scale = r.cfg.Hysteresis
	}
	// Work per request that rose while the instances multiplied and inbound did not is the
	// third incident (per-pod state): it pages at a lower share than work nothing explains.
	grew := ex.replicasGrew()
	replicaScaling := grew && !g.loadDriven(ex.Replicas, ex.InboundState)
	if s := g.instances.scale; replicaScaling && s != nil && s.known() {
		ex.ScaledFrom, ex.InboundBeforeScaling, ex.InboundAfterScaling = s.From, s.InboundBefore, s.inboundAfter()
		ex.ProbesPerInstance = s.InboundPerInstance
	}
	g.learning = false
	best := -1
	averageHolds := false // a firing episode's work averaged over average_over is still unexplained
	stillRaised := false  // and its work now is over its thresholds, if not beyond the noise
	for s, sig := range r.cfg.Signals {
		work, present := math.NaN(), false
		if s < len(in.Signals) {
			work, present = in.Signals[s].Value, in.Signals[s].OK
		}
		switch {
		case present && !isNum(work):
			return false, false, ex
		case present:
			g.signals[s].seen = t
		case !g.signals[s].seen.IsZero() && t.Sub(g.signals[s].seen) < signalGone:
			return false, false, ex // a series that vanished is missing data, not zero work
		default:
			work = 0 // never reported: this group does none of this work
		}
		work = math.Max(0, work)
		if work == 0 && g.signals[s].seen.IsZero() {
			continue // the group does none of this work: nothing to learn or judge
		}
		expected, sigma, ok := g.expectedWork(s, sig, inbound, ex.Replicas)
		if !ok {
			g.learning = true
			continue
		}
		minShare := r.cfg.MinUnexplainedShare
		// A bounded signal's expectation already grows with the live instances, so load explains
		// none of what each instance does: instances added with their load or without it that
		// each do more (per-instance caches revoking each other's tokens once there are more
		// than the provider keeps) are the same finding (fleetsim tuning seeds 14783, 55326:
		// four scale-outs with inbound up 1.7-3x, mints per instance up 1.4-3.6x, missed).
		scaling := replicaScaling || (grew && sig.Relation == config.RelationBounded && !sig.ReplicaScalingOnly)
		if scaling {
			minShare = math.Min(minShare, replicaShare)
		}
		unexplained := work - expected
		share := 0.0
		if work > 0 {
			share = math.Max(0, unexplained) / work
		}
		over := share >= minShare*scale &&
			unexplained >= r.cfg.MinUnexplainedRate*scale &&
			(replicaScaling || !sig.ReplicaScalingOnly)
		b := over && unexplained > noiseSigmas*sigma*scale
		outlasted := scaling && r.outlasts(g, s, sig, t, work, expected, ex.Replicas, scale)
		switch {
		case g.life.state != StateFiring:
			r.dropHeld(g) // the next episode averages its own steps
		case sig.EventQuantum > 0:
			b = b || (over && g.stillOver(r, s, sig, t, work, expected, sigma, scale))
		}
		ex.instantBreach = ex.instantBreach || b
		if r.restoring && t.Equal(r.carriedBy) {
			g.signals[s].average = r.warmAverage(g, s, sig, t, ex.Replicas)
		}
		avgWork, avgExpected := g.signals[s].average.add(t, work, g.averagedExpected(s, sig, work, expected, sigma, ex.Replicas), r.averageDecay())
		// The work averaged over average_over unexplained, by the thresholds of the state (scale):
		// the gate to fire, and while firing what holds a lull (below).
		avgUnexplained := avgWork - avgExpected
		avgOver := r.cfg.AverageOver > 0 && avgUnexplained >= minShare*scale*avgWork && avgUnexplained >= r.cfg.MinUnexplainedRate*scale
		if g.life.state != StateFiring && r.cfg.AverageOver > 0 {
			// To fire, the work averaged over average_over must be unexplained too: the bursts
			// of a healthy fleet (a deploy's refreshes replayed at each token lifetime) average
			// out, a sustained incident does not. Resolving reads the instant, not the average,
			// which would keep a fixed incident open for hours: a fix shows at once, or once a
			// lull has been ruled out.
			//
			// A bounded signal's rate floor is the instant's, averaged over the steps the work has
			// been over it: an average that began at the expected work reaches a sustained excess
			// only after average_over, and held to the whole floor an idle thrash of 0.08 mints/s
			// waited eight minutes for its average to pass 0.01/s (fleetsim seed 21259). Its level
			// is already history's ninetieth percentile. A proportional signal's fit is medians,
			// and its marginal work must hold the floor over the hour: cold caches warming at low
			// traffic, misses just over it for twenty minutes, paged (seed 21328, healthy-15).
			floorShare := 1.0
			if sig.Relation == config.RelationBounded {
				floorShare = expWeight(g.life.breachLasted(t, r.interval), time.Duration(r.cfg.AverageOver))
			}
			avgRateOK := avgUnexplained >= r.cfg.MinUnexplainedRate*scale*floorShare
			gate := avgUnexplained >= minShare*scale*avgWork && avgRateOK &&
				(!g.peaksLearned || avgUnexplained > g.signals[s].averagePeak)
			if !b && over && gate && sig.EventQuantum > 0 && sigma <= countingNoise(expected, sig.EventQuantum) {
				// Work counted a few events per rate window (an idle thrash minting once a
				// minute) fails the instant's noise test at most steps, so for never runs out;
				// over average_over its events add up, so a step whose share and rate hold is
				// judged from the average against the counting noise of that longer window.
				q := averagedQuantum(sig.EventQuantum, time.Duration(r.cfg.AverageOver))
				b = avgUnexplained > noiseSigmas*countingNoise(avgExpected, q)
				ex.instantBreach = ex.instantBreach || b
			}
			// The band of history's bursts is for bursts: work whose hour's average is past what
			// history's recurring bursts reached is not one, and its instant is judged against the
			// spread of single points and counting noise alone (fleetsim seed 37789,
			// replica-scaling-27: Redis commands 3-5 times expected under a band from warm-ups).
			if !b && over && gate && unexplained > noiseSigmas*g.baseNoise(s, sig, expected, ex.Replicas) {
				b, ex.instantBreach = true, true
			}
			b = b && gate
		}
		if g.life.state == StateFiring && (replicaScaling || !sig.ReplicaScalingOnly) {
			averageHolds = averageHolds || avgOver
			stillRaised = stillRaised || over
		}
		b = b || outlasted
		ex.instantBreach = ex.instantBreach || outlasted
		if sig.Relation == config.RelationBounded && g.signals[s].levelOK && g.instances.settling(t, r.settleAfter(g.instances.event)) {
			excess, budget, spent := g.instances.warmUpSpent(s, len(r.cfg.Signals), (work-expected)*r.interval.Seconds(), g.signals[s].level.PerInstance)
			if spent && b && ex.warmUp == nil {
				ex.warmUp = &warmUp{excess: excess, budget: budget, unit: sig.Unit}
			}
		}
		// Headline the breaching signal with the largest unexplained share; near-ties go to the
		// signal listed first, which the rule's author put first for a reason. While nothing
		// breaches, an open episode's words stay on the signal it paged on: its resolve says that
		// work is back, not that another signal is (a resolve read "Redis commands back to
		// 20.9/s" after "token mints 3.89/s").
		paged := g.episode != nil && !b && !breach && sig.Name == g.episode.notifiedSignal
		onPaged := g.episode != nil && !breach && ex.Signal == g.episode.notifiedSignal
		if best < 0 || (b && !breach) || paged || (b == breach && !onPaged && share > ex.UnexplainedShare+shareTie) {
			best, breach = s, b
			ex.Signal, ex.Unit = sig.Name, sig.Unit
			ex.Observed, ex.Expected = work, expected
			ex.Unexplained, ex.UnexplainedShare = unexplained, share
			ex.Bounded = sig.Relation == config.RelationBounded
			ex.PerInstance = math.NaN()
			if ex.Bounded && g.signals[s].levelOK {
				ex.PerInstance = expected / float64(max(1, ex.Replicas))
			}
		}
	}
	// A stampede at each token expiry is quiet for a token lifetime between bursts, longer than
	// resolve_for: its episode resolved in the first quiet and paged again at the next burst
	// (fleetsim: most repeat pages). A fix is a change, and a deploy, a scaling event or a
	// cache reset shows; quiet after none of them, whose hour still holds, may be a lull. Nor
	// is a change's own quiet the fix until it has settled and resolve_for more has passed:
	// deploys come in the middle of incidents too, and the next stampede came 10 minutes
	// after one (fleetsim seeds 62171 and 23424, ttl-beyond-lifetime-25 and -04).
	// The average that holds a lull remembers about average_over: quiet longer than that has
	// outlived it (and a fix that showed no change resolves within it). recur_within caps it
	// too where shorter; 0 means no lulls. Work still over the thresholds is not quiet, only
	// hidden by the band of history's bursts: a lull it holds is not outlived.
	settle := time.Duration(r.cfg.Settle)
	fixed := g.instances.settledSince(g.life.lastBreach-int64(settle), t, settle+time.Duration(r.cfg.ResolveFor))
	lullFor := min(time.Duration(r.cfg.AverageOver), time.Duration(r.cfg.RecurWithin))
	outlived := lullFor <= 0 || !stillRaised && g.life.clearSince != 0 && time.Duration(t.UnixNano()-g.life.clearSince) >= lullFor
	ex.lull = averageHolds && !fixed && !outlived
	return breach, true, ex
}

// average is an exponentially weighted mean of one signal's work and expected work: one pair
// of numbers per group and signal instead of a window of samples.
type average struct {
	work, expected float64
	at             time.Time
}

// add folds one step in with d's time constant and returns the means.
func (a *average) add(t time.Time, work, expected float64, d decay) (float64, float64) {
	if a.at.IsZero() || d.tau <= 0 || !isNum(a.work) || !isNum(a.expected) {
		// A group's average starts from what is expected of it: first seen mid-burst, its
		// burst has to last to count (start-up replays the recent past, so episodes under
		// way are averaged in again).
		a.work, a.expected, a.at = expected, expected, t
		return a.work, a.expected
	}
	w := d.weight(t.Sub(a.at))
	a.work += w * (work - a.work)
	a.expected += w * (expected - a.expected)
	a.at = t
	return a.work, a.expected
}

// decay is an average's time constant tau, with the weight of a step at the interval most of
// its steps come at kept: math.Exp per group, signal and step was half of the replay of a
// week's history at each relearn (learnAveragePeaks).
type decay struct {
	tau, step  time.Duration
	stepWeight float64
}

func newDecay(tau, step time.Duration) decay {
	return decay{tau: tau, step: step, stepWeight: expWeight(step, tau)}
}

// averageDecay is the decay of the groups' averages (signalState.average): average_over, at the
// evaluation interval. It is made again when average_over is not the one it was made for: a
// rule's configuration does not change, but tests set average_over on a rule already made.
func (r *Rule) averageDecay() decay {
	if tau := time.Duration(r.cfg.AverageOver); r.liveDecay.tau != tau || r.liveDecay.step != r.interval {
		r.liveDecay = newDecay(tau, r.interval)
	}
	return r.liveDecay
}

// weight is the share in the average of a step dt after the one before.
func (d decay) weight(dt time.Duration) float64 {
	if dt == d.step {
		return d.stepWeight
	}
	return expWeight(dt, d.tau)
}

// expWeight is the share in an average of time constant tau of a step dt after the one before.
func expWeight(dt, tau time.Duration) float64 {
	return 1 - math.Exp(-dt.Seconds()/tau.Seconds())
}

// averagedExpected is the expected work a step adds to the average: what was expected, but no
// more than noiseSigmas of noise above the work done. Work that falls short of expected within
// the noise (a healthy fleet between the refresh bursts it averages out) offsets those bursts;
// a shortfall beyond it is the model overshooting (a surge, where the ratio through the origin
// overstates a fit with a floor), which explains no work at another step. Averaged whole, half
// an hour of surge kept per-pod caches scaled out after it under the gate for the hour it took
// to spend (fleetsim seed 60993, replica-scaling-02: missed).
//
// The fit's medians leave out a healthy fleet's bursts, which the average takes in: the
// average expects the history's mean excess over the fit on top (fitScratch.excessMean).
func (g *group) averagedExpected(s int, sig config.Signal, work, expected, sigma float64, instances int) float64 {
	n := 1.0
	if sig.PerInstance {
		n = float64(max(1, instances))
	}
	return math.Min(expected+g.signals[s].excessMean*n, work+noiseSigmas*sigma)
}

// averageSettled is how many of its time constants an average needs before where it began
// hardly shows: after three, e^-3 (5 %) of the starting point is left.
const averageSettled = 3

// warmAverage is signal s's average at t as if the group had been evaluated through the
// averageSettled time constants before it, from the history's steps there (at baseline_step,
// with the fits learned now): a restored process replays less than that (Rule.Memory). A step
// without its instance count takes the live one.
func (r *Rule) warmAverage(g *group, s int, sig config.Signal, t time.Time, live int) average {
	var a average
	tau := time.Duration(r.cfg.AverageOver)
	if tau <= 0 {
		return a
	}
	// The episode open at t (restored) and the for before it are averaged as queried: live, its
	// steps were averaged in, and it is the average that keeps it open through the quiet
	// between stampedes (a lull). Without them a restart resolved a cache TTL's stampedes,
	// open for four hours, in the first quiet and paged the next burst as new (fleetsim seed
	// 343, ttl-beyond-lifetime-16).
	open := time.Time{}
	if c := g.carry(); !c.Start.IsZero() && c.Start.Before(t) {
		open = c.Start.Add(-time.Duration(r.cfg.For))
	}
	d := newDecay(tau, r.baselineStep)
	for at := t.Add(-averageSettled * tau).Truncate(r.baselineStep); at.Before(t); at = at.Add(r.baselineStep) {
		// A step not stored, or an earlier episode's (not learned from), is not averaged either:
		// live, a resolve starts the average afresh; one under grown instances is, as live.
		raw := !open.IsZero() && !at.Before(open)
		if work, expected, _, ok := r.historyStep(g, s, sig, at, live, raw); ok {
			a.add(at, work, expected, d)
		}
	}
	return a
}

// historyStep is what signal s's history step at adds to its average, as a live step would
// (averagedExpected, with the fits learned now): the work and the expected work, whether the
// instances had grown past their usual number, and false for a step without work or inbound
// stored (or, unless raw, not learned from) or nothing learned yet. A step without its
// instance count takes live.
func (r *Rule) historyStep(g *group, s int, sig config.Signal, at time.Time, live int, raw bool) (work, expected float64, grown, ok bool) {
	read := g.hist.get
	if raw {
		read = g.hist.raw
	}
	work, okWork := read(at.Unix(), 1+s)
	inbound, okInbound := read(at.Unix(), 0)
	if !okWork || !okInbound {
		return 0, 0, false, false
	}
	instances := live
	if r.replicasCol >= 0 {
		if v, ok := r.instancesAtTime(g, at.Unix()); ok {
			instances = int(v)
		}
	}
	return g.averagedStep(s, sig, work, inbound, instances)
}

// averagedStep is historyStep from the step's stored work, inbound and instance count.
func (g *group) averagedStep(s int, sig config.Signal, work, inbound float64, instances int) (float64, float64, bool, bool) {
	expected, sigma, ok := g.expectedWork(s, sig, math.Max(0, inbound), instances)
	if !ok {
		return 0, 0, false, false
	}
	work = math.Max(0, work)
	return work, g.averagedExpected(s, sig, work, expected, sigma, instances), g.grown(float64(instances)), true
}

// loadDriven reports whether the live instances grew with their load: by the scale-out's
// inbound before and after it once decided, by inbound surging over its usual level before.
func (g *group) loadDriven(replicas int, inboundState string) bool {
	if s := g.instances.scale; s != nil && s.known() {
		return s.loadDriven(replicas)
	}
	return inboundState == InboundSurging
}

// followScaleOut records a group's new scale-out with the median inbound over the hour before it,
// averages inbound over the settle after its last change, and forgets it once the instances
// are back under replicaGrowth times what it started from.
func (r *Rule) followScaleOut(g *group, t time.Time, inbound float64) {
	it := &g.instances
	if ev := it.event; it.scale == nil && ev != nil && ev.Kind == TransientScaleOut && ev.From > 0 {
		it.scale = new(ScaleOut) // nil until the group's first scale-out (instanceTracker)
	}
	s := it.scale
	if s == nil {
		return
	}
	if ev := it.event; ev != nil && ev.Kind == TransientScaleOut && ev.From > 0 {
		switch {
		case !ev.Start.Equal(s.Start):
			*s = ScaleOut{Start: ev.Start, Last: ev.Last, From: ev.From, InboundBefore: r.inboundBefore(g, ev.Start), InboundPerInstance: r.inboundPerInstance(g)}
		case !ev.Last.Equal(s.Last): // the event went on: its inbound after starts again
			s.Last, s.InboundSum, s.InboundSteps, s.Decided = ev.Last, 0, 0, false
		}
	}
	if s.Start.IsZero() {
		return
	}
	if float64(it.count()) < replicaGrowth*float64(s.From) {
		it.scale = nil
		return
	}
	if s.Decided || t.Before(s.Last) {
		return
	}
	s.InboundSum += inbound
	s.InboundSteps++
	s.Decided = t.Sub(s.Last) >= time.Duration(r.cfg.Settle)
}

// inboundBefore is the median inbound of the history's steps in the hour before start, leaving
// out the last baseline step: an autoscaler acts on a rise some minutes into it, and a spiky
// service's one dip must not read as the level. Where the hour's median is a surge over the
// three hours' (surgeFactor), the three hours' is the level: an autoscaler that acts late on a
// long surge has the surge fill the hour (fleetsim seed 42179, replica-scaling-21: 4 -> 7 pods
// 38 minutes into a 4x surge read inbound 21/s before against 14/s after, as instances added
// with inbound flat, and paged at a deploy hours later). Not the lower of the two: a morning's
// ramp then reads as load (seed 20937, replica-scaling-01: 4 -> 10 pods, inbound 1.4/s over the
// three hours, 1.76/s over the hour, missed). NaN without any stored.
func (r *Rule) inboundBefore(g *group, start time.Time) float64 {
	hourFrom := start.Add(-scaleOutLookback).Truncate(r.baselineStep)
	before, earlier := r.inboundScratch[:0], 0
	for at := start.Add(-scaleOutLevelLookback).Truncate(r.baselineStep); at.Before(start.Add(-r.baselineStep)); at = at.Add(r.baselineStep) {
		if v, ok := g.hist.get(at.Unix(), 0); ok {
			before = append(before, math.Max(0, v))
			if at.Before(hourFrom) {
				earlier++ // the hour's steps are before[earlier:]
			}
		}
	}
	r.inboundScratch = before
	inHour := median(before[earlier:]) // reorders the hour's steps only; NaN without any
	if level := median(before); inHour > surgeFactor*level {
		return level // the hour was a surge
	}
	return inHour
}

// inboundPerInstance is the inbound each live instance brings whatever its users do (the
// health probes every pod answers): the quietest tenth of the history's inbound per instance,
// its nights, past the steps a scrape gap or a restart leaves short. Only where that is under
// probeShare of the usual inbound per instance: a service whose users never go quiet has
// them in its quietest tenth too (fleetsim tuning seed 51888, healthy-09: 10 requests/s per pod
// at its quietest and 11 usually, a surge's scale-out then read as instances added with
// nothing to drive them). 0 where unknown or not told apart from users.
func (r *Rule) inboundPerInstance(g *group) float64 {
	if r.replicasCol < 0 {
		return 0
	}
	per := r.inboundScratch[:0]
	g.hist.each(func(i int) {
		if n, in := r.instancesAt(g, i), g.hist.at(i, 0); isNum(n) && n > 0 && isNum(in) {
			per = append(per, math.Max(0, in)/n)
		}
	})
	r.inboundScratch = per
	if len(per) < minLearnPoints {
		return 0
	}
	quietest := nth(per, len(per)/probeQuantile)
	if quietest > probeShare*median(per) {
		return 0
	}
	return quietest
}

// probeQuantile: inboundPerInstance reads the history's 1/probeQuantile quantile. probeShare:
// the most of the usual inbound per instance that it takes for probes. Users at a twentieth of
// their usual at the quietest hours are a strongly diurnal service's nights (a daily swing of
// 0.8 on a weekend at 0.3 of weekdays goes to 0.09 of the median), where the two mix.
const (
	probeQuantile = 10
	probeShare    = 0.05
)

// scaleOutLookback is how far back inbound before a scale-out is read: long enough to average
// out its noise over a few baseline steps, short enough to stay the same time of day.
// scaleOutLevelLookback is the longer look for the level a late autoscaler's surge hides.
const (
	scaleOutLookback      = time.Hour
	scaleOutLevelLookback = 3 * time.Hour
)

// replicaShare is the unexplained share that pages while the instances have grown by
// replicaGrowth over their usual number with inbound not surging: per-pod state multiplies
// work by the replicas added, so a scale-out from 2 to 6 can raise work by a third to several
// times without any of it being unexplained by a 50 % share.
const replicaShare = 0.25

// replicasGrew reports whether the live instances are replicaGrowth times their usual number.
func (ex *Explanation) replicasGrew() bool {
	return isNum(ex.UsualReplicas) && ex.UsualReplicas > 0 && float64(ex.Replicas) >= replicaGrowth*ex.UsualReplicas
}

// outlasts reports whether signal s's work, raised while the instances are grown (beyond what
// inbound and the instances explain by replicaShare and beyond the base noise, without the band
// history's bursts taught), has been since the scale-out and for longer than the longest such
// excursion the group's history came back down from, by a baseline step (history's resolution).
//
// New pods warming per-pod caches raise work as much as per-pod caches that stay hot, often
// more (fleetsim tuning seed 32652, replica-scaling-16: Redis commands 5x for an hour after
// each healthy deploy, 1.9x for five hours after a scale-out from 14 to 25 pods with per-pod
// local caches); the band and the average's gate, both heights, hid the second behind the
// first. How long each lasts tells them apart.
func (r *Rule) outlasts(g *group, s int, sig config.Signal, t time.Time, work, expected float64, instances int, scale float64) bool {
	if !g.raised(s, sig, work, expected, instances, r.cfg.MinUnexplainedRate*scale, scale) {
		return false
	}
	from, ok := r.excursionFrom(g, s, sig, t, scale)
	return ok && t.Sub(from) >= g.signals[s].longestExcursion+r.baselineStep
}

// excursionFrom is when signal s's excursion under way at t began: the baseline step after the
// latest history step before t whose instances had not grown, where every step since had
// grown instances and raised work (rawStep). It is read from the history, not followed step by
// step, so that a process restored from its state in Prometheus, which replays less than an
// excursion may last, finds the same start. ok is false where the instances had grown with the
// work unraised past their first grown step (work per request that wanders from its fit hours
// after a scale-out is not the instances': fleetsim tuning seed 50603, Redis commands flat
// while inbound swung, 18 hours after one) or a step is missing.
func (r *Rule) excursionFrom(g *group, s int, sig config.Signal, t time.Time, scale float64) (time.Time, bool) {
	oldest := t.Add(-r.historyLen)
	// The step at t itself may not be stored yet: the walk starts before it.
	for at := t.Add(-1).Truncate(r.baselineStep); at.After(oldest); at = at.Add(-r.baselineStep) {
		grown, raised, ok := r.rawStep(g, s, sig, at, scale)
		switch {
		case !ok:
			return time.Time{}, false
		case !grown:
			return at.Add(r.baselineStep), true
		case !raised:
			// The first step with grown instances averages its work over the moment they grew
			// (StepAveraged): what came before dilutes it, so it begins the excursion unraised.
			if grown, _, ok := r.rawStep(g, s, sig, at.Add(-r.baselineStep), scale); ok && !grown {
				return at, true
			}
			return time.Time{}, false
		}
	}
	return time.Time{}, false
}

// rawStep says whether history step at had grown instances and signal s's work raised
// (group.raised, thresholds scaled by scale), from the values as queried: steps a process
// did not learn from (an episode's, a transient's settling, grown instances) are masked in its
// own history and not in one read back at start-up, and the two must agree. ok is false where
// the step, its work, inbound or instance count is missing or nothing is learned yet.
func (r *Rule) rawStep(g *group, s int, sig config.Signal, at time.Time, scale float64) (grown, raised, ok bool) {
	if r.replicasCol < 0 {
		return false, false, false
	}
	work, okWork := g.hist.raw(at.Unix(), 1+s)
	inbound, okInbound := g.hist.raw(at.Unix(), 0)
	count, okCount := r.instancesAtTime(g, at.Unix())
	if !okWork || !okInbound || !okCount {
		return false, false, false
	}
	instances := int(count)
	expected, _, ok := g.expectedWork(s, sig, math.Max(0, inbound), instances)
	if !ok {
		return false, false, false
	}
	return g.grown(count), g.raised(s, sig, math.Max(0, work), expected, instances, r.cfg.MinUnexplainedRate*scale, scale), true
}

// raised reports whether work is beyond expected by replicaShare of it, by minRate and by
// noiseSigmas of the base noise, all scaled by scale.
func (g *group) raised(s int, sig config.Signal, work, expected float64, instances int, minRate, scale float64) bool {
	unexplained := work - expected
	return work > 0 && unexplained >= replicaShare*scale*work && unexplained >= minRate &&
		unexplained > noiseSigmas*scale*g.baseNoise(s, sig, expected, instances)
}

// transientMemory is how long after its last change an event is still named in explanations:
// the longer settle time plus the rule's for, so an episode that fires once a Transient has
// settled names the event it followed.
func (r *Rule) transientMemory() time.Duration {
	return max(time.Duration(r.cfg.Settle), time.Duration(r.cfg.DeploySettle)) + time.Duration(r.cfg.For)
}

// settleAfter is how long after its last change event e holds paging back: deploy_settle for a
// rolling deploy, settle for anything else (and for none).
func (r *Rule) settleAfter(e *Transient) time.Duration {
	if e != nil && e.Kind == TransientDeploy && r.cfg.DeploySettle > 0 {
		return time.Duration(r.cfg.DeploySettle)
	}
	return time.Duration(r.cfg.Settle)
}

// shareTie is how much larger an unexplained share must be to take the headline from an
// earlier signal.
const shareTie = 0.05

// countInstances counts the instances doing the work (value above zero) in a breakdown.
func countInstances(vs Values) int {
	n := 0
	for _, v := range vs {
		if isNum(v) && v > 0 {
			n++
		}
	}
	return n
}

// stillOver judges a firing episode's step that fails only the noise test from the average of
// such steps over resolve_for (its time constant), against the counting noise of a window of the
// rate's own plus twice that: a signal whose rate window holds a handful of events (token cache
// misses at 1–9 per 2 minutes) passed and failed the noise test from step to step, resolved on
// a quiet stretch and fired again. Steps that breach outright are not folded in (they do not
// ask), so the episode stays open only while even its quiet steps stay over the longer window's
// noise. It is asked only where the share and rate still hold, so a fix, which takes them down,
// still shows at once.
func (g *group) stillOver(r *Rule, s int, sig config.Signal, t time.Time, work, expected, sigma, scale float64) bool {
	a := &r.heldOf(g)[s]
	tau := time.Duration(r.cfg.ResolveFor)
	if a.at.IsZero() || tau <= 0 {
		a.work, a.expected, a.at = work, expected, t
	} else {
		w := expWeight(t.Sub(a.at), tau)
		a.work += w * (work - a.work)
		a.expected += w * (expected - a.expected)
		a.at = t
	}
	if sigma > countingNoise(expected, sig.EventQuantum) {
		return false // the fit's own spread, not counting, sets the noise
	}
	return a.work-a.expected > noiseSigmas*countingNoise(a.expected, averagedQuantum(sig.EventQuantum, tau))*scale
}

// averagedQuantum is what one event adds to a rate of quantum per event averaged with time
// constant tau: the window the average reads is the rate's own plus about twice tau.
func averagedQuantum(quantum float64, tau time.Duration) float64 {
	return 1 / (1/quantum + 2*tau.Seconds())
}
