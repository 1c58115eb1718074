#!/usr/bin/env bash
# End-to-end test of scheduling on kube-local: the real kube-scheduler places
# pods on the fake nodes, which kube-nodes keeps Ready, and what a test (and
# later provisio) publishes for scheduling is acted on:
#
#  1. the nodes are Ready, untainted, and their Leases in kube-node-lease are
#     renewed;
#  2. a pod with a CPU request gets spec.nodeName from kube-scheduler; a pod
#     that fits nowhere stays Pending with a FailedScheduling event that says
#     why (Insufficient cpu);
#  3. an extended resource that one node advertises (patched on nodes/status)
#     draws a pod that requests it to that node; a pod asking for more than
#     any node has stays Pending (Insufficient <resource>);
#  4. DRA (resource.k8s.io/v1): a DeviceClass, a ResourceSlice of the test's
#     own driver on node-c and a ResourceClaim: a pod using the claim is
#     placed on node-c and the claim's status.allocation names the device;
#     a second claim for the same device class cannot be allocated while the
#     only device is taken, and its pod stays Pending;
#  5. `hack/kube-local restart-scheduler`: the new kube-scheduler places pods;
#  6. `hack/kube-local node-stop DIR node-a`: within the controller's grace
#     period the node is Ready=Unknown with the node.kubernetes.io/unreachable
#     NoSchedule and NoExecute taints, and kube-scheduler places nothing
#     there; `node-start` brings it back Ready without those taints.
#
# Pods never run (no kubelet); they are force-deleted (tests/e2e/lib.sh).
# Figures are printed as "# figure: ..." lines.
#
# Environment (set by the ctest fixture, see tests/CMakeLists.txt):
#   KUBECONFIG           admin kubeconfig of the control plane
#   PATH                 with the control plane's bin/ (kubectl) first
#   PROVISIO_KUBE_DIR    the kube-local directory (for node-stop/node-start)
#   PROVISIO_SOURCE_DIR  the source tree (hack/kube-local)
# Run by hand:
#   hack/kube-local up /tmp/kl && . /tmp/kl/env && bash tests/e2e/scheduling_test.sh
#
# Output is TAP; the exit status is non-zero if any test failed.
# Test functions run through e2e_test, which shellcheck cannot follow.
# shellcheck disable=SC2317
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
SRC=${PROVISIO_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
KUBECTL=${KUBECTL:-kubectl}
e2e_require_env KUBECONFIG PROVISIO_KUBE_DIR
e2e_require_cmd "$KUBECTL" python3
e2e_init scheduling

suffix=$(date +%s)-$$
ns=e2e-sched-$suffix
driver=sched-$suffix.e2e.provisio.dev
class=e2e-sched-$suffix
slice=e2e-sched-$suffix-node-c
xres=e2e.provisio.dev/widget-$$
NODES=(node-a node-b node-c)

k() { "$KUBECTL" "$@"; }

cleanup() {
  e2e_delete_namespace "$ns"
  k delete resourceslice "$slice" --ignore-not-found --wait=false
  k delete deviceclass "$class" --ignore-not-found --wait=false
  remove_extended_resource node-b
  "$SRC/hack/kube-local" node-start "$PROVISIO_KUBE_DIR" node-a
}
e2e_on_exit cleanup

# jp OBJECT JSONPATH: one field of one object.
jp() { k get "${@:3}" "$1" -o "jsonpath=$2"; }

# pod NAME RESOURCES-JSON [EXTRA-JSON]: create a pod (EXTRA: spec fields, and
# "claims" for the container's resources.claims)
# (image never pulled: there is no kubelet).
pod() {
  local name=$1 resources=$2 extra=${3:-'{}'}
  python3 - "$name" "$ns" "$resources" "$extra" <<'PY' | k apply -f - >/dev/null
import json, sys
name, ns, resources, extra = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
c = {"name": "c", "image": "registry.k8s.io/pause:3.10", "resources": resources}
spec = {"containers": [c], "terminationGracePeriodSeconds": 0}
for key, value in extra.items():
    if key == "claims":
        c["resources"]["claims"] = value
    else:
        spec[key] = value
print(json.dumps({"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": name, "namespace": ns}, "spec": spec}))
PY
}

