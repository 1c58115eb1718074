#!/usr/bin/env bash
# End-to-end test of the device domain (src/reconcilers/device/, core/):
# DevicePool and DeviceClaim against the real control plane, with the real
# operator running as background processes. Contract: API.md "Devices" and
# "Invariants". Node capacity and health (the node agent) are in
# device_health_test.sh.
#
#  1. allocation: a NodeCapacity pool of 4 declared devices on node-a (3
#     model=u250, 1 u280); a claim of 2 u250 gets 2 distinct u250 ids,
#     status.pool and nodeName, Ready=True Allocated, `kubectl wait` works;
#  2. all or nothing: a second claim of 2 u250 (1 free) is
#     InsufficientDevices and holds nothing (no Reservation names it);
#  3. kubectl: columns of dp (and -o wide) and dc, `kubectl get provisio`,
#     `kubectl describe` shows the Allocated event and, for the waiting
#     claim, a Warning;
#  4. deleting the first claim frees its devices (status.devices[].claim,
#     allocated, Reservations) and the waiting claim becomes Ready at once
#     (figure);
#  5. NoMatchingDevices (count 5; a resource nobody offers; nodeName node-b
#     until a pool there appears, then Ready on node-b) and InvalidSpec (a
#     selector on an unknown attribute, the message naming it);
#  6. 20 claims of one device at once over 2 pools of 10: all Ready (figure),
#     no device twice, allocated 10 + 10; a 21st is InsufficientDevices;
#  7. two replicas without leader election, one of them in-cluster as the
#     ServiceAccount of config/rbac (with --namespace of this run, so that
#     its requests are this test's only): 40 claims (1 or 2 devices) at
#     once, the admin replica killed with SIGKILL mid-batch (1 s after the
#     claims began to arrive) and restarted; sampled all along, no device is
#     shown by two claims; after convergence the invariants hold (nothing
#     held twice, every Reservation a live claim's, pool counts equal the
#     claims' holdings); all deleted: no Reservation, node keys back to
#     full; the ServiceAccount replica got no 403 and exits 0 on SIGTERM;
#  7b. the same two replicas and pools, 40 more claims, kube-apiserver
#     restarted when 10 are Ready: all Ready, no device shown twice while
#     sampled, invariants after convergence, both replicas alive, all
#     released after the delete;
#  8. everything of this run deleted: pools and claims go, no Reservation,
#     no node key of this run's resources; the operator exits 0.
#
# Every run uses its own namespace, pool names and extended resource names
# (e2e-<run>.example/...), so pools of other tests (or another operator
# working on the same control plane) never interfere.
#
# Environment (set by the ctest fixture, see tests/CMakeLists.txt):
#   KUBECONFIG           admin kubeconfig of the control plane
#   PROVISIO_KUBE_DIR    the kube-local directory (pki/ca.crt, run/ports.env)
#   PATH                 with the control plane's bin/ (kubectl) first
#   PROVISIO_BINARY      the built provisio
#   PROVISIO_SOURCE_DIR  the source tree (crds/, config/rbac)
# Run by hand:
#   hack/kube-local up /tmp/kl && . /tmp/kl/env
#   PROVISIO_BINARY=build/provisio PROVISIO_SOURCE_DIR=$PWD bash tests/e2e/device_test.sh
# E2E_KEEP=1 keeps the scratch directory (operator logs) even on success.
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
e2e_init device

e2e_require_env KUBECONFIG PROVISIO_KUBE_DIR PROVISIO_BINARY PROVISIO_SOURCE_DIR
e2e_require_cmd kubectl python3
[ -x "$PROVISIO_BINARY" ] || e2e_bail "$PROVISIO_BINARY is not an executable"
[ -r "$PROVISIO_KUBE_DIR/pki/ca.crt" ] || e2e_bail "no $PROVISIO_KUBE_DIR/pki/ca.crt"
APISERVER_PORT=$(sed -n 's/^APISERVER_PORT=//p' "$PROVISIO_KUBE_DIR/run/ports.env" 2>/dev/null || true)
[ -n "$APISERVER_PORT" ] || e2e_bail "no APISERVER_PORT in $PROVISIO_KUBE_DIR/run/ports.env"

SRC=$PROVISIO_SOURCE_DIR
SYS_NS=provisio-system
SA=provisio-controller-manager
SA_DIR=$E2E_TMP/serviceaccount
STATE=$E2E_TMP/state # ports of the operators (tests run in subshells)
mkdir -p "$STATE"
RUN=$(date +%s | tail -c 5)$((RANDOM % 100))
NS=e2e-dev-$RUN
LABEL=provisio-e2e=dev-$RUN
R_FPGA=e2e-$RUN.example/fpga # allocation, no match, kubectl
R_BULK=e2e-$RUN.example/bulk # 20 claims over 2 pools
R_RACE=e2e-$RUN.example/race # two replicas, kill -9
R_NONE=e2e-$RUN.example/none # offered by nobody
P_A=dev-$RUN-a
P_B=dev-$RUN-b
RESOURCES=("$R_FPGA" "$R_BULK" "$R_RACE")

