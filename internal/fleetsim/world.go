package fleetsim

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emergent-sh/emergent/internal/synth"
)

// Scenarios (spec "Incidents") and the control scenario.
const (
	scHealthy         = "healthy"
	scTokenThrash     = "token_thrash"
	scTokenThrashIdle = "token_thrash_idle"
	scReplicaScaling  = "replica_scaling"
	scTTLBeyond       = "ttl_beyond_lifetime"
	scFlushOnWrite    = "flush_on_write"
	scFlushCron       = "flush_cron"
)

var incidentScenarios = []string{scTokenThrash, scTokenThrashIdle, scReplicaScaling, scTTLBeyond, scFlushOnWrite, scFlushCron}

// Incident kinds.
const (
	kindSelf  = "self_generated_traffic"
	kindFlush = "flush_storm"
)

// Token cache placements.
const (
	placeShared     = "shared"
	placePerPod     = "per_pod"
	placePerProcess = "per_process"
)

const (
	incidentShare   = 0.45     // spec: about 45 % of services carry one incident
	nabShare        = 0.2      // spec: a fifth of the services take their inbound shape from NAB
	aggregatedShare = 0.15     // spec: 15 % of services export through one aggregating endpoint
	maxDraws        = 200      // redraws before an incident service falls back to healthy: only hopeless scenarios exhaust it
	minExtra        = 0.5 / 60 // spec: under 0.5 extra mints (or commands) per minute an incident is negligible (per second here)
	settleCap       = 2 * 3600 // spec: a control's transient is capped at 2 h
	day             = 86400.0  // seconds in a day
	hitSkew         = 0.25     // hit ratio ∝ (keys/steady keys)^0.25: access is skewed, hot keys come back first
	minKeyspace     = 10.0     // even an idle service keeps a handful of keys
	flatWithin      = 0.2      // spec: inbound "flat" is within ±20 %
	localMoreFactor = 1.5      // spec: "materially more" Redis commands per request is ≥ 1.5×
	snapshotMin     = 300.0    // RDB snapshots every 5–15 min, a common save policy
	snapshotMax     = 900.0    // upper end of the snapshot period
	redisAgeMax     = 30 * day // Redis has been up for at most a month when the data starts
	podAgeMin       = 3600.0   // pods alive at the start have run at least an hour
	podAgeMax       = 3 * day  // and at most three days (deploys are daily)
	gapPodShare     = 0.5      // a scrape gap hits one pod half the time, the exporter or the whole service otherwise
	quietMaxPerDay  = 0.5      // healthy services' users leave for hours at most every other day
	runToEndShare   = 0.1      // an incident runs to the end of the data one time in ten
	quietMaxFactor  = 0.02     // spec: users gone means demand at 0–2 % of usual
)

// params are a service's drawn parameters (times in seconds).
type params struct {
	pods       int
	aggregated bool
	base       float64 // mean user demand, req/s
	amp, phase float64 // daily amplitude; phase as a fraction of a day
	weekend    float64 // weekend demand relative to weekdays
	sigma      float64 // lognormal noise per 5 min
	health     float64 // probe period
	fTok       float64 // share of user requests that need a token
	worker     float64 // background worker period per pod, 0 = none
	life       float64 // token lifetime
	margin     float64 // cache TTL = life − margin
	placement  string
	cpp        int // caches per pod (per_process)
	k          int // provider's active tokens per credential, 0 = unlimited
	keysPerReq float64
	hit        float64 // Redis hit ratio when warm
	dataTTL    float64
	keyspace   float64 // Redis keys at the median demand
	local      bool    // per-pod local data cache in front of Redis
	localTTL   float64
	warmKeys   float64
	upFrac     float64 // uploads per user request
	writeKeys  float64 // keys an upload touches
	writeDel   bool    // an upload DELs its keys (else SETs them)
	setExpire  bool    // a miss is SET then EXPIRE (else SET EX)
	persist    bool    // Redis restarts from an RDB snapshot
	flushAll   bool    // a flush is FLUSHALL (else FLUSHDB)
	snapEvery  float64
	redisAge   float64
	nab        *nabSeries
	nabAnchor  float64 // NAB time (unix) of the data's start
	nabWrap    float64 // whole weeks of NAB available after the anchor
}

// cacheCfg is the token-cache configuration a deploy ships.
type cacheCfg struct {
	placement    string
	cpp          int
	ttl          float64
	noRefresh    bool // the 401 path re-mints without refreshing the entry
	flushOnWrite bool // every upload FLUSHes Redis
}

// perPod is how many token caches a pod of this configuration owns.
func (c cacheCfg) perPod() int {
	switch c.placement {
	case placePerPod:
		return 1
	case placePerProcess:
		return c.cpp
	}
	return 0
}

