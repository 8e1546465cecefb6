package detector

import (
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/prometheus/common/model"
)

// A kind is one kind of anomaly: the state it keeps per group, what it finds at a step, how it
// says so and what it is called. A Rule evaluates the kind its configuration names and switches
// on nothing else; a new kind is a file implementing this and an entry in kinds.
type kind interface {
	// alertName is the alertname label of the kind's alerts.
	alertName() string
	// newGroup gives a group the state the kind keeps.
	newGroup(g *group)
	// eval judges one step of a group: whether it breaches, whether it could be judged,
	// whether a transient holds firing back, and the numbers.
	eval(r *Rule, g *group, in *GroupInput, t time.Time) (breach, known, hold bool, ex Explanation)
	// explain writes the words of ex: over says whether it breaches.
	explain(r *Rule, ex *Explanation, labels map[string]string, over bool)
	// rates says the kind's numbers are work rates against expected rates, which are exported
	// per group and drawn with their bands.
	rates() bool
	// resolved is told that the group's episode resolved: what the episode spent is spent.
	resolved(g *group)
	// stirred says whether the group did something from from to to that a replay from from
	// would judge, beyond what every kind checks (Rule.Stirred).
	stirred(r *Rule, g *group, from, to time.Time) bool
}

// WorkRates reports whether the rule's numbers are work rates against expected rates (exported
// per group, drawn with their bands), rather than counts in a window.
func (r *Rule) WorkRates() bool { return r.kind.rates() }

// kinds are the kinds by their configuration name (config validates the name).
var kinds = map[string]kind{
	config.KindSelfGenerated: selfGenerated{},
	config.KindFlushStorm:    flushStorm{},
}

// AlertName is the alertname of a kind's alerts ("" for a kind the detector does not know).
func AlertName(kindName string) string {
	if k, ok := kinds[kindName]; ok {
		return k.alertName()
	}
	return ""
}

// selfGenerated is work inbound does not explain (selfgen.go).
type selfGenerated struct{}

func (selfGenerated) alertName() string { return "SelfGeneratedTraffic" }

func (selfGenerated) newGroup(*group) {}

func (selfGenerated) eval(r *Rule, g *group, in *GroupInput, t time.Time) (breach, known, hold bool, ex Explanation) {
	breach, known, ex = r.evalSelfGenerated(g, in, t)
	return breach, known, g.instances.settling(t, r.settleAfter(g.instances.event)) && ex.warmUp == nil, ex
}

func (selfGenerated) explain(r *Rule, ex *Explanation, labels map[string]string, over bool) {
	r.explainSelfGenerated(ex, labels, over)
	ex.Description = describeSelfGenerated(ex)
}

func (selfGenerated) rates() bool { return true }

func (selfGenerated) stirred(r *Rule, g *group, from, to time.Time) bool {
	return r.stirredSelfGenerated(g, from, to)
}

// resolved forgets the episode's work: averaged in, it kept the average_over gate open for
// hours after a fix, and the healthy echoes that follow one (caches refilled together refresh
// together) paged.
func (selfGenerated) resolved(g *group) {
	for s := range g.signals {
		g.signals[s].average = average{}
	}
}

// flushStorm is flushes that come in a storm (flush.go).
type flushStorm struct{}

func (flushStorm) alertName() string { return "FlushStorm" }

func (flushStorm) newGroup(g *group) { g.flush = newFlushState() }

func (flushStorm) eval(r *Rule, g *group, in *GroupInput, t time.Time) (breach, known, hold bool, ex Explanation) {
	breach, known, ex = r.evalFlush(g, in, t)
	return breach, known, false, ex
}

func (flushStorm) explain(r *Rule, ex *Explanation, labels map[string]string, over bool) {
	r.explainFlush(ex, labels, over)
	ex.Unit, ex.Counts = "flushes or keyspace collapses in "+model.Duration(ex.Window).String(), true
	ex.Description = describeFlush(ex)
}

func (flushStorm) rates() bool { return false }

// resolved spends the storm's flushes: a new storm counts its own.
func (flushStorm) resolved(g *group) {
	g.flush.flushes.clear()
	g.flush.collapses.clear()
}

// stirred says whether the group flushed or collapsed since from: the history holds no flushes,
// so the replay of what the rules remember saw every storm a start-up could page.
func (flushStorm) stirred(_ *Rule, g *group, from, _ time.Time) bool {
	return g.flush != nil && !g.flush.lastEvent.Before(from)
}