# bound_to POD NODE: POD's spec.nodeName is NODE (prints what it is otherwise).
bound_to() {
  local got
  got=$(jp "pod/$1" '{.spec.nodeName}' -n "$ns")
  [ "$got" = "$2" ] || {
    echo "pod $1 is on '${got}', not $2"
    return 1
  }
}

bound_anywhere() {
  local got
  got=$(jp "pod/$1" '{.spec.nodeName}' -n "$ns")
  [ -n "$got" ] || {
    echo "pod $1 is not bound"
    return 1
  }
  echo "$got"
}

# failed_scheduling POD TEXT: a FailedScheduling event of POD mentions TEXT.
failed_scheduling() {
  local out
  out=$(k get events -n "$ns" --field-selector "involvedObject.name=$1,reason=FailedScheduling" \
    -o jsonpath='{range .items[*]}{.message}{"\n"}{end}')
  grep -qF -- "$2" <<<"$out" || {
    echo "no FailedScheduling event of $1 with '$2'; events: $out"
    return 1
  }
}

# stays_pending POD SECONDS: POD is still unbound after SECONDS.
stays_pending() {
  sleep "$2"
  local node phase
  node=$(jp "pod/$1" '{.spec.nodeName}' -n "$ns")
  phase=$(jp "pod/$1" '{.status.phase}' -n "$ns")
  if [ -n "$node" ] || [ "$phase" != Pending ]; then
    e2e_fail "pod $1 should be Pending and unbound: phase $phase, node '$node'"
  fi
}

