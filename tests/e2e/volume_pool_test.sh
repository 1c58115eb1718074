#!/usr/bin/env bash
# End-to-end test of the operator's StoragePool controller
# (src/reconcilers/volume/vol_domain.c, vol_pool.c, vol_ledger.c) against the
# real control plane: what it makes of a pool, of the node agent's report and
# of the pool's Reservations. Contract: API.md "Volumes", the ledger in
# src/reconcilers/volume/README.md.
#
# The node agent's volume half and the Volume controller are not built yet
# (issue 12): here the test writes what they would, the report into
# status.agent (as the agent does, a merge patch of the status subresource)
# and Reservations of the pool (as the claim flow does, POST), and checks
# what the operator makes of them.
#
#  1. a pool on node-a nobody reports on: finalizer, capacityBytes,
#     allocatedBytes 0 (the ledger set up by a first recount), Ready=False
#     AgentNotReporting; a pool on a node that does not exist: NodeNotFound;
#  2. a fresh report of the current generation: Ready=True PathReady, quota
#     Enforced, usedBytes; a missing path, a path that is not writable, quotas
#     Required on a filesystem without them, a report of an older spec and a
#     report older than 120 s each give their reason; spec.quota Off: quota Off;
#  3. the ledger: Reservations of the pool count (allocatedBytes, volumes,
#     availableBytes), one created after its admission's deadline does not,
#     a deleted one is freed by the next recount, allocatedBytes lowered by
#     hand is recounted back;
#  4. deleting a pool that holds a Reservation: Terminating, the finalizer
#     stays; once the Reservation is gone the pool goes;
#  5. the operator exits 0 on SIGTERM with no error line of the controller.
#
# Environment (set by the ctest fixture, see tests/CMakeLists.txt):
#   KUBECONFIG, PROVISIO_KUBE_DIR, PATH, PROVISIO_BINARY, PROVISIO_SOURCE_DIR
# Run by hand:
#   hack/kube-local up /tmp/kl && . /tmp/kl/env
#   PROVISIO_BINARY=build/provisio PROVISIO_SOURCE_DIR=$PWD PROVISIO_KUBE_DIR=/tmp/kl \
#     bash tests/e2e/volume_pool_test.sh
#
# Output is TAP; the exit status is non-zero if any test failed.
# Test functions run through e2e_test, which shellcheck cannot follow.
# shellcheck disable=SC2317
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
e2e_init volume-pool

e2e_require_env KUBECONFIG PROVISIO_KUBE_DIR PROVISIO_BINARY PROVISIO_SOURCE_DIR
e2e_require_cmd kubectl python3
[ -x "$PROVISIO_BINARY" ] || e2e_bail "$PROVISIO_BINARY is not an executable"

SRC=$PROVISIO_SOURCE_DIR
RUN=$(date +%s | tail -c 5)$((RANDOM % 100))
LABEL=provisio-e2e=vol-$RUN
P=vol-$RUN-a       # on node-a
P_GONE=vol-$RUN-x  # on a node that does not exist
GI=1073741824

k() { kubectl "$@"; }

cleanup() {
  local r
  for r in $(k get reservations -l "provisio.dev/pool-kind=StoragePool" -o name 2>/dev/null | grep -- "-$RUN-" || true); do
    k delete "$r" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  done
  k delete storagepools -l "$LABEL" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  local sp
  for sp in $(k get storagepools -l "$LABEL" -o name 2>/dev/null); do
    k patch "$sp" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
  done
}
e2e_on_exit cleanup

# ---- objects -------------------------------------------------------------------

# pool NAME NODE [EXTRA-SPEC-JSON]: a StoragePool of 1 GiB at /srv/NAME.
pool() {
  python3 - "$LABEL" "$@" <<'PY' | k apply -f - >/dev/null
import json, sys
label, name, node = sys.argv[1:4]
spec = {"nodeName": node, "path": "/srv/" + name, "capacity": "1Gi"}
spec.update(json.loads(sys.argv[4]) if len(sys.argv) > 4 else {})
key, value = label.split("=")
print(json.dumps({"apiVersion": "provisio.dev/v1alpha1", "kind": "StoragePool",
                  "metadata": {"name": name, "labels": {key: value}}, "spec": spec}))
PY
}

# report POOL AGE-SECONDS FIELDS-JSON: the node agent's report, as the agent
# writes it (merge patch of the status subresource), heartbeat AGE s ago,
# observedGeneration the pool's own unless FIELDS say otherwise.
report() {
  local gen hb
  gen=$(k get storagepool "$1" -o jsonpath='{.metadata.generation}')
  hb=$(date -u -d "-$2 sec" +%Y-%m-%dT%H:%M:%SZ)
  k patch storagepool "$1" --subresource=status --type=merge -p "$(python3 -c '
import json, sys
agent = {"observedGeneration": int(sys.argv[1]), "heartbeatTime": sys.argv[2]}
agent.update(json.loads(sys.argv[3]))
print(json.dumps({"status": {"agent": agent}}))' "$gen" "$hb" "$3")" >/dev/null
}

