package config

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
)

// Defaults applied to keys left out of the file.
const (
	DefaultEvaluationInterval = model.Duration(30 * time.Second)
	DefaultEvaluationDelay    = model.Duration(15 * time.Second)
	DefaultHistory            = model.Duration(7 * 24 * time.Hour)
	DefaultBaselineStep       = model.Duration(15 * time.Minute)
	DefaultReplay             = model.Duration(6 * time.Hour)
	DefaultResendDelay        = model.Duration(time.Minute)
	DefaultResolvedRetention  = model.Duration(15 * time.Minute)
	DefaultBlindAfter         = model.Duration(10 * time.Minute)
	DefaultQueryTimeout       = model.Duration(10 * time.Second)
	DefaultReceiverTimeout    = model.Duration(10 * time.Second)
	DefaultQueueSize          = 1000
	DefaultMaxConcurrency     = 4
	// DefaultGroupMetricsLimit keeps /metrics near 40 000 series (four per group) for a rule of
	// 10 000 groups, the largest fleet the scale run measures with real Prometheus.
	DefaultGroupMetricsLimit = 10000
)

// Error is one configuration mistake with the place it was made.
type Error struct {
	File string
	Line int // 0 when the mistake has no single line (e.g. a missing section)
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Errors is every mistake found in one file, in file order.
type Errors []*Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// LoadFile reads, decodes and validates a configuration file. A file over MaxFileSize is
// refused without being read.
func LoadFile(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > MaxFileSize {
		return nil, tooLarge(path, fi.Size())
	}
	// Stat cannot size a pipe or a file still growing: read one byte past the limit to tell.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if len(data) > MaxFileSize {
		return nil, tooLarge(path, -1)
	}
	return Load(data, path)
}

// Load decodes and validates configuration text. file names it in errors and anchors relative
// paths (secret files, http_config_file). Unknown keys are errors. The result is a fresh value:
// callers swap it in only when err is nil, so a bad reload never touches the running config.
// Text over MaxFileSize or nested deeper than MaxNesting is refused before it is decoded.
func Load(data []byte, file string) (*Config, error) {
	if err := checkBounds(data, file); err != nil {
		return nil, err
	}
	cfg := &Config{File: file}
	md, err := toml.Decode(string(data), cfg)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			msg := perr.Message
			if perr.LastKey != "" {
				msg = fmt.Sprintf("%s: %s", perr.LastKey, msg)
			}
			return nil, Errors{{File: file, Line: perr.Position.Line, Msg: msg}}
		}
		// Type mismatches come back as plain errors: "toml: line N (last key "k"): msg".
		if m := tomlLineErr.FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1])
			return nil, Errors{{File: file, Line: line, Msg: m[2] + ": " + m[3]}}
		}
		return nil, Errors{{File: file, Msg: err.Error()}}
	}
	v := &validator{file: file, dir: filepath.Dir(file), lines: indexLines(data)}
	for _, k := range md.Undecoded() {
		v.errAt(v.lines.byPlainPath[k.String()], "unknown key %q", k.String())
	}
	v.config(cfg)
	if len(v.errs) > 0 {
		return nil, v.errs
	}
	return cfg, nil
}

type validator struct {
	file  string
	dir   string
	lines lineIndex
	errs  Errors
}

