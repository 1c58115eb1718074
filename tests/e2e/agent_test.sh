#!/usr/bin/env bash
# End-to-end test of the node agent (`provisio agent`, src/manager/manager.c
# agent_main; API.md "The node agent") against the real control plane, whose
# fake nodes are node-a, node-b and node-c.
#
#  1. the command line: --help lists the agent's flags and no leader-election
#     flag; a missing --node-name, an operator-only flag (--leader-elect) or
#     a relative --host-root exit 2 with a message naming the flag;
#  2. config/agent: config/default (which includes it) passes a server-side
#     dry run; the agent's RBAC (config/agent/rbac.yaml, applied, with the
#     CRDs) is least privilege: `kubectl auth can-i --as=<the SA>` says yes
#     to getting a node, reading DevicePools and StoragePools and patching
#     their status, reading Reservations and patching them (the directory
#     finalizer) and their status, and no to listing or changing nodes,
#     reading secrets, changing pools or updating (PUT) their status,
#     creating, updating or deleting Reservations, writing anything else;
#     tokens of provisio-cni only (serviceaccounts/token, --cni-kubeconfig);
#  3. in-cluster as that ServiceAccount (a token minted by `kubectl create
#     token`, given through PROVISIO_SERVICEACCOUNT_DIR; no KUBECONFIG), for
#     node-a: it finds its Node, /healthz and /readyz turn 200, /metrics holds
#     the process families and rest_client_requests_total with the GET of its
#     node and no 403 (the devicepools list and watch included); SIGTERM:
#     exit 0 within 5 s, "shutdown complete", the ports closed;
# 3b. with --cni-kubeconfig (as that ServiceAccount): a kubeconfig for
#     provisio-cni under --host-root, mode 0600, that authenticates as
#     config/cni's ServiceAccount with exactly its rights (can-i); removed,
#     it is written again;
#  4. no leader election: two agents (node-b, node-c, each its own
#     --host-root) run and are ready at the same time;
#  5. start-up checks: --node-name of no Node exits 1 ("node not found"), a
#     --host-root that is not a directory exits 1;
#  6. every line the agents wrote is one JSON object with level, ts and msg,
#     and none holds the admin client key.
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
#     PROVISIO_BINARY=build/provisio PROVISIO_SOURCE_DIR=$PWD bash tests/e2e/agent_test.sh
#
# Output is TAP; the exit status is non-zero if any test failed.
# Test functions run through e2e_test, which shellcheck cannot follow.
# shellcheck disable=SC2317
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init agent

e2e_require_env KUBECONFIG PROVISIO_KUBE_DIR PROVISIO_BINARY PROVISIO_SOURCE_DIR
e2e_require_cmd kubectl python3
[ -x "$PROVISIO_BINARY" ] || e2e_bail "$PROVISIO_BINARY is not an executable"
[ -r "$PROVISIO_KUBE_DIR/pki/ca.crt" ] || e2e_bail "no $PROVISIO_KUBE_DIR/pki/ca.crt"
APISERVER_PORT=$(sed -n 's/^APISERVER_PORT=//p' "$PROVISIO_KUBE_DIR/run/ports.env" 2>/dev/null || true)
[ -n "$APISERVER_PORT" ] || e2e_bail "no APISERVER_PORT in $PROVISIO_KUBE_DIR/run/ports.env"

SRC=$PROVISIO_SOURCE_DIR
SYS_NS=provisio-system
SA=provisio-agent
SA_USER=system:serviceaccount:$SYS_NS:$SA
SA_DIR=$E2E_TMP/serviceaccount
STATE=$E2E_TMP/state # ports of each agent, for later tests (they run in subshells)
mkdir -p "$STATE"

k() { kubectl "$@"; }

# ---- agents ------------------------------------------------------------------

# ports NAME: pick two free loopback ports for NAME's metrics and probes,
# kept in $STATE/NAME.metrics and $STATE/NAME.probe; print the two flags.
ports() {
  local mport pport
  mport=$(e2e_free_port)
  pport=$(e2e_free_port)
  while [ "$pport" = "$mport" ]; do pport=$(e2e_free_port); done
  echo "$mport" >"$STATE/$1.metrics"
  echo "$pport" >"$STATE/$1.probe"
  echo "--metrics-bind-address=127.0.0.1:$mport --health-probe-bind-address=127.0.0.1:$pport"
}