k() { kubectl "$@"; }
check() { python3 "$here/device_check.py" "$@"; }

# invariants_are NS RESOURCE READY HELD: the invariants hold over the claims
# of NS and the pools of RESOURCE, with READY claims Ready holding HELD
# devices, in one look. Waited for as one predicate: after all claims turn
# Ready, a replica whose cache lagged may still reserve a device for a
# claim that already has its own and then release it ("released a second
# reservation"), so the counts settle a moment after the claims do
# (API.md invariant 3 holds after convergence).
invariants_are() {
  local got
  got=$(check invariants "$1" "$2") || {
    echo "$got"
    return 1
  }
  [ "$got" = "$3 $4" ] || {
    echo "Ready claims and devices held: $got, want $3 $4"
    return 1
  }
}

# ---- cleanup (after the operators were stopped: finalizers removed by hand) ----

cleanup() { device_cleanup "$NS" "$LABEL" "${RESOURCES[@]}"; }
e2e_on_exit cleanup

# ---- operators ------------------------------------------------------------------

# start_op NAME [in-cluster]: the operator without leader election, with the
# admin kubeconfig or (in-cluster) as config/rbac's ServiceAccount; one log
# per start (NAME.N.log); waits until its caches synced.
start_op() {
  local name=$1 mode=${2:-admin} mport pport run=1 log
  while [ -e "$E2E_TMP/$name.$run.log" ]; do run=$((run + 1)); done
  log=$E2E_TMP/$name.$run.log
  mport=$(e2e_free_port)
  pport=$(e2e_free_port)
  while [ "$pport" = "$mport" ]; do pport=$(e2e_free_port); done
  echo "$mport" >"$STATE/$name.metrics"
  local flags=(--leader-elect=false --metrics-bind-address="127.0.0.1:$mport"
    --health-probe-bind-address="127.0.0.1:$pport")
  if [ "$mode" = in-cluster ]; then
    # --namespace: only this run's claims, so that every request it makes
    # (and every 403 it could get) is for this test's device flow; another
    # test's namespace that is terminating would refuse its Events (403).
    e2e_bg_start "$name" "$log" env -u KUBECONFIG \
      KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT="$APISERVER_PORT" \
      PROVISIO_SERVICEACCOUNT_DIR="$SA_DIR" HOME="$E2E_TMP" "$PROVISIO_BINARY" "${flags[@]}" \
      --namespace="$NS"
  else
    e2e_bg_start "$name" "$log" "$PROVISIO_BINARY" --kubeconfig "$KUBECONFIG" "${flags[@]}"
  fi
  e2e_wait_for 60 "$name synced its caches" grep -q '"all informers synced"' "$log"
}

scrape() { e2e_http_get "http://127.0.0.1:$(cat "$STATE/$1.metrics")/metrics"; }

# rest_code NAME CODE: rest_client_requests_total{code=CODE} of NAME, summed.
rest_code() {
  scrape "$1" | python3 -c 'import re, sys
print(int(sum(float(m.group(1)) for m in re.finditer(
    r"^rest_client_requests_total\{[^}]*code=\"" + sys.argv[1] + r"\"[^}]*\} (\S+)$",
    sys.stdin.read(), re.M))))' "$2"
}

# ---- objects ---------------------------------------------------------------------

# pool NAME NODE RESOURCE DEVICES [SPEC-JSON]: create a DevicePool; DEVICES is
# a JSON list of devices or a number N (ids d0 .. dN-1); SPEC-JSON is merged
# into the spec.
pool() {
  python3 - "$LABEL" "$@" <<'PY' | k apply -f - >/dev/null
import json, sys
label, name, node, res, devs = sys.argv[1:6]
devs = [{"id": "d%d" % i} for i in range(int(devs))] if devs.isdigit() else json.loads(devs)
spec = {"nodeName": node, "resourceName": res, "devices": devs}
spec.update(json.loads(sys.argv[6]) if len(sys.argv) > 6 else {})
key, value = label.split("=")
print(json.dumps({"apiVersion": "provisio.dev/v1alpha1", "kind": "DevicePool",
                  "metadata": {"name": name, "labels": {key: value}}, "spec": spec}))
PY
}

# claims PREFIX FIRST LAST RESOURCE COUNT [SPEC-JSON]: one List of DeviceClaims
# PREFIX<FIRST> .. PREFIX<LAST> (PREFIX alone when FIRST is "-"), labelled
# e2e-batch=PREFIX, printed; COUNT "mixed" is 1, 2, 1, 2, ...
claims() {
  python3 - "$@" <<'PY'
import json, sys
prefix, first, last, res, count = sys.argv[1:6]
extra = json.loads(sys.argv[6]) if len(sys.argv) > 6 else {}
names = [prefix] if first == "-" else ["%s%d" % (prefix, i) for i in range(int(first), int(last) + 1)]
items = []
for i, n in enumerate(names):
    c = int(count) if count.isdigit() else [1, 2][i % 2]  # "mixed": 1, 2, 1, 2, ...
    spec = {"resourceName": res, "count": c}
    spec.update(extra)
    items.append({"apiVersion": "provisio.dev/v1alpha1", "kind": "DeviceClaim",
                  "metadata": {"name": n, "labels": {"e2e-batch": prefix}}, "spec": spec})
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
PY
}

