package daemon

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emergent-sh/emergent/alerts"
	"github.com/emergent-sh/emergent/detector"
	"github.com/emergent-sh/emergent/statuspage"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// gatherer collects the process-wide metrics and those of the parts in use now.
func (d *Daemon) gatherer() prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		g := d.current()
		return prometheus.Gatherers{d.reg, g.engReg, g.mgrReg}.Gather()
	})
}

// Handler serves the daemon's endpoints; exported so tests can use it without a listener.
func (d *Daemon) Handler() http.Handler { return d.handler() }

func (d *Daemon) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(d.gatherer(), promhttp.HandlerOpts{}))
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "emergentd is Healthy.")
	})
	mux.HandleFunc("/-/ready", d.ready)
	mux.HandleFunc("/-/reload", d.reload)
	mux.HandleFunc("/api/v1/status/config", d.serveConfig)
	mux.HandleFunc("/api/v1/episodes", d.serveEpisodes)
	statuspage.New(func() statuspage.Source { return d.current().engine }, d.prefix(), d.opts.Now).
		WithDelivered(func(rule string, group map[string]string, start time.Time) []alerts.Delivered {
			return d.current().manager.Delivered(rule, group, start)
		}).Register(mux)
	var h http.Handler = mux
	if prefix := d.prefix(); prefix != "" { // behind a proxy that forwards /prefix/... as is
		outer := http.NewServeMux()
		outer.Handle(prefix+"/", http.StripPrefix(prefix, mux))
		outer.Handle("/-/", mux) // probes stay at the root, as Prometheus keeps them
		h = outer
	}
	return http.MaxBytesHandler(h, 1<<20)
}

// prefix is the path of --web.external-url without its trailing slash: where every page and
// link lives when emergentd runs behind a reverse proxy.
func (d *Daemon) prefix() string {
	if d.opts.ExternalURL == "" {
		return ""
	}
	u, err := url.Parse(d.opts.ExternalURL)
	if err != nil {
		return ""
	}
	return strings.TrimRight(u.Path, "/")
}

// ready is 200 once history is loaded and at least one rule can see its data. A rule whose
// queries return no series does not make the daemon unready (the data may come later, and a
// probe would restart a healthy process), but the answer names it.
func (d *Daemon) ready(w http.ResponseWriter, _ *http.Request) {
	g := d.current()
	switch {
	case !g.engine.Bootstrapped():
		msg := "emergentd is not ready: loading history from Prometheus"
		if err := g.engine.HistoryError(); err != nil {
			msg += " (the last attempt failed, retrying: " + err.Error() + ")"
		}
		http.Error(w, msg, http.StatusServiceUnavailable)
	case len(g.cfg.Rules) > 0 && len(g.engine.Blind()) == len(g.cfg.Rules):
		http.Error(w, fmt.Sprintf("emergentd is not ready: every rule is blind (%v)", g.engine.Blind()), http.StatusServiceUnavailable)
	default:
		fmt.Fprintln(w, "emergentd is Ready.")
		empty := g.engine.WatchingNothing()
		for _, name := range slices.Sorted(maps.Keys(empty)) {
			fmt.Fprintf(w, "Rule %q watches nothing: no series from %s\n", name, strings.Join(quoteAll(empty[name]), ", "))
		}
	}
}

func quoteAll(qs []string) []string {
	out := make([]string, len(qs))
	for i, q := range qs {
		out[i] = strconv.Quote(q)
	}
	return out
}

func (d *Daemon) reload(w http.ResponseWriter, r *http.Request) {
	if !d.opts.EnableReload {
		http.Error(w, "reload over HTTP is disabled (--no-web.enable-reload)", http.StatusForbidden)
		return
	}
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		w.Header().Set("Allow", "POST, PUT")
		http.Error(w, "use POST to reload", http.StatusMethodNotAllowed)
		return
	}
	done := make(chan error, 1)
	select {
	case d.reloadRequest <- done:
	case <-r.Context().Done():
		return
	case <-time.After(30 * time.Second):
		http.Error(w, "reload: the daemon is busy, try again", http.StatusServiceUnavailable)
		return
	}
	if err := <-done; err != nil {
		http.Error(w, "failed to reload config: "+err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprintln(w, "configuration reloaded")
}

// serveConfig serves the running configuration as JSON; secrets marshal as <secret>.
func (d *Daemon) serveConfig(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, d.current().cfg)
}

type episodeJSON struct {
	Kind        string            `json:"kind"`
	Rule        string            `json:"rule"`
	Labels      map[string]string `json:"labels"`
	Start       time.Time         `json:"start"`
	Severity    string            `json:"severity"`
	Summary     string            `json:"summary"`
	Diagnosis   string            `json:"diagnosis"`
	Remedy      string            `json:"remedy"`
	Explanation any               `json:"numbers"`
}

func (d *Daemon) serveEpisodes(w http.ResponseWriter, _ *http.Request) {
	out := []episodeJSON{}
	for _, ep := range d.current().engine.Active() {
		out = append(out, episodeJSON{
			Kind: ep.Kind, Rule: ep.Rule, Labels: ep.Labels, Start: ep.Start, Severity: ep.Severity,
			Summary: ep.Summary, Diagnosis: ep.Explanation.Diagnosis, Remedy: ep.Explanation.Remedy,
			Explanation: numbers(ep.Explanation),
		})
	}
	writeJSON(w, out)
}

// numbers keeps the finite numbers of an explanation (JSON has no NaN).
func numbers(ex detector.Explanation) map[string]float64 {
	out := map[string]float64{}
	for k, v := range map[string]float64{
		"observed": ex.Observed, "expected": ex.Expected, "unexplained": ex.Unexplained,
		"unexplained_share": ex.UnexplainedShare, "inbound": ex.Inbound, "inbound_usual": ex.InboundUsual,
		"instances": float64(ex.Instances), "flushes": ex.Flushes, "collapses": ex.Collapses,
		"flushes_per_write": ex.FlushesPerWrite, "commands_per_request": ex.CommandsPerRequest,
		"usual_commands_per_request": ex.UsualCommandsPerRequest,
	} {
		if v == v && v-v == 0 { // finite
			out[k] = v
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}