// caches is how many token caches a service of pods pods has.
func (c cacheCfg) caches(pods int) int {
	if c.placement == placeShared {
		return 1
	}
	return pods * c.perPod()
}

// Action kinds: what changes a service at a time.
const (
	actDeploy = iota
	actScale
	actAppRestart
	actGap
	actRedisRestart
	actFlush
	actCronStart
	actCronStop
)

// action is a scheduled change. Pod-level actions sit on the scrape grid.
type action struct {
	t        float64
	kind     int
	cfg      int     // deploy: configuration shipped, -1 = unchanged
	interval float64 // deploy: seconds between pod replacements
	pods     int     // scale: target
	u        float64 // which pod (app restart, gap)
	dur      float64 // gap or outage length
	target   int     // gap: gapPod, gapExporter, gapService
	all      bool    // flush: FLUSHALL
	period   float64 // cron period
	inc      *incident
	end      bool // the action ends inc (else starts it)
	ctl      *control
}

// Scrape gap targets.
const (
	gapPod = iota
	gapExporter
	gapService
)

// incident is one labelled incident: planned when drawn, its start and end set by the
// simulation when the change takes effect, its flushes recorded by it.
type incident struct {
	scenario, kind     string
	planStart, planEnd float64
	start, end         float64
	flushes            []float64
	staleMints         int64 // ttl_beyond_lifetime: mints of stale entries within [start, end], counted by the simulation
}

// control is one healthy event; end is set when its transient settles.
type control struct {
	typ        string
	start, end float64
	settle     float64 // added to a deploy's completion
}

// episode multiplies user demand: a ramp from 1 to factor over [from, from+ramp], factor until
// to, a ramp back over [to, to+ramp].
type episode struct {
	from, to, ramp, factor float64
}

func (e episode) at(t float64) float64 {
	switch {
	case t <= e.from || t >= e.to+e.ramp:
		return 1
	case t < e.from+e.ramp:
		return 1 + (e.factor-1)*(t-e.from)/e.ramp
	case t <= e.to:
		return e.factor
	}
	return e.factor + (1-e.factor)*(t-e.to)/e.ramp
}

// world is one service as drawn: parameters, configurations, actions, demand episodes and the
// truth it is meant to carry.
type world struct {
	t0       float64 // unix start of the data
	name     string
	scenario string
	p        params
	cfgs     []cacheCfg // 0: as drawn; 1: the incident's; 2: its revert
	incs     []*incident
	acts     []action
	eps      []episode
	ctls     []*control
	notes    []string
	extra    map[string]string
	hash     string
	simSeed  [2]uint64
}

// nabSeries is a loaded NAB series with its median rate.
type nabSeries struct {
	*synth.NAB
	median float64
}

// drawWorld draws service idx from its own generator, seeded from (seed, idx).
func drawWorld(seed uint64, idx int, tl *timeline, nabs []*nabSeries) *world {
	r := rand.New(rand.NewPCG(seed, uint64(idx)))
	sc := scHealthy
	if r.Float64() < incidentShare {
		sc = incidentScenarios[r.IntN(len(incidentScenarios))]
	}
	wantNAB, nabPick, nabU := r.Float64() < nabShare, r.IntN(1<<16), r.Float64()
	var w *world
	drawn := sc
	for attempt := 0; ; attempt++ {
		w = &world{t0: tl.start, scenario: sc, extra: map[string]string{}}
		w.p = drawParams(r)
		if wantNAB && len(nabs) > 0 {
			w.setNAB(nabs[nabPick%len(nabs)], nabU, tl)
		}
		w.p.keyspace = math.Max(minKeyspace, math.Min(w.p.keyspace, w.p.base*w.p.keysPerReq*w.p.dataTTL))
		w.cfgs = []cacheCfg{{placement: w.p.placement, cpp: w.p.cpp, ttl: w.p.life - w.p.margin}}
		if sc == scHealthy || w.drawIncident(r, tl) {
			break
		}
		if attempt == maxDraws {
			sc = scHealthy
		}
	}
	w.name = fmt.Sprintf("%s-%02d", strings.ReplaceAll(sc, "_", "-"), idx)
	if sc != drawn {
		w.notes = append(w.notes, fmt.Sprintf("%s: drew %s, but no draw in %d made it physically visible", w.name, drawn, maxDraws))
	}
	w.hash = k8sName(r, 10)
	w.drawEvents(r, tl)
	slices.SortStableFunc(w.acts, func(a, b action) int { return cmp.Compare(a.t, b.t) })
	w.simSeed = [2]uint64{r.Uint64(), r.Uint64()}
	return w
}

