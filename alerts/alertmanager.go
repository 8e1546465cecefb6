package alerts

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Alertmanager posts alerts to one Alertmanager's API v2. It sends what it is given: the
// caller decides when to (re)send and sets EndsAt on firing alerts, as Prometheus does.
type Alertmanager struct {
	endpoint string
	client   *http.Client
}

// NewAlertmanager returns a notifier for the Alertmanager at baseURL (e.g.
// "http://alertmanager:9093", with any path prefix it is served under).
func NewAlertmanager(baseURL string, client *http.Client) (*Alertmanager, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("alertmanager URL %s: want an absolute http(s) URL", redactURL(baseURL))
	}
	if client == nil {
		client = http.DefaultClient
	}
	return &Alertmanager{endpoint: u.JoinPath("api/v2/alerts").String(), client: client}, nil
}

// postableAlert is Alertmanager's API v2 alert as a client posts it.
type postableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// Notify posts every alert in one request.
func (am *Alertmanager) Notify(ctx context.Context, alerts ...*Alert) (bool, error) {
	if len(alerts) == 0 {
		return false, nil
	}
	payload := make([]postableAlert, 0, len(alerts))
	for _, a := range alerts {
		payload = append(payload, postableAlert{
			Labels:       a.Labels,
			Annotations:  a.Annotations,
			StartsAt:     a.StartsAt.UTC(),
			EndsAt:       a.EndsAt.UTC(),
			GeneratorURL: a.GeneratorURL,
		})
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return false, fmt.Errorf("encode %d alert(s): %w", len(alerts), err)
	}
	retry, err := postJSON(ctx, am.client, am.endpoint, body)
	if err != nil {
		return retry, fmt.Errorf("post %d alert(s) to alertmanager: %w", len(alerts), err)
	}
	return false, nil
}
