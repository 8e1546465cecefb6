package bench

import (
	"fmt"
	"strconv"
	"time"

	"github.com/emergent-sh/emergent/config"
)

// Scenarios: what a service lives through. Incidents have a kind and a truth interval;
// controls have events a detector must stay silent through.
const (
	ScenarioFragBusy    = "frag_busy"          // per-instance token cache, instances revoke each other's token under load
	ScenarioFragIdle    = "frag_idle"          // the same with no users: the token endpoint busy while inbound is idle
	ScenarioCreep       = "replica_creep"      // per-pod cache: work grows as replicas scale out, not with demand
	ScenarioStormLow    = "flush_storm_low"    // a flush per upload, one upload every 150–190 s
	ScenarioStormMedium = "flush_storm_medium" // every 30–90 s
	ScenarioStormHigh   = "flush_storm_high"   // every 4–15 s

	ControlSteady           = "steady"
	ControlDiurnal          = "diurnal"
	ControlSurge            = "surge"             // legitimate 3–10× inbound surge
	ControlDeploy           = "deploy"            // rolling deploy: new pods, a brief cold token cache
	ControlRedisRestart     = "redis_restart"     // one restart: series vanish, counters reset, keys reload or rebuild
	ControlMaintenanceFlush = "maintenance_flush" // one FLUSHDB/FLUSHALL
	ControlScrapeGap        = "scrape_gap"        // the service's target unscraped for minutes
	ControlCounterReset     = "counter_reset"     // the application restarts: its counters start from 0
	ControlNAB              = "nab"               // a NAB labelled anomaly window of real inbound demand
)

// scenarioKind is the incident kind of a scenario ("" for controls).
func scenarioKind(scenario string) string {
	switch baseScenario(scenario) {
	case ScenarioFragBusy, ScenarioFragIdle, ScenarioCreep:
		return config.KindSelfGenerated
	case ScenarioStormLow, ScenarioStormMedium, ScenarioStormHigh:
		return config.KindFlushStorm
	}
	return ""
}

// baseScenario strips the "nab+" prefix of incidents injected into NAB traffic.
func baseScenario(scenario string) string {
	if len(scenario) > 4 && scenario[:4] == "nab+" {
		return scenario[4:]
	}
	return scenario
}

// newService draws the healthy baseline every scenario starts from.
func (g *generator) newService(name, scenario string) *service {
	d := newDraw(g.opts.Seed, name)
	s := &service{
		Name: name, Scenario: scenario, d: d,
		seed: hash64(strconv.FormatUint(g.opts.Seed, 10), name),
		step: g.step, live: span{g.start, g.end.Add(g.step)},
		params: map[string]string{},
	}
	s.base = d.logUniform(1, 60)
	s.amp = d.uniform(0.2, 0.8)
	s.peakHour = d.uniform(11, 20)
	s.weekend = d.uniform(0.6, 1)
	s.slowSigma = d.uniform(0.02, 0.12)
	s.fastSigma = d.uniform(0.01, 0.08)
	// A shared token cache mints one token per TTL per credential: 1–3 credentials, TTL 5–60 min.
	s.mintBase = float64(d.intn(1, 3)) / d.uniform(300, 3600)
	s.missPerMint = d.uniform(1, 1.3)
	s.missPerReq = d.logUniform(1e-5, 2e-3)
	s.uploadPerReq = d.logUniform(0.001, 0.05)
	s.cmdPerReq = d.uniform(2, 6)
	s.keys0 = d.logUniform(500, 200000)
	s.workers = d.intn(2, 16)
	s.flushCmd = "flushdb"
	if d.r.Float64() < 0.2 {
		s.flushCmd = "flushall"
	}
	for k := range s.workers {
		s.pods = append(s.pods, pod{name: fmt.Sprintf("r0-pod%d", k), alive: s.live})
	}
	return s
}

