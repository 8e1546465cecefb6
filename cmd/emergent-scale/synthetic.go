package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/emergent-sh/emergent/detector"
	"github.com/emergent-sh/emergent/internal/promsynth"
	"github.com/emergent-sh/emergent/sources"
	"github.com/prometheus/common/model"
)

// The synthetic mode (--synthetic) measures emergentd against promsynth instead of a
// backfilled Prometheus: the same fleet (gen.go), answered as the results of the configured
// queries at whatever times emergentd asks. It scales to fleets whose backfill would not fit
// this machine (100 000 groups is 3.7 G samples at the history's resolution alone), and
// measures emergentd only: promsynth runs in this process, the worker in its own.
//
// The answers are the fleet's model rates, not rate() over sampled counters: Prometheus's
// extrapolation and the counters' integer steps are left out, which changes values by a few
// per cent and no verdict (the same services fire).

// resetsRange is the range of the shipped rules.toml's cache_resets query.
const resetsRange = 5 * time.Minute

// probesPerInstance is the synthetic replica_count of every group: one instance answering a
// probe every 10 s (Kubernetes' default periodSeconds).
const probesPerInstance = 0.1

// Signal names of the shipped rules.toml, each answered by a metric's per-service rate.
var signalMetrics = map[string]string{
	"token_mints":        "token_mint_count",
	"token_cache_misses": "token_cache_misses",
	"redis_commands":     "redis_commands_total",
	"cache_misses":       "cache_misses_total",
}

