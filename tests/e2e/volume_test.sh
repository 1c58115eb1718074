#!/usr/bin/env bash
# End-to-end test of the volume domain as far as it is built
# (src/reconcilers/volume/: the storagepool and volume controllers, the
# ledger) against the real control plane. Contract: API.md "Volumes", the
# ledger in src/reconcilers/volume/README.md.
#
# The node agent's volume half (directories, quotas, its report) and the
# PersistentVolumes are not built yet (issue 12): here the test writes the
# agent's report into status.agent itself (as the agent will, a merge patch
# of the status subresource), and in 3 Reservations of the pool by hand (as
# the claim flow does, POST), and checks what the operator makes of them.
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
#  5. Volumes: three of 400Mi on a 1Gi pool: two placed (status pool, node,
#     path, a Reservation with the admission's deadline and the node label),
#     the third InsufficientCapacity; spec.pool unknown: PoolNotFound; a size
#     larger than every pool: InvalidSpec; deleting a placed one frees its
#     bytes (after the admission's deadline + 30 s, rule 4) and the waiting
#     one is placed;
#  6. a storm: 30 Volumes of 100Mi at once on a 1Gi pool, two operator
#     replicas, one killed with SIGKILL mid-storm: exactly 10 placed, the
#     bytes of the valid Reservations never over the capacity (sampled all
#     along), the pool's counts equal them after convergence;
#  7. the operators exit 0 on SIGTERM with no error line of the controllers.
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
P_V=vol-$RUN-v     # Volumes placed (5)
P_S=vol-$RUN-s     # the storm (6)
NS=e2e-vol-$RUN
GI=1073741824

k() { kubectl "$@"; }

