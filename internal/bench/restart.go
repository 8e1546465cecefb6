package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
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
	Episodes int          `json:"episodes"`
	Restored RestartScore `json:"restored"`
	Carried  RestartScore `json:"carried"`
	// ColdEpisodes are those a cold start (nothing restored or carried) that replays all of
	// replay for every group has in the windows, and Cold how one that replays it only for the
	// groups stirred in it (engine.CheapReplay) compares with it.
	ColdEpisodes int          `json:"cold_episodes"`
	Cold         RestartScore `json:"cold"`
}

// RestartScore is how one way of restarting compares with the uninterrupted run.
type RestartScore struct {
	Same  int `json:"same"`  // same start and end
	Near  int `json:"near"`  // start and end within restartTolerance
	Extra int `json:"extra"` // a restart's episodes matched by neither
	// Paged counts the episodes the restart paged too (a start within restartTolerance,
	// whatever the end); NewPages the restart's episodes whose start the run never had.
	Paged    int      `json:"paged"`
	NewPages int      `json:"new_pages"`
	Diffs    []string `json:"diffs,omitempty"` // what differed
}

func (s *RestartScore) add(o RestartScore) {
	s.Same, s.Near, s.Extra, s.Paged, s.NewPages = s.Same+o.Same, s.Near+o.Near, s.Extra+o.Extra, s.Paged+o.Paged, s.NewPages+o.NewPages
	s.Diffs = append(s.Diffs, o.Diffs...)
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
	fmt.Fprintf(w, "| seed | restarts | episodes open in the windows | restored: same start and end | restored: within %s | restored: extra | restored: paged alike (start within %s) | restored: new pages | carried (whole replay): same | carried: within %s | carried: extra | carried: paged alike | carried: new pages |\n",
		restartTolerance, restartTolerance, restartTolerance)
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, run := range rows {
		c, r, k := run.Restarts, run.Restarts.Restored, run.Restarts.Carried
		fmt.Fprintf(w, "| %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d |\n", run.Seed, c.Restarts, c.Episodes,
			r.Same, r.Near, r.Extra, r.Paged, r.NewPages, k.Same, k.Near, k.Extra, k.Paged, k.NewPages)
	}
	fmt.Fprintf(w, "\n#### Cold starts at the same points: the replay of the stirred groups alone against every group's (compared over the next %s)\n\n", restartWindow)
	fmt.Fprintf(w, "| seed | starts | episodes of the full replay | cheap: same start and end | cheap: within %s | cheap: extra | cheap: paged alike | cheap: new pages |\n", restartTolerance)
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, run := range rows {
		c, k := run.Restarts, run.Restarts.Cold
		fmt.Fprintf(w, "| %d | %d | %d | %d | %d | %d | %d | %d |\n", run.Seed, c.Restarts, c.ColdEpisodes, k.Same, k.Near, k.Extra, k.Paged, k.NewPages)
	}
	for _, run := range rows {
		for _, d := range run.Restarts.Cold.Diffs {
			fmt.Fprintf(w, "- seed %d, cheap cold start: %s\n", run.Seed, d)
		}
		for _, d := range run.Restarts.Restored.Diffs {
			fmt.Fprintf(w, "- seed %d, restored: %s\n", run.Seed, d)
		}
		for _, d := range run.Restarts.Carried.Diffs {
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
			score := &check.Carried
			if restored {
				score = &check.Restored
			}
			have, err := startAt(ctx, cfg, src, logger, p.at, until, func(e *engine.Engine) {
				e.Forget(episodesBefore(events, p.open, p.at), p.at)
				if restored {
					e.Restore(p.open, p.at)
				} else {
					e.Carry(p.open)
				}
			})
			if err != nil {
				return nil, err
			}
			score.add(compareEpisodes(want, have, p.at))
		}
		full, err := startAt(ctx, cfg, src, logger, p.at, until, func(*engine.Engine) {})
		if err != nil {
			return nil, err
		}
		cheap, err := startAt(ctx, cfg, src, logger, p.at, until, (*engine.Engine).CheapReplay)
		if err != nil {
			return nil, err
		}
		check.ColdEpisodes += len(full)
		check.Cold.add(compareEpisodes(full, cheap, p.at))
	}
	return check, nil
}

