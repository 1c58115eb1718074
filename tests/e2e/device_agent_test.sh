#!/usr/bin/env bash
# End-to-end test of the node agent's device half
# (src/reconcilers/device/agent; API.md "Devices", "The node agent") against
# the real control plane, whose fake nodes are node-a, node-b and node-c.
# Each agent runs as a background process with its own --host-root, a
# directory that stands for its node's root file system.
#
#  1. install: the CRDs, provisio-system, config/agent/rbac.yaml, a token of
#     the agent's ServiceAccount;
#  2. an agent for node-a (admin kubeconfig) reports a DevicePool of node-a
#     in status.agent: a declared device whose file exists (present), one
#     whose file does not (present false, with a message), a declared
#     device without a path (not listed), discover.paths [/dev/acc*];
#  3. hot-plug: $HOSTROOT/dev/acc7 created -> a Discovered acc7, present,
#     within 5 s; deleted -> gone from the report within 5 s; the declared
#     fpga0's file removed -> present false within 5 s (each time printed as
#     a "# figure:" line);
#  4. a pool of node-b is never touched by node-a's agent (no status.agent),
#     and the agent writes nothing while nothing changes (only heartbeats);
#  5. the agent's peak RSS (VmHWM) printed as a figure;
#  6. an agent as its ServiceAccount (config/agent's RBAC; no KUBECONFIG)
#     for node-c reports its pool, and /metrics shows PATCH 200 and no 403;
#  7. SIGTERM: every agent exits 0.
#
# Environment (set by the ctest fixture, see tests/CMakeLists.txt):
#   KUBECONFIG           admin kubeconfig of the control plane
#   PROVISIO_KUBE_DIR    the kube-local directory (pki/ca.crt, run/ports.env)
#   PATH                 with the control plane's bin/ (kubectl) first
#   PROVISIO_BINARY      the built provisio
#   PROVISIO_SOURCE_DIR  the source tree (config/, crds/)
# Run by hand:
#   hack/kube-local up /tmp/kl
#   KUBECONFIG=/tmp/kl/kubeconfig PROVISIO_KUBE_DIR=/tmp/kl PATH=/tmp/kl/bin:$PATH \
#     PROVISIO_BINARY=build/provisio PROVISIO_SOURCE_DIR=$PWD bash tests/e2e/device_agent_test.sh
#
# Output is TAP; the exit status is non-zero if any test failed.
# Test functions run through e2e_test, which shellcheck cannot follow.
# shellcheck disable=SC2317
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init device-agent

e2e_require_env KUBECONFIG PROVISIO_KUBE_DIR PROVISIO_BINARY PROVISIO_SOURCE_DIR
e2e_require_cmd kubectl python3
[ -x "$PROVISIO_BINARY" ] || e2e_bail "$PROVISIO_BINARY is not an executable"
[ -r "$PROVISIO_KUBE_DIR/pki/ca.crt" ] || e2e_bail "no $PROVISIO_KUBE_DIR/pki/ca.crt"
APISERVER_PORT=$(sed -n 's/^APISERVER_PORT=//p' "$PROVISIO_KUBE_DIR/run/ports.env" 2>/dev/null || true)
[ -n "$APISERVER_PORT" ] || e2e_bail "no APISERVER_PORT in $PROVISIO_KUBE_DIR/run/ports.env"

SRC=$PROVISIO_SOURCE_DIR
SYS_NS=provisio-system
SA=provisio-agent
SA_DIR=$E2E_TMP/serviceaccount
STATE=$E2E_TMP/state # ports of each agent, for later tests (they run in subshells)
mkdir -p "$STATE"
ROOT_A=$E2E_TMP/node-a
ROOT_C=$E2E_TMP/node-c
mkdir -p "$ROOT_A/dev" "$ROOT_C/dev"
# Pool names of this run (cluster-scoped: unique, so runs never collide).
SUFFIX=$(printf '%04x' $((RANDOM % 65536)))
POOL_A=e2e-dagent-a-$SUFFIX
POOL_B=e2e-dagent-b-$SUFFIX
POOL_C=e2e-dagent-c-$SUFFIX

k() { kubectl "$@"; }

e2e_on_exit kubectl delete devicepools "$POOL_A" "$POOL_B" "$POOL_C" --ignore-not-found --wait=false

# ---- agents ------------------------------------------------------------------

# ports NAME: two free loopback ports for NAME's metrics and probes, kept in
# $STATE; print the two flags.
ports() {
  local mport pport
  mport=$(e2e_free_port)
  pport=$(e2e_free_port)
  while [ "$pport" = "$mport" ]; do pport=$(e2e_free_port); done
  echo "$mport" >"$STATE/$1.metrics"
  echo "$pport" >"$STATE/$1.probe"
  echo "--metrics-bind-address=127.0.0.1:$mport --health-probe-bind-address=127.0.0.1:$pport"
}

