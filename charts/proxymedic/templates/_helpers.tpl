{{/* Chart name. */}}
{{- define "proxymedic.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: the prefix of every object name. */}}
{{- define "proxymedic.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "proxymedic.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "proxymedic.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: proxymedic
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: call with (dict "root" $ "component" "operator"). */}}
{{- define "proxymedic.selectorLabels" -}}
app.kubernetes.io/name: {{ include "proxymedic.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "proxymedic.componentLabels" -}}
{{ include "proxymedic.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "proxymedic.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "proxymedic.operator.serviceAccountName" -}}
{{- default (printf "%s-operator" (include "proxymedic.fullname" .)) .Values.operator.serviceAccount.name -}}
{{- end -}}

{{- define "proxymedic.agent.serviceAccountName" -}}
{{- default (printf "%s-agent" (include "proxymedic.fullname" .)) .Values.agent.serviceAccount.name -}}
{{- end -}}

{{/* The name of the peering: fixed by the operator (`OperatorOptions.peering_name`). */}}
{{- define "proxymedic.peeringName" -}}proxymedic{{- end -}}
