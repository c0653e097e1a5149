{{/* Chart name. */}}
{{- define "worldloom.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: release-chart, unless overridden. */}}
{{- define "worldloom.fullname" -}}
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

{{- define "worldloom.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "worldloom.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one role: pass (dict "ctx" $ "role" "node"). */}}
{{- define "worldloom.selector" -}}
app.kubernetes.io/name: {{ include "worldloom.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "worldloom.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "worldloom.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "worldloom.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "worldloom.clusterSecretName" -}}
{{- default (printf "%s-cluster" (include "worldloom.fullname" .)) .Values.cluster.existingSecret -}}
{{- end -}}

{{- define "worldloom.s3SecretName" -}}
{{- default (printf "%s-s3" (include "worldloom.fullname" .)) .Values.storage.s3.existingSecret -}}
{{- end -}}

{{/* Whether S3 credentials come from a Secret at all. */}}
{{- define "worldloom.s3Credentials" -}}
{{- if or .Values.storage.s3.existingSecret .Values.storage.s3.accessKeyId -}}true{{- end -}}
{{- end -}}

{{/* Environment every Worldloom container gets. */}}
{{- define "worldloom.env" -}}
- name: WORLDLOOM_CONFIG
  value: /etc/worldloom/worldloom.toml
- name: RUST_LOG
  value: {{ .Values.logLevel | quote }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: WORLDLOOM_CLUSTER__SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "worldloom.clusterSecretName" . }}
      key: {{ .Values.cluster.secretKey }}
{{- if include "worldloom.s3Credentials" . }}
- name: WORLDLOOM_S3__ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ include "worldloom.s3SecretName" . }}
      key: {{ .Values.storage.s3.accessKeyIdKey }}
- name: WORLDLOOM_S3__SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "worldloom.s3SecretName" . }}
      key: {{ .Values.storage.s3.secretAccessKeyKey }}
{{- end }}
{{- end -}}

{{/* Pod-level checksums: a config or secret change rolls every pod. */}}
{{- define "worldloom.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end -}}

{{- define "worldloom.securityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
