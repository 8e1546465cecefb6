package fleetsim

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
)

// Metric families, in the order they are written.
const (
	famHTTP = iota
	famUploads
	famMint
	famHits
	famMisses
	famLHits
	famLMisses
	famRedisCmds
	famRedisKeys
	famRedisUptime
	famUp
	nFam
)

var familyNames = [nFam]string{
	"http_requests_total", "uploads_total", "token_mint_count", "token_cache_hits", "token_cache_misses",
	"cache_hits_total", "cache_misses_total", "redis_commands_total", "redis_db_keys", "redis_uptime_in_seconds", "up",
}

// Per-instance counters.
const (
	ctrApp = iota
	ctrHealth
	ctrUpload
	ctrMint
	ctrHit
	ctrMiss
	ctrLHit
	ctrLMiss
	nCtr
)

var ctrFamily = [nCtr]int{famHTTP, famHTTP, famUploads, famMint, famHits, famMisses, famLHits, famLMisses}

// Redis commands counted by redis_exporter.
const (
	cmdGet = iota
	cmdSet
	cmdDel
	cmdExpire
	cmdFlushDB
	cmdFlushAll
	cmdInfo
	cmdPing
	cmdConfig
	nCmd
)

var cmdNames = [nCmd]string{"get", "set", "del", "expire", "flushdb", "flushall", "info", "ping", "config"}

// series is one output series; ts and vs hold the samples of the current two-hour block.
type series struct {
	fam  int
	key  string // name{labels}
	ts   []int64
	vs   []float64
	dead bool
}

// pod is one replica, or the aggregating endpoint of a service that exports through one.
type pod struct {
	name   string
	hash   string
	cfg    int
	w      float64 // share of users relative to its peers (±10 %)
	caches []int
	phase  float64 // health probe phase
	phi    float64 // local data cache fill
	warm   bool    // local cache warm-up pending
	age    float64 // steps of history before the data (initial pods), for initial counter values
	val    [nCtr]float64
	inc    [nCtr]int64
	ser    [nCtr + 1]*series // + up
	// per step
	lam, tokRate, userShare float64
}

// Sub-step instants on the Redis side.
const (
	instFlush = iota
	instDown
	instUp
)

type instant struct {
	t    float64
	kind int
	all  bool    // FLUSHALL
	d    float64 // outage length
}

type gap struct {
	from, to float64
	name     string // "" = the whole service
}

type rollout struct {
	on       bool
	interval float64
	next     float64
	ctls     []*control
	incs     []*incident
	ends     []bool
}

type waiter struct {
	ctl   *control
	after float64
}

// redisState is the service's Redis and its exporter.
type redisState struct {
	name            string
	down            bool
	upSince         float64
	keys, target    float64
	dbar            float64 // demand smoothed over the data TTL: the keyspace follows it
	snap, nextSnap  float64
	cmd             [nCmd]float64
	cmdSer          [nCmd]*series
	keysSer, upTime *series
	upSer           *series
}

// hitRatio is the data cache's hit ratio: the warm ratio, scaled down while the keyspace is
// below its steady size (after a flush or a restart).
func (rd *redisState) hitRatio(h float64) float64 {
	if rd.target <= 0 {
		return 0
	}
	return h * math.Pow(math.Min(1, rd.keys/rd.target), hitSkew)
}

// svcSim simulates one service step by step.
type svcSim struct {
	w      *world
	tl     *timeline
	rng    *rand.Rand
	tok    tokenSim
	shared int
	pods   []*pod
	agg    *pod
	hash   string
	cfg    int
	roll   rollout
	next   int
	future []instant
	inst   []instant
	invs   []tokInval
	gaps   []gap
	noise  []float64
	red    redisState
	cron   struct {
		on           bool
		period, next float64
		inc          *incident
	}
	flushTo *incident // the incident whose flushes are recorded
	staleTo *incident // the ttl_beyond_lifetime incident whose stale-entry mints are counted
	waiters []waiter
	series  []*series
}

// noiseKnot is the spacing of the lognormal demand noise (spec: per 5 min).
const noiseKnot = 300.0

