package fleetsim

import (
	"math"
	"math/rand/v2"
)

// Token cache states.
const (
	cacheEmpty uint8 = iota // no usable entry: the next use misses and mints
	cacheValid              // holds a token the provider still honours
	cacheStale              // entry unexpired but its token expired, and the code re-mints without refreshing it
	cacheDown               // the cache's store is unreachable: every use mints and nothing is stored
)

// Token event kinds.
const (
	evUse       uint8 = iota // a use of an empty cache: miss and mint
	evExpire                 // the cache entry's TTL ends (or its token dies at the provider)
	evTokExpire              // the token expires under an unexpired entry that is never refreshed on a 401
	evMints                  // n uses that each mint a throwaway token (stale entry or store down)
	evUp                     // the store is reachable again, the entry lost
	evFlush                  // the store lost the entry (FLUSHDB, restart): epoch-independent
	evDown                   // the store goes down for d seconds: epoch-independent
)

// tokCache is one token cache: a Redis key shared by a service, a pod's memory, or a process's.
type tokCache struct {
	alive     bool
	state     uint8
	noRefresh bool // the 401 path re-mints without writing the cache (ttl_beyond_lifetime)
	epoch     uint32
	ttl       float64 // entry TTL set by the minting code, seconds
	rate      float64 // uses per second during the current step
	tok       uint64  // the token held
	minted    float64
	exp       float64 // entry expiry
	until     float64 // end of an outage (cacheDown)
	validFrom float64
	validDur  float64 // seconds of the current step the cache held a valid token: hits are Poisson(rate·validDur)
	misses    int64   // uses that missed in the current step; every miss mints
	stale     int64   // of those, uses of a stale entry (the ttl_beyond_lifetime config's own mints)
	refreshes int64   // mints that were written to the cache
}

// tokRef is one of the provider's active tokens.
type tokRef struct {
	seq    uint64
	minted float64
	cache  int // holder, -1 for a throwaway token nobody caches
}

type tokEvent struct {
	t     float64
	order uint64
	n     int64
	d     float64
	cache int32
	epoch uint32
	kind  uint8
}

type tokHeap []tokEvent

func (h tokHeap) less(i, j int) bool {
	if h[i].t != h[j].t {
		return h[i].t < h[j].t
	}
	return h[i].order < h[j].order
}

func (h *tokHeap) push(e tokEvent) {
	*h = append(*h, e)
	hh := *h
	for i := len(hh) - 1; i > 0; {
		p := (i - 1) / 2
		if !hh.less(i, p) {
			break
		}
		hh[i], hh[p] = hh[p], hh[i]
		i = p
	}
}

func (h *tokHeap) pop() tokEvent {
	hh := *h
	top, n := hh[0], len(hh)-1
	hh[0] = hh[n]
	hh = hh[:n]
	for i := 0; ; {
		m, l := i, 2*i+1
		if l < n && hh.less(l, m) {
			m = l
		}
		if l+1 < n && hh.less(l+1, m) {
			m = l + 1
		}
		if m == i {
			break
		}
		hh[i], hh[m] = hh[m], hh[i]
		i = m
	}
	*h = hh
	return top
}

// tokInval is something that happens to a cache's store inside a step: the entry is deleted
// (FLUSHDB, FLUSHALL) or, with down > 0, the store is unreachable for down seconds and loses it.
type tokInval struct {
	t     float64
	cache int
	down  float64
}

// tokenSim simulates one client credential at its token provider and every cache that holds
// its tokens. Uses arrive as Poisson processes (rate per cache, constant within a step). A use
// of a valid entry is a hit; any other use is a miss and a mint, and a mint while the provider
// already has K active tokens revokes the oldest, which its holder discovers on its next use.
// Only state changes are simulated event by event; hits are counted per step from the time
// each cache held a valid token, which is exact for Poisson arrivals.
type tokenSim struct {
	k      int     // active tokens the provider keeps per credential; 0 = unlimited
	life   float64 // token lifetime at the provider, seconds
	seq    uint64  // last minted token
	active []tokRef
	caches []tokCache
	free   []int
	heap   tokHeap
	order  uint64
	rng    *rand.Rand
	a, b   float64 // the current step
}

