package daemon

import (
	"flag"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/emergent-sh/emergent/internal/browser"
	"github.com/emergent-sh/emergent/internal/chart"
	"github.com/emergent-sh/emergent/internal/promtest"
	"github.com/emergent-sh/emergent/internal/synth"
)

var screenshots = flag.Bool("screenshots", false, "write the status page screenshots into docs/screenshots (for the README)")

// TestStatusPageInABrowser opens the daemon's pages in headless Chromium, against a real
// Prometheus holding the seeds' incidents: the overview lists every service with the state the
// detector holds, and the firing service's page shows its chart with the expected band and the
// shaded episode, next to the numbers that explain it.
func TestStatusPageInABrowser(t *testing.T) {
	end := time.Now().Truncate(15 * time.Second)
	prom := promtest.Start(t, promtest.Options{OpenMetrics: synth.IncidentHistory(end)})
	sink := httptest.NewServer(&recorder{})
	defer sink.Close()
	cfgPath := testConfig(t, t.TempDir(), prom.URL, sink.URL, sink.URL)
	addr := freeAddr(t)
	startDaemon(t, Options{ConfigFile: cfgPath, Web: listenFlags(addr), Now: func() time.Time { return end }})
	base := "http://" + addr
	waitFor(t, 60*time.Second, "ready", func() bool { code, _ := httpGet(base + "/-/ready"); return code == http.StatusOK })

	ctx := browser.New(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"), chromedp.WaitVisible(`#groups`)); err != nil {
		t.Fatal(err)
	}
	rows := browser.Text(t, ctx, `#groups tbody`)
	for _, want := range []string{"firing\ttoken-minting\tservice=\"checkout\"", "firing\tredis-flush-storm\tservice=\"media\"",
		"inactive\ttoken-minting\tservice=\"search\"", "inactive\tredis-flush-storm\tservice=\"billing\""} {
		if !strings.Contains(rows, want) {
			t.Errorf("overview lacks the row %q:\n%s", want, rows)
		}
	}
	if got := browser.Text(t, ctx, `[data-state="firing"]`); got != "2" {
		t.Errorf("overview counts %s firing groups, want 2", got)
	}
	if *screenshots {
		browser.Screenshot(t, ctx, filepath.Join("..", "docs", "screenshots"), "overview.png")
	}

	groupPage := base + "/group?rule=token-minting&l.service=checkout"
	waitFor(t, 30*time.Second, "the page delivered to both receivers", func() bool {
		_, body := httpGet(groupPage)
		return strings.Contains(body, "fired → <b>am</b>") && strings.Contains(body, "fired → <b>slack</b>")
	})
	if err := chromedp.Do(ctx,
		chromedp.Navigate(groupPage),
		chromedp.WaitVisible(`#chart svg`),
	); err != nil {
		t.Fatal(err)
	}
	svg, err := chromedp.Run(ctx, chromedp.TextContent(`#chart svg`)) // SVG has no innerText
	if err != nil {
		t.Fatal(err)
	}
	for _, legend := range []string{chart.LegendObserved, chart.LegendExpected, chart.LegendPages, chart.LegendEpisode} {
		if !strings.Contains(svg, legend) {
			t.Errorf("the chart has no %q in its legend: %q", legend, svg)
		}
	}
	episodes, err := chromedp.Run(ctx, chromedp.AttributeValue(`#chart`, "data-episodes"))
	if err != nil || episodes.Value != "1" {
		t.Errorf("chart's episodes: %q (%v), want 1 shaded", episodes.Value, err)
	}
	if href, err := chromedp.Run(ctx, chromedp.AttributeValue(`#graph`, "href")); err != nil || !strings.HasPrefix(href.Value, prom.URL+"/graph?") {
		t.Errorf("the group page links %q (%v), want a Prometheus graph", href.Value, err)
	}
	if tl := browser.Text(t, ctx, `#episodes`); !strings.Contains(tl, "fired → am") || !strings.Contains(tl, "fired → slack") {
		t.Errorf("the episode's timeline does not say where it was delivered:\n%s", tl)
	}
	if ex := browser.Text(t, ctx, `#explanation`); !strings.Contains(ex, "token mints") || !strings.Contains(ex, "unexplained") {
		t.Errorf("the group page does not explain the numbers:\n%s", ex)
	}
	if *screenshots {
		browser.Screenshot(t, ctx, filepath.Join("..", "docs", "screenshots"), "group.png")
	}
}

// TestStatusPageBehindAProxy: with --web.external-url, every page and link lives under its
// path, as a reverse proxy forwards it, while the probes stay at the root.
func TestStatusPageBehindAProxy(t *testing.T) {
	end := time.Now().Truncate(15 * time.Second)
	prom := promtest.Start(t, promtest.Options{OpenMetrics: synth.IncidentHistory(end)})
	am := &recorder{}
	sink := httptest.NewServer(am)
	defer sink.Close()
	cfgPath := testConfig(t, t.TempDir(), prom.URL, sink.URL, sink.URL)
	d, _ := startDaemon(t, Options{ConfigFile: cfgPath, ExternalURL: "https://ops.example.com/emergent/", Now: func() time.Time { return end }})
	web := httptest.NewServer(d.Handler())
	defer web.Close()
	waitFor(t, 60*time.Second, "ready", func() bool { code, _ := httpGet(web.URL + "/-/ready"); return code == http.StatusOK })

	code, body := httpGet(web.URL + "/emergent/")
	if code != http.StatusOK || !strings.Contains(body, `href="/emergent/group?`) || !strings.Contains(body, `href="/emergent/static/style.css"`) {
		t.Errorf("/emergent/: %d, links not under the prefix:\n%s", code, body)
	}
	if code, _ := httpGet(web.URL + "/emergent/static/style.css"); code != http.StatusOK {
		t.Errorf("/emergent/static/style.css: %d", code)
	}
	if code, _ := httpGet(web.URL + "/emergent/metrics"); code != http.StatusOK {
		t.Errorf("/emergent/metrics: %d", code)
	}
	if code, _ := httpGet(web.URL + "/"); code != http.StatusNotFound {
		t.Errorf("/ outside the prefix: %d, want 404", code)
	}
	// Alertmanager's alert links the group's page.
	want := "https://ops.example.com/emergent/group?l.service=checkout&rule=token-minting"
	waitFor(t, 30*time.Second, "the checkout alert at Alertmanager", func() bool {
		for _, b := range am.all() {
			if path, _, _ := strings.Cut(b, " "); path != "/api/v2/alerts" {
				continue
			}
			for _, a := range amAlerts(t, []string{b}) {
				if a.Labels["service"] == "checkout" && a.Annotations["emergentd_url"] == want {
					return true
				}
			}
		}
		return false
	})
}
