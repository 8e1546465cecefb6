// Package helm tests the emergentd Helm chart (deploy/helm/emergentd) with Helm's own Go SDK:
// it lints the chart as `helm lint --strict` does, renders it as `helm template` does, decodes
// every rendered document strictly into its typed Kubernetes object, and loads the rendered
// rules.toml with emergentd's own configuration loader. It is a module of its own so that Helm
// and Kubernetes never enter the daemon's go.mod.
package helm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint/support"
	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/emergent-sh/emergent/config"
)

const (
	chartDir    = "emergentd"
	releaseName = "emergentd"
	namespace   = "monitoring"
	// secretsDir is where the chart mounts receiver Secrets (emergentd.secretsDir).
	secretsDir = "/etc/emergent-secrets"
	webPort    = 9799
)

// jobSelector finds the job a PromQL expression selects.
var jobSelector = regexp.MustCompile(`\bjob\s*=~?\s*"([^"]*)"`)

// kubeVersion is the Kubernetes the chart is rendered and linted for: the k8s.io/api the test
// decodes with. Helm's SDK, unlike the helm binary, otherwise assumes v1.20.
var kubeVersion = mustKubeVersion("v1.37.0")

func mustKubeVersion(v string) *chartutil.KubeVersion {
	kv, err := chartutil.ParseKubeVersion(v)
	if err != nil {
		panic(err)
	}
	return kv
}

// valueSets are the values every test renders and lints: the defaults, and every optional
// feature on. Persistence needs one replica (two cannot share a state file), so the features
// are split over an HA pair with secrets as files and a single replica with secrets as env.
func valueSets() map[string]map[string]any {
	return map[string]map[string]any{
		"defaults":                      {},
		"ha-all-features":               haAllFeatures(),
		"single-persistent-env-secrets": singlePersistent(),
	}
}

// haAllFeatures: the pair with Alertmanager, Slack (incoming webhook) and a webhook, their
// Secrets mounted as files, a ServiceMonitor, a PrometheusRule and the dashboard.
func haAllFeatures() map[string]any {
	return map[string]any{
		"receivers": map[string]any{
			"alertmanager": map[string]any{
				"urls": []any{
					"http://alertmanager-main-0.alertmanager-operated.monitoring.svc:9093",
					"http://alertmanager-main-1.alertmanager-operated.monitoring.svc:9093",
				},
				"route": map[string]any{"severities": []any{"critical", "warning"}},
			},
			"slack": map[string]any{
				"enabled":        true,
				"existingSecret": "emergent-slack",
				"route": map[string]any{
					"kinds": []any{"self_generated_traffic", "flush_storm"},
					"match": map[string]any{"service": "checkout", "team": "pay&ments"},
				},
			},
			"webhook": map[string]any{"enabled": true, "existingSecret": "emergent-webhook", "secretKey": "ticket-url"},
		},
		"serviceMonitor":   map[string]any{"enabled": true, "labels": map[string]any{"release": "kube-prometheus-stack"}, "scrapeTimeout": "10s"},
		"prometheusRule":   map[string]any{"enabled": true, "labels": map[string]any{"release": "kube-prometheus-stack"}},
		"grafanaDashboard": map[string]any{"enabled": true, "annotations": map[string]any{"grafana_folder": "Emergent"}},
		"podAntiAffinity":  "hard",
		"config":           map[string]any{"extra": "# an extra comment from config.extra\n"},
		"commonLabels":     map[string]any{"team": "observability"},
		"podAnnotations":   map[string]any{"example.com/owner": "sre"},
		"topologySpreadConstraints": []any{map[string]any{
			"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
			"labelSelector": map[string]any{"matchLabels": map[string]any{"app.kubernetes.io/name": "emergentd"}},
		}},
	}
}

// singlePersistent: one replica with its state on a PVC, Slack in bot mode and the webhook
// with their Secrets as environment variables, the Prometheus URL from a Secret.
func singlePersistent() map[string]any {
	return map[string]any{
		"replicaCount": 1,
		"persistence":  map[string]any{"enabled": true, "storageClass": "fast", "size": "2Gi"},
		"prometheus":   map[string]any{"urlSecret": map[string]any{"name": "emergent-prometheus", "key": "url"}},
		"receivers": map[string]any{
			"slack": map[string]any{
				"enabled": true, "mode": "bot", "channel": "#oncall", "from": "env",
				"existingSecret": "emergent-slack",
			},
			"webhook": map[string]any{"enabled": true, "from": "env", "existingSecret": "emergent-webhook"},
		},
		"serviceMonitor":    map[string]any{"enabled": true},
		"prometheusRule":    map[string]any{"enabled": true},
		"grafanaDashboard":  map[string]any{"enabled": true, "namespace": "grafana"},
		"extraArgs":         []any{"--no-web.enable-reload"},
		"extraEnv":          []any{map[string]any{"name": "GOMEMLIMIT", "value": "400MiB"}},
		"extraVolumes":      []any{map[string]any{"name": "tmp", "emptyDir": map[string]any{}}},
		"extraVolumeMounts": []any{map[string]any{"name": "tmp", "mountPath": "/tmp"}},
		"imagePullSecrets":  []any{map[string]any{"name": "regcred"}},
		"image":             map[string]any{"digest": "sha256:" + strings.Repeat("ab", 32)},
	}
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return c
}

// rendered is a release as `helm template` prints it, split and strictly decoded.
type rendered struct {
	manifest        string
	notes           string
	deployments     []appsv1.Deployment
	services        []corev1.Service
	configMaps      []corev1.ConfigMap
	serviceAccounts []corev1.ServiceAccount
	pvcs            []corev1.PersistentVolumeClaim
	pdbs            []policyv1.PodDisruptionBudget
	serviceMonitors []monitoringv1.ServiceMonitor
	prometheusRules []monitoringv1.PrometheusRule
}

