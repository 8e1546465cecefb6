package detector

import "math"

// Band is what a group's signal is expected to do at a given inbound and instance count, for
// charts: the work inbound explains, and the level above which the work would page (the
// rule's unexplained share, rate and noise thresholds, at their firing values).
type Band struct {
	Expected, PageAbove float64
}

// Band returns signal s's band for the group with these labels at the given inbound and live
// instances, from what the group has learned now; false if the group is unknown to the rule
// or has not learned the signal. It is how a chart shows "expected" with the detector's own
// numbers rather than a second model.
func (r *Rule) Band(labels map[string]string, s int, inbound float64, instances int) (Band, bool) {
	g := r.groupByLabels(labels)
	if g == nil || s < 0 || s >= len(r.cfg.Signals) || !g.fitted || !isNum(inbound) {
		return Band{}, false
	}
	expected, sigma, ok := g.expectedWork(s, r.cfg.Signals[s], math.Max(0, inbound), instances)
	if !ok {
		return Band{}, false
	}
	// Unexplained work w − e pages when (w − e)/w ≥ share, w − e ≥ min rate and w − e > 3σ.
	above := expected + math.Max(r.cfg.MinUnexplainedRate, noiseSigmas*sigma)
	if share := r.cfg.MinUnexplainedShare; share < 1 {
		above = math.Max(above, expected/(1-share))
	}
	return Band{Expected: expected, PageAbove: above}, true
}

// groupByLabels finds a group by its labels (nil if none): for a page about one group, not
// for the evaluation's hot path.
func (r *Rule) groupByLabels(labels map[string]string) *group {
	for _, g := range r.groups {
		if len(g.labels) != len(labels) {
			continue
		}
		same := true
		for k, v := range g.labels {
			if labels[k] != v {
				same = false
				break
			}
		}
		if same {
			return g
		}
	}
	return nil
}