# start_agent NAME NODE ROOT: `provisio agent` with the admin kubeconfig.
start_agent() {
  local name=$1 node=$2 root=$3 flags
  flags=$(ports "$name")
  # shellcheck disable=SC2086 # two flags, no spaces inside
  e2e_bg_start "$name" "$E2E_TMP/$name.log" "$PROVISIO_BINARY" agent --node-name "$node" \
    --host-root "$root" $flags
}

# start_agent_in_cluster NAME NODE ROOT: as the agent's ServiceAccount (no
# KUBECONFIG; token, CA and namespace from $SA_DIR), as a pod of config/agent.
start_agent_in_cluster() {
  local name=$1 node=$2 root=$3 flags
  flags=$(ports "$name")
  # shellcheck disable=SC2086
  e2e_bg_start "$name" "$E2E_TMP/$name.log" env -u KUBECONFIG \
    KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT="$APISERVER_PORT" \
    PROVISIO_SERVICEACCOUNT_DIR="$SA_DIR" HOME="$E2E_TMP" \
    "$PROVISIO_BINARY" agent --node-name "$node" --host-root "$root" $flags
}

probe() { e2e_http_get "http://127.0.0.1:$(cat "$STATE/$1.probe")/$2"; }
scrape() { e2e_http_get "http://127.0.0.1:$(cat "$STATE/$1.metrics")/metrics"; }

# patches NAME: the PATCH requests NAME has made (all codes).
patches() {
  scrape "$1" | python3 -c 'import re, sys
print(int(sum(float(m.group(1)) for m in re.finditer(
    r"^rest_client_requests_total\{[^}]*method=\"PATCH\"[^}]*\} (\S+)$", sys.stdin.read(), re.M))))'
}

# stop_cleanly NAME: SIGTERM, exit 0 within 5 s.
stop_cleanly() {
  local name=$1 rc
  rc=$(e2e_bg_stop "$name" TERM 15) || true
  [ "$rc" = 0 ] || e2e_fail "$name exited $rc on SIGTERM, want 0"
}

# ---- the report --------------------------------------------------------------

# agent_is POOL PYTHON: exit 0 when PYTHON (a boolean expression over
# `agent`, the pool's status.agent, and `dev`, its devices by id) holds;
# else print the report.
agent_is() {
  local json
  json=$(k get devicepool "$1" -o json) || return 1
  python3 -c 'import json, sys
pool = json.loads(sys.stdin.read())
agent = pool.get("status", {}).get("agent")
dev = {d["id"]: d for d in (agent or {}).get("devices", [])}
if not eval("(" + sys.argv[1] + ")"):
    sys.exit("status.agent: %s" % json.dumps(agent))' "$2" <<<"$json"
}

pool_yaml() {
  local name=$1 node=$2
  cat <<EOF
apiVersion: provisio.dev/v1alpha1
kind: DevicePool
metadata:
  name: $name
spec:
  nodeName: $node
  resourceName: vendor.example/fpga
  devices:
    - id: fpga0
      path: /dev/fpga0
    - id: fpga1
      path: /dev/fpga1
    - id: nopath
  discover:
    paths: ["/dev/acc*"]
EOF
}

# ---- 1. install ------------------------------------------------------------------

test_install() {
  k apply --server-side --force-conflicts -f "$SRC/crds/" >/dev/null
  k wait --for=condition=Established --timeout=60s -f "$SRC/crds/" >/dev/null
  k get namespace "$SYS_NS" >/dev/null 2>&1 || k create namespace "$SYS_NS" >/dev/null
  k apply --server-side --force-conflicts -f "$SRC/config/agent/rbac.yaml" >/dev/null
  mkdir -p "$SA_DIR"
  k create token "$SA" -n "$SYS_NS" --duration=1h >"$SA_DIR/token"
  [ -s "$SA_DIR/token" ] || e2e_fail "kubectl create token gave nothing"
  cp "$PROVISIO_KUBE_DIR/pki/ca.crt" "$SA_DIR/ca.crt"
  echo "$SYS_NS" >"$SA_DIR/namespace"
}

# ---- 2. the report ---------------------------------------------------------------

test_reports_declared_devices() {
  touch "$ROOT_A/dev/fpga0"
  pool_yaml "$POOL_B" node-b | k apply -f - >/dev/null
  pool_yaml "$POOL_A" node-a | k apply -f - >/dev/null
  start_agent a node-a "$ROOT_A"
  e2e_wait_for 30 "a /readyz ok" probe a readyz
  e2e_wait_for 10 "$POOL_A reports fpga0 present, fpga1 absent" agent_is "$POOL_A" '
    agent["observedGeneration"] == pool["metadata"]["generation"]
    and sorted(dev) == ["fpga0", "fpga1"]
    and dev["fpga0"] == {"id": "fpga0", "path": "/dev/fpga0", "source": "Declared", "present": True}
    and dev["fpga1"]["present"] is False and dev["fpga1"]["source"] == "Declared"
    and dev["fpga1"]["message"] == "No such file or directory"
    and agent["heartbeatTime"].endswith("Z")'
}

