package synth

import (
	"bytes"
	"math"
	"time"
)

// IncidentHistory writes three hours of 15 s samples ending at end, for four services:
//   - checkout: fragmented token cache from end-40m: four instances mint about one token per
//     request (the APCu incident);
//   - search: healthy shared cache, inbound surging 5x from end-30m (a marketing surge);
//   - media: Redis flush on every upload from end-20m, one upload a minute (the flush storm);
//   - billing: healthy, with one maintenance FLUSHDB at end-60m.
func IncidentHistory(end time.Time) []byte {
	w := &Writer{Start: end.Add(-3 * time.Hour), End: end, Step: 15 * time.Second}
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
	w.Counter("http_requests_total", svc("checkout"), Const(4))
	for i := range 4 {
		inst := svc("checkout", "instance", "php-"+string(rune('a'+i)))
		w.Counter("token_mint_count", inst, Between(fragmentedFrom, end.Add(time.Hour),
			Const(0.95), Const(1.0/600/4)))
	}
	w.Counter("token_cache_misses", svc("checkout"), Between(fragmentedFrom, end.Add(time.Hour), Const(3.8), Const(0.002)))

	// search: 10 req/s, 5x surge; one mint per 10 minutes throughout.
	w.Counter("http_requests_total", svc("search"), Between(surgeFrom, end.Add(time.Hour), Const(50), Const(10)))
	w.Counter("token_mint_count", svc("search", "instance", "php-a"), Const(1.0/600))
	w.Counter("token_cache_misses", svc("search"), Const(1.0/600))

	// media: uploads once a minute; from stormFrom every upload flushes and rebuilds 3000 keys.
	w.Counter("http_requests_total", svc("media"), Const(2))
	w.Counter("uploads_total", svc("media"), Const(1.0/60))
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
	w.Counter("redis_commands_total", svc("media", "cmd", "get"), Between(stormFrom, end.Add(time.Hour), Const(900), Const(7)))

	// billing: one maintenance flush at end-60m.
	w.Counter("http_requests_total", svc("billing"), Const(3))
	w.Counter("uploads_total", svc("billing"), Const(1.0/60))
	w.Gauge("redis_commands_total", svc("billing", "cmd", "flushdb"), Between(end.Add(-60*time.Minute), end.Add(time.Hour), Const(1), Const(math.NaN())))
	w.Gauge("redis_db_keys", svc("billing", "db", "db0"), Between(end.Add(-60*time.Minute), end.Add(-59*time.Minute), Const(0), Const(2000)))

	var buf bytes.Buffer
	_ = w.WriteOpenMetrics(&buf) // a bytes.Buffer does not fail
	return buf.Bytes()
}

// FixedHistory writes four hours for one service, orders, whose token cache was fragmented
// from end-110m until a fix at end-70m. The fix shows no change (no deploy): its episode
// resolves once its hour's average agrees, at most an hour later (a lull, README), by end-10m.
func FixedHistory(end time.Time) []byte {
	w := &Writer{Start: end.Add(-4 * time.Hour), End: end, Step: 15 * time.Second}
	bug := func(in, out float64) func(time.Time) float64 {
		return Between(end.Add(-110*time.Minute), end.Add(-70*time.Minute), Const(in), Const(out))
	}
	w.Counter("http_requests_total", map[string]string{"service": "orders"}, Const(4))
	for _, inst := range []string{"php-a", "php-b"} {
		w.Counter("token_mint_count", map[string]string{"service": "orders", "instance": inst}, bug(1.9, 1.0/1200))
	}
	w.Counter("token_cache_misses", map[string]string{"service": "orders"}, bug(3.8, 0.002))
	var buf bytes.Buffer
	_ = w.WriteOpenMetrics(&buf) // a bytes.Buffer does not fail
	return buf.Bytes()
}
