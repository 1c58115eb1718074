#!/usr/bin/env bash
# End-to-end test of what the device domain does for scheduling and health
# (src/reconcilers/device/dev_node.c, dev_pool.c; API.md "Devices",
# "The node agent"): node capacity published for kube-scheduler, and device
# health from the node agent, against the real control plane with the
# operator and a node agent (`provisio agent --host-root DIR`) running as
# background processes. Allocation itself is in device_test.sh.
#
#  1. node capacity (publish NodeCapacity): node-a's status.capacity[R] is
#     the pool's healthy devices and allocatable[R] those no claim holds; a
#     pod requesting R is placed on node-a by kube-scheduler; one asking for
#     more than allocatable stays Pending (FailedScheduling "Insufficient
#     R"); keys zeroed by hand come back (figure); a device set healthy:
#     false lowers capacity; deleting the pool (after its claims) removes
#     both keys;
#  2. a pool with publish: None never touches its node; a pool on a node
#     that does not exist is Ready=False NodeNotFound, and Ready once a Node
#     of that name is made;
#  3. health with the node agent of node-c: a pool with discover.paths
#     [/dev/e2efpga*] and declared devices with paths; a created
#     DIR/dev/e2efpga3 shows as a Discovered device (figure) and counts in
#     node-c's capacity; the declared device file of a claim removed:
#     DevicesHealthy=False DeviceUnhealthy naming it, capacity down by one
#     (figure); restored: DevicesHealthy=True; a claim with
#     replaceUnhealthy whose device file is removed gets another device and
#     a DeviceReplaced Event (figure); the file of a discovered device
#     removed: the device leaves the pool;
#  4. a pool with discover on a node without agent (node-b):
#     AgentReporting=False NoAgent, its declared devices still handed out;
#  5. everything deleted: no Reservation, no node key; SIGTERM: exit 0.
#
# Pods never run (no kubelet); they are force-deleted (lib.sh). Names and
# resource names are unique per run (e2e-<run>.example/...).
#
# Environment (set by the ctest fixture, see tests/CMakeLists.txt):
#   KUBECONFIG           admin kubeconfig of the control plane
#   PROVISIO_KUBE_DIR    the kube-local directory
#   PATH                 with the control plane's bin/ (kubectl) first
#   PROVISIO_BINARY      the built provisio
#   PROVISIO_SOURCE_DIR  the source tree (crds/)
# Run by hand:
#   hack/kube-local up /tmp/kl && . /tmp/kl/env
#   PROVISIO_BINARY=build/provisio PROVISIO_SOURCE_DIR=$PWD bash tests/e2e/device_health_test.sh
#
# Output is TAP; the exit status is non-zero if any test failed.
# Test functions run through e2e_test, which shellcheck cannot follow.
# shellcheck disable=SC2317
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=device_lib.sh
. "$here/device_lib.sh"
e2e_init device-health

e2e_require_env KUBECONFIG PROVISIO_KUBE_DIR PROVISIO_BINARY PROVISIO_SOURCE_DIR
e2e_require_cmd kubectl python3
[ -x "$PROVISIO_BINARY" ] || e2e_bail "$PROVISIO_BINARY is not an executable"

SRC=$PROVISIO_SOURCE_DIR
RUN=$(date +%s | tail -c 5)$((RANDOM % 100))
NS=e2e-devh-$RUN
LABEL=provisio-e2e=devh-$RUN
R_CAP=e2e-$RUN.example/cap       # node capacity on node-a
R_NONE=e2e-$RUN.example/unpub    # publish None on node-b
R_HEALTH=e2e-$RUN.example/fpga   # the agent's node-c
R_NOAGENT=e2e-$RUN.example/quiet # discover on node-b, no agent there
RESOURCES=("$R_CAP" "$R_NONE" "$R_HEALTH" "$R_NOAGENT")
P_CAP=cap-$RUN
P_NONE=unpub-$RUN
P_GHOST=ghost-$RUN
P_HEALTH=health-$RUN
P_QUIET=quiet-$RUN
ROOT_C=$E2E_TMP/node-c # the agent's --host-root
mkdir -p "$ROOT_C/dev"