# start_agent NAME NODE [ARGS...]: run `provisio agent --node-name NODE` with
# free loopback ports and ARGS, with the admin kubeconfig.
start_agent() {
  local name=$1 node=$2 flags
  shift 2
  flags=$(ports "$name")
  # shellcheck disable=SC2086 # two flags, no spaces inside
  e2e_bg_start "$name" "$E2E_TMP/$name.log" "$PROVISIO_BINARY" agent --node-name "$node" $flags "$@"
}

# start_agent_in_cluster NAME NODE: as the agent's ServiceAccount (no
# KUBECONFIG; token, CA and namespace from $SA_DIR), as a pod of config/agent.
start_agent_in_cluster() {
  local name=$1 node=$2 flags
  shift 2
  flags=$(ports "$name")
  # shellcheck disable=SC2086
  e2e_bg_start "$name" "$E2E_TMP/$name.log" env -u KUBECONFIG \
    KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT="$APISERVER_PORT" \
    PROVISIO_SERVICEACCOUNT_DIR="$SA_DIR" HOME="$E2E_TMP" \
    "$PROVISIO_BINARY" agent --node-name "$node" $flags "$@"
}

probe() { e2e_http_get "http://127.0.0.1:$(cat "$STATE/$1.probe")/$2"; }
scrape() { e2e_http_get "http://127.0.0.1:$(cat "$STATE/$1.metrics")/metrics"; }
port_closed() { ! probe "$1" healthz >/dev/null 2>&1; }

# stop_cleanly NAME: SIGTERM, exit 0 within 5 s, "shutdown complete" logged,
# the probe port closed.
stop_cleanly() {
  local name=$1 t0 rc took
  t0=$(e2e_now)
  rc=$(e2e_bg_stop "$name" TERM 15) || true
  took=$(e2e_since "$t0")
  [ "$rc" = 0 ] || e2e_fail "$name exited $rc on SIGTERM, want 0"
  python3 -c 'import sys; sys.exit(float(sys.argv[1]) >= 5)' "$took" ||
    e2e_fail "$name took $took s to stop on SIGTERM, want < 5"
  grep -q '"msg":"shutdown complete"' "$(e2e_bg_log "$name")" ||
    e2e_fail "$name did not log shutdown complete"
  e2e_wait_for 5 "$name's probe port closed" port_closed "$name"
  e2e_diag "$name stopped in $took s"
}

# ---- 1. the command line -----------------------------------------------------

# exits_with WANT PATTERN ARGS...: `provisio agent ARGS` exits WANT and its
# output holds PATTERN.
exits_with() {
  local want=$1 pattern=$2 out rc=0
  shift 2
  out=$("$PROVISIO_BINARY" agent "$@" 2>&1) || rc=$?
  [ "$rc" = "$want" ] || e2e_fail "provisio agent $*: exit $rc, want $want" "${out:0:400}"
  grep -q -- "$pattern" <<<"$out" || e2e_fail "provisio agent $*: no '$pattern' in" "${out:0:400}"
}

test_command_line() {
  exits_with 0 'Usage of provisio agent:' --help
  local usage
  usage=$("$PROVISIO_BINARY" agent --help)
  local flag
  for flag in --node-name --host-root --kubeconfig --metrics-bind-address \
    --health-probe-bind-address --zap-log-level; do
    grep -q -- "$flag" <<<"$usage" || e2e_fail "agent usage lacks $flag"
  done
  if grep -q -- 'leader-elect' <<<"$usage"; then e2e_fail "agent usage lists leader election"; fi
  exits_with 2 'flag --node-name is required'
  exits_with 2 'unknown flag: --leader-elect' --node-name node-a --leader-elect
  exits_with 2 'flag --host-root' --node-name node-a --host-root relative
  exits_with 2 'flag --node-name' --node-name Node_A
}

# ---- 2. config/agent and its RBAC --------------------------------------------