func (v *validator) errAt(line int, format string, args ...any) {
	v.errs = append(v.errs, &Error{File: v.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// errf reports a mistake at the line of key path (e.g. "rules[0].for").
func (v *validator) errf(path, format string, args ...any) {
	v.errAt(v.lines.line(path), path+": "+format, args...)
}

func (v *validator) positive(path string, d *model.Duration, def model.Duration) {
	switch {
	case *d == 0 && !v.written(path):
		*d = def
	case *d <= 0:
		v.errf(path, "must be a positive duration, got %q", d.String())
	}
}

func (v *validator) written(path string) bool {
	_, ok := v.lines.byPath[path]
	return ok
}

func (v *validator) config(c *Config) {
	g := &c.Global
	v.positive("global.evaluation_interval", &g.EvaluationInterval, DefaultEvaluationInterval)
	switch {
	case g.EvaluationDelay == 0 && !v.written("global.evaluation_delay"):
		g.EvaluationDelay = DefaultEvaluationDelay
	case g.EvaluationDelay < 0:
		v.errf("global.evaluation_delay", "must not be negative, got %q", g.EvaluationDelay.String())
	}
	v.positive("global.history", &g.History, DefaultHistory)
	v.positive("global.baseline_step", &g.BaselineStep, DefaultBaselineStep)
	v.positive("global.replay", &g.Replay, DefaultReplay)
	v.positive("global.resend_delay", &g.ResendDelay, DefaultResendDelay)
	v.positive("global.resolved_retention", &g.ResolvedRetention, DefaultResolvedRetention)
	v.positive("global.blind_after", &g.BlindAfter, DefaultBlindAfter)
	switch {
	case g.GroupMetricsLimit == 0 && !v.written("global.group_metrics_limit"):
		g.GroupMetricsLimit = DefaultGroupMetricsLimit
	case g.GroupMetricsLimit < 0:
		v.errf("global.group_metrics_limit", "must not be negative (0: every group), got %d", g.GroupMetricsLimit)
	}
	if g.EvaluationInterval > 0 && g.BaselineStep > 0 && time.Duration(g.BaselineStep)%time.Duration(g.EvaluationInterval) != 0 {
		v.errf("global.baseline_step", "must be a multiple of evaluation_interval (%s), got %s", g.EvaluationInterval, g.BaselineStep)
	}
	if g.History > 0 && g.BaselineStep > 0 && g.History < g.BaselineStep {
		v.errf("global.history", "must be at least baseline_step (%s)", g.BaselineStep)
	}
	v.prometheus(&c.Prometheus)

	ruleNames := map[string]bool{}
	for i := range c.Rules {
		r := &c.Rules[i]
		path := fmt.Sprintf("rules[%d]", i)
		if ruleNames[r.Name] && r.Name != "" {
			v.errf(path+".name", "duplicate rule name %q", r.Name)
		}
		ruleNames[r.Name] = true
		v.rule(path, r)
		v.resetRanges(path, r, time.Duration(c.Global.EvaluationInterval))
	}

	receivers := map[string]bool{}
	for i := range c.Receivers {
		r := &c.Receivers[i]
		path := fmt.Sprintf("receivers[%d]", i)
		if receivers[r.Name] && r.Name != "" {
			v.errf(path+".name", "duplicate receiver name %q", r.Name)
		}
		receivers[r.Name] = true
		v.receiver(path, r)
	}
	if len(c.Receivers) > 0 && len(c.Routes) == 0 {
		v.errAt(0, "receivers are defined but no [[routes]] sends alerts to them")
	}
	for i, rt := range c.Routes {
		path := fmt.Sprintf("routes[%d]", i)
		switch {
		case rt.Receiver == "":
			v.errf(path, "receiver is required")
		case !receivers[rt.Receiver]:
			v.errf(path+".receiver", "no receiver named %q", rt.Receiver)
		}
		for _, k := range rt.Kinds {
			if k != KindSelfGenerated && k != KindFlushStorm && k != KindDetectorBlind {
				v.errf(path+".kinds", "unknown kind %q (want %s, %s or %s)", k, KindSelfGenerated, KindFlushStorm, KindDetectorBlind)
			}
		}
	}
}

func (v *validator) prometheus(p *Prometheus) {
	if p.URL != "" {
		v.httpURL("prometheus.url", p.URL)
	}
	if p.GraphURL != "" {
		v.httpURL("prometheus.graph_url", p.GraphURL)
	}
	v.positive("prometheus.timeout", &p.Timeout, DefaultQueryTimeout)
	switch {
	case p.MaxConcurrentQueries == 0 && !v.written("prometheus.max_concurrent_queries"):
		p.MaxConcurrentQueries = DefaultMaxConcurrency
	case p.MaxConcurrentQueries <= 0:
		v.errf("prometheus.max_concurrent_queries", "must be at least 1, got %d", p.MaxConcurrentQueries)
	}
	p.HTTPClient = v.httpConfig("prometheus.http_config_file", p.HTTPConfigFile)
}

var tomlLineErr = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (.*)$`)

var ruleName = regexp.MustCompile(`^[A-Za-z0-9_\-]+$`)

func (v *validator) rule(path string, r *Rule) {
	switch {
	case r.Name == "":
		v.errf(path, "name is required")
	case !ruleName.MatchString(r.Name):
		v.errf(path+".name", "%q may only hold letters, digits, '_' and '-'", r.Name)
	}
	if r.Severity == "" {
		r.Severity = "warning"
	}
	if len(r.GroupBy) == 0 {
		v.errf(path, "group_by is required (the labels that name a group, e.g. [\"service\"])")
	}
	for _, l := range r.GroupBy {
		if !model.LegacyValidation.IsValidLabelName(l) {
			v.errf(path+".group_by", "%q is not a valid label name", l)
		}
	}
	if r.For < 0 {
		v.errf(path+".for", "must not be negative, got %q", r.For.String())
	}
	if r.ResolveFor < 0 {
		v.errf(path+".resolve_for", "must not be negative, got %q", r.ResolveFor.String())
	}
	if r.Limit < 0 {
		v.errf(path+".limit", "must not be negative (0: no limit), got %d", r.Limit)
	}
	if r.Hysteresis == 0 && !v.written(path+".hysteresis") {
		r.Hysteresis = 0.8
	} else if r.Hysteresis <= 0 || r.Hysteresis > 1 {
		v.errf(path+".hysteresis", "must be in (0, 1], got %g", r.Hysteresis)
	}
	if r.InstanceLabel == "" {
		r.InstanceLabel = "instance"
	}
	v.promql(path+".inbound", r.Inbound, false)
	v.promql(path+".instances", r.Instances, false)
	v.promql(path+".replicas", r.Replicas, false)
	v.promql(path+".replica_count", r.ReplicaCount, false)
	v.promql(path+".cache_resets", r.CacheResets, false)

	switch r.Kind {
	case KindSelfGenerated:
		v.selfGenerated(path, r)
	case KindFlushStorm:
		v.flushStorm(path, r)
	case "":
		v.errf(path, "kind is required (%s or %s)", KindSelfGenerated, KindFlushStorm)
	default:
		v.errf(path+".kind", "unknown kind %q (want %s or %s)", r.Kind, KindSelfGenerated, KindFlushStorm)
	}
}

func (v *validator) selfGenerated(path string, r *Rule) {
	if r.Inbound == "" {
		v.errf(path, "inbound is required for kind %s", r.Kind)
	}
	if len(r.Signals) == 0 {
		v.errf(path, "at least one [[rules.signals]] is required for kind %s", r.Kind)
	}
	if r.ReplicaCount != "" && r.Replicas == "" {
		v.errf(path+".replica_count", "needs the rule's replicas query: it counts the instances where replicas shows one series")
	}
	if r.MinUnexplainedShare == 0 && !v.written(path+".min_unexplained_share") {
		r.MinUnexplainedShare = 0.5
	} else if r.MinUnexplainedShare <= 0 || r.MinUnexplainedShare >= 1 {
		v.errf(path+".min_unexplained_share", "must be in (0, 1), got %g", r.MinUnexplainedShare)
	}
	if r.MinUnexplainedRate < 0 {
		v.errf(path+".min_unexplained_rate", "must not be negative, got %g", r.MinUnexplainedRate)
	}
	if r.IdleInbound < 0 {
		v.errf(path+".idle_inbound", "must not be negative, got %g", r.IdleInbound)
	}
	// A rolling deploy replaces pods a minute or two apart and each new cache refreshes once
	// within a rate window of its start: five minutes after the last new pod cover both for
	// the shipped 2m windows.
	v.positive(path+".settle", &r.Settle, model.Duration(5*time.Minute))
	// A deploy's thrash past its cold caches' warm-up pages without waiting (detector,
	// warmUpSpent), so a deploy may hold longer than a scaling event, whose per-instance work
	// is only told from a warm-up once it settles: twice as long covers the warm-ups of every
	// cache at once at low traffic (fleetsim tuning seeds: 10 to 15 minutes).
	v.positive(path+".deploy_settle", &r.DeploySettle, 2*r.Settle)
	// A flushed or restarted cache refills over its keys' TTL; an hour is what the shipped
	// queries held a reset for when they read it over [1h] windows at every cycle.
	if !v.written(path + ".cache_refill") { // a negative duration does not parse
		r.CacheRefill = model.Duration(time.Hour)
	}
	if r.AverageOver < 0 {
		v.errf(path+".average_over", "must not be negative, got %q", r.AverageOver.String())
	}
	if !v.written(path + ".recur_within") { // a negative duration does not parse
		r.RecurWithin = r.AverageOver
	}

	names := map[string]bool{}
	for j := range r.Signals {
		s := &r.Signals[j]
		sp := fmt.Sprintf("%s.signals[%d]", path, j)
		if s.Name == "" {
			v.errf(sp, "name is required")
		} else if names[s.Name] {
			v.errf(sp+".name", "duplicate signal name %q", s.Name)
		}
		names[s.Name] = true
		v.promql(sp+".query", s.Query, true)
		s.EventQuantum, s.EventWindow = eventQuantum(s.Query)
		if s.Unit == "" {
			s.Unit = s.Name
		}
		if s.ReplicaScalingOnly && r.Replicas == "" {
			v.errf(sp+".replica_scaling_only", "needs the rule's replicas query: without it instances never grow and the signal never pages")
		}
		switch s.Relation {
		case RelationProportional:
			if s.MaxRatio < 0 {
				v.errf(sp+".max_ratio", "must not be negative, got %g", s.MaxRatio)
			}
			if s.MaxFloor < 0 {
				v.errf(sp+".max_floor", "must not be negative, got %g", s.MaxFloor)
			}
		case RelationBounded:
			if s.Ceiling < 0 {
				v.errf(sp+".ceiling", "must not be negative, got %g", s.Ceiling)
			}
			if s.MaxPerInstance < 0 {
				v.errf(sp+".max_per_instance", "must not be negative, got %g", s.MaxPerInstance)
			}
		case "":
			v.errf(sp, "relation is required (%s or %s)", RelationProportional, RelationBounded)
		default:
			v.errf(sp+".relation", "unknown relation %q (want %s or %s)", s.Relation, RelationProportional, RelationBounded)
		}
	}
}

func (v *validator) flushStorm(path string, r *Rule) {
	if r.Flushes == "" && r.Keys == "" {
		v.errf(path, "kind %s needs flushes or keys (or both)", r.Kind)
	}
	// A key the kind does not read is an error, not a silent no-op: whoever wrote it expects it
	// to change what pages.
	for _, key := range selfGeneratedOnly {
		if v.written(path + "." + key) {
			v.errf(path+"."+key, "is read by kind %s only; a %s rule does not use it", KindSelfGenerated, r.Kind)
		}
	}
	v.promql(path+".flushes", r.Flushes, false)
	v.promql(path+".keys", r.Keys, false)
	v.promql(path+".commands", r.Commands, false)
	v.promql(path+".writes", r.Writes, false)
	r.WritesRateWindow = model.Duration(shortestRange(r.Writes, "rate"))
	if r.MinFlushes == 0 && !v.written(path+".min_flushes") {
		r.MinFlushes = 3
	} else if r.MinFlushes < 2 {
		v.errf(path+".min_flushes", "must be at least 2 (one flush is an event, not a storm), got %d", r.MinFlushes)
	}
	v.positive(path+".window", &r.Window, model.Duration(10*time.Minute))
	if r.CollapseFraction == 0 && !v.written(path+".collapse_fraction") {
		r.CollapseFraction = 0.5
	} else if r.CollapseFraction <= 0 || r.CollapseFraction >= 1 {
		v.errf(path+".collapse_fraction", "must be in (0, 1), got %g", r.CollapseFraction)
	}
	if r.MinKeys == 0 && !v.written(path+".min_keys") {
		r.MinKeys = 100
	} else if r.MinKeys < 0 {
		v.errf(path+".min_keys", "must not be negative, got %g", r.MinKeys)
	}
}

// resetRanges checks that cache_resets reads each step's reset over more than the evaluation
// interval: the rule holds what the query saw at its steps, and a reset between two samples
// that no one range holds both of (ranges that only meet) would not be held at all.
func (v *validator) resetRanges(path string, r *Rule, interval time.Duration) {
	for _, fn := range []string{"resets", "changes", "increase"} {
		if d := shortestRange(r.CacheResets, fn); d > 0 && d <= interval {
			v.errf(path+".cache_resets", "%s() reads [%s], not longer than evaluation_interval %s: a reset between two steps would not be seen",
				fn, model.Duration(d), model.Duration(interval))
		}
	}
}

// selfGeneratedOnly are the rule keys only kind self_generated_traffic reads.
var selfGeneratedOnly = []string{"settle", "deploy_settle", "average_over", "min_unexplained_share",
	"min_unexplained_rate", "replicas", "replica_count", "cache_resets", "cache_refill"}

// promql checks q with Prometheus's own parser. required reports whether q may be empty.
func (v *validator) promql(path, q string, required bool) {
	if q == "" {
		if required {
			v.errf(path, "a PromQL query is required")
		}
		return
	}
	if _, err := parser.NewParser(parser.Options{}).ParseExpr(q); err != nil {
		v.errf(path, "invalid PromQL: %v", err)
	}
}

// eventQuantum is what one event adds to q's value: 1/range for rate(x[range]), 1 for
// increase(x[range]), with that range; the largest when q reads several, 0 when it reads none or
// does not parse.
func eventQuantum(q string) (float64, time.Duration) {
	if r := shortestRange(q, "increase"); r > 0 {
		return 1, r
	}
	if r := shortestRange(q, "rate"); r > 0 {
		return 1 / r.Seconds(), r
	}
	return 0, 0
}

// shortestRange is the shortest range q passes to the function fn (rate, increase), 0 when q
// calls fn on no range or does not parse.
func shortestRange(q, fn string) time.Duration {
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(q)
	if err != nil {
		return 0
	}
	var shortest time.Duration
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		call, ok := node.(*parser.Call)
		if !ok || call.Func.Name != fn || len(call.Args) == 0 {
			return nil
		}
		if m, ok := call.Args[0].(*parser.MatrixSelector); ok && m.Range > 0 && (shortest == 0 || m.Range < shortest) {
			shortest = m.Range
		}
		return nil
	})
	return shortest
}

func (v *validator) httpURL(path, raw string) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.errf(path, "must be an http(s) URL with a host, got %q", redact(raw))
	}
}

// secretURL checks a URL that is itself a secret (a Slack webhook): the error never shows it.
func (v *validator) secretURL(path, raw string) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.errf(path, "must be an http(s) URL with a host (value not shown: it is a secret)")
	}
}

// redact hides userinfo and query from a URL so it can appear in an error.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable URL>"
	}
	if u.User != nil {
		u.User = url.User("xxxxx")
	}
	if u.RawQuery != "" {
		u.RawQuery = "xxxxx"
	}
	return u.String()
}

func (v *validator) httpConfig(path, file string) commoncfg.HTTPClientConfig {
	if file == "" {
		return commoncfg.DefaultHTTPClientConfig
	}
	hc, _, err := commoncfg.LoadHTTPConfigFile(v.abs(file))
	if err != nil {
		v.errf(path, "%v", err)
		return commoncfg.DefaultHTTPClientConfig
	}
	return *hc
}

func (v *validator) abs(file string) string {
	if filepath.IsAbs(file) {
		return file
	}
	return filepath.Join(v.dir, file)
}

// secret resolves a secret that may be given inline, in a file or in an environment variable.
func (v *validator) secret(path, key string, inline *commoncfg.Secret, file, env string) {
	set := 0
	for _, s := range []string{string(*inline), file, env} {
		if s != "" {
			set++
		}
	}
	if set > 1 {
		v.errf(path+"."+key, "set only one of %s, %s_file and %s_env", key, key, key)
		return
	}
	switch {
	case file != "":
		data, err := os.ReadFile(v.abs(file))
		if err != nil {
			v.errf(path+"."+key+"_file", "read secret: %v", err)
			return
		}
		*inline = commoncfg.Secret(strings.TrimSpace(string(data)))
		if *inline == "" {
			v.errf(path+"."+key+"_file", "secret file %q is empty", file)
		}
	case env != "":
		val, ok := os.LookupEnv(env)
		if !ok || strings.TrimSpace(val) == "" {
			v.errf(path+"."+key+"_env", "environment variable %s is not set or empty", env)
			return
		}
		*inline = commoncfg.Secret(strings.TrimSpace(val))
	}
}

func (v *validator) receiver(path string, r *Receiver) {
	switch {
	case r.Name == "":
		v.errf(path, "name is required")
	case !ruleName.MatchString(r.Name):
		v.errf(path+".name", "%q may only hold letters, digits, '_' and '-'", r.Name)
	}
	v.positive(path+".timeout", &r.Timeout, DefaultReceiverTimeout)
	switch {
	case r.QueueSize == 0 && !v.written(path+".queue_size"):
		r.QueueSize = DefaultQueueSize
	case r.QueueSize <= 0:
		v.errf(path+".queue_size", "must be at least 1, got %d", r.QueueSize)
	}
	r.HTTPClient = v.httpConfig(path+".http_config_file", r.HTTPConfigFile)
	switch r.Type {
	case ReceiverSlack:
		v.secret(path, "webhook_url", &r.WebhookURL, r.WebhookURLFile, r.WebhookURLEnv)
		v.secret(path, "token", &r.Token, r.TokenFile, r.TokenEnv)
		switch {
		case r.WebhookURL != "" && r.Token != "":
			v.errf(path, "slack: use either webhook_url or token + channel, not both")
		case r.WebhookURL == "" && r.Token == "":
			v.errf(path, "slack: webhook_url (or _file/_env) or token (or _file/_env) + channel is required")
		case r.Token != "" && r.Channel == "":
			v.errf(path, "slack: token mode needs channel")
		case r.WebhookURL != "":
			v.secretURL(path+".webhook_url", string(r.WebhookURL))
		}
		if r.APIURL != "" {
			v.httpURL(path+".api_url", r.APIURL)
		}
	case ReceiverAlertmanager:
		if len(r.URLs) == 0 {
			v.errf(path, "alertmanager: urls is required (every URL gets every alert)")
		}
		for _, u := range r.URLs {
			v.httpURL(path+".urls", u)
		}
	case ReceiverWebhook:
		v.secret(path, "url", &r.URL, r.URLFile, r.URLEnv)
		if r.URL == "" {
			v.errf(path, "webhook: url (or url_file/url_env) is required")
		} else {
			v.secretURL(path+".url", string(r.URL))
		}
	case "":
		v.errf(path, "type is required (slack, alertmanager or webhook)")
	default:
		v.errf(path+".type", "unknown receiver type %q (want slack, alertmanager or webhook)", r.Type)
	}
}

// Queries lists every PromQL query of the rules, each once, in rule order.
func (c *Config) Queries() []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range c.Rules {
		for _, q := range r.Queries() {
			if !seen[q] {
				seen[q] = true
				out = append(out, q)
			}
		}
	}
	return out
}

// Queries lists the rule's PromQL queries, each once.
func (r Rule) Queries() []string {
	var out []string
	for _, q := range append([]string{r.Inbound, r.Instances, r.Replicas, r.ReplicaCount, r.CacheResets, r.Flushes, r.Keys, r.Commands, r.Writes}, r.SignalQueries()...) {
		if q != "" && !contains(out, q) {
			out = append(out, q)
		}
	}
	return out
}

// SignalQueries lists the queries of the rule's work signals, in order.
func (r Rule) SignalQueries() []string {
	out := make([]string, len(r.Signals))
	for i, s := range r.Signals {
		out[i] = s.Query
	}
	return out
}
