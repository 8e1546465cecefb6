package bench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/emergent-sh/emergent/internal/synth"
)

// service is one simulated service: its inbound demand, the work that demand causes, its pods,
// its Redis, and the one scenario (incident or control) it lives through. Every rate is a pure
// function of time, so the series of a service agree with each other (misses follow the same
// inbound the request counter counts) without sharing state.
type service struct {
	Name     string
	Scenario string
	seed     uint64
	step     time.Duration
	live     span // where the service has data at all
	d        draw

	// Inbound demand, requests per second.
	base, amp, peakHour, weekend float64
	slowSigma, fastSigma         float64
	nab                          *synth.NAB
	nabShift                     time.Duration
	nabScale                     float64
	surges                       []surge
	idle                         []idleSpan

	// Work of a healthy service.
	mintBase     float64 // tokens per second with a shared token cache (credentials / TTL)
	missPerMint  float64 // token cache misses per mint (racing requests miss together)
	missPerReq   float64 // token cache misses per request that bypass the cache
	uploadPerReq float64
	cmdPerReq    float64 // Redis commands per inbound request
	keys0        float64 // usual keyspace size
	workers      int
	pods         []pod

	// Incidents.
	frag     *fragBusy
	fragIdle *fragIdle
	creep    *creep
	storm    *storm

	// Controls.
	colds      []coldCache
	restarts   []redisRestart
	keyEvents  []keyEvent // flushes and restarts that empty the keyspace, by time
	flushTimes []time.Time
	flushCmd   string
	gaps       []span
	appResets  []time.Time

	incidents []Incident
	controls  []ControlEvent
	params    map[string]string

	// One-step cache of inbound: every series of the service asks for it at the same step.
	cacheAt  int64
	cacheVal float64
	aliveAt  int64
	aliveN   int
}

type surge struct {
	span
	factor float64
	ramp   time.Duration
}

type idleSpan struct {
	span
	level float64
}

// pod is one instance (PHP-FPM master, Kubernetes pod) that mints with its own token client.
type pod struct {
	name  string
	alive span
	// burst tokens are minted in the pod's first 20 s (a cold cache after a deploy).
	burst float64
}

type fragBusy struct {
	span
	perReq float64 // mints per inbound request while every instance revokes the others' token
}

type fragIdle struct {
	span
	perPod float64 // mints per second per instance, with no user traffic
}

type creep struct {
	span
	perPod float64 // mints per second per replica with a per-pod cache
}

type storm struct {
	span
	interval time.Duration // one upload, one flush, one rebuild every interval
}

type coldCache struct {
	span // every request misses the token cache during the span
}

type redisRestart struct {
	at      time.Time
	down    time.Duration
	persist bool
}

// keyEvent is a keyspace emptied at `at` down to floor·keys, rebuilt linearly over rebuild.
type keyEvent struct {
	at      time.Time
	floor   float64
	rebuild time.Duration
}

// Noise stream salts.
const (
	saltSlow uint64 = iota + 1
	saltFast
	saltKeys
)

func (s *service) stepIndex(t time.Time) int64 { return t.UnixNano() / int64(s.step) }

// inbound is the request rate at t, noise included.
func (s *service) inbound(t time.Time) float64 {
	i := s.stepIndex(t)
	if i == s.cacheAt && s.cacheAt != 0 {
		return s.cacheVal
	}
	var l float64
	if s.nab != nil {
		l = s.nabScale * s.nab.RateAt(t.Add(-s.nabShift))
		if math.IsNaN(l) {
			l = 0
		}
	} else {
		h := float64(t.Hour()) + float64(t.Minute())/60
		l = s.base * (1 + s.amp*math.Cos(2*math.Pi*(h-s.peakHour)/24))
		if wd := t.Weekday(); wd == time.Saturday || wd == time.Sunday {
			l *= s.weekend
		}
		l *= math.Exp(s.slowSigma * smoothNoise(s.seed^saltSlow, t, 20*time.Minute))
	}
	for _, sg := range s.surges {
		l *= sg.at(t)
	}
	for _, is := range s.idle {
		if is.has(t) {
			l = is.level
		}
	}
	l *= math.Exp(s.fastSigma*gauss(s.seed^saltFast, i) - s.fastSigma*s.fastSigma/2)
	s.cacheAt, s.cacheVal = i, l
	return l
}