// drawParams draws a service's parameters from the spec's ranges. A service whose provider keeps
// fewer tokens than it has caches would thrash from before the data starts, with no onset to
// label, so K is redrawn until it covers the caches (unlimited after 100 tries).
func drawParams(r *rand.Rand) params {
	p := params{
		pods:       int(math.Round(logUniform(r, 2, 25))),
		aggregated: r.Float64() < aggregatedShare,
		base:       logUniform(r, 0.01, 300),
		amp:        0.8 * r.Float64(),
		phase:      r.Float64(),
		weekend:    uniform(r, 0.3, 1),
		sigma:      uniform(r, 0.05, 0.3),
		health:     uniform(r, 5, 30),
		fTok:       uniform(r, 0.2, 1),
	}
	if r.Float64() >= 0.4 { // spec: 40 % of services have no background worker
		p.worker = logUniform(r, 10, 600)
	}
	p.life = 60 * math.Round(logUniform(r, 5, 120))
	p.margin = 60 * r.Float64()
	p.placement, p.cpp = drawPlacement(r)
	p.k = drawK(r, 1)
	cfg := cacheCfg{placement: p.placement, cpp: p.cpp}
	for try := 0; p.k > 0 && p.k < cfg.caches(p.pods); try++ {
		if p.k = drawK(r, 1); try == 100 {
			p.k = 0
		}
	}
	p.keysPerReq = float64(1 + r.IntN(20))
	p.hit = uniform(r, 0.7, 0.99)
	p.dataTTL = uniform(r, 60, 3600)
	p.keyspace = logUniform(r, 1e3, 2e6)
	p.local = r.Float64() < 0.25
	p.localTTL = uniform(r, 60, 1800)
	p.warmKeys = math.Round(logUniform(r, 100, 20000))
	p.upFrac = 0.3 * r.Float64()
	p.writeKeys = float64(1 + r.IntN(5))
	p.writeDel = r.Float64() < 0.5
	p.setExpire = r.Float64() < 0.5
	p.persist = r.Float64() < 0.4
	p.flushAll = r.Float64() < 0.5
	p.snapEvery = uniform(r, snapshotMin, snapshotMax)
	p.redisAge = uniform(r, 3600, redisAgeMax)
	return p
}

// drawPlacement draws a token cache placement: shared 45 %, per_pod 25 %, per_process 30 %.
func drawPlacement(r *rand.Rand) (string, int) {
	switch u := r.Float64(); {
	case u < 0.45:
		return placeShared, 1
	case u < 0.70:
		return placePerPod, 1
	}
	return placePerProcess, 1 + r.IntN(16)
}

// drawLocalPlacement draws a non-shared placement in the spec's proportions (25:30).
func drawLocalPlacement(r *rand.Rand) (string, int) {
	if r.Float64() < 25.0/55 {
		return placePerPod, 1
	}
	return placePerProcess, 1 + r.IntN(16)
}

// drawK draws the provider's active-token limit: 1 (20 %), 2 (15 %), 5–50 (25 %), unlimited
// (40 %). With finite = 0.6 it draws among the finite ones only.
func drawK(r *rand.Rand, finite float64) int {
	switch u := finite * r.Float64(); {
	case u < 0.20:
		return 1
	case u < 0.35:
		return 2
	case u < 0.60:
		return 5 + r.IntN(46)
	}
	return 0
}

// setNAB makes the service's inbound follow n, aligned on weekday and time of day.
func (w *world) setNAB(n *nabSeries, u float64, tl *timeline) {
	st := time.Unix(int64(tl.start), 0).UTC()
	a := n.Start()
	a = time.Date(a.Year(), a.Month(), a.Day(), st.Hour(), st.Minute(), st.Second(), 0, time.UTC)
	for a.Before(n.Start()) || a.Weekday() != st.Weekday() {
		a = a.Add(24 * time.Hour)
	}
	avail := n.End().Sub(a).Seconds()
	weeks := math.Floor(avail / (7 * day))
	if weeks < 1 {
		return // shorter than a week after alignment: no NAB shape
	}
	span := tl.end - tl.start
	if extra := math.Floor((avail - span) / (7 * day)); extra >= 1 {
		a = a.Add(time.Duration(math.Floor(u*(extra+1))) * 7 * 24 * time.Hour)
	}
	w.p.nab, w.p.nabAnchor, w.p.nabWrap = n, float64(a.Unix()), weeks*7*day
}

// demand is the service's expected user demand (req/s) at t: the level, the daily and weekly
// shape (or the NAB series), and the episodes drawn so far. Noise is added by the simulation.
func (w *world) demand(t float64) float64 {
	p := &w.p
	var d float64
	if p.nab != nil {
		x := p.nabAnchor + math.Mod(t-w.t0, p.nabWrap)
		v := p.nab.RateAt(time.Unix(int64(x), 0))
		if math.IsNaN(v) {
			v = p.nab.median // a hole in the series: the median level
		}
		d = p.base * v / p.nab.median
	} else {
		d = p.base * (1 + p.amp*math.Sin(2*math.Pi*(t/day-p.phase))) * w.weekendFactor(t)
	}
	for _, e := range w.eps {
		d *= e.at(t)
	}
	return d
}

