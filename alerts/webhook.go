package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/common/model"

	"github.com/emergent-sh/emergent/config"
)

// Webhook posts alerts in Alertmanager's webhook format (version 4), so that anything built
// for Alertmanager webhooks can take emergent's alerts directly. Like Slack, it posts each
// episode firing once and resolved at most once, and a resolve only if the firing was
// posted.
type Webhook struct {
	receiver string
	url      string
	client   *http.Client
	log      *episodeLog
	logger   *slog.Logger
}

// NewWebhook returns the webhook notifier of receiver r. client carries r's HTTP settings;
// logger may be nil.
func NewWebhook(r config.Receiver, client *http.Client, logger *slog.Logger) (*Webhook, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if client == nil {
		client = http.DefaultClient
	}
	if r.URL == "" {
		return nil, errors.New("webhook: a URL is required")
	}
	log, err := openEpisodeLog(r.StateFile, nil)
	if err != nil {
		logger.Warn("Ignoring unreadable webhook state file; episodes posted before may be posted again", "file", r.StateFile, "err", err)
		log, _ = openEpisodeLog("", nil)
		log.path = r.StateFile
	}
	return &Webhook{receiver: r.Name, url: string(r.URL), client: client, log: log, logger: logger}, nil
}

// webhookMessage is Alertmanager's webhook payload (notify/webhook.Message, version 4).
type webhookMessage struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []webhookAlert    `json:"alerts"`
}

// webhookAlert is one alert of the payload; EndsAt is the zero time ("0001-01-01T00:00:00Z")
// while firing, as Alertmanager sends it.
type webhookAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// due reports whether a's transition is still to post: a firing not posted yet, an update of
// one that was, or the resolve of an episode posted firing.
func (w *Webhook) due(a *Alert) bool {
	rec, posted := w.log.get(a.EpisodeKey())
	if !a.Resolved() {
		return !posted || rec.Revision < a.Revision
	}
	return posted && rec.ResolvedAt.IsZero()
}

// Notify posts, in one payload, the alerts' transitions; which are still due is the Manager's
// decision (due).
func (w *Webhook) Notify(ctx context.Context, due ...*Alert) (bool, error) {
	if len(due) == 0 {
		return false, nil
	}
	body, err := json.Marshal(webhookPayload(w.receiver, due))
	if err != nil {
		return false, fmt.Errorf("encode webhook payload: %w", err)
	}
	if retry, err := postJSON(ctx, w.client, w.url, body); err != nil {
		return retry, fmt.Errorf("post %d alert(s) to webhook: %w", len(due), err)
	}
	now := w.log.now()
	for _, a := range due {
		key := a.EpisodeKey()
		rec, _ := w.log.get(key)
		switch {
		case a.Resolved():
			rec.ResolvedAt = now
		case rec.FiredAt.IsZero():
			rec.FiredAt, rec.Revision = now, a.Revision
		default:
			rec.Revision = a.Revision
		}
		if err := w.log.put(key, rec); err != nil {
			w.logger.Warn("Cannot save webhook state file; a restart may post this episode again", "file", w.log.path, "err", err)
		}
	}
	return false, nil
}

// webhookPayload builds the payload for alerts. emergent does not group alerts the way
// Alertmanager does, so the group is the alerts themselves: its labels are the labels they
// share, and its key is derived from them.
func webhookPayload(receiver string, alerts []*Alert) webhookMessage {
	msg := webhookMessage{
		Version:           "4",
		Status:            "resolved",
		Receiver:          receiver,
		CommonLabels:      common(alerts, func(a *Alert) map[string]string { return a.Labels }),
		CommonAnnotations: common(alerts, func(a *Alert) map[string]string { return a.Annotations }),
	}
	msg.GroupLabels = msg.CommonLabels
	msg.GroupKey = "{}:" + labelSetString(msg.GroupLabels)
	for _, a := range alerts {
		status := "resolved"
		if !a.Resolved() {
			status, msg.Status = "firing", "firing"
		}
		msg.Alerts = append(msg.Alerts, webhookAlert{
			Status:       status,
			Labels:       orEmpty(a.Labels),
			Annotations:  orEmpty(a.Annotations),
			StartsAt:     a.StartsAt.UTC(),
			EndsAt:       a.EndsAt.UTC(),
			GeneratorURL: a.GeneratorURL,
			Fingerprint:  a.Fingerprint(),
		})
	}
	return msg
}

// common returns the key/value pairs every alert shares.
func common(alerts []*Alert, kv func(*Alert) map[string]string) map[string]string {
	out := map[string]string{}
	if len(alerts) == 0 {
		return out
	}
	for k, v := range kv(alerts[0]) {
		shared := true
		for _, a := range alerts[1:] {
			if w, ok := kv(a)[k]; !ok || w != v {
				shared = false
				break
			}
		}
		if shared {
			out[k] = v
		}
	}
	return out
}

func labelSetString(labels map[string]string) string {
	ls := make(model.LabelSet, len(labels))
	for k, v := range labels {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return ls.String()
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