# claim NAME RESOURCE COUNT [SPEC-JSON]: create one DeviceClaim in $NS.
claim() {
  claims "$1" - - "${@:2}" | k create -n "$NS" -f - >/dev/null
}

dc_is() { check is deviceclaims.provisio.dev "$1" "$NS" "$2"; }
dp_is() { check is devicepools.provisio.dev "$1" - "$2"; }

# has_reason CLAIM STATUS REASON: the claim's Ready condition.
has_reason() {
  dc_is "$1" "ready.get('status') == '$2' and ready.get('reason') == '$3'"
}

# resv_claims POOL: the claim names of POOL's Reservations, one a line.
resv_claims() {
  k get reservations -l "provisio.dev/pool-kind=DevicePool,provisio.dev/pool=$1" \
    -o jsonpath='{range .items[*]}{.spec.claim.name}{"\n"}{end}'
}

# event_of NAME REASON: a Event of NAME in $NS with REASON exists.
event_of() {
  k get events -n "$NS" --field-selector "involvedObject.name=$1,reason=$2" -o name | grep -q .
}

ready_claims() { # PREFIX: how many claims of $NS named PREFIX* are Ready
  k get deviceclaims -n "$NS" -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
    awk -v p="$1" 'index($1, p) == 1 && $2 == "True"' | wc -l
}

ready_at_least() { # PREFIX N
  local n
  n=$(ready_claims "$1")
  [ "$n" -ge "$2" ] || {
    echo "$n claims $1* Ready, want $2"
    return 1
  }
}

all_ready() { # PREFIX N
  local n
  n=$(ready_claims "$1")
  [ "$n" -eq "$2" ] || {
    echo "$n of $2 claims $1* Ready"
    return 1
  }
}

# ---- 0. setup --------------------------------------------------------------------

test_setup() {
  k apply --server-side --force-conflicts -f "$SRC/crds/" >/dev/null
  k wait --for=condition=Established --timeout=60s -f "$SRC/crds/" >/dev/null
  k create namespace "$NS" >/dev/null
  start_op op1
}

# ---- 1. allocation ---------------------------------------------------------------

test_allocation() {
  pool "$P_A" node-a "$R_FPGA" '[{"id": "fpga0", "attributes": {"model": "u250"}},
    {"id": "fpga1", "attributes": {"model": "u250"}}, {"id": "fpga2", "attributes": {"model": "u280"}},
    {"id": "fpga3", "attributes": {"model": "u250"}}]'
  e2e_wait_for 30 "$P_A Ready with 4 free" dp_is "$P_A" \
    'ready.get("status") == "True" and st.get("capacity") == 4 and st.get("available") == 4'
  local t0
  t0=$(e2e_now)
  claim a1 "$R_FPGA" 2 '{"selector": {"model": "u250"}}'
  k wait --for=condition=Ready -n "$NS" dc/a1 --timeout=30s >/dev/null ||
    e2e_fail "kubectl wait --for=condition=Ready dc/a1 failed: $(dc_is a1 False)"
  e2e_diag "figure: claim of 2 devices created to Ready (kubectl wait): $(e2e_since "$t0") s"
  dc_is a1 "ready.get('reason') == 'Allocated' and st.get('pool') == '$P_A'
    and st.get('nodeName') == 'node-a' and len(set(st.get('devices', []))) == 2
    and set(st['devices']) <= {'fpga0', 'fpga1', 'fpga3'}
    and o['metadata'].get('finalizers') and st.get('observedGeneration') == 1" ||
    e2e_fail "a1 does not hold 2 distinct u250 devices of $P_A on node-a"
  e2e_diag "a1 holds $(check held "$NS" a1 | tr '\n' ' ')"
  e2e_wait_for 10 "$P_A shows a1's devices, allocated 2" check invariants "$NS" "$R_FPGA"
  local held
  held=$(check held "$NS" a1 | tr '\n' ' ')
  dp_is "$P_A" "st.get('allocated') == 2 and st.get('available') == 2 and
    sorted(d for d, v in devs.items() if v.get('claim') == '$NS/a1') == sorted('$held'.split())" ||
    e2e_fail "$P_A status.devices does not name a1 as the holder of its devices"
  e2e_wait_for 10 "an Allocated Event of a1" event_of a1 Allocated
}

# ---- 2. all or nothing -----------------------------------------------------------

test_all_or_nothing() {
  claim a2 "$R_FPGA" 2 '{"selector": {"model": "u250"}}'
  e2e_wait_for 30 "a2 InsufficientDevices" has_reason a2 False InsufficientDevices
  dc_is a2 "not st.get('devices') and '$P_A' in ready.get('message', '')" ||
    e2e_fail "a2 shows devices or its message does not name $P_A"
  e2e_diag "a2: $(k get dc -n "$NS" a2 -o jsonpath='{.status.conditions[?(@.type=="Ready")].message}')"
  # Still nothing after the operator has had time to try more than once.
  sleep 1
  ! resv_claims "$P_A" | grep -qx a2 || e2e_fail "a Reservation names a2, which is not Ready"
  [ "$(resv_claims "$P_A" | grep -cx a1)" -eq 2 ] || e2e_fail "a1 has not 2 Reservations: $(resv_claims "$P_A")"
  check invariants "$NS" "$R_FPGA" >/dev/null || e2e_fail "$(check invariants "$NS" "$R_FPGA")"
}