// weekendFactor is 1 on weekdays and p.weekend on Saturday and Sunday, blended over 3 h
// around midnight (UTC).
func (w *world) weekendFactor(t float64) float64 {
	g := func(t float64) float64 {
		wd := (int64(math.Floor(t/day)) + 4) % 7 // 1 Jan 1970 was a Thursday
		if wd == 0 || wd == 6 {
			return w.p.weekend
		}
		return 1
	}
	const blend = 1.5 * 3600 // half-width of the blend
	h := math.Mod(t, day)
	switch {
	case h < blend:
		f := (h + blend) / (2 * blend)
		return g(t-day)*(1-f) + g(t)*f
	case h > day-blend:
		f := (h - (day - blend)) / (2 * blend)
		return g(t)*(1-f) + g(t+day)*f
	}
	return g(t)
}

// tokUse is the expected token uses per second with pods pods.
func (w *world) tokUse(t float64, pods int) float64 {
	u := w.demand(t) * (1 - w.p.upFrac) * w.p.fTok
	if w.p.worker > 0 {
		u += float64(pods) / w.p.worker
	}
	return u
}

// meanOver averages f over [from, to] at 5-minute samples.
func meanOver(from, to float64, f func(t float64) float64) float64 {
	var sum float64
	n := 0
	for t := from; t <= to; t += 300 {
		sum += f(t)
		n++
	}
	if n == 0 {
		return f(from)
	}
	return sum / float64(n)
}

// loopExtra estimates a revocation loop's extra mints per second over [from, to] from the
// generator's expected rates: with c caches used alike and K active tokens a use hits only
// when its cache holds one of the K newest tokens (≈ K/c); the healthy baseline mints once per
// cache per TTL (cBase caches), and never more often than it is used.
func (w *world) loopExtra(from, to float64, pods, c, cBase int, ttlBase float64) float64 {
	k := float64(w.p.k)
	return meanOver(from, to, func(t float64) float64 {
		u := w.tokUse(t, pods)
		return math.Max(0, u*(1-k/float64(c))-math.Min(u, float64(cBase)/ttlBase))
	})
}

// redisGets is the expected Redis GET rate of the data cache with pods pods at demand d: every
// key read, or, behind a per-pod local cache with Poisson reads over the keyspace, only the
// local misses: a pod reading a keys/s misses 1/(1 + a·TTL/keys) of them.
func (w *world) redisGets(d float64, pods int) float64 {
	p := &w.p
	g := d * p.keysPerReq
	if p.local {
		a := g / float64(pods)
		g /= 1 + a*p.localTTL/p.keyspace
	}
	return g
}

// cmdsPerGet is how many Redis commands one GET of the data cache costs: the GET, and on a miss
// a SET (and EXPIRE).
func (w *world) cmdsPerGet() float64 {
	n := 1.0
	if w.p.setExpire {
		n = 2
	}
	return 1 + (1-w.p.hit)*n
}

// flushExtra estimates the extra SETs per second of a flush every interval seconds at t: after
// a flush every read of a key that was present misses and re-SETs it, at most once per key.
func (w *world) flushExtra(t, interval float64) float64 {
	d := w.demand(t)
	keys := w.p.keyspace * math.Sqrt(d/w.p.base)
	return math.Min(keys, w.redisGets(d, w.p.pods)*interval) * w.p.hit / interval
}

// placeSpan draws an incident span of duration lo–hi (log-uniform) starting at least 2 h after
// eval_from; one in ten, or when the duration does not fit, it runs to the end of the data.
func placeSpan(r *rand.Rand, tl *timeline, lo, hi float64) (s, e float64, toEnd bool) {
	d := logUniform(r, lo, hi)
	earliest := tl.evalFrom + 2*3600
	if r.Float64() < runToEndShare || earliest+d > tl.end {
		return uniform(r, earliest, math.Max(earliest, tl.end-lo)), tl.end, true
	}
	s = uniform(r, earliest, tl.end-d)
	return s, s + d, false
}

