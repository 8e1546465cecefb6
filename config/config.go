// Package config owns emergentd's configuration: the TOML schema, its defaults, and validation
// that reports file:line for every mistake. It does no network I/O; secrets are read from files
// or the environment at load time and are never printed.
package config

import (
	"encoding/json"
	"time"

	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
)

// Kinds of anomaly a rule can detect.
const (
	KindSelfGenerated = "self_generated_traffic"
	KindFlushStorm    = "flush_storm"
	// KindDetectorBlind is the meta-alert raised while rules cannot see their data; routes may
	// name it like the anomaly kinds.
	KindDetectorBlind = "detector_blind"
)

// Relations between a work signal and inbound traffic.
const (
	RelationProportional = "proportional"
	RelationBounded      = "bounded"
)

// Receiver types.
const (
	ReceiverSlack        = "slack"
	ReceiverAlertmanager = "alertmanager"
	ReceiverWebhook      = "webhook"
)

// Config is the whole emergentd configuration, as decoded from rules.toml.
type Config struct {
	Global     Global     `toml:"global" json:"global"`
	Prometheus Prometheus `toml:"prometheus" json:"prometheus"`
	Rules      []Rule     `toml:"rules" json:"rules"`
	Receivers  []Receiver `toml:"receivers" json:"receivers"`
	Routes     []Route    `toml:"routes" json:"routes"`

	// File is the path the configuration was loaded from.
	File string `toml:"-" json:"-"`
}

// Global holds evaluation timing shared by every rule.
type Global struct {
	// EvaluationInterval is the step between evaluations; steps are aligned to multiples of it
	// so that replicas evaluate the same timestamps.
	EvaluationInterval model.Duration `toml:"evaluation_interval" json:"evaluation_interval"`
	// EvaluationDelay is how long after a step's time it is evaluated, so late scrapes have
	// landed and every replica reads the same samples for the same step.
	EvaluationDelay model.Duration `toml:"evaluation_delay" json:"evaluation_delay"`
	// History is how far back baselines are learned from at start-up.
	History model.Duration `toml:"history" json:"history"`
	// BaselineStep is the resolution of the stored history used for baselines.
	BaselineStep model.Duration `toml:"baseline_step" json:"baseline_step"`
	// Replay is the window re-evaluated at start-up to reconstruct episodes already under way.
	Replay model.Duration `toml:"replay" json:"replay"`
	// ResendDelay is how often a firing alert is re-sent to Alertmanager.
	ResendDelay model.Duration `toml:"resend_delay" json:"resend_delay"`
	// ResolvedRetention is how long a resolved alert keeps being re-sent to Alertmanager.
	ResolvedRetention model.Duration `toml:"resolved_retention" json:"resolved_retention"`
	// BlindAfter is how long a rule may be unable to see its data before the meta-alert fires.
	BlindAfter model.Duration `toml:"blind_after" json:"blind_after"`
	// GroupMetricsLimit is how many groups per rule get their own series on /metrics; past it
	// only groups that are not inactive do (0: every group).
	GroupMetricsLimit int `toml:"group_metrics_limit" json:"group_metrics_limit"`
	// ExternalLabels are added to every alert (e.g. cluster = "eu-1").
	ExternalLabels map[string]string `toml:"external_labels" json:"external_labels,omitempty"`
}

// Prometheus says where series come from.
type Prometheus struct {
	URL string `toml:"url" json:"url"`
	// GraphURL is the Prometheus URL users open in alerts' graph links; defaults to URL.
	GraphURL string         `toml:"graph_url" json:"graph_url,omitempty"`
	Timeout  model.Duration `toml:"timeout" json:"timeout"`
	// HTTPConfigFile is a YAML file in Prometheus's http_config format (basic auth, bearer,
	// TLS, OAuth2, proxy), relative to the config file.
	HTTPConfigFile       string `toml:"http_config_file" json:"http_config_file,omitempty"`
	MaxConcurrentQueries int    `toml:"max_concurrent_queries" json:"max_concurrent_queries"`

	// HTTPClient is loaded from HTTPConfigFile (or defaults) during Load.
	HTTPClient commoncfg.HTTPClientConfig `toml:"-" json:"-"`
}