test_config_and_rbac_install() {
  k get namespace "$SYS_NS" >/dev/null 2>&1 || k create namespace "$SYS_NS" >/dev/null
  local out
  out=$(k apply --dry-run=server -k "$SRC/config/default" 2>&1) ||
    e2e_fail "config/default does not pass a server-side dry run" "${out:0:2000}"
  grep -q 'daemonset.apps/provisio-agent' <<<"$out" ||
    e2e_fail "config/default has no provisio-agent DaemonSet" "${out:0:2000}"
  # The agent watches DevicePools: without the CRD it would never be ready.
  k apply --server-side --force-conflicts -f "$SRC/crds/" >/dev/null
  k wait --for=condition=Established --timeout=60s -f "$SRC/crds/" >/dev/null
  k apply --server-side --force-conflicts -f "$SRC/config/agent/rbac.yaml" >/dev/null
  k get serviceaccount -n "$SYS_NS" "$SA" >/dev/null
  mkdir -p "$SA_DIR"
  k create token "$SA" -n "$SYS_NS" --duration=1h >"$SA_DIR/token"
  [ -s "$SA_DIR/token" ] || e2e_fail "kubectl create token gave nothing"
  cp "$PROVISIO_KUBE_DIR/pki/ca.crt" "$SA_DIR/ca.crt"
  echo "$SYS_NS" >"$SA_DIR/namespace"
}

