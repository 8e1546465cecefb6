// Package monitoring tests the monitoring shipped for emergentd itself: the Prometheus alerting
// rules (deploy/helm/emergentd/files/emergentd-rules.yml, with their promtool unit tests in
// emergentd-rules.test.yml beside this file) and the Grafana dashboard
// (deploy/helm/emergentd/files/emergentd-dashboard.json).
//
// The rules are checked and unit-tested with promtool; every query of the rules and of the
// dashboard is then run against a real Prometheus that loads the rules and scrapes a real
// emergentd, so a metric or label value that emergentd does not export fails here rather than
// showing "No data" or never firing. promtool and prometheus come from Debian's `prometheus`
// package; a missing binary fails the tests.
package monitoring

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/emergent-sh/emergent/internal/syncbuf"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emergent-sh/emergent/daemon"
	"github.com/emergent-sh/emergent/internal/stack"
	"github.com/emergent-sh/emergent/internal/synth"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v2"
)

const (
	rulesFile     = "../helm/emergentd/files/emergentd-rules.yml"
	rulesTestFile = "emergentd-rules.test.yml"
	dashboardFile = "../helm/emergentd/files/emergentd-dashboard.json"
	shippedConfig = "../../rules.toml"

	// ruleJob is the job every selector of the rule file matches: the one string to replace
	// where the scrape config names the job otherwise.
	ruleJob = "emergentd"
)

// promtool returns the path of promtool; a missing binary fails the test.
func promtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is not on PATH; install it with `apt-get install prometheus`: %v", err)
	}
	return path
}

func runPromtool(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, promtool(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
}

func TestRulesPromtoolCheck(t *testing.T) {
	runPromtool(t, "check", "rules", rulesFile)
}

func TestRulesPromtoolUnitTests(t *testing.T) {
	runPromtool(t, "test", "rules", rulesTestFile)
}

// ruleFile is a Prometheus rule file, decoded strictly: an unknown key is an error.
type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func (r rule) key() string { return r.Alert + "/" + r.Labels["severity"] }

func loadRules(t *testing.T) []rule {
	t.Helper()
	data, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	var out []rule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) == 0 {
		t.Fatalf("%s has no rules", rulesFile)
	}
	return out
}

