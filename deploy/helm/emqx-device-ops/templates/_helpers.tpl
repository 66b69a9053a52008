{{- define "edo.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "edo.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "edo.labels" -}}
app.kubernetes.io/name: {{ include "edo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "worker") */}}
{{- define "edo.selector" -}}
app.kubernetes.io/name: {{ include "edo.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "edo.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "edo.secretName" -}}
{{ .Values.secrets.existingSecret | default (include "edo.fullname" .) }}
{{- end -}}

{{- define "edo.webhookUrl" -}}
{{ .Values.webhook.publicUrl | default (printf "http://%s-webhook.%s.svc:%d/emqx/events" (include "edo.fullname" .) .Release.Namespace (int .Values.webhook.port)) }}
{{- end -}}

{{/* One variable from the Secret; optional ones may be missing from an existingSecret. */}}
{{- define "edo.secretEnv" -}}
- name: {{ .key }}
  valueFrom:
    secretKeyRef:
      name: {{ include "edo.secretName" .root }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end -}}

{{/*
Checks values the whole chart needs, with messages naming the value. `required` fails `helm
install`, `helm upgrade` and `helm template` alike.
*/}}
{{- define "edo.validate" -}}
{{- $_ := required "temporal.address is required: host:port of the Temporal frontend (self-hosted) or <namespace>.<account>.tmprl.cloud:7233 (Temporal Cloud)" .Values.temporal.address -}}
{{- if not (regexMatch "^[^:/ ]+:[0-9]+$" .Values.temporal.address) -}}
{{- fail (printf "temporal.address must be host:port, not %q" .Values.temporal.address) -}}
{{- end -}}
{{- $url := required "emqx.apiUrl is required: the EMQX cluster's management API, e.g. http://emqx-dashboard.emqx.svc:18083/api/v5" .Values.emqx.apiUrl -}}
{{- if not (regexMatch "^https?://" $url) -}}
{{- fail (printf "emqx.apiUrl must be an http(s) URL, not %q" $url) -}}
{{- end -}}
{{- if not .Values.secrets.existingSecret -}}
{{- $uri := required "mongodb.uri is required (or secrets.existingSecret with MONGODB_URI): a replica-set URI such as mongodb://user:pass@mongo-0,mongo-1,mongo-2:27017/?replicaSet=rs0" .Values.mongodb.uri -}}
{{- if not (regexMatch "^mongodb(\\+srv)?://" $uri) -}}
{{- fail "mongodb.uri must be a mongodb:// or mongodb+srv:// URI" -}}
{{- end -}}
{{- $_ := required "emqx.apiKey is required (or secrets.existingSecret with EMQX_API_KEY)" .Values.emqx.apiKey -}}
{{- $_ := required "emqx.apiSecret is required (or secrets.existingSecret with EMQX_API_SECRET)" .Values.emqx.apiSecret -}}
{{- $token := required "webhook.token is required (or secrets.existingSecret with WEBHOOK_TOKEN): the shared secret EMQX sends, at least 16 characters" .Values.webhook.token -}}
{{- if lt (len $token) 16 -}}
{{- fail "webhook.token must be at least 16 characters" -}}
{{- end -}}
{{- $_ := required "payloadEncryptionKeys is required (or secrets.existingSecret with PAYLOAD_ENCRYPTION_KEYS): id:base64-key pairs, see docs/security.md" .Values.payloadEncryptionKeys -}}
{{- if and .Values.codec.enabled (not .Values.codec.token) (not .Values.codec.jwksUrl) -}}
{{- fail "codec.token or codec.jwksUrl (with jwtIssuer and jwtAudience) is required while codec.enabled: the codec server refuses to listen on all interfaces unauthenticated" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Variables every component reads: non-secret ones from the ConfigMap, credentials from the Secret. */}}
{{- define "edo.commonEnv" -}}
{{ include "edo.secretEnv" (dict "root" . "key" "MONGODB_URI") }}
{{ include "edo.secretEnv" (dict "root" . "key" "PAYLOAD_ENCRYPTION_KEYS") }}
{{ include "edo.secretEnv" (dict "root" . "key" "TEMPORAL_API_KEY" "optional" true) }}
{{- end -}}

{{- define "edo.emqxEnv" -}}
{{ include "edo.secretEnv" (dict "root" . "key" "EMQX_API_KEY") }}
{{ include "edo.secretEnv" (dict "root" . "key" "EMQX_API_SECRET") }}
{{- end -}}

{{- define "edo.podDefaults" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: tmp
    emptyDir: {}
{{- end -}}

{{/* PDB and HPA of one Deployment: (dict "root" $ "component" "webhook" "values" .Values.webhook) */}}
{{- define "edo.scaling" -}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "edo.fullname" .root }}-{{ .component }}
  labels:
    {{- include "edo.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  maxUnavailable: {{ .values.pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "edo.selector" . | nindent 6 }}
{{- if .values.autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "edo.fullname" .root }}-{{ .component }}
  labels:
    {{- include "edo.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "edo.fullname" .root }}-{{ .component }}
  minReplicas: {{ .values.autoscaling.minReplicas }}
  maxReplicas: {{ .values.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ .values.autoscaling.targetCPUUtilizationPercentage }}
{{- end }}
{{- end -}}