// MarshalJSON encodes p as /api/v1/status/config serves it: its URLs without their userinfo
// or query, where credentials and tokens go, masked by redact (load.go), the package's one URL
// redaction, which its errors use too. p itself, which the daemon connects with, is left as
// it is.
func (p Prometheus) MarshalJSON() ([]byte, error) {
	type plain Prometheus // plain has no MarshalJSON: no recursion
	out := plain(p)
	out.URL = redact(p.URL)
	out.GraphURL = redact(p.GraphURL)
	return json.Marshal(out)
}

// Rule is one detector: a kind, the queries it watches and its thresholds.
type Rule struct {
	Name     string            `toml:"name" json:"name"`
	Kind     string            `toml:"kind" json:"kind"`
	Severity string            `toml:"severity" json:"severity"`
	GroupBy  []string          `toml:"group_by" json:"group_by"`
	Labels   map[string]string `toml:"labels" json:"labels,omitempty"`
	// Inbound is the PromQL for inbound request rate per group.
	Inbound string `toml:"inbound" json:"inbound"`

	For        model.Duration `toml:"for" json:"for"`
	ResolveFor model.Duration `toml:"resolve_for" json:"resolve_for"`
	// Hysteresis scales the thresholds a firing episode must fall under to resolve (0..1].
	Hysteresis float64 `toml:"hysteresis" json:"hysteresis"`

	// Self-generated traffic.
	Signals             []Signal `toml:"signals" json:"signals,omitempty"`
	MinUnexplainedShare float64  `toml:"min_unexplained_share" json:"min_unexplained_share,omitempty"`
	MinUnexplainedRate  float64  `toml:"min_unexplained_rate" json:"min_unexplained_rate,omitempty"`
	// IdleInbound is the inbound rate (per second) under which a group counts as idle.
	IdleInbound float64 `toml:"idle_inbound" json:"idle_inbound,omitempty"`
	// Instances returns one series per instance doing the work (group labels + InstanceLabel).
	Instances     string `toml:"instances" json:"instances,omitempty"`
	InstanceLabel string `toml:"instance_label" json:"instance_label,omitempty"`
	// Replicas returns one series per live instance of the group (group labels +
	// InstanceLabel), whatever work it does: their number scales bounded signals' learned
	// per-instance level, and new names or a changed number mark a deploy or a scaling event.
	Replicas string `toml:"replicas" json:"replicas,omitempty"`
	// ReplicaCount returns one series per group whose value grows in proportion to its live
	// instances (the health probes they answer per second, a replica count): where Replicas
	// shows one series (an aggregating endpoint in front of many pods) the instances are
	// counted in multiples of its usual value, so scaling events are seen there too.
	ReplicaCount string `toml:"replica_count" json:"replica_count,omitempty"`
	// CacheResets is above zero per group at a step whose ranges saw its cache reset — a Redis
	// restart (resets of redis_uptime_in_seconds) or a flush: the rebuild after it is a
	// transient for CacheRefill, and a storm of them is the flush-storm rule's to report.
	CacheResets string `toml:"cache_resets" json:"cache_resets,omitempty"`
	// CacheRefill is how long after the last step CacheResets saw a reset the rebuild stays a
	// transient (its keys' TTL): the detector holds the reset, so the query's ranges need only
	// span a restart's downtime and two scrapes, not an hour of counters read at every cycle.
	// Zero: only while the query says so.
	CacheRefill model.Duration `toml:"cache_refill" json:"cache_refill,omitempty"`
	// Settle is how long after a deploy, a scaling event or a restart work may stay above its
	// learned level without paging: cold caches warm up within it; work still up after it pages.
	Settle model.Duration `toml:"settle" json:"settle,omitempty"`
	// DeploySettle is Settle after a rolling deploy: a deploy empties every instance's caches at
	// once, and at low traffic the last of them warm up long after the rollout. Twice Settle
	// unless set.
	DeploySettle model.Duration `toml:"deploy_settle" json:"deploy_settle,omitempty"`
	// AverageOver is the time constant of the average work must also be unexplained over to
	// fire: a healthy fleet's bursts average out, a sustained incident does not. Zero: the
	// instant alone.
	AverageOver model.Duration `toml:"average_over" json:"average_over,omitempty"`
	// RecurWithin caps the quiet a firing episode is held open through as a lull (its
	// average_over average still unexplained, no change settled since its last breach; at most
	// average_over), and is how long the quiet between two episodes of a group may be for the
	// second to be the first coming back (a stampede at every token expiry, a storm of sparse
	// uploads): that episode stays open through quiet as long as the gap it showed. Unset:
	// average_over for self-generated traffic, never for a flush storm (which has no lulls);
	// zero: never.
	RecurWithin model.Duration `toml:"recur_within" json:"recur_within,omitempty"`
	// Limit is the most groups the rule may watch (0: no limit), like a Prometheus rule group's
	// limit: a query that suddenly returns far more (a label gone wrong) makes the rule blind,
	// with the reason, instead of costing memory and a /metrics page without bound.
	Limit int `toml:"limit" json:"limit,omitempty"`

	// Flush storm.
	Flushes  string `toml:"flushes" json:"flushes,omitempty"`
	Keys     string `toml:"keys" json:"keys,omitempty"`
	Commands string `toml:"commands" json:"commands,omitempty"`
	Writes   string `toml:"writes" json:"writes,omitempty"`
	// WritesRateWindow is derived from Writes, not configured: the range of its rate(), whose
	// lag the flushes-per-write diagnosis corrects in a storm's first minutes.
	WritesRateWindow model.Duration `toml:"-" json:"-"`
	MinFlushes       int            `toml:"min_flushes" json:"min_flushes,omitempty"`
	Window           model.Duration `toml:"window" json:"window,omitempty"`
	CollapseFraction float64        `toml:"collapse_fraction" json:"collapse_fraction,omitempty"`
	MinKeys          float64        `toml:"min_keys" json:"min_keys,omitempty"`

	// Remedy overrides the remedy text of the diagnosis.
	Remedy string `toml:"remedy" json:"remedy,omitempty"`
}