# ---- 3. kubectl ------------------------------------------------------------------

test_kubectl() {
  local out want
  out=$(k get dp "$P_A" | tr -s ' ')
  sed 's/^/# /' <<<"$out"
  [ "$(head -1 <<<"$out" | sed 's/ $//')" = "NAME NODE RESOURCE CAPACITY ALLOCATED AVAILABLE READY AGE" ] ||
    e2e_fail "kubectl get dp header: $(head -1 <<<"$out")"
  [[ "$(tail -1 <<<"$out")" == "$P_A node-a $R_FPGA 4 2 2 True "* ]] || e2e_fail "kubectl get dp row: $(tail -1 <<<"$out")"
  out=$(k get dp "$P_A" -o wide | tr -s ' ')
  [ "$(head -1 <<<"$out" | sed 's/ $//')" = "NAME NODE RESOURCE CAPACITY ALLOCATED AVAILABLE READY PUBLISH UNHEALTHY AGE" ] ||
    e2e_fail "kubectl get dp -o wide header: $(head -1 <<<"$out")"
  [[ "$(tail -1 <<<"$out")" == "$P_A node-a $R_FPGA 4 2 2 True NodeCapacity 0 "* ]] ||
    e2e_fail "kubectl get dp -o wide row: $(tail -1 <<<"$out")"
  out=$(k get dc -n "$NS" a1 a2 | tr -s ' ')
  sed 's/^/# /' <<<"$out"
  [ "$(head -1 <<<"$out" | sed 's/ $//')" = "NAME RESOURCE COUNT NODE DEVICES READY AGE" ] ||
    e2e_fail "kubectl get dc header: $(head -1 <<<"$out")"
  want=$(k get dc -n "$NS" a1 -o jsonpath='{.status.devices}')
  grep -qF "a1 $R_FPGA 2 node-a $want True " <<<"$out" || e2e_fail "kubectl get dc row of a1 (devices $want)"
  grep -qE "^a2 $R_FPGA 2 False " <<<"$out" || e2e_fail "kubectl get dc row of a2"
  out=$(k get provisio -n "$NS" -o name)
  for want in "devicepool.provisio.dev/$P_A" deviceclaim.provisio.dev/a1 deviceclaim.provisio.dev/a2; do
    grep -qxF "$want" <<<"$out" || e2e_fail "kubectl get provisio does not list $want"
  done
  e2e_wait_for 10 "describe dc a1 shows the Allocated event" \
    sh -c "kubectl describe dc -n $NS a1 | grep -Eq 'Normal +Allocated +.*Allocated fpga[0-9], fpga[0-9] of DevicePool $P_A'"
  e2e_wait_for 10 "describe dc a2 shows a Warning InsufficientDevices event" \
    sh -c "kubectl describe dc -n $NS a2 | grep -Eq 'Warning +InsufficientDevices '"
  k describe dc -n "$NS" a2 | sed -n '/^Events:/,$p' | sed 's/^/# /'
}

# ---- 4. freeing ------------------------------------------------------------------

test_delete_frees_and_waiting_claim_gets_them() {
  local held t0
  held=$(check held "$NS" a1 | tr '\n' ' ')
  t0=$(e2e_now)
  k delete dc -n "$NS" a1 --wait=false >/dev/null
  e2e_wait_for 30 "a2 Ready once a1 is gone" has_reason a2 True Allocated
  e2e_diag "figure: first claim deleted to the waiting claim Ready: $(e2e_since "$t0") s"
  e2e_wait_for 30 "a1 gone" sh -c "! kubectl get dc -n $NS a1 2>/dev/null"
  ! resv_claims "$P_A" | grep -qx a1 || e2e_fail "a Reservation still names a1"
  e2e_wait_for 10 "invariants with a2 holding 2" check invariants "$NS" "$R_FPGA"
  e2e_diag "a1 held $held; a2 holds $(check held "$NS" a2 | tr '\n' ' ')"
  k delete dc -n "$NS" a2 --wait=false >/dev/null
  e2e_wait_for 30 "$P_A: nothing held, no Reservation" check clean "$R_FPGA"
  e2e_wait_for 10 "$P_A allocated 0 available 4" dp_is "$P_A" \
    "st.get('allocated') == 0 and st.get('available') == 4 and not any(d.get('claim') for d in devs.values())"
}

# ---- 5. no match, invalid --------------------------------------------------------

