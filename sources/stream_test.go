package sources

import (
	"bytes"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
)

// TestDecodeMatrix: the streaming decoder reads what Prometheus writes — special float values,
// fractional timestamps, fields it does not know, native histograms it skips — and refuses
// what is not a whole, successful matrix.
func TestDecodeMatrix(t *testing.T) {
	ok := `{"status":"success","data":{"resultType":"matrix","result":[` +
		`{"metric":{"service":"a","__name__":"x"},"values":[[1700000000.5,"1.5"],[1700000015,"NaN"],[1700000030,"+Inf"]]},` +
		`{"metric":{},"values":[],"histograms":[[1700000000,{"count":"1","sum":"2","buckets":[]}]]}],"extra":{"a":[1,2]}},` +
		`"warnings":["w1"],"infos":["i1"]}`
	v, warnings, infos, err := decodeMatrix(strings.NewReader(ok), 3, newLabelSets(maxLabelSets).answer("q"), nil)
	if err != nil {
		t.Fatal(err)
	}
	m := v.(model.Matrix)
	if len(m) != 2 || m[0].Metric["service"] != "a" || len(m[0].Values) != 3 || len(m[1].Values) != 0 {
		t.Fatalf("decoded %v", m)
	}
	vals := m[0].Values
	if vals[0].Timestamp != 1700000000500 || vals[0].Value != 1.5 || !math.IsNaN(float64(vals[1].Value)) || !math.IsInf(float64(vals[2].Value), 1) {
		t.Errorf("samples %v", vals)
	}
	if len(warnings) != 1 || warnings[0] != "w1" || len(infos) != 1 || infos[0] != "i1" {
		t.Errorf("warnings %v infos %v", warnings, infos)
	}

	for _, tc := range []struct{ name, body, want string }{
		{"truncated", ok[:len(ok)/2], "bad_response"},
		{"HTML", "\n <html><body>Sign in</body></html>", "invalid character '<' looking for beginning of value"},
		{"an error status", `{"status":"error","errorType":"execution","error":"query timed out"}`, "execution: query timed out"},
		{"a vector", `{"status":"success","data":{"resultType":"vector","result":[]}}`, "result is a vector, want a matrix"},
		{"no result", `{"status":"success","data":{"resultType":"matrix"}}`, "no matrix in the answer"},
		{"a value that is not a number", `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"x"]]}]}}`, `value "x" is not a number`},
		{"a label value that is not a string", `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":1},"values":[]}]}}`, "bad_response"},
		{"a sample of three", `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"2",3]]}]}}`, "more than two elements"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, err := decodeMatrix(strings.NewReader(tc.body), 1, newLabelSets(maxLabelSets).answer("q"), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// decodeBytesPerSample is what decoding a large answer allocated per sample when the scanner
// (scan.go) was committed: 17.2–17.3 bytes, measured by this test (22.7 with json-iterator).
const decodeBytesPerSample = 17.3

// TestDecodeMemoryDoesNotRegress is the short form of BenchmarkQueryRangeDecode that CI runs: it
// fails when decoding a 10 000-series answer allocates more than twice the committed figure
// per sample (memory, which does not depend on a shared machine's load, unlike time). Before
// the streaming decoder it was 257 bytes per sample.
func TestDecodeMemoryDoesNotRegress(t *testing.T) {
	const series, points = 10000, 100
	body := matrixBody(series, points, time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC), 15*time.Second)
	labels := newLabelSets(maxLabelSets)
	decode := func() {
		if _, _, _, err := decodeMatrix(bytes.NewReader(body), points, labels.answer("q"), nil); err != nil {
			t.Fatal(err)
		}
	}
	decode() // warm up
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	decode()
	runtime.ReadMemStats(&after)
	perSample := float64(after.TotalAlloc-before.TotalAlloc) / (series * points)
	t.Logf("decoding %d × %d samples allocated %.1f bytes per sample (committed: %.1f)", series, points, perSample, decodeBytesPerSample)
	if perSample > 2*decodeBytesPerSample {
		t.Errorf("decoding allocates %.1f bytes per sample, more than twice the committed %.1f", perSample, decodeBytesPerSample)
	}
}

// TestDecodeSharesLabelSets: a label set decoded before is not built again. The same answer
// decoded twice with one source's label sets gives equal matrices, and the second decoding
// allocates no map or string per series (the series and its samples only).
func TestDecodeSharesLabelSets(t *testing.T) {
	const series = 1000
	var b bytes.Buffer
	b.WriteString(`{"status":"success","data":{"resultType":"matrix","result":[`)
	for s := range series {
		if s > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"metric":{"__name__":"redis_commands_total","cmd":"flushdb","instance":"10.0.%d.%d:9121","service":"svc-%05d"},"values":[[1700000000,"%d"]]}`, s/256, s%256, s, s)
	}
	b.WriteString(`]}}`)
	body := b.Bytes()
	decode := func(labels *labelSets) model.Matrix {
		v, _, _, err := decodeMatrix(bytes.NewReader(body), 1, labels.answer("q"), nil)
		if err != nil {
			t.Fatal(err)
		}
		return v.(model.Matrix)
	}

	labels := newLabelSets(maxLabelSets)
	first, second := decode(labels), decode(labels)
	if !reflect.DeepEqual(first, second) {
		t.Fatal("the same answer decoded twice differs")
	}
	if got := first[7].Metric; got["service"] != "svc-00007" || got["instance"] != "10.0.0.7:9121" || len(got) != 4 {
		t.Errorf("series 7 has labels %v", got)
	}
	if labels.len() != series {
		t.Errorf("%d label sets held, want %d", labels.len(), series)
	}

	cold := testing.AllocsPerRun(5, func() { decode(newLabelSets(maxLabelSets)) })
	warm := testing.AllocsPerRun(5, func() { decode(labels) })
	t.Logf("allocations per series: %.1f with label sets decoded before, %.1f without", warm/series, cold/series)
	// Without the label sets, a series costs its map and a string per label name and value
	// (9 here) on top of what it costs with them.
	if cold-warm < 9*series {
		t.Errorf("decoding an answer whose label sets were decoded before allocated %.0f times, %.0f without them: want at least %d fewer", warm, cold, 9*series)
	}
}

// TestLabelSetsBounded: label churn cannot grow the label sets past two generations, and a
// label set answered again is kept (the same map) however many others came and went.
func TestLabelSetsBounded(t *testing.T) {
	const max = 4
	labels := newLabelSets(max)
	steady := []byte(`{"service":"api"}`)
	kept, err := labels.metric(steady)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if _, err := labels.metric(fmt.Appendf(nil, `{"pod":"api-%d"}`, i)); err != nil {
			t.Fatal(err)
		}
		if n := labels.len(); n > 2*max {
			t.Fatalf("after %d label sets, %d held, more than twice the bound %d", i+1, n, max)
		}
		if i%max == 0 { // seen again within every generation
			m, err := labels.metric(steady)
			if err != nil {
				t.Fatal(err)
			}
			if reflect.ValueOf(m).UnsafePointer() != reflect.ValueOf(kept).UnsafePointer() {
				t.Fatalf("after %d label sets, the steady one was decoded again", i+1)
			}
		}
	}
	if _, err := labels.metric([]byte(`{"service":1}`)); err == nil {
		t.Error("a label value that is not a string decoded")
	}
}

// TestLabelSetsByPosition: an answer's series are matched with the query's answer before by
// position; whatever moved, came or went, each series gets its own label set, the same map as
// before when it was seen before, and an answer to another query does not disturb it.
func TestLabelSetsByPosition(t *testing.T) {
	body := func(services ...string) []byte {
		var b strings.Builder
		b.WriteString(`{"status":"success","data":{"resultType":"matrix","result":[`)
		for i, s := range services {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"metric":{"service":%q},"values":[[1700000000,"1"]]}`, s)
		}
		b.WriteString(`]}}`)
		return []byte(b.String())
	}
	labels := newLabelSets(maxLabelSets)
	seen := map[string]model.Metric{} // each service's label set, as first handed out
	for i, tc := range []struct {
		query    string
		services []string
	}{
		{"q", []string{"a", "b", "c"}},
		{"q", []string{"a", "b", "c"}}, // the same
		{"q", []string{"a", "c"}},      // one gone: the rest shifted
		{"q", []string{"a", "b", "c"}}, // back
		{"q", []string{"x", "a", "b"}}, // one new in front
		{"other", []string{"c", "b"}},  // another query
		{"q", []string{"x", "a", "b", "c"}},
		{"q", nil},
		{"q", []string{"c"}},
	} {
		v, _, _, err := decodeMatrix(bytes.NewReader(body(tc.services...)), 1, labels.answer(tc.query), nil)
		if err != nil {
			t.Fatal(err)
		}
		m := v.(model.Matrix)
		if len(m) != len(tc.services) {
			t.Fatalf("answer %d: %d series, want %d", i, len(m), len(tc.services))
		}
		for j, s := range tc.services {
			got := m[j].Metric
			if len(got) != 1 || got["service"] != model.LabelValue(s) {
				t.Errorf("answer %d, series %d: labels %v, want service %s", i, j, got, s)
			}
			if was, ok := seen[s]; ok && reflect.ValueOf(was).UnsafePointer() != reflect.ValueOf(got).UnsafePointer() {
				t.Errorf("answer %d: service %s decoded again", i, s)
			}
			seen[s] = got
		}
	}
}
