package engine

import (
	"slices"
	"testing"

	"github.com/prometheus/common/model"
)

// TestFetchGroupsAreWhatTheFetchSaw: Input.Seen holds the groups of the fetch's series and
// only those, each once, whether the fetch before saw the same ones or not.
func TestFetchGroupsAreWhatTheFetchSaw(t *testing.T) {
	var known knownGroups
	g := &grouper{by: []string{"service"}, known: &known}
	for i, services := range [][]string{
		{"a", "b"},
		{"b", "a", "a"}, // the same groups
		{"a"},           // one gone
		{"a", "c"},      // as many as before, one new
		{"c", "a"},
		{"a", "b"}, // as many as before, one seen earlier but not by the fetch before
		{},
		{"b"},
	} {
		known.begin()
		for _, s := range services {
			g.group(model.Metric{"service": model.LabelValue(s), "instance": "i"})
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
	}
}
