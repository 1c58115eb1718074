#!/usr/bin/env bash
# End-to-end test of DevicePools published for Dynamic Resource Allocation
# (spec.publish: ResourceSlice; API.md "Devices", src/reconcilers/device/
# dev_dra.c) against the real control plane, kube-scheduler and
# kube-controller-manager, with the operator and a node agent running as
# their config/ ServiceAccounts (RBAC enforced):
#
#  1. the pool's devices, declared and discovered by node-c's agent, are in
#     a ResourceSlice of driver provisio.dev, pool = the DevicePool, nodeName
#     node-c, attributes, every device tainted provisio.dev/managed:NoSchedule;
#  2. a DeviceClaim of 2 is Ready with status.resourceClaimName; its
#     ResourceClaim's status.allocation lists exactly its devices, for node-c;
#  3. a pod referencing that ResourceClaim is placed on node-c by
#     kube-scheduler and reserved in status.reservedFor;
#  4. a ResourceClaim of the DeviceClass provisio.dev that no DeviceClaim made
#     is never allocated by kube-scheduler (its pod stays Pending), though
#     devices are free;
#  5. a held device turning unhealthy (healthy: false) taints it NoExecute in
#     the slice; kube-controller-manager evicts the pod using it; the claim
#     shows DevicesHealthy=False reason DeviceUnhealthy naming it;
#  6. deleting the DeviceClaim while a pod still reserves its ResourceClaim
#     keeps the devices held (Reservations stay, the claim Terminating); once
#     the pod is gone the ResourceClaim goes, then the devices are released
#     and the claim is gone;
#  7. deleting the pool removes its slices; neither the operator nor the
#     agent got a 403 (rest_client_requests_total).
#
# Pods never run (no kubelet); they are force-deleted.
#
# Environment (set by the ctest fixture, see tests/CMakeLists.txt):
#   KUBECONFIG, PROVISIO_KUBE_DIR, PATH (kubectl), PROVISIO_BINARY,
#   PROVISIO_SOURCE_DIR
# Run by hand:
#   hack/kube-local up /tmp/kl && . /tmp/kl/env &&
#     PROVISIO_BINARY=build/provisio PROVISIO_SOURCE_DIR=$PWD PROVISIO_KUBE_DIR=/tmp/kl \
#     bash tests/e2e/device_dra_test.sh
#
# Output is TAP; the exit status is non-zero if any test failed.
# Test functions run through e2e_test, which shellcheck cannot follow.
# shellcheck disable=SC2317
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init device_dra

e2e_require_env KUBECONFIG PROVISIO_KUBE_DIR PROVISIO_BINARY PROVISIO_SOURCE_DIR
e2e_require_cmd kubectl python3
APISERVER_PORT=$(sed -n 's/^APISERVER_PORT=//p' "$PROVISIO_KUBE_DIR/run/ports.env" 2>/dev/null || true)
[ -n "$APISERVER_PORT" ] || e2e_bail "no APISERVER_PORT in $PROVISIO_KUBE_DIR/run/ports.env"

SRC=$PROVISIO_SOURCE_DIR
SYS_NS=provisio-system
suffix=$(date +%s | tail -c 6)$$
ns=e2e-dra-$suffix
pool=e2e-dra-$suffix
res=e2e-dra-$suffix.example/acc
ROOT=$E2E_TMP/node-c
STATE=$E2E_TMP/state
mkdir -p "$STATE" "$ROOT/dev"

k() { kubectl "$@"; }
jp() { k get "${@:3}" "$1" -o "jsonpath=$2"; }

cleanup() {
  e2e_delete_namespace "$ns"
  k delete devicepool "$pool" --ignore-not-found --wait=false
}
e2e_on_exit cleanup

# sa_dir NAME SA: a token of SA, the CA and the namespace, as in a pod.
sa_dir() {
  local dir=$E2E_TMP/sa-$1
  mkdir -p "$dir"
  k create token "$2" -n "$SYS_NS" --duration=1h >"$dir/token"
  cp "$PROVISIO_KUBE_DIR/pki/ca.crt" "$dir/ca.crt"
  echo "$SYS_NS" >"$dir/namespace"
  echo "$dir"
}

