package sources

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
)

// TestDecodeIntoRecycled: an answer decoded into an earlier one's memory is the answer decoded
// afresh, whatever the earlier one was (more or fewer series, more or fewer steps, other
// labels, an answer that failed to decode after it); a steady answer reuses every series.
func TestDecodeIntoRecycled(t *testing.T) {
	start := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	body := func(series, points int) string {
		return string(matrixBody(series, points, start, 30*time.Second))
	}
	odd := `{"status":"success","data":{"resultType":"matrix","result":[` +
		`{"metric":{"service":"svc-00000"},"values":[[1761998400,"NaN"],[1761998430,"+Inf"]]},` +
		`{"metric":{"service":"b","instance":"x:1"},"values":[[1761998400,"-Inf"]]},` +
		`{"metric":{},"values":[]}]},"warnings":["w"]}`
	for _, tc := range []struct {
		name          string
		before, after string
		steps         int
		reused        int // series of after decoded into before's
	}{
		{"the same series", body(50, 1), body(50, 1), 1, 50},
		{"fewer series", body(50, 1), body(20, 1), 1, 20},
		{"more series", body(20, 1), body(50, 1), 1, 20},
		{"two steps after one", body(50, 1), body(50, 2), 2, 50},
		{"one step after two", body(50, 2), body(50, 1), 1, 50},
		{"a cycle after history", body(50, 300), body(50, 1), 1, 50},
		{"history after a cycle", body(50, 1), body(50, 300), 300, 50},
		{"odd values and labels", body(50, 2), odd, 2, 3},
		{"a steady answer after odd values", odd, body(3, 2), 2, 3},
		{"an empty answer", body(50, 1), body(0, 1), 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			labels := newLabelSets(maxLabelSets)
			decode := func(body string, steps int, reuse model.Matrix) model.Matrix {
				t.Helper()
				v, _, _, err := decodeMatrix(strings.NewReader(body), steps, labels.answer("q"), reuse)
				if err != nil {
					t.Fatal(err)
				}
				return v.(model.Matrix)
			}
			want := decode(tc.after, tc.steps, nil).String()
			before := decode(tc.before, tc.steps, nil)
			was := append(model.Matrix(nil), before...)
			got := decode(tc.after, tc.steps, before)
			if got.String() != want {
				t.Errorf("decoded into an earlier answer:\n%s\nwant\n%s", got, want)
			}
			reused := 0
			for i := range min(len(got), len(was)) {
				if got[i] == was[i] {
					reused++
				}
			}
			if reused != tc.reused {
				t.Errorf("%d series reused, want %d", reused, tc.reused)
			}
			if len(got) < len(was) {
				for _, ss := range before[len(got):len(was)] {
					if ss != nil {
						t.Fatal("the list's spare capacity still holds an earlier series")
					}
				}
			}
		})
	}

	t.Run("after a failed answer", func(t *testing.T) {
		labels := newLabelSets(maxLabelSets)
		v, _, _, err := decodeMatrix(strings.NewReader(body(5, 1)), 1, labels.answer("q"), nil)
		if err != nil {
			t.Fatal(err)
		}
		bad := `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"service":"svc-00000"},"values":[[1,"x"]]}]}}`
		if _, _, _, err := decodeMatrix(strings.NewReader(bad), 1, labels.answer("q"), v.(model.Matrix)); err == nil {
			t.Fatal("a bad value decoded")
		}
		v, _, _, err = decodeMatrix(strings.NewReader(body(5, 1)), 1, labels.answer("q"), nil)
		if err != nil || v.(model.Matrix).String() != mustDecode(t, body(5, 1)).String() {
			t.Errorf("the answer after a failed one: %v, %v", v, err)
		}
	})
}

func mustDecode(t *testing.T, body string) model.Matrix {
	t.Helper()
	v, _, _, err := decodeMatrix(strings.NewReader(body), 1, newLabelSets(maxLabelSets).answer("q"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return v.(model.Matrix)
}

// TestRecycledAnswersAreWeak: an answer handed back is taken once, by the next answer to its
// query; a collection frees it as if it had not been handed back.
func TestRecycledAnswersAreWeak(t *testing.T) {
	var r recycledAnswers
	m := mustDecode(t, string(matrixBody(1000, 1, time.Unix(1761998400, 0), time.Minute)))
	first := m[0]
	r.put("q", m)
	if got := r.take("other"); got != nil {
		t.Fatal("another query took the answer")
	}
	got := r.take("q")
	if len(got) != 1000 || got[0] != first {
		t.Fatalf("took %d series, want the 1000 handed back", len(got))
	}
	if r.take("q") != nil {
		t.Fatal("an answer was taken twice")
	}
	r.put("q", got)
	m, got, first = nil, nil, nil
	runtime.GC()
	if got := r.take("q"); got != nil {
		t.Errorf("a collection left %d series of an answer nothing used", len(got))
	}
}

// TestRecycledDecodeAllocates: a steady answer decoded into the one before allocates nothing
// per series: at 100 000 groups the cycle's answers were about 70 MB of its 75 MB.
func TestRecycledDecodeAllocates(t *testing.T) {
	const series = 10000
	body := matrixBody(series, 1, time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC), 30*time.Second)
	labels := newLabelSets(maxLabelSets)
	var last model.Matrix
	decode := func(reuse bool) {
		var prev model.Matrix
		if reuse {
			prev = last
		}
		v, _, _, err := decodeMatrix(bytes.NewReader(body), 1, labels.answer("q"), prev)
		if err != nil {
			t.Fatal(err)
		}
		last = v.(model.Matrix)
	}
	perSeries := func(reuse bool) float64 {
		decode(reuse)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		decode(reuse)
		runtime.ReadMemStats(&after)
		return float64(after.TotalAlloc-before.TotalAlloc) / series
	}
	fresh, recycled := perSeries(false), perSeries(true)
	t.Logf("bytes per series: %.1f afresh, %.1f into the answer before", fresh, recycled)
	if recycled > fresh/4 {
		t.Errorf("decoding into the answer before allocated %.1f bytes per series, afresh %.1f: want at most a quarter", recycled, fresh)
	}
}

func ExampleRecycler() {
	var src Source = &Prometheus{}
	_, ok := src.(Recycler)
	fmt.Println(ok)
	// Output: true
}
