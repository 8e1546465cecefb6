{{/*
The chart name, or nameOverride. Kubernetes names are at most 63 characters (DNS labels).
*/}}
{{- define "emergentd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's resources: fullnameOverride, or "<release>-<name>" (just the
release name when it already contains the chart name).
*/}}
{{- define "emergentd.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
"<chart>-<version>" for the helm.sh/chart label.
*/}}
{{- define "emergentd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource.
*/}}
{{- define "emergentd.labels" -}}
helm.sh/chart: {{ include "emergentd.chart" . }}
{{ include "emergentd.selectorLabels" . }}
app.kubernetes.io/version: {{ (.Values.image.tag | default .Chart.AppVersion) | toString | trunc 63 | quote }}
app.kubernetes.io/component: detector
app.kubernetes.io/part-of: emergent
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels: fixed for the life of a release (a Deployment's selector is immutable).
*/}}
{{- define "emergentd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "emergentd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The ServiceAccount the pods run as.
*/}}
{{- define "emergentd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "emergentd.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: repository:tag, or repository@digest.
*/}}
{{- define "emergentd.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}
{{- end }}

{{/* Paths inside the container. */}}
{{- define "emergentd.configDir" -}}/etc/emergent{{- end }}
{{- define "emergentd.storagePath" -}}/var/lib/emergent{{- end }}
{{- define "emergentd.secretsDir" -}}/etc/emergent-secrets{{- end }}

{{/*
The Slack secret's key in the rules.toml (webhook_url or token) and in the Secret.
*/}}
{{- define "emergentd.slackConfigKey" -}}
{{- if eq .Values.receivers.slack.mode "bot" }}token{{ else }}webhook_url{{ end }}
{{- end }}
{{- define "emergentd.slackSecretKey" -}}
{{- $s := .Values.receivers.slack }}
{{- if $s.secretKey }}{{ $s.secretKey }}{{ else if eq $s.mode "bot" }}token{{ else }}webhook-url{{ end }}
{{- end }}
{{- define "emergentd.slackEnv" -}}
{{- if eq .Values.receivers.slack.mode "bot" }}EMERGENT_SLACK_TOKEN{{ else }}EMERGENT_SLACK_WEBHOOK_URL{{ end }}
{{- end }}

{{/*
Checks of values that the schema cannot express; rendered (as nothing) by the Deployment.
*/}}
{{- define "emergentd.validate" -}}
{{- $r := .Values.receivers }}
{{- if $r.slack.enabled }}
{{- if not $r.slack.existingSecret }}
{{- fail "receivers.slack.existingSecret is required when receivers.slack.enabled: the name of an existing Secret with the Slack webhook URL or bot token" }}
{{- end }}
{{- if and (eq $r.slack.mode "bot") (not $r.slack.channel) }}
{{- fail "receivers.slack.channel is required in bot mode (e.g. \"#oncall\")" }}
{{- end }}
{{- end }}
{{- if and $r.webhook.enabled (not $r.webhook.existingSecret) }}
{{- fail "receivers.webhook.existingSecret is required when receivers.webhook.enabled: the name of an existing Secret with the webhook URL" }}
{{- end }}
{{- if and .Values.persistence.enabled (gt (int .Values.replicaCount) 1) }}
{{- fail "persistence.enabled needs replicaCount: 1 — two replicas cannot share one state file. An HA pair routes Slack through Alertmanager and needs no state (persistence.enabled: false)" }}
{{- end }}
{{- if and (not .Values.prometheus.urlSecret.name) (not .Values.prometheus.url) }}
{{- fail "prometheus.url (or prometheus.urlSecret.name) is required: in a pod the shipped rules.toml's 127.0.0.1:9090 is the pod itself" }}
{{- end }}
{{- end }}

{{/*
A [[routes]] entry: (dict "receiver" NAME "route" .Values.receivers.X.route).
*/}}
{{- define "emergentd.routeToml" -}}
[[routes]]
receiver = {{ .receiver | toJson }}
{{- with .route }}
{{- with .kinds }}
kinds = {{ toJson . }}
{{- end }}
{{- with .severities }}
severities = {{ toJson . }}
{{- end }}
{{- with .match }}
{{- $pairs := list }}
{{- range $k, $v := . }}
{{- $pairs = append $pairs (printf "%s = %s" ($k | toJson) ($v | toString | toJson)) }}
{{- end }}
match = { {{ join ", " $pairs }} }
{{- end }}
{{- end }}
{{- end }}

{{/*
The receivers and routes generated from .Values.receivers, in TOML. Strings are written with
toJson: a JSON string is a valid TOML basic string. Secrets appear only as the path of a mounted
file (<key>_file) or the name of an environment variable (<key>_env).
*/}}
{{- define "emergentd.receiversToml" -}}
{{- $r := .Values.receivers }}
{{- $secrets := include "emergentd.secretsDir" . }}
{{- if or $r.alertmanager.urls $r.slack.enabled $r.webhook.enabled }}
# ---------------------------------------------------------------------------------------------
# Receivers and routes generated by the Helm chart from its values (receivers.*). Secrets are
# referenced by a mounted file or an environment variable, never written here.
{{- if $r.alertmanager.urls }}

[[receivers]]
name = {{ $r.alertmanager.name | toJson }}
type = "alertmanager"
urls = {{ toJson $r.alertmanager.urls }}
{{- end }}
{{- if $r.slack.enabled }}

[[receivers]]
name = {{ $r.slack.name | toJson }}
type = "slack"
{{- if eq $r.slack.from "env" }}
{{ include "emergentd.slackConfigKey" . }}_env = {{ include "emergentd.slackEnv" . | toJson }}
{{- else }}
{{ include "emergentd.slackConfigKey" . }}_file = {{ printf "%s/slack/%s" $secrets (include "emergentd.slackSecretKey" .) | toJson }}
{{- end }}
{{- if eq $r.slack.mode "bot" }}
channel = {{ $r.slack.channel | toJson }}
{{- end }}
{{- end }}
{{- if $r.webhook.enabled }}

[[receivers]]
name = {{ $r.webhook.name | toJson }}
type = "webhook"
{{- if eq $r.webhook.from "env" }}
url_env = "EMERGENT_WEBHOOK_URL"
{{- else }}
url_file = {{ printf "%s/webhook/%s" $secrets $r.webhook.secretKey | toJson }}
{{- end }}
{{- end }}
{{- if $r.alertmanager.urls }}

{{ include "emergentd.routeToml" (dict "receiver" $r.alertmanager.name "route" $r.alertmanager.route) }}
{{- end }}
{{- if $r.slack.enabled }}

{{ include "emergentd.routeToml" (dict "receiver" $r.slack.name "route" $r.slack.route) }}
{{- end }}
{{- if $r.webhook.enabled }}

{{ include "emergentd.routeToml" (dict "receiver" $r.webhook.name "route" $r.webhook.route) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The whole rules.toml: config.rulesToml or the shipped file, then the generated receivers and
routes, then config.extra.
*/}}
{{- define "emergentd.rulesToml" -}}
{{- $base := .Values.config.rulesToml | default (.Files.Get "config/rules.toml") -}}
# Rendered by the emergentd Helm chart: {{ if .Values.config.rulesToml }}config.rulesToml{{ else }}the shipped rules.toml{{ end }}, then receivers, routes and config.extra.
{{- if not $base }}
{{- fail "config/rules.toml is missing from the chart and config.rulesToml is empty" }}
{{- end }}
{{ $base | trimSuffix "\n" }}
{{- with include "emergentd.receiversToml" . }}

{{ . }}
{{- end }}
{{- with .Values.config.extra }}

{{ . | trimSuffix "\n" }}
{{- end }}
{{- end }}
