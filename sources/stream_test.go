package sources

import (
	"bytes"
	"math"
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
	v, warnings, infos, err := decodeMatrix(strings.NewReader(ok), 3)
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
		{"a sample of three", `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"2",3]]}]}}`, "more than two elements"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, err := decodeMatrix(strings.NewReader(tc.body), 1)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// decodeBytesPerSample is what decoding a large answer allocated per sample when the streaming
// decoder was committed (BenchmarkQueryRangeDecode/points=100: 22.7 MB for 10 000 × 100).
const decodeBytesPerSample = 22.7e6 / 1e6

// TestDecodeMemoryDoesNotRegress is the short form of BenchmarkQueryRangeDecode that CI runs: it
// fails when decoding a 10 000-series answer allocates more than twice the committed figure
// per sample (memory, which does not depend on a shared machine's load, unlike time). Before
// the streaming decoder it was 257 bytes per sample.
func TestDecodeMemoryDoesNotRegress(t *testing.T) {
	const series, points = 10000, 100
	body := matrixBody(series, points, time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC), 15*time.Second)
	decode := func() {
		if _, _, _, err := decodeMatrix(bytes.NewReader(body), points); err != nil {
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