func newSim(w *world, tl *timeline) *svcSim {
	s := &svcSim{w: w, tl: tl, rng: rand.New(rand.NewPCG(w.simSeed[0], w.simSeed[1])), hash: w.hash}
	p := &w.p
	s.tok = tokenSim{k: p.k, life: p.life, rng: s.rng}
	s.shared = s.tok.add(w.cfgs[0].ttl, false)
	for range p.pods {
		s.pods = append(s.pods, s.newPod(true))
	}
	// Caches are warm at the start: each holds a token minted within its TTL, in minting order.
	a0 := tl.start - tl.dt
	type seed struct {
		t float64
		c int
	}
	var seeds []seed
	add := func(c int) { seeds = append(seeds, seed{a0 - s.tok.caches[c].ttl*s.rng.Float64(), c}) }
	if w.cfgs[0].placement == placeShared {
		add(s.shared)
	}
	for _, pd := range s.pods {
		for _, c := range pd.caches {
			add(c)
		}
	}
	slices.SortFunc(seeds, func(a, b seed) int {
		if a.t < b.t {
			return -1
		}
		if a.t > b.t {
			return 1
		}
		return 0
	})
	for _, sd := range seeds {
		s.tok.seed(sd.c, sd.t)
	}
	if p.aggregated {
		s.agg = &pod{name: w.name + "-agg:9100", age: uniform(s.rng, podAgeMin, podAgeMax) / tl.dt}
	}
	n := int((tl.end-tl.start)/noiseKnot) + 6
	s.noise = make([]float64, n)
	for i := range s.noise {
		s.noise[i] = math.Exp(p.sigma*s.rng.NormFloat64() - p.sigma*p.sigma/2)
	}
	for _, inc := range w.incs {
		if inc.kind == kindFlush {
			s.flushTo = inc
		}
		if inc.scenario == scTTLBeyond {
			s.staleTo = inc
		}
	}
	rd := &s.red
	rd.name = w.name + "-redis:9121"
	rd.upSince = tl.start - p.redisAge
	rd.dbar = w.demand(tl.start)
	rd.target = math.Max(1, p.keyspace*math.Sqrt(rd.dbar/p.base))
	rd.keys, rd.snap, rd.nextSnap = rd.target, rd.target, tl.start+p.snapEvery*s.rng.Float64()
	return s
}

func (s *svcSim) noiseAt(t float64) float64 {
	x := (t - (s.tl.start - 2*noiseKnot)) / noiseKnot
	i := int(x)
	if i < 0 || i+1 >= len(s.noise) {
		return 1
	}
	f := x - float64(i)
	return s.noise[i]*(1-f) + s.noise[i+1]*f
}

// newPod starts a pod of the current deploy. Initial pods are warm and have history.
func (s *svcSim) newPod(initial bool) *pod {
	p := &s.w.p
	cfg := s.w.cfgs[s.cfg]
	pd := &pod{
		name:  s.w.name + "-" + s.hash + "-" + k8sName(s.rng, 5),
		hash:  s.hash,
		cfg:   s.cfg,
		w:     uniform(s.rng, 0.9, 1.1),
		phase: p.health * s.rng.Float64(),
	}
	for range cfg.perPod() {
		pd.caches = append(pd.caches, s.tok.add(cfg.ttl, cfg.noRefresh))
	}
	if initial {
		pd.phi, pd.age = 1, uniform(s.rng, podAgeMin, podAgeMax)/s.tl.dt
	} else {
		pd.phi, pd.warm = math.Min(1, p.warmKeys/p.keyspace), true
	}
	return pd
}

// killPod ends a pod: its caches go, its series end.
func (s *svcSim) killPod(pd *pod) {
	for _, c := range pd.caches {
		s.tok.remove(c)
	}
	for _, se := range pd.ser {
		if se != nil {
			se.dead = true
		}
	}
}

func (s *svcSim) scaleTo(n int) {
	for len(s.pods) < n {
		s.pods = append(s.pods, s.newPod(false))
	}
	for len(s.pods) > n { // the newest pods go first
		s.killPod(s.pods[len(s.pods)-1])
		s.pods = s.pods[:len(s.pods)-1]
	}
}