// fleetAnswers maps every query of cfg to the fleet's answer, by the role the query plays in
// its rule (work signals by their name in the shipped rules.toml). A query with no synthetic
// answer, or one text asked in two roles that answer differently, is an error: measuring a
// rule that sees nothing would measure nothing.
func fleetAnswers(cfg *config.Config, f *fleet) (map[string]promsynth.Answer, error) {
	fa := newFleetAnswerer(f)
	out := map[string]promsynth.Answer{}
	roleOf := map[string]string{}
	add := func(rule, role, query, answer string) error {
		if query == "" {
			return nil
		}
		if prev, ok := roleOf[query]; ok {
			if prev != answer {
				return fmt.Errorf("rule %s: %s %q is answered as %s elsewhere, as %s here", rule, role, query, prev, answer)
			}
			return nil
		}
		a, ok := fa.answer(answer)
		if !ok {
			return fmt.Errorf("rule %s: %s %q: the synthetic fleet has no %s", rule, role, query, answer)
		}
		roleOf[query], out[query] = answer, a
		return nil
	}
	for _, r := range cfg.Rules {
		roles := []struct{ role, query, answer string }{
			{"inbound", r.Inbound, "rate:http_requests_total"},
			// http_requests_total has no instance label: by (service, instance) is by service.
			{"replicas", r.Replicas, "rate:http_requests_total"},
			{"replica_count", r.ReplicaCount, "replica_count"},
			{"instances", r.Instances, "instances:token_mint_count"},
			{"cache_resets", r.CacheResets, "cache_resets"},
			{"flushes", r.Flushes, "flushes"},
			{"keys", r.Keys, "sum:redis_db_keys"},
			{"commands", r.Commands, "rate:redis_commands_total"},
			{"writes", r.Writes, "rate:uploads_total"},
		}
		for _, s := range r.Signals {
			metric, ok := signalMetrics[s.Name]
			if !ok {
				return nil, fmt.Errorf("rule %s: signal %s: the synthetic fleet answers only the shipped signals", r.Name, s.Name)
			}
			roles = append(roles, struct{ role, query, answer string }{"signal " + s.Name, s.Query, "rate:" + metric})
		}
		for _, x := range roles {
			if err := add(r.Name, x.role, x.query, x.answer); err != nil {
				return nil, err
			}
		}
		// The start-up asks the work's history averaged over each baseline step, its ranges
		// widened: the same answer (the fleet's rates are steady within a step; the cache
		// resets' widened ranges would see a few more flushes, which costs nothing here).
		for _, q := range detector.HistoryStepAveraged(r) {
			wide, err := sources.StepAveragedQuery(q, time.Duration(cfg.Global.BaselineStep))
			if err != nil {
				return nil, fmt.Errorf("rule %s: %w", r.Name, err)
			}
			if err := add(r.Name, "step-averaged history of "+q, wide, roleOf[q]); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// fleetAnswerer builds the fleet's answers; services holds the label values, made once.
type fleetAnswerer struct {
	f        *fleet
	services []model.LabelValue
	families map[string]*family
}

func newFleetAnswerer(f *fleet) *fleetAnswerer {
	fa := &fleetAnswerer{f: f, services: make([]model.LabelValue, f.groups), families: map[string]*family{}}
	for g := range fa.services {
		fa.services[g] = model.LabelValue(fmt.Sprintf("svc-%05d", g))
	}
	for _, fam := range f.families() {
		fa.families[fam.name] = fam
	}
	return fa
}

// answer returns the answer named kind:metric (or cache_resets, flushes):
//   - rate:M — sum by (service) (rate(M[...])): the model's per-service rate;
//   - sum:M — sum by (service) (M), a gauge;
//   - instances:M — sum by (service, instance) (rate(M[...])) > 0;
//   - flushes — the raw flushdb counters (redis_commands_total{cmd="flushdb"});
//   - cache_resets — the services whose flush counter rose within the shipped query's range.
func (fa *fleetAnswerer) answer(name string) (promsynth.Answer, bool) {
	f := fa.f
	switch name {
	case "flushes":
		return promsynth.Answer{Series: f.groups,
			Labels: func(dst []model.LabelPair, g int) []model.LabelPair {
				return append(dst, model.LabelPair{Name: model.MetricNameLabel, Value: "redis_commands_total"},
					model.LabelPair{Name: "cmd", Value: "flushdb"}, model.LabelPair{Name: "service", Value: fa.services[g]})
			},
			Value: func(g int, t time.Time) (float64, bool) { return f.flushCount(g, t), true },
		}, true
	case "replica_count":
		// Each group is one instance that never scales (gen.go): its probes are steady.
		return promsynth.Answer{Series: f.groups, Labels: fa.byService,
			Value: func(int, time.Time) (float64, bool) { return probesPerInstance, true },
		}, true
	case "cache_resets":
		return promsynth.Answer{Series: f.groups, Labels: fa.byService,
			Value: func(g int, t time.Time) (float64, bool) {
				increase := f.flushCount(g, t) - f.flushCount(g, t.Add(-resetsRange))
				return increase, increase > 0
			},
		}, true
	}
	kind, metric, _ := strings.Cut(name, ":")
	fam, ok := fa.families[metric]
	if !ok {
		return promsynth.Answer{}, false
	}
	switch kind {
	case "rate", "sum":
		if (kind == "rate") != fam.counter {
			return promsynth.Answer{}, false
		}
		return promsynth.Answer{Series: f.groups, Labels: fa.byService,
			Value: func(g int, t time.Time) (float64, bool) {
				day, sum := dayCurve(t), 0.0
				for s := range fam.perGroup {
					sum += fam.value(f, g, s, t, day)
				}
				return sum, true
			},
		}, true
	case "instances":
		instances := make([]model.LabelValue, fam.perGroup) // i-0, i-1: gen.go's instance names
		for s := range instances {
			instances[s] = model.LabelValue("i-" + strconv.Itoa(s))
		}
		return promsynth.Answer{Series: len(fam.labels),
			Labels: func(dst []model.LabelPair, i int) []model.LabelPair {
				return append(dst, model.LabelPair{Name: "instance", Value: instances[i%fam.perGroup]},
					model.LabelPair{Name: "service", Value: fa.services[i/fam.perGroup]})
			},
			Value: func(i int, t time.Time) (float64, bool) {
				v := fam.value(f, i/fam.perGroup, i%fam.perGroup, t, dayCurve(t))
				return v, v > 0
			},
		}, true
	}
	return promsynth.Answer{}, false
}

func (fa *fleetAnswerer) byService(dst []model.LabelPair, g int) []model.LabelPair {
	return append(dst, model.LabelPair{Name: "service", Value: fa.services[g]})
}

// flushCount is service g's flushdb counter at t: 1 (Redis lists a command after its first
// call: one maintenance flush long ago), plus one flush per upload from the storm's start. The
// uploads are integrated without their noise (it averages out within seconds), so the counter is
// a closed form: the same at any time whoever asks, as a stored counter is.
func (f *fleet) flushCount(g int, t time.Time) float64 {
	if !storming(g) || !t.After(f.anomalyStart) {
		return 1
	}
	return 1 + math.Floor(uploadsPerRequest*serviceSize(g)*(dayIntegral(t)-dayIntegral(f.anomalyStart)))
}

// dayIntegral is the integral of dayCurve, in seconds, from the Unix epoch (in t's zone, as
// dayCurve reads the hour) to t: dayCurve is 0.7 − 0.3·cos(2π·(s/86400) − π/4) at s seconds
// into the local day.
func dayIntegral(t time.Time) float64 {
	_, offset := t.Zone()
	s := float64(t.Unix()+int64(offset)) + float64(t.Nanosecond())/1e9
	const day = 86400.0
	return 0.7*s - 0.3*day/(2*math.Pi)*math.Sin(2*math.Pi*s/day-math.Pi/4)
}

// runSynthetic measures one fleet size against promsynth: no backfill, no anchor, no stats
// replay (promsynth touches no samples), and the restart only from the state file (the one
// from Prometheus reads the history again, which the cold start measures already).
func runSynthetic(ctx context.Context, o options, groups int) (*scaleResult, error) {
	dir, cfg, err := workDir(o, fmt.Sprintf("promsynth-g%d-", groups))
	if err != nil {
		return nil, err
	}
	if !o.Keep {
		defer os.RemoveAll(dir)
	}
	// The timeline of runScale: the cycles straddle an hour boundary.
	now := time.Now().Truncate(time.Hour).Add(-time.Duration(o.Cycles/2) * o.Interval)
	f := &fleet{groups: groups, end: now, anomalyStart: now.Add(-2 * time.Hour)}
	answers, err := fleetAnswers(cfg, f)
	if err != nil {
		return nil, err
	}
	srv, err := promsynth.Start(answers)
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	res := &scaleResult{Groups: groups, Series: groups * seriesPerGroup, ConfigSet: o.ConfigSet, WorkerMemoryLimit: o.WorkerMemoryLimit, Backend: "promsynth",
		Fleet: fleetInfo{Simulated: now, AnomalyStart: f.anomalyStart}}
	o.Logf("G=%d: promsynth at %s answers %d queries (simulated now %s), in %s", groups, srv.URL, len(answers),
		now.UTC().Format(time.RFC3339), dir)
	o.Anchor, o.Stats = false, false // promsynth runs no rules and touches no samples
	// promsynth runs in this process: its CPU is this process's (the worker's is apart).
	b := backend{URL: srv.URL, CPU: func() (float64, error) { return processCPU(), nil }}
	err = runEmergent(ctx, o, res, filepath.Join(dir, "rules.toml"), now, b, nil)
	res.ServedQueries, res.ServedSamples = srv.Served()
	return res, err
}
