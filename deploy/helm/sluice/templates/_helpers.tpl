{{/*
Named templates of the Sluice chart. Most take the chart's root context; the component ones take
(dict "root" $ "component" "proxy"). `sluice.sidecarContainer` and `sluice.sidecarVolumes` are the
public ones: a parent chart includes them with `.Subcharts.sluice` (README.md, "Sidecar").
*/}}

{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sluice.fullname" -}}
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

{{- define "sluice.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object; (dict "root" $ "component" "proxy"), component optional. */}}
{{- define "sluice.labels" -}}
{{- $root := .root -}}
helm.sh/chart: {{ include "sluice.chart" $root }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: sluice
{{- with $root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels; (dict "root" $ "component" "proxy"), component optional. */}}
{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{/* The component names of the Sluice processes this release runs as Deployments. */}}
{{- define "sluice.hasControl" -}}
{{- if or (eq .Values.mode "redis") (and (eq .Values.mode "sidecar") (eq .Values.sidecar.store "redis")) }}true{{ end }}
{{- end }}

{{- define "sluice.usesRedis" -}}
{{- include "sluice.hasControl" . }}
{{- end }}

{{/*
The process that runs the Experiment controller (--kubernetes): `sluice start` in all-in-one mode
(leadership by a Lease), else the control plane (leadership by its Redis lease). Empty: none can
(sidecars with their own state).
*/}}
{{- define "sluice.controllerComponent" -}}
{{- if eq .Values.mode "all-in-one" }}all-in-one{{ else if include "sluice.hasControl" . }}control{{ end }}
{{- end }}

{{/* The arguments that turn the controller on: --kubernetes, --namespace, --kubernetes-allow-exec. */}}
{{- define "sluice.controllerArgs" -}}
{{- $args := list "--kubernetes" "--namespace" (ternary "*" (include "sluice.watchNamespace" .) .Values.controller.watchAllNamespaces) }}
{{- if .Values.controller.allowExec }}
{{- $args = append $args "--kubernetes-allow-exec" }}
{{- end }}
{{- if eq .Values.mode "all-in-one" }}
{{- $args = concat $args (list "--lease-name" (printf "%s-controller" (include "sluice.fullname" .))) }}
{{- end }}
{{- toJson $args }}
{{- end }}

{{/* Refuses combinations the schema cannot express in a readable way. Included by every template. */}}
{{- define "sluice.validate" -}}
{{- if and .Values.controller.enabled (not (include "sluice.controllerComponent" .)) }}
{{- fail "controller.enabled needs one Sluice that owns the experiments: mode all-in-one or redis, or mode sidecar with sidecar.store redis (sidecars with their own state cannot share Experiments)" }}
{{- end }}
{{- if and .Values.controller.allowExec (not .Values.allowExec) }}
{{- fail "controller.allowExec (--kubernetes-allow-exec) needs allowExec=true too: exec tasks are off in the process otherwise" }}
{{- end }}
{{- if include "sluice.usesRedis" . }}
{{- if and .Values.redis.enabled (or .Values.redis.url .Values.redis.existingSecret) }}
{{- fail "redis.enabled deploys a Redis: leave redis.url and redis.existingSecret empty, or set redis.enabled=false to use yours" }}
{{- end }}
{{- if not (or .Values.redis.enabled .Values.redis.url .Values.redis.existingSecret) }}
{{- fail "mode redis needs a Redis: redis.enabled=true (deployed by the chart), redis.url or redis.existingSecret" }}
{{- end }}
{{- end }}
{{- if and .Values.monitoring.serviceMonitor.enabled .Values.monitoring.podMonitor.enabled }}
{{- fail "monitoring.serviceMonitor.enabled and monitoring.podMonitor.enabled would scrape every pod twice: choose one" }}
{{- end }}
{{- end }}

{{- define "sluice.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "sluice.authSecretName" -}}
{{- default (printf "%s-auth" (include "sluice.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{- define "sluice.configMapName" -}}
{{- printf "%s-config" (include "sluice.fullname" .) }}
{{- end }}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sluice.controllerServiceAccountName" -}}
{{- printf "%s-controller" (include "sluice.fullname" .) }}
{{- end }}

{{- define "sluice.redisUrlSecretName" -}}
{{- default (printf "%s-redis-url" (include "sluice.fullname" .)) .Values.redis.existingSecret }}
{{- end }}

{{- define "sluice.watchNamespace" -}}
{{- default .Release.Namespace .Values.controller.watchNamespace }}
{{- end }}

{{/*
The sluice.yaml of `sluice start` / `sluice proxy` / the sidecar. The admin API listens beyond loopback
(probes and Prometheus come from outside the pod); its token arrives through SLUICE_TOKEN_FILE or
SLUICE_TOKEN, which override the file, so no token is written here. The store comes from
SLUICE_REDIS_URL, the log level from SLUICE_LOG_LEVEL.
*/}}
{{- define "sluice.configYaml" -}}
{{- $config := .Values.config }}
{{- if kindIs "string" $config }}
{{- /* A whole sluice.yaml (`--set-file config=sluice.yaml`): its admin and store sections are the chart's. */}}
{{- $config = fromYaml $config }}
{{- if hasKey $config "Error" }}
{{- fail (printf "config: not a YAML mapping Helm can read (quote ${VAR} references inside { }): %s" $config.Error) }}
{{- end }}
{{- end }}
{{- $doc := omit $config "admin" "store" }}
{{- if not $doc.listen }}
{{- $_ := set $doc "listen" (printf "0.0.0.0:%v" .Values.ports.http) }}
{{- end }}
{{- $address := $doc.listen }}
{{- if kindIs "map" $address }}{{ $address = $address.address }}{{ end }}
{{- if and (kindIs "string" $address) (not (hasSuffix (printf ":%v" .Values.ports.http) $address)) }}
{{- fail (printf "config.listen %s: the traffic port must be ports.http (%v), the port the pods and Services expose" $address .Values.ports.http) }}
{{- end }}
{{- $_ := set $doc "admin" (dict "listen" (printf "0.0.0.0:%v" .Values.ports.admin)) }}
{{- range $k := list "proxy" "rewards" }}
{{- if not (get $doc $k) }}{{ $_ := unset $doc $k }}{{ end }}
{{- end }}
{{- toYaml $doc }}
{{- end }}

{{- define "sluice.configChecksum" -}}
{{- include "sluice.configYaml" . | sha256sum }}
{{- end }}

{{/* Pod-level settings shared by the Sluice Deployments; (dict "root" $ "values" .Values.proxy). */}}
{{- define "sluice.podScheduling" -}}
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
{{- with .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The environment of a Sluice container; (dict "root" $ "component" "proxy").
component: all-in-one | proxy | control | sidecar.
*/}}
{{- define "sluice.env" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $redis := and (ne .component "all-in-one") (or (ne .component "sidecar") (eq $v.sidecar.store "redis")) -}}
- name: SLUICE_LOG_LEVEL
  value: {{ $v.logLevel | quote }}
{{- if eq $v.auth.source "file" }}
- name: SLUICE_TOKEN_FILE
  value: /var/run/secrets/sluice/token
{{- else }}
- name: SLUICE_TOKEN
  valueFrom:
    secretKeyRef: { name: {{ include "sluice.authSecretName" $root }}, key: {{ $v.auth.tokenKey }} }
{{- end }}
{{- if $redis }}
{{- if $v.redis.enabled }}
- name: SLUICE_REDIS_URL
  value: {{ printf "redis://%s-redis:6379" (include "sluice.fullname" $root) | quote }}
{{- else }}
- name: SLUICE_REDIS_URL
  valueFrom:
    secretKeyRef: { name: {{ include "sluice.redisUrlSecretName" $root }}, key: {{ $v.redis.existingSecretKey }} }
{{- end }}
- name: SLUICE_REDIS_PREFIX
  value: {{ $v.redis.prefix | quote }}
# The same value on proxies and control: lets `load` tasks pin synthetic traffic to a version.
- name: SLUICE_PIN_TOKEN
  valueFrom:
    secretKeyRef: { name: {{ include "sluice.authSecretName" $root }}, key: {{ $v.auth.pinTokenKey }} }
{{- end }}
{{- if eq .component "control" }}
{{- $proxyUrl := $v.control.proxyUrl | default (ternary (printf "http://%s:%v" (include "sluice.fullname" $root) $v.service.port) "" (eq $v.mode "redis")) }}
{{- with $proxyUrl }}
# Where `load` tasks send synthetic traffic.
- name: SLUICE_PROXY_URL
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- if and $v.allowExec (has .component (list "all-in-one" "control" "sidecar")) (or (ne .component "sidecar") (eq $v.sidecar.store "memory")) }}
- name: SLUICE_ALLOW_EXEC
  value: "1"
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Volume mounts of a Sluice container; (dict "root" $ "component" "proxy"). */}}
{{- define "sluice.volumeMounts" -}}
{{- $v := .root.Values -}}
{{- if ne .component "control" }}
- { name: sluice-config, mountPath: /etc/sluice, readOnly: true }
{{- end }}
{{- if eq $v.auth.source "file" }}
- { name: sluice-token, mountPath: /var/run/secrets/sluice, readOnly: true }
{{- end }}
- { name: sluice-tmp, mountPath: /tmp }
{{- with $v.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Volumes of a pod with a Sluice container; (dict "root" $ "component" "proxy"). */}}
{{- define "sluice.volumes" -}}
{{- $v := .root.Values -}}
{{- if ne .component "control" }}
- name: sluice-config
  configMap: { name: {{ include "sluice.configMapName" .root }} }
{{- end }}
{{- if eq $v.auth.source "file" }}
- name: sluice-token
  secret:
    secretName: {{ include "sluice.authSecretName" .root }}
    items: [{ key: {{ $v.auth.tokenKey }}, path: token }]
    {{- /* Readable by the pod's fsGroup; a sidecar cannot count on your pod's fsGroup, and only its container mounts the file. */}}
    defaultMode: {{ ternary 0440 0444 (and (ne .component "sidecar") (hasKey $v.podSecurityContext "fsGroup")) }}
{{- end }}
- name: sluice-tmp
  emptyDir: { sizeLimit: 64Mi }
{{- with $v.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Probes on a named port; (dict "root" $ "port" "admin"). /readyz is 503 while draining after SIGTERM
(and, on the control API, while Redis does not answer); /healthz is liveness.
*/}}
{{- define "sluice.probes" -}}
{{- $p := .root.Values.probes -}}
livenessProbe:
  httpGet: { path: /healthz, port: {{ .port }} }
  {{- toYaml $p.liveness | nindent 2 }}
readinessProbe:
  httpGet: { path: /readyz, port: {{ .port }} }
  {{- toYaml $p.readiness | nindent 2 }}
{{- end }}

{{- define "sluice.preStop" -}}
{{- if gt (int .Values.preStopSleepSeconds) 0 }}
lifecycle:
  preStop:
    exec: { command: ["sleep", {{ .Values.preStopSleepSeconds | quote }}] }
{{- end }}
{{- end }}

{{/*
The Sluice container of a sidecar: include it in your pod's `containers:` list. From a chart that has
Sluice as a dependency (Chart.yaml `dependencies: [{ name: sluice, … }]`):

  containers:
    - name: app            # listening on 127.0.0.1 only: clients reach it through Sluice
      …
    {{- include "sluice.sidecarContainer" .Subcharts.sluice | nindent 4 }}
  volumes:
    {{- include "sluice.sidecarVolumes" .Subcharts.sluice | nindent 4 }}

The context is the Sluice chart's own (`.Subcharts.sluice` from the parent, `.` inside this chart).
*/}}
{{- define "sluice.sidecarContainer" -}}
{{- $ctx := dict "root" . "component" "sidecar" -}}
- name: {{ .Values.sidecar.containerName }}
  image: {{ include "sluice.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: [{{ ternary "start" "proxy" (eq .Values.sidecar.store "memory") | quote }}, "-c", "/etc/sluice/sluice.yaml"]
  env:
    {{- include "sluice.env" $ctx | trim | nindent 4 }}
  ports:
    - { name: sluice-http, containerPort: {{ .Values.ports.http }}, protocol: TCP }
    - { name: sluice-admin, containerPort: {{ .Values.ports.admin }}, protocol: TCP }
  {{- include "sluice.probes" (dict "root" . "port" "sluice-admin") | nindent 2 }}
  {{- with include "sluice.preStop" . }}
  {{- . | trim | nindent 2 }}
  {{- end }}
  resources:
    {{- toYaml .Values.sidecar.resources | nindent 4 }}
  securityContext:
    {{- include "sluice.sidecarSecurityContext" . | nindent 4 }}
  volumeMounts:
    {{- include "sluice.volumeMounts" $ctx | trim | nindent 4 }}
{{- end }}

{{/*
The sidecar's securityContext: containerSecurityContext plus the user and seccomp settings that
podSecurityContext gives the chart's own pods (the pod-level context of your pod is yours).
*/}}
{{- define "sluice.sidecarSecurityContext" -}}
{{- $sc := deepCopy .Values.containerSecurityContext }}
{{- range $k := list "runAsNonRoot" "runAsUser" "runAsGroup" "seccompProfile" }}
{{- if and (hasKey $.Values.podSecurityContext $k) (not (hasKey $sc $k)) }}
{{- $_ := set $sc $k (get $.Values.podSecurityContext $k) }}
{{- end }}
{{- end }}
{{- toYaml $sc }}
{{- end }}

{{/* The volumes the sidecar container mounts: include them in your pod's `volumes:` list. */}}
{{- define "sluice.sidecarVolumes" -}}
{{- include "sluice.volumes" (dict "root" . "component" "sidecar") | trim }}
{{- end }}

{{/*
A Deployment of a Sluice process; (dict "root" $ "component" "proxy" "values" .Values.proxy
"name" "…" "args" (list …) "port" "admin" "replicas" 3). replicas nil: left to the HPA.
*/}}
{{- define "sluice.deployment" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $cv := .values }}
{{- $controller := and $v.controller.enabled (eq .component (include "sluice.controllerComponent" $root)) }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .name }}
  labels:
    {{- include "sluice.labels" (dict "root" $root "component" .component) | nindent 4 }}
spec:
  {{- if not (kindIs "invalid" .replicas) }}
  replicas: {{ .replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "sluice.selectorLabels" (dict "root" $root "component" .component) | nindent 6 }}
  strategy:
    type: RollingUpdate
    # A new pod is ready before an old one stops.
    rollingUpdate: { maxSurge: 1, maxUnavailable: 0 }
  template:
    metadata:
      labels:
        {{- include "sluice.labels" (dict "root" $root "component" .component) | nindent 8 }}
        {{- with $cv.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        {{- if ne .component "control" }}
        # Sluice reads its sluice.yaml at start only: a changed config rolls the pods.
        checksum/config: {{ include "sluice.configChecksum" $root }}
        {{- end }}
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ .portNumber | quote }}
        prometheus.io/path: /metrics
        {{- with $cv.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- if $controller }}
      serviceAccountName: {{ include "sluice.controllerServiceAccountName" $root }}
      # The Experiment controller talks to the API server (Experiments, their status, Events{{ if eq .component "all-in-one" }}, its Lease{{ end }}).
      automountServiceAccountToken: true
      {{- else }}
      serviceAccountName: {{ include "sluice.serviceAccountName" $root }}
      # Nothing in this pod talks to the API server.
      automountServiceAccountToken: false
      {{- end }}
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      securityContext:
        {{- toYaml $v.podSecurityContext | nindent 8 }}
      {{- with include "sluice.podScheduling" (dict "root" $root "values" $cv) }}
      {{- . | nindent 6 }}
      {{- end }}
      containers:
        - name: sluice
          image: {{ include "sluice.image" $root }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args:
            {{- toYaml (ternary (concat .args (include "sluice.controllerArgs" $root | fromJsonArray)) .args $controller) | nindent 12 }}
          env:
            {{- include "sluice.env" (dict "root" $root "component" .component) | trim | nindent 12 }}
          ports:
            {{- if ne .component "control" }}
            - { name: http, containerPort: {{ $v.ports.http }}, protocol: TCP }
            {{- end }}
            - { name: {{ .port }}, containerPort: {{ .portNumber }}, protocol: TCP }
          {{- include "sluice.probes" (dict "root" $root "port" .port) | nindent 10 }}
          {{- if ne .component "control" }}
          {{- with include "sluice.preStop" $root }}
          {{- . | trim | nindent 10 }}
          {{- end }}
          {{- end }}
          resources:
            {{- toYaml $cv.resources | nindent 12 }}
          securityContext:
            {{- toYaml $v.containerSecurityContext | nindent 12 }}
          volumeMounts:
            {{- include "sluice.volumeMounts" (dict "root" $root "component" .component) | trim | nindent 12 }}
      volumes:
        {{- include "sluice.volumes" (dict "root" $root "component" .component) | trim | nindent 8 }}
{{- end }}