// renderChart renders the chart like `helm template` (install, dry run, client only).
func renderChart(t *testing.T, vals map[string]any) (*rendered, error) {
	t.Helper()
	return renderChartFor(t, vals, kubeVersion)
}

func renderChartFor(t *testing.T, vals map[string]any, kv *chartutil.KubeVersion) (*rendered, error) {
	t.Helper()
	cfg := &action.Configuration{Log: func(format string, v ...any) { t.Logf("helm: "+format, v...) }}
	install := action.NewInstall(cfg)
	install.DryRun = true
	install.DryRunOption = "client"
	install.ClientOnly = true
	install.ReleaseName = releaseName
	install.Namespace = namespace
	install.Replace = true
	install.KubeVersion = kv
	rel, err := install.Run(loadChart(t), vals)
	if err != nil {
		return nil, err
	}
	r := &rendered{manifest: rel.Manifest}
	if rel.Info != nil {
		r.notes = rel.Info.Notes
	}
	r.decode(t)
	return r, nil
}

func mustRender(t *testing.T, vals map[string]any) *rendered {
	t.Helper()
	r, err := renderChart(t, vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return r
}

// decode splits the manifest into documents and decodes each strictly (unknown or duplicate
// fields are errors) into the typed object of its kind; a kind the chart should not make fails.
func (r *rendered) decode(t *testing.T) {
	t.Helper()
	docs := releaseutil.SplitManifests(r.manifest)
	keys := make([]string, 0, len(docs))
	for k := range docs {
		keys = append(keys, k)
	}
	sort.Sort(releaseutil.BySplitManifestsOrder(keys))
	for _, k := range keys {
		doc := docs[k]
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatalf("document %s: %v\n%s", k, err, doc)
		}
		gvk := tm.APIVersion + "/" + tm.Kind
		strict := func(into any) {
			t.Helper()
			if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
				t.Fatalf("%s does not decode strictly: %v\n%s", gvk, err, doc)
			}
		}
		switch gvk {
		case "apps/v1/Deployment":
			r.deployments = append(r.deployments, decode[appsv1.Deployment](t, gvk, strict))
		case "v1/Service":
			r.services = append(r.services, decode[corev1.Service](t, gvk, strict))
		case "v1/ConfigMap":
			r.configMaps = append(r.configMaps, decode[corev1.ConfigMap](t, gvk, strict))
		case "v1/ServiceAccount":
			r.serviceAccounts = append(r.serviceAccounts, decode[corev1.ServiceAccount](t, gvk, strict))
		case "v1/PersistentVolumeClaim":
			r.pvcs = append(r.pvcs, decode[corev1.PersistentVolumeClaim](t, gvk, strict))
		case "policy/v1/PodDisruptionBudget":
			r.pdbs = append(r.pdbs, decode[policyv1.PodDisruptionBudget](t, gvk, strict))
		case "monitoring.coreos.com/v1/ServiceMonitor":
			r.serviceMonitors = append(r.serviceMonitors, decode[monitoringv1.ServiceMonitor](t, gvk, strict))
		case "monitoring.coreos.com/v1/PrometheusRule":
			r.prometheusRules = append(r.prometheusRules, decode[monitoringv1.PrometheusRule](t, gvk, strict))
		default:
			t.Fatalf("unexpected kind %s in %s", gvk, k)
		}
	}
}

// checkMeta: a valid DNS-1123 name, an explicit namespace, valid labels including the
// app.kubernetes.io ones every resource of the chart carries.
// decode decodes one document strictly into a T and checks its metadata.
func decode[T any, PT interface {
	*T
	metav1.Object
}](t *testing.T, gvk string, strict func(any)) T {
	t.Helper()
	var o T
	strict(&o)
	p := PT(&o)
	checkMeta(t, gvk, metav1.ObjectMeta{Name: p.GetName(), Namespace: p.GetNamespace(), Labels: p.GetLabels()})
	return o
}

func checkMeta(t *testing.T, gvk string, m metav1.ObjectMeta) {
	t.Helper()
	for _, msg := range validation.IsDNS1123Subdomain(m.Name) {
		t.Errorf("%s name %q: %s", gvk, m.Name, msg)
	}
	if m.Namespace == "" {
		t.Errorf("%s %s has no namespace", gvk, m.Name)
	}
	for k, v := range m.Labels {
		for _, msg := range validation.IsQualifiedName(k) {
			t.Errorf("%s %s label key %q: %s", gvk, m.Name, k, msg)
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			t.Errorf("%s %s label %s=%q: %s", gvk, m.Name, k, v, msg)
		}
	}
	for _, k := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "helm.sh/chart"} {
		if m.Labels[k] == "" {
			t.Errorf("%s %s lacks label %s", gvk, m.Name, k)
		}
	}
}

func (r *rendered) deployment(t *testing.T) appsv1.Deployment {
	t.Helper()
	if len(r.deployments) != 1 {
		t.Fatalf("%d Deployments, want 1", len(r.deployments))
	}
	return r.deployments[0]
}

func (r *rendered) container(t *testing.T) corev1.Container {
	t.Helper()
	d := r.deployment(t)
	if n := len(d.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("%d containers, want 1", n)
	}
	return d.Spec.Template.Spec.Containers[0]
}

// rulesConfigMap is the ConfigMap the Deployment mounts as its config volume.
func (r *rendered) rulesConfigMap(t *testing.T) corev1.ConfigMap {
	t.Helper()
	d := r.deployment(t)
	var name string
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == "config" && v.ConfigMap != nil {
			name = v.ConfigMap.Name
		}
	}
	for _, cm := range r.configMaps {
		if cm.Name == name {
			return cm
		}
	}
	t.Fatalf("no ConfigMap %q (the config volume)", name)
	return corev1.ConfigMap{}
}