k() { kubectl "$@"; }
check() { python3 "$here/device_check.py" "$@"; }

cleanup() { device_cleanup "$NS" "$LABEL" "${RESOURCES[@]}"; }
e2e_on_exit cleanup

# ---- helpers ---------------------------------------------------------------------

# pool NAME NODE RESOURCE DEVICES-JSON [SPEC-JSON]: create a DevicePool.
pool() {
  python3 - "$LABEL" "$@" <<'PY' | k apply -f - >/dev/null
import json, sys
label, name, node, res, devs = sys.argv[1:6]
spec = {"nodeName": node, "resourceName": res, "devices": json.loads(devs)}
spec.update(json.loads(sys.argv[6]) if len(sys.argv) > 6 else {})
key, value = label.split("=")
print(json.dumps({"apiVersion": "provisio.dev/v1alpha1", "kind": "DevicePool",
                  "metadata": {"name": name, "labels": {key: value}}, "spec": spec}))
PY
}

# claim NAME RESOURCE COUNT [SPEC-JSON]: create a DeviceClaim in $NS.
claim() {
  python3 - "$@" <<'PY' | k create -n "$NS" -f - >/dev/null
import json, sys
name, res, count = sys.argv[1:4]
spec = {"resourceName": res, "count": int(count)}
spec.update(json.loads(sys.argv[4]) if len(sys.argv) > 4 else {})
print(json.dumps({"apiVersion": "provisio.dev/v1alpha1", "kind": "DeviceClaim",
                  "metadata": {"name": name}, "spec": spec}))
PY
}

dc_is() { check is deviceclaims.provisio.dev "$1" "$NS" "$2"; }
dp_is() { check is devicepools.provisio.dev "$1" - "$2"; }

node_keys_are() { # NODE RESOURCE "CAP ALLOC"
  local got
  got=$(check node "$1" "$2")
  [ "$got" = "$3" ] || {
    echo "$1 $2: capacity allocatable $got, want $3"
    return 1
  }
}

# pod NAME COUNT: a pod whose container has limits {R_CAP: COUNT}.
pod() {
  python3 - "$1" "$NS" "$R_CAP" "$2" <<'PY' | k apply -f - >/dev/null
import json, sys
name, ns, res, n = sys.argv[1:5]
print(json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
                  "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
                      "name": "c", "image": "registry.k8s.io/pause:3.10",
                      "resources": {"limits": {res: n}}}]}}))
PY
}

bound_to() { # POD NODE
  local got
  got=$(k get pod -n "$NS" "$1" -o jsonpath='{.spec.nodeName}')
  [ "$got" = "$2" ] || {
    echo "pod $1 is on '$got', not $2"
    return 1
  }
}

failed_scheduling() { # POD TEXT
  local out
  out=$(k get events -n "$NS" --field-selector "involvedObject.name=$1,reason=FailedScheduling" \
    -o jsonpath='{range .items[*]}{.message}{"\n"}{end}')
  grep -qF -- "$2" <<<"$out" || {
    echo "no FailedScheduling event of $1 with '$2'; events: $out"
    return 1
  }
}

event_of() { # NAME REASON
  k get events -n "$NS" --field-selector "involvedObject.name=$1,reason=$2" -o name | grep -q .
}

# ---- 0. setup ----------------------------------------------------------------------

test_setup() {
  k apply --server-side --force-conflicts -f "$SRC/crds/" >/dev/null
  k wait --for=condition=Established --timeout=60s -f "$SRC/crds/" >/dev/null
  k create namespace "$NS" >/dev/null
  local mport pport
  mport=$(e2e_free_port)
  pport=$(e2e_free_port)
  e2e_bg_start op "$E2E_TMP/op.log" "$PROVISIO_BINARY" --kubeconfig "$KUBECONFIG" --leader-elect=false \
    --metrics-bind-address="127.0.0.1:$mport" --health-probe-bind-address="127.0.0.1:$pport"
  e2e_wait_for 60 "the operator synced its caches" grep -q '"all informers synced"' "$E2E_TMP/op.log"
  touch "$ROOT_C/dev/e2edecl0" "$ROOT_C/dev/e2edecl1" "$ROOT_C/dev/e2edecl2"
  mport=$(e2e_free_port)
  pport=$(e2e_free_port)
  e2e_bg_start agent-c "$E2E_TMP/agent-c.log" "$PROVISIO_BINARY" agent --node-name node-c \
    --host-root "$ROOT_C" --metrics-bind-address="127.0.0.1:$mport" --health-probe-bind-address="127.0.0.1:$pport"
  e2e_wait_for 30 "the agent is ready" e2e_http_get "http://127.0.0.1:$pport/readyz"
}

