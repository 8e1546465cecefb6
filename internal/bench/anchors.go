package bench

import (
	"context"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/emergent-sh/emergent/sources"
	"github.com/prometheus/common/model"
)

// Anchor is an alerting rule a team writes today: `Expr > threshold` held for `for`, one alert
// per service. Threshold and for are tuned per anchor on the tuning seed.
type Anchor struct {
	// Family is static, ratio or zscore; Name is what the tables call it.
	Family, Name string
	Kind         string
	Expr         string
	// ZScores lists the k the grid tries on top of the data's quantiles (z-score anchors).
	ZScores []float64
}

// Anchor families.
const (
	FamilyStatic = "static"
	FamilyRatio  = "ratio"
	FamilyZScore = "zscore"
)

const (
	mintRate  = `sum by (service) (rate(token_mint_count[5m]))`
	inRate    = `sum by (service) (rate(http_requests_total[5m]))`
	flushIncr = `sum by (service) (increase(redis_commands_total{cmd=~"flushdb|flushall"}[10m]))`
	redisRate = `sum by (service) (rate(redis_commands_total[5m]))`
)

// zscore is Grafana's and GitLab's adaptive band: how many standard deviations of the last hour
// the value is from the last hour's mean. The hour is a subquery at the evaluation step.
func zscore(x string, step time.Duration) string {
	w := fmt.Sprintf("[1h:%s]", model.Duration(step))
	return fmt.Sprintf("(%s - avg_over_time((%s)%s)) / stddev_over_time((%s)%s)", x, x, w, x, w)
}

// Anchors are the three families for both kinds:
//   - static: a threshold on the token mint rate; on flushes in the last 10 minutes;
//   - ratio: token mints per inbound request; Redis commands per inbound request (the lab's
//     flush-storm signature: ~870 vs 3–4 healthy);
//   - zscore: the static expressions against their own last hour.
func Anchors(step time.Duration) []Anchor {
	zs := []float64{1, 1.5, 2, 2.5, 3, 3.5, 4, 5, 6, 8, 10, 15, 20}
	return []Anchor{
		{Family: FamilyStatic, Name: "static", Kind: config.KindSelfGenerated, Expr: mintRate},
		{Family: FamilyRatio, Name: "ratio", Kind: config.KindSelfGenerated, Expr: mintRate + " / " + inRate},
		{Family: FamilyZScore, Name: "zscore", Kind: config.KindSelfGenerated, Expr: zscore(mintRate, step), ZScores: zs},
		{Family: FamilyStatic, Name: "static", Kind: config.KindFlushStorm, Expr: flushIncr},
		{Family: FamilyRatio, Name: "ratio", Kind: config.KindFlushStorm, Expr: redisRate + " / " + inRate},
		{Family: FamilyZScore, Name: "zscore", Kind: config.KindFlushStorm, Expr: zscore(flushIncr, step), ZScores: zs},
	}
}

// AnchorValues are one anchor expression's values per service on a grid (NaN: no sample).
type AnchorValues struct {
	Grid   grid
	Values map[string][]float64
}

// maxQuerySteps keeps each range query well under Prometheus's 11 000 points per series and
// its 50 M samples per query.
const maxQuerySteps = 2880

// queryValues evaluates expr over [from, to] at step in chunks and lays the answers on a grid.
func queryValues(ctx context.Context, src sources.Source, expr string, from, to time.Time, step time.Duration) (AnchorValues, error) {
	g := grid{From: from, Step: step, N: int(to.Sub(from)/step) + 1}
	av := AnchorValues{Grid: g, Values: map[string][]float64{}}
	for start := 0; start < g.N; start += maxQuerySteps {
		end := min(start+maxQuerySteps, g.N) - 1
		m, warnings, err := src.QueryRange(ctx, expr, sources.Range{Start: g.at(start), End: g.at(end), Step: step})
		if err != nil {
			return av, fmt.Errorf("anchor query %q: %w", expr, err)
		}
		if w := partialWarnings(warnings); w != "" {
			return av, fmt.Errorf("anchor query %q: partial result: %s", expr, w)
		}
		for _, ss := range m {
			svc := string(ss.Metric["service"])
			vals, ok := av.Values[svc]
			if !ok {
				vals = make([]float64, g.N)
				for i := range vals {
					vals[i] = math.NaN()
				}
				av.Values[svc] = vals
			}
			for _, p := range ss.Values {
				off := p.Timestamp.Time().Sub(g.From)
				if off < 0 || off%step != 0 {
					continue
				}
				if i := int(off / step); i < g.N {
					vals[i] = float64(p.Value)
				}
			}
		}
	}
	return av, nil
}

func partialWarnings(ws sources.Warnings) string {
	out := ""
	for _, w := range ws {
		if len(w) >= 11 && (w[:11] == "PromQL info" || w[:11] == "promql info") {
			continue
		}
		out += w + "; "
	}
	return out
}