func (s *service) param(k string, v any) {
	switch x := v.(type) {
	case float64:
		s.params[k] = strconv.FormatFloat(x, 'g', 4, 64)
	case time.Duration:
		s.params[k] = x.String()
	case time.Time:
		s.params[k] = x.UTC().Format(time.RFC3339)
	default:
		s.params[k] = fmt.Sprint(x)
	}
}

func (s *service) recordBase() {
	if s.nab == nil {
		s.param("base_rps", s.base)
		s.param("diurnal_amplitude", s.amp)
	} else {
		s.param("nab_file", s.nab.File)
		s.param("nab_median_rps", s.usual())
	}
	s.param("noise_sigma", s.fastSigma)
	s.param("workers", s.workers)
	s.param("healthy_mints_per_s", s.mintBase)
}

func (s *service) addIncident(kind string, from, to time.Time) {
	defined := from
	if kind == config.KindFlushStorm {
		defined = s.flushTimes[min(stormFlushes, len(s.flushTimes))-1]
	}
	s.incidents = append(s.incidents, Incident{Kind: kind, Service: s.Name, Start: from.UTC(), End: to.UTC(), Scenario: s.Scenario, Defined: defined.UTC()})
}

// stormFlushes is how many flushes make a storm (rules.toml min_flushes); every storm
// generated has them within ten minutes (the slowest flushes every 190 s at most).
const stormFlushes = 3

func (s *service) addControl(kind string, from, to time.Time) {
	s.controls = append(s.controls, ControlEvent{Type: kind, Service: s.Name, Start: from.UTC(), End: to.UTC()})
}

// incidentWindow draws an incident of about length inside the evaluated range, away from its
// edges, and not overlapping avoid (NAB windows) when that is possible.
func (g *generator) incidentWindow(d draw, length time.Duration, avoid []span) time.Time {
	from, to := g.evalFrom.Add(30*time.Minute), g.end.Add(-30*time.Minute)
	var at time.Time
	for range 100 {
		at = d.within(from, to, length).Truncate(time.Second)
		clash := false
		for _, a := range avoid {
			if at.Before(a.To.Add(2*time.Hour)) && at.Add(length).After(a.From.Add(-2*time.Hour)) {
				clash = true
			}
		}
		if !clash {
			break
		}
	}
	return at
}

