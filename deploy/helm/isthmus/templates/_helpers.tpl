{{/* Names and shared pod settings. Resource names the components look for (Secrets, ConfigMaps,
the hub's lease) are fixed by the code; only the chart's own objects carry the release name. */}}

{{- define "isthmus.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The name of one component's objects: <fullname>-<component>. */}}
{{- define "isthmus.component" -}}
{{- printf "%s-%s" (include "isthmus.fullname" .root | trunc 50 | trimSuffix "-") .component -}}
{{- end -}}

{{- define "isthmus.labels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/component: {{ .component }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "isthmus.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "isthmus.image" -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}

{{/* Pod metadata annotations: Prometheus scraping of the status server, and a checksum of the
configuration so a changed ConfigMap rolls the pods. */}}
{{- define "isthmus.podAnnotations" -}}
{{- if .root.Values.metrics.scrape }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
checksum/config: {{ .config | sha256sum }}
{{- end -}}

{{/* The pod's security context: no root, no privilege, the runtime's seccomp profile. */}}
{{- define "isthmus.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "isthmus.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Probes on the status server: /healthz says the process is alive, /readyz that it is ready. */}}
{{- define "isthmus.probes" -}}
startupProbe:
  httpGet: { path: /healthz, port: status }
  periodSeconds: 2
  failureThreshold: 60
livenessProbe:
  httpGet: { path: /healthz, port: status }
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet: { path: /readyz, port: status }
  periodSeconds: 5
  failureThreshold: 2
{{- end -}}

{{- define "isthmus.commonEnv" -}}
- name: ISTHMUS_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- end -}}

{{/* The hub's configuration file (hub/config.ts). */}}
{{- define "isthmus.hubConfig" -}}
{{- $hub := .Values.hub -}}
{{- $endpoints := $hub.advertiseEndpoints -}}
{{- if not $endpoints -}}
{{- $endpoints = list (printf "%s.%s.svc:%d" (include "isthmus.component" (dict "root" . "component" "hub")) .Release.Namespace (int $hub.grpc.port)) -}}
{{- end -}}
{{- $nats := dict "urls" $hub.nats.urls "replicas" $hub.nats.replicas "caFile" "/etc/isthmus/nats/ca.crt" "certFile" "/etc/isthmus/nats/tls.crt" "keyFile" "/etc/isthmus/nats/tls.key" -}}
{{- if $hub.nats.nkey -}}
{{- $_ := set $nats "nkeySeedFile" "/etc/isthmus/nats/nkey.seed" -}}
{{- end -}}
{{- if $hub.nats.authCallout -}}
{{- $_ := set $nats "authCallout" (dict "issuerSeedFile" "/etc/isthmus/nats/issuer.seed" "systemNkeySeedFile" "/etc/isthmus/nats/system.seed") -}}
{{- end -}}
{{- $config := dict "trustDomain" $hub.trustDomain "namespace" .Release.Namespace "trustNamespace" $hub.trustNamespace "grpc" (dict "host" "0.0.0.0" "port" (int $hub.grpc.port)) "status" (dict "host" "0.0.0.0" "port" (int $hub.statusPort)) "advertiseEndpoints" $endpoints "autoAccept" $hub.autoAccept "nats" $nats -}}
{{- if $hub.root.existingSecret -}}
{{- $_ := set $config "certificates" (dict "rootCertFile" "/etc/isthmus/root/tls.crt" "rootKeyFile" "/etc/isthmus/root/tls.key") -}}
{{- end -}}
{{- toYaml (mergeOverwrite $config (deepCopy $hub.settings)) -}}
{{- end -}}

{{/* The agent's configuration file (spoke-agent/config.ts). */}}
{{- define "isthmus.agentConfig" -}}
{{- $agent := .Values.agent -}}
{{- $config := dict "clusterId" $agent.clusterId "namespace" .Release.Namespace "gatewayName" .Values.gateway.name "gatewayAddresses" $agent.gatewayAddresses "labels" $agent.labels "status" (dict "host" "0.0.0.0" "port" (int $agent.statusPort)) "dns" (dict "enabled" $agent.dns.enabled "host" "0.0.0.0" "port" (int $agent.dns.port)) -}}
{{- range $key := list "region" "zone" "network" -}}
{{- if get $agent $key -}}
{{- $_ := set $config $key (get $agent $key) -}}
{{- end -}}
{{- end -}}
{{- toYaml (mergeOverwrite $config (deepCopy $agent.settings)) -}}
{{- end -}}

{{/* The gateway's configuration file (east-west-gateway/config.ts); outbound.address, the pod's
own IP, comes as a flag. */}}
{{- define "isthmus.gatewayConfig" -}}
{{- $gateway := .Values.gateway -}}
{{- $config := dict "clusterId" .Values.agent.clusterId "name" $gateway.name "namespace" .Release.Namespace "inbound" (dict "host" "0.0.0.0" "port" 15443) "status" (dict "host" "0.0.0.0" "port" (int $gateway.statusPort)) -}}
{{- toYaml (mergeOverwrite $config (deepCopy $gateway.settings)) -}}
{{- end -}}

{{/* A component's ServiceAccount bound to its ClusterRole and to its Role in each namespace given. */}}
{{- define "isthmus.bindings" -}}
{{- $ctx := .ctx }}
{{- $name := .name }}
{{- $ns := $ctx.root.Release.Namespace }}
{{- range .namespaces }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ $name }}
  namespace: {{ . }}
  labels:
    {{- include "isthmus.labels" $ctx | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ $name }}
subjects:
  - { kind: ServiceAccount, name: {{ $name }}, namespace: {{ $ns }} }
{{- end }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ $name }}
  labels:
    {{- include "isthmus.labels" $ctx | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ $name }}
subjects:
  - { kind: ServiceAccount, name: {{ $name }}, namespace: {{ $ns }} }
{{- end -}}
