package engine

import (
	"context"
	"log/slog"
	"reflect"
	"slices"
	"testing"
	"unsafe"

	"github.com/emergent-sh/emergent/config"
	"github.com/emergent-sh/emergent/sources"
	"github.com/prometheus/common/model"
)

// TestFetchGroupsAreWhatTheFetchSaw: Input.Seen holds the groups of the fetch's series and
// only those, each once, whether the fetch before saw the same ones or not, in the same order
// or not, and whether the source hands out the same label set for a series every fetch (as
// sources.Prometheus does) or decodes it afresh.
func TestFetchGroupsAreWhatTheFetchSaw(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(map[bool]string{false: "fresh label sets", true: "shared label sets"}[shared], func(t *testing.T) {
			var known knownGroups
			g := &grouper{by: []string{"service"}, known: &known}
			sets := map[string]model.Metric{}
			labelSet := func(s string) model.Metric {
				if m, ok := sets[s]; ok && shared {
					return m
				}
				sets[s] = model.Metric{"service": model.LabelValue(s), "instance": "i"}
				return sets[s]
			}
			groups := map[string]*knownGroup{} // each service's group, the same at every fetch
			before := 0                        // the series of the fetch before
			for i, services := range [][]string{
				{"a", "b"},
				{"b", "a", "a"}, // the same groups
				{"a"},           // one gone
				{"a", "c"},      // as many as before, one new
				{"c", "a"},
				{"a", "b"}, // as many as before, one seen earlier but not by the fetch before
				{},
				{"b"},
				{"b"}, // the same series in the same order
			} {
				known.begin()
				var m model.Matrix
				for _, s := range services {
					m = append(m, &model.SampleStream{Metric: labelSet(s)})
				}
				for j, p := range g.place("q", m) {
					s := services[j]
					if was, ok := groups[s]; ok && was != p.group {
						t.Errorf("fetch %d: service %s has a new group", i, s)
					}
					groups[s] = p.group
				}
				var got []string
				for _, in := range known.seen {
					key, labels := in.Key, in.Labels
					if len(labels) != 1 || key != labels["service"]+"\xff" {
						t.Errorf("fetch %d: group %q has labels %v", i, key, labels)
					}
					got = append(got, labels["service"])
				}
				slices.Sort(got)
				want := slices.Compact(slices.Sorted(slices.Values(services)))
				if !slices.Equal(got, want) {
					t.Errorf("fetch %d of %v: groups %v", i, services, got)
				}
				// Label sets decoded afresh are let go: at most two fetches' worth beyond this one.
				if max := 2*before + len(services); len(known.byLabels) > max {
					t.Errorf("fetch %d: %d label sets held, want at most %d", i, len(known.byLabels), max)
				}
				before = len(services)
			}
		})
	}
}

// jobSource is fullSource with a job label equal to the service's on every series: a rule
// grouping by job has the same group keys (label values) as one grouping by service.
type jobSource struct{ *fullSource }

func (s jobSource) QueryRange(ctx context.Context, q string, r sources.Range) (model.Matrix, sources.Warnings, error) {
	m, w, err := s.fullSource.QueryRange(ctx, q, r)
	out := make(model.Matrix, len(m))
	for i, ss := range m {
		out[i] = &model.SampleStream{Metric: model.Metric{"service": ss.Metric["service"], "job": ss.Metric["service"]}, Values: ss.Values}
	}
	return out, w, err
}

// TestRulesGroupingAlikeShareLabels: the shipped rules group by service, so a group's key and
// labels are one copy for both, while a rule grouping by another label keeps its own, though
// its groups' keys are the same values.
func TestRulesGroupingAlikeShareLabels(t *testing.T) {
	cfg, err := config.LoadFile("../rules.toml")
	if err != nil {
		t.Fatal(err)
	}
	other := cfg.Rules[1]
	other.Name, other.GroupBy = "by-job", []string{"job"}
	cfg.Rules = append(cfg.Rules, other)
	e := New(cfg, jobSource{&fullSource{n: 20, cache: map[string]model.Matrix{}}}, slog.New(slog.DiscardHandler), nil)
	if _, err := e.Bootstrap(context.Background(), now); err != nil {
		t.Fatal(err)
	}
	same := func(a, b *knownGroup) bool {
		return reflect.ValueOf(a.in.Labels).UnsafePointer() == reflect.ValueOf(b.in.Labels).UnsafePointer() &&
			unsafe.StringData(a.in.Key) == unsafe.StringData(b.in.Key)
	}
	token, flush, byJob := e.rules[0].known.byKey, e.rules[1].known.byKey, e.rules[2].known.byKey
	if len(token) != 20 || len(flush) != 20 || len(byJob) != 20 {
		t.Fatalf("%d, %d and %d groups, want 20 each", len(token), len(flush), len(byJob))
	}
	for key, kg := range token {
		if !same(kg, flush[key]) {
			t.Errorf("group %q: the rules keep a copy each of its key and labels", key)
		}
		if o := byJob[key]; o == nil || same(kg, o) || o.in.Labels["job"] == "" {
			t.Errorf("group %q: a rule grouping by other labels took the key and labels of one grouping by service", key)
		}
	}
}
