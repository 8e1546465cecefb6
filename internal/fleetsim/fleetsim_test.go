package fleetsim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var testEnd = time.Date(2025, 1, 6, 0, 0, 0, 0, time.UTC)

// nabDir is the NAB data next to the repository, if present.
func nabDir() string {
	d := filepath.Join("..", "..", "..", "shared", "data", "nab")
	if _, err := os.Stat(filepath.Join(d, "nyc_taxi.csv")); err != nil {
		return ""
	}
	return d
}

// readTree returns every file under dir, by relative path.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDeterministic(t *testing.T) {
	opts := Options{Seed: 7, Days: 2, Services: 6, End: testEnd, NABDir: nabDir()}
	dirs := map[string]Options{"a": opts, "b": opts}
	other := opts
	other.Seed = 8
	dirs["c"] = other
	root := t.TempDir()
	for name, o := range dirs {
		if err := Generate(o, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	a, b, c := readTree(t, filepath.Join(root, "a")), readTree(t, filepath.Join(root, "b")), readTree(t, filepath.Join(root, "c"))
	if len(a) != len(b) {
		t.Fatalf("same options: %d files vs %d", len(a), len(b))
	}
	for name, data := range a {
		if !bytes.Equal(data, b[name]) {
			t.Errorf("same options: %s differs", name)
		}
	}
	if bytes.Equal(a["dataset.json"], c["dataset.json"]) || bytes.Equal(a["truth.jsonl"], c["truth.jsonl"]) && bytes.Equal(a["controls.jsonl"], c["controls.jsonl"]) {
		t.Error("seeds 7 and 8 gave the same dataset")
	}
}

// Adding a service leaves the others' draws alone.
func TestServicesIndependent(t *testing.T) {
	o, tl, err := resolve(Options{Seed: 3, Days: 2, End: testEnd})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		w1, w2 := drawWorld(o.Seed, i, tl, nil), drawWorld(o.Seed, i, tl, nil)
		if w1.name != w2.name || w1.p != w2.p || w1.simSeed != w2.simSeed {
			t.Errorf("service %d drew differently twice", i)
		}
	}
}

func TestRevocationLoop(t *testing.T) {
	const (
		caches = 4
		rate   = 2.0    // uses per second per cache: steady demand
		ttl    = 1140.0 // 19 min entry TTL under a 20 min lifetime
		steps  = 480    // 4 hours of 30 s steps
	)
	for _, tc := range []struct {
		name             string
		k                int
		minFrac, maxFrac float64 // mints / token-needing uses
		perTTL           float64 // expected mints per cache per TTL (0: not checked)
	}{
		{name: "K=1 loop", k: 1, minFrac: 0.6, maxFrac: 0.9},
		{name: "K=2 loop", k: 2, minFrac: 0.3, maxFrac: 0.7},
		{name: "unlimited", k: 0, maxFrac: 0.01, perTTL: 1},
		{name: "K=caches", k: caches, maxFrac: 0.01, perTTL: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			s := tokenSim{k: tc.k, life: 1200, rng: r}
			for range caches {
				s.caches[s.add(ttl, false)].rate = rate
			}
			var mints, uses float64
			for i := range steps {
				a := float64(i) * 30
				s.step(a, a+30, nil)
				for j := range s.caches {
					c := &s.caches[j]
					hits := poisson(r, c.rate*c.validDur)
					mints += float64(c.misses)
					uses += float64(hits + c.misses)
				}
			}
			frac := mints / uses
			t.Logf("mints %.0f of %.0f uses (%.3f)", mints, uses, frac)
			if frac < tc.minFrac || frac > tc.maxFrac {
				t.Errorf("mints/uses = %.3f, want %.2f–%.2f", frac, tc.minFrac, tc.maxFrac)
			}
			if tc.perTTL > 0 {
				want := caches * steps * 30 / ttl
				if math.Abs(mints-want) > 0.15*want {
					t.Errorf("mints = %.0f, want about caches/TTL·time = %.0f", mints, want)
				}
			}
		})
	}
}

// dataset is a generated dataset shared by the tests that check its content.
var dataset struct {
	once   sync.Once
	dir    string
	worlds []*world
	err    error
}