// drawIncident draws the service's incident; it reports false when the draw is physically
// impossible or negligible, and the caller redraws the service.
func (w *world) drawIncident(r *rand.Rand, tl *timeline) bool {
	p := &w.p
	sc := w.scenario
	inc := &incident{scenario: sc, kind: kindSelf}
	if sc == scFlushOnWrite || sc == scFlushCron {
		inc.kind = kindFlush
	}
	var lo, hi float64
	switch sc {
	case scTokenThrash, scTokenThrashIdle:
		lo, hi = 1800, 12*3600
	case scReplicaScaling:
		lo, hi = 1800, 8*3600
	case scTTLBeyond:
		lo, hi = 3600, 12*3600
	case scFlushOnWrite:
		lo, hi = 1200, 6*3600
	case scFlushCron:
		lo, hi = 1200, 4*3600
	}
	s, e, toEnd := placeSpan(r, tl, lo, hi)
	inc.planStart, inc.planEnd = s, e
	cfg0 := w.cfgs[0]
	deployed := func(cfg cacheCfg) { // a deploy that completes at s, and one back that completes at e
		w.cfgs = append(w.cfgs, cfg, cfg0)
		iv := uniform(r, 20, 120)
		roll := float64(p.pods) * iv
		w.acts = append(w.acts, action{t: tl.q(s - roll), kind: actDeploy, cfg: 1, interval: iv, inc: inc})
		if !toEnd {
			iv2 := uniform(r, 20, 120)
			tb := math.Max(tl.q(e-float64(p.pods)*iv2), tl.q(s)+tl.dt)
			w.acts = append(w.acts, action{t: tb, kind: actDeploy, cfg: 2, interval: iv2, inc: inc, end: true})
		}
	}
	switch sc {
	case scTokenThrash, scTokenThrashIdle:
		cfg0.placement, cfg0.cpp = placeShared, 1
		w.cfgs[0], p.placement, p.cpp = cfg0, placeShared, 1
		nc := cfg0
		nc.placement, nc.cpp = drawLocalPlacement(r)
		p.k = drawK(r, 0.6)
		c := nc.caches(p.pods)
		if p.k >= c {
			return false
		}
		if sc == scTokenThrashIdle {
			if p.worker == 0 {
				p.worker = logUniform(r, 10, 600)
			}
			ramp := uniform(r, 300, 1800)
			q := quietMaxFactor * r.Float64()
			from := s - ramp - uniform(r, 600, 7200)
			to := e + uniform(r, 0, 7200)
			if toEnd {
				to = tl.end + 3600
			}
			w.eps = append(w.eps, episode{from: from, to: to, ramp: ramp, factor: q})
			w.extra["quiet_factor"] = fmtF(q)
			if w.demand(s) >= 0.05*p.base {
				return false
			}
		}
		if w.loopExtra(s, e, p.pods, c, 1, cfg0.ttl) < minExtra {
			return false
		}
		w.extra["new_placement"] = nc.placement
		if nc.placement == placePerProcess {
			w.extra["new_caches_per_pod"] = strconv.Itoa(nc.cpp)
		}
		w.extra["new_caches"] = strconv.Itoa(c)
		deployed(nc)
	case scReplicaScaling:
		cfg0.placement, cfg0.cpp = drawLocalPlacement(r)
		w.cfgs[0], p.placement, p.cpp = cfg0, cfg0.placement, cfg0.cpp
		p1 := min(25, int(math.Round(float64(p.pods)*uniform(r, 1.5, 3))))
		c0, c1 := cfg0.caches(p.pods), cfg0.caches(p1)
		variant := r.Float64()
		wantTok, wantLocal := variant < 0.75, variant >= 0.5 // tokens 50 %, local cache 25 %, both 25 %
		if p1 <= p.pods {
			return false
		}
		if wantTok {
			p.k = drawK(r, 0.6)
			if p.k < c0 || p.k >= c1 {
				return false
			}
		} else if p.k > 0 && p.k < c0 {
			return false
		}
		if wantLocal {
			p.local = true
		}
		loop := p.k > 0 && c1 > p.k && w.loopExtra(s, e, p1, c1, c1, cfg0.ttl) >= minExtra
		ratio := w.redisGets(w.demand(s), p1) / w.redisGets(w.demand(s), p.pods)
		local := p.local && ratio >= localMoreFactor &&
			meanOver(s, e, func(t float64) float64 {
				return (w.redisGets(w.demand(t), p1) - w.redisGets(w.demand(t), p.pods)) * w.cmdsPerGet()
			}) >= minExtra
		if (wantTok && !loop) || (wantLocal && !local) {
			return false
		}
		var v []string
		if loop {
			v = append(v, "tokens")
		}
		if local {
			v = append(v, "local_cache")
			w.extra["redis_cmds_per_request_ratio"] = fmtF(ratio)
		}
		w.extra["variant"], w.extra["pods_after"], w.extra["caches_after"] = strings.Join(v, "+"), strconv.Itoa(p1), strconv.Itoa(c1)
		w.acts = append(w.acts, action{t: tl.q(s), kind: actScale, pods: p1, inc: inc})
		if !toEnd {
			w.acts = append(w.acts, action{t: tl.q(e), kind: actScale, pods: p.pods, inc: inc, end: true})
		}
	case scTTLBeyond:
		nc := cfg0
		nc.ttl, nc.noRefresh = p.life*uniform(r, 1.5, 4), true
		c := cfg0.caches(p.pods)
		extra := meanOver(s, e, func(t float64) float64 {
			u := w.tokUse(t, p.pods) / float64(c) // per cache; a cycle is the TTL plus the wait for the next use
			if u <= 0 {
				return 0
			}
			return float64(c) * u * (nc.ttl - p.life) / (nc.ttl + 1/u)
		})
		// A stale entry needs a token minted under the new code and then a lifetime: a shared
		// cache's first such mint comes after the deploy completes (up to one pod interval, 120 s,
		// and a step before s), a pod's caches start empty when the pod starts, at most pods ×
		// 120 s before s. An incident shorter than that can show no extra mint at all. The rest
		// is decided from the simulation's own count of stale-entry mints (labels).
		lead := 120 + 2*tl.dt
		if cfg0.placement != placeShared {
			lead = float64(p.pods)*120 + 2*tl.dt
		}
		if extra < minExtra || e-s+lead <= p.life {
			return false
		}
		w.extra["new_cache_ttl"] = fmtDur(nc.ttl)
		deployed(nc)
	case scFlushOnWrite:
		every := logUniform(r, 4, 300)
		if p.upFrac = 1 / every / p.base; p.upFrac > 0.3 { // uploads are at most 30 % of user requests
			return false
		}
		interval := func(t float64) float64 { return every * p.base / math.Max(w.demand(t), 1e-9) }
		if meanOver(s, e, func(t float64) float64 { return w.flushExtra(t, interval(t)) }) < minExtra ||
			meanOver(s, e, func(t float64) float64 { return 600 / interval(t) }) < 1 { // storms need a chance of three flushes in 10 min
			return false
		}
		nc := cfg0
		nc.flushOnWrite = true
		w.extra["upload_every"] = fmtDur(every)
		deployed(nc)
	case scFlushCron:
		period := 60 * float64(1+r.IntN(3))
		if meanOver(s, e, func(t float64) float64 { return w.flushExtra(t, period) }) < minExtra {
			return false
		}
		w.extra["cron_every"] = fmtDur(period)
		w.acts = append(w.acts, action{t: tl.q(s), kind: actCronStart, period: period, inc: inc})
		if !toEnd {
			w.acts = append(w.acts, action{t: tl.q(e), kind: actCronStop, inc: inc, end: true})
		}
	}
	w.incs = append(w.incs, inc)
	return true
}