func (s *svcSim) pushFuture(in instant) {
	i, _ := slices.BinarySearchFunc(s.future, in.t, func(e instant, t float64) int {
		if e.t <= t {
			return -1
		}
		return 1
	})
	s.future = slices.Insert(s.future, i, in)
}

func (s *svcSim) setInc(inc *incident, end bool, t float64) {
	if inc == nil {
		return
	}
	if end {
		inc.end = t
	} else if inc.start == 0 {
		inc.start = t
	}
}

// apply performs a scheduled action; pod-level ones happen at a, the start of the step.
func (s *svcSim) apply(act *action, a float64) {
	switch act.kind {
	case actDeploy:
		if act.cfg >= 0 {
			s.cfg = act.cfg
		}
		s.hash = k8sName(s.rng, 10)
		r := &s.roll
		if !r.on { // a deploy during a rollout takes it over, and its completion
			r.ctls, r.incs, r.ends = r.ctls[:0], r.incs[:0], r.ends[:0]
		}
		r.on, r.interval, r.next = true, act.interval, act.t
		if act.ctl != nil {
			r.ctls = append(r.ctls, act.ctl)
		}
		if act.inc != nil {
			r.incs, r.ends = append(r.incs, act.inc), append(r.ends, act.end)
		}
	case actScale:
		s.scaleTo(act.pods)
		s.setInc(act.inc, act.end, act.t)
	case actAppRestart:
		pd := s.pods[int(act.u*float64(len(s.pods)))]
		pd.val = [nCtr]float64{}
		for _, c := range pd.caches {
			s.tok.reset(c)
		}
		if s.w.p.local {
			pd.phi, pd.warm = math.Min(1, s.w.p.warmKeys/s.w.p.keyspace), true
		}
	case actGap:
		g := gap{from: act.t, to: act.t + act.dur}
		switch {
		case act.target == gapExporter:
			g.name = s.red.name
		case act.target == gapPod && s.agg != nil:
			g.name = s.agg.name
		case act.target == gapPod:
			g.name = s.pods[int(act.u*float64(len(s.pods)))].name
		}
		s.gaps = append(s.gaps, g)
	case actRedisRestart:
		s.pushFuture(instant{t: act.t, kind: instDown, d: act.dur})
		s.pushFuture(instant{t: act.t + act.dur, kind: instUp})
		s.waiters = append(s.waiters, waiter{act.ctl, act.t + act.dur})
	case actFlush:
		s.pushFuture(instant{t: act.t, kind: instFlush, all: act.all})
		s.waiters = append(s.waiters, waiter{act.ctl, act.t})
	case actCronStart:
		s.cron.on, s.cron.period, s.cron.inc = true, act.period, act.inc
		s.cron.next = act.t + act.period*s.rng.Float64()
		s.setInc(act.inc, false, act.t)
	case actCronStop:
		s.cron.on = false
		s.setInc(act.inc, true, act.t)
	}
}

// advanceRollout replaces pods of older deploys, one every interval, oldest first.
func (s *svcSim) advanceRollout(a float64) {
	r := &s.roll
	for r.on && r.next <= a {
		old := -1
		for j, pd := range s.pods {
			if pd.hash != s.hash {
				old = j
				break
			}
		}
		if old >= 0 {
			s.killPod(s.pods[old])
			s.pods[old] = s.newPod(false)
		}
		r.next += r.interval
		done := true
		for _, pd := range s.pods {
			if pd.hash != s.hash {
				done = false
				break
			}
		}
		if done {
			r.on = false
			for _, c := range r.ctls {
				c.end = a + c.settle
			}
			for j, inc := range r.incs {
				s.setInc(inc, r.ends[j], a)
			}
		}
	}
}

func (s *svcSim) gapped(name string, t float64) bool {
	for _, g := range s.gaps {
		if t >= g.from && t < g.to && (g.name == "" || g.name == name) {
			return true
		}
	}
	return false
}

func (s *svcSim) recordFlush(t float64) {
	if s.flushTo != nil {
		s.flushTo.flushes = append(s.flushTo.flushes, t)
	}
}

