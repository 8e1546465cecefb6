// Package statuspage serves emergentd's own web UI: an overview of every rule and group by
// state (search and pages that stay fast at 10 000 groups), a page per group with its chart —
// inbound and work against the band emergentd expected, the episode shaded — and its current
// explanation, the episodes, and the configuration. Server-rendered templates with embedded
// assets: no JavaScript, no build step, nothing fetched from the internet.
package statuspage

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/emergent-sh/emergent/alerts"
	"github.com/emergent-sh/emergent/config"
	"github.com/emergent-sh/emergent/detector"
	"github.com/emergent-sh/emergent/engine"
	"github.com/emergent-sh/emergent/internal/chart"
	"github.com/emergent-sh/emergent/internal/format"
	"github.com/prometheus/common/version"
	"gonum.org/v1/plot/vg"
)

//go:embed templates/*.html assets/*
var files embed.FS

// Source is what the pages read: the engine in use now.
type Source interface {
	Config() *config.Config
	Bootstrapped() bool
	Blind() []string
	Groups() map[string][]detector.GroupStatus
	Active() []detector.Episode
	Resolved() []detector.Episode
	Chart(ctx context.Context, rule string, labels map[string]string, span time.Duration, now time.Time) (*engine.Chart, error)
	GraphURL(rule string, labels map[string]string) string
}

// pageSize is how many groups the overview lists per page: a screen or two, and a page of a
// 10 000-group fleet renders in milliseconds.
const pageSize = 50

// DeliveredFunc says what receivers accepted of an episode (the alerts manager in use now).
type DeliveredFunc func(rule string, group map[string]string, start time.Time) []alerts.Delivered

// Pages serves the UI under prefix (the path of --web.external-url, "" at the root).
type Pages struct {
	source    func() Source
	delivered DeliveredFunc
	prefix    string
	now       func() time.Time
	tmpl      *template.Template
}

// New returns the pages, reading from whatever source returns at each request (it changes on
// reload).
func New(source func() Source, prefix string, now func() time.Time) *Pages {
	p := &Pages{source: source, prefix: strings.TrimRight(prefix, "/"), now: now}
	p.tmpl = template.Must(template.New("").Funcs(template.FuncMap{
		"num":   format.Num,
		"pct":   func(x float64) string { return format.Num(100*x) + " %" },
		"when":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"group": detector.GroupString,
		"link":  p.groupLink,
		"path":  func(s string) string { return p.prefix + s },
		"delivered": func(ep detector.Episode) []alerts.Delivered {
			if p.delivered == nil {
				return nil
			}
			return p.delivered(ep.Rule, ep.Labels, ep.Start)
		},
	}).ParseFS(files, "templates/*.html"))
	return p
}

// WithDelivered makes the episodes' timelines list what each receiver accepted.
func (p *Pages) WithDelivered(f DeliveredFunc) *Pages {
	p.delivered = f
	return p
}

// Register adds the pages to mux.
func (p *Pages) Register(mux *http.ServeMux) {
	assets, _ := fs.Sub(files, "assets") // a constant path: cannot fail
	mux.Handle("/static/", http.StripPrefix("/static/", http.FileServer(http.FS(assets))))
	mux.HandleFunc("/{$}", p.overview)
	mux.HandleFunc("/group", p.group)
	mux.HandleFunc("/episodes", p.episodes)
	mux.HandleFunc("/status", p.status)
}

// groupRow is one group on the overview.
type groupRow struct {
	Rule, State string
	Labels      map[string]string
	Summary     string
}

