// Command emergent-lab is a small service that produces the seeds' incidents for real, against
// a real Redis, so that emergentd can be proven on live metrics: a per-instance token cache
// that makes instances mint and revoke each other's tokens (fragmented), its fix (shared), a
// cache library that flushes Redis on every upload (flushstorm), its fix (flushfixed), and a
// legitimate 5× surge (surge).
//
// `emergent-lab run` (the default) starts the integration's token provider (--token.max-active
// active tokens per client, one by default), N instance processes — each on its own port with
// its own /metrics, scraped as N targets, like PHP-FPM masters or pods — and a load generator
// that sends user requests and uploads round-robin across the active ones and probes each
// active instance's deep /healthz. Only the first --active of the N run an instance; the others
// answer 503, /metrics included, as empty pod slots, until the service scales out onto them
// (each then starts with empty caches, as a new pod). Load is bounded in rate and duration; the
// lab exits when the duration has passed. The mode and the number of active instances switch
// at runtime with POST /mode?m=shared&active=4.
//
// Label the scrape targets (the instances and the Redis exporter) with the same service label
// the rules group by; Prometheus's own instance label then names each instance.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/alecthomas/kingpin/v2"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	app := kingpin.New("emergent-lab", "Produces self-generated token traffic and Redis flush storms for real, to prove emergentd on live metrics.")
	app.HelpFlag.Short('h')
	names := make([]string, len(modes))
	for i, m := range modes {
		names[i] = string(m)
	}
	service := app.Flag("service", "Service name: the client ID at the token provider and the Redis key prefix. Label the scrape targets service=\"<this>\".").Default("lab").String()
	redisAddr := app.Flag("redis.addr", "Redis host:port the service caches in (db 0: cache, db 1: tokens).").Default("127.0.0.1:6379").String()
	modeName := app.Flag("mode", "Initial mode: "+strings.Join(names, ", ")+". Switch at runtime with POST /mode?m=<mode>.").Default(string(modeShared)).Enum(names...)
	keys := app.Flag("keys", "Items the service caches in Redis; a flush storm rebuilds all of them on every upload.").Default("2000").Int()
	margin := app.Flag("token.safety-margin", "Tokens are cached for expiry minus this margin, so a cached token is never presented expired.").Default("10s").Duration()
	logLevel := app.Flag("log.level", "Log level: debug, info, warn or error.").Default("info").Enum("debug", "info", "warn", "error")

	runCmd := app.Command("run", "Run the provider, the instances and the load (default).").Default()
	listen := runCmd.Flag("web.listen-address", "The lab's endpoint: token provider (/provider/...), POST /mode, /api/v1/instances, /-/ready, /metrics.").Default("127.0.0.1:9400").String()
	instances := runCmd.Flag("instances", "Instance processes to start on free ports of 127.0.0.1 (listed at /api/v1/instances).").Default("2").Int()
	instanceAddrs := runCmd.Flag("instance.listen-address", "Pin the instances' addresses instead (repeatable; the count overrides --instances).").Strings()
	var activeSet bool
	active := runCmd.Flag("active", "How many of the instances are active at start, the first ones (default: all). The others answer 503 until POST /mode?active=<n> scales out onto them.").IsSetByUser(&activeSet).Int()
	idle := runCmd.Flag("idle", "No user requests and no uploads: only the health-check prober.").Bool()
	rate := runCmd.Flag("rate", fmt.Sprintf("User requests per second, across all instances (at most %g).", maxRate)).Default("2").Float64()
	uploadRate := runCmd.Flag("upload-rate", fmt.Sprintf("Uploads per second, across all instances (at most %g).", maxUploadRate)).Default("0.2").Float64()
	duration := runCmd.Flag("duration", "Generate load this long, then exit (at most 24h).").Default("15m").Duration()
	healthInterval := runCmd.Flag("health-interval", "How often the prober calls each instance's /healthz (which uses the integration).").Default("3s").Duration()
	expiry := runCmd.Flag("token.expiry", "Lifetime of the provider's tokens.").Default("60s").Duration()
	maxActive := runCmd.Flag("token.max-active", fmt.Sprintf("Active tokens the provider allows per client (at most %d): a mint revokes the oldest beyond them.", maxTokensActive)).Default("1").Int()
	surgeFactor := runCmd.Flag("surge.factor", "Inbound multiplier in surge mode.").Default("5").Float64()
	surgeFor := runCmd.Flag("surge.for", "How long a surge lasts after surge mode is entered.").Default("3m").Duration()

	instCmd := app.Command("instance", "Run one instance (run starts these; not for direct use).").Hidden()
	instListen := instCmd.Flag("listen", "Listen here instead of on the socket inherited as file descriptor 3.").String()
	providerURL := instCmd.Flag("provider.url", "Base URL of the token provider.").Required().String()
	name := instCmd.Flag("name", "Instance name, for logs.").Default("instance").String()
	inactive := instCmd.Flag("inactive", "Start without an instance: answer 503 until POST /active?active=true.").Bool()

	cmd, err := app.Parse(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "emergent-lab: %v (try --help)\n", err)
		return 2
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(*logLevel))
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("service", *service)
	m, _ := parseMode(*modeName) // kingpin checked the name
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch cmd {
	case instCmd.FullCommand():
		var ln net.Listener
		if *instListen != "" {
			ln, err = net.Listen("tcp", *instListen)
		} else {
			f := os.NewFile(3, "listener")
			ln, err = net.FileListener(f)
			f.Close()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "emergent-lab instance: listener: %v\n", err)
			return 1
		}
		s := newSlot(instanceConfig{
			name: *name, service: *service, redisAddr: *redisAddr, providerURL: *providerURL,
			mode: m, keys: *keys, margin: *margin,
		}, !*inactive, logger.With("instance", *name))
		if err := s.serve(ctx, ln); err != nil {
			fmt.Fprintf(os.Stderr, "emergent-lab instance: %v\n", err)
			return 1
		}
		return 0
	default:
		if !activeSet { // all of them
			*active = *instances
			if len(*instanceAddrs) > 0 {
				*active = len(*instanceAddrs)
			}
		}
		cfg := labConfig{
			listen: *listen, service: *service, instances: *instances, instanceAddrs: *instanceAddrs,
			active: *active, tokenMaxActive: *maxActive,
			redisAddr: *redisAddr, mode: m, idle: *idle, rate: *rate, uploadRate: *uploadRate,
			duration: *duration, healthInterval: *healthInterval, keys: *keys, expiry: *expiry,
			margin: *margin, surgeFactor: *surgeFactor, surgeFor: *surgeFor, logLevel: *logLevel,
		}
		if err := cfg.validate(); err != nil {
			fmt.Fprintf(os.Stderr, "emergent-lab: %v\n", err)
			return 2
		}
		l, err := newLab(cfg, logger)
		if err != nil {
			fmt.Fprintf(os.Stderr, "emergent-lab: %v\n", err)
			return 1
		}
		if err := l.run(ctx); err != nil {
			logger.Error("lab failed", "err", err)
			return 1
		}
		return 0
	}
}
