package alerts

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"
)

// BenchmarkSlackMessage measures rendering one alert as the Slack message emergentd posts:
// Block Kit blocks and fallback text, encoded as the webhook's JSON body.
func BenchmarkSlackMessage(b *testing.B) {
	for _, tc := range []struct {
		name string
		end  time.Time
	}{{"firing", time.Time{}}, {"resolved", t0.Add(47 * time.Minute)}} {
		b.Run(tc.name, func(b *testing.B) {
			a := testAlert("checkout", t0, tc.end)
			size := 0
			b.ReportAllocs()
			for b.Loop() {
				text, blocks := slackMessage(a)
				body, err := json.Marshal(&slack.WebhookMessage{Text: text, Blocks: &slack.Blocks{BlockSet: blocks}})
				if err != nil {
					b.Fatal(err)
				}
				size = len(body)
			}
			b.ReportMetric(float64(size), "body-bytes")
		})
	}
}

// nopTransport answers every request with 200 and an empty body, after reading the request,
// so Notify's whole path runs without a network.
type nopTransport struct{}

func (nopTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Header: http.Header{},
		Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
}

// benchAlerts returns n firing alerts of distinct services, as one evaluation hands over when
// a rule fires across a fleet.
func benchAlerts(n int) []*Alert {
	out := make([]*Alert, n)
	for i := range out {
		out[i] = testAlert(fmt.Sprintf("svc-%05d", i), t0, time.Time{})
	}
	return out
}

// BenchmarkAlertmanagerPayload measures Notify to Alertmanager API v2 — building and encoding
// the postable alerts and the request — for a batch of alerts, over an in-memory transport.
func BenchmarkAlertmanagerPayload(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("alerts=%d", n), func(b *testing.B) {
			am, err := NewAlertmanager("http://alertmanager.invalid:9093", &http.Client{Transport: nopTransport{}})
			if err != nil {
				b.Fatal(err)
			}
			batch := benchAlerts(n)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := am.Notify(ctx, batch...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/alert")
		})
	}
}

// BenchmarkWebhookPayload measures building and encoding the Alertmanager-format webhook body
// (version 4) for a batch of alerts.
func BenchmarkWebhookPayload(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("alerts=%d", n), func(b *testing.B) {
			batch := benchAlerts(n)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := json.Marshal(webhookPayload("ticketing", batch)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/alert")
		})
	}
}
