// Package alerts owns delivery: the receivers (Slack, Alertmanager, webhook), routing, dedup,
// resends and retries. It never evaluates anything; it is handed alerts and delivers them.
package alerts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"time"
)

// Alert is the delivery view of one anomaly episode.
type Alert struct {
	// Labels identify the episode's alert: alertname, kind, rule, severity and group labels.
	Labels map[string]string
	// Annotations carry summary, description, diagnosis and remedy text.
	Annotations map[string]string
	// StartsAt is when the episode started firing, taken from the data (stable across restarts).
	StartsAt time.Time
	// EndsAt is the resolve time for a resolved alert and zero while firing.
	EndsAt time.Time
	// GeneratorURL links a Prometheus graph of the signal.
	GeneratorURL string
	// Details holds the numbers behind the annotations, for rich messages.
	Details Details
	// Revision counts the updates of a firing episode that got much worse since it was paged:
	// each is news every receiver gets once (0: as it fired).
	Revision int
	// Chart draws the episode's chart as a PNG, for receivers that can show one (Slack as a
	// bot, in the page's thread); nil when there is none to draw.
	Chart func(ctx context.Context) ([]byte, error)
}

// Details are the numbers behind an alert, for receivers that render more than text.
type Details struct {
	Unit            string  // what the work signal counts, e.g. "token mints"
	Counts          bool    // Observed and Expected are counts within a window, not rates
	ObservedPerSec  float64 // observed work rate
	ExpectedPerSec  float64 // expected work rate
	UnexplainedPct  float64 // unexplained share of work, 0..100
	InboundPerSec   float64 // inbound request rate now
	InboundUsualSec float64 // seasonal inbound baseline
	InboundState    string  // normal, surging, idle
	Instances       int     // instances doing the work, 0 if unknown
	Diagnosis       string
	Remedy          string
}

// Resolved reports whether the alert is resolved.
func (a *Alert) Resolved() bool { return !a.EndsAt.IsZero() }

// Fingerprint is a stable identity for the alert's label set.
func (a *Alert) Fingerprint() string { return Fingerprint(a.Labels) }

// EpisodeKey identifies one episode: the label set and the start time. Two episodes of the same
// group that start at different times are different pages.
func (a *Alert) EpisodeKey() string {
	return a.Fingerprint() + "@" + a.StartsAt.UTC().Format(time.RFC3339)
}

// Fingerprint hashes a label set in sorted key order.
func Fingerprint(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write([]byte{0xff})
		h.Write([]byte(labels[k]))
		h.Write([]byte{0xff})
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Notifier delivers alerts to one receiver. The bool reports whether a failed delivery is worth
// retrying (timeouts, 5xx, 429), as in Alertmanager's notify package.
type Notifier interface {
	Notify(ctx context.Context, alerts ...*Alert) (retry bool, err error)
}
