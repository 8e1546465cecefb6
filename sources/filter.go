package sources

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// FilteredQuery is query with every series selector also matching name=~"v1|v2|…" for each
// name of filter (its values quoted, so they match as written): Prometheus then reads the series
// of those values only, as a query of a few groups of a large fleet should. A selector whose
// series lack such a label matches nothing under it (every such series where "" is among the
// values), so a caller that needs the same answer for those groups checks it got it.
func FilteredQuery(query string, filter map[string][]string) (string, error) {
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(query)
	if err != nil {
		return "", fmt.Errorf("query %q: %w", query, err)
	}
	names := make([]string, 0, len(filter))
	for name := range filter {
		names = append(names, name)
	}
	slices.Sort(names) // the same query text for the same filter
	var matchers []*labels.Matcher
	for _, name := range names {
		quoted := make([]string, len(filter[name]))
		for i, v := range filter[name] {
			quoted[i] = regexp.QuoteMeta(v)
		}
		m, err := labels.NewMatcher(labels.MatchRegexp, name, strings.Join(quoted, "|"))
		if err != nil {
			return "", fmt.Errorf("query %q: filtering by %s: %w", query, name, err)
		}
		matchers = append(matchers, m)
	}
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			vs.LabelMatchers = append(vs.LabelMatchers, matchers...)
		}
		return nil
	})
	return expr.String(), nil
}
