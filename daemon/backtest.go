package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/emergent-sh/emergent/detector"
	"github.com/emergent-sh/emergent/engine"
)

// BacktestEpisode is one line of `emergentd backtest` output; the field set and names are a
// contract that scorers and other tools parse (README, "Backtest"): add fields, never rename.
type BacktestEpisode struct {
	Kind     string            `json:"kind"`
	Rule     string            `json:"rule"`
	Labels   map[string]string `json:"labels"`
	Start    time.Time         `json:"start"`
	End      *time.Time        `json:"end"`
	Severity string            `json:"severity"`
	Summary  string            `json:"summary"`
}

// Backtest steps the daemon's evaluation through [from, to] and returns every episode that was
// active at some point of the range, ordered by start, rule and labels.
func Backtest(ctx context.Context, cfg *config.Config, src engine.Source, from, to time.Time, logger *slog.Logger) ([]BacktestEpisode, error) {
	if !from.Before(to) {
		return nil, fmt.Errorf("backtest: --from (%s) must be before --to (%s)", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	eng := engine.New(cfg, src, logger, nil)
	type id struct {
		rule, group string
		start       time.Time
	}
	found := map[id]*BacktestEpisode{}
	var order []id
	add := func(events []detector.Event) {
		for _, ev := range events {
			ep := ev.Episode
			k := id{ep.Rule, detector.GroupString(ep.Labels), ep.Start}
			b, ok := found[k]
			if !ok {
				b = &BacktestEpisode{Kind: ep.Kind, Rule: ep.Rule, Labels: ep.Labels, Start: ep.Start.UTC(), Severity: ep.Severity, Summary: ep.Summary}
				found[k] = b
				order = append(order, k)
			}
			if ev.Resolved {
				end := ep.End.UTC()
				b.End = &end
			}
		}
	}
	events, err := eng.Bootstrap(ctx, from)
	if err != nil {
		return nil, err
	}
	add(events)
	events, err = eng.Advance(ctx, to)
	add(events)
	if err != nil {
		return nil, err
	}
	var out []BacktestEpisode
	for _, k := range order {
		b := found[k]
		if b.End != nil && b.End.Before(from) { // over before the range began (seen in the replay)
			continue
		}
		out = append(out, *b)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if !a.Start.Equal(b.Start) {
			return a.Start.Before(b.Start)
		}
		if a.Rule != b.Rule {
			return a.Rule < b.Rule
		}
		return detector.GroupString(a.Labels) < detector.GroupString(b.Labels)
	})
	return out, nil
}

// WriteJSONLines writes one JSON object per line.
func WriteJSONLines(w io.Writer, episodes []BacktestEpisode) error {
	enc := json.NewEncoder(w)
	for _, e := range episodes {
		if err := enc.Encode(e); err != nil {
			return err
		}
	}
	return nil
}