// startAt is the episodes over (at, until] of a process started a restartGap after at, set up by
// prepare first: handed what the run had at at (Restore, Carry), or nothing (a cold start,
// replaying every group or, CheapReplay, the stirred ones).
func startAt(ctx context.Context, cfg *config.Config, src engine.Source, logger *slog.Logger, at, until time.Time, prepare func(*engine.Engine)) ([]windowEpisode, error) {
	e := engine.New(cfg, src, logger, nil)
	prepare(e)
	got, err := e.Bootstrap(ctx, at.Add(restartGap))
	if err != nil {
		return nil, fmt.Errorf("start at %s: %w", at.Format(time.RFC3339), err)
	}
	more, err := e.Advance(ctx, until)
	if err != nil {
		return nil, fmt.Errorf("start at %s: %w", at.Format(time.RFC3339), err)
	}
	return episodesIn(append(got, more...), e.Active(), at, until), nil
}

// episodesBefore are the episodes that began before at, as a process that stopped there
// exported them: those it resolved by then, with their ends, and those it had open.
func episodesBefore(events []detector.Event, open []detector.Episode, at time.Time) []detector.Episode {
	out := slices.Clone(open)
	for _, ev := range events {
		if ev.Resolved && !ev.At.After(at) {
			out = append(out, ev.Episode)
		}
	}
	return out
}

// restartTolerance is how far a restart's episode may start or end from the uninterrupted run's
// and still be the same page: the history a restart reads back at baseline_step holds steps a
// live process did not learn from (holds, breaches), so a marginal step can flip. It is the
// shipped rules' for.
const restartTolerance = 5 * time.Minute

// windowEpisode is an episode open at some step of a compared window; a zero end is open past it.
type windowEpisode struct {
	kind, group string
	start, end  time.Time
}

func (w windowEpisode) String() string {
	end := "open"
	if !w.end.IsZero() {
		end = w.end.UTC().Format(time.RFC3339)
	}
	return w.kind + " " + w.group + " " + w.start.UTC().Format(time.RFC3339) + " – " + end
}

// near reports whether h is w within restartTolerance.
func (w windowEpisode) near(h windowEpisode) bool {
	within := func(a, b time.Time) bool { return a.Sub(b).Abs() <= restartTolerance }
	return w.kind == h.kind && w.group == h.group && within(w.start, h.start) &&
		(w.end.IsZero() == h.end.IsZero() && (w.end.IsZero() || within(w.end, h.end)))
}

// episodesIn lists the episodes open at some step of (from, until], ends after until as open:
// one that ended by from is the earlier process's.
func episodesIn(events []detector.Event, active []detector.Episode, from, until time.Time) []windowEpisode {
	type id struct{ kind, group, start string }
	eps := map[id]windowEpisode{}
	add := func(ep detector.Episode) {
		if ep.Start.After(until) {
			return
		}
		k := id{ep.Kind, detector.GroupString(ep.Labels), ep.Start.String()}
		if old, ok := eps[k]; !ok || old.end.IsZero() {
			eps[k] = windowEpisode{ep.Kind, detector.GroupString(ep.Labels), ep.Start, ep.End}
		}
	}
	for _, ev := range events {
		add(ev.Episode)
	}
	for _, ep := range active {
		add(ep)
	}
	var out []windowEpisode
	for _, w := range eps {
		switch {
		case !w.end.IsZero() && !w.end.After(from):
		case w.end.After(until):
			w.end = time.Time{}
			out = append(out, w)
		default:
			out = append(out, w)
		}
	}
	slices.SortFunc(out, func(a, b windowEpisode) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// compareEpisodes compares a restart's episodes with the wanted ones and lists what differs: a
// match within the tolerance, or an episode missing or extra.
func compareEpisodes(want, have []windowEpisode, at time.Time) RestartScore {
	var c RestartScore
	used := make([]bool, len(have))
	prefix := "restart at " + at.UTC().Format(time.RFC3339) + ": "
	for _, w := range want {
		best := -1
		for i, h := range have {
			if !used[i] && w.near(h) && (best < 0 || h == w) {
				best = i
			}
		}
		switch {
		case best < 0:
			c.Diffs = append(c.Diffs, prefix+"missing "+w.String())
		case have[best] == w:
			c.Same, c.Near = c.Same+1, c.Near+1
			used[best] = true
		default:
			c.Near++
			used[best] = true
			c.Diffs = append(c.Diffs, prefix+w.String()+" came as "+have[best].String())
		}
	}
	for i, h := range have {
		if !used[i] {
			c.Extra++
			c.Diffs = append(c.Diffs, prefix+"extra "+h.String())
		}
	}
	paged := make([]bool, len(have))
	for _, w := range want {
		for i, h := range have {
			if !paged[i] && w.kind == h.kind && w.group == h.group && w.start.Sub(h.start).Abs() <= restartTolerance {
				paged[i] = true
				c.Paged++
				break
			}
		}
	}
	for _, p := range paged {
		if !p {
			c.NewPages++
		}
	}
	return c
}
