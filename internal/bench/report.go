package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// controlOrder is the control types in table order.
var controlOrder = []string{
	ControlSteady, ControlDiurnal, ControlSurge, ControlDeploy, ControlRedisRestart,
	ControlMaintenanceFlush, ControlScrapeGap, ControlCounterReset, ControlNAB,
}

// controlTypes lists the control types scored: the known ones in table order, then any other
// a corpus has (fleetsim's "healthy"), sorted.
func controlTypes(scored map[string]*ControlScore) []string {
	out := slices.Clone(controlOrder)
	var rest []string
	for c := range scored {
		if !slices.Contains(controlOrder, c) {
			rest = append(rest, c)
		}
	}
	slices.Sort(rest)
	return append(out, rest...)
}

func fmtDelay(d time.Duration) string {
	if d == time.Duration(math.MaxInt64) {
		return "–"
	}
	neg := ""
	if d < 0 {
		neg, d = "−", -d
	}
	d = d.Round(time.Second)
	if d < time.Minute {
		return fmt.Sprintf("%s%ds", neg, int(d.Seconds()))
	}
	return fmt.Sprintf("%s%dm%02ds", neg, int(d.Minutes()), int(d.Seconds())%60)
}

func fmtRatio(x float64) string { return strconv.FormatFloat(x, 'f', 3, 64) }

func seedList(seeds []uint64) string {
	parts := make([]string, len(seeds))
	for i, s := range seeds {
		parts[i] = strconv.FormatUint(s, 10)
	}
	return strings.Join(parts, ",")
}

func fmtThreshold(x float64) string {
	if x == 0 || (math.Abs(x) >= 0.01 && math.Abs(x) < 1e5) {
		return strconv.FormatFloat(x, 'g', 4, 64)
	}
	return strconv.FormatFloat(x, 'e', 2, 64)
}