// settleTok is how long a pod-level change takes to settle: one token lifetime (the slowest
// cache to refresh) or one local-cache TTL, capped at 2 h.
func (w *world) settleTok() float64 {
	s := w.p.life
	if w.p.local {
		s = math.Max(s, w.p.localTTL)
	}
	return math.Min(settleCap, s)
}

// addCtl records a control event.
func (w *world) addCtl(typ string, start, end float64) *control {
	c := &control{typ: typ, start: start, end: end}
	w.ctls = append(w.ctls, c)
	return c
}

// drawEvents draws the healthy life of the service at the spec's rates per day, and labels the
// scalings the physics turns into incidents.
func (w *world) drawEvents(r *rand.Rand, tl *timeline) {
	p := &w.p
	settle := w.settleTok()
	busyFrom, busyTo := math.Inf(1), math.Inf(-1) // the drawn incident's window: no healthy scaling in it
	if len(w.incs) > 0 {
		busyFrom, busyTo = w.incs[0].planStart-3*3600, w.incs[0].planEnd+2*3600
	}
	times := func(maxPerDay float64) []float64 {
		n := poisson(r, maxPerDay*r.Float64()*tl.days)
		ts := make([]float64, n)
		for i := range ts {
			ts[i] = uniform(r, tl.start, tl.end)
		}
		slices.Sort(ts)
		return ts
	}
	for _, t := range times(2) { // surges: inbound × 2–10 for 5–90 min
		ramp, dur, f := uniform(r, 60, 600), uniform(r, 300, 5400), uniform(r, 2, 10)
		if w.scenario == scTokenThrashIdle && t < busyTo && t+2*ramp+dur > busyFrom {
			continue // the users are gone for that episode
		}
		w.eps = append(w.eps, episode{from: t, to: t + ramp + dur, ramp: ramp, factor: f})
		w.addCtl("surge", t, t+2*ramp+dur+math.Min(settleCap, p.dataTTL))
	}
	if w.scenario == scHealthy { // users gone for hours: healthy, the contrast to token_thrash_idle
		for _, t := range times(quietMaxPerDay) {
			ramp, dur := uniform(r, 300, 1800), uniform(r, 3600, 12*3600)
			w.eps = append(w.eps, episode{from: t, to: t + ramp + dur, ramp: ramp, factor: quietMaxFactor * r.Float64()})
			w.addCtl("quiet", t, t+2*ramp+dur+math.Min(settleCap, p.dataTTL))
		}
	}
	for _, t := range times(4) {
		t = tl.q(t)
		w.acts = append(w.acts, action{t: t, kind: actDeploy, cfg: -1, interval: uniform(r, 20, 120),
			ctl: &control{typ: "deploy", start: t, settle: settle}})
		w.ctls = append(w.ctls, w.acts[len(w.acts)-1].ctl)
	}
	busy := math.Inf(-1)
	for _, t := range times(3 / 2.0) { // scaling events come in pairs (out and back in, or in and back out)
		if t < busy {
			continue
		}
		// Pairs: 50 % out on an inbound rise and back, 25 % scheduled out and back, 25 %
		// scheduled in and back out: half of all scale-outs follow a rise (spec).
		kind, f := r.Float64(), uniform(r, 1.5, 3)
		up := kind < 0.75
		p1 := scaled(p.pods, f, up)
		if p1 == p.pods {
			up = !up
			p1 = scaled(p.pods, f, up)
		}
		rise := up && kind < 0.5
		var tOut, tIn, from float64
		var ep episode
		if rise {
			ramp, plateau := uniform(r, 300, 1200), uniform(r, 1800, 4*3600)
			ep = episode{from: t, to: t + ramp + plateau, ramp: ramp, factor: float64(p1) / float64(p.pods) * uniform(r, 0.8, 1.2)}
			tOut, tIn = tl.q(t+ramp/2+uniform(r, 60, 300)), tl.q(ep.to+ramp+uniform(r, 300, 900))
		} else if d := logUniform(r, 1800, 8*3600); up {
			tOut, tIn = tl.q(t), tl.q(t+d)
		} else {
			tIn, tOut = tl.q(t), tl.q(t+d)
		}
		from = math.Min(t, math.Min(tOut, tIn))
		to := math.Max(tOut, tIn)
		if to > busyFrom && from < busyTo {
			continue
		}
		busy = to + settle
		if rise {
			w.eps = append(w.eps, ep)
		}
		var inc *incident
		if up {
			inc = w.scaleIncident(tl, tOut, tIn, p1, rise)
		}
		first, second := action{t: tOut, kind: actScale, pods: p1, inc: inc}, action{t: tIn, kind: actScale, pods: p.pods, inc: inc, end: true}
		if !up {
			first, second = action{t: tIn, kind: actScale, pods: p1}, action{t: tOut, kind: actScale, pods: p.pods}
		}
		if inc == nil {
			first.ctl = w.addCtl(map[bool]string{true: "scale_out", false: "scale_in"}[up], math.Min(first.t, from), first.t+settle)
			second.ctl = w.addCtl(map[bool]string{true: "scale_in", false: "scale_out"}[up], second.t, second.t+settle)
		}
		w.acts = append(w.acts, first, second)
	}
	for _, t := range times(1) { // Redis restarts, down 0–120 s
		w.acts = append(w.acts, action{t: t, kind: actRedisRestart, dur: 120 * r.Float64(), ctl: w.addCtl("redis_restart", t, 0)})
	}
	for _, t := range times(1) { // maintenance flushes
		w.acts = append(w.acts, action{t: t, kind: actFlush, all: r.Float64() < 0.5, ctl: w.addCtl("maintenance_flush", t, 0)})
	}
	for _, t := range times(2) { // scrape gaps of 1–20 min
		t = tl.q(t)
		target, dur := gapService, uniform(r, 60, 1200)
		if u := r.Float64(); u < gapPodShare {
			target = gapPod
		} else if u < (1+gapPodShare)/2 {
			target = gapExporter
		}
		w.acts = append(w.acts, action{t: t, kind: actGap, target: target, u: r.Float64(), dur: dur, ctl: w.addCtl("scrape_gap", t, t+dur)})
	}
	for _, t := range times(2) { // app restarts (OOM, PHP-FPM reload); the spec gives no rate, 0–2/day
		t = tl.q(t)
		w.acts = append(w.acts, action{t: t, kind: actAppRestart, u: r.Float64(), ctl: w.addCtl("app_restart", t, t+settle)})
	}
}

