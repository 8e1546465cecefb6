package statuspage_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/emergent-sh/emergent/internal/browser"
	"github.com/emergent-sh/emergent/statuspage"
)

// TestSearchAmongTenThousandGroups: in a real browser, the search box finds one service among
// 10 000 groups, and its link opens the group's page with its chart.
func TestSearchAmongTenThousandGroups(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Minute)
	f := fleet{n: 10000, now: now}
	mux := http.NewServeMux()
	statuspage.New(func() statuspage.Source { return f }, "", func() time.Time { return now }).Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	ctx := browser.New(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(`#groups`)); err != nil {
		t.Fatal(err)
	}
	if firing := browser.Text(t, ctx, `[data-state="firing"]`); firing != "100" {
		t.Errorf("overview counts %q firing groups, want 100", firing)
	}
	if err := chromedp.Do(ctx,
		chromedp.SetValue(`input[name="q"]`, "svc-04217"),
		chromedp.Submit(`input[name="q"]`),
		chromedp.WaitVisible(`#total`),
	); err != nil {
		t.Fatal(err)
	}
	total, rows := browser.Text(t, ctx, `#total`), browser.Text(t, ctx, `#groups tbody`)
	if !strings.HasPrefix(total, "1 groups matching") || !strings.Contains(rows, `service="svc-04217"`) {
		t.Errorf("search for svc-04217: %q, rows %q", total, rows)
	}
	if err := chromedp.Do(ctx, chromedp.Click(`#groups tbody a`), chromedp.WaitVisible(`#chart svg`)); err != nil {
		t.Fatal(err)
	}
	if caption := browser.Text(t, ctx, `#chart figcaption`); !strings.Contains(caption, "episodes shaded") {
		t.Errorf("group page caption %q", caption)
	}
}
