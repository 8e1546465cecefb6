// Package browser starts a headless Chromium (Debian's `chromium`) for tests that look at
// emergentd's pages as a person would, through chromedp. A missing browser fails the test:
// scripts/test.sh installs it.
package browser

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// timeout bounds one test's browsing: a page here renders in milliseconds, Chromium starts in
// seconds on a loaded machine.
const timeout = 2 * time.Minute

// New starts a headless Chromium for t, stopped when t ends, and returns the context to run
// chromedp actions in.
func New(t testing.TB) context.Context {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("browser: %v: install Debian's chromium (scripts/test.sh does)", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.NoSandbox, // tests may run as root, where Chromium's sandbox refuses to start
		// Chromium puts its singleton socket in an org.chromium.Chromium.* directory under
		// TMPDIR and never removes it: one left in /tmp per browser started, run after run.
		chromedp.Env("TMPDIR="+t.TempDir()),
	)
	ctx, cancelTimeout := context.WithTimeout(context.Background(), timeout)
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	browser, cancelBrowser := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		cancelBrowser() // closes the browser it started, by its process
		cancelAlloc()
		cancelTimeout()
	})
	if err := chromedp.Do(browser, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("browser: starting %s: %v", bin, err)
	}
	return browser
}

// Screenshot writes a full-page PNG of the current page to dir/name.
func Screenshot(t testing.TB, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Text returns the text of the first element sel matches, failing t if there is none.
func Text(t testing.TB, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(sel))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}