// at is the surge's multiplier at t: ramps up and down over ramp, factor in between.
func (sg surge) at(t time.Time) float64 {
	if !sg.has(t) {
		return 1
	}
	f := 1.0
	if up := t.Sub(sg.From); up < sg.ramp {
		f = float64(up) / float64(sg.ramp)
	}
	if down := sg.To.Sub(t); down < sg.ramp {
		f = math.Min(f, float64(down)/float64(sg.ramp))
	}
	return 1 + (sg.factor-1)*f
}

// usual is the typical inbound rate, the level healthy token minting is scaled to.
func (s *service) usual() float64 {
	if s.nab != nil {
		return s.nabScale * s.nab.Median()
	}
	return s.base
}

func (s *service) alive(t time.Time) int {
	i := s.stepIndex(t)
	if i == s.aliveAt && s.aliveAt != 0 {
		return s.aliveN
	}
	n := 0
	for _, p := range s.pods {
		if p.alive.has(t) {
			n++
		}
	}
	s.aliveAt, s.aliveN = i, max(n, 1)
	return s.aliveN
}

// healthyMints is what a shared token cache mints: one token per TTL per credential in use;
// busier hours use more credentials, never more than twice the base (the bounded relation).
func (s *service) healthyMints(t time.Time) float64 {
	load := s.inbound(t) / s.usual()
	return s.mintBase * math.Min(2, 0.5+0.5*load)
}

// podMints is pod k's token mint rate at t.
func (s *service) podMints(k int, t time.Time) float64 {
	p := s.pods[k]
	if !p.alive.has(t) {
		return 0
	}
	n := float64(s.alive(t))
	m := s.healthyMints(t) / n
	if p.burst > 0 && t.Sub(p.alive.From) < 20*time.Second {
		m += p.burst / 20
	}
	if s.frag != nil && s.frag.has(t) {
		m += s.frag.perReq * s.inbound(t) / n
	}
	if s.fragIdle != nil && s.fragIdle.has(t) {
		m += s.fragIdle.perPod
	}
	if s.creep != nil && s.creep.has(t) {
		m += s.creep.perPod
	}
	return m
}

func (s *service) mints(t time.Time) float64 {
	m := 0.0
	for k := range s.pods {
		m += s.podMints(k, t)
	}
	return m
}

func (s *service) misses(t time.Time) float64 {
	m := s.mints(t)*s.missPerMint + s.missPerReq*s.inbound(t)
	for _, c := range s.colds {
		if c.has(t) {
			m += s.inbound(t)
		}
	}
	return m
}

func (s *service) hits(t time.Time) float64 { return math.Max(0, s.inbound(t)-s.misses(t)) }

func (s *service) uploads(t time.Time) float64 {
	if s.storm != nil && s.storm.has(t) {
		return 1 / s.storm.interval.Seconds() // every upload flushes: intensity is the upload rate
	}
	return s.uploadPerReq * s.inbound(t)
}

// lastKeyEvent returns the latest keyspace event at or before t.
func (s *service) lastKeyEvent(t time.Time) (keyEvent, bool) {
	i := sort.Search(len(s.keyEvents), func(i int) bool { return s.keyEvents[i].at.After(t) }) - 1
	if i < 0 {
		return keyEvent{}, false
	}
	return s.keyEvents[i], true
}