func (r *rendered) rulesToml(t *testing.T) string {
	t.Helper()
	data, ok := r.rulesConfigMap(t).Data["rules.toml"]
	if !ok {
		t.Fatal("config ConfigMap has no rules.toml")
	}
	return data
}

func (r *rendered) dashboardConfigMap(t *testing.T) *corev1.ConfigMap {
	t.Helper()
	for i, cm := range r.configMaps {
		if cm.Name == releaseName+"-dashboard" {
			return &r.configMaps[i]
		}
	}
	return nil
}

func kinds(r *rendered) map[string]int {
	return map[string]int{
		"Deployment": len(r.deployments), "Service": len(r.services), "ConfigMap": len(r.configMaps),
		"ServiceAccount": len(r.serviceAccounts), "PersistentVolumeClaim": len(r.pvcs),
		"PodDisruptionBudget": len(r.pdbs), "ServiceMonitor": len(r.serviceMonitors),
		"PrometheusRule": len(r.prometheusRules),
	}
}

// TestLint is `helm lint --strict` for every value set: any error or warning fails.
func TestLint(t *testing.T) {
	for name, vals := range valueSets() {
		t.Run(name, func(t *testing.T) {
			lint := action.NewLint()
			lint.Strict = true
			lint.Namespace = namespace
			lint.KubeVersion = kubeVersion
			res := lint.Run([]string{chartDir}, vals)
			if res.TotalChartsLinted != 1 {
				t.Errorf("linted %d charts, want 1", res.TotalChartsLinted)
			}
			for _, m := range res.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("lint: %s", m)
				} else {
					t.Logf("lint: %s", m)
				}
			}
			for _, err := range res.Errors {
				t.Errorf("lint error: %v", err)
			}
		})
	}
}

