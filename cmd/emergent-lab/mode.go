package main

import (
	"fmt"
	"strings"
)

// mode is how the lab's service behaves; it switches at runtime (POST /mode?m=...).
type mode string

// Modes, each a healthy or broken variant of the seeds' incidents.
const (
	// modeFragmented caches the integration token in each instance's own memory (APCu per
	// PHP-FPM master): instances mint, revoke each other's token and mint again.
	modeFragmented mode = "fragmented"
	// modeShared keeps the token in Redis, minted under a lock, cached for expiry − margin.
	modeShared mode = "shared"
	// modeFlushStorm is shared tokens with a cache library that flushes Redis and rebuilds
	// every key on each upload.
	modeFlushStorm mode = "flushstorm"
	// modeFlushFixed is shared tokens with uploads that invalidate only the key they change.
	modeFlushFixed mode = "flushfixed"
	// modeSurge is shared tokens with inbound traffic raised --surge.factor times for
	// --surge.for after the mode is entered: a marketing surge, not an anomaly.
	modeSurge mode = "surge"
)

var modes = []mode{modeFragmented, modeShared, modeFlushStorm, modeFlushFixed, modeSurge}

func parseMode(s string) (mode, error) {
	for _, m := range modes {
		if string(m) == s {
			return m, nil
		}
	}
	names := make([]string, len(modes))
	for i, m := range modes {
		names[i] = string(m)
	}
	return "", fmt.Errorf("unknown mode %q (want one of %s)", s, strings.Join(names, ", "))
}

// tokensInRedis reports whether instances share the token through Redis.
func (m mode) tokensInRedis() bool { return m != modeFragmented }

// flushOnUpload reports whether an upload flushes the whole cache and rebuilds it.
func (m mode) flushOnUpload() bool { return m == modeFlushStorm }