// add creates an empty cache and returns its index.
func (s *tokenSim) add(ttl float64, noRefresh bool) int {
	c := tokCache{alive: true, ttl: ttl, noRefresh: noRefresh}
	if n := len(s.free); n > 0 {
		i := s.free[n-1]
		s.free = s.free[:n-1]
		c.epoch = s.caches[i].epoch + 1
		s.caches[i] = c
		return i
	}
	s.caches = append(s.caches, c)
	return len(s.caches) - 1
}

// remove ends a cache (its pod is gone); its token stays active at the provider.
func (s *tokenSim) remove(i int) {
	s.caches[i].alive = false
	s.caches[i].epoch++
	s.free = append(s.free, i)
}

// reset empties a cache between steps (its process restarted).
func (s *tokenSim) reset(i int) {
	c := &s.caches[i]
	c.state = cacheEmpty
	c.epoch++
}

// seed makes cache i hold a token minted at t (the warm state before the data starts). Seeds
// must come in minting order.
func (s *tokenSim) seed(i int, t float64) {
	s.seq++
	s.admit(t, i)
	c := &s.caches[i]
	c.tok, c.minted, c.exp, c.state = s.seq, t, t+c.ttl, cacheValid
}

// step simulates [a, b) with the rates set on the caches and the store events in inv.
func (s *tokenSim) step(a, b float64, inv []tokInval) {
	s.a, s.b = a, b
	for i := range s.caches {
		c := &s.caches[i]
		if !c.alive {
			continue
		}
		c.validDur, c.misses, c.stale, c.refreshes = 0, 0, 0, 0
		switch c.state {
		case cacheValid:
			c.validFrom = a
			s.scheduleValid(i, a)
		case cacheEmpty:
			s.scheduleUse(i, a)
		case cacheStale:
			if !c.noRefresh { // the code now refreshes on a 401: the next use re-mints and writes the entry
				c.state = cacheEmpty
				c.epoch++
				s.scheduleUse(i, a)
				break
			}
			s.scheduleMints(i, a, c.exp)
			s.pushAt(c.exp, evExpire, i)
		case cacheDown:
			s.scheduleMints(i, a, c.until)
			s.pushAt(c.until, evUp, i)
		}
	}
	for _, v := range inv {
		e := tokEvent{t: v.t, cache: int32(v.cache), kind: evFlush}
		if v.down > 0 {
			e.kind, e.d = evDown, v.down
		}
		s.push(e)
	}
	for len(s.heap) > 0 {
		e := s.heap.pop()
		i := int(e.cache)
		c := &s.caches[i]
		if !c.alive {
			continue
		}
		switch e.kind {
		case evFlush:
			if c.state == cacheValid || c.state == cacheStale {
				s.empty(i, e.t)
			}
			continue
		case evDown:
			s.leave(c, e.t)
			c.state, c.until = cacheDown, e.t+e.d
			c.epoch++
			s.scheduleMints(i, e.t, c.until)
			s.pushAt(c.until, evUp, i)
			continue
		}
		if e.epoch != c.epoch {
			continue // the cache changed state since this event was scheduled
		}
		switch e.kind {
		case evUse:
			c.misses++
			s.mint(i, e.t)
		case evExpire, evUp:
			s.empty(i, e.t)
		case evTokExpire:
			s.leave(c, e.t)
			c.state = cacheStale
			c.epoch++
			s.scheduleMints(i, e.t, c.exp)
			s.pushAt(c.exp, evExpire, i)
		case evMints:
			c.misses += e.n
			if c.state == cacheStale {
				c.stale += e.n
			}
			s.mintBulk(e.n, e.t)
		}
	}
	for i := range s.caches {
		if c := &s.caches[i]; c.alive && c.state == cacheValid {
			c.validDur += b - c.validFrom
		}
	}
}

func (s *tokenSim) push(e tokEvent) {
	s.order++
	e.order = s.order
	s.heap.push(e)
}

// pushAt schedules an event of cache i's current epoch if it falls in the current step.
func (s *tokenSim) pushAt(t float64, kind uint8, i int) {
	if t >= s.b {
		return
	}
	s.push(tokEvent{t: math.Max(t, s.a), kind: kind, cache: int32(i), epoch: s.caches[i].epoch})
}