cleanup() {
  local r
  for r in $(k get reservations -l "provisio.dev/pool-kind=StoragePool" -o name 2>/dev/null | grep -- "-$RUN-" || true); do
    k delete "$r" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  done
  local v
  for v in $(k get volumes -n "$NS" -o name 2>/dev/null); do
    k patch -n "$NS" "$v" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
  done
  k delete namespace "$NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
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

# start_op NAME: the operator without leader election (log NAME.N.log).
start_op() {
  local name=$1 mport pport run=1 log
  while [ -e "$E2E_TMP/$name.$run.log" ]; do run=$((run + 1)); done
  log=$E2E_TMP/$name.$run.log
  mport=$(e2e_free_port)
  pport=$(e2e_free_port)
  while [ "$pport" = "$mport" ]; do pport=$(e2e_free_port); done
  e2e_bg_start "$name" "$log" "$PROVISIO_BINARY" --kubeconfig "$KUBECONFIG" \
    --leader-elect=false --metrics-bind-address="127.0.0.1:$mport" \
    --health-probe-bind-address="127.0.0.1:$pport"
  e2e_wait_for 60 "$name synced its caches" grep -q '"all informers synced"' "$log"
}

test_setup() {
  k apply --server-side --force-conflicts -f "$SRC/crds/" >/dev/null
  k wait --for=condition=Established --timeout=60s -f "$SRC/crds/" >/dev/null
  k create namespace "$NS" >/dev/null
  start_op op
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
  ! grep -q '"level":"error"' "$E2E_TMP"/op.*.log || e2e_fail "error lines:" "$(grep -h '"level":"error"' "$E2E_TMP"/op.*.log | head -3)"
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

# ---- 5. Volumes ----------------------------------------------------------------------------

# volumes PREFIX FIRST LAST SIZE [EXTRA-SPEC-JSON]: Volume manifests (a List).
volumes() {
  python3 - "$@" <<'PY'
import json, sys
prefix, first, last, size = sys.argv[1:5]
extra = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
items = []
for i in range(int(first), int(last) + 1):
    spec = {"size": size}
    spec.update(extra)
    items.append({"apiVersion": "provisio.dev/v1alpha1", "kind": "Volume",
                  "metadata": {"name": "%s%d" % (prefix, i), "labels": {"e2e-batch": prefix}},
                  "spec": spec})
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
PY
}

# vol_is NAME PYTHON: as sp_is, over a Volume.
vol_is() {
  local json
  json=$(k get volume -n "$NS" "$1" -o json) || return 1
  python3 -c 'import json, sys
o = json.loads(sys.stdin.read())
st = o.get("status") or {}
ready = next((c for c in st.get("conditions", []) if c.get("type") == "Ready"), {})
if not eval("(" + " ".join(sys.argv[1].split()) + ")"):
    sys.exit("status: %s" % json.dumps(st))' "$2" <<<"$json"
}

# held POOL: "VALID-BYTES COUNT" of the pool's Reservations on the API
# server (valid: created by their admittedUntil), then the pool's
# allocatedBytes and volumes.
held() {
  python3 - "$1" <<'PY'
import json, subprocess, sys
from datetime import datetime
pool = sys.argv[1]
def t(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
rs = json.loads(subprocess.check_output(["kubectl", "get", "reservations", "-o", "json", "-l",
    "provisio.dev/pool-kind=StoragePool,provisio.dev/pool=" + pool]))["items"]
valid = [r for r in rs if t(r["metadata"]["creationTimestamp"]) <= t(r["spec"]["admittedUntil"])]
p = json.loads(subprocess.check_output(["kubectl", "get", "storagepool", pool, "-o", "json"]))
st = p.get("status") or {}
print(sum(r["spec"]["bytes"] for r in valid), len(valid), st.get("allocatedBytes"), st.get("volumes"))
PY
}

vols_in() { # PREFIX "POOL..."
  local got
  got=$(k get volumes -n "$NS" -l "e2e-batch=$1" -o jsonpath='{.items[*].status.pool}')
  [ "$got" = "$2" ] || {
    echo "pools: $got"
    return 1
  }
}

test_volumes_placed_within_capacity() {
  pool "$P_V" node-b
  report "$P_V" 0 "$GOOD"
  e2e_wait_for 15 "$P_V Ready" reason_is "$P_V" True PathReady
  volumes a 1 2 400Mi "{\"pool\": \"$P_V\"}" | k create -n "$NS" -f - >/dev/null
  e2e_wait_for 15 "a1 and a2 placed" vols_in a "$P_V $P_V"
  volumes a 3 3 400Mi "{\"pool\": \"$P_V\"}" | k create -n "$NS" -f - >/dev/null
  e2e_wait_for 15 "a3 InsufficientCapacity" vol_is a3 \
    "ready.get('reason') == 'InsufficientCapacity' and not st.get('pool')"
  local uid
  uid=$(k get volume -n "$NS" a1 -o jsonpath='{.metadata.uid}')
  vol_is a1 "st.get('nodeName') == 'node-b' and st.get('capacityBytes') == 400 * 2**20
    and st.get('path') == '/srv/$P_V/${NS}_a1_$uid' and ready.get('reason') == 'Provisioning'
    and 'provisio.dev/finalizer' in o['metadata'].get('finalizers', [])" ||
    e2e_fail "a1's status does not say where it is"
  k get reservation "storagepool.$P_V.$uid" -o json | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r["metadata"]["labels"]["provisio.dev/node"] == "node-b", r["metadata"]["labels"]
assert r["spec"]["bytes"] == 400 * 2**20 and r["spec"]["admittedUntil"], r["spec"]
assert r["spec"]["claim"]["kind"] == "Volume"' || e2e_fail "a1's Reservation is not as the ledger wants it"
  e2e_wait_for 15 "$P_V counts two volumes" sp_is "$P_V" \
    "st.get('allocatedBytes') == 800 * 2**20 and st.get('volumes') == 2 and not st.get('inFlight')"
  k get volumes -n "$NS" | sed 's/^/# /'
  k get storagepool "$P_V" | sed 's/^/# /'

  volumes nopool 1 1 1Gi '{"pool": "no-such-pool"}' | k create -n "$NS" -f - >/dev/null
  volumes huge 1 1 5Gi "{\"nodeName\": \"node-b\"}" | k create -n "$NS" -f - >/dev/null
  e2e_wait_for 15 "PoolNotFound" vol_is nopool1 "ready.get('reason') == 'PoolNotFound'"
  e2e_wait_for 15 "InvalidSpec for a size larger than every pool" vol_is huge1 \
    "ready.get('reason') == 'InvalidSpec' and 'larger than every Ready StoragePool on node node-b' in ready.get('message', '')"

  local t0
  t0=$(e2e_now)
  k delete volume -n "$NS" a1 --wait=false >/dev/null
  e2e_wait_for 90 "a3 placed once a1's bytes are free" vol_is a3 "st.get('pool') == '$P_V'"
  e2e_diag "figure: a1 deleted to a3 placed: $(e2e_since "$t0") s (a release waits for its admission's deadline + 30 s)"
  e2e_wait_for 15 "a1 gone" sh -c "! kubectl get volume -n $NS a1 >/dev/null 2>&1"
  e2e_wait_for 15 "$P_V counts a2 and a3" sp_is "$P_V" "st.get('allocatedBytes') == 800 * 2**20 and st.get('volumes') == 2"
}

# ---- 6. a storm, two replicas, kill -9 ---------------------------------------------------

# overcommit_sampler POOL CAP: until $E2E_TMP/storm.stop exists, check the
# valid Reservations' bytes against CAP; findings to $E2E_TMP/over.txt.
overcommit_sampler() {
  local n=0 got
  while [ ! -e "$E2E_TMP/storm.stop" ]; do
    if got=$(held "$1" 2>/dev/null); then
      [ "${got%% *}" -le "$2" ] || echo "held $got > $2" >>"$E2E_TMP/over.txt"
      n=$((n + 1))
    fi
  done
  echo "$n" >"$E2E_TMP/samples"
}

# storm_counts: "PLACED WAITING" of the Volumes s*.
storm_counts() {
  k get volumes -n "$NS" -l e2e-batch=s -o json | python3 -c '
import json, sys
items = json.load(sys.stdin)["items"]
placed = sum(1 for v in items if (v.get("status") or {}).get("pool"))
waiting = sum(1 for v in items for c in (v.get("status") or {}).get("conditions", [])
              if c.get("type") == "Ready" and c.get("reason") == "InsufficientCapacity")
print(placed, waiting)'
}

storm_placed_at_least() {
  local got
  got=$(storm_counts) || return 1
  [ "${got%% *}" -ge "$1" ]
}

storm_is() {
  local got
  got=$(storm_counts) || return 1
  [ "$got" = "$1" ] || {
    echo "placed, waiting: $got"
    return 1
  }
}

held_is() { # POOL "VALID-BYTES COUNT ALLOCATED VOLUMES"
  local got
  got=$(held "$1") || return 1
  [ "$got" = "$2" ] || {
    echo "held: $got, want $2"
    return 1
  }
}

test_storm_two_replicas_kill9() {
  start_op op2
  pool "$P_S" node-c
  report "$P_S" 0 "$GOOD"
  e2e_wait_for 15 "$P_S Ready" reason_is "$P_S" True PathReady
  volumes s 1 30 100Mi "{\"pool\": \"$P_S\"}" >"$E2E_TMP/storm.json"
  overcommit_sampler "$P_S" "$GI" &
  local sampler=$! t0
  t0=$(e2e_now)
  k create -n "$NS" -f "$E2E_TMP/storm.json" >/dev/null &
  local creator=$!
  # op is killed as soon as a few are placed.
  e2e_wait_for 30 "3 placed" storm_placed_at_least 3
  kill -KILL "$(e2e_bg_pid op)"
  e2e_diag "op killed with SIGKILL after $(e2e_since "$t0") s"
  wait "$creator" || e2e_fail "creating the storm failed"
  start_op op
  e2e_wait_for 90 "10 placed, 20 InsufficientCapacity" storm_is "10 20"
  e2e_diag "figure: 30 Volumes of 100Mi on 1Gi, one of two replicas killed: 10 placed, 20 waiting after $(e2e_since "$t0") s"
  local b=$((10 * 100 * 1048576))
  e2e_wait_for 30 "the pool's counts equal the valid Reservations" held_is "$P_S" "$b 10 $b 10"
  touch "$E2E_TMP/storm.stop"
  wait "$sampler" || true
  [ ! -s "$E2E_TMP/over.txt" ] || e2e_fail "the valid Reservations exceeded the capacity:" "$(head -3 "$E2E_TMP/over.txt")"
  e2e_diag "$(cat "$E2E_TMP/samples") samples of the pool's Reservations during the storm: never over $GI bytes"
  local rc
  rc=$(e2e_bg_stop op2 TERM 15) || true
  [ "$rc" = 0 ] || e2e_fail "op2 exited $rc on SIGTERM, want 0"
}

test_operator_exits_cleanly() {
  k delete namespace "$NS" --wait=false >/dev/null
  local rc
  rc=$(e2e_bg_stop op TERM 15) || true
  [ "$rc" = 0 ] || e2e_fail "the operator exited $rc on SIGTERM, want 0"
  ! grep -hE '"level":"error".*"(storagepool|volume)"' "$E2E_TMP"/op*.log ||
    e2e_fail "error lines of the volume controllers"
}

e2e_test "setup: CRDs, the operator" test_setup
e2e_last_ok || e2e_bail "no operator"
e2e_test "no report: AgentNotReporting, ledger set up; no node: NodeNotFound" test_unreported_and_nodeless_pools
e2e_test "the agent's report: PathReady, PathNotFound, NotWritable, QuotaUnsupported, stale, old spec" test_agent_report
e2e_test "the ledger: Reservations count, late ones do not, frees recounted, hand edits undone" test_ledger
e2e_test "a pool holding a Reservation is Terminating, then goes" test_delete_waits_for_reservations
e2e_test "Volumes placed within capacity; PoolNotFound, InvalidSpec; a delete frees bytes for the waiting one" \
  test_volumes_placed_within_capacity
e2e_test "30 Volumes on a 1Gi pool, two replicas, kill -9: exactly 10 placed, never overcommitted" \
  test_storm_two_replicas_kill9
e2e_test "the operators exit 0 on SIGTERM, no error lines" test_operator_exits_cleanly
e2e_done
