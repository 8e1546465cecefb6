package alerts

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	commoncfg "github.com/prometheus/common/config"

	"github.com/emergent-sh/emergent/config"
)

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://hooks.slack.com/services/T000/B000/XXXXXXXX", "https://hooks.slack.com/xxxxx"},
		{"http://admin:pa55@am:9093/api?token=x", "http://xxxxx@am:9093/xxxxx?xxxxx"},
		{"http://am:9093", "http://am:9093"},
		{"http://am:9093/", "http://am:9093"},
		{"not a URL", "<redacted>"},
	}
	for _, tc := range tests {
		if got := redactURL(tc.in); got != tc.want {
			t.Errorf("redactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// Webhook URLs and tokens are secrets: no receiver's error may contain them, whether the
// receiver is unreachable or answers with an error that echoes the request.
func TestSecretsNeverInErrors(t *testing.T) {
	const (
		pathSecret  = "/hooks/T0001/B0002/s3cr3tT0k3nV4lu3"
		querySecret = "q5ecretQu3ry"
		password    = "pa55w0rdX"
		token       = "xoxb-s3cr3t-b0t-t0k3n"
	)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unreachable := "http://" + l.Addr().String()
	l.Close()
	_, echo := newRecorder(t, func(_ int, w http.ResponseWriter, r *http.Request) bool {
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, "no route for "+r.URL.String()+" "+r.Header.Get("Authorization"))
		return false
	})
	withSecrets := func(base string) string {
		return base + pathSecret + "?token=" + querySecret
	}
	withPassword := func(base string) string {
		return strings.Replace(base, "http://", "http://admin:"+password+"@", 1)
	}

	tests := []struct {
		name     string
		notifier func() (Notifier, error)
	}{
		{"webhook unreachable", func() (Notifier, error) {
			return NewWebhook(config.Receiver{Name: "w", URL: commoncfg.Secret(withSecrets(unreachable))}, nil, nil)
		}},
		{"webhook echoing its URL", func() (Notifier, error) {
			return NewWebhook(config.Receiver{Name: "w", URL: commoncfg.Secret(withSecrets(echo.URL))}, nil, nil)
		}},
		{"slack webhook unreachable", func() (Notifier, error) {
			return NewSlack(config.Receiver{Name: "s", WebhookURL: commoncfg.Secret(withSecrets(unreachable))}, nil, nil)
		}},
		{"slack webhook answering 404", func() (Notifier, error) {
			return NewSlack(config.Receiver{Name: "s", WebhookURL: commoncfg.Secret(withSecrets(echo.URL))}, nil, nil)
		}},
		{"slack bot unreachable", func() (Notifier, error) {
			return NewSlack(config.Receiver{Name: "s", Token: token, Channel: "#c", APIURL: unreachable + "/api/"}, nil, nil)
		}},
		{"slack bot answering 404", func() (Notifier, error) {
			return NewSlack(config.Receiver{Name: "s", Token: token, Channel: "#c", APIURL: echo.URL + "/api/"}, nil, nil)
		}},
		{"alertmanager unreachable", func() (Notifier, error) {
			return NewAlertmanager(withPassword(unreachable), nil)
		}},
		{"alertmanager echoing its URL", func() (Notifier, error) {
			return NewAlertmanager(withPassword(echo.URL), nil)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := tc.notifier()
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err = n.Notify(ctx, testAlert("checkout", t0, time.Time{}))
			if err == nil {
				t.Fatal("Notify succeeded, want an error")
			}
			msg := err.Error()
			t.Log(msg)
			for _, secret := range []string{pathSecret, "s3cr3tT0k3nV4lu3", querySecret, password, token} {
				if strings.Contains(msg, secret) {
					t.Errorf("error %q contains the secret %q", msg, secret)
				}
			}
			if !strings.Contains(msg, "127.0.0.1") && !strings.Contains(msg, "404") {
				t.Errorf("error %q says neither where nor why delivery failed", msg)
			}
		})
	}
}