# start NAME SADIR ARGS...: provisio as a pod would run it (no KUBECONFIG).
start() {
  local name=$1 dir=$2 mport pport
  shift 2
  mport=$(e2e_free_port)
  pport=$(e2e_free_port)
  echo "$mport" >"$STATE/$name.metrics"
  e2e_bg_start "$name" "$E2E_TMP/$name.log" env -u KUBECONFIG \
    KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT="$APISERVER_PORT" \
    PROVISIO_SERVICEACCOUNT_DIR="$dir" HOME="$E2E_TMP" "$PROVISIO_BINARY" "$@" \
    --metrics-bind-address="127.0.0.1:$mport" --health-probe-bind-address="127.0.0.1:$pport"
  echo "$pport" >"$STATE/$name.probe"
}
ready() { e2e_http_get "http://127.0.0.1:$(cat "$STATE/$1.probe")/readyz" >/dev/null; }
scrape() { e2e_http_get "http://127.0.0.1:$(cat "$STATE/$1.metrics")/metrics"; }

# pod NAME CLAIM: a pod using ResourceClaim CLAIM.
pod() {
  k apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $1, namespace: $ns}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: c
    image: registry.k8s.io/pause:3.10
    resources: {claims: [{name: d}]}
  resourceClaims: [{name: d, resourceClaimName: $2}]
YAML
}

# py EXPR OBJ ARGS...: evaluate a Python condition on OBJ's JSON (o); print
# why not and fail when false.
py() {
  local expr=$1 json
  shift
  json=$(k get "$@" -o json 2>&1) || {
    echo "$json"
    return 1
  }
  python3 -c 'import json, sys
o = json.loads(sys.argv[2])
ok = eval("(" + sys.argv[1] + ")")
if not ok:
    print("not yet:", sys.argv[1]); sys.exit(1)' "$expr" "$json"
}

pod_gone() {
  ! k get pod "$1" -n "$ns" -o name 2>/dev/null | grep -q . || {
    echo "pod $1 is still there"
    return 1
  }
}

slice_devices() {
  k get resourceslices -l "provisio.dev/devicepool=$pool" -o json | python3 -c '
import json, sys
items = json.load(sys.stdin)["items"]
print(" ".join(sorted(d["name"] for s in items for d in s["spec"]["devices"])))'
}

# slices_are LIST: the pool's slices hold exactly these devices.
slices_are() {
  local got
  got=$(slice_devices)
  [ "$got" = "$1" ] || {
    echo "slices hold '$got'"
    return 1
  }
}

test_setup() {
  k apply --server-side --force-conflicts -f "$SRC/crds/" >/dev/null
  k wait --for=condition=Established --timeout=60s crd/devicepools.provisio.dev \
    crd/deviceclaims.provisio.dev >/dev/null
  k get namespace "$SYS_NS" >/dev/null 2>&1 || k create namespace "$SYS_NS" >/dev/null
  k apply --server-side --force-conflicts -k "$SRC/config/rbac" >/dev/null
  k apply --server-side --force-conflicts -f "$SRC/config/agent/rbac.yaml" >/dev/null
  k apply --server-side --force-conflicts -k "$SRC/config/dra" >/dev/null
  k create namespace "$ns" >/dev/null
  touch "$ROOT/dev/draacc9"
  start operator "$(sa_dir operator provisio-controller-manager)" --leader-elect=false
  start agent "$(sa_dir agent provisio-agent)" agent --node-name node-c --host-root "$ROOT"
  e2e_wait_for 60 "operator ready" ready operator
  e2e_wait_for 60 "agent ready" ready agent
}

test_slice_lists_the_pool() {
  k apply -f - >/dev/null <<YAML
apiVersion: provisio.dev/v1alpha1
kind: DevicePool
metadata: {name: $pool}
spec:
  nodeName: node-c
  resourceName: $res
  publish: ResourceSlice
  devices:
  - {id: acc0, attributes: {model: a1}}
  - {id: acc1, attributes: {model: a1}}
  - {id: acc2, attributes: {model: a2}}
  discover: {paths: [/dev/draacc*], attributes: {model: a9}}
YAML
  local t0
  t0=$(e2e_now)
  e2e_wait_for 30 "slice with acc0 acc1 acc2 draacc9" slices_are 'acc0 acc1 acc2 draacc9'
  e2e_diag "figure: pool applied to its slice listing the discovered device: $(e2e_since "$t0") s"
  k get resourceslices -l "provisio.dev/devicepool=$pool" | sed 's/^/# /'
  py 'all(s["spec"]["driver"] == "provisio.dev" and s["spec"]["nodeName"] == "node-c"
        and s["spec"]["pool"]["name"] == "'"$pool"'" for s in o["items"])
      and all(any(t["key"] == "provisio.dev/managed" and t["effect"] == "NoSchedule"
                  for t in d.get("taints", []))
              for s in o["items"] for d in s["spec"]["devices"])
      and any(d["name"] == "acc2" and d["attributes"]["model"]["string"] == "a2"
              for s in o["items"] for d in s["spec"]["devices"])' \
    resourceslices -l "provisio.dev/devicepool=$pool"
}