// TestChartRulesTomlIsTheShippedOne: the chart's default rules.toml (a chart cannot read files
// outside its directory, so it is a symbolic link there) is the repository's, byte for byte.
func TestChartRulesTomlIsTheShippedOne(t *testing.T) {
	shipped, err := os.ReadFile(filepath.Join("..", "..", "rules.toml"))
	if err != nil {
		t.Fatal(err)
	}
	inChart, err := os.ReadFile(filepath.Join(chartDir, "config", "rules.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(shipped, inChart) {
		t.Fatal("deploy/helm/emergentd/config/rules.toml differs from rules.toml: it should be a symbolic link to it")
	}
}

// TestRenderDefaults: the default release is an HA pair of hardened pods with probes on the
// web port, a PDB and anti-affinity, reading the shipped rules (loadable by emergentd).
func TestRenderDefaults(t *testing.T) {
	r := mustRender(t, nil)
	want := map[string]int{
		"Deployment": 1, "Service": 1, "ConfigMap": 2, "ServiceAccount": 1, "PersistentVolumeClaim": 0,
		"PodDisruptionBudget": 1, "ServiceMonitor": 0, "PrometheusRule": 0,
	}
	if got := kinds(r); !reflect.DeepEqual(got, want) {
		t.Errorf("kinds = %v, want %v", got, want)
	}
	d := r.deployment(t)
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas = %v, want 2", d.Spec.Replicas)
	}
	checkPodSecurity(t, d)
	checkProbes(t, r)
	checkSelectors(t, r)
	checkResources(t, r.container(t))

	// Rolling updates keep both replicas: the new pod must be ready before an old one goes.
	if s := d.Spec.Strategy; s.Type != appsv1.RollingUpdateDeploymentStrategyType || s.RollingUpdate == nil ||
		s.RollingUpdate.MaxUnavailable == nil || s.RollingUpdate.MaxUnavailable.IntValue() != 0 {
		t.Errorf("strategy = %+v, want RollingUpdate with maxUnavailable 0", s)
	}
	// Soft anti-affinity on hostname by default.
	aff := d.Spec.Template.Spec.Affinity
	if aff == nil || aff.PodAntiAffinity == nil || len(aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 {
		t.Fatalf("affinity = %+v, want one preferred pod anti-affinity term", aff)
	}
	term := aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm
	if term.TopologyKey != "kubernetes.io/hostname" || !selects(t, term.LabelSelector, d.Spec.Template.Labels) {
		t.Errorf("anti-affinity term %+v does not spread the pair's pods over hostnames", term)
	}
	// The PDB keeps one of the two up.
	pdb := r.pdbs[0]
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 || pdb.Spec.MinAvailable != nil {
		t.Errorf("PDB spec = %+v, want maxUnavailable 1", pdb.Spec)
	}
	if p := pdb.Spec.UnhealthyPodEvictionPolicy; p == nil || *p != policyv1.AlwaysAllow {
		t.Errorf("PDB unhealthyPodEvictionPolicy = %v, want AlwaysAllow (an unready, blind pair must not block drains)", p)
	}
	if !selects(t, pdb.Spec.Selector, d.Spec.Template.Labels) {
		t.Error("the PDB does not select the pods")
	}

	args := r.container(t).Args
	for _, a := range []string{
		"--config.file=/etc/emergent/rules.toml",
		"--storage.path=/var/lib/emergent",
		"--prometheus.url=http://prometheus-operated.monitoring.svc:9090",
		fmt.Sprintf("--web.listen-address=:%d", webPort),
	} {
		if !slices.Contains(args, a) {
			t.Errorf("args %q lack %q", args, a)
		}
	}
	checkMounts(t, r)
	// The state directory is an emptyDir by default.
	if v := volume(t, d, "storage"); v.EmptyDir == nil {
		t.Errorf("storage volume = %+v, want an emptyDir", v)
	}

	// The rules.toml is the shipped one, loadable by emergentd, with no receivers.
	text := r.rulesToml(t)
	shipped, err := os.ReadFile(filepath.Join("..", "..", "rules.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, strings.TrimSuffix(string(shipped), "\n")) {
		t.Error("the default rules.toml does not contain the shipped rules.toml")
	}
	cfg := loadConfig(t, text, filepath.Join(t.TempDir(), "rules.toml"))
	if len(cfg.Rules) != 2 || len(cfg.Receivers) != 0 || len(cfg.Routes) != 0 {
		t.Errorf("config has %d rules, %d receivers, %d routes; want 2, 0, 0", len(cfg.Rules), len(cfg.Receivers), len(cfg.Routes))
	}
	checkDashboard(t, r)
	checkNoSecretsInConfig(t, r)
	if !strings.Contains(r.notes, "WARNING: no receiver is configured") {
		t.Errorf("NOTES do not warn that no receiver is configured:\n%s", r.notes)
	}
}

// TestRenderHAAllFeatures: the pair with every optional feature, Secrets mounted as files.
func TestRenderHAAllFeatures(t *testing.T) {
	r := mustRender(t, haAllFeatures())
	want := map[string]int{
		"Deployment": 1, "Service": 1, "ConfigMap": 2, "ServiceAccount": 1, "PersistentVolumeClaim": 0,
		"PodDisruptionBudget": 1, "ServiceMonitor": 1, "PrometheusRule": 1,
	}
	if got := kinds(r); !reflect.DeepEqual(got, want) {
		t.Errorf("kinds = %v, want %v", got, want)
	}
	d := r.deployment(t)
	if *d.Spec.Replicas != 2 {
		t.Errorf("replicas = %d, want 2", *d.Spec.Replicas)
	}
	checkPodSecurity(t, d)
	checkProbes(t, r)
	checkSelectors(t, r)
	checkMounts(t, r)
	aff := d.Spec.Template.Spec.Affinity
	if aff == nil || aff.PodAntiAffinity == nil || len(aff.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 1 ||
		!selects(t, aff.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0].LabelSelector, d.Spec.Template.Labels) {
		t.Errorf("affinity = %+v, want one required anti-affinity term selecting the pods", aff)
	}
	if d.Spec.Template.Labels["team"] != "observability" {
		t.Error("commonLabels are not on the pods")
	}

	// Secrets: each receiver's Secret is a volume mounted read-only under the secrets dir, and
	// rules.toml names the mounted file. No env carries them and the ConfigMap holds none.
	c := r.container(t)
	if len(c.Env) != 0 {
		t.Errorf("env = %+v, want none (secrets as files)", c.Env)
	}
	slackPath := secretFile(t, d, "emergent-slack", "webhook-url")
	webhookPath := secretFile(t, d, "emergent-webhook", "ticket-url")
	if slackPath != secretsDir+"/slack/webhook-url" || webhookPath != secretsDir+"/webhook/ticket-url" {
		t.Errorf("secret files at %s and %s", slackPath, webhookPath)
	}
	text := r.rulesToml(t)
	receivers := rawReceivers(t, text)
	if got := receivers["slack"]["webhook_url_file"]; got != slackPath {
		t.Errorf("slack webhook_url_file = %v, want the mounted %s", got, slackPath)
	}
	if got := receivers["webhook"]["url_file"]; got != webhookPath {
		t.Errorf("webhook url_file = %v, want the mounted %s", got, webhookPath)
	}
	checkNoSecretsInConfig(t, r)

	// The file loads in emergentd once the Secrets are where the pod mounts them: here the
	// secrets dir is a temporary directory with files of the same names.
	dir := t.TempDir()
	for path, value := range map[string]string{
		slackPath:   "https://hooks.slack.com/services/T0/B0/XXXXXXXX",
		webhookPath: "https://tickets.example.com/hook?token=XXXXXXXX",
	} {
		local := filepath.Join(dir, strings.TrimPrefix(path, secretsDir))
		if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(local, []byte(value+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := loadConfig(t, strings.ReplaceAll(text, secretsDir, dir), filepath.Join(dir, "rules.toml"))
	if got := receiverTypes(cfg); !reflect.DeepEqual(got, map[string]string{"alertmanager": "alertmanager", "slack": "slack", "webhook": "webhook"}) {
		t.Errorf("receivers = %v", got)
	}
	am := receiver(t, cfg, "alertmanager")
	if len(am.URLs) != 2 {
		t.Errorf("alertmanager urls = %v, want both Alertmanagers", am.URLs)
	}
	if string(receiver(t, cfg, "slack").WebhookURL) != "https://hooks.slack.com/services/T0/B0/XXXXXXXX" {
		t.Error("the Slack webhook URL was not read from its file")
	}
	if len(cfg.Routes) != 3 {
		t.Fatalf("routes = %+v, want one per receiver", cfg.Routes)
	}
	for _, rt := range cfg.Routes {
		switch rt.Receiver {
		case "alertmanager":
			if !reflect.DeepEqual(rt.Severities, []string{"critical", "warning"}) {
				t.Errorf("alertmanager route = %+v", rt)
			}
		case "slack":
			if !reflect.DeepEqual(rt.Kinds, []string{"self_generated_traffic", "flush_storm"}) ||
				!reflect.DeepEqual(rt.Match, map[string]string{"service": "checkout", "team": "pay&ments"}) {
				t.Errorf("slack route = %+v", rt)
			}
		case "webhook":
			if len(rt.Kinds)+len(rt.Severities)+len(rt.Match) != 0 {
				t.Errorf("webhook route = %+v, want one matching everything", rt)
			}
		}
	}
	if !strings.Contains(text, "# an extra comment from config.extra") {
		t.Error("config.extra is not in rules.toml")
	}

	// ServiceMonitor: scrapes /metrics on the Service's named port, selecting the Service.
	sm := r.serviceMonitors[0]
	if sm.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("ServiceMonitor labels = %v", sm.Labels)
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "http" || sm.Spec.Endpoints[0].Path != "/metrics" ||
		sm.Spec.Endpoints[0].ScrapeTimeout != "10s" {
		t.Errorf("ServiceMonitor endpoints = %+v", sm.Spec.Endpoints)
	}
	if !selects(t, &sm.Spec.Selector, r.services[0].Labels) {
		t.Error("the ServiceMonitor does not select the Service")
	}
	checkJobRelabeling(t, sm, "emergentd")
	if sm.Spec.NamespaceSelector.Any || !reflect.DeepEqual(sm.Spec.NamespaceSelector.MatchNames, []string{namespace}) {
		t.Errorf("ServiceMonitor namespaceSelector = %+v", sm.Spec.NamespaceSelector)
	}
	checkPrometheusRule(t, r, "emergentd")
	checkDashboard(t, r)
	if a := r.dashboardConfigMap(t).Annotations["grafana_folder"]; a != "Emergent" {
		t.Errorf("dashboard annotation grafana_folder = %q", a)
	}
	if !strings.Contains(r.notes, "WARNING: receivers.slack is enabled with 2 replicas") {
		t.Errorf("NOTES do not warn about Slack in a pair:\n%s", r.notes)
	}
}

// TestRenderSinglePersistent: one replica with a PVC (Recreate, no PDB), Secrets as env via
// secretKeyRef, the Prometheus URL from a Secret.
func TestRenderSinglePersistent(t *testing.T) {
	r := mustRender(t, singlePersistent())
	want := map[string]int{
		"Deployment": 1, "Service": 1, "ConfigMap": 2, "ServiceAccount": 1, "PersistentVolumeClaim": 1,
		"PodDisruptionBudget": 0, "ServiceMonitor": 1, "PrometheusRule": 1,
	}
	if got := kinds(r); !reflect.DeepEqual(got, want) {
		t.Errorf("kinds = %v, want %v", got, want)
	}
	d := r.deployment(t)
	if *d.Spec.Replicas != 1 {
		t.Errorf("replicas = %d, want 1", *d.Spec.Replicas)
	}
	if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("strategy = %s, want Recreate with a ReadWriteOnce volume", d.Spec.Strategy.Type)
	}
	checkPodSecurity(t, d)
	checkProbes(t, r)
	checkSelectors(t, r)
	checkMounts(t, r)
	pvc := r.pvcs[0]
	if v := volume(t, d, "storage"); v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != pvc.Name {
		t.Errorf("storage volume = %+v, want the claim %s", v, pvc.Name)
	}
	if pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != "fast" ||
		!pvc.Spec.Resources.Requests.Storage().Equal(resource.MustParse("2Gi")) {
		t.Errorf("PVC spec = %+v", pvc.Spec)
	}
	if img := r.container(t).Image; img != "ghcr.io/emergent-sh/emergentd@sha256:"+strings.Repeat("ab", 32) {
		t.Errorf("image = %s, want the digest", img)
	}
	if r.dashboardConfigMap(t).Namespace != "grafana" {
		t.Error("grafanaDashboard.namespace is not used")
	}

	c := r.container(t)
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--prometheus.url") {
			t.Errorf("args have %q although the URL comes from a Secret", a)
		}
	}
	if !slices.Contains(c.Args, "--no-web.enable-reload") {
		t.Errorf("extraArgs missing from %q", c.Args)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	for name, ref := range map[string][2]string{
		"EMERGENT_PROMETHEUS_URL": {"emergent-prometheus", "url"},
		"EMERGENT_SLACK_TOKEN":    {"emergent-slack", "token"},
		"EMERGENT_WEBHOOK_URL":    {"emergent-webhook", "url"},
	} {
		e, ok := env[name]
		if !ok || e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil ||
			e.ValueFrom.SecretKeyRef.Name != ref[0] || e.ValueFrom.SecretKeyRef.Key != ref[1] {
			t.Errorf("env %s = %+v, want secretKeyRef %s/%s", name, e, ref[0], ref[1])
		}
	}
	if env["GOMEMLIMIT"].Value != "400MiB" {
		t.Error("extraEnv missing")
	}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			t.Errorf("volume %s mounts Secret %s although the secrets come from env", v.Name, v.Secret.SecretName)
		}
	}

	text := r.rulesToml(t)
	receivers := rawReceivers(t, text)
	if receivers["slack"]["token_env"] != "EMERGENT_SLACK_TOKEN" || receivers["slack"]["channel"] != "#oncall" ||
		receivers["webhook"]["url_env"] != "EMERGENT_WEBHOOK_URL" {
		t.Errorf("receivers = %v", receivers)
	}
	checkNoSecretsInConfig(t, r)
	// With the variables set as the pod sets them, emergentd loads the file.
	t.Setenv("EMERGENT_SLACK_TOKEN", "xoxb-0000-0000-XXXXXXXX")
	t.Setenv("EMERGENT_WEBHOOK_URL", "https://tickets.example.com/hook")
	cfg := loadConfig(t, text, filepath.Join(t.TempDir(), "rules.toml"))
	if s := receiver(t, cfg, "slack"); string(s.Token) != "xoxb-0000-0000-XXXXXXXX" || s.Channel != "#oncall" {
		t.Errorf("slack receiver = %+v", s)
	}
	if len(cfg.Routes) != 2 {
		t.Errorf("routes = %+v, want slack and webhook", cfg.Routes)
	}
	checkPrometheusRule(t, r, "emergentd")
	checkDashboard(t, r)
}

// TestRulesTomlOverride: config.rulesToml replaces the shipped rules; receivers are appended.
func TestRulesTomlOverride(t *testing.T) {
	own := `[global]
evaluation_interval = "15s"
external_labels = { cluster = "eu-1" }

[prometheus]
timeout = "120s"

[[rules]]
name = "storm"
kind = "flush_storm"
group_by = ["service"]
flushes = 'redis_commands_total{cmd=~"flushdb|flushall"}'
`
	r := mustRender(t, map[string]any{
		"config":    map[string]any{"rulesToml": own},
		"receivers": map[string]any{"alertmanager": map[string]any{"urls": []any{"http://am:9093"}}},
	})
	text := r.rulesToml(t)
	if strings.Contains(text, "token-minting") {
		t.Error("the shipped rules are still there")
	}
	cfg := loadConfig(t, text, filepath.Join(t.TempDir(), "rules.toml"))
	if len(cfg.Rules) != 1 || cfg.Rules[0].Name != "storm" || cfg.Global.ExternalLabels["cluster"] != "eu-1" ||
		len(cfg.Receivers) != 1 || len(cfg.Routes) != 1 {
		t.Errorf("config = %+v", cfg)
	}
}

// TestScrapeJob: scrapeJob names the job in the ServiceMonitor and in the PrometheusRule alike,
// whatever the release is called.
func TestScrapeJob(t *testing.T) {
	r := mustRender(t, map[string]any{
		"scrapeJob":      "emergentd-eu",
		"serviceMonitor": map[string]any{"enabled": true},
		"prometheusRule": map[string]any{"enabled": true},
	})
	checkJobRelabeling(t, r.serviceMonitors[0], "emergentd-eu")
	checkPrometheusRule(t, r, "emergentd-eu")
}

func checkJobRelabeling(t *testing.T, sm monitoringv1.ServiceMonitor, job string) {
	t.Helper()
	for _, rc := range sm.Spec.Endpoints[0].RelabelConfigs {
		if rc.TargetLabel == "job" && rc.Replacement != nil && *rc.Replacement == job && len(rc.SourceLabels) == 0 &&
			(rc.Action == "" || strings.EqualFold(rc.Action, "replace")) {
			return
		}
	}
	t.Errorf("ServiceMonitor relabelings %+v do not set job to %q", sm.Spec.Endpoints[0].RelabelConfigs, job)
}

// TestRenderRejects: values that cannot work fail the render with a message.
func TestRenderRejects(t *testing.T) {
	for name, tc := range map[string]struct {
		vals map[string]any
		want string
	}{
		"slack without secret":   {map[string]any{"receivers": map[string]any{"slack": map[string]any{"enabled": true}}}, "receivers.slack.existingSecret is required"},
		"webhook without secret": {map[string]any{"receivers": map[string]any{"webhook": map[string]any{"enabled": true}}}, "receivers.webhook.existingSecret is required"},
		"bot without channel":    {map[string]any{"receivers": map[string]any{"slack": map[string]any{"enabled": true, "mode": "bot", "existingSecret": "s"}}}, "channel is required"},
		"pvc shared by a pair":   {map[string]any{"persistence": map[string]any{"enabled": true}}, "persistence.enabled needs replicaCount: 1"},
		"no prometheus":          {map[string]any{"prometheus": map[string]any{"url": ""}}, "prometheus.url"},
		"unknown value":          {map[string]any{"replicas": 3}, "additional properties"},
		"bad secret mode":        {map[string]any{"receivers": map[string]any{"slack": map[string]any{"from": "inline"}}}, "from"},
		"bad receiver name":      {map[string]any{"receivers": map[string]any{"alertmanager": map[string]any{"name": "a b"}}}, "name"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := renderChart(t, tc.vals)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("render error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestKubeVersions: the chart renders on the oldest Kubernetes it declares (policy/v1
// PodDisruptionBudget: 1.21) and refuses an older one.
func TestKubeVersions(t *testing.T) {
	r, err := renderChartFor(t, haAllFeatures(), mustKubeVersion("v1.21.0"))
	if err != nil {
		t.Fatalf("render for 1.21: %v", err)
	}
	if p := r.pdbs[0].Spec.UnhealthyPodEvictionPolicy; p != nil {
		t.Errorf("PDB for 1.21 has unhealthyPodEvictionPolicy %s (Kubernetes 1.26+)", *p)
	}
	if _, err := renderChartFor(t, nil, mustKubeVersion("v1.20.0")); err == nil || !strings.Contains(err.Error(), "kubeVersion") {
		t.Errorf("render for 1.20: %v, want the kubeVersion refused", err)
	}
}

// TestConfigChangeRollsPods: a different rules.toml changes the pod template's checksum.
func TestConfigChangeRollsPods(t *testing.T) {
	a := mustRender(t, nil).deployment(t).Spec.Template.Annotations["checksum/config"]
	b := mustRender(t, map[string]any{"config": map[string]any{"extra": "# changed\n"}}).deployment(t).Spec.Template.Annotations["checksum/config"]
	if a == "" || a == b {
		t.Errorf("checksum/config %q and %q: want set and different", a, b)
	}
}

func checkPodSecurity(t *testing.T, d appsv1.Deployment) {
	t.Helper()
	ps := d.Spec.Template.Spec.SecurityContext
	if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.RunAsUser == nil || *ps.RunAsUser == 0 ||
		ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext = %+v, want non-root with RuntimeDefault seccomp", ps)
	}
	if a := d.Spec.Template.Spec.AutomountServiceAccountToken; a == nil || *a {
		t.Error("the pods mount a service account token they never use")
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		sc := c.SecurityContext
		if sc == nil {
			t.Fatalf("container %s has no securityContext", c.Name)
		}
		if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Errorf("container %s: runAsNonRoot not set", c.Name)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("container %s: root filesystem is writable", c.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("container %s: privilege escalation allowed", c.Name)
		}
		if sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
			t.Errorf("container %s: capabilities %+v, want drop [ALL]", c.Name, sc.Capabilities)
		}
		if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("container %s: seccompProfile %+v", c.Name, sc.SeccompProfile)
		}
	}
}

// checkProbes: liveness on /-/healthy and readiness on /-/ready, both on the container's web
// port, which is the port emergentd listens on and the Service targets.
func checkProbes(t *testing.T, r *rendered) {
	t.Helper()
	c := r.container(t)
	if len(c.Ports) != 1 || c.Ports[0].Name != "http" || c.Ports[0].ContainerPort != webPort {
		t.Fatalf("ports = %+v, want http %d", c.Ports, webPort)
	}
	for _, p := range []struct {
		kind  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/-/healthy"}, {"readiness", c.ReadinessProbe, "/-/ready"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s probe = %+v, want an HTTP GET", p.kind, p.probe)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path {
			t.Errorf("%s probe path = %s, want %s", p.kind, g.Path, p.path)
		}
		if g.Port.String() != "http" && g.Port.IntValue() != webPort {
			t.Errorf("%s probe port = %s, want the web port", p.kind, g.Port.String())
		}
		if g.Scheme != "" && g.Scheme != corev1.URISchemeHTTP {
			t.Errorf("%s probe scheme = %s", p.kind, g.Scheme)
		}
	}
	if c.StartupProbe != nil {
		t.Error("unexpected startup probe: /-/healthy answers during the start-up")
	}
}

// checkSelectors: the Service selects the pods and targets their web port.
func checkSelectors(t *testing.T, r *rendered) {
	t.Helper()
	d := r.deployment(t)
	if !selects(t, d.Spec.Selector, d.Spec.Template.Labels) {
		t.Error("the Deployment's selector does not match its pods")
	}
	if len(r.services) != 1 {
		t.Fatalf("%d Services", len(r.services))
	}
	s := r.services[0]
	if !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Error("the Service does not select the pods")
	}
	if len(s.Spec.Ports) != 1 || s.Spec.Ports[0].Name != "http" || s.Spec.Ports[0].TargetPort.String() != "http" {
		t.Errorf("service ports = %+v", s.Spec.Ports)
	}
	if d.Spec.Template.Spec.ServiceAccountName != r.serviceAccounts[0].Name {
		t.Errorf("pods run as %q, chart creates %q", d.Spec.Template.Spec.ServiceAccountName, r.serviceAccounts[0].Name)
	}
}