GOOD='{"present": true, "writable": true, "filesystem": "btrfs", "quotaSupported": true, "usedBytes": 4096}'

# resv POOL UID BYTES DEADLINE-OFFSET: a Reservation of the pool as the claim
# flow makes it, its admittedUntil DEADLINE-OFFSET s from now (negative: made
# after its deadline, so never valid).
resv() {
  local until
  until=$(date -u -d "$4 sec" +%Y-%m-%dT%H:%M:%SZ)
  k create -f - >/dev/null <<YAML
apiVersion: provisio.dev/v1alpha1
kind: Reservation
metadata:
  name: storagepool.$1.$2
  labels: {provisio.dev/pool-kind: StoragePool, provisio.dev/pool: $1}
spec:
  pool: {kind: StoragePool, name: $1}
  slot: $2
  bytes: $3
  admittedUntil: "$until"
  claim: {kind: Volume, namespace: default, name: $2, uid: $2}
YAML
}

# sp_is POOL PYTHON: exit 0 when PYTHON (over `o` the pool, `st` its status,
# `ready` its Ready condition) holds; else print the status.
sp_is() {
  local json
  json=$(k get storagepool "$1" -o json) || return 1
  python3 -c 'import json, sys
o = json.loads(sys.stdin.read())
st = o.get("status") or {}
ready = next((c for c in st.get("conditions", []) if c.get("type") == "Ready"), {})
if not eval("(" + " ".join(sys.argv[1].split()) + ")"):
    st.pop("agent", None)
    sys.exit("status: %s" % json.dumps(st))' "$2" <<<"$json"
}

reason_is() { sp_is "$1" "ready.get('status') == '$2' and ready.get('reason') == '$3'"; }

# ---- 0. setup ------------------------------------------------------------------------

test_setup() {
  k apply --server-side --force-conflicts -f "$SRC/crds/" >/dev/null
  k wait --for=condition=Established --timeout=60s -f "$SRC/crds/" >/dev/null
  local mport pport
  mport=$(e2e_free_port)
  pport=$(e2e_free_port)
  while [ "$pport" = "$mport" ]; do pport=$(e2e_free_port); done
  e2e_bg_start op "$E2E_TMP/op.log" "$PROVISIO_BINARY" --kubeconfig "$KUBECONFIG" \
    --leader-elect=false --metrics-bind-address="127.0.0.1:$mport" \
    --health-probe-bind-address="127.0.0.1:$pport"
  e2e_wait_for 60 "the operator synced its caches" grep -q '"all informers synced"' "$E2E_TMP/op.log"
}

# ---- 1. nobody reports ------------------------------------------------------------------

test_unreported_and_nodeless_pools() {
  pool "$P" node-a
  pool "$P_GONE" "no-such-node-$RUN"
  e2e_wait_for 30 "$P: AgentNotReporting, ledger set up" sp_is "$P" \
    "ready.get('reason') == 'AgentNotReporting' and ready.get('status') == 'False'
     and st.get('capacityBytes') == $GI and st.get('allocatedBytes') == 0
     and st.get('availableBytes') == $GI and st.get('volumes') == 0
     and 'provisio.dev/finalizer' in o['metadata'].get('finalizers', [])"
  sp_is "$P" "'provisio-agent DaemonSet' in ready.get('message', '')" ||
    e2e_fail "the AgentNotReporting message does not say what to look at"
  e2e_wait_for 30 "$P_GONE: NodeNotFound" reason_is "$P_GONE" False NodeNotFound
  k get storagepools -l "$LABEL" | sed 's/^/# /'
}

# ---- 2. the agent's report ---------------------------------------------------------------

