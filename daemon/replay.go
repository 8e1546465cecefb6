package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/emergent-sh/emergent/alerts"
	"github.com/emergent-sh/emergent/config"
	"github.com/emergent-sh/emergent/detector"
	"github.com/emergent-sh/emergent/engine"
	"github.com/emergent-sh/emergent/sources"
)

// RecordRange is the window `emergentd record` must save so that a replay of [from, to] has the
// history and replay window the engine reads before from.
func RecordRange(cfg *config.Config, from, to time.Time) sources.Range {
	g := cfg.Global
	start := engine.Align(from.Add(-time.Duration(g.Replay)-time.Duration(g.History)), time.Duration(g.BaselineStep))
	return sources.Range{Start: start, End: engine.Align(to, time.Duration(g.EvaluationInterval)), Step: time.Duration(g.EvaluationInterval)}
}

// ReplayConfig is the configuration `emergentd record` stores in a recording: the file's own
// keys for [global], [prometheus] and [[rules]], without receivers, routes, the HTTP client
// settings, or credentials and query strings in URLs. A recording is a file people pass
// around, and a replay queries and delivers nothing.
func ReplayConfig(text []byte) (string, error) {
	var doc map[string]any
	if _, err := toml.Decode(string(text), &doc); err != nil {
		return "", fmt.Errorf("configuration for the recording: %w", err)
	}
	delete(doc, "receivers")
	delete(doc, "routes")
	if p, ok := doc["prometheus"].(map[string]any); ok {
		delete(p, "http_config_file")
		for _, k := range []string{"url", "graph_url"} {
			if raw, ok := p[k].(string); ok {
				p[k] = withoutCredentials(raw)
			}
		}
	}
	var buf strings.Builder
	buf.WriteString("# Written by emergentd record: the rules of the recorded configuration, without receivers,\n# routes or credentials.\n\n")
	if err := toml.NewEncoder(&buf).Encode(doc); err != nil {
		return "", fmt.Errorf("configuration for the recording: %w", err)
	}
	return buf.String(), nil
}

// withoutCredentials drops the user information and query of a URL (where tokens hide).
func withoutCredentials(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// Replay runs the daemon's evaluation over a recording and writes every alert as it would be
// delivered: the Alertmanager labels and the Slack message. It returns the number of episodes.
func Replay(ctx context.Context, cfg *config.Config, rec *sources.Recorded, w io.Writer, logger *slog.Logger) (int, error) {
	rg := rec.Range()
	g := cfg.Global
	from := engine.Align(rg.Start.Add(time.Duration(g.History)+time.Duration(g.Replay)), time.Duration(g.EvaluationInterval))
	if !from.Before(rg.End) {
		return 0, fmt.Errorf("replay: the recording (%s to %s) is shorter than history (%s) + replay (%s)",
			rg.Start.Format(time.RFC3339), rg.End.Format(time.RFC3339), g.History, g.Replay)
	}
	eng := engine.New(cfg, rec, logger, nil)
	events, err := eng.Bootstrap(ctx, from)
	if err != nil {
		return 0, err
	}
	more, err := eng.Advance(ctx, rg.End)
	if err != nil {
		return 0, err
	}
	events = append(events, more...)
	sort.SliceStable(events, func(i, j int) bool { return eventTime(events[i]).Before(eventTime(events[j])) })

	fmt.Fprintf(w, "Replaying %s to %s (%d rules, evaluation every %s)\n\n",
		rg.Start.Add(time.Duration(g.History)).UTC().Format(time.RFC3339), rg.End.UTC().Format(time.RFC3339), len(cfg.Rules), g.EvaluationInterval)
	episodes := 0
	for _, ev := range events {
		a := eng.AlertFor(ev.Episode)
		if a == nil {
			continue
		}
		a = alerts.WithExternalLabels(a, g.ExternalLabels)
		state := "FIRING"
		switch {
		case ev.Resolved:
			state = "RESOLVED"
		case ev.Updated:
			state = "UPDATED"
		default:
			episodes++
		}
		fmt.Fprintf(w, "=== %s %s %s %s\n", eventTime(ev).UTC().Format(time.RFC3339), state, ev.Episode.Kind, detector.GroupString(ev.Episode.Labels))
		fmt.Fprintf(w, "Alertmanager: %s startsAt=%s", labelString(a.Labels), a.StartsAt.UTC().Format(time.RFC3339))
		if a.Resolved() {
			fmt.Fprintf(w, " endsAt=%s", a.EndsAt.UTC().Format(time.RFC3339))
		}
		fmt.Fprintf(w, "\nSlack:\n%s\n\n", indent(alerts.SlackText(a), "  "))
	}
	fmt.Fprintf(w, "%d episodes.\n", episodes)
	return episodes, nil
}

func eventTime(ev detector.Event) time.Time {
	switch {
	case ev.Resolved:
		return ev.Episode.End
	case ev.Updated:
		return ev.At
	}
	return ev.Episode.Start
}

func labelString(labels map[string]string) string {
	return "{" + strings.ReplaceAll(detector.GroupString(labels), ", ", ",") + "}"
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}
