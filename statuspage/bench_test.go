package statuspage_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/statuspage"
)

// BenchmarkPages serves the overview (a search, and the first page) and a group page (its chart
// drawn) of a 10 000-group fleet, and reports each request's p95 next to the mean, since the
// issue's target is a tail: `go test ./statuspage -run '^$' -bench Pages`.
func BenchmarkPages(b *testing.B) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	f := fleet{n: 10000, now: now}
	mux := http.NewServeMux()
	statuspage.New(func() statuspage.Source { return f }, "", func() time.Time { return now }).Register(mux)
	for _, tc := range []struct{ name, url string }{
		{"overview", "/"},
		{"search", "/?q=svc-04217"},
		{"group", "/group?rule=token-minting&l.service=svc-04200"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var took []time.Duration
			for b.Loop() {
				began := time.Now()
				rec := httptest.NewRecorder()
				mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.url, nil))
				took = append(took, time.Since(began))
				if rec.Code != http.StatusOK {
					b.Fatalf("%s: %d %s", tc.url, rec.Code, rec.Body)
				}
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)*95/100].Microseconds())/1000, "p95-ms")
		})
	}
}