// scaled is pods × f (or ÷ f) within 2–25.
func scaled(pods int, f float64, up bool) int {
	if up {
		return min(25, int(math.Round(float64(pods)*f)))
	}
	return max(2, int(math.Round(float64(pods)/f)))
}

// scaleIncident labels a drawn healthy scale-out from p.pods to p1 over [tOut, tIn] when the
// physics makes it one (spec "Consistency rule"): token caches beyond K revoke each other, or,
// with inbound flat, per-pod local caches raise Redis commands per request ≥ 1.5×. It returns
// nil when the scale-out stays healthy or the extra work is negligible.
func (w *world) scaleIncident(tl *timeline, tOut, tIn float64, p1 int, rise bool) *incident {
	p := &w.p
	cfg := w.cfgs[0]
	end := math.Min(tIn, tl.end)
	if tOut >= tl.end {
		return nil
	}
	c0, c1 := cfg.caches(p.pods), cfg.caches(p1)
	loop := p.k > 0 && c1 > p.k
	flat := !rise && math.Abs(w.demand(tOut)/w.demand(tOut-1800)-1) <= flatWithin
	local := p.local && flat && w.redisGets(w.demand(tOut), p1)/w.redisGets(w.demand(tOut), p.pods) >= localMoreFactor
	if !loop && !local {
		return nil
	}
	var extra float64
	if loop {
		extra = w.loopExtra(tOut, end, p1, c1, c0, cfg.ttl)
	}
	if local {
		extra = math.Max(extra, meanOver(tOut, end, func(t float64) float64 {
			return (w.redisGets(w.demand(t), p1) - w.redisGets(w.demand(t), p.pods)) * w.cmdsPerGet()
		}))
	}
	if extra < minExtra {
		w.notes = append(w.notes, fmt.Sprintf("%s: the scale-out at %s to %d pods does more work per request, but under 0.5/min: not labelled",
			w.name, fmtTime(tOut), p1))
		return nil
	}
	inc := &incident{scenario: scReplicaScaling, kind: kindSelf, planStart: tOut, planEnd: end}
	w.incs = append(w.incs, inc)
	return inc
}

