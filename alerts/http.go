package alerts

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const userAgent = "emergent"

// postJSON posts body to url and reports whether a failure is worth retrying. Its errors
// never contain url's secrets.
func postJSON(ctx context.Context, client *http.Client, url string, body []byte) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return false, redactError(err, url)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	resp, err := client.Do(req)
	if err != nil {
		// Network errors and timeouts: the receiver may be back at the next attempt.
		return true, redactError(err, url)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		_ = resp.Body.Close()
	}()
	retry, err = checkResponse(resp, time.Now())
	return retry, redactError(err, url)
}

// checkResponse is the single place that reads an HTTP answer: 2xx is delivered; 5xx and 429
// are worth retrying (with the server's Retry-After if it sent one); any other status means
// the request itself is wrong and resending it cannot help.
func checkResponse(resp *http.Response, now time.Time) (retry bool, err error) {
	if resp.StatusCode/100 == 2 {
		return false, nil
	}
	// A short excerpt of the body says why (Alertmanager explains 400s there).
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	err = fmt.Errorf("unexpected status %s", resp.Status)
	if s := strings.TrimSpace(string(excerpt)); s != "" {
		err = fmt.Errorf("unexpected status %s: %s", resp.Status, s)
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
		if after, ok := parseRetryAfter(resp.Header.Get("Retry-After"), now); ok {
			return true, &retryAfterError{after: after, err: err}
		}
		return true, err
	case resp.StatusCode >= 500:
		return true, err
	default:
		return false, err
	}
}

// parseRetryAfter reads a Retry-After header: delay seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