// checkResources: requests for scheduling and a memory limit above the request (the start-up
// peak), no CPU limit (it would throttle the start-up).
func checkResources(t *testing.T, c corev1.Container) {
	t.Helper()
	req, lim := c.Resources.Requests, c.Resources.Limits
	if req.Cpu().IsZero() || req.Memory().IsZero() {
		t.Errorf("requests = %v, want cpu and memory", req)
	}
	if lim.Memory().Cmp(*req.Memory()) < 0 {
		t.Errorf("memory limit %v under request %v", lim.Memory(), req.Memory())
	}
	// At 1000 groups the start-up peaks at 221 MiB RSS (BENCHMARKS.md): the request covers it.
	if req.Memory().Cmp(resource.MustParse("221Mi")) < 0 {
		t.Errorf("memory request %v is under the 1000-group start-up peak of 221 MiB", req.Memory())
	}
	if _, ok := lim[corev1.ResourceCPU]; ok {
		t.Errorf("cpu limit %v set", lim.Cpu())
	}
}

// checkMounts: every volume mount names a volume; config and state are where the args say;
// every writable path is a volume (the root filesystem is read-only).
func checkMounts(t *testing.T, r *rendered) {
	t.Helper()
	d := r.deployment(t)
	c := r.container(t)
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		volume(t, d, m.Name)
		mounts[m.Name] = m
	}
	if m := mounts["config"]; m.MountPath != "/etc/emergent" || !m.ReadOnly {
		t.Errorf("config mount = %+v", m)
	}
	if m := mounts["storage"]; m.MountPath != "/var/lib/emergent" || m.ReadOnly {
		t.Errorf("storage mount = %+v", m)
	}
	for _, m := range c.VolumeMounts {
		if m.SubPath != "" {
			t.Errorf("mount %s uses subPath: ConfigMap and Secret updates would not reach it", m.Name)
		}
	}
}