test_no_matching_and_invalid() {
  claim n-count "$R_FPGA" 5
  claim n-attr "$R_FPGA" 1 '{"selector": {"memory": "64Gi"}}'
  claim n-res "$R_NONE" 1
  claim n-node "$R_FPGA" 1 '{"nodeName": "node-b"}'
  e2e_wait_for 30 "n-count NoMatchingDevices" has_reason n-count False NoMatchingDevices
  e2e_wait_for 30 "n-attr InvalidSpec naming the attribute" dc_is n-attr \
    "ready.get('status') == 'False' and ready.get('reason') == 'InvalidSpec' and 'memory' in ready.get('message', '')"
  e2e_wait_for 30 "n-res NoMatchingDevices" has_reason n-res False NoMatchingDevices
  e2e_wait_for 30 "n-node NoMatchingDevices" has_reason n-node False NoMatchingDevices
  local c
  for c in n-count n-attr n-res n-node; do
    e2e_diag "$c: $(k get dc -n "$NS" "$c" -o jsonpath='{.status.conditions[?(@.type=="Ready")].reason}: {.status.conditions[?(@.type=="Ready")].message}')"
    dc_is "$c" "not st.get('devices')" || e2e_fail "$c shows devices"
  done
  ! resv_claims "$P_A" | grep -q '^n-' || e2e_fail "a Reservation names a claim that is not Ready"
  local t0
  t0=$(e2e_now)
  pool "$P_B" node-b "$R_FPGA" 2
  e2e_wait_for 30 "n-node Ready on node-b once $P_B exists" dc_is n-node \
    "ready.get('status') == 'True' and st.get('nodeName') == 'node-b' and st.get('pool') == '$P_B'"
  e2e_diag "figure: pool on node-b created to the waiting claim Ready: $(e2e_since "$t0") s"
  # The others still cannot be satisfied: 5 of one pool, an unknown key.
  has_reason n-count False NoMatchingDevices || e2e_fail "n-count changed"
  has_reason n-attr False InvalidSpec || e2e_fail "n-attr changed"
  k delete dc -n "$NS" n-count n-attr n-res n-node --wait=false >/dev/null
  e2e_wait_for 30 "nothing of $R_FPGA held" check clean "$R_FPGA"
}

# ---- 6. many claims --------------------------------------------------------------

test_many_claims_over_two_pools() {
  pool "bulk-$RUN-a" node-a "$R_BULK" 10
  pool "bulk-$RUN-b" node-b "$R_BULK" 10
  e2e_wait_for 30 "both bulk pools Ready" sh -c \
    "python3 $here/device_check.py is devicepools.provisio.dev bulk-$RUN-a - 'st.get(\"available\") == 10' &&
     python3 $here/device_check.py is devicepools.provisio.dev bulk-$RUN-b - 'st.get(\"available\") == 10'"
  local t0
  t0=$(e2e_now)
  claims m 1 20 "$R_BULK" 1 | k create -n "$NS" -f - >/dev/null
  e2e_wait_for 60 "20 claims Ready" all_ready m 20
  e2e_diag "figure: 20 claims of 1 device over 2 pools: all Ready $(e2e_since "$t0") s after create"
  e2e_wait_for 20 "invariants over 20 claims, 20 Ready holding 20" invariants_are "$NS" "$R_BULK" 20 20
  dp_is "bulk-$RUN-a" "st.get('allocated') == 10 and st.get('available') == 0" || e2e_fail "bulk-$RUN-a is not full"
  dp_is "bulk-$RUN-b" "st.get('allocated') == 10 and st.get('available') == 0" || e2e_fail "bulk-$RUN-b is not full"
  claim m21 "$R_BULK" 1
  e2e_wait_for 30 "m21 InsufficientDevices" has_reason m21 False InsufficientDevices
  check invariants "$NS" "$R_BULK" >/dev/null || e2e_fail "$(check invariants "$NS" "$R_BULK")"
  k delete dc -n "$NS" m21 --wait=false >/dev/null
}

# ---- 7. two replicas, kill -9 -----------------------------------------------------

test_rbac_and_token() {
  k get namespace "$SYS_NS" >/dev/null 2>&1 || k create namespace "$SYS_NS" >/dev/null
  k apply --server-side --force-conflicts -k "$SRC/config/rbac" >/dev/null
  e2e_wait_for 30 "ServiceAccount $SA" k get serviceaccount -n "$SYS_NS" "$SA"
  mkdir -p "$SA_DIR"
  k create token "$SA" -n "$SYS_NS" --duration=1h >"$SA_DIR/token"
  [ -s "$SA_DIR/token" ] || e2e_fail "kubectl create token gave nothing"
  cp "$PROVISIO_KUBE_DIR/pki/ca.crt" "$SA_DIR/ca.crt"
  echo "$SYS_NS" >"$SA_DIR/namespace"
}

node_keys_are() { # NODE RESOURCE "CAP ALLOC"
  local got
  got=$(check node "$1" "$2")
  [ "$got" = "$3" ] || {
    echo "$1 $2: capacity allocatable $got, want $3"
    return 1
  }
}

# elapsed_since T0: seconds since T0 (an $EPOCHREALTIME), measured without
# starting a process (a loaded machine takes seconds to start python).
elapsed_since() {
  local now=$EPOCHREALTIME
  local us=$(((${now/./} - ${1/./}) / 1000))
  printf '%d.%02d\n' $((us / 1000)) $((us % 1000 / 10))
}

