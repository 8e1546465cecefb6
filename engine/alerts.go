package engine

import (
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/emergent-sh/emergent/alerts"
	"github.com/emergent-sh/emergent/config"
	"github.com/emergent-sh/emergent/detector"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// Alerts returns what should be delivered now: every active episode, episodes resolved within
// global.resolved_retention, and the one meta-alert while any rule is blind (or resolved, for
// global.resolved_retention).
func (e *Engine) Alerts() []*alerts.Alert {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*alerts.Alert
	for _, r := range e.rules {
		for _, ep := range r.det.Active() {
			out = append(out, e.episodeAlert(r.cfg, ep))
		}
		for _, ep := range r.resolved {
			out = append(out, e.episodeAlert(r.cfg, ep))
		}
	}
	if !e.blindStart.IsZero() {
		out = append(out, e.blindAlert(blindEpisode{start: e.blindStart}))
	}
	for _, b := range e.blindEpisodes {
		out = append(out, e.blindAlert(b))
	}
	return out
}

// EpisodeAlert renders one episode as an alert, as the daemon would deliver it.
func (e *Engine) episodeAlert(rule config.Rule, ep detector.Episode) *alerts.Alert {
	labels := map[string]string{} // external labels are added by the alerts manager
	for k, v := range rule.Labels {
		labels[k] = v
	}
	for k, v := range ep.Labels {
		labels[k] = v
	}
	labels["alertname"] = detector.AlertName(ep.Kind) // stable labels: alertname, kind, rule, severity, group labels
	labels["kind"] = ep.Kind
	labels["rule"] = ep.Rule
	labels["severity"] = ep.Severity

	ex := ep.Explanation
	a := &alerts.Alert{
		Labels: labels,
		Annotations: map[string]string{
			"summary":   ep.Summary,
			"diagnosis": ex.Diagnosis,
			"remedy":    ex.Remedy,
		},
		StartsAt:     ep.Start,
		EndsAt:       ep.End,
		Revision:     ep.Revision,
		GeneratorURL: e.graphURL(rule, ep.Labels),
		Details: alerts.Details{
			Unit: ex.Unit, Counts: ex.Counts, ObservedPerSec: ex.Observed, ExpectedPerSec: ex.Expected,
			UnexplainedPct: 100 * ex.UnexplainedShare, InboundPerSec: ex.Inbound,
			InboundUsualSec: ex.InboundUsual, InboundState: ex.InboundState, Instances: ex.Instances,
			Diagnosis: ex.Diagnosis, Remedy: ex.Remedy,
		},
	}
	a.Annotations["description"] = ex.Description
	return a
}

// graphURL links a Prometheus graph of the rule's main signal and inbound, narrowed to the group.
// The link goes to people (Slack buttons, generatorURL), so it never carries the userinfo or
// query of prometheus.url, where the daemon's credentials and tokens go: a browser asks for
// its own. A base without a host (not an absolute URL) gives no link.
func (e *Engine) graphURL(rule config.Rule, group map[string]string) string {
	base := e.cfg.Prometheus.GraphURL
	if base == "" {
		base = e.cfg.Prometheus.URL
	}
	if base == "" {
		return ""
	}
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return ""
	}
	u.User, u.Fragment, u.RawFragment = nil, "", ""
	main := rule.Flushes
	if len(rule.Signals) > 0 {
		main = rule.Signals[0].Query
	}
	if main == "" {
		main = rule.Keys
	}
	q := url.Values{}
	for i, expr := range []string{main, rule.Inbound} {
		if expr == "" {
			continue
		}
		g := fmt.Sprintf("g%d.", i)
		q.Set(g+"expr", forGroup(expr, group))
		q.Set(g+"tab", "0")
		q.Set(g+"range_input", "1h")
	}
	u = u.JoinPath("graph")
	u.RawQuery = q.Encode()
	return u.String()
}

// forGroup adds the group's label matchers to every selector of expr, so the graph shows one
// group. expr was validated at load time; if it somehow does not parse, it is returned as is.
func forGroup(expr string, group map[string]string) string {
	root, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return expr
	}
	names := make([]string, 0, len(group))
	for k := range group {
		names = append(names, k)
	}
	sort.Strings(names)
	parser.Inspect(root, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			for _, k := range names {
				vs.LabelMatchers = append(vs.LabelMatchers, labels.MustNewMatcher(labels.MatchEqual, k, group[k]))
			}
		}
		return nil
	})
	return root.String()
}

// blindAlert is the meta-alert of a rule that cannot see its data; b.end is zero while blind.
func (e *Engine) blindAlert(b blindEpisode) *alerts.Alert {
	labels := map[string]string{"alertname": "EmergentDetectorBlind", "kind": config.KindDetectorBlind, "severity": "warning"}
	var blind []string
	var lastErr error
	for _, r := range e.rules {
		if r.blind {
			blind = append(blind, strconv.Quote(r.cfg.Name))
			if r.lastErr != nil {
				lastErr = r.lastErr
			}
		}
	}
	var msg string
	if b.end.IsZero() {
		msg = fmt.Sprintf("emergentd cannot see the data of %s %s: queries fail or every group is unknown. "+
			"Nothing fires or resolves on them until they can see again.", plural(len(blind), "rule", "rules"), strings.Join(blind, ", "))
		if lastErr != nil {
			msg += " Last error: " + lastErr.Error()
		}
	} else {
		msg = "emergentd sees the data of every rule again."
	}
	return &alerts.Alert{
		Labels:      labels,
		Annotations: map[string]string{"summary": msg, "description": msg},
		StartsAt:    b.start,
		EndsAt:      b.end,
		Details:     alerts.Details{Diagnosis: msg},
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// AlertFor renders an episode as the alert the daemon would deliver for it, or nil if no rule
// of this engine produced it.
func (e *Engine) AlertFor(ep detector.Episode) *alerts.Alert {
	for _, r := range e.rules {
		if r.cfg.Name == ep.Rule {
			return e.episodeAlert(r.cfg, ep)
		}
	}
	return nil
}