func volume(t *testing.T, d appsv1.Deployment, name string) corev1.Volume {
	t.Helper()
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no volume %q", name)
	return corev1.Volume{}
}

// secretFile is the path at which the container sees key of Secret secretName.
func secretFile(t *testing.T, d appsv1.Deployment, secretName, key string) string {
	t.Helper()
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret == nil || v.Secret.SecretName != secretName {
			continue
		}
		path := ""
		for _, it := range v.Secret.Items {
			if it.Key == key {
				path = it.Path
			}
		}
		if path == "" {
			t.Fatalf("Secret volume %s does not project key %s", v.Name, key)
		}
		// Readable by the owner and the pod's fsGroup (emergentd's group), by no one else.
		if m := v.Secret.DefaultMode; m == nil || *m != 0o440 {
			t.Errorf("Secret volume %s defaultMode = %v, want 0440", v.Name, m)
		}
		for _, m := range d.Spec.Template.Spec.Containers[0].VolumeMounts {
			if m.Name == v.Name {
				if !m.ReadOnly {
					t.Errorf("Secret %s is mounted writable", secretName)
				}
				return m.MountPath + "/" + path
			}
		}
		t.Fatalf("Secret volume %s is not mounted", v.Name)
	}
	t.Fatalf("no volume of Secret %s", secretName)
	return ""
}