// scheduleValid schedules the end of cache i's valid token: the entry's TTL, the token's death
// at the provider (discovered on use: a 401, a miss and a mint), or the start of a stale window
// when the code never refreshes the entry on a 401.
func (s *tokenSim) scheduleValid(i int, t float64) {
	c := &s.caches[i]
	dies := c.minted + s.life
	switch {
	case c.noRefresh && dies < c.exp:
		s.pushAt(dies, evTokExpire, i)
	default:
		s.pushAt(math.Min(c.exp, dies), evExpire, i)
	}
}

// scheduleUse schedules the next use of an empty cache after t: memoryless arrivals.
func (s *tokenSim) scheduleUse(i int, t float64) {
	if r := s.caches[i].rate; r > 0 {
		s.pushAt(t+s.rng.ExpFloat64()/r, evUse, i)
	}
}

// scheduleMints schedules the uses of [from, to) ∩ step that each mint a throwaway token, in
// chunks of about four uses so a busy stale cache costs a bounded number of events.
func (s *tokenSim) scheduleMints(i int, from, to float64) {
	from, to = math.Max(from, s.a), math.Min(to, s.b)
	c := &s.caches[i]
	if to <= from || c.rate <= 0 {
		return
	}
	span := to - from
	n := int(math.Min(30, math.Max(1, math.Ceil(c.rate*span/4)))) // ≤ 30 chunks: one per second of a 30 s step
	for j := range n {
		x0 := from + span*float64(j)/float64(n)
		x1 := from + span*float64(j+1)/float64(n)
		if k := poisson(s.rng, c.rate*(x1-x0)); k > 0 {
			s.push(tokEvent{t: (x0 + x1) / 2, kind: evMints, n: k, cache: int32(i), epoch: c.epoch})
		}
	}
}

// staleMints is how many uses of stale entries minted in the current step, over all caches:
// the work only a cache that is not refreshed on a 401 does.
func (s *tokenSim) staleMints() int64 {
	var n int64
	for i := range s.caches {
		if c := &s.caches[i]; c.alive {
			n += c.stale
		}
	}
	return n
}

// leave closes cache c's valid interval at t.
func (s *tokenSim) leave(c *tokCache, t float64) {
	if c.state == cacheValid {
		c.validDur += t - c.validFrom
	}
}

// empty makes cache i miss from t on.
func (s *tokenSim) empty(i int, t float64) {
	c := &s.caches[i]
	s.leave(c, t)
	c.state = cacheEmpty
	c.epoch++
	s.scheduleUse(i, t)
}

// mint refreshes cache i with a new token at t.
func (s *tokenSim) mint(i int, t float64) {
	s.seq++
	s.admit(t, i)
	c := &s.caches[i]
	c.tok, c.minted, c.exp = s.seq, t, t+c.ttl
	c.state, c.validFrom = cacheValid, t
	c.epoch++
	c.refreshes++
	s.scheduleValid(i, t)
}

// mintBulk mints n throwaway tokens at t.
func (s *tokenSim) mintBulk(n int64, t float64) {
	if s.k <= 0 {
		s.seq += uint64(n)
		return
	}
	m := min(n, int64(s.k)) // only the last K can still be active afterwards
	s.seq += uint64(n - m)
	for range m {
		s.seq++
		s.admit(t, -1)
	}
}

// admit records token s.seq minted at t for holder, revoking the oldest active token when the
// provider already has K.
func (s *tokenSim) admit(t float64, holder int) {
	if s.k <= 0 {
		return
	}
	for len(s.active) > 0 && s.active[0].minted+s.life <= t {
		s.active = s.active[1:] // expired tokens are no longer active
	}
	if len(s.active) >= s.k {
		old := s.active[0]
		s.active = s.active[1:]
		if old.cache >= 0 {
			if c := &s.caches[old.cache]; c.alive && c.state == cacheValid && c.tok == old.seq {
				s.empty(old.cache, t)
			}
		}
	}
	s.active = append(s.active, tokRef{seq: s.seq, minted: t, cache: holder})
}