test_agent_report() {
  report "$P" 0 "$GOOD"
  e2e_wait_for 15 "$P Ready PathReady, quota Enforced, usedBytes" sp_is "$P" \
    "ready.get('status') == 'True' and ready.get('reason') == 'PathReady'
     and st.get('quota') == 'Enforced' and st.get('usedBytes') == 4096"
  report "$P" 0 '{"present": false, "writable": false, "message": "no such file or directory"}'
  e2e_wait_for 15 "$P PathNotFound" reason_is "$P" False PathNotFound
  sp_is "$P" "'no such file or directory' in ready.get('message', '')" ||
    e2e_fail "PathNotFound does not carry the agent's message"
  report "$P" 0 '{"present": true, "writable": false, "message": "read-only file system"}'
  e2e_wait_for 15 "$P NotWritable" reason_is "$P" False NotWritable
  report "$P" 0 '{"present": true, "writable": true, "quotaSupported": false, "quotaMessage": "tmpfs has no quotas"}'
  e2e_wait_for 15 "$P Ready, quota Unsupported (Auto)" sp_is "$P" \
    "ready.get('status') == 'True' and st.get('quota') == 'Unsupported'"
  k patch storagepool "$P" --type=merge -p '{"spec":{"quota":"Required"}}' >/dev/null
  e2e_wait_for 15 "$P: a report of the old spec is not trusted" reason_is "$P" False AgentNotReporting
  report "$P" 0 '{"present": true, "writable": true, "quotaSupported": false, "quotaMessage": "tmpfs has no quotas"}'
  e2e_wait_for 15 "$P QuotaUnsupported (Required)" reason_is "$P" False QuotaUnsupported
  sp_is "$P" "'tmpfs has no quotas' in ready.get('message', '')" ||
    e2e_fail "QuotaUnsupported does not say why"
  k patch storagepool "$P" --type=merge -p '{"spec":{"quota":"Off"}}' >/dev/null
  report "$P" 0 "$GOOD"
  e2e_wait_for 15 "$P quota Off" sp_is "$P" "ready.get('status') == 'True' and st.get('quota') == 'Off'"
  report "$P" 130 "$GOOD"
  e2e_wait_for 15 "$P: a report 130 s old counts as none" reason_is "$P" False AgentNotReporting
  report "$P" 0 "$GOOD"
  e2e_wait_for 15 "$P Ready again" reason_is "$P" True PathReady
}

# ---- 3. the ledger ------------------------------------------------------------------------

test_ledger() {
  resv "$P" "u1-$RUN" 100000000 20
  resv "$P" "u2-$RUN" 200000000 20
  e2e_wait_for 15 "two Reservations counted" sp_is "$P" \
    "st.get('allocatedBytes') == 300000000 and st.get('volumes') == 2
     and st.get('availableBytes') == $GI - 300000000"
  # Created after its admission's deadline: it holds nothing.
  resv "$P" "late-$RUN" 5000 -5
  sleep 3
  sp_is "$P" "st.get('allocatedBytes') == 300000000 and st.get('volumes') == 2" ||
    e2e_fail "a Reservation made after its deadline was counted"
  k delete reservation "storagepool.$P.u1-$RUN" >/dev/null
  e2e_wait_for 15 "u1 freed by a recount" sp_is "$P" \
    "st.get('allocatedBytes') == 200000000 and st.get('volumes') == 1"
  k patch storagepool "$P" --subresource=status --type=merge -p '{"status":{"allocatedBytes":0}}' >/dev/null
  e2e_wait_for 15 "allocatedBytes lowered by hand: recounted back" sp_is "$P" \
    "st.get('allocatedBytes') == 200000000"
  grep -q '"level":"error"' "$E2E_TMP/op.log" && e2e_fail "error lines:" "$(grep '"level":"error"' "$E2E_TMP/op.log" | head -3)"
  k delete reservation "storagepool.$P.late-$RUN" >/dev/null
}

# ---- 4. deletion ---------------------------------------------------------------------------

test_delete_waits_for_reservations() {
  k delete storagepool "$P" --wait=false >/dev/null
  e2e_wait_for 15 "$P Terminating while u2 holds bytes" sp_is "$P" \
    "ready.get('reason') == 'Terminating' and '1 volume' in ready.get('message', '')
     and 'provisio.dev/finalizer' in o['metadata'].get('finalizers', [])"
  k delete reservation "storagepool.$P.u2-$RUN" >/dev/null
  e2e_wait_for 15 "$P gone once nothing is held" sh -c "! kubectl get storagepool $P >/dev/null 2>&1"
  k delete storagepool "$P_GONE" --wait=false >/dev/null
  e2e_wait_for 15 "$P_GONE gone" sh -c "! kubectl get storagepool $P_GONE >/dev/null 2>&1"
}

test_operator_exits_cleanly() {
  local rc
  rc=$(e2e_bg_stop op TERM 15) || true
  [ "$rc" = 0 ] || e2e_fail "the operator exited $rc on SIGTERM, want 0"
  ! grep -E '"level":"error".*"storagepool"' "$E2E_TMP/op.log" ||
    e2e_fail "error lines of the storagepool controller"
}

e2e_test "setup: CRDs, the operator" test_setup
e2e_last_ok || e2e_bail "no operator"
e2e_test "no report: AgentNotReporting, ledger set up; no node: NodeNotFound" test_unreported_and_nodeless_pools
e2e_test "the agent's report: PathReady, PathNotFound, NotWritable, QuotaUnsupported, stale, old spec" test_agent_report
e2e_test "the ledger: Reservations count, late ones do not, frees recounted, hand edits undone" test_ledger
e2e_test "a pool holding a Reservation is Terminating, then goes" test_delete_waits_for_reservations
e2e_test "the operator exits 0 on SIGTERM, no error lines" test_operator_exits_cleanly
e2e_done
