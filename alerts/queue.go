package alerts

import (
	"context"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// priority orders what a full queue gives up first, lowest first.
type priority int

const (
	// prioFiringResend repeats a firing alert the receiver already has; the next resend
	// replaces it anyway.
	prioFiringResend priority = iota
	// prioResolvedResend repeats a resolve the receiver already has.
	prioResolvedResend
	// prioFiring is a new firing alert: a page.
	prioFiring
	// prioResolve closes an alert the receiver was told is firing. It is never dropped, or the
	// receiver would show the alert firing long after it ended, and it takes no room from
	// pages: the queue size bounds everything else.
	prioResolve
)

// item is one alert waiting for delivery.
type item struct {
	// key identifies what the item is about: a pending item is replaced by a newer one with
	// the same key (Alertmanager: the fingerprint, so only the freshest state is sent).
	key      string
	alert    *Alert
	resolved bool
	prio     priority
}

// queue is the bounded buffer between Update, which must never block, and one receiver's
// delivery goroutine. When full it drops the oldest item of the lowest priority, or the
// incoming item if that is lower still. Resolves are never dropped and do not count towards
// the size, so that they never cost a page: they are bounded by the number of alerts that
// fired. The length gauge counts what is pending plus what was taken and is not done yet (in
// delivery or being retried), so that a receiver that is down shows its backlog.
type queue struct {
	mu     sync.Mutex
	items  []*item // oldest first
	size   int
	closed bool
	ready  chan struct{} // signalled when items arrive or the queue closes
	length prometheus.Gauge
}

func newQueue(size int, length prometheus.Gauge) *queue {
	return &queue{size: max(size, 1), ready: make(chan struct{}, 1), length: length}
}

// push adds items in one step, so a consumer never sees part of them, and returns what it
// dropped to make room.
func (q *queue) push(items ...*item) (dropped []*item) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return items
	}
	before := len(q.items)
	for _, it := range items {
		// Each queue gets its own copy: add may raise an item's priority, and one
		// Alertmanager receiver pushes the same items to the queue of every URL.
		c := *it
		if d := q.add(&c); d != nil {
			dropped = append(dropped, d)
		}
	}
	q.length.Add(float64(len(q.items) - before))
	q.signal()
	return dropped
}

// add adds one item; q.mu must be held.
func (q *queue) add(it *item) (dropped *item) {
	for i, p := range q.items {
		if p.key != it.key {
			continue
		}
		// A resend of a state still pending its first send keeps the first send's priority.
		if p.resolved == it.resolved && p.prio > it.prio {
			it.prio = p.prio
		}
		q.items[i] = it
		return nil
	}
	if it.prio == prioResolve {
		q.items = append(q.items, it)
		return nil
	}
	// The victim is the oldest item of the lowest priority, resolves aside.
	victim, bounded := -1, 0
	for i, p := range q.items {
		if p.prio == prioResolve {
			continue
		}
		bounded++
		if victim < 0 || p.prio < q.items[victim].prio {
			victim = i
		}
	}
	if bounded >= q.size {
		v := q.items[victim]
		if it.prio < v.prio {
			return it
		}
		q.items = slices.Delete(q.items, victim, victim+1)
		dropped = v
	}
	q.items = append(q.items, it)
	return dropped
}

// take waits for items and removes up to n of them (all if n <= 0). It reports false once
// the queue is closed and empty, or ctx is done. The items taken stay counted in the length
// until done.
func (q *queue) take(ctx context.Context, n int) ([]*item, bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			out := q.pop(n)
			q.mu.Unlock()
			return out, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return nil, false
		}
		select {
		case <-q.ready:
		case <-ctx.Done():
			return nil, false
		}
	}
}

// takeAll removes every pending item without waiting. Like take, it leaves them counted in
// the length until done.
func (q *queue) takeAll() []*item {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pop(0)
}

// done stops counting n taken items in the length: they were delivered, superseded, given up
// or dropped.
func (q *queue) done(n int) { q.length.Sub(float64(n)) }

// pop removes the n oldest items (all if n <= 0); q.mu must be held.
func (q *queue) pop(n int) []*item {
	if n <= 0 || n > len(q.items) {
		n = len(q.items)
	}
	out := slices.Clone(q.items[:n])
	q.items = slices.Clone(q.items[n:])
	return out
}

// close stops the queue accepting items; what is pending can still be taken.
func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.signal()
}

func (q *queue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// mergeItems returns older with every item that newer replaces (same key) removed, followed
// by newer: a batch being retried picks up the fresher state queued meanwhile.
func mergeItems(older, newer []*item) []*item {
	if len(newer) == 0 {
		return older
	}
	replaced := make(map[string]bool, len(newer))
	for _, it := range newer {
		replaced[it.key] = true
	}
	out := make([]*item, 0, len(older)+len(newer))
	for _, it := range older {
		if !replaced[it.key] {
			out = append(out, it)
		}
	}
	return append(out, newer...)
}
