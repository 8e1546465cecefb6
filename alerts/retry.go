package alerts

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Default backoff of the Retrier. The base is short so that a blip costs half a second; the
// cap keeps a receiver that is down for an hour probed twice a minute, not once an hour.
const (
	DefaultRetryBase = 500 * time.Millisecond
	DefaultRetryMax  = 30 * time.Second
)

// Retrier retries a delivery with exponential backoff and full jitter, the one retry policy
// every receiver shares. Its zero value uses the defaults and real time.
type Retrier struct {
	// Base is the first backoff ceiling; it doubles after every failed attempt.
	Base time.Duration
	// Max caps the backoff ceiling (not a Retry-After, which is always honoured).
	Max time.Duration
	// Sleep waits for d or until ctx is done, returning ctx's error then. Tests replace it to
	// run without waiting.
	Sleep func(ctx context.Context, d time.Duration) error
	// Rand returns a number in [0, 1) to pick the jittered wait; nil uses math/rand.
	Rand func() float64
}

// Do calls attempt until it succeeds, returns an error not worth retrying, or ctx is done.
// Between attempts it waits a random time in [0, min(Max, Base·2ⁿ)) (full jitter, so that
// replicas and queues that failed together do not retry together), or at least the
// receiver's Retry-After when the error carries one.
func (r Retrier) Do(ctx context.Context, attempt func(ctx context.Context) (retry bool, err error)) error {
	for n := 0; ; n++ {
		retry, err := attempt(ctx)
		if err == nil {
			return nil
		}
		if !retry {
			return err
		}
		wait := r.backoff(n)
		if after, ok := RetryAfter(err); ok && after > wait {
			wait = after
		}
		// ctx is checked after the wait as well: a wait that ends as ctx is done (a zero wait
		// races the cancellation) must not start another attempt.
		serr := r.sleep(ctx, wait)
		if serr == nil {
			serr = ctx.Err()
		}
		if serr != nil {
			return fmt.Errorf("gave up after %d attempts (%w): %w", n+1, serr, err)
		}
	}
}

// backoff is the jittered wait after the nth failed attempt (n from 0).
func (r Retrier) backoff(n int) time.Duration {
	base, maxWait := r.Base, r.Max
	if base <= 0 {
		base = DefaultRetryBase
	}
	if maxWait <= 0 {
		maxWait = DefaultRetryMax
	}
	ceiling := base
	for i := 0; i < n && ceiling < maxWait; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, maxWait)
	random := rand.Float64
	if r.Rand != nil {
		random = r.Rand
	}
	return time.Duration(random() * float64(ceiling))
}

func (r Retrier) sleep(ctx context.Context, d time.Duration) error {
	if r.Sleep != nil {
		return r.Sleep(ctx, d)
	}
	return sleepContext(ctx, d)
}

func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// retryAfterError is a retryable error for which the receiver said how long to wait
// (HTTP 429 or 503 with Retry-After, Slack's rate limits).
type retryAfterError struct {
	after time.Duration
	err   error
}

func (e *retryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", e.err, e.after)
}

func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter reports how long the receiver asked to wait before the next attempt, if it did.
func RetryAfter(err error) (time.Duration, bool) {
	var ra *retryAfterError
	if errors.As(err, &ra) {
		return ra.after, true
	}
	return 0, false
}