func testDataset(t *testing.T) (string, []*world) {
	t.Helper()
	dataset.once.Do(func() {
		dataset.dir, dataset.err = os.MkdirTemp("", "fleetsim-test-")
		if dataset.err == nil {
			dataset.worlds, dataset.err = generate(Options{Seed: 1, Days: 2, Services: 12, End: testEnd, NABDir: nabDir()}, dataset.dir)
		}
	})
	if dataset.err != nil {
		t.Fatal(dataset.err)
	}
	return dataset.dir, dataset.worlds
}

func TestMain(m *testing.M) {
	code := m.Run()
	if dataset.dir != "" {
		os.RemoveAll(dataset.dir)
	}
	os.Exit(code)
}

type sample struct {
	t int64
	v float64
}

// parsed is an OpenMetrics dataset: samples by series key, in file order.
type parsed struct {
	series map[string][]sample
	order  []string
}

// parseDataset reads every file of the dataset, checking the format rules on the way: a family
// is contiguous and typed once, samples have a timestamp, and the file ends with # EOF.
func parseDataset(t *testing.T, dir string) *parsed {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "dataset.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ds Dataset
	if err := json.Unmarshal(raw, &ds); err != nil {
		t.Fatal(err)
	}
	if !slices.IsSorted(ds.Files) || len(ds.Files) == 0 {
		t.Errorf("files not in time order: %v", ds.Files)
	}
	p := &parsed{series: map[string][]sample{}}
	var total int64
	for _, f := range ds.Files {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasSuffix(data, []byte("\n# EOF\n")) {
			t.Errorf("%s does not end with # EOF", f)
		}
		typed := map[string]bool{}
		family := ""
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
				name = strings.TrimSuffix(name, " unknown")
				if typed[name] {
					t.Fatalf("%s: family %s is not contiguous", f, name)
				}
				typed[name], family = true, name
				continue
			}
			if line == "# EOF" {
				continue
			}
			fields := strings.Fields(line)
			if len(fields) != 3 || !strings.HasPrefix(fields[0], family+"{") {
				t.Fatalf("%s: bad line %q under family %s", f, line, family)
			}
			v, err1 := strconv.ParseFloat(fields[1], 64)
			ts, err2 := strconv.ParseInt(fields[2], 10, 64)
			if err1 != nil || err2 != nil {
				t.Fatalf("%s: bad line %q", f, line)
			}
			s := p.series[fields[0]]
			if len(s) == 0 {
				p.order = append(p.order, fields[0])
			} else if s[len(s)-1].t >= ts {
				t.Fatalf("%s: %s out of time order", f, fields[0])
			}
			p.series[fields[0]] = append(s, sample{ts, v})
			total++
		}
	}
	if total != ds.Samples {
		t.Errorf("dataset.json says %d samples, files hold %d", ds.Samples, total)
	}
	return p
}