# ---- 1. node capacity --------------------------------------------------------------

test_node_capacity_and_scheduling() {
  pool "$P_CAP" node-a "$R_CAP" '[{"id": "d0"}, {"id": "d1"}, {"id": "d2"}, {"id": "d3"}]'
  local t0
  t0=$(e2e_now)
  e2e_wait_for 30 "node-a publishes 4 4 of $R_CAP" node_keys_are node-a "$R_CAP" "4 4"
  e2e_diag "figure: pool created to node capacity published: $(e2e_since "$t0") s"
  claim c1 "$R_CAP" 1
  e2e_wait_for 30 "c1 Ready" dc_is c1 "ready.get('status') == 'True'"
  e2e_wait_for 15 "node-a allocatable 3 (one held by c1)" node_keys_are node-a "$R_CAP" "4 3"
  # kube-scheduler counts the extended resource: a pod of 1 goes to node-a
  # (no other node has it), one of 4 (> allocatable 3) fits nowhere.
  pod fits 1
  e2e_wait_for 60 "pod fits placed on node-a" bound_to fits node-a
  pod toobig 4
  e2e_wait_for 60 "pod toobig FailedScheduling Insufficient $R_CAP" failed_scheduling toobig "Insufficient $R_CAP"
  [ -z "$(k get pod -n "$NS" toobig -o jsonpath='{.spec.nodeName}')" ] || e2e_fail "pod toobig was bound"
  e2e_diag "$(k get events -n "$NS" --field-selector involvedObject.name=toobig,reason=FailedScheduling -o jsonpath='{.items[0].message}')"
  e2e_force_delete_pods "$NS"
}

test_zeroed_keys_are_restored() {
  local t0
  t0=$(e2e_now)
  k patch node node-a --subresource=status --type=merge \
    -p "{\"status\":{\"capacity\":{\"$R_CAP\":\"0\"},\"allocatable\":{\"$R_CAP\":\"0\"}}}" >/dev/null
  e2e_wait_for 15 "node-a $R_CAP restored to 4 3" node_keys_are node-a "$R_CAP" "4 3"
  e2e_diag "figure: node keys zeroed by hand to restored: $(e2e_since "$t0") s"
}