// step simulates [t_i − step, t_i) and records the scrape at t_i.
func (s *svcSim) step(i int) {
	w, p, tl := s.w, &s.w.p, s.tl
	b := tl.at(i)
	a, dt := b-tl.dt, tl.dt
	s.inst = s.inst[:0]
	for s.next < len(w.acts) && w.acts[s.next].t < b {
		s.apply(&w.acts[s.next], a)
		s.next++
	}
	for len(s.future) > 0 && s.future[0].t < b {
		s.inst = append(s.inst, s.future[0])
		s.future = s.future[1:]
	}
	s.advanceRollout(a)
	for s.cron.on && s.cron.next < b {
		t := s.cron.next + 2*s.rng.Float64() // cron fires on time, the flush lands within 2 s
		s.inst = append(s.inst, instant{t: math.Min(t, b-1e-3), kind: instFlush, all: p.flushAll})
		s.recordFlush(t)
		s.cron.next += s.cron.period
	}

	// Inbound and uploads.
	d := w.demand(a+dt/2) * s.noiseAt(a+dt/2)
	var wsum float64
	for _, pd := range s.pods {
		wsum += pd.w
	}
	work := 0.0
	if p.worker > 0 {
		work = 1 / p.worker
	}
	var sharedRate float64
	var writes int64
	sc := &s.tok.caches[s.shared]
	for _, pd := range s.pods {
		cfg := &w.cfgs[pd.cfg]
		pd.inc = [nCtr]int64{}
		pd.lam = d * pd.w / wsum
		up := poisson(s.rng, pd.lam*p.upFrac*dt)
		pd.inc[ctrUpload] = up
		if cfg.flushOnWrite {
			for range up {
				t := a + dt*s.rng.Float64()
				s.inst = append(s.inst, instant{t: t, kind: instFlush, all: p.flushAll})
				s.recordFlush(t)
			}
		} else {
			writes += up
		}
		user := pd.lam * (1 - p.upFrac) * p.fTok
		pd.tokRate, pd.userShare = user+work, 0
		if pd.tokRate > 0 {
			pd.userShare = user / pd.tokRate
		}
		if cfg.placement == placeShared {
			sharedRate += pd.tokRate
			sc.ttl, sc.noRefresh = cfg.ttl, cfg.noRefresh
		} else {
			for _, c := range pd.caches {
				s.tok.caches[c].rate = pd.tokRate / float64(len(pd.caches))
			}
		}
	}
	sc.rate = sharedRate
	slices.SortStableFunc(s.inst, func(x, y instant) int { return cmp.Compare(x.t, y.t) })

	// Tokens: the shared cache lives in Redis and goes with it.
	s.invs = s.invs[:0]
	for _, in := range s.inst {
		switch in.kind {
		case instFlush:
			s.invs = append(s.invs, tokInval{t: in.t, cache: s.shared})
		case instDown:
			s.invs = append(s.invs, tokInval{t: in.t, cache: s.shared, down: in.d})
		}
	}
	s.tok.step(a, b, s.invs)
	sc = &s.tok.caches[s.shared]
	if inc := s.staleTo; inc != nil && inc.start != 0 && a >= inc.start && (inc.end == 0 || b <= inc.end) {
		inc.staleMints += s.tok.staleMints()
	}

	// Per pod: token hits and misses, requests, probes, local cache.
	remMiss, remRate := sc.misses, sharedRate
	var gets, sharedUses int64
	for _, pd := range s.pods {
		cfg := &w.cfgs[pd.cfg]
		var hits, miss int64
		if cfg.placement == placeShared {
			hits = poisson(s.rng, pd.tokRate*sc.validDur)
			if remRate > 0 {
				miss = binomial(s.rng, remMiss, pd.tokRate/remRate)
			}
			remMiss, remRate = remMiss-miss, remRate-pd.tokRate
			sharedUses += hits + miss
		} else {
			for _, ci := range pd.caches {
				c := &s.tok.caches[ci]
				hits += poisson(s.rng, c.rate*c.validDur)
				miss += c.misses
			}
		}
		userTok := binomial(s.rng, hits+miss, pd.userShare)
		app := pd.inc[ctrUpload] + userTok + poisson(s.rng, pd.lam*(1-p.upFrac)*(1-p.fTok)*dt)
		pd.inc[ctrApp], pd.inc[ctrMint], pd.inc[ctrHit], pd.inc[ctrMiss] = app, miss, hits, miss
		pd.inc[ctrHealth] = int64(math.Floor((b-pd.phase)/p.health) - math.Floor((a-pd.phase)/p.health))
		reads := app * int64(p.keysPerReq)
		if p.local {
			m := 1 / (1 + pd.lam*p.keysPerReq*p.localTTL/p.keyspace)
			lmiss := binomial(s.rng, reads, 1-pd.phi*(1-m))
			pd.inc[ctrLHit], pd.inc[ctrLMiss] = reads-lmiss, lmiss
			gets += lmiss
			if pd.warm {
				gets += int64(p.warmKeys)
				pd.warm = false
			}
			pd.phi += (1 - pd.phi) * (1 - math.Exp(-dt/p.localTTL))
		} else {
			gets += reads
		}
	}
	s.redisStep(a, b, d, gets+sharedUses, writes, sc.refreshes)

	// Counters and the scrape.
	if s.agg != nil {
		for _, pd := range s.pods {
			for c := range nCtr {
				s.agg.inc[c] += pd.inc[c]
			}
		}
	}
	for _, pd := range s.pods {
		s.count(pd, i)
	}
	if s.agg != nil {
		s.count(s.agg, i)
		s.agg.inc = [nCtr]int64{}
		if !s.gapped(s.agg.name, b) {
			s.emitPod(s.agg, b)
		}
	} else {
		for _, pd := range s.pods {
			if !s.gapped(pd.name, b) {
				s.emitPod(pd, b)
			}
		}
	}
	s.emitRedis(b)
	if len(s.gaps) > 0 {
		s.gaps = slices.DeleteFunc(s.gaps, func(g gap) bool { return g.to <= b })
	}
}