func labelValue(key, name string) string {
	_, rest, ok := strings.Cut(key, name+`="`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}

func TestOutputInvariants(t *testing.T) {
	dir, worlds := testDataset(t)
	p := parseDataset(t, dir)
	byName := map[string]*world{}
	for _, w := range worlds {
		byName[w.name] = w
	}
	// restarted reports whether service w restarted (app or Redis, per family) in [t1, t2).
	restarted := func(w *world, redis bool, t1, t2 int64) bool {
		for _, a := range w.acts {
			if ((redis && a.kind == actRedisRestart) || (!redis && a.kind == actAppRestart)) && a.t >= float64(t1) && a.t < float64(t2) {
				return true
			}
		}
		return false
	}
	counters := []string{"http_requests_total", "uploads_total", "token_mint_count", "token_cache_hits", "token_cache_misses",
		"cache_hits_total", "cache_misses_total", "redis_commands_total"}
	var resets, aggregated int
	appInstances := map[string]map[string]bool{}
	for _, key := range p.order {
		name, _, _ := strings.Cut(key, "{")
		w := byName[labelValue(key, "service")]
		if w == nil {
			t.Fatalf("%s: unknown service", key)
		}
		s := p.series[key]
		if name == "redis_commands_total" && s[0].v == 0 {
			t.Errorf("%s appears at 0, not at its first value", key)
		}
		if name != "redis_commands_total" && !strings.HasPrefix(name, "redis_") && !(name == "up" && labelValue(key, "job") == "redis") {
			if appInstances[w.name] == nil {
				appInstances[w.name] = map[string]bool{}
			}
			appInstances[w.name][labelValue(key, "instance")] = true
		}
		if !slices.Contains(counters, name) {
			continue
		}
		for j := 1; j < len(s); j++ {
			if s[j].v >= s[j-1].v {
				continue
			}
			if w.p.aggregated && name != "redis_commands_total" {
				t.Errorf("%s: an aggregating endpoint's counter decreased at %d", key, s[j].t)
			} else if !restarted(w, name == "redis_commands_total", s[j-1].t, s[j].t) {
				t.Errorf("%s decreased at %d without a restart", key, s[j].t)
			}
			resets++
		}
	}
	for _, w := range worlds {
		if w.p.aggregated {
			aggregated++
			if n := len(appInstances[w.name]); n != 1 {
				t.Errorf("%s exports through one endpoint but has %d app instances", w.name, n)
			}
		}
	}
	t.Logf("%d series, %d counter resets at restarts, %d aggregated services", len(p.order), resets, aggregated)
	if resets == 0 || aggregated == 0 {
		t.Errorf("test dataset too tame: %d counter resets, %d aggregated services", resets, aggregated)
	}
}

// decodeStrict decodes one JSON object into v, rejecting unknown keys, and checks it has
// exactly want's keys.
func decodeStrict(line []byte, v any, want []string) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(line, &m); err != nil {
		return err
	}
	var got []string
	for k := range m {
		got = append(got, k)
	}
	slices.Sort(got)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		return &json.UnsupportedValueError{Str: "keys " + strings.Join(got, ",") + ", want " + strings.Join(want, ",")}
	}
	return nil
}

func TestLabelFiles(t *testing.T) {
	dir, _ := testDataset(t)
	raw, err := os.ReadFile(filepath.Join(dir, "dataset.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ds Dataset
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ds); err != nil {
		t.Fatalf("dataset.json: %v", err)
	}
	start, _ := time.Parse(time.RFC3339, ds.Start)
	end, _ := time.Parse(time.RFC3339, ds.End)
	for _, tc := range []struct {
		file string
		want []string
		new  func() any
	}{
		{"truth.jsonl", []string{"kind", "service", "start", "end", "scenario", "defined"}, func() any { return &Truth{} }},
		{"controls.jsonl", []string{"type", "service", "start", "end"}, func() any { return &Control{} }},
	} {
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dir, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
			if len(data) == 0 {
				t.Fatal("empty")
			}
			for _, line := range lines {
				v := tc.new()
				if err := decodeStrict(line, v, tc.want); err != nil {
					t.Fatalf("%s: %v", line, err)
				}
				var s, e string
				switch x := v.(type) {
				case *Truth:
					s, e = x.Start, x.End
					if x.Kind != kindSelf && x.Kind != kindFlush || x.Defined < x.Start || x.Defined > x.End {
						t.Errorf("bad incident %s", line)
					}
				case *Control:
					s, e = x.Start, x.End
				}
				ts, err1 := time.Parse(time.RFC3339, s)
				te, err2 := time.Parse(time.RFC3339, e)
				if err1 != nil || err2 != nil || te.Before(ts) || ts.Before(start) || te.After(end) {
					t.Errorf("bad span %s", line)
				}
			}
		})
	}
	// A garbled key is rejected.
	if err := decodeStrict([]byte(`{"type":"deploy","service":"x","start":"a","end":"b","extra":1}`), &Control{}, []string{"type", "service", "start", "end"}); err == nil {
		t.Error("unknown key accepted")
	}
}

func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		ok   bool
	}{
		{"defaults", Options{Days: 2, End: testEnd}, true},
		{"no end", Options{Days: 2}, false},
		{"one day", Options{Days: 1, End: testEnd}, false},
		{"fractional step", Options{Days: 2, End: testEnd, Step: 1500 * time.Millisecond}, false},
		{"warm fills the data", Options{Days: 2, End: testEnd, Warm: 47 * time.Hour}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, tl, err := resolve(tc.opts)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok = %v", err, tc.ok)
			}
			if tc.ok && (o.Services != 24 || o.Step != 30*time.Second || o.Warm != 24*time.Hour || tl.n != 5760) {
				t.Errorf("defaults not applied: %+v, %d samples", o, tl.n)
			}
		})
	}
}