func selects(t *testing.T, sel *metav1.LabelSelector, set map[string]string) bool {
	t.Helper()
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("selector %+v: %v", sel, err)
	}
	return !s.Empty() && s.Matches(labels.Set(set))
}

// loadConfig loads rules.toml text with emergentd's own loader, as the daemon does at start.
func loadConfig(t *testing.T, text, path string) *config.Config {
	t.Helper()
	cfg, err := config.Load([]byte(text), path)
	if err != nil {
		t.Fatalf("emergentd cannot load the rendered rules.toml: %v\n%s", err, text)
	}
	return cfg
}

// rawReceivers decodes the [[receivers]] of rules.toml as written (before secrets are read).
func rawReceivers(t *testing.T, text string) map[string]map[string]any {
	t.Helper()
	var doc struct {
		Receivers []map[string]any `toml:"receivers"`
	}
	if _, err := toml.Decode(text, &doc); err != nil {
		t.Fatalf("rules.toml: %v", err)
	}
	out := map[string]map[string]any{}
	for _, r := range doc.Receivers {
		out[fmt.Sprint(r["name"])] = r
	}
	return out
}

func receiverTypes(cfg *config.Config) map[string]string {
	out := map[string]string{}
	for _, r := range cfg.Receivers {
		out[r.Name] = r.Type
	}
	return out
}

