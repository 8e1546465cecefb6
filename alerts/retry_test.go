package alerts

import (
	"context"
	"errors"
	"net/http/httptest"
	"slices"
	"testing"
	"time"
)

func TestRetrierBackoff(t *testing.T) {
	r := Retrier{Rand: func() float64 { return 1 }} // the ceiling itself
	tests := []struct {
		attempt int
		want    time.Duration
	}{
		{0, 500 * time.Millisecond},
		{1, time.Second},
		{2, 2 * time.Second},
		{5, 16 * time.Second},
		{6, 30 * time.Second},
		{60, 30 * time.Second},
	}
	for _, tc := range tests {
		if got := r.backoff(tc.attempt); got != tc.want {
			t.Errorf("backoff(%d) = %s, want %s", tc.attempt, got, tc.want)
		}
	}
	if got := (Retrier{Rand: func() float64 { return 0.5 }}).backoff(1); got != 500*time.Millisecond {
		t.Errorf("jittered backoff(1) = %s, want half the 1s ceiling", got)
	}
}

func TestRetrierDo(t *testing.T) {
	errDown := errors.New("down")
	errBad := errors.New("bad request")
	type result struct {
		retry bool
		err   error
	}
	tests := []struct {
		name      string
		results   []result // per attempt; the last repeats
		cancelled bool
		wantErr   error
		wantCalls int
		wantWaits []time.Duration
	}{
		{
			name:      "succeeds after retryable failures",
			results:   []result{{true, errDown}, {true, errDown}, {false, nil}},
			wantCalls: 3,
			wantWaits: []time.Duration{500 * time.Millisecond, time.Second},
		},
		{
			name:      "stops on an error not worth retrying",
			results:   []result{{true, errDown}, {false, errBad}},
			wantErr:   errBad,
			wantCalls: 2,
			wantWaits: []time.Duration{500 * time.Millisecond},
		},
		{
			name:      "waits at least Retry-After",
			results:   []result{{true, &retryAfterError{after: 7 * time.Second, err: errDown}}, {false, nil}},
			wantCalls: 2,
			wantWaits: []time.Duration{7 * time.Second},
		},
		{
			name:      "stops when the context is done",
			results:   []result{{true, errDown}},
			cancelled: true,
			wantErr:   context.Canceled,
			wantCalls: 1,
			wantWaits: []time.Duration{500 * time.Millisecond},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var waits []time.Duration
			r := Retrier{
				Rand: func() float64 { return 1 },
				Sleep: func(ctx context.Context, d time.Duration) error {
					waits = append(waits, d)
					if tc.cancelled {
						cancel()
					}
					return ctx.Err()
				},
			}
			calls := 0
			err := r.Do(ctx, func(context.Context) (bool, error) {
				res := tc.results[min(calls, len(tc.results)-1)]
				calls++
				return res.retry, res.err
			})
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Errorf("Do = %v, want %v", err, tc.wantErr)
			}
			if tc.cancelled && !errors.Is(err, errDown) {
				t.Errorf("Do = %v, want it to keep the last delivery error", err)
			}
			if calls != tc.wantCalls || !slices.Equal(waits, tc.wantWaits) {
				t.Errorf("%d calls, waits %v; want %d, %v", calls, waits, tc.wantCalls, tc.wantWaits)
			}
		})
	}
}

// A wait that ends just as the context is cancelled (a zero wait races the cancellation)
// starts no further attempt.
func TestRetrierDoStopsWhenCancelledDuringAttempt(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errDown := errors.New("down")
	r := Retrier{Sleep: func(context.Context, time.Duration) error { return nil }}
	calls := 0
	err := r.Do(ctx, func(context.Context) (bool, error) {
		calls++
		if calls > 1 {
			return false, errors.New("attempted after the context was cancelled")
		}
		cancel() // Stop gives up while the attempt is in flight
		return true, errDown
	})
	if calls != 1 || !errors.Is(err, context.Canceled) || !errors.Is(err, errDown) {
		t.Errorf("Do = %v after %d attempts; want the cancellation and the last error after 1", err, calls)
	}
}

func TestCheckResponse(t *testing.T) {
	now := time.Date(2025, 3, 14, 9, 30, 0, 0, time.UTC)
	tests := []struct {
		name       string
		status     int
		retryAfter string
		wantErr    bool
		wantRetry  bool
		wantAfter  time.Duration
	}{
		{"ok", 200, "", false, false, 0},
		{"accepted", 202, "", false, false, 0},
		{"bad request", 400, "", true, false, 0},
		{"unauthorized", 401, "", true, false, 0},
		{"too many requests, seconds", 429, "3", true, true, 3 * time.Second},
		{"too many requests, date", 429, "Fri, 14 Mar 2025 09:30:10 GMT", true, true, 10 * time.Second},
		{"too many requests, no header", 429, "", true, true, 0},
		{"server error", 500, "", true, true, 0},
		{"unavailable", 503, "", true, true, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			if tc.retryAfter != "" {
				w.Header().Set("Retry-After", tc.retryAfter)
			}
			w.WriteHeader(tc.status)
			retry, err := checkResponse(w.Result(), now)
			if (err != nil) != tc.wantErr || retry != tc.wantRetry {
				t.Fatalf("checkResponse = %v, %v; want error %v, retry %v", retry, err, tc.wantErr, tc.wantRetry)
			}
			after, _ := RetryAfter(err)
			if after != tc.wantAfter {
				t.Errorf("RetryAfter = %s, want %s", after, tc.wantAfter)
			}
		})
	}
}