test_unhealthy_device_lowers_capacity() {
  # A device no claim holds, set healthy: false by its index in spec.devices.
  local free idx
  free=$(k get dp "$P_CAP" -o jsonpath='{range .status.devices[*]}{.id}{" "}{.claim}{"\n"}{end}' | awk 'NF == 1 {print $1; exit}')
  [ -n "$free" ] || e2e_fail "no free device in $P_CAP"
  idx=${free#d}
  k patch dp "$P_CAP" --type=json -p "[{\"op\":\"add\",\"path\":\"/spec/devices/$idx/healthy\",\"value\":false}]" >/dev/null
  e2e_wait_for 15 "node-a $R_CAP 3 2 with $free unhealthy" node_keys_are node-a "$R_CAP" "3 2"
  dp_is "$P_CAP" "st.get('capacity') == 3 and st.get('unhealthy') == 1 and st.get('available') == 2
    and devs['$free']['healthy'] is False" || e2e_fail "$P_CAP status does not show $free unhealthy"
  k get dp "$P_CAP" -o wide | sed 's/^/# /'
}

test_pool_deleted_removes_keys() {
  k delete dc -n "$NS" c1 --wait=false >/dev/null
  e2e_wait_for 15 "node-a allocatable back to 3" node_keys_are node-a "$R_CAP" "3 3"
  local t0
  t0=$(e2e_now)
  k delete dp "$P_CAP" --wait=false >/dev/null
  e2e_wait_for 30 "no $R_CAP on node-a" node_keys_are node-a "$R_CAP" "- -"
  e2e_diag "figure: pool deleted to node keys removed: $(e2e_since "$t0") s"
  e2e_wait_for 30 "$P_CAP gone" sh -c "! kubectl get dp $P_CAP 2>/dev/null"
}

# ---- 2. publish None, NodeNotFound -----------------------------------------------

test_publish_none_and_missing_node() {
  pool "$P_NONE" node-b "$R_NONE" '[{"id": "n0"}, {"id": "n1"}]' '{"publish": "None"}'
  pool "$P_GHOST" "nowhere-$RUN" "$R_NONE" '[{"id": "g0"}]'
  claim u1 "$R_NONE" 1 '{"nodeName": "node-b"}'
  e2e_wait_for 30 "u1 Ready on node-b" dc_is u1 "ready.get('status') == 'True' and st.get('nodeName') == 'node-b'"
  e2e_wait_for 15 "$P_NONE Ready, publish None, allocated 1" dp_is "$P_NONE" \
    "ready.get('status') == 'True' and st.get('publish') == 'None' and st.get('allocated') == 1"
  node_keys_are node-b "$R_NONE" "- -" || e2e_fail "node-b shows $R_NONE of a publish: None pool"
  e2e_wait_for 30 "$P_GHOST Ready=False NodeNotFound" dp_is "$P_GHOST" \
    "ready.get('status') == 'False' and ready.get('reason') == 'NodeNotFound' and 'nowhere-$RUN' in ready.get('message', '')"
  e2e_diag "$P_GHOST: $(k get dp "$P_GHOST" -o jsonpath='{.status.conditions[?(@.type=="Ready")].message}')"
  # The node joins later: the pool is looked at again without an event of its own.
  k create -f - >/dev/null <<YAML
apiVersion: v1
kind: Node
metadata: {name: nowhere-$RUN}
YAML
  e2e_wait_for 30 "$P_GHOST Ready once node nowhere-$RUN exists" dp_is "$P_GHOST" "ready.get('status') == 'True'"
  k delete node "nowhere-$RUN" --wait=false >/dev/null
  local n
  for n in node-a node-b node-c; do
    node_keys_are "$n" "$R_NONE" "- -" || e2e_fail "$n shows $R_NONE"
  done
  k delete dc -n "$NS" u1 --wait=false >/dev/null
}

# ---- 3. health with the node agent -----------------------------------------------

health_pool() {
  pool "$P_HEALTH" node-c "$R_HEALTH" '[
    {"id": "e2edecl0", "path": "/dev/e2edecl0", "attributes": {"role": "pinned"}},
    {"id": "e2edecl1", "path": "/dev/e2edecl1", "attributes": {"role": "spare"}},
    {"id": "e2edecl2", "path": "/dev/e2edecl2", "attributes": {"role": "spare"}}]' \
    '{"discover": {"paths": ["/dev/e2efpga*"], "attributes": {"role": "discovered"}}}'
}

test_agent_reports_and_hotplug() {
  health_pool
  e2e_wait_for 30 "$P_HEALTH AgentReporting=True, 3 healthy" dp_is "$P_HEALTH" \
    "cond('AgentReporting').get('status') == 'True' and st.get('capacity') == 3 and sorted(devs) == ['e2edecl0', 'e2edecl1', 'e2edecl2']"
  e2e_wait_for 15 "node-c publishes 3 3" node_keys_are node-c "$R_HEALTH" "3 3"
  local t0
  t0=$(e2e_now)
  touch "$ROOT_C/dev/e2efpga3"
  e2e_wait_for 15 "e2efpga3 Discovered and healthy in $P_HEALTH" dp_is "$P_HEALTH" \
    "devs.get('e2efpga3', {}).get('source') == 'Discovered' and devs['e2efpga3'].get('healthy') is True and st.get('capacity') == 4"
  e2e_diag "figure: a created device file to a Discovered device in the pool's status: $(e2e_since "$t0") s"
  e2e_wait_for 15 "node-c publishes 4 4" node_keys_are node-c "$R_HEALTH" "4 4"
  e2e_diag "figure: a created device file to node-c capacity 4: $(e2e_since "$t0") s"
}

