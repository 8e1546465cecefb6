package daemon

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/prometheus/common/model"
)

// QueryCheck is what one of a rule's queries returns now, as `emergentd check --query` reports it.
type QueryCheck struct {
	Rule, Field, Query string
	Series, Groups     int
	// Err is set when the query failed, Problem when it answered something the rule cannot use.
	Err     error
	Problem string
	// Note explains an empty answer that is fine.
	Note string
}

// OK reports whether the query answered something the rule can use.
func (c QueryCheck) OK() bool { return c.Err == nil && c.Problem == "" }

// InstantSource runs one instant query now.
type InstantSource interface {
	Check(ctx context.Context, query string) (model.Vector, error)
}

// CheckQueries runs every query of every rule once and says, for each, how many series and
// groups it returns and whether the rule can use them: a rule whose inbound or work returns
// nothing, or whose series lack the labels it groups by, watches nothing and looks healthy.
func CheckQueries(ctx context.Context, cfg *config.Config, src InstantSource) []QueryCheck {
	var out []QueryCheck
	for _, r := range cfg.Rules {
		// required: an empty answer fails the check; optional: a work signal only some groups
		// export, whose empty answer is noted. Neither: context that may be empty.
		type field struct {
			name, query        string
			required, optional bool
		}
		fields := []field{{name: "inbound", query: r.Inbound, required: true}}
		for i, s := range r.Signals {
			fields = append(fields, field{fmt.Sprintf("signals[%d] (%s)", i, s.Name), s.Query, !s.Optional, s.Optional})
		}
		for _, f := range []struct{ name, query string }{{"flushes", r.Flushes}, {"keys", r.Keys}, {"commands", r.Commands},
			{"writes", r.Writes}, {"cache_resets", r.CacheResets}, {"instances", r.Instances}, {"replicas", r.Replicas},
			{"replica_count", r.ReplicaCount}} {
			fields = append(fields, field{name: f.name, query: f.query})
		}
		var empty []string
		var optionalEmpty []int // indexes in out of optional signals that returned nothing
		start := len(out)
		for _, f := range fields {
			if f.query == "" {
				continue
			}
			qctx, cancel := context.WithTimeout(ctx, time.Duration(cfg.Prometheus.Timeout))
			vec, err := src.Check(qctx, f.query)
			cancel()
			c := QueryCheck{Rule: r.Name, Field: f.name, Query: f.query, Err: err}
			if err == nil {
				c.Series, c.Groups, c.Problem = describeAnswer(vec, r, f.name == "instances" || f.name == "replicas")
				if len(vec) == 0 {
					empty = append(empty, f.query)
					switch {
					case f.required:
						c.Problem = "returns no series, so the rule watches nothing: is the metric scraped, and does it carry " +
							labelList(r.GroupBy) + "?"
					case f.optional:
						c.Note = "no series: an optional signal, judged where a group exports it"
						optionalEmpty = append(optionalEmpty, len(out))
					}
				}
			}
			out = append(out, c)
		}
		// Optional signals are fine empty while another work signal has series.
		if r.WatchesNothing(empty) {
			for _, i := range optionalEmpty {
				out[i].Note, out[i].Problem = "", "returns no series, and neither does any other work signal: the rule watches nothing"
			}
		}
		// A storm rule needs flushes or a keyspace; a healthy Redis lists no flush counter yet.
		for i := start; i < len(out); i++ {
			c := &out[i]
			if c.Err != nil || c.Series > 0 || (c.Field != "flushes" && c.Field != "keys") {
				continue
			}
			if r.WatchesNothing(empty) {
				c.Problem = "returns no series, and neither does the other of flushes and keys: the rule watches nothing"
			} else if c.Field == "flushes" {
				c.Note = "no flush yet (Redis lists the counter after the first flush)"
			}
		}
	}
	return out
}

// describeAnswer counts series and groups, and names what the rule cannot use: series without
// a group_by label (a query that does not aggregate `by` them), or a breakdown without the
// label that names instances.
func describeAnswer(vec model.Vector, r config.Rule, perInstance bool) (series, groups int, problem string) {
	seen := map[string]bool{}
	for _, s := range vec {
		var key strings.Builder
		for _, l := range r.GroupBy {
			v, ok := s.Metric[model.LabelName(l)]
			if !ok || v == "" {
				return len(vec), 0, fmt.Sprintf("returns series without the label %q the rule groups by (e.g. %s): aggregate with `sum by (%s)`",
					l, s.Metric, strings.Join(r.GroupBy, ", "))
			}
			key.WriteString(string(v) + "\xff")
		}
		if perInstance {
			if v, ok := s.Metric[model.LabelName(r.InstanceLabel)]; !ok || v == "" {
				return len(vec), 0, fmt.Sprintf("returns series without the instance label %q (instance_label; e.g. %s): "+
					"every instance would count as one", r.InstanceLabel, s.Metric)
			}
		}
		seen[key.String()] = true
	}
	return len(vec), len(seen), ""
}

func labelList(labels []string) string {
	q := make([]string, len(labels))
	for i, l := range labels {
		q[i] = fmt.Sprintf("%q", l)
	}
	return "the label " + strings.Join(q, ", ")
}