// applyScenario turns a healthy service into its scenario. avoid lists spans an injected
// incident must not overlap (NAB windows).
func (g *generator) applyScenario(s *service, avoid []span) {
	d := s.d
	maxLen := g.end.Sub(g.evalFrom) - 2*time.Hour
	switch baseScenario(s.Scenario) {
	case ScenarioFragBusy:
		if s.nab == nil {
			s.base = d.logUniform(2, 60)
			s.amp = d.uniform(0, 0.7)
		}
		length := min(d.logDuration(30*time.Minute, 8*time.Hour), maxLen)
		at := g.incidentWindow(d, length, avoid)
		s.frag = &fragBusy{span: span{at, at.Add(length)}, perReq: d.uniform(0.3, 0.98)}
		s.param("mints_per_request", s.frag.perReq)
		s.addIncident(config.KindSelfGenerated, at, at.Add(length))
	case ScenarioFragIdle:
		s.base = d.logUniform(1, 20)
		idleLen := d.duration(2*time.Hour, min(10*time.Hour, maxLen))
		idleAt := g.incidentWindow(d, idleLen, avoid)
		level := d.uniform(0, 0.04)
		s.idle = append(s.idle, idleSpan{span{idleAt, idleAt.Add(idleLen)}, level})
		at := idleAt.Add(d.duration(5*time.Minute, 30*time.Minute))
		length := d.duration(30*time.Minute, idleAt.Add(idleLen).Sub(at)-5*time.Minute)
		s.fragIdle = &fragIdle{span: span{at, at.Add(length)}, perPod: d.uniform(0.05, 0.25)}
		s.param("idle_inbound_rps", level)
		s.param("mints_per_s_per_instance", s.fragIdle.perPod)
		s.addIncident(config.KindSelfGenerated, at, at.Add(length))
	case ScenarioCreep:
		if s.nab == nil {
			s.base = d.logUniform(2, 60)
		}
		final := d.intn(4, 16)
		s.workers = final
		every := d.duration(5*time.Minute, 30*time.Minute)
		length := min(time.Duration(final-2)*every+d.duration(30*time.Minute, 2*time.Hour), maxLen)
		at := g.incidentWindow(d, length, avoid)
		// Two replicas share the work before; from `at` each keeps its own cache, and the
		// autoscaler adds a replica every `every` (the extra work is what it scales on).
		s.pods = s.pods[:0]
		for k := range final {
			from := s.live.From
			if k >= 2 {
				from = at.Add(time.Duration(k-1) * every)
			}
			s.pods = append(s.pods, pod{name: fmt.Sprintf("r0-pod%d", k), alive: span{from, s.live.To}})
		}
		s.creep = &creep{span: span{at, at.Add(length)}, perPod: d.uniform(0.05, 0.15)}
		s.param("replicas_final", final)
		s.param("scale_out_every", every)
		s.param("mints_per_s_per_replica", s.creep.perPod)
		s.addIncident(config.KindSelfGenerated, at, at.Add(length))
	case ScenarioStormLow, ScenarioStormMedium, ScenarioStormHigh:
		var every time.Duration
		switch baseScenario(s.Scenario) {
		case ScenarioStormLow:
			every = d.duration(150*time.Second, 190*time.Second)
		case ScenarioStormMedium:
			every = d.duration(30*time.Second, 90*time.Second)
		default:
			every = d.duration(4*time.Second, 15*time.Second)
		}
		length := min(d.logDuration(15*time.Minute, 3*time.Hour), maxLen)
		at := g.incidentWindow(d, length, avoid)
		s.keys0 = d.logUniform(1000, 200000)
		rebuild := d.duration(20*time.Second, 60*time.Second)
		var last time.Time
		for t := at; t.Before(at.Add(length)); t = t.Add(time.Duration(float64(every) * d.uniform(0.8, 1.2)).Truncate(time.Second)) {
			s.flushTimes = append(s.flushTimes, t)
			s.keyEvents = append(s.keyEvents, keyEvent{at: t, floor: d.uniform(0, 0.05), rebuild: rebuild})
			last = t
		}
		s.storm = &storm{span: span{at, last.Add(time.Second)}, interval: every}
		s.param("flush_every", every)
		s.param("flushes", len(s.flushTimes))
		s.param("flush_cmd", s.flushCmd)
		s.addIncident(config.KindFlushStorm, at, last)

	case ControlSteady:
		s.amp = d.uniform(0, 0.1)
		s.weekend = 1
	case ControlDiurnal:
		s.amp = d.uniform(0.4, 0.95)
	case ControlSurge:
		n := d.intn(1, 2)
		for range n {
			length := d.logDuration(20*time.Minute, 3*time.Hour)
			at := g.incidentWindow(d, length, nil)
			sg := surge{span: span{at, at.Add(length)}, factor: d.uniform(3, 10), ramp: d.duration(time.Minute, 10*time.Minute)}
			s.surges = append(s.surges, sg)
			s.param(fmt.Sprintf("surge_%d_factor", len(s.surges)), sg.factor)
			s.addControl(ControlSurge, at, at.Add(length+15*time.Minute))
		}
	case ControlDeploy:
		n := d.intn(1, 3)
		var ats []time.Time
		for range n {
			ats = append(ats, g.incidentWindow(d, 30*time.Minute, nil))
		}
		sortTimes(ats)
		w := len(s.pods)
		for r, at := range ats {
			rollout := d.duration(time.Minute, 4*time.Minute)
			for k := range w {
				old := &s.pods[r*w+k]
				old.alive.To = at.Add(time.Duration(k+1) * rollout / time.Duration(w))
				p := pod{name: fmt.Sprintf("r%d-pod%d", r+1, k), alive: span{at.Add(time.Duration(k) * rollout / time.Duration(w)), s.live.To}}
				if k == 0 {
					// A new release reads a fresh cache namespace: until the first token is
					// cached, requests miss and up to four racing workers mint.
					p.burst = float64(d.intn(1, min(4, w)))
				}
				s.pods = append(s.pods, p)
			}
			cold := d.duration(5*time.Second, 45*time.Second)
			s.colds = append(s.colds, coldCache{span{at, at.Add(cold)}})
			s.param(fmt.Sprintf("deploy_%d_rollout", r+1), rollout)
			s.param(fmt.Sprintf("deploy_%d_cold_cache", r+1), cold)
			s.addControl(ControlDeploy, at, at.Add(rollout+15*time.Minute))
		}
	case ControlRedisRestart:
		at := g.incidentWindow(d, time.Hour, nil)
		r := redisRestart{at: at, down: d.duration(30*time.Second, 2*time.Minute), persist: d.r.Float64() < 0.5}
		s.restarts = append(s.restarts, r)
		back := at.Add(r.down)
		if r.persist {
			s.keyEvents = append(s.keyEvents, keyEvent{at: back, floor: d.uniform(0.9, 1), rebuild: time.Minute})
		} else {
			s.keyEvents = append(s.keyEvents, keyEvent{at: back, floor: 0, rebuild: d.duration(5*time.Minute, 20*time.Minute)})
		}
		// Half the time the flush counter exists before the restart (a flush during warm-up),
		// so it vanishes with the restart, as Redis's command table does.
		if d.r.Float64() < 0.5 {
			ft := d.within(g.start.Add(time.Hour), g.evalFrom.Add(-time.Hour), 0)
			s.flushTimes = append(s.flushTimes, ft)
			s.keyEvents = append(s.keyEvents, keyEvent{at: ft, floor: 0, rebuild: d.duration(2*time.Minute, 10*time.Minute)})
		}
		sortKeyEvents(s.keyEvents)
		s.param("redis_down", r.down)
		s.param("persistence", r.persist)
		s.addControl(ControlRedisRestart, at, at.Add(30*time.Minute))
	case ControlMaintenanceFlush:
		at := g.incidentWindow(d, time.Hour, nil)
		s.flushTimes = append(s.flushTimes, at)
		s.keyEvents = append(s.keyEvents, keyEvent{at: at, floor: 0, rebuild: d.duration(2*time.Minute, 10*time.Minute)})
		s.param("flush_cmd", s.flushCmd)
		s.addControl(ControlMaintenanceFlush, at, at.Add(30*time.Minute))
	case ControlScrapeGap:
		n := d.intn(1, 3)
		for range n {
			length := d.duration(2*time.Minute, 20*time.Minute)
			at := g.incidentWindow(d, length, nil)
			s.gaps = append(s.gaps, span{at, at.Add(length)})
			s.addControl(ControlScrapeGap, at, at.Add(length+15*time.Minute))
		}
	case ControlCounterReset:
		n := d.intn(1, 3)
		for range n {
			at := g.incidentWindow(d, time.Hour, nil)
			s.appResets = append(s.appResets, at)
			s.addControl(ControlCounterReset, at, at.Add(15*time.Minute))
		}
		sortTimes(s.appResets)
	case ControlNAB:
		// Healthy work on real inbound; the windows were added by the NAB placement.
	default:
		panic("bench: unknown scenario " + s.Scenario)
	}
	s.recordBase()
}

func sortKeyEvents(es []keyEvent) {
	for i := 1; i < len(es); i++ {
		for j := i; j > 0 && es[j].at.Before(es[j-1].at); j-- {
			es[j], es[j-1] = es[j-1], es[j]
		}
	}
}