test_declared_file_removed_and_restored() {
  claim pin "$R_HEALTH" 1 '{"selector": {"role": "pinned"}}'
  e2e_wait_for 30 "pin Ready with e2edecl0" dc_is pin \
    "ready.get('status') == 'True' and st.get('devices') == ['e2edecl0'] and cond('DevicesHealthy').get('status') == 'True'"
  e2e_wait_for 15 "node-c 4 3" node_keys_are node-c "$R_HEALTH" "4 3"
  local t0
  t0=$(e2e_now)
  rm "$ROOT_C/dev/e2edecl0"
  e2e_wait_for 15 "pin DevicesHealthy=False DeviceUnhealthy naming e2edecl0" dc_is pin \
    "cond('DevicesHealthy').get('status') == 'False' and cond('DevicesHealthy').get('reason') == 'DeviceUnhealthy'
     and 'e2edecl0' in cond('DevicesHealthy').get('message', '')"
  e2e_diag "figure: a held device's file removed to DevicesHealthy=False: $(e2e_since "$t0") s"
  e2e_diag "pin: $(k get dc -n "$NS" pin -o jsonpath='{.status.conditions[?(@.type=="DevicesHealthy")].message}')"
  # The claim keeps its device (no replaceUnhealthy); capacity counts healthy devices.
  e2e_wait_for 15 "node-c capacity 3" node_keys_are node-c "$R_HEALTH" "3 3"
  dc_is pin "ready.get('status') == 'True' and st.get('devices') == ['e2edecl0']" || e2e_fail "pin lost its device"
  dp_is "$P_HEALTH" "st.get('unhealthy') == 1 and devs['e2edecl0']['healthy'] is False
    and devs['e2edecl0'].get('claim') == '$NS/pin'" || e2e_fail "$P_HEALTH does not show e2edecl0 unhealthy and held"
  t0=$(e2e_now)
  touch "$ROOT_C/dev/e2edecl0"
  e2e_wait_for 15 "pin DevicesHealthy=True" dc_is pin "cond('DevicesHealthy').get('status') == 'True'"
  e2e_diag "figure: the file restored to DevicesHealthy=True: $(e2e_since "$t0") s"
  e2e_wait_for 15 "node-c 4 3 again" node_keys_are node-c "$R_HEALTH" "4 3"
}

test_replace_unhealthy() {
  claim rep "$R_HEALTH" 1 '{"selector": {"role": "spare"}, "replaceUnhealthy": true}'
  e2e_wait_for 30 "rep Ready" dc_is rep "ready.get('status') == 'True' and len(st.get('devices', [])) == 1"
  local had other t0
  had=$(check held "$NS" rep)
  case $had in
  e2edecl1) other=e2edecl2 ;;
  e2edecl2) other=e2edecl1 ;;
  *) e2e_fail "rep holds '$had', not a spare" ;;
  esac
  t0=$(e2e_now)
  rm "$ROOT_C/dev/$had"
  e2e_wait_for 20 "rep holds $other instead of $had" dc_is rep \
    "ready.get('status') == 'True' and st.get('devices') == ['$other'] and cond('DevicesHealthy').get('status') != 'False'"
  e2e_diag "figure: a replaceUnhealthy claim's device file removed to the claim holding another: $(e2e_since "$t0") s"
  e2e_wait_for 10 "a DeviceReplaced Event of rep" event_of rep DeviceReplaced
  e2e_diag "rep: $(k get events -n "$NS" --field-selector involvedObject.name=rep,reason=DeviceReplaced -o jsonpath='{.items[0].message}')"
  e2e_wait_for 15 "invariants of $R_HEALTH" check invariants "$NS" "$R_HEALTH"
  dp_is "$P_HEALTH" "devs['$had']['healthy'] is False and not devs['$had'].get('claim')" ||
    e2e_fail "$had is not free and unhealthy in $P_HEALTH"
  touch "$ROOT_C/dev/$had"
}

