#!/usr/bin/env bash
# End-to-end test of the control plane itself (hack/kube-local): that the
# etcd + kube-apiserver + kube-controller-manager every other e2e test runs
# against is real and complete. It checks the fake nodes, the version,
# RBAC with real ServiceAccount tokens, namespace finalization by the
# namespace controller, garbage collection of dependents, and PV/PVC binding
# and protection by the volume controllers.
#
# Environment (set by the ctest fixture, see tests/CMakeLists.txt):
#   KUBECONFIG          admin kubeconfig of the control plane
#   PATH                with the control plane's bin/ (kubectl) first
#   PROVISIO_KUBE_DIR   the control plane directory (optional here)
# Run by hand:  . /tmp/kl/env && bash tests/e2e/control_plane_test.sh
#
# Output is TAP; the exit status is non-zero if any test failed.
set -euo pipefail

: "${KUBECONFIG:?KUBECONFIG must name the kube-local admin kubeconfig}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source_dir=${PROVISIO_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
KUBECTL=${KUBECTL:-kubectl}
command -v "$KUBECTL" >/dev/null || {
  echo "Bail out! kubectl not found (PATH should start with the kube-local bin/)"
  exit 1
}

# Every name carries a suffix, so runs against a shared control plane and
# reruns after a failure do not collide.
suffix=$(date +%s)-$$
ns=e2e-cp-$suffix
pv=e2e-cp-pv-$suffix
tmp=$(mktemp -d)
expected_version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v[0-9]/ {print $2; exit}' \
  "$source_dir/tools/kube-local/go.mod")

k() { "$KUBECTL" "$@"; }

ensure_namespace() { k get namespace "$ns" >/dev/null 2>&1 || k create namespace "$ns" >/dev/null; }

# fail MESSAGE: end the current test (tests run under set -e in a subshell).
fail() {
  printf '#   %s\n' "$@" >&2
  return 1
}

# eventually SECONDS DESCRIPTION CMD...: poll CMD until it succeeds.
eventually() {
  local limit=$1 what=$2 deadline
  shift 2
  deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "not within ${limit} s: $what"
    sleep 0.5
  done
}

# ---------------------------------------------------------------------------