func (p *Pages) overview(w http.ResponseWriter, r *http.Request) {
	src := p.source()
	query := strings.TrimSpace(r.URL.Query().Get("q"))
	stateFilter := r.URL.Query().Get("state")
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	page = max(page, 1)

	blind := src.Blind()
	counts := map[string]int{}
	var rows []groupRow
	groups := src.Groups()
	rules := make([]string, 0, len(groups))
	for name := range groups {
		rules = append(rules, name)
	}
	sort.Strings(rules)
	for _, rule := range rules {
		isBlind := slices.Contains(blind, rule)
		for _, g := range groups[rule] {
			state := g.State.String()
			if isBlind {
				state = "blind"
			}
			counts[state]++
			if stateFilter != "" && state != stateFilter {
				continue
			}
			if query != "" && !strings.Contains(strings.ToLower(rule+" "+detector.GroupString(g.Labels)), strings.ToLower(query)) {
				continue
			}
			rows = append(rows, groupRow{Rule: rule, State: state, Labels: g.Labels, Summary: g.Explanation.Summary})
		}
	}
	// Firing and pending first: the page is opened because something is wrong.
	rank := map[string]int{"firing": 0, "pending": 1, "blind": 2, "unknown": 3, "learning": 4, "inactive": 5}
	sort.SliceStable(rows, func(i, j int) bool { return rank[rows[i].State] < rank[rows[j].State] })
	total := len(rows)
	pages := max(1, (total+pageSize-1)/pageSize)
	page = min(page, pages)
	rows = rows[min((page-1)*pageSize, total):min(page*pageSize, total)]

	p.render(w, "overview.html", map[string]any{
		"Title": "Overview", "Ready": src.Bootstrapped(), "Rules": rules, "Blind": blind,
		"Counts": counts, "States": []string{"firing", "pending", "blind", "unknown", "learning", "inactive"},
		"Rows": rows, "Query": query, "State": stateFilter, "Page": page, "Pages": pages, "Total": total,
		"Prev": p.pageLink(query, stateFilter, page-1, pages), "Next": p.pageLink(query, stateFilter, page+1, pages),
	})
}

func (p *Pages) pageLink(query, state string, page, pages int) string {
	if page < 1 || page > pages {
		return ""
	}
	v := url.Values{"page": {strconv.Itoa(page)}}
	if query != "" {
		v.Set("q", query)
	}
	if state != "" {
		v.Set("state", state)
	}
	return p.prefix + "/?" + v.Encode()
}

// groupLink is the URL of a group's page under the pages' prefix.
func (p *Pages) groupLink(rule string, labels map[string]string) string {
	return p.prefix + GroupPath(rule, labels)
}

// GroupPath is the path of a group's page: the rule, then each group label as l.<name>.
// Alerts link to it under --web.external-url.
func GroupPath(rule string, labels map[string]string) string {
	v := url.Values{"rule": {rule}}
	for k, val := range labels {
		v.Set("l."+k, val)
	}
	return "/group?" + v.Encode()
}

func (p *Pages) group(w http.ResponseWriter, r *http.Request) {
	src := p.source()
	rule := r.URL.Query().Get("rule")
	labels := map[string]string{}
	for k, vs := range r.URL.Query() {
		if name, ok := strings.CutPrefix(k, "l."); ok && len(vs) > 0 {
			labels[name] = vs[0]
		}
	}
	var status *detector.GroupStatus
	for _, g := range src.Groups()[rule] {
		if detector.GroupString(g.Labels) == detector.GroupString(labels) {
			status = &g
			break
		}
	}
	if status == nil {
		http.Error(w, fmt.Sprintf("no group %s in rule %q", detector.GroupString(labels), rule), http.StatusNotFound)
		return
	}
	data := map[string]any{"Title": detector.GroupString(labels), "Rule": rule, "Status": status, "State": status.State.String(),
		"Graph": src.GraphURL(rule, labels)}
	ch, err := src.Chart(r.Context(), rule, labels, chart.Span, p.now())
	if err == nil {
		var svg []byte
		if svg, err = chart.Render(ch, "svg", 9*vg.Inch); err == nil {
			data["Chart"] = template.HTML(svg) // drawn by gonum/plot, which escapes its text
			data["Episodes"] = ch.Episodes
			data["Points"] = len(ch.Inbound)
		}
	}
	if err != nil {
		data["ChartError"] = err.Error()
	}
	p.render(w, "group.html", data)
}

func (p *Pages) episodes(w http.ResponseWriter, _ *http.Request) {
	src := p.source()
	p.render(w, "episodes.html", map[string]any{"Title": "Episodes", "Active": src.Active(), "Resolved": src.Resolved()})
}

func (p *Pages) status(w http.ResponseWriter, _ *http.Request) {
	cfg, err := json.MarshalIndent(p.source().Config(), "", "  ") // secrets and URL credentials redacted
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	p.render(w, "status.html", map[string]any{"Title": "Status", "Version": version.Info(),
		"Build": version.BuildContext(), "Config": string(cfg)})
}

func (p *Pages) render(w http.ResponseWriter, name string, data map[string]any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := p.tmpl.ExecuteTemplate(w, name, data); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}
