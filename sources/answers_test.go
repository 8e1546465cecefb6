package sources

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

var update = flag.Bool("update", false, "rewrite testdata/answers/*.golden from the decoder's output")

// TestDecodeRecordedAnswers decodes each answer in testdata/answers (what Prometheus writes,
// and the odd and broken answers a decoder meets: NaN and infinities, escaped label values,
// fields it does not know, missing and null fields, values that are not strings, error
// envelopes, truncation, HTML) and compares what it makes of it with the golden file beside
// it: the series in the answer's order, the warnings and infos, or the error's type. The
// goldens were written by the json-iterator decoder this one replaced (-update rewrites them).
// Each answer is decoded afresh and into an earlier answer's memory, with the same result.
func TestDecodeRecordedAnswers(t *testing.T) {
	files, err := filepath.Glob("testdata/answers/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no answers: %v", err)
	}
	// An earlier answer to decode into: more series than any recorded one, as a cycle's would be.
	earlier, _, _, err := decodeMatrix(strings.NewReader(string(matrixBody(20, 7, testRange.Start, testRange.Step))), 7, newLabelSets(maxLabelSets).answer("q"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			got := describeAnswer(decodeMatrix(strings.NewReader(string(body)), 7, newLabelSets(maxLabelSets).answer("q"), nil))
			golden := strings.TrimSuffix(file, ".json") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("decoded:\n%s\nwant (%s):\n%s", got, golden, want)
			}
			// An HTTP body arrives in pieces: one byte at a time crosses every refill there is.
			if bytewise := describeAnswer(decodeMatrix(iotest.OneByteReader(strings.NewReader(string(body))), 7, newLabelSets(maxLabelSets).answer("q"), nil)); bytewise != got {
				t.Errorf("read a byte at a time:\n%s\nat once:\n%s", bytewise, got)
			}
			// And in two pieces, split anywhere: a piece's end may fall in any token, after a
			// string the scanner hands out as a slice of its buffer.
			for at := 1; at < len(body); at++ {
				r := io.MultiReader(strings.NewReader(string(body[:at])), strings.NewReader(string(body[at:])))
				if split := describeAnswer(decodeMatrix(r, 7, newLabelSets(maxLabelSets).answer("q"), nil)); split != got {
					t.Fatalf("split at byte %d (%q|%q):\n%s\nat once:\n%s", at, body[max(0, at-10):at], body[at:min(len(body), at+10)], split, got)
				}
			}
			reuse := append(model.Matrix(nil), earlier.(model.Matrix)...)
			if into := describeAnswer(decodeMatrix(strings.NewReader(string(body)), 7, newLabelSets(maxLabelSets).answer("q"), reuse)); into != got {
				t.Errorf("decoded into an earlier answer:\n%s\nafresh:\n%s", into, got)
			}
		})
	}
}

// describeAnswer renders a decoded answer for a golden file: each series in order, or the
// type of the error (its wording is the decoder's own).
func describeAnswer(v model.Value, warnings v1.Warnings, infos v1.Infos, err error) string {
	var b strings.Builder
	if err != nil {
		var apiErr *v1.Error
		switch {
		case errors.As(err, &apiErr):
			fmt.Fprintf(&b, "error: %s", apiErr.Type)
			if apiErr.Type != v1.ErrBadResponse {
				fmt.Fprintf(&b, ": %s", apiErr.Msg)
			}
		default:
			fmt.Fprintf(&b, "error: %s", err)
		}
		b.WriteString("\n")
	} else {
		m := v.(model.Matrix)
		fmt.Fprintf(&b, "%d series\n", len(m))
		for _, ss := range m {
			fmt.Fprintf(&b, "%s\n", ss)
		}
	}
	for _, w := range warnings {
		fmt.Fprintf(&b, "warning: %q\n", w)
	}
	for _, i := range infos {
		fmt.Fprintf(&b, "info: %q\n", i)
	}
	return b.String()
}

