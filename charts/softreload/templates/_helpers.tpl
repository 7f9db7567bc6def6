{{/*
The object names are fixed: the manager, the agents and the docs name them.
*/}}

{{/* Labels on every object. */}}
{{- define "softreload.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: softreload
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The manager pods' selector; also the webhook and metrics Services'. */}}
{{- define "softreload.selectorLabels" -}}
app.kubernetes.io/name: softreload
app.kubernetes.io/component: manager
{{- end }}

{{/* An image reference from {repository, tag, digest}; the tag defaults to
the chart's appVersion and a digest wins over the tag. Call with
(list $image $) */}}
{{- define "softreload.image" -}}
{{- $image := index . 0 -}}
{{- $root := index . 1 -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end }}

{{/* The Certificate's name in cert-manager mode (the CA injection names it). */}}
{{- define "softreload.certificateName" -}}
softreload-serving-cert
{{- end }}