// Signal is one work signal of a self-generated-traffic rule.
type Signal struct {
	Name     string `toml:"name" json:"name"`
	Query    string `toml:"query" json:"query"`
	Relation string `toml:"relation" json:"relation"`
	// Ceiling optionally caps what a bounded signal may do per second in a group, whatever its
	// learned level; zero means no cap.
	Ceiling float64 `toml:"ceiling" json:"ceiling,omitempty"`
	// MaxPerInstance optionally caps the per-instance level a bounded signal may learn, so a
	// bug present in all of history is not learned as normal; zero means no cap. It applies to
	// groups whose replicas usually show two or more instances or whose instances breakdown
	// has named two or more (one series in both may be an aggregating endpoint in front of many).
	MaxPerInstance float64 `toml:"max_per_instance" json:"max_per_instance,omitempty"`
	// MaxRatio caps the learned work-per-request ratio of a proportional signal, so history
	// that already holds the bug cannot teach the detector that the bug is normal.
	MaxRatio float64 `toml:"max_ratio" json:"max_ratio,omitempty"`
	// MaxFloor caps the learned floor (work per second with no inbound).
	MaxFloor float64 `toml:"max_floor" json:"max_floor,omitempty"`
	// PerInstance makes a proportional signal's floor a floor per live instance: each instance
	// refreshes on its own (a token cache misses once per lifetime), so the floor grows with
	// instances and a scale-out is explained. Bounded signals are always per instance.
	PerInstance bool `toml:"per_instance" json:"per_instance,omitempty"`
	// ReplicaScalingOnly makes the signal page only while the instances have grown past their
	// usual number (per-instance state multiplying work); otherwise it is learned and shown but
	// explains rather than pages. For work that many healthy events move and the detector may
	// not see (cold caches after a deploy behind one aggregated endpoint, warm-ups, rebuilds).
	ReplicaScalingOnly bool `toml:"replica_scaling_only" json:"replica_scaling_only,omitempty"`
	// Optional says only some groups export the signal's metric (a per-pod local cache's
	// counters): `check --query` notes a signal that returns no series instead of failing, as it
	// must for one whose metric is misspelt. Evaluation is the same: a group that never reported
	// the signal does none of its work.
	Optional bool `toml:"optional" json:"optional,omitempty"`
	// Unit names what the signal counts, for messages ("token mints").
	Unit string `toml:"unit" json:"unit,omitempty"`
	// EventQuantum is derived from Query, not configured: what one event adds to its value
	// (1/range seconds for rate(x[range]), 1 for increase). A value made of few events is
	// uncertain by √N of them, and the detector widens its noise band by that. Zero when the
	// query counts no events.
	EventQuantum float64 `toml:"-" json:"-"`
	// EventWindow is derived from Query too: the range EventQuantum is of (zero with it). The
	// history, averaged over each baseline step, counts an event over the step instead.
	EventWindow time.Duration `toml:"-" json:"-"`
}

