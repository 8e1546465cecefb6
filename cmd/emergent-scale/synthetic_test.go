package main

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/config"
	"github.com/emergent-sh/emergent/internal/promsynth"
	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// The figures TestSyntheticShort holds, measured by it on the shared 2-core machine of
// BENCHMARKS.md ("Performance and scale") on 2026-12-01 at 1 000 groups (7 days of history,
// a 1 h replay, 30 s steps), under another engineer's load: the heap a start-up leaves per
// group, and emergentd's CPU per cycle (median of 4). Both fail CI past twice these.
// The worker is this test binary, so CI's -race build runs emergentd under the race detector:
// its cycles cost several times as much, and are held to a figure measured that way.
const (
	syntheticBytesPerGroup = 14_900 // 14 851 and 14 876 (2026-12-02, thirteenth cut) with a group in the 768 B class, 15 089 and 15 191 on main that day; 15 141 and 15 172 (twelfth cut) with a group in the 896 B class, 15 364 and 15 662 on main that day; 15 426 with a group's per-signal state in one slice, 15 855 before; 15 866 and 15 890 once rules share history; 16 837 with 16-bit samples, 26 400 with float32
	syntheticCycleCPU      = 0.040  // seconds; 30–47 ms in three runs
	syntheticCycleCPURace  = 0.22   // seconds, with -race: 170 and 223 ms in two runs
)

