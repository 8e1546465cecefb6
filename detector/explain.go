package detector

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// Explanation is why a group is (or is not) anomalous, in numbers, with the likely cause and fix.
type Explanation struct {
	// Self-generated traffic: the signal with the largest unexplained share.
	Signal           string
	Unit             string
	Bounded          bool
	Observed         float64 // work per second (flush storm: flushes or collapses in the window)
	Expected         float64 // work per second inbound explains (flush storm: min_flushes)
	Unexplained      float64 // Observed − Expected, per second
	UnexplainedShare float64 // Unexplained / Observed, 0..1
	Inbound          float64 // inbound requests per second
	InboundUsual     float64 // seasonal inbound baseline; NaN while learning
	InboundState     string
	Instances        int // instances doing the work, 0 if no breakdown query

	// Flush storm.
	Flushes                 float64 // flush commands within the window
	Collapses               float64 // keyspace collapses within the window
	Window                  time.Duration
	KeysNow, KeysBefore     float64
	Writes                  float64 // writes (uploads) within the window
	FlushesPerWrite         float64
	CommandsPerRequest      float64
	UsualCommandsPerRequest float64

	Summary   string
	Diagnosis string
	Remedy    string
}

// Remedies the seeds' post-mortems learned.
const (
	RemedyShareCache = "Share the cache across instances (Redis or Memcached instead of APCu or a per-pod " +
		"filesystem cache), take a lock around minting (SET NX PX) so one instance refreshes, and set " +
		"cache_ttl = token_expiry − safety_margin."
	RemedyFlushStorm = "Take the flush off the write path: invalidate only the keys a write touches (or a " +
		"tag), rebuild lazily behind a lock (single-flight), and never FLUSHDB/FLUSHALL from application code."
)

// num formats a rate or count with three significant digits and no exponent: 1234 → "1230",
// 0.0012345 → "0.00123".
func num(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "n/a"
	}
	r, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'g', 3, 64), 64)
	return strconv.FormatFloat(r, 'f', -1, 64)
}

// GroupString renders group labels as `service="checkout"`, sorted by name.
func GroupString(labels map[string]string) string {
	names := make([]string, 0, len(labels))
	for k := range labels {
		names = append(names, k)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = fmt.Sprintf("%s=%q", k, labels[k])
	}
	return strings.Join(parts, ", ")
}

func (r *Rule) explainSelfGenerated(ex *Explanation, labels map[string]string) {
	perReq := "n/a"
	if ex.Inbound > 0 {
		perReq = num(ex.Observed / ex.Inbound)
	}
	expectation := "expected " + num(ex.Expected) + "/s"
	if ex.Bounded {
		expectation = "ceiling " + num(ex.Expected) + "/s"
	}
	ex.Summary = fmt.Sprintf("%s: %s %s/s (%s per inbound request), %s; %.0f%% unexplained by inbound %s/s",
		GroupString(labels), ex.Unit, num(ex.Observed), perReq, expectation, 100*ex.UnexplainedShare, num(ex.Inbound))

	var why []string
	if ex.Instances >= 2 {
		why = append(why, fmt.Sprintf("%d instances do the work independently; it tracks instance count, "+
			"not demand → the cache is not shared (per-instance cache: APCu per PHP-FPM master, filesystem cache per pod)",
			ex.Instances))
	}
	switch ex.InboundState {
	case InboundIdle:
		why = append(why, fmt.Sprintf("idle but busy: %s/s %s while inbound is %s/s (usual %s/s) → work no user asked for",
			num(ex.Observed), ex.Unit, num(ex.Inbound), num(ex.InboundUsual)))
	case InboundSurging:
		why = append(why, fmt.Sprintf("inbound is surging (%sx its usual %s/s), but %s grew beyond what the surge explains",
			num(ex.Inbound/ex.InboundUsual), num(ex.InboundUsual), ex.Unit))
	default:
		switch { // the factor only while over: a resolved episode is not at "0.1x its ceiling"
		case ex.Observed <= ex.Expected:
		case ex.Expected > 0 && ex.Bounded:
			why = append(why, fmt.Sprintf("%s run at %sx their ceiling of %s/s, whatever the demand", ex.Unit, num(ex.Observed/ex.Expected), num(ex.Expected)))
		case ex.Expected > 0:
			why = append(why, fmt.Sprintf("%s run at %sx what inbound explains", ex.Unit, num(ex.Observed/ex.Expected)))
		}
	}
	ex.Diagnosis = strings.Join(why, "; ")
	ex.Remedy = r.cfg.Remedy
	if ex.Remedy == "" {
		ex.Remedy = RemedyShareCache
	}
}

func (r *Rule) explainFlush(ex *Explanation, labels map[string]string) {
	ex.Summary = fmt.Sprintf("%s: %s flushes and %s keyspace collapses in the last %s (storm at %s)",
		GroupString(labels), num(ex.Flushes), num(ex.Collapses), model.Duration(ex.Window), num(ex.Expected))
	var why []string
	if isNum(ex.FlushesPerWrite) {
		onWrite := ""
		if ex.FlushesPerWrite >= 0.5 && ex.FlushesPerWrite <= 2 {
			onWrite = " → the cache is flushed on the write path"
		}
		why = append(why, fmt.Sprintf("%s FLUSHDB/FLUSHALL per write (upload)%s", num(ex.FlushesPerWrite), onWrite))
	}
	if isNum(ex.CommandsPerRequest) {
		s := fmt.Sprintf("%s Redis commands per inbound request", num(ex.CommandsPerRequest))
		if isNum(ex.UsualCommandsPerRequest) && ex.UsualCommandsPerRequest > 0 {
			s += fmt.Sprintf(" vs %s usual (%sx): the rebuild is the load",
				num(ex.UsualCommandsPerRequest), num(ex.CommandsPerRequest/ex.UsualCommandsPerRequest))
		}
		why = append(why, s)
	}
	if ex.Collapses > 0 && isNum(ex.KeysBefore) {
		why = append(why, fmt.Sprintf("keyspace fell from %s to %s keys", num(ex.KeysBefore), num(ex.KeysNow)))
	}
	ex.Diagnosis = strings.Join(why, "; ")
	ex.Remedy = r.cfg.Remedy
	if ex.Remedy == "" {
		ex.Remedy = RemedyFlushStorm
	}
}