// FuzzDecodeMatrix: whatever the answer, the decoder neither panics nor loops; what it
// decodes is what encoding/json decodes into client_golang's types where that succeeds too;
// and decoding into an earlier answer's memory makes no difference.
func FuzzDecodeMatrix(f *testing.F) {
	files, _ := filepath.Glob("testdata/answers/*.json")
	for _, file := range files {
		body, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body)
	}
	earlier := string(matrixBody(20, 3, testRange.Start, testRange.Step))
	f.Fuzz(func(t *testing.T, body []byte) {
		got := describeAnswer(decodeMatrix(strings.NewReader(string(body)), 3, newLabelSets(maxLabelSets).answer("q"), nil))
		labels := newLabelSets(maxLabelSets)
		m, _, _, err := decodeMatrix(strings.NewReader(earlier), 3, labels.answer("q"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if into := describeAnswer(decodeMatrix(strings.NewReader(string(body)), 3, labels.answer("q"), m.(model.Matrix))); into != got {
			t.Errorf("decoded into an earlier answer:\n%s\nafresh:\n%s", into, got)
		}
		if bytewise := describeAnswer(decodeMatrix(iotest.OneByteReader(strings.NewReader(string(body))), 3, newLabelSets(maxLabelSets).answer("q"), nil)); bytewise != got {
			t.Errorf("read a byte at a time:\n%s\nat once:\n%s", bytewise, got)
		}
		for _, at := range []int{len(body) / 3, len(body) / 2} {
			r := io.MultiReader(bytes.NewReader(body[:at]), bytes.NewReader(body[at:]))
			if split := describeAnswer(decodeMatrix(r, 3, newLabelSets(maxLabelSets).answer("q"), nil)); split != got {
				t.Errorf("split at byte %d:\n%s\nat once:\n%s", at, split, got)
			}
		}
		if !strings.HasSuffix(strings.SplitN(got, "\n", 2)[0], "series") {
			return // refused
		}
		// The reference: encoding/json into maps, whose keys match exactly (struct fields match
		// any case), with the answer's shape walked here (model.SamplePair's own decoder reads
		// 1.7e9 as 1.7: prometheus/common's Time splits at the dot).
		if !utf8.Valid(body) {
			return // encoding/json replaces invalid UTF-8, json-iterator (decodeMetric) keeps it
		}
		var ref map[string]any
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.UseNumber()
		if dec.Decode(&ref) != nil || ref["status"] != "success" {
			return
		}
		data, _ := ref["data"].(map[string]any)
		result, _ := data["result"].([]any)
		want := model.Matrix{}
		for _, r := range result {
			rs, ok := r.(map[string]any)
			if !ok {
				return
			}
			ss := &model.SampleStream{Metric: model.Metric{}, Values: []model.SamplePair{}}
			metric, _ := rs["metric"].(map[string]any)
			for k, v := range metric {
				s, ok := v.(string)
				if !ok || k == "" {
					return // decodeMetric ends a label set at an empty name, as it always did
				}
				ss.Metric[model.LabelName(k)] = model.LabelValue(s)
			}
			values, _ := rs["values"].([]any)
			for _, v := range values {
				sv, ok := v.([]any)
				if !ok || len(sv) != 2 {
					return
				}
				ts, ok1 := sv[0].(json.Number)
				v, ok2 := sv[1].(string)
				if !ok1 || !ok2 {
					return
				}
				t, err1 := ts.Float64()
				x, err2 := strconv.ParseFloat(v, 64)
				if err1 != nil || err2 != nil {
					return
				}
				ss.Values = append(ss.Values, model.SamplePair{Timestamp: model.Time(math.Round(t * 1000)), Value: model.SampleValue(x)})
			}
			want = append(want, ss)
		}
		strs := func(key string) []string {
			var out []string
			l, _ := ref[key].([]any)
			for _, x := range l {
				s, _ := x.(string)
				out = append(out, s)
			}
			return out
		}
		if want := describeAnswer(want, strs("warnings"), strs("infos"), nil); got != want {
			t.Errorf("decoded:\n%s\nencoding/json:\n%s", got, want)
		}
	})
}