// TestFleetAnswersDecode serves every query of the shipped rules.toml from the synthetic fleet
// and reads each back with client_golang, at a step before and one inside the anomalies: the
// per-service queries answer every service, and the anomalies show where gen.go puts them.
func TestFleetAnswersDecode(t *testing.T) {
	cfg, err := config.LoadFile("../../rules.toml")
	if err != nil {
		t.Fatal(err)
	}
	const groups = 300 // three of each anomaly
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	f := &fleet{groups: groups, end: now, anomalyStart: now.Add(-2 * time.Hour)}
	answers, err := fleetAnswers(cfg, f)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range cfg.Queries() {
		if _, ok := answers[q]; !ok {
			t.Errorf("no synthetic answer for %q", q)
		}
	}
	srv, err := promsynth.Start(answers)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	client, err := api.NewClient(api.Config{Address: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	promAPI := v1.NewAPI(client)
	sgt, storm := cfg.Rules[0], cfg.Rules[1]
	for _, tc := range []struct {
		name          string
		query         string
		at            time.Time
		before, after int // series before and inside the anomalies
	}{
		{"inbound", sgt.Inbound, now, groups, groups},
		{"replicas: no instance label on inbound", sgt.Replicas, now, groups, groups},
		{"instances: one minting instance, two where fragmented", sgt.Instances, now, groups, groups + 3},
		{"cache resets: the storming services", sgt.CacheResets, now, 0, 3},
		{"flush counters: every service", storm.Flushes, now, groups, groups},
		{"keys", storm.Keys, now, groups, groups},
		{"writes", storm.Writes, now, groups, groups},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, x := range []struct {
				at   time.Time
				want int
			}{{f.anomalyStart.Add(-time.Hour), tc.before}, {now, tc.after}} {
				v, _, _, err := promAPI.QueryRange(context.Background(), tc.query, v1.Range{Start: x.at.Add(-time.Minute), End: x.at, Step: 30 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				m := v.(model.Matrix)
				if len(m) != x.want {
					t.Errorf("at %s: %d series, want %d", x.at.Format(time.RFC3339), len(m), x.want)
				}
				for _, ss := range m {
					if len(ss.Values) != 3 {
						t.Errorf("%v: %d values, want 3", ss.Metric, len(ss.Values))
					}
				}
			}
		})
	}
}

// TestFlushCountIsTheIntegralOfUploads checks the closed form the flush counters use: the
// day curve's integral grows at the day curve's rate, and a storming service's counter rises by
// its uploads (without their noise) while the others' stay at 1.
func TestFlushCountIsTheIntegralOfUploads(t *testing.T) {
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for h := 0; h < 24; h += 3 {
		t0 := at.Add(time.Duration(h) * time.Hour)
		if got, want := dayIntegral(t0.Add(time.Second))-dayIntegral(t0.Add(-time.Second)), 2*dayCurve(t0); math.Abs(got-want) > 1e-6 {
			t.Errorf("at %s: the integral grows %.6f over 2 s, the curve says %.6f", t0.Format("15:04"), got, want)
		}
	}
	f := &fleet{groups: 100, anomalyStart: at}
	rise := f.flushCount(2, at.Add(time.Hour)) - f.flushCount(2, at)
	want := uploadsPerRequest * serviceSize(2) * (dayIntegral(at.Add(time.Hour)) - dayIntegral(at))
	if math.Abs(rise-want) > 1 || rise < 1 {
		t.Errorf("storming service: %v flushes in an hour, want about %.1f", rise, want)
	}
	if c := f.flushCount(5, at.Add(time.Hour)); c != 1 {
		t.Errorf("healthy service: counter %v, want 1", c)
	}
}

// TestSyntheticShort is the CI form of the 100 000-group measurement (BENCHMARKS.md): emergentd
// in its worker against promsynth at 1 000 groups, bootstrap, cycles and a restart from the
// state file. It checks that the planted anomalies fire and survive the restart, and that the
// heap per group and the CPU per cycle stay within twice the committed figures (CPU-seconds and
// bytes, not wall-clock time).
func TestSyntheticShort(t *testing.T) {
	o := options{
		Groups: []int{1000}, Cycles: 4, Interval: 30 * time.Second, Synthetic: true, Restart: true,
		// A 1 h replay instead of 6 h keeps the test short; the 7-day history, which is most
		// of the state, is the shipped one.
		ConfigFile: "../../rules.toml", ConfigSet: []string{"replay=1h"},
		WorkDir: t.TempDir(), MaxWorkerRSS: 2 << 30, Logf: t.Logf,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	results, err := measure(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	r := results[0]
	if r.WorkerFailed != "" || r.Bootstrap.FailedQueries > 0 || len(r.Cycles) != o.Cycles {
		t.Fatalf("emergentd failed (%q), %v bootstrap queries failed, %d cycles", r.WorkerFailed, r.Bootstrap.FailedQueries, len(r.Cycles))
	}
	wantEach := r.Groups / 100
	for i, c := range r.Cycles {
		if c.FiringByRule["token-minting"] != wantEach || c.FiringByRule["redis-flush-storm"] != wantEach {
			t.Errorf("cycle %d: firing %v, want %d per rule", i+1, c.FiringByRule, wantEach)
		}
	}
	if x := r.Reload; x == nil || x.Open != 2*wantEach || x.Kept != x.Open {
		t.Errorf("restart from the state file %+v: want the %d open episodes kept", x, 2*wantEach)
	}

	perGroup := r.BytesPerGroup()
	cpu := summarize(r.Cycles, func(c cycleResult) float64 { return c.CPU }).Median
	committedCPU := syntheticCycleCPU
	if raceDetector {
		committedCPU = syntheticCycleCPURace
	}
	t.Logf("%d groups: %.0f bytes per group after the bootstrap (committed %d), %.3f CPU-s per cycle (committed %.3f, race detector %v)",
		r.Groups, perGroup, syntheticBytesPerGroup, cpu, committedCPU, raceDetector)
	if perGroup > 2*syntheticBytesPerGroup {
		t.Errorf("a start-up leaves %.0f bytes per group, more than twice the committed %d", perGroup, syntheticBytesPerGroup)
	}
	if cpu > 2*committedCPU {
		t.Errorf("a cycle costs %.3f CPU-s, more than twice the committed %.3f", cpu, committedCPU)
	}
}
