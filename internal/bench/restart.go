package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/emergent-sh/emergent/detector"
	"github.com/emergent-sh/emergent/engine"
)

// RestartCheck compares emergentd run without a stop with processes restarted from its state at
// points along the data, two ways: restored (engine.Restore: its open episodes and last step, as
// a restart reads them back from Prometheus, and a replay of what the rules remember) and
// carried (its episodes' starts handed over, and the whole replay window, as before restores).
type RestartCheck struct {
	Restarts int `json:"restarts"`
	// Episodes are those the process that never stopped had open in the compared windows.
	Episodes int `json:"episodes"`
	// Restored and Carried count the episodes each kind of restart reported with the same
	// start and end; the Diffs list what differed.
	Restored      int      `json:"restored_same"`
	Carried       int      `json:"carried_same"`
	RestoredDiffs []string `json:"restored_diffs,omitempty"`
	CarriedDiffs  []string `json:"carried_diffs,omitempty"`
}

// restartGap is how long after the last evaluated step a restarted process starts.
const restartGap = time.Minute

// restartWindow is how long after a restart its episodes are compared: past it, both processes
// have evaluated the same steps from the same data for longer than the rules remember.
const restartWindow = 3 * time.Hour

// WriteRestarts writes the restart check's table and differences, if it ran.
func WriteRestarts(w io.Writer, r *Result) {
	var rows []*SeedRun
	for _, run := range r.Runs {
		if run.Restarts != nil {
			rows = append(rows, run)
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\n#### Restarts from emergentd's own state (every %s, compared over the next %s)\n\n", r.Options.RestartEvery, restartWindow)
	fmt.Fprintln(w, "| seed | restarts | episodes open in the windows | same start and end, restored | same start and end, carried (whole replay) |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|")
	for _, run := range rows {
		c := run.Restarts
		fmt.Fprintf(w, "| %d | %d | %d | %d | %d |\n", run.Seed, c.Restarts, c.Episodes, c.Restored, c.Carried)
	}
	for _, run := range rows {
		for _, d := range run.Restarts.RestoredDiffs {
			fmt.Fprintf(w, "- seed %d, restored: %s\n", run.Seed, d)
		}
		for _, d := range run.Restarts.CarriedDiffs {
			fmt.Fprintf(w, "- seed %d, carried: %s\n", run.Seed, d)
		}
	}
}

// checkRestarts runs one engine over [from, end] and, every `every`, restarts from its state at
// that step; each restart's episodes over the following window are compared with the
// uninterrupted engine's there (an episode is its kind, group, start, and end within the window).
func checkRestarts(ctx context.Context, cfg *config.Config, src engine.Source, from, end time.Time, every, window time.Duration, logger *slog.Logger) (*RestartCheck, error) {
	kept := engine.New(cfg, src, logger, nil)
	events, err := kept.Bootstrap(ctx, from)
	if err != nil {
		return nil, err
	}
	type point struct {
		at   time.Time
		open []detector.Episode
	}
	var points []point
	for at := engine.Align(from.Add(every), time.Duration(cfg.Global.BaselineStep)); !at.Add(window).After(end); at = at.Add(every) {
		evs, err := kept.Advance(ctx, at)
		if err != nil {
			return nil, err
		}
		events = append(events, evs...)
		points = append(points, point{at, kept.Active()})
	}
	evs, err := kept.Advance(ctx, end)
	if err != nil {
		return nil, err
	}
	events = append(events, evs...)
	keptFinal := kept.Active()

	check := &RestartCheck{}
	for _, p := range points {
		until := p.at.Add(window)
		want := episodesIn(events, keptFinal, p.at, until)
		check.Restarts++
		check.Episodes += len(want)
		for _, restored := range []bool{true, false} {
			e := engine.New(cfg, src, logger, nil)
			if restored {
				e.Restore(p.open, p.at)
			} else {
				e.Carry(p.open)
			}
			got, err := e.Bootstrap(ctx, p.at.Add(restartGap))
			if err != nil {
				return nil, fmt.Errorf("restart at %s: %w", p.at.Format(time.RFC3339), err)
			}
			more, err := e.Advance(ctx, until)
			if err != nil {
				return nil, fmt.Errorf("restart at %s: %w", p.at.Format(time.RFC3339), err)
			}
			have := episodesIn(append(got, more...), e.Active(), p.at, until)
			same, diffs := compareEpisodes(want, have, p.at)
			if restored {
				check.Restored += same
				check.RestoredDiffs = append(check.RestoredDiffs, diffs...)
			} else {
				check.Carried += same
				check.CarriedDiffs = append(check.CarriedDiffs, diffs...)
			}
		}
	}
	return check, nil
}

// episodesIn lists the episodes open at some step of (from, until] as "kind group start–end",
// with "open" for an end after until: one that ended by from is the earlier process's.
func episodesIn(events []detector.Event, active []detector.Episode, from, until time.Time) []string {
	ends := map[string]time.Time{}
	for _, ev := range events {
		k := ev.Episode.Kind + " " + detector.GroupString(ev.Episode.Labels) + " " + ev.Episode.Start.UTC().Format(time.RFC3339)
		if _, ok := ends[k]; !ok || ev.Resolved {
			ends[k] = ev.Episode.End
		}
		if ev.Episode.Start.After(until) {
			delete(ends, k)
		}
	}
	for _, ep := range active {
		k := ep.Kind + " " + detector.GroupString(ep.Labels) + " " + ep.Start.UTC().Format(time.RFC3339)
		if !ep.Start.After(until) {
			ends[k] = time.Time{}
		}
	}
	var out []string
	for k, end := range ends {
		switch {
		case !end.IsZero() && !end.After(from):
		case end.IsZero() || end.After(until):
			out = append(out, k+" – open")
		default:
			out = append(out, k+" – "+end.UTC().Format(time.RFC3339))
		}
	}
	slices.Sort(out)
	return out
}

// compareEpisodes counts the wanted episodes a restart also has and lists the differences.
func compareEpisodes(want, have []string, at time.Time) (same int, diffs []string) {
	for _, w := range want {
		if slices.Contains(have, w) {
			same++
		} else {
			diffs = append(diffs, fmt.Sprintf("restart at %s: missing %s", at.UTC().Format(time.RFC3339), w))
		}
	}
	for _, h := range have {
		if !slices.Contains(want, h) {
			diffs = append(diffs, fmt.Sprintf("restart at %s: extra %s", at.UTC().Format(time.RFC3339), h))
		}
	}
	return same, diffs
}