# kill_when_ready NAME N: watch the claims of the batch r*; once N of them
# have been Ready, kill -9 NAME and write the seconds since $t0 to
# $E2E_TMP/killed-after.
kill_when_ready() {
  local name=$1 want=$2 claim status
  local -A ready=()
  while read -r claim status; do
    [ "$status" = True ] && ready[$claim]=1
    if ((${#ready[@]} >= want)); then
      kill -KILL "$(e2e_bg_pid "$name")"
      elapsed_since "$t0" >"$E2E_TMP/killed-after"
      return 0
    fi
  done < <(timeout 120 kubectl get dc -n "$NS" -l e2e-batch=r -w \
    -o jsonpath='{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}' 2>/dev/null)
  return 1
}

# overlap_sampler: until $E2E_TMP/race.stop exists, check over and over that
# no device of $R_RACE is shown by two claims; violations go to
# $E2E_TMP/overlap.txt, the number of samples to $E2E_TMP/samples.
overlap_sampler() {
  local n=0
  while [ ! -e "$E2E_TMP/race.stop" ]; do
    # Only what the check found; a failed kubectl (the API server being
    # restarted in 7b) is no finding.
    check overlap "$NS" "$R_RACE" 2>/dev/null | grep '^device ' >>"$E2E_TMP/overlap.txt" || true
    n=$((n + 1))
  done
  echo "$n" >"$E2E_TMP/samples"
}

test_two_replicas_kill9() {
  start_op op2 in-cluster
  pool "race-$RUN-a" node-a "$R_RACE" 60
  pool "race-$RUN-b" node-b "$R_RACE" 60
  e2e_wait_for 30 "node-a and node-b publish 60 $R_RACE" sh -c \
    "python3 $here/device_check.py node node-a $R_RACE | grep -qx '60 60' &&
     python3 $here/device_check.py node node-b $R_RACE | grep -qx '60 60'"
  local base403 t0 creator
  base403=$(rest_code op2 403)
  # 40 claims of 1 and 2 devices (60 of 120): a claim of 2 always fits
  # somewhere. Created in the background; op1 is killed as soon as a few
  # are Ready, in the middle of the batch, and started again (as a
  # Deployment would): both replicas race for what is left.
  claims r 1 40 "$R_RACE" mixed >"$E2E_TMP/race.json"
  # Sampled all along: no device shown by two claims at any moment.
  overlap_sampler &
  local sampler=$!
  # op1 is killed by a watch as soon as 10 claims have turned Ready: in the
  # middle of the batch, whatever the machine's speed.
  t0=$EPOCHREALTIME
  kill_when_ready op1 10 &
  local killer=$!
  k create -n "$NS" -f "$E2E_TMP/race.json" >/dev/null &
  creator=$!
  wait "$killer" || e2e_fail "op1 was not killed"
  e2e_bg_wait op1 10 >/dev/null || e2e_fail "op1 did not die of SIGKILL"
  e2e_diag "op1 killed with SIGKILL when 10 of 40 claims were Ready, $(cat "$E2E_TMP/killed-after") s into the batch"
  start_op op1
  wait "$creator" || e2e_fail "kubectl create of the 40 claims failed"
  e2e_wait_for 90 "40 claims Ready with two replicas" all_ready r 40
  e2e_diag "figure: 40 claims (60 devices), two replicas, one killed mid-batch: all Ready $(elapsed_since "$t0") s"
  touch "$E2E_TMP/race.stop"
  wait "$sampler" || true
  [ ! -s "$E2E_TMP/overlap.txt" ] || e2e_fail "a device was shown by two claims at once:" "$(head -5 "$E2E_TMP/overlap.txt")"
  e2e_diag "$(cat "$E2E_TMP/samples") samples of every claim's status during the batch: no device shown twice"
  t0=$(e2e_now)
  e2e_wait_for 30 "invariants after convergence, 40 Ready holding 60" invariants_are "$NS" "$R_RACE" 40 60
  e2e_diag "invariants held $(e2e_since "$t0") s after all were Ready"
  e2e_wait_for 15 "node keys: 60 capacity, 60 allocatable in total" sh -c \
    "a=\$(python3 $here/device_check.py node node-a $R_RACE); b=\$(python3 $here/device_check.py node node-b $R_RACE);
     [ \"\${a% *} \${b% *}\" = '60 60' ] && [ \$((\${a#* } + \${b#* })) -eq 60 ]"
  t0=$(e2e_now)
  k delete dc -n "$NS" -l e2e-batch=r --wait=false >/dev/null
  e2e_wait_for 60 "no claim r* left" sh -c "[ -z \"\$(kubectl get dc -n $NS -l e2e-batch=r -o name)\" ]"
  e2e_wait_for 30 "nothing of $R_RACE held" check clean "$R_RACE"
  e2e_wait_for 15 "node-a $R_RACE back to 60 60" node_keys_are node-a "$R_RACE" "60 60"
  e2e_wait_for 15 "node-b $R_RACE back to 60 60" node_keys_are node-b "$R_RACE" "60 60"
  e2e_diag "figure: all claims deleted to nothing held and node keys full: $(e2e_since "$t0") s"
  # The in-cluster replica (config/rbac's role) did its share without a 403.
  local n403
  n403=$(rest_code op2 403)
  ((n403 == base403)) || e2e_fail "op2 (ServiceAccount) got $((n403 - base403)) 403s:" \
    "$(scrape op2 | grep '^rest_client_requests_total' | grep -v 'code="200"')"
  ! grep -Eiq '"code":403|forbidden' "$E2E_TMP"/op2.*.log || e2e_fail "403/Forbidden in op2's log:" \
    "$(grep -Ei '"code":403|forbidden' "$E2E_TMP"/op2.*.log | head -3)"
  e2e_diag "op2 (ServiceAccount) requests: $(rest_code op2 200) x 200, $(rest_code op2 201) x 201, $(rest_code op2 409) x 409, $n403 x 403"
  local rc
  rc=$(e2e_bg_stop op2 TERM 15) || true
  [ "$rc" = 0 ] || e2e_fail "op2 exited $rc on SIGTERM, want 0"
}

# ---- 7b. API server restart mid-batch --------------------------------------------

# restart_apiserver_when_ready PREFIX N: once N claims of the batch PREFIX
# have been Ready, restart kube-apiserver (hack/kube-local, back once /readyz
# is ok) and write the seconds since $t0 to $E2E_TMP/restarted-after.
restart_apiserver_when_ready() {
  local prefix=$1 want=$2 claim status
  local -A ready=()
  while read -r claim status; do
    [ "$status" = True ] && ready[$claim]=1
    if ((${#ready[@]} >= want)); then
      elapsed_since "$t0" >"$E2E_TMP/restarted-after"
      local from=$EPOCHREALTIME rc=0
      "$SRC/hack/kube-local" restart-apiserver "$PROVISIO_KUBE_DIR" >"$E2E_TMP/restart.log" 2>&1 || rc=$?
      # restart-apiserver returns once /readyz is ok; 1 s of slack for the
      # answers in flight at that moment.
      echo "$from,$(python3 -c 'import time; print(time.time() + 1)')" >"$STATE/restart.window"
      return "$rc"
    fi
  done < <(timeout 120 kubectl get dc -n "$NS" -l "e2e-batch=$prefix" -w \
    -o jsonpath='{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}' 2>/dev/null)
  return 1
}

test_apiserver_restart_mid_batch() {
  # Both replicas again (op2 as the ServiceAccount), on the pools of 7.
  start_op op2 in-cluster
  rm -f "$E2E_TMP/race.stop" "$E2E_TMP/overlap.txt"
  claims s 1 40 "$R_RACE" mixed >"$E2E_TMP/storm2.json"
  overlap_sampler &
  local sampler=$! t0 restarter creator
  t0=$EPOCHREALTIME
  restart_apiserver_when_ready s 10 &
  restarter=$!
  k create -n "$NS" -f "$E2E_TMP/storm2.json" >/dev/null &
  creator=$!
  wait "$restarter" || e2e_fail "kube-apiserver was not restarted" "$(tail -n 20 "$E2E_TMP/restart.log" 2>/dev/null)"
  e2e_diag "kube-apiserver restarted when 10 of 40 claims were Ready, $(cat "$E2E_TMP/restarted-after") s into the batch; back after $(elapsed_since "$t0") s"
  # The create may have been cut by the restart: whatever it did not make
  # is made now (the claims already there stay as they are).
  wait "$creator" || k create -n "$NS" -f "$E2E_TMP/storm2.json" >/dev/null 2>&1 || true
  e2e_wait_for 120 "40 claims Ready after the API server restart" all_ready s 40
  e2e_diag "figure: 40 claims (60 devices), two replicas, API server restarted mid-batch: all Ready $(elapsed_since "$t0") s"
  touch "$E2E_TMP/race.stop"
  wait "$sampler" || true
  [ ! -s "$E2E_TMP/overlap.txt" ] || e2e_fail "a device was shown by two claims at once:" "$(head -5 "$E2E_TMP/overlap.txt")"
  e2e_diag "$(cat "$E2E_TMP/samples") samples during the batch and the restart: no device shown twice"
  e2e_wait_for 30 "invariants after convergence, 40 Ready holding 60" invariants_are "$NS" "$R_RACE" 40 60
  e2e_bg_alive op1 || e2e_fail "op1 died across the restart" "$(tail -n 20 "$(e2e_bg_log op1)")"
  e2e_bg_alive op2 || e2e_fail "op2 died across the restart" "$(tail -n 20 "$(e2e_bg_log op2)")"
  k delete dc -n "$NS" -l e2e-batch=s --wait=false >/dev/null
  e2e_wait_for 60 "no claim s* left" sh -c "[ -z \"\$(kubectl get dc -n $NS -l e2e-batch=s -o name)\" ]"
  e2e_wait_for 30 "nothing of $R_RACE held" check clean "$R_RACE"
  e2e_wait_for 15 "node-a $R_RACE back to 60 60" node_keys_are node-a "$R_RACE" "60 60"
  e2e_wait_for 15 "node-b $R_RACE back to 60 60" node_keys_are node-b "$R_RACE" "60 60"
  local rc
  rc=$(e2e_bg_stop op2 TERM 15) || true
  [ "$rc" = 0 ] || e2e_fail "op2 exited $rc on SIGTERM, want 0"
}

# ---- 8. everything deleted -------------------------------------------------------

test_everything_deleted_leaves_nothing() {
  local claims_left
  claims_left=$(k get dc -n "$NS" -o name | wc -l)
  local t0
  t0=$(e2e_now)
  k delete dc -n "$NS" --all --wait=false >/dev/null
  e2e_wait_for 60 "no claim left" sh -c "[ -z \"\$(kubectl get dc -n $NS -o name)\" ]"
  e2e_diag "figure: the last $claims_left claims deleted: gone in $(e2e_since "$t0") s"
  local pools
  pools=$(k get devicepools -l "$LABEL" -o jsonpath='{.items[*].metadata.name}')
  t0=$(e2e_now)
  k delete devicepools -l "$LABEL" --wait=false >/dev/null
  # A Reservation orphaned by the API server restart of 10 (made, its answer
  # lost) is freed by the next orphan sweep, every 60 s (REC_RESV_RESYNC),
  # and only then can its pool go: a sweep period and slack.
  e2e_wait_for 100 "pools, Reservations and node keys of this run gone" check gone "$pools" "${RESOURCES[*]}"
  e2e_diag "figure: $(wc -w <<<"$pools") pools deleted to nothing left: $(e2e_since "$t0") s"
  [ -z "$(k get reservations -l provisio.dev/pool-kind=DevicePool -o name | grep -- "-$RUN-" || true)" ] ||
    e2e_fail "Reservations of this run's pools left"
}

test_operator_exits_cleanly() {
  local rc log
  log=$(e2e_bg_log op1)
  rc=$(e2e_bg_stop op1 TERM 15) || true
  [ "$rc" = 0 ] || e2e_fail "op1 exited $rc on SIGTERM, want 0"
  grep -q '"shutdown complete"' "$log" || e2e_fail "no shutdown complete in $log"
  # No failed reconcile of this domain but transient API answers (see ip_test),
  # and Events not written while the API server was down (7b restarts it).
  local transient='"code":-(4|5|429|500|503|504)[,}]|"msg":"unable to write an Event","error":"transport failure'
  grep -hE '"level":"error".*"(deviceclaim|devicepool|devicereservation|devicenode)"' "$E2E_TMP"/op*.log |
    grep -Ev "$transient" >"$E2E_TMP/errors.txt" || true
  # A kube-apiserver just restarted (7b) answers 403 until its RBAC caches
  # have synced: such lines are tolerated inside that window only (as in
  # ip_incluster_test), and nowhere else in any log of this run.
  local window=- out
  [ -s "$STATE/restart.window" ] && window=$(cat "$STATE/restart.window")
  out=$(python3 "$here/logcheck.py" no-forbidden "$window" "$E2E_TMP"/op*.log) ||
    e2e_fail "403/Forbidden in the operator logs:" "$out"
  [ "$out" = "tolerated 0" ] ||
    e2e_diag "${out#tolerated } log lines with 403 while kube-apiserver was starting (RBAC caches not synced): tolerated"
  grep -Eiv '\b403\b|forbidden' "$E2E_TMP/errors.txt" >"$E2E_TMP/errors2.txt" || true
  [ ! -s "$E2E_TMP/errors2.txt" ] || e2e_fail "error lines in the operator logs:" "$(head -5 "$E2E_TMP/errors2.txt")"
}

# DEVICE_TEST_ONLY=REGEX runs only the tests whose function name matches
# (and setup; by hand: later tests may need what earlier ones made).
run() {
  [[ -z "${DEVICE_TEST_ONLY:-}" || "$2" =~ ${DEVICE_TEST_ONLY:-} ]] || return 0
  e2e_test "$@"
}

e2e_test "setup: CRDs, namespace, the operator" test_setup
e2e_last_ok || e2e_bail "no operator"
run "a claim of 2 u250 gets 2 distinct u250 devices of the node-a pool, Ready Allocated" test_allocation
run "all or nothing: 2 wanted, 1 free: InsufficientDevices, nothing held" test_all_or_nothing
run "kubectl: dp and dc columns, -o wide, get provisio, describe events" test_kubectl
run "deleting a claim frees its devices; the waiting claim gets them" test_delete_frees_and_waiting_claim_gets_them
run "NoMatchingDevices (count, resource, node until a pool appears) and InvalidSpec (selector key)" test_no_matching_and_invalid
run "20 claims over 2 pools of 10: all Ready, none twice; the 21st waits" test_many_claims_over_two_pools
run "config/rbac installed, a ServiceAccount token" test_rbac_and_token
if e2e_last_ok; then
  run "two replicas (one as the ServiceAccount), kill -9 mid-batch: invariants, no 403" test_two_replicas_kill9
  run "two replicas, kube-apiserver restarted mid-batch: all Ready, invariants" test_apiserver_restart_mid_batch
fi
run "everything of this run deleted: no Reservation, no node key" test_everything_deleted_leaves_nothing
run "the operator exits 0 on SIGTERM, no error lines" test_operator_exits_cleanly
e2e_done