// count adds a step's increments to pd's counters; the first step also fills in the history of
// pods that were running before the data starts.
func (s *svcSim) count(pd *pod, i int) {
	for c := range nCtr {
		v := float64(pd.inc[c])
		if i == 0 {
			v = math.Round(v * (1 + pd.age))
		}
		pd.val[c] += v
	}
}

// redisStep runs the data cache and Redis over [a, b): reads split around the step's flushes and
// outages, misses re-SET keys, the keyspace follows demand over the data TTL.
func (s *svcSim) redisStep(a, b, d float64, gets, writes, tokSets int64) {
	p, rd, dt := &s.w.p, &s.red, b-a
	x := a
	seg := func(y float64) {
		if y <= x {
			return
		}
		g := binomial(s.rng, gets, (y-x)/(b-x))
		gets -= g
		if !rd.down && g > 0 {
			miss := binomial(s.rng, g, 1-rd.hitRatio(p.hit))
			rd.cmd[cmdGet] += float64(g)
			rd.cmd[cmdSet] += float64(miss)
			if p.setExpire {
				rd.cmd[cmdExpire] += float64(miss)
			}
			rd.keys += float64(miss) * math.Max(0, 1-rd.keys/rd.target)
		}
		x = y
	}
	for _, in := range s.inst {
		seg(in.t)
		switch in.kind {
		case instFlush:
			if !rd.down {
				rd.keys = 0
				if in.all {
					rd.cmd[cmdFlushAll]++
				} else {
					rd.cmd[cmdFlushDB]++
				}
			}
		case instDown:
			rd.down = true
		case instUp:
			rd.down, rd.upSince, rd.cmd = false, in.t, [nCmd]float64{}
			rd.keys = 0
			if p.persist {
				rd.keys = rd.snap
			}
		}
	}
	seg(b)
	if !rd.down {
		wk := float64(writes) * p.writeKeys
		if p.writeDel {
			rd.cmd[cmdDel] += wk
			rd.keys = math.Max(0, rd.keys-wk*math.Min(1, rd.keys/rd.target))
		} else {
			rd.cmd[cmdSet] += wk
		}
		rd.cmd[cmdSet] += float64(tokSets)
		if !s.gapped(rd.name, b) { // spec: the exporter's own ~6 commands per scrape
			rd.cmd[cmdInfo] += 3   // INFO ALL, INFO keyspace, INFO commandstats
			rd.cmd[cmdPing]++      // liveness
			rd.cmd[cmdConfig] += 2 // CONFIG GET maxmemory, databases
		}
		if b == s.tl.start { // history before the data: the counters of a Redis up for a while
			f := math.Max(1, (b-rd.upSince)/dt)
			for c := range rd.cmd {
				rd.cmd[c] = math.Round(rd.cmd[c] * f)
			}
		}
	}
	decay := 1 - math.Exp(-dt/p.dataTTL)
	rd.dbar += (d - rd.dbar) * decay
	rd.target = math.Max(1, p.keyspace*math.Sqrt(rd.dbar/p.base))
	if rd.keys > rd.target {
		rd.keys -= (rd.keys - rd.target) * decay
	}
	if b >= rd.nextSnap {
		if !rd.down {
			rd.snap = rd.keys
		}
		rd.nextSnap += p.snapEvery
	}
	if len(s.waiters) > 0 && !rd.down && rd.hitRatio(p.hit) >= 0.9*p.hit {
		s.waiters = slices.DeleteFunc(s.waiters, func(wt waiter) bool {
			if b > wt.after {
				wt.ctl.end = b
				return true
			}
			return false
		})
	}
}