// unitTests is the part of a promtool test file the conventions test reads.
type unitTests struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		Name           string `yaml:"name"`
		AlertRuleTests []struct {
			EvalTime  string `yaml:"eval_time"`
			Alertname string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels map[string]string `yaml:"exp_labels"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// TestRulesConventions holds the rule file to the conventions of the Prometheus mixins: every
// rule an alert with a for, a severity and a summary and description that name the series and
// say what to check; one job selector throughout; and a unit test that fires and one that does
// not for every alert.
func TestRulesConventions(t *testing.T) {
	rules := loadRules(t)
	seen := map[string]bool{}
	for _, r := range rules {
		name := r.Alert
		if name == "" {
			t.Errorf("recording rule %q: the file holds alerts only", r.Record)
			continue
		}
		if !regexp.MustCompile(`^Emergentd[A-Z][A-Za-z]+$`).MatchString(name) {
			t.Errorf("%s: alert names are EmergentdSomething", name)
		}
		if seen[r.key()] {
			t.Errorf("%s: two alerts with severity %q", name, r.Labels["severity"])
		}
		seen[r.key()] = true
		if d, err := model.ParseDuration(r.For); err != nil || d <= 0 {
			t.Errorf("%s: for %q: every alert needs a positive for (%v)", name, r.For, err)
		}
		if sev := r.Labels["severity"]; sev != "warning" && sev != "critical" {
			t.Errorf("%s: severity %q, want warning or critical", name, sev)
		}
		if len(r.Labels) != 1 {
			t.Errorf("%s: labels %v: severity only, the rest comes from the series", name, r.Labels)
		}
		if got := slices.Sorted(maps.Keys(r.Annotations)); !slices.Equal(got, []string{"description", "summary"}) {
			t.Errorf("%s: annotations %v, want summary and description", name, got)
		}
		if s := r.Annotations["summary"]; s == "" || strings.Contains(s, "\n") || !strings.HasSuffix(s, ".") {
			t.Errorf("%s: summary %q: one sentence", name, s)
		}
		desc := r.Annotations["description"]
		if !strings.Contains(desc, "{{ $labels.") {
			t.Errorf("%s: the description names no label of the series", name)
		}
		if !strings.Contains(strings.ToLower(desc), "check") {
			t.Errorf("%s: the description does not say what to check", name)
		}
		expr, err := promql.ParseExpr(r.Expr)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		for _, vs := range selectors(expr) {
			if jobs := matchers(vs, "job"); len(jobs) != 1 || jobs[0].Type != labels.MatchEqual || jobs[0].Value != ruleJob {
				t.Errorf("%s: selector %s: want exactly the matcher job=%q", name, vs, ruleJob)
			}
		}
	}

	// Every alert has a unit test where it fires and one where it does not.
	data, err := os.ReadFile(rulesTestFile)
	if err != nil {
		t.Fatal(err)
	}
	var ut unitTests
	if err := yaml.Unmarshal(data, &ut); err != nil {
		t.Fatalf("%s: %v", rulesTestFile, err)
	}
	wantRuleFile, _ := filepath.Abs(rulesFile)
	if len(ut.RuleFiles) != 1 || filepath.Join(filepath.Dir(mustAbs(t, rulesTestFile)), ut.RuleFiles[0]) != wantRuleFile {
		t.Errorf("%s: rule_files %v, want the one rule file %s relative to the test file", rulesTestFile, ut.RuleFiles, rulesFile)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range ut.Tests {
		for _, at := range tc.AlertRuleTests {
			if len(at.ExpAlerts) == 0 {
				quiet[at.Alertname] = true
			}
			for _, a := range at.ExpAlerts {
				fires[at.Alertname+"/"+a.ExpLabels["severity"]] = true
			}
		}
	}
	for _, r := range rules {
		if !fires[r.key()] {
			t.Errorf("%s (%s): no unit test in which it fires", r.Alert, r.Labels["severity"])
		}
		if !quiet[r.Alert] {
			t.Errorf("%s: no unit test in which it stays quiet", r.Alert)
		}
	}
}

func mustAbs(t *testing.T, path string) string {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// promql parses PromQL as emergentd does: the default functions, no experimental ones.
var promql = parser.NewParser(parser.Options{})

// selectors returns the vector selectors of expr.
func selectors(expr parser.Expr) []*parser.VectorSelector {
	var out []*parser.VectorSelector
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	return out
}

func matchers(vs *parser.VectorSelector, name string) []*labels.Matcher {
	var out []*labels.Matcher
	for _, m := range vs.LabelMatchers {
		if m.Name == name {
			out = append(out, m)
		}
	}
	return out
}

// metricName is the name a selector selects.
func metricName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range matchers(vs, model.MetricNameLabel) {
		if m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}

// Dashboard JSON, the part the tests read; the rest is Grafana's.
type dashboard struct {
	ID            *int   `json:"id"`
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Annotations   struct {
		List []struct {
			Name       string      `json:"name"`
			BuiltIn    int         `json:"builtIn"`
			Datasource *datasource `json:"datasource"`
			Expr       string      `json:"expr"`
		} `json:"list"`
	} `json:"annotations"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Datasource *datasource     `json:"datasource"`
	Definition string          `json:"definition"`
	Query      json.RawMessage `json:"query"`
	IncludeAll bool            `json:"includeAll"`
	AllValue   string          `json:"allValue"`
}

