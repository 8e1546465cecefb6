package alerts

import (
	"sync"
	"time"
)

// Delivered is one transition of an episode a receiver accepted: what the episode's timeline
// on the status page shows next to fired, updated and resolved.
type Delivered struct {
	Receiver string
	// Transition is "fired", "updated" or "resolved"; Alertmanager's resends are not listed.
	Transition string
	At         time.Time
}

// maxDeliveredEpisodes bounds the timeline's memory: the status page shows active and recently
// resolved episodes, far fewer than this, and the oldest go first.
const maxDeliveredEpisodes = 4096

// deliveredLog keeps, per episode (rule and start), the transitions receivers accepted.
type deliveredLog struct {
	mu      sync.Mutex
	byStart map[string][]deliveredRecord
	order   []string // keys, oldest first, for eviction
}

type deliveredRecord struct {
	labels map[string]string
	Delivered
}

func episodeOf(rule string, start time.Time) string {
	return rule + "@" + start.UTC().Format(time.RFC3339)
}

func (l *deliveredLog) add(receiver string, it *item, at time.Time) {
	if it.prio == prioFiringResend || it.prio == prioResolvedResend {
		return
	}
	transition := "fired"
	switch {
	case it.resolved:
		transition = "resolved"
	case it.alert.Revision > 0:
		transition = "updated"
	}
	key := episodeOf(it.alert.Labels["rule"], it.alert.StartsAt)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byStart == nil {
		l.byStart = map[string][]deliveredRecord{}
	}
	if _, ok := l.byStart[key]; !ok {
		l.order = append(l.order, key)
		if len(l.order) > maxDeliveredEpisodes {
			delete(l.byStart, l.order[0])
			l.order = l.order[1:]
		}
	}
	l.byStart[key] = append(l.byStart[key], deliveredRecord{labels: it.alert.Labels, Delivered: Delivered{receiver, transition, at}})
}

// Delivered returns what receivers accepted of the episode of rule that started at start, for
// the group with these labels, oldest first.
func (m *Manager) Delivered(rule string, group map[string]string, start time.Time) []Delivered {
	l := &m.delivered
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Delivered
	for _, r := range l.byStart[episodeOf(rule, start)] {
		match := true
		for k, v := range group {
			if r.labels[k] != v {
				match = false
				break
			}
		}
		if match {
			out = append(out, r.Delivered)
		}
	}
	return out
}