test_discovered_file_removed() {
  rm "$ROOT_C/dev/e2efpga3"
  e2e_wait_for 15 "e2efpga3 gone from $P_HEALTH" dp_is "$P_HEALTH" "'e2efpga3' not in devs"
}

# ---- 4. no agent -------------------------------------------------------------------

test_no_agent() {
  pool "$P_QUIET" node-b "$R_NOAGENT" '[{"id": "q0", "path": "/dev/q0"}]' '{"discover": {"paths": ["/dev/quiet*"]}}'
  e2e_wait_for 30 "$P_QUIET AgentReporting=False NoAgent" dp_is "$P_QUIET" \
    "cond('AgentReporting').get('status') == 'False' and cond('AgentReporting').get('reason') == 'NoAgent'"
  e2e_diag "$P_QUIET: $(k get dp "$P_QUIET" -o jsonpath='{.status.conditions[?(@.type=="AgentReporting")].message}')"
  # Its declared device is used as declared.
  claim quiet "$R_NOAGENT" 1
  e2e_wait_for 30 "quiet Ready with q0" dc_is quiet "ready.get('status') == 'True' and st.get('devices') == ['q0']"
}

# ---- 5. the end --------------------------------------------------------------------

test_everything_deleted_leaves_nothing() {
  k delete dc -n "$NS" --all --wait=false >/dev/null
  e2e_wait_for 60 "no claim left" sh -c "[ -z \"\$(kubectl get dc -n $NS -o name)\" ]"
  local pools t0
  pools=$(k get devicepools -l "$LABEL" -o jsonpath='{.items[*].metadata.name}')
  t0=$(e2e_now)
  k delete devicepools -l "$LABEL" --wait=false >/dev/null
  e2e_wait_for 60 "pools, Reservations and node keys of this run gone" check gone "$pools $P_CAP" "${RESOURCES[*]}"
  e2e_diag "figure: $(wc -w <<<"$pools") pools deleted to nothing left: $(e2e_since "$t0") s"
}

test_stop() {
  local rc name
  for name in agent-c op; do
    rc=$(e2e_bg_stop "$name" TERM 15) || true
    [ "$rc" = 0 ] || e2e_fail "$name exited $rc on SIGTERM, want 0"
  done
  local transient='"code":-(4|5|429|500|503|504)[,}]'
  grep -hE '"level":"error"' "$E2E_TMP/op.log" "$E2E_TMP/agent-c.log" | grep -E 'device' |
    grep -Ev "$transient" >"$E2E_TMP/errors.txt" || true
  [ ! -s "$E2E_TMP/errors.txt" ] || e2e_fail "error lines in the logs:" "$(head -5 "$E2E_TMP/errors.txt")"
}

e2e_test "setup: CRDs, namespace, the operator, node-c's agent" test_setup
e2e_last_ok || e2e_bail "no operator or agent"
e2e_test "node capacity: pods requesting the resource are placed on the node, too many pend" test_node_capacity_and_scheduling
e2e_test "node keys zeroed by hand are restored" test_zeroed_keys_are_restored
e2e_test "a device set healthy: false lowers capacity and allocatable" test_unhealthy_device_lowers_capacity
e2e_test "deleting the pool after its claims removes the node keys" test_pool_deleted_removes_keys
e2e_test "publish: None never touches the node; a pool on a missing node is NodeNotFound" test_publish_none_and_missing_node
e2e_test "the agent's devices: declared healthy, hot-plugged e2efpga3 Discovered, node capacity" test_agent_reports_and_hotplug
e2e_test "a held device's file removed: DevicesHealthy=False, capacity down; restored: True" test_declared_file_removed_and_restored
e2e_test "replaceUnhealthy: the claim gets another device and a DeviceReplaced Event" test_replace_unhealthy
e2e_test "a discovered device's file removed: the device leaves the pool" test_discovered_file_removed
e2e_test "a pool with discover on a node without agent: AgentReporting=False NoAgent" test_no_agent
e2e_test "everything of this run deleted: no Reservation, no node key" test_everything_deleted_leaves_nothing
e2e_test "the agent and the operator exit 0 on SIGTERM, no error lines" test_stop
e2e_done