// paramMap renders the service's parameters for dataset.json.
func (w *world) paramMap() map[string]string {
	p := &w.p
	cfg := w.cfgs[0]
	m := map[string]string{
		"pods":               strconv.Itoa(p.pods),
		"aggregated":         strconv.FormatBool(p.aggregated),
		"base_rps":           fmtF(p.base),
		"daily_amplitude":    fmtF(p.amp),
		"daily_peak_utc":     fmtDur(math.Mod(p.phase+0.25, 1) * day),
		"weekend_factor":     fmtF(p.weekend),
		"noise_sigma":        fmtF(p.sigma),
		"health_probe_every": fmtDur(p.health),
		"token_fraction":     fmtF(p.fTok),
		"worker_every":       "none",
		"token_lifetime":     fmtDur(p.life),
		"cache_ttl":          fmtDur(cfg.ttl),
		"placement":          cfg.placement,
		"caches":             strconv.Itoa(cfg.caches(p.pods)),
		"provider_k":         "unlimited",
		"keys_per_request":   fmtF(p.keysPerReq),
		"redis_hit_ratio":    fmtF(p.hit),
		"data_ttl":           fmtDur(p.dataTTL),
		"keyspace":           fmtF(math.Round(p.keyspace)),
		"local_cache":        "none",
		"upload_fraction":    fmtF(p.upFrac),
		"write_keys":         fmtF(p.writeKeys),
		"write_op":           map[bool]string{true: "del", false: "set"}[p.writeDel],
		"set_style":          map[bool]string{true: "set+expire", false: "set_ex"}[p.setExpire],
		"redis_persistence":  map[bool]string{true: "rdb", false: "none"}[p.persist],
		"flush_cmd":          map[bool]string{true: "flushall", false: "flushdb"}[p.flushAll],
	}
	if p.worker > 0 {
		m["worker_every"] = fmtDur(p.worker)
	}
	if cfg.placement == placePerProcess {
		m["caches_per_pod"] = strconv.Itoa(cfg.cpp)
	}
	if p.k > 0 {
		m["provider_k"] = strconv.Itoa(p.k)
	}
	if p.local {
		m["local_cache"] = fmtDur(p.localTTL)
		m["warm_keys"] = fmtF(p.warmKeys)
	}
	if p.nab != nil {
		m["nab"] = p.nab.File
	}
	counts := map[string]int{}
	for _, c := range w.ctls {
		counts[c.typ]++
	}
	var ev []string
	for typ, n := range counts {
		ev = append(ev, fmt.Sprintf("%s=%d", typ, n))
	}
	slices.Sort(ev)
	m["events"] = strings.Join(ev, " ")
	for k, v := range w.extra {
		m[k] = v
	}
	return m
}

func fmtF(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }

func fmtDur(sec float64) string {
	return (time.Duration(sec * float64(time.Second))).Round(time.Second).String()
}

func fmtTime(t float64) string { return time.Unix(int64(t), 0).UTC().Format(time.RFC3339) }