func (s *svcSim) newSeries(fam int, labels string) *series {
	se := &series{fam: fam, key: familyNames[fam] + "{service=\"" + s.w.name + "\"," + labels + "}"}
	s.series = append(s.series, se)
	return se
}

func (se *series) add(t, v float64) {
	se.ts = append(se.ts, int64(t))
	se.vs = append(se.vs, v)
}

// emitPod records the scrape of an app instance at t.
func (s *svcSim) emitPod(pd *pod, t float64) {
	p := &s.w.p
	inst := "instance=\"" + pd.name + "\""
	for c := range nCtr {
		if (c == ctrUpload && p.upFrac == 0) || ((c == ctrLHit || c == ctrLMiss) && !p.local) {
			continue
		}
		if pd.ser[c] == nil {
			l := inst
			switch c {
			case ctrApp:
				l += ",handler=\"app\""
			case ctrHealth:
				l += ",handler=\"health\""
			}
			pd.ser[c] = s.newSeries(ctrFamily[c], l)
		}
		pd.ser[c].add(t, pd.val[c])
	}
	if pd.ser[nCtr] == nil {
		pd.ser[nCtr] = s.newSeries(famUp, inst+",job=\"app\"")
	}
	pd.ser[nCtr].add(t, 1)
}

// emitRedis records the exporter's scrape at t: nothing of Redis while it is down, and a command
// series only once the command has been called.
func (s *svcSim) emitRedis(t float64) {
	rd := &s.red
	if s.gapped(rd.name, t) {
		return
	}
	inst := "instance=\"" + rd.name + "\""
	if rd.upSer == nil {
		rd.upSer = s.newSeries(famUp, inst+",job=\"redis\"")
	}
	rd.upSer.add(t, 1)
	if rd.down {
		return
	}
	for c := range nCmd {
		if rd.cmd[c] == 0 {
			continue
		}
		if rd.cmdSer[c] == nil {
			rd.cmdSer[c] = s.newSeries(famRedisCmds, inst+",cmd=\""+cmdNames[c]+"\"")
		}
		rd.cmdSer[c].add(t, rd.cmd[c])
	}
	if rd.keysSer == nil {
		rd.keysSer = s.newSeries(famRedisKeys, inst+",db=\"db0\"")
		rd.upTime = s.newSeries(famRedisUptime, inst)
	}
	rd.keysSer.add(t, math.Round(rd.keys))
	rd.upTime.add(t, math.Floor(t-rd.upSince))
}

// flushed drops the block's samples and the series that ended.
func (s *svcSim) flushed() {
	s.series = slices.DeleteFunc(s.series, func(se *series) bool { return se.dead })
	for _, se := range s.series {
		se.ts, se.vs = se.ts[:0], se.vs[:0]
	}
}
