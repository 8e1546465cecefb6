package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// providerClient calls the integration's provider for one client ID.
type providerClient struct {
	base     string // e.g. http://127.0.0.1:9400/provider
	clientID string
	http     *http.Client
}

// mint asks for a new token (revoking the client's previous one) and returns it with its
// lifetime.
func (p *providerClient) mint(ctx context.Context) (string, time.Duration, error) {
	form := url.Values{"client_id": {p.clientID}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := p.http.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("mint: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("mint: provider answered %s", resp.Status)
	}
	var tr tokenResponse
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
		return "", 0, fmt.Errorf("mint: %w", err)
	}
	if tr.AccessToken == "" || tr.ExpiresIn <= 0 {
		return "", 0, errors.New("mint: provider returned no token")
	}
	return tr.AccessToken, time.Duration(tr.ExpiresIn) * time.Second, nil
}

// use calls the protected resource with tok and returns the HTTP status.
func (p *providerClient) use(ctx context.Context, tok string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/resource", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := p.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("integration call: %w", err)
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// tokenCounters are the token metrics the seed added: hits, misses and mints.
type tokenCounters struct {
	hits, misses, mints prometheus.Counter
}

// mintFunc mints a token and returns it with its lifetime.
type mintFunc func(ctx context.Context) (string, time.Duration, error)

// tokenSource is where an instance gets the integration token from.
type tokenSource interface {
	// get returns a cached token, or mints one on a miss.
	get(ctx context.Context) (string, error)
	// invalidate forgets tok after the provider rejected it (revoked or expired), unless the
	// cache holds a newer token already.
	invalidate(ctx context.Context, tok string) error
}

// cacheTTL is how long a token with lifetime expiry may be cached: expiry − safety margin, so
// a cached token is never presented expired.
func cacheTTL(expiry, margin time.Duration) time.Duration {
	if ttl := expiry - margin; ttl > 0 {
		return ttl
	}
	return expiry / 2
}

// memoryTokens is the per-instance cache of the seed's bug: APCu lives in one PHP-FPM master,
// so each instance has its own token, and with a provider that allows one active token, each
// instance's mint revokes the others'.
type memoryTokens struct {
	mint   mintFunc
	margin time.Duration
	count  tokenCounters

	mu         sync.Mutex // the master's workers share APCu; one of them mints at a time
	token      string
	validUntil time.Time
}

func (c *memoryTokens) get(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token != "" && time.Now().Before(c.validUntil) {
		c.count.hits.Inc()
		return c.token, nil
	}
	c.count.misses.Inc()
	tok, expiry, err := c.mint(ctx)
	if err != nil {
		return "", err
	}
	c.token, c.validUntil = tok, time.Now().Add(cacheTTL(expiry, c.margin))
	return tok, nil
}

func (c *memoryTokens) invalidate(_ context.Context, tok string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token == tok {
		c.token = ""
	}
	return nil
}

// Shared-cache lock timings: the lock outlives any mint (one HTTP call), and a waiter gives up
// well within a request's budget.
const (
	lockTTL  = 5 * time.Second
	lockWait = 3 * time.Second
	lockPoll = 25 * time.Millisecond
)

// deleteIfEquals deletes KEYS[1] only if it still holds ARGV[1]: releasing a lock we own, or
// dropping a rejected token without dropping the newer one another instance just stored.
var deleteIfEquals = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// redisTokens is the seed's fix: one token for every instance, in Redis, minted by whoever
// holds the lock (SET NX PX) after re-checking the cache, cached for expiry − safety margin.
type redisTokens struct {
	rdb          *redis.Client
	key, lockKey string
	owner        string // lock value: who holds it
	mint         mintFunc
	margin       time.Duration
	count        tokenCounters
}

func (c *redisTokens) get(ctx context.Context) (string, error) {
	tok, err := c.rdb.Get(ctx, c.key).Result()
	switch {
	case err == nil:
		c.count.hits.Inc()
		return tok, nil
	case !errors.Is(err, redis.Nil):
		return "", fmt.Errorf("token cache: %w", err)
	}
	c.count.misses.Inc()
	deadline := time.Now().Add(lockWait)
	for {
		locked, err := c.rdb.SetNX(ctx, c.lockKey, c.owner, lockTTL).Result()
		if err != nil {
			return "", fmt.Errorf("token lock: %w", err)
		}
		if locked {
			return c.refresh(ctx)
		}
		// Another instance is minting: wait for its token rather than mint a second one.
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(lockPoll):
		}
		tok, err := c.rdb.Get(ctx, c.key).Result()
		switch {
		case err == nil:
			return tok, nil
		case !errors.Is(err, redis.Nil):
			return "", fmt.Errorf("token cache: %w", err)
		case time.Now().After(deadline):
			return "", errors.New("token cache: another instance held the mint lock too long")
		}
	}
}

// refresh mints under the lock, unless the instance that held the lock before us already did.
func (c *redisTokens) refresh(ctx context.Context) (string, error) {
	defer func() {
		// Release with a fresh context: a cancelled request must not leave the lock behind
		// for its whole TTL.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = deleteIfEquals.Run(rctx, c.rdb, []string{c.lockKey}, c.owner).Err()
	}()
	if tok, err := c.rdb.Get(ctx, c.key).Result(); err == nil {
		return tok, nil
	}
	tok, expiry, err := c.mint(ctx)
	if err != nil {
		return "", err
	}
	if err := c.rdb.Set(ctx, c.key, tok, cacheTTL(expiry, c.margin)).Err(); err != nil {
		return "", fmt.Errorf("token cache: %w", err)
	}
	return tok, nil
}

func (c *redisTokens) invalidate(ctx context.Context, tok string) error {
	return deleteIfEquals.Run(ctx, c.rdb, []string{c.key}, tok).Err()
}