func (s *service) keys(t time.Time) float64 {
	k := s.keys0 * (1 + 0.05*smoothNoise(s.seed^saltKeys, t, 3*time.Hour))
	if e, ok := s.lastKeyEvent(t); ok {
		k *= e.floor + (1-e.floor)*math.Min(1, float64(t.Sub(e.at))/float64(e.rebuild))
	}
	return math.Round(k)
}

// rebuildSets is the SET rate of a cache being rebuilt after its keyspace was emptied.
func (s *service) rebuildSets(t time.Time) float64 {
	e, ok := s.lastKeyEvent(t)
	if !ok || t.Sub(e.at) >= e.rebuild {
		return 0
	}
	return s.keys0 * (1 - e.floor) / e.rebuild.Seconds()
}

func (s *service) appPresent(t time.Time) bool { return s.live.has(t) && !inAny(s.gaps, t) }

func (s *service) redisPresent(t time.Time) bool {
	if !s.appPresent(t) {
		return false
	}
	for _, r := range s.restarts {
		if !t.Before(r.at) && t.Before(r.at.Add(r.down)) {
			return false
		}
	}
	return true
}

func (s *service) redisResets() []time.Time {
	var out []time.Time
	for _, r := range s.restarts {
		out = append(out, r.at.Add(r.down))
	}
	return sortTimes(out)
}

// labels renders a label set in Prometheus's text form, sorted by name.
func labels(kv ...string) string {
	type pair struct{ k, v string }
	ps := make([]pair, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		ps = append(ps, pair{kv[i], kv[i+1]})
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].k < ps[j].k })
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = fmt.Sprintf("%s=%q", p.k, p.v)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// series lists every series the service exposes, with the metric names of rules.toml.
func (s *service) series(datasetSeed uint64) []series {
	rng := func(parts ...string) *rand.Rand {
		return rand.New(rand.NewPCG(datasetSeed, hash64(append([]string{s.Name}, parts...)...)))
	}
	svc := labels("service", s.Name)
	var out []series
	add := func(family, lbls string, smp sampler) {
		out = append(out, series{family: family, labels: lbls, sample: smp})
	}
	app := func(family string, rate func(time.Time) float64) {
		add(family, svc, counterSampler(rng(family), s.step, rate, s.appPresent, s.appResets))
	}
	app("http_requests_total", s.inbound)
	app("token_cache_hits", s.hits)
	app("token_cache_misses", s.misses)
	app("uploads_total", s.uploads)
	for k := range s.pods {
		p := s.pods[k]
		present := func(t time.Time) bool { return p.alive.has(t) && s.appPresent(t) }
		rate := func(t time.Time) float64 { return s.podMints(k, t) }
		add("token_mint_count", labels("service", s.Name, "instance", p.name),
			counterSampler(rng("token_mint_count", p.name), s.step, rate, present, s.appResets))
	}
	resets := s.redisResets()
	redis := func(cmd string, rate func(time.Time) float64) {
		add("redis_commands_total", labels("service", s.Name, "cmd", cmd),
			counterSampler(rng("redis", cmd), s.step, rate, s.redisPresent, resets))
	}
	redis("get", func(t time.Time) float64 { return 0.7 * s.cmdPerReq * s.inbound(t) })
	redis("set", func(t time.Time) float64 {
		return 0.3*s.cmdPerReq*s.inbound(t) + s.rebuildSets(t) + 2*s.uploads(t)
	})
	// redis_exporter issues about 6 commands per 30 s scrape (INFO, CONFIG GET, SLOWLOG and the
	// like, as its own scrape log shows).
	redis("info", func(time.Time) float64 { return 0.2 })
	if len(s.flushTimes) > 0 {
		add("redis_commands_total", labels("service", s.Name, "cmd", s.flushCmd),
			eventCounter(s.flushTimes, resets, s.redisPresent))
	}
	add("redis_db_keys", labels("service", s.Name, "db", "db0"), func(_ int, t time.Time) (float64, bool) {
		if !s.redisPresent(t) {
			return 0, false
		}
		return s.keys(t), true
	})
	return out
}