remove_extended_resource() {
  local esc=${xres//\//\~1}
  k patch node "$1" --subresource=status --type=json \
    -p "[{\"op\":\"remove\",\"path\":\"/status/capacity/$esc\"},{\"op\":\"remove\",\"path\":\"/status/allocatable/$esc\"}]" \
    >/dev/null 2>&1 || true
}

# ---------------------------------------------------------------------------

# The Ready condition of NODE and the taint keys:effects on it.
node_state() {
  jp "node/$1" '{.status.conditions[?(@.type=="Ready")].status} {range .spec.taints[*]}{.key}:{.effect},{end}'
}

test_nodes_ready_untainted_leases_renewed() {
  local n state r1 r2
  for n in "${NODES[@]}"; do
    state=$(node_state "$n")
    [ "$state" = "True " ] || e2e_fail "node $n: Ready and taints are '$state', want Ready=True and no taints"
  done
  for n in "${NODES[@]}"; do
    r1=$(jp "lease/$n" '{.spec.renewTime}' -n kube-node-lease)
    [ "$(jp "lease/$n" '{.spec.holderIdentity}' -n kube-node-lease)" = "$n" ] ||
      e2e_fail "lease $n is not held by $n"
    [ "$(jp "lease/$n" '{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}' -n kube-node-lease)" = "Node/$n" ] ||
      e2e_fail "lease $n is not owned by Node $n"
  done
  sleep 3
  r2=$(jp "lease/node-c" '{.spec.renewTime}' -n kube-node-lease)
  [ "$r1" != "$r2" ] || e2e_fail "lease node-c was not renewed in 3 s (renewTime $r1)"
  k get nodes | sed 's/^/# /'
}

test_cpu_pod_is_placed_and_too_big_pod_pends() {
  k create namespace "$ns" >/dev/null
  pod small '{"requests": {"cpu": "500m", "memory": "64Mi"}}'
  e2e_wait_for 60 "pod small bound by kube-scheduler" bound_anywhere small
  e2e_diag "pod small on $(bound_anywhere small)"
  # A Scheduled event from default-scheduler.
  e2e_wait_for 30 "a Scheduled event of pod small" \
    sh -c "$KUBECTL get events -n $ns --field-selector involvedObject.name=small,reason=Scheduled -o name | grep -q ."
  pod huge '{"requests": {"cpu": "100"}}'
  e2e_wait_for 60 "FailedScheduling of pod huge" failed_scheduling huge "Insufficient cpu"
  stays_pending huge 2
  e2e_diag "$(k get events -n "$ns" --field-selector involvedObject.name=huge,reason=FailedScheduling \
    -o jsonpath='{.items[0].message}')"
  e2e_force_delete_pods "$ns"
}

test_extended_resource_draws_pod_to_its_node() {
  local esc=${xres//\//\~1}
  k patch node node-b --subresource=status --type=json \
    -p "[{\"op\":\"add\",\"path\":\"/status/capacity/$esc\",\"value\":\"2\"},{\"op\":\"add\",\"path\":\"/status/allocatable/$esc\",\"value\":\"2\"}]" >/dev/null
  [ "$(jp node/node-b "{.status.allocatable.${xres//./\\.}}")" = 2 ] || e2e_fail "node-b does not advertise $xres"
  local i
  for i in 1 2; do
    pod "widget-$i" "{\"requests\": {\"$xres\": \"1\"}, \"limits\": {\"$xres\": \"1\"}}"
  done
  for i in 1 2; do
    e2e_wait_for 60 "pod widget-$i on node-b" bound_to "widget-$i" node-b
  done
  # node-b's two widgets are taken: a third pod fits nowhere.
  pod widget-3 "{\"requests\": {\"$xres\": \"1\"}, \"limits\": {\"$xres\": \"1\"}}"
  e2e_wait_for 60 "FailedScheduling of pod widget-3" failed_scheduling widget-3 "Insufficient $xres"
  stays_pending widget-3 2
  # Freeing one lets the scheduler place the waiting pod.
  k delete pod widget-1 -n "$ns" --grace-period=0 --force >/dev/null 2>&1
  e2e_wait_for 60 "pod widget-3 on node-b once widget-1 is gone" bound_to widget-3 node-b
  e2e_force_delete_pods "$ns"
  remove_extended_resource node-b
}

test_dra_claim_is_allocated_from_a_slice_and_pod_placed() {
  local kinds kind
  kinds=$(k api-resources --api-group=resource.k8s.io -o name)
  for kind in deviceclasses resourceslices resourceclaims resourceclaimtemplates; do
    grep -qx "$kind.resource.k8s.io" <<<"$kinds" || e2e_fail "resource.k8s.io does not serve $kind: $kinds"
  done
  [ "$(k get --raw /apis/resource.k8s.io | python3 -c 'import json,sys; print(json.load(sys.stdin)["preferredVersion"]["version"])')" = v1 ] ||
    e2e_fail "resource.k8s.io's preferred version is not v1"
  k apply -f - >/dev/null <<EOF
apiVersion: resource.k8s.io/v1
kind: DeviceClass
metadata:
  name: $class
spec:
  selectors:
  - cel:
      expression: device.driver == "$driver"
---
apiVersion: resource.k8s.io/v1
kind: ResourceSlice
metadata:
  name: $slice
spec:
  driver: $driver
  nodeName: node-c
  pool:
    name: node-c
    generation: 1
    resourceSliceCount: 1
  devices:
  - name: widget-0
    attributes:
      model:
        string: w1
EOF
  local claim
  for claim in widget widget-again; do
    k apply -f - >/dev/null <<EOF
apiVersion: resource.k8s.io/v1
kind: ResourceClaim
metadata:
  name: $claim
  namespace: $ns
spec:
  devices:
    requests:
    - name: widget
      exactly:
        deviceClassName: $class
EOF
  done
  k get resourceslices "$slice" | sed 's/^/# /'
  pod dra '{}' '{"claims": [{"name": "widget"}], "resourceClaims": [{"name": "widget", "resourceClaimName": "widget"}]}'
  e2e_wait_for 60 "pod dra on node-c (the slice's node)" bound_to dra node-c
  local alloc
  alloc=$(jp resourceclaim/widget '{range .status.allocation.devices.results[*]}{.driver}/{.pool}/{.device};{end}' -n "$ns")
  [ "$alloc" = "$driver/node-c/widget-0;" ] || e2e_fail "claim widget allocated '$alloc', want $driver/node-c/widget-0"
  [ "$(jp resourceclaim/widget '{.status.reservedFor[0].name}' -n "$ns")" = dra ] ||
    e2e_fail "claim widget is not reserved for pod dra"
  k get resourceclaims -n "$ns" | sed 's/^/# /'
  # The only device is allocated: a second claim cannot be, its pod pends.
  pod dra-again '{}' '{"claims": [{"name": "widget"}], "resourceClaims": [{"name": "widget", "resourceClaimName": "widget-again"}]}'
  e2e_wait_for 60 "FailedScheduling of pod dra-again" failed_scheduling dra-again "cannot allocate all claims"
  stays_pending dra-again 2
  [ -z "$(jp resourceclaim/widget-again '{.status.allocation}' -n "$ns")" ] ||
    e2e_fail "claim widget-again was allocated although its only device is taken"
  e2e_force_delete_pods "$ns"
}

# unreachable NODE: Ready=Unknown and both unreachable taints.
unreachable() {
  local state
  state=$(node_state "$1")
  [[ $state == Unknown* && $state == *node.kubernetes.io/unreachable:NoSchedule* &&
    $state == *node.kubernetes.io/unreachable:NoExecute* ]] || {
    echo "node $1: $state"
    return 1
  }
}

ready_again() {
  local state
  state=$(node_state "$1")
  [ "$state" = "True " ] || {
    echo "node $1: $state"
    return 1
  }
}

test_node_stop_makes_node_unreachable_and_start_recovers() {
  local grace t0 took
  grace=$(tr '\0' '\n' <"$PROVISIO_KUBE_DIR/run/kube-controller-manager.args" |
    sed -n 's/^--node-monitor-grace-period=\([0-9]*\)s$/\1/p')
  [ -n "$grace" ] || e2e_fail "no --node-monitor-grace-period in kube-controller-manager's args"
  t0=$(e2e_now)
  "$SRC/hack/kube-local" node-stop "$PROVISIO_KUBE_DIR" node-a 2>&1 | sed 's/^/# /'
  # Grace period after the last renewal (up to one renew interval, 2 s,
  # before the stop) plus the controller's monitor period (2 s) and room
  # for a loaded machine.
  e2e_wait_for "$((grace + 30))" "node-a Unknown and tainted unreachable" unreachable node-a
  took=$(e2e_since "$t0")
  e2e_diag "figure: node-stop to unreachable taints ${took} s (grace period ${grace} s)"
  k get node node-a -o jsonpath='{range .spec.taints[*]}{.key}:{.effect}{"\n"}{end}' | sed 's/^/# taint /'
  # Nothing new goes to the lost node: pods spread over the others.
  local i node
  for i in 1 2 3 4; do pod "spread-$i" '{"requests": {"cpu": "100m"}}'; done
  for i in 1 2 3 4; do
    e2e_wait_for 60 "pod spread-$i bound" bound_anywhere "spread-$i"
    node=$(bound_anywhere "spread-$i")
    [ "$node" != node-a ] || e2e_fail "pod spread-$i was placed on the unreachable node-a"
  done
  e2e_force_delete_pods "$ns"
  t0=$(e2e_now)
  "$SRC/hack/kube-local" node-start "$PROVISIO_KUBE_DIR" node-a 2>&1 | sed 's/^/# /'
  e2e_wait_for 60 "node-a Ready again without taints" ready_again node-a
  e2e_diag "figure: node-start to Ready without taints $(e2e_since "$t0") s"
}

e2e_test "nodes are Ready, untainted, and their Leases are renewed" test_nodes_ready_untainted_leases_renewed
e2e_test "a pod with a CPU request is placed; one that fits nowhere pends with FailedScheduling" \
  test_cpu_pod_is_placed_and_too_big_pod_pends
e2e_test "an extended resource on one node draws the pods that request it there" \
  test_extended_resource_draws_pod_to_its_node
e2e_test "a DRA claim is allocated from a ResourceSlice and its pod placed on the slice's node" \
  test_dra_claim_is_allocated_from_a_slice_and_pod_placed
test_scheduler_restart_keeps_placing_pods() {
  "$SRC/hack/kube-local" restart-scheduler "$PROVISIO_KUBE_DIR" 2>&1 | sed 's/^/# /'
  pod after-restart '{"requests": {"cpu": "100m"}}'
  e2e_wait_for 60 "pod after-restart bound by the restarted kube-scheduler" bound_anywhere after-restart
  e2e_force_delete_pods "$ns"
}

e2e_test "restart-scheduler: the restarted kube-scheduler places pods" test_scheduler_restart_keeps_placing_pods
e2e_test "node-stop makes a node unreachable and tainted; node-start brings it back" \
  test_node_stop_makes_node_unreachable_and_start_recovers
e2e_done