test_nodes_are_listed_with_capacity() {
  local names n
  names=$(k get nodes -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
  for n in node-a node-b node-c; do
    grep -qx "$n" <<<"$names" || fail "node $n missing from: $(tr '\n' ' ' <<<"$names")"
    [ "$(k get node "$n" -o jsonpath='{.metadata.labels.kubernetes\.io/hostname}')" = "$n" ] ||
      fail "node $n has no kubernetes.io/hostname=$n label"
    [ "$(k get node "$n" -o jsonpath='{.status.allocatable.cpu}')" = 4 ] ||
      fail "node $n has no allocatable cpu 4"
  done
  k get nodes | sed 's/^/# /'
}

test_server_and_client_report_the_pinned_version() {
  local out
  [ -n "$expected_version" ] || fail "no k8s.io/kubernetes version in tools/kube-local/go.mod"
  out=$(k version)
  grep -qx "Server Version: $expected_version" <<<"$out" || fail "kubectl version says:" "$out"
  grep -qx "Client Version: $expected_version" <<<"$out" || fail "kubectl version says:" "$out"
  k get --raw /version | grep -q "\"gitVersion\": \"$expected_version\"" ||
    fail "/version does not report $expected_version"
}

# as_token TOKEN KUBECTL-ARGS...: kubectl with only a bearer token (no client
# certificate, which would authenticate first as the admin).
as_token() {
  local token=$1
  shift
  KUBECONFIG=$tmp/empty.kubeconfig "$KUBECTL" --server="$server" \
    --certificate-authority="$tmp/ca.crt" --token="$token" "$@"
}

test_rbac_denies_a_service_account_without_bindings() {
  local token out
  ensure_namespace
  k create serviceaccount probe -n "$ns" >/dev/null
  token=$(k create token probe -n "$ns" --duration=10m)

  # The token authenticates as the ServiceAccount...
  out=$(as_token "$token" auth whoami -o jsonpath='{.status.userInfo.username}')
  [ "$out" = "system:serviceaccount:$ns:probe" ] || fail "token authenticates as '$out'"
  # ...which may not list pods: 403, not 401.
  if out=$(as_token "$token" get pods -n "$ns" -v=6 2>&1); then
    fail "a ServiceAccount without bindings listed pods" "$out"
  fi
  grep -q '403 Forbidden' <<<"$out" || fail "expected a 403 response:" "$out"
  grep -q "\"system:serviceaccount:$ns:probe\" cannot list resource \"pods\"" <<<"$out" ||
    fail "expected RBAC's forbidden message:" "$out"
  # A token that is not one: 401.
  if out=$(as_token not-a-token get pods -n "$ns" -v=6 2>&1); then
    fail "a made-up token listed pods"
  fi
  grep -q '401 Unauthorized' <<<"$out" || fail "expected a 401 response:" "$out"

  # A RoleBinding to view grants exactly that namespace.
  k create rolebinding probe-view --clusterrole=view --serviceaccount="$ns:probe" -n "$ns" >/dev/null
  eventually 30 "the RoleBinding lets the ServiceAccount list pods" as_token "$token" get pods -n "$ns"
  if out=$(as_token "$token" get pods -n default 2>&1); then
    fail "a RoleBinding in $ns granted pods in default"
  fi
  grep -q Forbidden <<<"$out" || fail "expected Forbidden in namespace default:" "$out"
}

test_namespace_controller_finalizes_a_deleted_namespace() {
  local gone=$ns-gone
  k create namespace "$gone" >/dev/null
  k create configmap content -n "$gone" --from-literal=k=v >/dev/null
  [ "$(k get namespace "$gone" -o jsonpath='{.spec.finalizers[*]}')" = kubernetes ] ||
    fail "namespace $gone has no 'kubernetes' finalizer"
  k delete namespace "$gone" --wait=false >/dev/null
  k wait --for=delete "namespace/$gone" --timeout=180s >/dev/null ||
    fail "namespace $gone still there 180 s after deletion:" "$(k get namespace "$gone" -o yaml 2>&1)"
}

# configmap_with_owner NAME OWNER-NAME OWNER-UID: a dependent ConfigMap.
configmap_with_owner() {
  k apply -n "$ns" -f - >/dev/null <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: $1
  ownerReferences:
  - apiVersion: v1
    kind: ConfigMap
    name: $2
    uid: $3
data:
  k: v
EOF
}

owner_refs() { k get configmap "$1" -n "$ns" -o jsonpath='{.metadata.ownerReferences}'; }
has_no_owner_refs() { [ -z "$(owner_refs "$1")" ]; }

test_garbage_collector_deletes_and_orphans_dependents() {
  local uid
  ensure_namespace
  # Background propagation (kubectl's default): the dependent goes.
  k create configmap owner -n "$ns" --from-literal=k=v >/dev/null
  uid=$(k get configmap owner -n "$ns" -o jsonpath='{.metadata.uid}')
  configmap_with_owner dependent owner "$uid"
  [ -n "$(owner_refs dependent)" ] || fail "the dependent has no ownerReferences"
  k delete configmap owner -n "$ns" >/dev/null
  k wait --for=delete configmap/dependent -n "$ns" --timeout=180s >/dev/null ||
    fail "the garbage collector did not delete the dependent within 180 s"

  # Orphan propagation: the dependent stays, its ownerReference removed.
  k create configmap owner2 -n "$ns" --from-literal=k=v >/dev/null
  uid=$(k get configmap owner2 -n "$ns" -o jsonpath='{.metadata.uid}')
  configmap_with_owner dependent2 owner2 "$uid"
  k delete configmap owner2 -n "$ns" --cascade=orphan >/dev/null
  eventually 180 "the garbage collector orphans dependent2" has_no_owner_refs dependent2
  k get configmap owner2 -n "$ns" >/dev/null 2>&1 && fail "owner2 still exists"
  k get configmap dependent2 -n "$ns" >/dev/null || fail "the orphaned dependent2 was deleted"
}

test_persistentvolume_binder_binds_a_matching_claim() {
  local class=e2e-cp-$suffix
  ensure_namespace
  k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolume
metadata:
  name: $pv
spec:
  capacity:
    storage: 1Gi
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: $class
  hostPath:
    path: /tmp/$pv
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: claim
  namespace: $ns
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: $class
  resources:
    requests:
      storage: 1Gi
EOF
  k wait --for=jsonpath='{.status.phase}'=Bound pvc/claim -n "$ns" --timeout=180s >/dev/null ||
    fail "the claim was not bound within 180 s:" "$(k describe pvc claim -n "$ns" 2>&1)"
  [ "$(k get pvc claim -n "$ns" -o jsonpath='{.spec.volumeName}')" = "$pv" ] ||
    fail "the claim is bound to another volume"
  k wait --for=jsonpath='{.status.phase}'=Bound "pv/$pv" --timeout=30s >/dev/null ||
    fail "the volume is not Bound"
  [ "$(k get pv "$pv" -o jsonpath='{.spec.claimRef.namespace}/{.spec.claimRef.name}')" = "$ns/claim" ] ||
    fail "the volume's claimRef does not name $ns/claim"

  # The protection finalizers are released by their controllers.
  k delete pvc claim -n "$ns" --timeout=180s >/dev/null ||
    fail "the claim was not deleted within 180 s (pvc-protection finalizer?)"
  k delete pv "$pv" --timeout=180s >/dev/null ||
    fail "the volume was not deleted within 180 s (pv-protection finalizer?)"
}

# ---------------------------------------------------------------------------

cleanup() {
  k delete namespace "$ns" "$ns-gone" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  k delete pv "$pv" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

server=$(k config view --minify --raw -o jsonpath='{.clusters[0].cluster.server}')
k config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' |
  base64 -d >"$tmp/ca.crt"
printf 'apiVersion: v1\nkind: Config\n' >"$tmp/empty.kubeconfig"

tests=(
  test_nodes_are_listed_with_capacity
  test_server_and_client_report_the_pinned_version
  test_rbac_denies_a_service_account_without_bindings
  test_namespace_controller_finalizes_a_deleted_namespace
  test_garbage_collector_deletes_and_orphans_dependents
  test_persistentvolume_binder_binds_a_matching_claim
)
echo "1..${#tests[@]}"
failed=0
i=0
for t in "${tests[@]}"; do
  i=$((i + 1))
  start=$SECONDS
  set +e
  (
    set -e
    "$t"
  )
  rc=$?
  set -e
  if ((rc == 0)); then
    echo "ok $i - ${t#test_} ($((SECONDS - start)) s)"
  else
    echo "not ok $i - ${t#test_} ($((SECONDS - start)) s)"
    failed=$((failed + 1))
  fi
done
if ((failed)); then
  echo "# $failed of ${#tests[@]} failed"
  exit 1
fi