test_rbac_is_least_privilege() {
  local -a denied=(
    "list nodes"
    "watch nodes"
    "patch nodes"
    "update nodes --subresource=status"
    "delete nodes"
    "get secrets -A"
    "list pods -A"
    "create events -n default"
    "create pods -n $SYS_NS"
    "update storagepools.provisio.dev"
    "patch storagepools.provisio.dev"
    "update storagepools.provisio.dev --subresource=status"
    "update reservations.provisio.dev"
    "delete reservations.provisio.dev"
    "update reservations.provisio.dev --subresource=status"
    "create devicepools.provisio.dev"
    "update devicepools.provisio.dev"
    "patch devicepools.provisio.dev"
    "delete devicepools.provisio.dev"
    "update devicepools.provisio.dev --subresource=status"
    "list deviceclaims.provisio.dev -A"
    "patch deviceclaims.provisio.dev -A --subresource=status"
    "create reservations.provisio.dev"
    "update leases.coordination.k8s.io -n $SYS_NS"
    "impersonate users"
    "create serviceaccounts/provisio-agent --subresource=token -n $SYS_NS"
    "create serviceaccounts --subresource=token -n $SYS_NS"
    "create serviceaccounts/provisio-cni --subresource=token -n default"
    "get serviceaccounts/provisio-cni -n $SYS_NS"
  )
  local -a allowed=(
    "get nodes"
    "get nodes/node-a"
    "get devicepools.provisio.dev"
    "list devicepools.provisio.dev"
    "watch devicepools.provisio.dev"
    "patch devicepools.provisio.dev --subresource=status"
    "list storagepools.provisio.dev"
    "watch storagepools.provisio.dev"
    "patch storagepools.provisio.dev --subresource=status"
    "list reservations.provisio.dev"
    "watch reservations.provisio.dev"
    "patch reservations.provisio.dev"
    "patch reservations.provisio.dev --subresource=status"
    "create serviceaccounts/provisio-cni --subresource=token -n $SYS_NS"
  )
  local q ans bad=()
  for q in "${denied[@]}"; do
    # shellcheck disable=SC2086 # the query is words
    ans=$(k auth can-i --as="$SA_USER" $q 2>/dev/null || true)
    [ "$ans" = no ] || bad+=("can-i $q: '$ans', want no")
  done
  for q in "${allowed[@]}"; do
    # shellcheck disable=SC2086
    ans=$(k auth can-i --as="$SA_USER" $q 2>/dev/null || true)
    [ "$ans" = yes ] || bad+=("can-i $q: '$ans', want yes")
  done
  ((${#bad[@]} == 0)) || e2e_fail "${bad[@]}"
}

# ---- 3. in-cluster, as the ServiceAccount --------------------------------------

test_agent_in_cluster_serves_and_stops() {
  start_agent_in_cluster a1 node-a
  e2e_wait_for 30 "a1 /healthz ok" probe a1 healthz
  e2e_wait_for 30 "a1 /readyz ok" probe a1 readyz
  local log metrics uid
  log=$(e2e_bg_log a1)
  grep -q '"msg":"starting agent".*"nodeName":"node-a"' "$log" || e2e_fail "no startup line"
  grep -q '"inCluster":true' "$log" || e2e_fail "a1 does not say inCluster:true"
  uid=$(k get node node-a -o jsonpath='{.metadata.uid}')
  grep -q "\"msg\":\"node found\",\"nodeName\":\"node-a\",\"uid\":\"$uid\"" "$log" ||
    e2e_fail "a1 did not log node-a's uid $uid"
  metrics=$(scrape a1)
  grep -q '^rest_client_requests_total{code="200",host="127.0.0.1:'"$APISERVER_PORT"'",method="GET"} [1-9]' \
    <<<"$metrics" || e2e_fail "no GET 200 in rest_client_requests_total" \
    "$(grep rest_client <<<"$metrics")"
  if grep -q '^rest_client_requests_total{code="403"' <<<"$metrics"; then
    e2e_fail "the agent got a 403 with config/agent's RBAC"
  fi
  grep -q '^# TYPE process_start_time_seconds gauge' <<<"$metrics" ||
    e2e_fail "/metrics lacks the process families"
  stop_cleanly a1
}

# ---- 3b. the kubeconfig of provisio-cni ------------------------------------------

# As the agent's ServiceAccount (config/agent's RBAC), with --cni-kubeconfig:
# a kubeconfig of config/cni's ServiceAccount under --host-root, 0600, that
# kubectl uses as provisio-cni with exactly the plugin's rights; removed, it
# is written again within the check period (10 s).
test_cni_kubeconfig_written_for_the_plugin() {
  local root=$E2E_TMP/root-cni f who ans q bad=()
  f=$root/etc/cni/net.d/provisio.d/kubeconfig
  mkdir -p "$root"
  k apply --server-side --force-conflicts -f "$SRC/config/cni/rbac.yaml" >/dev/null
  start_agent_in_cluster cni node-a --host-root "$root" \
    --cni-kubeconfig /etc/cni/net.d/provisio.d/kubeconfig
  e2e_wait_for 30 "the CNI kubeconfig written" test -s "$f"
  [ "$(stat -c %a "$f")" = 600 ] || e2e_fail "$f has mode $(stat -c %a "$f"), want 600"
  who=$(k --kubeconfig "$f" auth whoami -o jsonpath='{.status.userInfo.username}' 2>&1) ||
    e2e_fail "kubectl cannot use the written kubeconfig" "$who"
  [ "$who" = "system:serviceaccount:$SYS_NS:provisio-cni" ] ||
    e2e_fail "the written kubeconfig authenticates as '$who'"
  for q in "create ipclaims.provisio.dev -n default" "delete ipclaims.provisio.dev -n default" \
    "list ipclaims.provisio.dev -A" "get ippools.provisio.dev"; do
    # shellcheck disable=SC2086
    ans=$(k --kubeconfig "$f" auth can-i $q 2>/dev/null || true)
    [ "$ans" = yes ] || bad+=("as provisio-cni, can-i $q: '$ans', want yes")
  done
  for q in "get secrets -A" "update ipclaims.provisio.dev -n default" \
    "patch ippools.provisio.dev --subresource=status" "create reservations.provisio.dev"; do
    # shellcheck disable=SC2086
    ans=$(k --kubeconfig "$f" auth can-i $q 2>/dev/null || true)
    [ "$ans" = no ] || bad+=("as provisio-cni, can-i $q: '$ans', want no")
  done
  ((${#bad[@]} == 0)) || e2e_fail "${bad[@]}"
  local t0
  rm -f "$f"
  t0=$(e2e_now)
  e2e_wait_for 20 "the removed CNI kubeconfig written again" test -s "$f"
  e2e_diag "written again $(e2e_since "$t0") s after it was removed"
  grep -q '"msg":"CNI kubeconfig written again' "$(e2e_bg_log cni)" ||
    e2e_fail "the agent did not say it wrote the file again"
  [ "$(find "$(dirname "$f")" -mindepth 1 | wc -l)" = 1 ] ||
    e2e_fail "files beside the kubeconfig: $(ls -a "$(dirname "$f")")"
  if grep -q '^rest_client_requests_total{code="403"' <<<"$(scrape cni)"; then
    e2e_fail "the agent got a 403 asking for the token"
  fi
  stop_cleanly cni
}

# ---- 4. no leader election -----------------------------------------------------

test_two_agents_run_at_once() {
  mkdir -p "$E2E_TMP/root-b" "$E2E_TMP/root-c"
  start_agent b node-b --host-root "$E2E_TMP/root-b"
  start_agent c node-c --host-root "$E2E_TMP/root-c"
  e2e_wait_for 30 "b /readyz ok" probe b readyz
  e2e_wait_for 30 "c /readyz ok" probe c readyz
  grep -q "\"hostRoot\":\"$E2E_TMP/root-b\"" "$(e2e_bg_log b)" || e2e_fail "b ignored --host-root"
  e2e_bg_alive b || e2e_fail "b ended"
  e2e_bg_alive c || e2e_fail "c ended"
  stop_cleanly b
  stop_cleanly c
}

# ---- 5. start-up checks ----------------------------------------------------------

test_startup_checks_fail_loudly() {
  local rc
  start_agent ghost node-that-does-not-exist
  rc=$(e2e_bg_wait ghost 30) || e2e_fail "ghost still runs after 30 s"
  [ "$rc" = 1 ] || e2e_fail "an agent of no Node exited $rc, want 1"
  grep -q '"msg":"node not found"' "$(e2e_bg_log ghost)" || e2e_fail "ghost: no 'node not found'"
  start_agent noroot node-a --host-root "$E2E_TMP/not-there"
  rc=$(e2e_bg_wait noroot 30) || e2e_fail "noroot still runs after 30 s"
  [ "$rc" = 1 ] || e2e_fail "an agent with a missing --host-root exited $rc, want 1"
  grep -q -- '--host-root is not a directory' "$(e2e_bg_log noroot)" ||
    e2e_fail "noroot: no '--host-root is not a directory'"
}

# ---- 6. logs ---------------------------------------------------------------------

test_logs_are_json_without_secrets() {
  local key
  key=$(k config view --raw --minify -o jsonpath='{.users[0].user.client-key-data}' | head -c 48)
  python3 - "$key" "$E2E_TMP"/*.log <<'PY' || e2e_fail "a log line is not a JSON object with level, ts, msg, or a secret leaked"
import json, sys
key, files = sys.argv[1], sys.argv[2:]
n = 0
for f in files:
    for line in open(f):
        n += 1
        o = json.loads(line)
        assert isinstance(o, dict) and {"level", "ts", "msg"} <= o.keys(), (f, line)
        assert not key or key not in line, (f, "client key in a log line")
assert n > 0, "no log lines at all"
PY
}

e2e_test "command line: --help, required --node-name, no election flags" test_command_line
e2e_test "config/default with config/agent dry-runs; agent RBAC and token installed" \
  test_config_and_rbac_install
e2e_last_ok || e2e_bail "cannot install the agent's RBAC"
e2e_test "agent RBAC is least privilege (get nodes; read pools, patch their status; read Reservations, patch them and their status)" \
  test_rbac_is_least_privilege
e2e_test "in-cluster agent finds its node, serves probes and metrics, stops on SIGTERM" \
  test_agent_in_cluster_serves_and_stops
e2e_test "--cni-kubeconfig: a 0600 kubeconfig of provisio-cni's ServiceAccount, written again when removed" \
  test_cni_kubeconfig_written_for_the_plugin
e2e_test "two agents run at once (no leader election)" test_two_agents_run_at_once
e2e_test "start-up checks: unknown node and missing --host-root exit 1" \
  test_startup_checks_fail_loudly
e2e_test "every log line is JSON with level, ts, msg; no client key" \
  test_logs_are_json_without_secrets
e2e_done