// AnchorParams are an anchor's tuned threshold and for.
type AnchorParams struct {
	Threshold float64
	For       time.Duration
}

// anchorFors is the grid of `for` durations tried.
var anchorFors = []time.Duration{0, 30 * time.Second, time.Minute, 2 * time.Minute, 3 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 20 * time.Minute, 30 * time.Minute}

// thresholdCandidates spans the values the expression takes on the tuning data: its quantiles
// from the median up (denser towards the top, where alert thresholds live), log-spaced values
// between the smallest positive and the largest finite value, and the anchor's fixed z list.
func thresholdCandidates(a Anchor, av AnchorValues, from int) []float64 {
	var xs []float64
	for _, vals := range av.Values {
		for _, v := range vals[from:] {
			if !math.IsNaN(v) && !math.IsInf(v, 0) {
				xs = append(xs, v)
			}
		}
	}
	set := map[float64]bool{}
	for _, z := range a.ZScores {
		set[z] = true
	}
	if len(xs) > 0 {
		sort.Float64s(xs)
		for j := 0; j <= 100; j++ {
			q := 1 - math.Pow(10, -float64(j)/20) // 0 … 0.99999
			q = 0.5 + q/2
			set[xs[min(len(xs)-1, int(q*float64(len(xs))))]] = true
		}
		lo := 0.0
		for _, x := range xs {
			if x > 0 {
				lo = x
				break
			}
		}
		hi := xs[len(xs)-1]
		if lo > 0 && hi > lo {
			for j := 0; j <= 60; j++ {
				set[lo*math.Pow(hi/lo, float64(j)/60)] = true
			}
		}
	}
	out := make([]float64, 0, len(set))
	for x := range set {
		out = append(out, x)
	}
	sort.Float64s(out)
	return out
}

// anchorEpisodes applies params to every service's values and keeps the episodes that were
// active at or after scoreFrom (the engine's backtest keeps the same).
func anchorEpisodes(a Anchor, av AnchorValues, p AnchorParams, scoreFrom time.Time) []Episode {
	var out []Episode
	services := make([]string, 0, len(av.Values))
	for s := range av.Values {
		services = append(services, s)
	}
	sort.Strings(services)
	for _, svc := range services {
		for _, ep := range ruleEpisodes(runs(av.Values[svc], p.Threshold), av.Grid, p.For) {
			if !ep.End.IsZero() && ep.End.Before(scoreFrom) {
				continue
			}
			ep.Detector, ep.Kind, ep.Service = a.Name, a.Kind, svc
			out = append(out, ep)
		}
	}
	return out
}

// Tuned is an anchor with the parameters that maximised its F1 on the tuning seed.
type Tuned struct {
	Anchor Anchor
	Params AnchorParams
	// TuneF1 is the F1 for the anchor's kind on the tuning seed.
	TuneF1 float64
}

// tune grid-searches threshold × for on the tuning dataset and keeps the best F1 for the
// anchor's kind. Ties go to the shorter median delay, then the higher threshold (fewer pages),
// then the shorter for.
func tune(a Anchor, av AnchorValues, ds *Dataset) Tuned {
	from := int(math.Max(0, math.Ceil(float64(ds.EvalFrom.Sub(av.Grid.From))/float64(av.Grid.Step))))
	best := Tuned{Anchor: a, TuneF1: -1}
	bestDelay := time.Duration(math.MaxInt64)
	services := make([]string, 0, len(av.Values))
	for s := range av.Values {
		services = append(services, s)
	}
	sort.Strings(services)
	for _, thr := range thresholdCandidates(a, av, from) {
		streaks := make(map[string][]run, len(services))
		for _, s := range services {
			streaks[s] = runs(av.Values[s], thr)
		}
		for _, f := range anchorFors {
			var eps []Episode
			for _, s := range services {
				for _, ep := range ruleEpisodes(streaks[s], av.Grid, f) {
					if !ep.End.IsZero() && ep.End.Before(ds.EvalFrom) {
						continue
					}
					ep.Detector, ep.Kind, ep.Service = a.Name, a.Kind, s
					eps = append(eps, ep)
				}
			}
			ks := scoreKind(ds, eps, a.Kind)
			f1 := ks.F1()
			delay := ks.DelayQuantile(0.5)
			better := f1 > best.TuneF1+1e-12 ||
				(math.Abs(f1-best.TuneF1) <= 1e-12 && (delay < bestDelay ||
					(delay == bestDelay && (thr > best.Params.Threshold || (thr == best.Params.Threshold && f < best.Params.For)))))
			if better {
				best.TuneF1, bestDelay = f1, delay
				best.Params = AnchorParams{Threshold: thr, For: f}
			}
		}
	}
	return best
}