test_claim_gets_an_allocated_resource_claim() {
  k apply -f - >/dev/null <<YAML
apiVersion: provisio.dev/v1alpha1
kind: DeviceClaim
metadata: {name: two, namespace: $ns}
spec: {resourceName: $res, count: 2, selector: {model: a1}}
YAML
  k wait --for=condition=Ready --timeout=30s -n "$ns" dc/two >/dev/null
  [ "$(jp dc/two '{.status.devices}' -n "$ns")" = '["acc0","acc1"]' ] ||
    e2e_fail "devices: $(jp dc/two '{.status.devices}' -n "$ns")"
  e2e_wait_for 20 "status.resourceClaimName" py 'o["status"].get("resourceClaimName") == "two"' dc/two -n "$ns"
  e2e_wait_for 20 "allocation of exactly acc0 acc1 on node-c" py '
sorted((r["driver"], r["pool"], r["device"]) for r in o["status"]["allocation"]["devices"]["results"])
  == [("provisio.dev", "'"$pool"'", "acc0"), ("provisio.dev", "'"$pool"'", "acc1")]
and o["status"]["allocation"]["nodeSelector"]["nodeSelectorTerms"][0]["matchFields"][0]["values"] == ["node-c"]' \
    resourceclaim/two -n "$ns"
}

test_pod_is_placed_on_the_claims_node() {
  pod user two
  e2e_wait_for 60 "pod user bound to node-c" py 'o["spec"].get("nodeName") == "node-c"' pod/user -n "$ns"
  e2e_wait_for 20 "claim reserved for the pod" \
    py '[r["name"] for r in o["status"].get("reservedFor", [])] == ["user"]' resourceclaim/two -n "$ns"
}

test_foreign_claim_is_never_allocated() {
  k apply -f - >/dev/null <<YAML
apiVersion: resource.k8s.io/v1
kind: ResourceClaim
metadata: {name: foreign, namespace: $ns}
spec:
  devices:
    requests:
    - name: any
      exactly: {deviceClassName: provisio.dev}
YAML
  pod stranger foreign
  e2e_wait_for 60 "a FailedScheduling event for pod stranger" sh -c \
    "kubectl get events -n $ns --field-selector involvedObject.name=stranger,reason=FailedScheduling -o name | grep -q ."
  sleep 2
  py 'not o["spec"].get("nodeName")' pod/stranger -n "$ns"
  py 'not o.get("status", {}).get("allocation")' resourceclaim/foreign -n "$ns"
  k get events -n "$ns" --field-selector involvedObject.name=stranger,reason=FailedScheduling \
    -o jsonpath='{.items[0].message}' | head -c 300 | sed 's/^/# /'
  echo
  e2e_force_delete_pods "$ns" 
  k delete resourceclaim foreign -n "$ns" --wait=false >/dev/null
}

test_unhealthy_device_evicts_its_pod() {
  pod user2 two
  e2e_wait_for 60 "pod user2 bound" py 'o["spec"].get("nodeName") == "node-c"' pod/user2 -n "$ns"
  local t0
  t0=$(e2e_now)
  k patch devicepool "$pool" --type=json -p '[{"op": "add", "path": "/spec/devices/0/healthy", "value": false}]' >/dev/null
  e2e_wait_for 30 "acc0 tainted NoExecute in the slice" py '
any(d["name"] == "acc0" and any(t["key"] == "provisio.dev/unhealthy" and t["effect"] == "NoExecute"
                                for t in d.get("taints", []))
    for s in o["items"] for d in s["spec"]["devices"])' resourceslices -l "provisio.dev/devicepool=$pool"
  # With a grace period of 0 the evicted pod goes at once.
  e2e_wait_for 60 "pod user2 evicted" pod_gone user2
  e2e_diag "figure: healthy:false to the pod's eviction: $(e2e_since "$t0") s"
  e2e_wait_for 20 "DevicesHealthy=False DeviceUnhealthy naming acc0" py '
[(c["status"], c["reason"], "acc0" in c["message"]) for c in o["status"]["conditions"] if c["type"] == "DevicesHealthy"]
  == [("False", "DeviceUnhealthy", True)]' dc/two -n "$ns"
  k get events -n "$ns" --field-selector involvedObject.name=user2 \
    -o jsonpath='{range .items[*]}{.reason}: {.message}{"\n"}{end}' | tail -2 | sed 's/^/# /'
  k patch devicepool "$pool" --type=json -p '[{"op": "remove", "path": "/spec/devices/0/healthy"}]' >/dev/null
  e2e_wait_for 20 "DevicesHealthy=True again" py '
[c["status"] for c in o["status"]["conditions"] if c["type"] == "DevicesHealthy"] == ["True"]' dc/two -n "$ns"
}

