package config

// RequiredQueries are the queries without whose series the rule has nothing to judge: inbound,
// and the work it compares with inbound (every signal; for a storm, the flush counters and the
// keyspace). The others add context and may legitimately return nothing.
func (r Rule) RequiredQueries() []string {
	return append([]string{r.Inbound}, r.workQueries()...)
}

func (r Rule) workQueries() []string {
	if r.Kind == KindFlushStorm {
		// Redis lists a flush counter only after the first flush, so a healthy Redis has none:
		// the rule watches nothing only when the keyspace is missing too.
		return []string{r.Flushes, r.Keys}
	}
	return r.SignalQueries()
}

// WatchesNothing reports whether the rule cannot judge any group when the queries in empty
// return no series: it has no inbound, or no work of any kind.
func (r Rule) WatchesNothing(empty []string) bool {
	if contains(empty, r.Inbound) {
		return true
	}
	for _, q := range r.workQueries() {
		if !contains(empty, q) {
			return false
		}
	}
	return true
}
