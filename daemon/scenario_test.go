package daemon

import (
	"bytes"
	"math"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/internal/synth"
)

// incidentHistory writes three hours of 15 s samples ending at end, for four services:
//   - checkout: fragmented token cache from end-40m: four instances mint about one token per
//     request (the APCu incident);
//   - search: healthy shared cache, inbound surging 5x from end-30m (a marketing surge);
//   - media: Redis flush on every upload from end-20m, one upload a minute (the flush storm);
//   - billing: healthy, with one maintenance FLUSHDB at end-60m.
func incidentHistory(t testing.TB, end time.Time) []byte {
	t.Helper()
	w := &synth.Writer{Start: end.Add(-3 * time.Hour), End: end, Step: 15 * time.Second}
	svc := func(s string, extra ...string) map[string]string {
		l := map[string]string{"service": s}
		for i := 0; i+1 < len(extra); i += 2 {
			l[extra[i]] = extra[i+1]
		}
		return l
	}
	fragmentedFrom := end.Add(-40 * time.Minute)
	surgeFrom := end.Add(-30 * time.Minute)
	stormFrom := end.Add(-20 * time.Minute)

	// checkout: 4 req/s; before the bug one shared token (1 mint per 10 min).
	w.Counter("http_requests_total", svc("checkout"), synth.Const(4))
	for i := range 4 {
		inst := svc("checkout", "instance", "php-"+string(rune('a'+i)))
		w.Counter("token_mint_count", inst, synth.Between(fragmentedFrom, end.Add(time.Hour),
			synth.Const(0.95), synth.Const(1.0/600/4)))
	}
	w.Counter("token_cache_misses", svc("checkout"), synth.Between(fragmentedFrom, end.Add(time.Hour), synth.Const(3.8), synth.Const(0.002)))

	// search: 10 req/s, 5x surge; one mint per 10 minutes throughout.
	w.Counter("http_requests_total", svc("search"), synth.Between(surgeFrom, end.Add(time.Hour), synth.Const(50), synth.Const(10)))
	w.Counter("token_mint_count", svc("search", "instance", "php-a"), synth.Const(1.0/600))
	w.Counter("token_cache_misses", svc("search"), synth.Const(1.0/600))

	// media: uploads once a minute; from stormFrom every upload flushes and rebuilds 3000 keys.
	w.Counter("http_requests_total", svc("media"), synth.Const(2))
	w.Counter("uploads_total", svc("media"), synth.Const(1.0/60))
	storm := func(t time.Time) bool { return !t.Before(stormFrom) }
	flushes := make([]float64, w.Steps())
	keys := make([]float64, w.Steps())
	n := 0.0
	for i := range flushes {
		at := w.At(i)
		flushes[i] = math.NaN() // Redis lists flushdb only after its first call
		keys[i] = 3000
		if storm(at) {
			sinceStorm := at.Sub(stormFrom)
			n = math.Floor(sinceStorm.Minutes()) + 1
			flushes[i] = n
			if sinceStorm%time.Minute < 15*time.Second {
				keys[i] = 40 // sampled right after the flush, before the rebuild
			}
		}
	}
	w.Raw("redis_commands_total", svc("media", "cmd", "flushdb"), flushes)
	w.Gauge("redis_db_keys", svc("media", "db", "db0"), func(t time.Time) float64 { return keys[int(t.Sub(w.Start)/w.Step)] })
	w.Counter("redis_commands_total", svc("media", "cmd", "get"), synth.Between(stormFrom, end.Add(time.Hour), synth.Const(900), synth.Const(7)))

	// billing: one maintenance flush at end-60m.
	w.Counter("http_requests_total", svc("billing"), synth.Const(3))
	w.Counter("uploads_total", svc("billing"), synth.Const(1.0/60))
	w.Gauge("redis_commands_total", svc("billing", "cmd", "flushdb"), synth.Between(end.Add(-60*time.Minute), end.Add(time.Hour), synth.Const(1), synth.Const(math.NaN())))
	w.Gauge("redis_db_keys", svc("billing", "db", "db0"), synth.Between(end.Add(-60*time.Minute), end.Add(-59*time.Minute), synth.Const(0), synth.Const(2000)))

	var buf bytes.Buffer
	if err := w.WriteOpenMetrics(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