# resv_of CLAIM: how many DevicePool Reservations CLAIM of $ns holds.
resv_of() {
  k get reservations -l provisio.dev/pool-kind=DevicePool -o json | python3 -c '
import json, sys
print(len([r for r in json.load(sys.stdin)["items"] if r["spec"]["claim"]["name"] == sys.argv[2]
           and r["spec"]["claim"]["namespace"] == sys.argv[1]]))' "$ns" "$1"
}

# A claim of its own (acc2, never tainted here), so that no eviction left
# over from the test before takes its pod away.
test_devices_released_only_after_the_resource_claim() {
  k apply -f - >/dev/null <<YAML
apiVersion: provisio.dev/v1alpha1
kind: DeviceClaim
metadata: {name: keep, namespace: $ns}
spec: {resourceName: $res, selector: {model: a2}}
YAML
  k wait --for=condition=Ready --timeout=30s -n "$ns" dc/keep >/dev/null
  e2e_wait_for 20 "keep's ResourceClaim allocated" py 'o["status"].get("allocation")' resourceclaim/keep -n "$ns"
  pod user3 keep
  e2e_wait_for 60 "pod user3 bound" py 'o["spec"].get("nodeName") == "node-c"' pod/user3 -n "$ns"
  e2e_wait_for 20 "reserved for user3" \
    py '"user3" in [r["name"] for r in o["status"].get("reservedFor", [])]' resourceclaim/keep -n "$ns"
  k delete dc keep -n "$ns" --wait=false >/dev/null
  e2e_wait_for 20 "the ResourceClaim deleted first" py 'o["metadata"].get("deletionTimestamp")' \
    resourceclaim/keep -n "$ns"
  sleep 2
  py 'o["metadata"].get("deletionTimestamp")' dc/keep -n "$ns"
  [ "$(resv_of keep)" = 1 ] || e2e_fail "the claim's device was released while a pod uses it: $(resv_of keep) left"
  local t0
  t0=$(e2e_now)
  k delete pod user3 -n "$ns" --grace-period=0 --force >/dev/null 2>&1
  e2e_wait_for 60 "DeviceClaim keep gone" sh -c "! kubectl get dc keep -n $ns >/dev/null 2>&1"
  e2e_diag "figure: pod gone to DeviceClaim gone: $(e2e_since "$t0") s"
  ! k get resourceclaim keep -n "$ns" >/dev/null 2>&1 || e2e_fail "ResourceClaim keep still there"
  [ "$(resv_of keep)" = 0 ] || e2e_fail "$(resv_of keep) Reservations of the claim left"
  k delete dc two -n "$ns" --wait=false >/dev/null
}

test_pool_deletion_removes_slices_and_no_403() {
  k delete devicepool "$pool" --wait=false >/dev/null
  e2e_wait_for 30 "slices gone" slices_are ''
  local who m
  for who in operator agent; do
    m=$(scrape "$who")
    grep -q '^rest_client_requests_total' <<<"$m" || e2e_fail "$who: no rest_client_requests_total"
    if grep '^rest_client_requests_total' <<<"$m" | grep -q 'code="403"'; then
      e2e_fail "$who got 403s:" "$(grep '^rest_client_requests_total' <<<"$m" | grep 'code="403"')"
    fi
  done
}

e2e_test "setup: CRDs, RBAC, DeviceClass; operator and node-c's agent as their ServiceAccounts" test_setup
e2e_last_ok || e2e_bail "setup failed"
e2e_test "the pool's devices (declared and discovered) are in a ResourceSlice, tainted managed" test_slice_lists_the_pool
e2e_test "a DeviceClaim gets a ResourceClaim allocated to exactly its devices" test_claim_gets_an_allocated_resource_claim
e2e_test "kube-scheduler places a pod of that ResourceClaim on the claim's node" test_pod_is_placed_on_the_claims_node
e2e_test "kube-scheduler never allocates a provisio device to a foreign ResourceClaim" test_foreign_claim_is_never_allocated
e2e_test "an unhealthy held device is tainted NoExecute and its pod evicted" test_unhealthy_device_evicts_its_pod
e2e_test "devices are released only after the ResourceClaim is deallocated" test_devices_released_only_after_the_resource_claim
e2e_test "deleting the pool removes its slices; no 403 for the operator nor the agent" test_pool_deletion_removes_slices_and_no_403
e2e_done