// Receiver is somewhere alerts go.
type Receiver struct {
	Name string `toml:"name" json:"name"`
	Type string `toml:"type" json:"type"`

	// Slack: an incoming webhook, or a bot token with a channel.
	WebhookURL     commoncfg.Secret `toml:"webhook_url" json:"webhook_url,omitempty"`
	WebhookURLFile string           `toml:"webhook_url_file" json:"webhook_url_file,omitempty"`
	WebhookURLEnv  string           `toml:"webhook_url_env" json:"webhook_url_env,omitempty"`
	Token          commoncfg.Secret `toml:"token" json:"token,omitempty"`
	TokenFile      string           `toml:"token_file" json:"token_file,omitempty"`
	TokenEnv       string           `toml:"token_env" json:"token_env,omitempty"`
	Channel        string           `toml:"channel" json:"channel,omitempty"`
	// APIURL overrides Slack's API base URL (tests, proxies, Slack-compatible servers).
	APIURL string `toml:"api_url" json:"api_url,omitempty"`
	// StateFile optionally persists which episodes were posted (and their message ids) so a
	// restart neither pages twice nor loses the thread.
	StateFile string `toml:"state_file" json:"state_file,omitempty"`

	// Alertmanager: every URL gets every alert.
	URLs []string `toml:"urls" json:"urls,omitempty"`

	// Webhook (Alertmanager webhook format, version 4).
	URL     commoncfg.Secret `toml:"url" json:"url,omitempty"`
	URLFile string           `toml:"url_file" json:"url_file,omitempty"`
	URLEnv  string           `toml:"url_env" json:"url_env,omitempty"`

	// Common to HTTP receivers.
	Timeout        model.Duration `toml:"timeout" json:"timeout"`
	HTTPConfigFile string         `toml:"http_config_file" json:"http_config_file,omitempty"`
	QueueSize      int            `toml:"queue_size" json:"queue_size"`

	// HTTPClient is loaded from HTTPConfigFile (or defaults) during Load.
	HTTPClient commoncfg.HTTPClientConfig `toml:"-" json:"-"`
}

// MarshalJSON encodes r as /api/v1/status/config serves it: its URLs without their userinfo
// or query, as for Prometheus; the secrets (webhook_url, token, url) marshal as <secret>. r
// itself, which the daemon delivers with, is left as it is.
func (r Receiver) MarshalJSON() ([]byte, error) {
	type plain Receiver // plain has no MarshalJSON: no recursion
	out := plain(r)
	out.APIURL = redact(r.APIURL)
	if r.URLs != nil {
		out.URLs = make([]string, len(r.URLs)) // a copy: r.URLs is the running configuration's
		for i, u := range r.URLs {
			out.URLs[i] = redact(u)
		}
	}
	return json.Marshal(out)
}

// Route sends the alerts it matches to a receiver. Every matching route is used.
type Route struct {
	Receiver   string            `toml:"receiver" json:"receiver"`
	Kinds      []string          `toml:"kinds" json:"kinds,omitempty"`
	Severities []string          `toml:"severities" json:"severities,omitempty"`
	Match      map[string]string `toml:"match" json:"match,omitempty"`
}

// Matches reports whether the route takes an alert with these labels.
func (r Route) Matches(labels map[string]string) bool {
	if len(r.Kinds) > 0 && !contains(r.Kinds, labels["kind"]) {
		return false
	}
	if len(r.Severities) > 0 && !contains(r.Severities, labels["severity"]) {
		return false
	}
	for k, v := range r.Match {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