# ---- 3. hot-plug -----------------------------------------------------------------

# timed LIMIT WHAT FIGURE CHECK...: e2e_wait_for, then print the time taken.
timed() {
  local limit=$1 what=$2 figure=$3 t0
  shift 3
  t0=$(e2e_now)
  "$@" # the change
  e2e_wait_for "$limit" "$what" agent_is "$POOL_A" "$CHECK"
  e2e_diag "figure: $figure: $(e2e_since "$t0") s"
}

test_hotplug_appears() {
  CHECK='"acc7" in dev and dev["acc7"] == {"id": "acc7", "path": "/dev/acc7",
         "source": "Discovered", "present": True}'
  timed 5 "a Discovered acc7 appears" "hot-plug: a created device file in status.agent" \
    touch "$ROOT_A/dev/acc7"
}

test_hotplug_vanishes() {
  CHECK='"acc7" not in dev and sorted(dev) == ["fpga0", "fpga1"]'
  timed 5 "acc7 leaves the report" "hot-unplug: a deleted device file gone from status.agent" \
    rm "$ROOT_A/dev/acc7"
}

test_declared_file_removed() {
  CHECK='dev["fpga0"]["present"] is False'
  timed 5 "fpga0 turns present false" "a declared device file removed: present false" \
    rm "$ROOT_A/dev/fpga0"
}

# ---- 4. only its node; no writes when nothing changes ------------------------------

test_other_node_untouched_and_quiet() {
  local before after
  before=$(patches a)
  sleep 5
  after=$(patches a)
  # A heartbeat (every 30 s) may fall into the window: at most one write.
  ((after - before <= 1)) || e2e_fail "$((after - before)) status writes in 5 s with nothing changed"
  e2e_diag "figure: status writes in 5 s with nothing changed: $((after - before))"
  agent_is "$POOL_B" 'agent is None' || e2e_fail "node-a's agent wrote $POOL_B of node-b"
  if grep -q "$POOL_B" "$(e2e_bg_log a)"; then e2e_fail "node-a's agent logged $POOL_B"; fi
}

# ---- 5. memory -------------------------------------------------------------------

test_rss() {
  local pid hwm
  pid=$(e2e_bg_pid a)
  hwm=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$pid/status")
  [ -n "$hwm" ] || e2e_fail "no VmHWM for pid $pid"
  e2e_diag "figure: agent peak RSS (VmHWM) with 2 pools: $((hwm / 1024)).$(((hwm % 1024) * 10 / 1024)) MiB ($PROVISIO_BINARY)"
}

# ---- 6. as the ServiceAccount ----------------------------------------------------

test_in_cluster_no_403() {
  touch "$ROOT_C/dev/fpga0" "$ROOT_C/dev/acc3"
  pool_yaml "$POOL_C" node-c | k apply -f - >/dev/null
  start_agent_in_cluster c node-c "$ROOT_C"
  e2e_wait_for 30 "c /readyz ok" probe c readyz
  e2e_wait_for 10 "$POOL_C reports fpga0, fpga1 and acc3" agent_is "$POOL_C" '
    sorted(dev) == ["acc3", "fpga0", "fpga1"] and dev["acc3"]["present"]'
  local metrics
  metrics=$(scrape c)
  grep -q '^rest_client_requests_total{code="200",host="[^"]*",method="PATCH"} [1-9]' <<<"$metrics" ||
    e2e_fail "no PATCH 200 in rest_client_requests_total" "$(grep rest_client <<<"$metrics")"
  if grep -q '^rest_client_requests_total{code="403"' <<<"$metrics"; then
    e2e_fail "the agent got a 403 with config/agent's RBAC" "$(grep rest_client <<<"$metrics")"
  fi
  stop_cleanly c
}

# ---- 7. SIGTERM ------------------------------------------------------------------

test_sigterm() {
  stop_cleanly a
  grep -q '"msg":"shutdown complete"' "$(e2e_bg_log a)" || e2e_fail "a did not log shutdown complete"
}

e2e_test "install CRDs, provisio-system, config/agent RBAC and token" test_install
e2e_last_ok || e2e_bail "cannot install"
e2e_test "node-a's agent reports declared devices present and absent" test_reports_declared_devices
e2e_last_ok || e2e_bail "no report from node-a's agent"
e2e_test "hot-plug: a created /dev/acc7 shows as Discovered within 5 s" test_hotplug_appears
e2e_test "hot-unplug: a deleted /dev/acc7 leaves the report within 5 s" test_hotplug_vanishes
e2e_test "a declared device's file removed: present false within 5 s" test_declared_file_removed
e2e_test "node-b's pool untouched; no writes while nothing changes" test_other_node_untouched_and_quiet
e2e_test "agent peak RSS" test_rss
e2e_test "as its ServiceAccount: reports, no 403" test_in_cluster_no_403
e2e_test "SIGTERM: exit 0" test_sigterm
e2e_done