// WriteReport writes the markdown tables of a run.
func WriteReport(w io.Writer, r *Result) {
	form := "full"
	if r.Options.Short {
		form = "short"
	}
	var seeds []uint64
	for _, run := range r.Runs {
		seeds = append(seeds, run.Seed)
	}
	fmt.Fprintf(w, "### Detection quality — %s form, held-out seeds %s (pooled), anchors tuned on seed %d\n\n", form, seedList(seeds), r.Options.TuneSeed)
	if len(r.Runs) > 0 {
		ds := r.Runs[0].Dataset
		svcs, inc := 0, 0
		for _, run := range r.Runs {
			svcs += len(run.Dataset.Services)
			inc += len(run.Dataset.Incidents)
		}
		fmt.Fprintf(w, "Per seed: %.0f days at %s, the last %.1f scored; %d services and %d incidents over the %d seeds. "+
			"An episode matches an incident when kind and service agree and it overlaps the incident widened by %s on both sides.\n\n",
			ds.End.Sub(ds.Start).Hours()/24, time.Duration(ds.Step), ds.EvalDays(), svcs, inc, len(r.Runs), MatchTolerance)
	}

	fmt.Fprintln(w, "| detector | kind | incidents | detected | recall | episodes | false | repeat | precision | F1 | delay p50 | delay p90 | p50 from definition |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, d := range Detectors() {
		s := r.Pooled[d]
		rows := append([]string(nil), Kinds...)
		rows = append(rows, "overall")
		for _, k := range rows {
			var ks KindScore
			if k == "overall" {
				ks = s.Overall()
			} else {
				ks = *s.Kinds[k]
			}
			name := d
			if k == "overall" {
				name = "**" + d + "**"
				k = "**overall**"
			}
			fmt.Fprintf(w, "| %s | %s | %d | %d | %s | %d | %d | %d | %s | %s | %s | %s | %s |\n", name, k,
				ks.Incidents, ks.Detected, fmtRatio(ks.Recall()), ks.Episodes, ks.FalsePos(), ks.Duplicates,
				fmtRatio(ks.Precision()), fmtRatio(ks.F1()), fmtDelay(ks.DelayQuantile(0.5)), fmtDelay(ks.DelayQuantile(0.9)),
				fmtDelay(ks.DefinedDelayQuantile(0.5)))
		}
	}
	fmt.Fprintln(w, "\n`false`: episodes matching no incident; `repeat`: further episodes for an incident already detected (pages again, counted as true in precision). Delay: first matching episode start − incident start (a flush storm starts at its first flush); from definition: − the time the incident met its kind's definition (a storm's third flush within 10 minutes).")

	fmt.Fprintf(w, "\n#### False alert episodes on controls: per service-day (episodes during the control events / events)\n\n")
	detectorColumns(w, "| control | services | service-days |", "|---|---:|---:|", "%s")
	for _, c := range controlTypes(r.Pooled[DetectorEmergent].Controls) {
		base, ok := r.Pooled[DetectorEmergent].Controls[c]
		if !ok {
			continue
		}
		label := c
		if c == ControlNAB {
			label = "NAB labelled windows"
		}
		fmt.Fprintf(w, "| %s | %d | %.1f |", label, base.Services, base.ServiceDays)
		for _, d := range Detectors() {
			cs := r.Pooled[d].Controls[c]
			if cs == nil {
				cs = &ControlScore{}
			}
			if c == ControlSteady || c == ControlDiurnal {
				fmt.Fprintf(w, " %.2f |", cs.PerServiceDay())
			} else {
				fmt.Fprintf(w, " %.2f (%d/%d) |", cs.PerServiceDay(), cs.DuringEvents, cs.Events)
			}
		}
		fmt.Fprintln(w)
	}
	serviceDays := 0.0
	for _, run := range r.Runs {
		serviceDays += float64(len(run.Dataset.Services)) * run.Dataset.EvalDays()
	}
	fmt.Fprintf(w, "\nEpisodes matching no incident, on any service, per service-day (%.0f service-days):", serviceDays)
	for _, d := range Detectors() {
		fmt.Fprintf(w, " %s %.3f;", d, float64(len(r.Pooled[d].False))/serviceDays)
	}
	fmt.Fprintln(w)

	fmt.Fprintf(w, "\n#### Recall and delay by scenario\n\n")
	detectorColumns(w, "| scenario | incidents |", "|---|---:|", "%s detected, p50")
	var scenarios []string
	for sc := range r.Pooled[DetectorEmergent].Scenarios {
		scenarios = append(scenarios, sc)
	}
	sort.Strings(scenarios)
	for _, sc := range scenarios {
		base := r.Pooled[DetectorEmergent].Scenarios[sc]
		fmt.Fprintf(w, "| %s | %d |", sc, base.Incidents)
		for _, d := range Detectors() {
			ks := r.Pooled[d].Scenarios[sc]
			if ks == nil {
				ks = &KindScore{}
			}
			fmt.Fprintf(w, " %d, %s |", ks.Detected, fmtDelay(ks.DelayQuantile(0.5)))
		}
		fmt.Fprintln(w)
	}

	fmt.Fprintf(w, "\n#### F1 per seed (overall)\n\n")
	detectorColumns(w, "| seed |", "|---:|", "%s")
	for _, run := range r.Runs {
		fmt.Fprintf(w, "| %d |", run.Seed)
		for _, d := range Detectors() {
			o := r.PerSeed[run.Seed][d].Overall()
			fmt.Fprintf(w, " %s |", fmtRatio(o.F1()))
		}
		fmt.Fprintln(w)
	}

	fmt.Fprintf(w, "\n#### Anchors as tuned on seed %d (grid: threshold × for, best F1 for the anchor's kind)\n\n", r.Options.TuneSeed)
	fmt.Fprintln(w, "| anchor | kind | alerting rule | for | F1 on tuning seed |")
	fmt.Fprintln(w, "|---|---|---|---:|---:|")
	for _, t := range r.Tuned {
		fmt.Fprintf(w, "| %s | %s | `%s > %s` | %s | %s |\n", t.Anchor.Name, t.Anchor.Kind, strings.ReplaceAll(t.Anchor.Expr, "|", "\\|"),
			fmtThreshold(t.Params.Threshold), time.Duration(t.Params.For), fmtRatio(t.TuneF1))
	}
	fmt.Fprintf(w, "\n#### emergentd on the tuning seed %d (not tuned on it; for comparison)\n\n", r.Options.TuneSeed)
	ts := ScoreDataset(r.Tune.Dataset, DetectorEmergent, r.Tune.Emergent)
	o := ts.Overall()
	fmt.Fprintf(w, "F1 self_generated_traffic %s, flush_storm %s, overall %s.\n",
		fmtRatio(ts.Kinds[Kinds[0]].F1()), fmtRatio(ts.Kinds[Kinds[1]].F1()), fmtRatio(o.F1()))

	fmt.Fprintf(w, "\n#### Timings (wall clock, %d CPUs, %s, %s)\n\n", r.Machine.CPUs, r.Machine.GoVersion, r.Machine.Prometheus)
	fmt.Fprintln(w, "| seed | services | samples | OpenMetrics | generate | backfill (promtool) | Prometheus start | emergentd backtest | anchor queries |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	all := append([]*SeedRun{r.Tune}, r.Runs...)
	for _, run := range all {
		t := run.Timings
		fmt.Fprintf(w, "| %d | %d | %.2f M | %.0f MB | %s | %s | %s | %s | %s |\n", run.Seed, len(run.Dataset.Services),
			float64(run.Dataset.Samples)/1e6, float64(run.Dataset.Bytes)/1e6,
			t.Generate.Round(100*time.Millisecond), t.Backfill.Round(100*time.Millisecond), t.PrometheusStart.Round(100*time.Millisecond),
			t.Backtest.Round(100*time.Millisecond), t.Anchors.Round(100*time.Millisecond))
	}
	fmt.Fprintf(w, "\nTotal %s.\n", r.Total.Round(time.Second))
	for _, run := range all {
		for _, n := range run.Dataset.Notes {
			fmt.Fprintf(w, "\nSeed %d: %s.", run.Seed, n)
		}
	}
	fmt.Fprintln(w)
}

// WriteEvidence lists emergentd's misses and false episodes, for the report's reasons.
func WriteEvidence(w io.Writer, r *Result, detector string) {
	s := r.Pooled[detector]
	fmt.Fprintf(w, "\n#### %s: missed incidents\n\n", detector)
	if len(s.Missed) == 0 {
		fmt.Fprintln(w, "None.")
	}
	// Per seed, so an entry can be looked up in that seed's data.
	for _, run := range r.Runs {
		for _, in := range r.PerSeed[run.Seed][detector].Missed {
			fmt.Fprintf(w, "- seed %d: %s %s %s %s – %s (%s)\n", run.Seed, in.Kind, in.Service, in.Scenario, in.Start.Format(time.RFC3339), in.End.Format(time.RFC3339), in.End.Sub(in.Start).Round(time.Second))
		}
	}
	fmt.Fprintf(w, "\n#### %s: detected after %s\n\n", detector, fmtDelay(SlowDelay))
	if len(s.Slow) == 0 {
		fmt.Fprintln(w, "None.")
	}
	for _, run := range r.Runs {
		for _, sd := range r.PerSeed[run.Seed][detector].Slow {
			in := sd.Incident
			fmt.Fprintf(w, "- seed %d: %s %s %s %s, after %s\n", run.Seed, in.Kind, in.Service, in.Scenario, in.Start.Format(time.RFC3339), fmtDelay(sd.Delay))
		}
	}
	for _, list := range []struct {
		title string
		eps   func(*Score) []Episode
	}{
		{"false episodes", func(s *Score) []Episode { return s.False }},
		{"repeated pages (episodes after an incident's first)", func(s *Score) []Episode { return s.Repeated }},
	} {
		fmt.Fprintf(w, "\n#### %s: %s\n\n", detector, list.title)
		if len(list.eps(s)) == 0 {
			fmt.Fprintln(w, "None.")
		}
		for _, run := range r.Runs {
			for _, ep := range list.eps(r.PerSeed[run.Seed][detector]) {
				end := "still firing"
				if !ep.End.IsZero() {
					end = ep.End.Format(time.RFC3339)
				}
				fmt.Fprintf(w, "- seed %d: %s %s %s – %s", run.Seed, ep.Kind, ep.Service, ep.Start.Format(time.RFC3339), end)
				if ep.Summary != "" {
					fmt.Fprintf(w, ": %s", ep.Summary)
				}
				fmt.Fprintln(w)
			}
		}
	}
}

// detectorColumns writes a table header: the leading columns, then one right-aligned column per
// detector, titled by title (a format taking the detector's name).
func detectorColumns(w io.Writer, lead, leadAlign, title string) {
	fmt.Fprint(w, lead)
	for _, d := range Detectors() {
		fmt.Fprintf(w, " "+title+" |", d)
	}
	fmt.Fprint(w, "\n"+leadAlign)
	for range Detectors() {
		fmt.Fprint(w, "---:|")
	}
	fmt.Fprintln(w)
}
