{{/* The objects' common name and labels. */}}
{{- define "wasmpod.name" -}}
{{- printf "%s-node-installer" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "wasmpod.labels" -}}
app.kubernetes.io/name: wasmpod
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "wasmpod.selectorLabels" -}}
app.kubernetes.io/name: wasmpod
app.kubernetes.io/component: node-installer
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "wasmpod.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The installer's --handlers list: NAME=RUNTIME for each enabled handler. */}}
{{- define "wasmpod.handlers" -}}
{{- $list := list -}}
{{- range $runtime := list "wasmpod" "spin" "wasmtime" -}}
{{- $h := index $.Values.handlers $runtime -}}
{{- if $h.enabled -}}
{{- $list = append $list (printf "%s=%s" $h.name $runtime) -}}
{{- end -}}
{{- end -}}
{{- if not $list -}}
{{- fail "handlers: enable at least one" -}}
{{- end -}}
{{- join "," $list -}}
{{- end -}}

{{/* The node labels RuntimeClasses select on. */}}
{{- define "wasmpod.runtimeNodeSelector" -}}
{{- if .Values.runtimeClasses.nodeSelector -}}
{{- toYaml .Values.runtimeClasses.nodeSelector -}}
{{- else -}}
wasmpod.dev/installed: {{ .Chart.AppVersion | quote }}
{{- end -}}
{{- end -}}