type panel struct {
	ID          int         `json:"id"`
	Type        string      `json:"type"`
	Title       string      `json:"title"`
	Description string      `json:"description"`
	Datasource  *datasource `json:"datasource"`
	GridPos     *struct {
		H int `json:"h"`
		W int `json:"w"`
		X int `json:"x"`
		Y int `json:"y"`
	} `json:"gridPos"`
	Targets []struct {
		Datasource *datasource `json:"datasource"`
		Expr       string      `json:"expr"`
		RefID      string      `json:"refId"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's panels
}

// query is one PromQL expression of the dashboard, with where it is.
type query struct {
	where string
	expr  string // with Grafana's variables in it
	// variable names the variable whose values this query lists: it is not filtered by itself.
	variable string
}

var promDatasource = datasource{Type: "prometheus", UID: "${datasource}"}

// Values of Grafana's variables: static ones for checking the shape of selectors, and those a
// real Prometheus is queried with. An expression with any other variable is an error.
var (
	staticVars = map[string]string{
		"job": "JOBVAR", "rule": "RULEVAR",
		"__rate_interval": "1m", "__interval": "1m", "__range": "6h",
	}
	realVars = map[string]string{
		"job": ruleJob, "rule": ".+",
		"__rate_interval": "1m", "__interval": "1m", "__range": "1h",
	}
	variableRef = regexp.MustCompile(`\$(?:\{(\w+)\}|(\w+))`)
	labelValues = regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)
)

// substitute replaces Grafana's $var and ${var} with their values.
func substitute(expr string, vars map[string]string) (string, error) {
	var unknown []string
	out := variableRef.ReplaceAllStringFunc(expr, func(ref string) string {
		m := variableRef.FindStringSubmatch(ref)
		name := m[1] + m[2]
		v, ok := vars[name]
		if !ok {
			unknown = append(unknown, ref)
			return ref
		}
		return v
	})
	if len(unknown) > 0 || strings.Contains(out, "[[") {
		return "", fmt.Errorf("unknown variables %v in %q", unknown, expr)
	}
	return out, nil
}

// loadDashboard reads the dashboard and checks the JSON itself: valid, one object, no key twice
// in an object (encoding/json would silently keep the last).
func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkJSON(data); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

func checkJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var walk func(path string) error
	walk = func(path string) error {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		switch tok {
		case json.Delim('{'):
			keys := map[string]bool{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
				key := k.(string)
				if keys[key] {
					return fmt.Errorf("%s: key %q twice", path, key)
				}
				keys[key] = true
				if err := walk(path + "." + key); err != nil {
					return err
				}
			}
		case json.Delim('['):
			for i := 0; dec.More(); i++ {
				if err := walk(fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
		default:
			return nil
		}
		_, err = dec.Token() // the closing delimiter
		return err
	}
	if err := walk("$"); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("more after the dashboard object")
	}
	return nil
}

// allPanels flattens rows.
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// dashboardQueries returns every PromQL expression of the dashboard: panel targets,
// annotations, and the selectors of label_values() variables.
func dashboardQueries(t *testing.T, d dashboard) []query {
	t.Helper()
	var out []query
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			out = append(out, query{where: fmt.Sprintf("panel %d %q target %s", p.ID, p.Title, tg.RefID), expr: tg.Expr})
		}
	}
	for _, a := range d.Annotations.List {
		if a.BuiltIn == 0 {
			out = append(out, query{where: fmt.Sprintf("annotation %q", a.Name), expr: a.Expr})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(variableQuery(t, v))
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, variableQuery(t, v))
			continue
		}
		out = append(out, query{where: fmt.Sprintf("variable %s", v.Name), expr: m[1], variable: v.Name})
	}
	return out
}

// variableQuery is a query variable's query: a string, or an object with a query.
func variableQuery(t *testing.T, v variable) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(v.Query, &s); err == nil {
		return s
	}
	var o struct {
		Query string `json:"query"`
	}
	if err := json.Unmarshal(v.Query, &o); err != nil {
		t.Errorf("variable %s: query %s: %v", v.Name, v.Query, err)
	}
	return o.Query
}

func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	if d.ID != nil {
		t.Errorf("id %d: a provisioned dashboard has id null", *d.ID)
	}
	if !regexp.MustCompile(`^[A-Za-z0-9_-]{1,40}$`).MatchString(d.UID) {
		t.Errorf("uid %q: 1 to 40 letters, digits, - and _", d.UID)
	}
	if d.Title == "" {
		t.Error("no title")
	}
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d: datasource references as objects need 36 or later", d.SchemaVersion)
	}

	// Variables: a Prometheus datasource variable, and job and rule read through it.
	vars := map[string]variable{}
	for _, v := range d.Templating.List {
		if _, dup := vars[v.Name]; dup {
			t.Errorf("variable %s twice", v.Name)
		}
		vars[v.Name] = v
	}
	if ds := vars["datasource"]; ds.Type != "datasource" || string(ds.Query) != `"prometheus"` {
		t.Errorf("variable datasource: type %q query %s, want a datasource variable of type prometheus", ds.Type, ds.Query)
	}
	for _, name := range []string{"job", "rule"} {
		v, ok := vars[name]
		switch {
		case !ok:
			t.Errorf("no variable %s", name)
		case v.Type != "query" || v.Datasource == nil || *v.Datasource != promDatasource:
			t.Errorf("variable %s: type %q datasource %v, want a query on ${datasource}", name, v.Type, v.Datasource)
		case v.Definition != variableQuery(t, v):
			t.Errorf("variable %s: definition %q differs from its query %q", name, v.Definition, variableQuery(t, v))
		}
	}
	if v := vars["rule"]; !v.IncludeAll || v.AllValue == "" {
		t.Errorf("variable rule: want All with a regex allValue (an empty one is every value ORed, long with many rules)")
	}

	// Panels: unique ids, a place on the 24-column grid shared with no other panel, and every
	// panel with queries reading the datasource variable.
	panels := allPanels(d.Panels)
	ids := map[int]bool{}
	for i, p := range panels {
		if p.ID <= 0 || ids[p.ID] {
			t.Errorf("panel %q: id %d is not positive and unique", p.Title, p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g == nil {
			t.Errorf("panel %d %q has no gridPos", p.ID, p.Title)
			continue
		}
		if g.W < 1 || g.H < 1 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("panel %d %q: gridPos %+v is off the 24-column grid", p.ID, p.Title, *g)
		}
		for _, q := range panels[:i] {
			if h := q.GridPos; h != nil && g.X < h.X+h.W && h.X < g.X+g.W && g.Y < h.Y+h.H && h.Y < g.Y+g.H {
				t.Errorf("panels %d %q and %d %q overlap", p.ID, p.Title, q.ID, q.Title)
			}
		}
		switch p.Type {
		case "row":
			if p.Datasource != nil || len(p.Targets) > 0 {
				t.Errorf("row %d %q has queries", p.ID, p.Title)
			}
			continue
		case "stat", "timeseries", "table", "state-timeline":
		default:
			t.Errorf("panel %d %q: type %q is not one this dashboard uses", p.ID, p.Title, p.Type)
		}
		if p.Title == "" || p.Description == "" {
			t.Errorf("panel %d: needs a title and a description (%q)", p.ID, p.Title)
		}
		if p.Datasource == nil || *p.Datasource != promDatasource {
			t.Errorf("panel %d %q: datasource %v, want %v", p.ID, p.Title, p.Datasource, promDatasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %d %q has no query", p.ID, p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.Datasource == nil || *tg.Datasource != promDatasource {
				t.Errorf("panel %d %q target %s: datasource %v, want %v", p.ID, p.Title, tg.RefID, tg.Datasource, promDatasource)
			}
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %d %q: refId %q is empty or repeated", p.ID, p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
		}
	}
	for _, a := range d.Annotations.List {
		if a.BuiltIn == 0 && (a.Datasource == nil || *a.Datasource != promDatasource) {
			t.Errorf("annotation %q: datasource %v, want %v", a.Name, a.Datasource, promDatasource)
		}
	}

	// Queries: valid PromQL once Grafana's variables are in, and every selector filtered by
	// $job (and a rule label, if any, by $rule).
	queries := dashboardQueries(t, d)
	for _, q := range queries {
		expr, err := parseQuery(q.expr, staticVars)
		if err != nil {
			t.Errorf("%s: %v", q.where, err)
			continue
		}
		for _, vs := range selectors(expr) {
			if jobs := matchers(vs, "job"); q.variable != "job" && (len(jobs) != 1 || jobs[0].Type != labels.MatchRegexp || jobs[0].Value != staticVars["job"]) {
				t.Errorf("%s: selector %s: want exactly the matcher job=~\"$job\"", q.where, vs)
			}
			for _, m := range matchers(vs, "rule") {
				if m.Type != labels.MatchRegexp || m.Value != staticVars["rule"] {
					t.Errorf("%s: selector %s: the rule label is matched by rule=~\"$rule\" only", q.where, vs)
				}
			}
		}
	}
	if len(queries) < 20 {
		t.Errorf("only %d queries found: is the JSON read right?", len(queries))
	}
}

func parseQuery(expr string, vars map[string]string) (parser.Expr, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, fmt.Errorf("empty expression")
	}
	s, err := substitute(expr, vars)
	if err != nil {
		return nil, err
	}
	return promql.ParseExpr(s)
}

// TestQueriesAgainstRealEmergentd runs a real Prometheus that loads the rule file and scrapes
// an in-process emergentd as job "emergentd"; emergentd reads two incidents backfilled into the
// same Prometheus and delivers to two Alertmanager stand-ins, one of which refuses everything.
// Every metric name of the rules and of the dashboard must be on emergentd's /metrics, every
// selector must select series in Prometheus, every dashboard query must run, and the rules must
// fire exactly for the refused deliveries, then for emergentd down.
func TestQueriesAgainstRealEmergentd(t *testing.T) {
	d := loadDashboard(t)
	rules := loadRules(t)
	dashQueries := dashboardQueries(t, d)
	var ruleQueries []query
	for _, r := range rules {
		ruleQueries = append(ruleQueries, query{where: "alert " + r.key(), expr: r.Expr})
	}

	// emergentd's address first: Prometheus scrapes it from its start.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	target := ln.Addr().String()
	end := time.Now().Truncate(15 * time.Second)
	promDir := t.TempDir()
	proc, err := stack.StartPrometheus(t.Context(), stack.PrometheusOptions{
		Dir:               promDir,
		OpenMetrics:       synth.IncidentHistory(end),
		ScrapeInterval:    time.Second,
		RuleFiles:         []string{mustAbs(t, rulesFile)},
		ScrapeConfigsYAML: fmt.Sprintf("  - job_name: %s\n    static_configs:\n      - targets: [%q]", ruleJob, target),
	})
	if err != nil {
		t.Fatalf("prometheus: %v", err)
	}
	defer func() {
		proc.Stop()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", proc.Log())
		}
	}()
	prom := promClient{url: proc.URL}

	// Two Alertmanagers: one takes every alert, one refuses every alert (HTTP 400, which
	// emergentd does not retry).
	var posts sync.Map
	okAM := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts.Store("ok", true)
		w.WriteHeader(http.StatusOK)
	}))
	defer okAM.Close()
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts.Store("refused", true)
		http.Error(w, "bad request", http.StatusBadRequest)
	}))
	defer refusing.Close()

	var logs syncbuf.Buffer
	dm, err := daemon.New(daemon.Options{
		ConfigFile:    writeConfig(t, okAM.URL, refusing.URL),
		PrometheusURL: proc.URL,
		Logger:        slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("emergentd log:\n%s", logs.String())
		}
	}()
	srv := &http.Server{Handler: dm.Handler(), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	defer func() {
		_ = srv.Close()
		<-served
	}()
	// Prometheus sees the counters at zero before emergentd runs, so their increases show.
	waitFor(t, 30*time.Second, "Prometheus to scrape emergentd", func() bool {
		return len(prom.mustQuery(t, fmt.Sprintf(`up{job=%q} == 1`, ruleJob))) == 1
	})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- dm.Run(ctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	defer stop()

	base := "http://" + target
	waitFor(t, 90*time.Second, "emergentd ready", func() bool { return httpStatus(base+"/-/ready") == http.StatusOK })
	// Per-group series, episode starts and both receivers' deliveries on /metrics.
	var exported model.Vector
	waitFor(t, 60*time.Second, "an episode and both deliveries on /metrics", func() bool {
		exported = scrape(t, base+"/metrics")
		_, okSent := posts.Load("ok")
		_, refused := posts.Load("refused")
		return okSent && refused && has(exported, "emergent_episode_start_timestamp_seconds") &&
			has(exported, "emergent_observed_work_per_second") &&
			value(exported, "emergent_notification_requests_failed_total", "receiver", "refusing") >= 1
	})

	// 1. Every metric name is on /metrics (up is Prometheus's own).
	names := map[string]bool{"up": true}
	ruleLabelled := map[string]bool{}
	for _, s := range exported {
		name := string(s.Metric[model.MetricNameLabel])
		names[name] = true
		if _, ok := s.Metric["rule"]; ok {
			ruleLabelled[name] = true
		}
	}
	all := append(slices.Clone(dashQueries), ruleQueries...)
	for _, q := range all {
		expr, err := parseQuery(q.expr, realVars)
		if err != nil {
			t.Fatalf("%s: %v", q.where, err)
		}
		for _, vs := range selectors(expr) {
			if name := metricName(vs); !names[name] {
				t.Errorf("%s: metric %q is not on emergentd's /metrics", q.where, name)
			}
		}
	}
	// The dashboard filters every metric with a rule label by $rule.
	for _, q := range dashQueries {
		expr, _ := parseQuery(q.expr, staticVars)
		for _, vs := range selectors(expr) {
			if ruleLabelled[metricName(vs)] && len(matchers(vs, "rule")) == 0 && q.variable != "rule" {
				t.Errorf("%s: %s has a rule label but the selector ignores $rule", q.where, vs)
			}
		}
	}

	// 2. In Prometheus, every selector selects series (names and label values right) and every
	// dashboard query runs.
	waitFor(t, 30*time.Second, "episode starts scraped", func() bool {
		return len(prom.mustQuery(t, "emergent_episode_start_timestamp_seconds")) > 0
	})
	for _, q := range all {
		expr, _ := parseQuery(q.expr, realVars)
		for _, vs := range selectors(expr) {
			if len(prom.mustQuery(t, vs.String())) == 0 {
				t.Errorf("%s: %s selects nothing in a Prometheus scraping emergentd", q.where, vs)
			}
		}
	}
	for _, q := range dashQueries {
		s, _ := substitute(q.expr, realVars)
		if _, err := prom.query(s); err != nil {
			t.Errorf("%s: Prometheus refuses the query: %v", q.where, err)
		}
	}

	// 3. The rules evaluate without error, and what is active settles on exactly the refused
	// deliveries: the refused batch failed (warning), nothing reached that receiver (critical),
	// and it was given up (lost). Nothing for the receiver that took it, nothing else.
	instance := map[string]string{"job": ruleJob, "instance": target, "receiver": "refusing"}
	want := []string{
		alertKey("EmergentdNotificationsFailing", "warning", instance),
		alertKey("EmergentdNotificationsFailing", "critical", instance),
		alertKey("EmergentdNotificationsLost", "warning", instance),
	}
	slices.Sort(want)
	var got []string
	if !eventually(60*time.Second, func() bool {
		got = prom.activeAlerts(t)
		return slices.Equal(got, want) && prom.rulesHealthy(t)
	}) {
		t.Fatalf("active alerts:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}

	// 4. emergentd stops answering: EmergentdDown is pending (its for is 5m).
	stop()
	_ = srv.Close()
	<-served
	down := alertKey("EmergentdDown", "critical", map[string]string{"job": ruleJob})
	waitFor(t, 30*time.Second, "EmergentdDown pending", func() bool {
		return slices.Contains(prom.activeAlerts(t), down)
	})
}

// writeConfig is the shipped rules.toml with test timings, and two Alertmanager receivers.
func writeConfig(t *testing.T, okURL, refusingURL string) string {
	t.Helper()
	shipped, err := os.ReadFile(shippedConfig)
	if err != nil {
		t.Fatal(err)
	}
	text := string(shipped)
	for _, r := range [][2]string{
		{`evaluation_interval = "30s"`, `evaluation_interval = "15s"`},
		{`history = "7d"`, `history = "1h"`},
		{`baseline_step = "15m"`, `baseline_step = "1m"`},
		{`replay = "6h"`, `replay = "2h"`},
	} {
		if !strings.Contains(text, r[0]) {
			t.Fatalf("%s no longer contains %q; update the test", shippedConfig, r[0])
		}
		text = strings.Replace(text, r[0], r[1], 1)
	}
	text += fmt.Sprintf(`
[[receivers]]
name = "ok"
type = "alertmanager"
urls = [%q]

[[receivers]]
name = "refusing"
type = "alertmanager"
urls = [%q]

[[routes]]
receiver = "ok"

[[routes]]
receiver = "refusing"
`, okURL, refusingURL)
	path := filepath.Join(t.TempDir(), "rules.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// eventually polls cond every 200ms until it holds (true) or timeout passes (false).
func eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
	return true
}

// waitFor is eventually, failing the test past timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !eventually(timeout, cond) {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

func httpStatus(u string) int {
	resp, err := httpClient.Get(u)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// scrape reads a /metrics page into samples; histograms come as _bucket, _sum and _count.
func scrape(t *testing.T, u string) model.Vector {
	t.Helper()
	resp, err := httpClient.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	dec := &expfmt.SampleDecoder{
		Dec:  expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header)),
		Opts: &expfmt.DecodeOptions{Timestamp: model.Now()},
	}
	var out model.Vector
	for {
		var v model.Vector
		if err := dec.Decode(&v); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatalf("parsing %s: %v", u, err)
		}
		out = append(out, v...)
	}
}

func has(v model.Vector, name string) bool {
	return slices.ContainsFunc(v, func(s *model.Sample) bool { return string(s.Metric[model.MetricNameLabel]) == name })
}

func value(v model.Vector, name, label, labelValue string) float64 {
	for _, s := range v {
		if string(s.Metric[model.MetricNameLabel]) == name && string(s.Metric[model.LabelName(label)]) == labelValue {
			return float64(s.Value)
		}
	}
	return -1
}

// promClient queries Prometheus's HTTP API.
type promClient struct{ url string }

func (p promClient) get(path string, params url.Values, data any) error {
	resp, err := httpClient.Get(p.url + path + "?" + params.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var r struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("%s: %s: %w", path, resp.Status, err)
	}
	if r.Status != "success" {
		return fmt.Errorf("%s: %s: %s", path, resp.Status, r.Error)
	}
	return json.Unmarshal(r.Data, data)
}

// query runs an instant query; its result is a vector or a scalar.
func (p promClient) query(q string) ([]map[string]string, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.get("/api/v1/query", url.Values{"query": {q}}, &data); err != nil {
		return nil, err
	}
	if data.ResultType != "vector" {
		return []map[string]string{{}}, nil
	}
	var v []struct {
		Metric map[string]string `json:"metric"`
	}
	if err := json.Unmarshal(data.Result, &v); err != nil {
		return nil, err
	}
	out := make([]map[string]string, len(v))
	for i, s := range v {
		out[i] = s.Metric
	}
	return out, nil
}

func (p promClient) mustQuery(t *testing.T, q string) []map[string]string {
	t.Helper()
	v, err := p.query(q)
	if err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	return v
}

// activeAlerts lists the pending and firing alerts as alertKey strings, sorted. An annotation
// that failed to render fails the test.
func (p promClient) activeAlerts(t *testing.T) []string {
	t.Helper()
	var data struct {
		Alerts []struct {
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"alerts"`
	}
	if err := p.get("/api/v1/alerts", nil, &data); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range data.Alerts {
		for k, v := range a.Annotations {
			if strings.Contains(v, "<no value>") || strings.Contains(v, "error expanding") {
				t.Errorf("%v: annotation %s did not render: %s", a.Labels, k, v)
			}
		}
		l := maps.Clone(a.Labels)
		delete(l, "alertname")
		delete(l, "severity")
		out = append(out, alertKey(a.Labels["alertname"], a.Labels["severity"], l))
	}
	slices.Sort(out)
	return out
}

// rulesHealthy reports whether every rule has been evaluated without error.
func (p promClient) rulesHealthy(t *testing.T) bool {
	t.Helper()
	var data struct {
		Groups []struct {
			Rules []struct {
				Name      string `json:"name"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := p.get("/api/v1/rules", nil, &data); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range data.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health == "err" {
				t.Fatalf("rule %s: %s", r.Name, r.LastError)
			}
			if r.Health != "ok" {
				return false
			}
		}
	}
	return n > 0
}

func alertKey(name, severity string, l map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%s", name, severity)
	for _, k := range slices.Sorted(maps.Keys(l)) {
		fmt.Fprintf(&b, " %s=%q", k, l[k])
	}
	return b.String()
}