func receiver(t *testing.T, cfg *config.Config, name string) config.Receiver {
	t.Helper()
	for _, r := range cfg.Receivers {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no receiver %q", name)
	return config.Receiver{}
}

// checkNoSecretsInConfig: receivers in the ConfigMap reference secrets by file or env only,
// and the chart renders no Secret (it reads none: values hold Secret names, not values).
func checkNoSecretsInConfig(t *testing.T, r *rendered) {
	t.Helper()
	for name, rc := range rawReceivers(t, r.rulesToml(t)) {
		for _, k := range []string{"webhook_url", "token", "url"} {
			if _, ok := rc[k]; ok {
				t.Errorf("receiver %s has an inline %s in the ConfigMap", name, k)
			}
		}
	}
	if strings.Contains(r.manifest, "\nkind: Secret\n") {
		t.Error("the chart renders a Secret")
	}
	for _, cm := range r.configMaps {
		for k, v := range cm.Data {
			for _, s := range []string{"hooks.slack.com/services/", "xoxb-", "xoxp-"} {
				if strings.Contains(v, s) {
					t.Errorf("ConfigMap %s key %s holds what looks like a Slack secret (%s)", cm.Name, k, s)
				}
			}
		}
	}
}

// checkPrometheusRule: the PrometheusRule's groups are files/emergentd-rules.yml's, with its
// job="emergentd" selectors naming job, the job the ServiceMonitor gives the targets.
func checkPrometheusRule(t *testing.T, r *rendered, job string) {
	t.Helper()
	if len(r.prometheusRules) != 1 {
		t.Fatalf("%d PrometheusRules, want 1", len(r.prometheusRules))
	}
	data, err := os.ReadFile(filepath.Join(chartDir, "files", "emergentd-rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	data = bytes.ReplaceAll(data, []byte(`job="emergentd"`), []byte(`job="`+job+`"`))
	for _, g := range r.prometheusRules[0].Spec.Groups {
		for _, rule := range g.Rules {
			for _, m := range jobSelector.FindAllStringSubmatch(rule.Expr.String(), -1) {
				if m[1] != job {
					t.Errorf("rule %s%s selects job %q, the ServiceMonitor sets %q", rule.Alert, rule.Record, m[1], job)
				}
			}
		}
	}
	var file struct {
		Groups []monitoringv1.RuleGroup `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(data, &file); err != nil {
		t.Fatalf("files/emergentd-rules.yml: %v", err)
	}
	got := r.prometheusRules[0].Spec.Groups
	if len(file.Groups) == 0 || !reflect.DeepEqual(got, file.Groups) {
		a, _ := json.MarshalIndent(got, "", "  ")
		b, _ := json.MarshalIndent(file.Groups, "", "  ")
		t.Errorf("PrometheusRule groups differ from files/emergentd-rules.yml:\n%s\nwant\n%s", a, b)
	}
}

// checkDashboard: a ConfigMap labelled for Grafana's sidecar holding the dashboard's JSON.
func checkDashboard(t *testing.T, r *rendered) {
	t.Helper()
	cm := r.dashboardConfigMap(t)
	if cm == nil {
		t.Fatal("no dashboard ConfigMap")
	}
	if cm.Labels["grafana_dashboard"] != "1" {
		t.Errorf("dashboard labels = %v, want grafana_dashboard: \"1\"", cm.Labels)
	}
	if len(cm.Data) != 1 {
		t.Fatalf("dashboard ConfigMap has %d keys, want 1", len(cm.Data))
	}
	want, err := os.ReadFile(filepath.Join(chartDir, "files", "emergentd-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range cm.Data {
		if !strings.HasSuffix(k, ".json") {
			t.Errorf("dashboard key %q: the sidecar expects a .json file name", k)
		}
		var dash map[string]any
		if err := json.Unmarshal([]byte(v), &dash); err != nil {
			t.Fatalf("dashboard %s is not valid JSON: %v", k, err)
		}
		if strings.TrimSpace(v) != strings.TrimSpace(string(want)) {
			t.Errorf("dashboard %s differs from files/emergentd-dashboard.json", k)
		}
	}
}
