#!/usr/bin/env bash
# End-to-end test of the volume domain (src/reconcilers/volume/: the
# storagepool and volume controllers, the ledger, the PersistentVolumes; the
# node agent's volume half, src/reconcilers/volume/agent/) against the real
# control plane, with real node agents (`provisio agent --host-root`, one per
# fake node, node-b and node-c) making real directories. Contract: API.md
# "Volumes", the ledger in src/reconcilers/volume/README.md.
#
# node-a has no agent: there the test writes the agent's report into
# status.agent itself (a merge patch of the status subresource, as the
# agent does) to reach every reason, and Reservations by hand (1-4).
#
#  1. a pool on node-a nobody reports on: finalizer, capacityBytes,
#     allocatedBytes 0 (the ledger set up by a first recount), Ready=False
#     AgentNotReporting; a pool on a node that does not exist: NodeNotFound;
#  2. a fresh report of the current generation: Ready=True PathReady, quota
#     Enforced, usedBytes; a missing path, a path that is not writable, quotas
#     Required on a filesystem without them, a report of an older spec and a
#     report older than 120 s each give their reason; spec.quota Off: quota Off;
#  3. the ledger: Reservations count (allocatedBytes, volumes,
#     availableBytes), one created after its admission's deadline does not,
#     a deleted one is freed by the next recount, allocatedBytes lowered by
#     hand is recounted back; the late one (its Volume does not exist) is
#     released by the orphan sweep;
#  4. deleting a pool that holds a Reservation: Terminating, the finalizer
#     stays; once the Reservation is gone the pool goes;
#  5. the agent of node-b: the pool PathNotFound until its directory
#     exists, then Ready. Volumes: three of 400Mi on a 1Gi pool: two Ready
#     (directory made by the agent, PV with node affinity, PVC Bound by
#     kube-controller-manager, a Pod using the PVC placed on node-b by
#     kube-scheduler), the third InsufficientCapacity; spec.pool unknown:
#     PoolNotFound; a size larger than every pool: InvalidSpec; deleting a
#     Ready one removes PVC, PV, Reservation and directory, and the waiting
#     one gets the bytes;
#  6. a storm: 30 Volumes of 100Mi at once on a 1Gi pool of node-c, two
#     operator replicas, one killed with SIGKILL mid-storm: exactly 10 placed
#     (and Ready), the bytes of the valid Reservations never over the
#     capacity (sampled all along), the pool's counts equal them after
#     convergence;
#  7. no leaks: Retain keeps the directory (its Reservation is labelled
#     reclaim-policy Retain); orphaned Reservations (their Volume gone) are
#     released by the sweep, the directory removed, or kept when labelled
#     Retain; a live Volume's PVC deleted by
#     hand is made again and bound to the same PV (the data stays); a
#     Volume deleted right after creation, and the agent killed with SIGKILL
#     while it makes directories (then restarted): no directory, PV, PVC or
#     Reservation left behind;
#  8. hard limits: a pool on a loop-mounted btrfs (qgroups): quota Enforced,
#     writing past the Volume's size fails (EDQUOT), usedBytes from the quota
#     in the Reservation, the Volume and the pool;
#  9. dynamic provisioning: the CSIDriver local.provisio.dev, StorageClasses
#     WaitForFirstConsumer and Immediate: CSIStorageCapacity objects track
#     the pools' free bytes; a pod with a 1500Mi WaitForFirstConsumer claim is
#     placed by kube-scheduler on the only node with room, its PV pvc-<uid>
#     made there and Bound; two claims picked for node-b at once where one
#     fits: one Bound there, the other's pick given back (annotation off,
#     Volume deleted, Rescheduling Event) and its pod placed on node-c,
#     Bound there; a claim larger than every pool leaves its pod
#     Pending; an Immediate claim is Bound without a pod; one larger than
#     every pool stays Pending with a ProvisioningFailed Event; deleting the
#     claims leaves no Volume, PV (none Released) or directory;
# 10. an API server restart mid-batch: 20 Volumes of 20Mi on a 300Mi pool,
#     kube-apiserver restarted once 3 are placed: exactly 15 placed and
#     Ready, 5 InsufficientCapacity, counts and directories match; deleted,
#     nothing is left (no directory, no Released PV, counts 0);
# 11. a node that stops (kube-local node-stop node-c): once
#     kube-controller-manager marks it not Ready, its pool is Ready=False
#     NodeNotReady; the Volume it holds stays Ready with its PV, PVC and
#     directory; a new Volume naming the pool waits (PoolNotReady); with the
#     node back the pool is Ready and the new Volume placed;
# 12. a node deleted for good (its heartbeat and agent stopped, the Node
#     object deleted): its pool NodeNotFound; a Volume held there, deleted,
#     is released without an agent (no Volume, Reservation or PV left,
#     counts 0; the directory untouched: the disk went with the node); the
#     node registered again with its agent: the pool Ready;
# 13. the operators and agents exit 0 on SIGTERM with no error line.
#
# Environment (set by the ctest fixture, see tests/CMakeLists.txt):
#   KUBECONFIG, PROVISIO_KUBE_DIR, PATH, PROVISIO_BINARY, PROVISIO_SOURCE_DIR
# Run by hand:
#   hack/kube-local up /tmp/kl && . /tmp/kl/env
#   PROVISIO_BINARY=build/provisio PROVISIO_SOURCE_DIR=$PWD PROVISIO_KUBE_DIR=/tmp/kl \
#     bash tests/e2e/volume_test.sh
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
e2e_require_cmd kubectl python3 mkfs.btrfs losetup
[ -x "$PROVISIO_BINARY" ] || e2e_bail "$PROVISIO_BINARY is not an executable"

SRC=$PROVISIO_SOURCE_DIR
RUN=$(date +%s | tail -c 5)$((RANDOM % 100))
LABEL=provisio-e2e=vol-$RUN
P=vol-$RUN-a       # on node-a
P_GONE=vol-$RUN-x  # on a node that does not exist
P_V=vol-$RUN-v     # Volumes placed (5)
P_S=vol-$RUN-s     # the storm (6), node-c
P_R=vol-$RUN-r     # no leaks (7), node-b
P_Q=vol-$RUN-q     # hard limits (8), node-b, on btrfs
P_DB=vol-$RUN-db   # dynamic provisioning (9), node-b, 300Mi
P_DC=vol-$RUN-dc   # dynamic provisioning (9), node-c, 2Gi
P_RB=vol-$RUN-rb   # dynamic provisioning, a race (9), node-b, 2000Mi
P_RC=vol-$RUN-rc   # dynamic provisioning, a race (9), node-c, 1200Mi
P_A=vol-$RUN-a     # API server restart (10), node-b, 300Mi
P_N=vol-$RUN-n     # a node that stops (11), node-c
P_G=vol-$RUN-g     # a node deleted for good (12), node-c
SC_W=vol-$RUN-wffc # StorageClasses (9)
SC_I=vol-$RUN-imm
NS=e2e-vol-$RUN
GI=1073741824

k() { kubectl "$@"; }

cleanup() {
  local r
  "$SRC/hack/kube-local" node-start "$PROVISIO_KUBE_DIR" node-c >/dev/null 2>&1 || true
  for r in $(k get reservations -l "provisio.dev/pool-kind=StoragePool" -o name 2>/dev/null | grep -- "-$RUN-" || true); do
    k delete "$r" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    k patch "$r" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
  done
  e2e_force_delete_pods "$NS"
  local pv
  for pv in $(k get pv -o jsonpath='{range .items[*]}{.metadata.name} {.spec.claimRef.namespace}{"\n"}{end}' 2>/dev/null | awk -v ns="$NS" '$2 == ns {print $1}'); do
    k delete pv "$pv" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    k patch pv "$pv" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
  done
  umount "$E2E_TMP/root-node-b/srv/$P_Q" 2>/dev/null || true
  # The loop device of 8's image (8 ran in a subshell: found by its file).
  local dev
  for dev in $(losetup -n -O NAME -j "$E2E_TMP/btrfs.img" 2>/dev/null); do
    losetup -d "$dev" 2>/dev/null || true
  done
  local v
  for v in $(k get volumes -n "$NS" -o name 2>/dev/null); do
    k patch -n "$NS" "$v" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
  done
  k delete namespace "$NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  k delete storageclass "$SC_W" "$SC_I" --ignore-not-found >/dev/null 2>&1 || true
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

# start_agent NODE: the node agent of NODE, its host root $E2E_TMP/root-NODE
# (log agent-NODE.N.log).
start_agent() {
  local node=$1 mport pport run=1 log
  while [ -e "$E2E_TMP/agent-$node.$run.log" ]; do run=$((run + 1)); done
  log=$E2E_TMP/agent-$node.$run.log
  mkdir -p "$E2E_TMP/root-$node/srv"
  mport=$(e2e_free_port)
  pport=$(e2e_free_port)
  while [ "$pport" = "$mport" ]; do pport=$(e2e_free_port); done
  e2e_bg_start "agent-$node" "$log" "$PROVISIO_BINARY" agent --node-name "$node" \
    --host-root "$E2E_TMP/root-$node" --kubeconfig "$KUBECONFIG" \
    --metrics-bind-address="127.0.0.1:$mport" --health-probe-bind-address="127.0.0.1:$pport"
  e2e_wait_for 60 "agent-$node synced its caches" grep -q '"all informers synced"' "$log"
}

test_setup() {
  k apply --server-side --force-conflicts -f "$SRC/crds/" >/dev/null
  k wait --for=condition=Established --timeout=60s -f "$SRC/crds/" >/dev/null
  k create namespace "$NS" >/dev/null
  start_op op
  start_agent node-b
  start_agent node-c
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
  # Their Volumes do not exist: deadlines far enough that the orphan sweep
  # (test_no_leaks) leaves them to this test (rule 4: deadline + 30 s).
  resv "$P" "u1-$RUN" 100000000 600
  resv "$P" "u2-$RUN" 200000000 600
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
  # late holds nothing and its Volume does not exist: the sweep releases it.
  e2e_wait_for 15 "the orphan sweep released late" sh -c "! kubectl get reservation storagepool.$P.late-$RUN >/dev/null 2>&1"
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

# dirs NODE POOL: the directories in the pool's path on NODE's host root.
dirs() {
  ls "$E2E_TMP/root-$1/srv/$2" 2>/dev/null | tr '\n' ' ' | sed 's/ $//'
}

dirs_are() { # NODE POOL "NAMES"
  local got
  got=$(dirs "$1" "$2")
  [ "$got" = "$3" ] || {
    echo "directories: $got"
    return 1
  }
}

# bound NAME: the Volume is Ready (PVC Bound to its PV).
bound() {
  vol_is "$1" "ready.get('status') == 'True' and ready.get('reason') == 'Bound'"
}

# pvc_rebound NAME OLD-UID PV: a PVC NAME other than OLD-UID, Bound to PV.
pvc_rebound() {
  local got
  got=$(k get pvc -n "$NS" "$1" -o jsonpath='{.metadata.uid} {.status.phase} {.spec.volumeName}') || return 1
  [ "${got%% *}" != "$2" ] && [ "${got#* }" = "Bound $3" ] || {
    echo "pvc: $got; pv: $(k get pv "$3" -o jsonpath='{.status.phase} {.spec.claimRef}')"
    return 1
  }
}

gone() { # KIND NAME [NS]
  ! k get "$1" "$2" ${3:+-n "$3"} >/dev/null 2>&1
}

# pod_on NAME CLAIM: a Pod using the PVC CLAIM (placed by kube-scheduler;
# the fake node runs nothing).
pod_on() {
  k create -n "$NS" -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $1}
spec:
  containers: [{name: c, image: busybox, volumeMounts: [{name: d, mountPath: /data}]}]
  volumes: [{name: d, persistentVolumeClaim: {claimName: $2}}]
YAML
}

test_volumes_placed_within_capacity() {
  pool "$P_V" node-b
  e2e_wait_for 20 "$P_V PathNotFound (the agent's own report)" reason_is "$P_V" False PathNotFound
  mkdir -p "$E2E_TMP/root-node-b/srv/$P_V"
  e2e_wait_for 20 "$P_V Ready once its directory exists" reason_is "$P_V" True PathReady
  volumes a 1 2 400Mi "{\"pool\": \"$P_V\"}" | k create -n "$NS" -f - >/dev/null
  e2e_wait_for 15 "a1 and a2 placed" vols_in a "$P_V $P_V"
  volumes a 3 3 400Mi "{\"pool\": \"$P_V\"}" | k create -n "$NS" -f - >/dev/null
  e2e_wait_for 15 "a3 InsufficientCapacity" vol_is a3 \
    "ready.get('reason') == 'InsufficientCapacity' and not st.get('pool')"
  e2e_wait_for 30 "a1 Ready (PVC Bound)" bound a1
  e2e_wait_for 30 "a2 Ready (PVC Bound)" bound a2
  local uid pv
  uid=$(k get volume -n "$NS" a1 -o jsonpath='{.metadata.uid}')
  pv=vol-$uid
  vol_is a1 "st.get('nodeName') == 'node-b' and st.get('capacityBytes') == 400 * 2**20
    and st.get('path') == '/srv/$P_V/${NS}_a1_$uid' and st.get('persistentVolumeName') == '$pv'
    and st.get('persistentVolumeClaimName') == 'a1'
    and 'provisio.dev/finalizer' in o['metadata'].get('finalizers', [])" ||
    e2e_fail "a1's status does not say where it is"
  [ -d "$E2E_TMP/root-node-b/srv/$P_V/${NS}_a1_$uid" ] || e2e_fail "no directory for a1 on node-b"
  k get reservation "storagepool.$P_V.$uid" -o json | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r["metadata"]["labels"]["provisio.dev/node"] == "node-b", r["metadata"]["labels"]
assert "provisio.dev/volume-directory" in r["metadata"]["finalizers"], r["metadata"]
assert r["spec"]["bytes"] == 400 * 2**20 and r["spec"]["admittedUntil"], r["spec"]
assert r["spec"]["claim"]["kind"] == "Volume"
assert r["status"]["phase"] == "Ready" and r["status"]["path"].endswith("_a1_" + r["spec"]["slot"]), r["status"]' ||
    e2e_fail "a1's Reservation is not as the ledger and the agent want it"
  k get pv "$pv" -o json | python3 -c '
import json, sys
pv = json.load(sys.stdin)
sp = pv["spec"]
assert sp["local"]["path"].endswith("_a1_" + pv["metadata"]["labels"]["provisio.dev/volume-uid"]), sp
assert sp["capacity"]["storage"] == "400Mi", sp["capacity"]
assert sp["claimRef"]["name"] == "a1" and sp["persistentVolumeReclaimPolicy"] == "Delete", sp
t = sp["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
assert t["key"] == "kubernetes.io/hostname" and t["values"] == ["node-b"], t
assert pv["status"]["phase"] == "Bound", pv["status"]' || e2e_fail "a1's PV is not a local PV on node-b bound to a1"
  [ "$(k get pvc -n "$NS" a1 -o jsonpath='{.status.phase} {.spec.volumeName}')" = "Bound $pv" ] ||
    e2e_fail "PVC a1 is not Bound to $pv"
  e2e_wait_for 15 "$P_V counts two volumes" sp_is "$P_V" \
    "st.get('allocatedBytes') == 800 * 2**20 and st.get('volumes') == 2 and not st.get('inFlight')"
  pod_on user-a2 a2
  e2e_wait_for 30 "a Pod using PVC a2 placed on node-b" \
    sh -c "[ \"\$(kubectl get pod -n $NS user-a2 -o jsonpath='{.spec.nodeName}')\" = node-b ]"
  k get volumes -n "$NS" | sed 's/^/# /'
  k get storagepool "$P_V" | sed 's/^/# /'
  k get pv,pvc -n "$NS" | sed 's/^/# /'

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
  e2e_wait_for 15 "a1 gone" gone volume a1 "$NS"
  gone pvc a1 "$NS" || e2e_fail "PVC a1 left behind"
  gone pv "$pv" || e2e_fail "PV $pv left behind"
  e2e_wait_for 15 "a1's Reservation gone" gone reservation "storagepool.$P_V.$uid"
  [ ! -e "$E2E_TMP/root-node-b/srv/$P_V/${NS}_a1_$uid" ] || e2e_fail "a1's directory left behind"
  e2e_wait_for 30 "a3 Ready" bound a3
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

# storm_counts [BATCH]: "PLACED WAITING" of the Volumes of BATCH (s).
storm_counts() {
  k get volumes -n "$NS" -l "e2e-batch=${1:-s}" -o json | python3 -c '
import json, sys
items = json.load(sys.stdin)["items"]
placed = sum(1 for v in items if (v.get("status") or {}).get("pool"))
waiting = sum(1 for v in items for c in (v.get("status") or {}).get("conditions", [])
              if c.get("type") == "Ready" and c.get("reason") == "InsufficientCapacity")
print(placed, waiting)'
}

storm_placed_at_least() { # N [BATCH]
  local got
  got=$(storm_counts "${2:-s}") || return 1
  [ "${got%% *}" -ge "$1" ]
}

storm_is() { # "PLACED WAITING" [BATCH]
  local got
  got=$(storm_counts "${2:-s}") || return 1
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
  mkdir -p "$E2E_TMP/root-node-c/srv/$P_S"
  pool "$P_S" node-c
  e2e_wait_for 20 "$P_S Ready" reason_is "$P_S" True PathReady
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
  e2e_wait_for 60 "the 10 placed are Ready (PVC Bound)" sh -c "[ \"\$(kubectl get volumes -n $NS -l e2e-batch=s -o jsonpath='{.items[*].status.conditions[?(@.type==\"Ready\")].status}' | tr ' ' '\\n' | grep -c True)\" = 10 ]"
  [ "$(dirs node-c "$P_S" | wc -w)" = 10 ] || e2e_fail "node-c holds $(dirs node-c "$P_S" | wc -w) directories, want 10"
  touch "$E2E_TMP/storm.stop"
  wait "$sampler" || true
  [ ! -s "$E2E_TMP/over.txt" ] || e2e_fail "the valid Reservations exceeded the capacity:" "$(head -3 "$E2E_TMP/over.txt")"
  e2e_diag "$(cat "$E2E_TMP/samples") samples of the pool's Reservations during the storm: never over $GI bytes"
  local rc
  rc=$(e2e_bg_stop op2 TERM 15) || true
  [ "$rc" = 0 ] || e2e_fail "op2 exited $rc on SIGTERM, want 0"
}

# ---- 7. no leaks ------------------------------------------------------------------------

test_no_leaks() {
  mkdir -p "$E2E_TMP/root-node-b/srv/$P_R"
  pool "$P_R" node-b
  e2e_wait_for 20 "$P_R Ready" reason_is "$P_R" True PathReady
  # Retain: the directory stays, nothing else does.
  volumes keep 1 1 10Mi "{\"pool\": \"$P_R\", \"reclaimPolicy\": \"Retain\"}" | k create -n "$NS" -f - >/dev/null
  e2e_wait_for 30 "keep1 Ready" bound keep1
  local uid
  uid=$(k get volume -n "$NS" keep1 -o jsonpath='{.metadata.uid}')
  local policy
  policy=$(k get reservation "storagepool.$P_R.$uid" -o jsonpath='{.metadata.labels.provisio\.dev/reclaim-policy}')
  [ "$policy" = Retain ] || e2e_fail "keep1's Reservation is labelled reclaim-policy '$policy', not Retain"
  echo data >"$E2E_TMP/root-node-b/srv/$P_R/${NS}_keep1_$uid/file"
  k delete volume -n "$NS" keep1 --wait=false >/dev/null
  e2e_wait_for 90 "keep1, its PV, PVC and Reservation gone" sh -c \
    "! kubectl get volume -n $NS keep1 >/dev/null 2>&1 && ! kubectl get pv vol-$uid >/dev/null 2>&1 &&
     ! kubectl get pvc -n $NS keep1 >/dev/null 2>&1 && ! kubectl get reservation storagepool.$P_R.$uid >/dev/null 2>&1"
  [ "$(cat "$E2E_TMP/root-node-b/srv/$P_R/${NS}_keep1_$uid/file" 2>/dev/null)" = data ] ||
    e2e_fail "Retain: keep1's directory or its data is gone"
  rm -rf "$E2E_TMP/root-node-b/srv/$P_R/${NS}_keep1_$uid"

  # Orphans: Reservations of Volumes that do not exist (what a Volume deleted
  # before this replica's cache showed its new Reservation leaves behind) are
  # released by the sweep once due (deadline + 30 s); the directory goes when
  # the Reservation's label says its Volume was Delete, and stays when it says
  # Retain or nothing (a Reservation made before the label existed).
  local o labels until
  for o in orphan-del orphan-keep orphan-due; do
    labels="provisio.dev/pool-kind: StoragePool, provisio.dev/pool: $P_R, provisio.dev/node: node-b"
    [ "$o" = orphan-keep ] || labels+=", provisio.dev/reclaim-policy: Delete"
    until=$(date -u -d '-60 sec' +%Y-%m-%dT%H:%M:%SZ)
    [ "$o" = orphan-due ] && until=$(date -u -d '+5 sec' +%Y-%m-%dT%H:%M:%SZ)
    mkdir -p "$E2E_TMP/root-node-b/srv/$P_R/${NS}_${o}_$o-$RUN"
    echo data >"$E2E_TMP/root-node-b/srv/$P_R/${NS}_${o}_$o-$RUN/file"
    k create -f - >/dev/null <<YAML
apiVersion: provisio.dev/v1alpha1
kind: Reservation
metadata:
  name: storagepool.$P_R.$o-$RUN
  labels: {$labels}
  finalizers: [provisio.dev/volume-directory]
spec:
  pool: {kind: StoragePool, name: $P_R}
  slot: $o-$RUN
  bytes: 1000
  admittedUntil: "$until"
  claim: {kind: Volume, namespace: $NS, name: $o, uid: $o-$RUN}
YAML
  done
  e2e_wait_for 30 "the orphaned Reservations past their deadline released" sh -c \
    "! kubectl get reservation storagepool.$P_R.orphan-del-$RUN storagepool.$P_R.orphan-keep-$RUN >/dev/null 2>&1"
  e2e_wait_for 15 "orphan-del's directory removed" test ! -e "$E2E_TMP/root-node-b/srv/$P_R/${NS}_orphan-del_orphan-del-$RUN"
  [ "$(cat "$E2E_TMP/root-node-b/srv/$P_R/${NS}_orphan-keep_orphan-keep-$RUN/file" 2>/dev/null)" = data ] ||
    e2e_fail "the directory of the orphan without a Delete label, or its data, is gone"
  rm -rf "$E2E_TMP/root-node-b/srv/$P_R/${NS}_orphan-keep_orphan-keep-$RUN"
  k get reservation "storagepool.$P_R.orphan-due-$RUN" >/dev/null 2>&1 ||
    e2e_fail "orphan-due was released before its deadline + 30 s (rule 4)"
  e2e_wait_for 60 "orphan-due released after its deadline + 30 s" sh -c \
    "! kubectl get reservation storagepool.$P_R.orphan-due-$RUN >/dev/null 2>&1"
  grep -q '"released the reservation of a volume that no longer exists"' "$E2E_TMP"/op.*.log ||
    e2e_fail "no log line of the sweep"

  # The PVC of a live Volume deleted by hand: kube-controller-manager
  # Releases the PV; the operator makes the PVC again and opens the PV for
  # it, so it binds to the same PV and the data stays.
  volumes again 1 1 10Mi "{\"pool\": \"$P_R\"}" | k create -n "$NS" -f - >/dev/null
  e2e_wait_for 30 "again1 Ready" bound again1
  local old_pvc t0
  uid=$(k get volume -n "$NS" again1 -o jsonpath='{.metadata.uid}')
  old_pvc=$(k get pvc -n "$NS" again1 -o jsonpath='{.metadata.uid}')
  echo data >"$E2E_TMP/root-node-b/srv/$P_R/${NS}_again1_$uid/file"
  t0=$(e2e_now)
  k delete pvc -n "$NS" again1 --wait=true --timeout=30s >/dev/null || e2e_fail "PVC again1 not deleted"
  e2e_wait_for 60 "again1's PVC made again and Bound to vol-$uid" pvc_rebound again1 "$old_pvc" "vol-$uid"
  e2e_diag "figure: PVC again1 deleted to a new one Bound to vol-$uid: $(e2e_since "$t0") s"
  e2e_wait_for 30 "again1 Ready again" bound again1
  [ "$(cat "$E2E_TMP/root-node-b/srv/$P_R/${NS}_again1_$uid/file" 2>/dev/null)" = data ] ||
    e2e_fail "again1's data is gone after its PVC was deleted"
  k delete volume -n "$NS" again1 --wait=false >/dev/null
  e2e_wait_for 90 "again1, its PV and directory gone" sh -c \
    "! kubectl get volume -n $NS again1 >/dev/null 2>&1 && ! kubectl get pv vol-$uid >/dev/null 2>&1 &&
     [ ! -e $E2E_TMP/root-node-b/srv/$P_R/${NS}_again1_$uid ]"

  # Deleted right after creation, and the agent killed while it works.
  volumes quick 1 6 10Mi "{\"pool\": \"$P_R\"}" | k create -n "$NS" -f - >/dev/null
  k delete volumes -n "$NS" quick1 quick2 quick3 --wait=false >/dev/null
  sleep 0.5
  kill -KILL "$(e2e_bg_pid agent-node-b)"
  e2e_bg_wait agent-node-b 10 >/dev/null || true
  k delete volumes -n "$NS" quick4 --wait=false >/dev/null
  sleep 2
  start_agent node-b
  e2e_wait_for 30 "quick5 and quick6 Ready" sh -c "kubectl wait -n $NS --for=condition=Ready volume/quick5 volume/quick6 --timeout=1s >/dev/null 2>&1"
  k delete volumes -n "$NS" quick5 quick6 --wait=false >/dev/null
  e2e_wait_for 120 "every quick Volume gone" sh -c "[ -z \"\$(kubectl get volumes -n $NS -l e2e-batch=quick -o name)\" ]"
  e2e_wait_for 15 "no Reservation of $P_R left" sh -c "[ -z \"\$(kubectl get reservations -l provisio.dev/pool=$P_R -o name)\" ]"
  e2e_wait_for 15 "no directory left in $P_R" dirs_are node-b "$P_R" ""
  [ -z "$(k get pvc -n "$NS" -o name | grep quick)" ] || e2e_fail "PVCs left: $(k get pvc -n "$NS" -o name | grep quick)"
  [ -z "$(k get pv -o jsonpath='{.items[*].spec.claimRef.name}' | tr ' ' '\n' | grep quick)" ] || e2e_fail "PVs left"
  e2e_wait_for 15 "$P_R counts nothing" sp_is "$P_R" "st.get('allocatedBytes') == 0 and st.get('volumes') == 0"
}

# ---- 8. hard limits --------------------------------------------------------------------------

test_hard_limits_btrfs() {
  local img=$E2E_TMP/btrfs.img mnt=$E2E_TMP/root-node-b/srv/$P_Q
  truncate -s 256M "$img"
  mkfs.btrfs -q "$img" >/dev/null
  mkdir -p "$mnt"
  local loopdev
  loopdev=$(losetup -f --show "$img")
  mount "$loopdev" "$mnt" || e2e_fail "cannot mount btrfs"
  pool "$P_Q" node-b '{"quota": "Required", "capacity": "200Mi"}'
  e2e_wait_for 20 "$P_Q Ready, quota Enforced" sp_is "$P_Q" \
    "ready.get('status') == 'True' and st.get('quota') == 'Enforced'"
  volumes lim 1 1 16Mi "{\"pool\": \"$P_Q\"}" | k create -n "$NS" -f - >/dev/null
  e2e_wait_for 30 "lim1 Ready" bound lim1
  local uid dir out
  uid=$(k get volume -n "$NS" lim1 -o jsonpath='{.metadata.uid}')
  dir=$mnt/${NS}_lim1_$uid
  k get reservation "storagepool.$P_Q.$uid" -o jsonpath='{.status.quota}' | grep -qx Enforced ||
    e2e_fail "lim1's directory has no hard limit"
  if out=$(dd if=/dev/zero of="$dir/big" bs=1M count=32 conv=fsync 2>&1); then
    e2e_fail "writing 32 MiB into a 16 MiB volume succeeded"
  else
    grep -q 'Disk quota exceeded' <<<"$out" || e2e_fail "dd failed, but not with EDQUOT:" "$out"
    e2e_diag "dd past the size: $(grep -o 'Disk quota exceeded' <<<"$out" | head -1)"
  fi
  # usedBytes comes from the qgroup, read by the agent every 60 s or at its
  # restart: restart it rather than wait.
  e2e_bg_stop agent-node-b TERM 15 >/dev/null || true
  start_agent node-b
  e2e_wait_for 30 "usedBytes of lim1 (Volume) from the quota" vol_is lim1 \
    "st.get('usedBytes', 0) >= 8 * 2**20 and st.get('usedBytes', 0) <= 17 * 2**20"
  e2e_wait_for 30 "usedBytes of $P_Q" sp_is "$P_Q" "st.get('usedBytes', 0) >= 8 * 2**20"
  e2e_diag "figure: lim1 usedBytes $(k get volume -n "$NS" lim1 -o jsonpath='{.status.usedBytes}') after writing past 16 MiB"
  k delete volume -n "$NS" lim1 --wait=false >/dev/null
  e2e_wait_for 90 "lim1 gone, its subvolume removed" sh -c "! kubectl get volume -n $NS lim1 >/dev/null 2>&1 && [ ! -e $dir ]"
}

# ---- 9. dynamic provisioning ---------------------------------------------------------------

# capacity_of POOL: "CLASS=CAPACITY ..." of its CSIStorageCapacity objects.
capacity_of() {
  k get csistoragecapacities -A -l "provisio.dev/pool=$1" \
    -o jsonpath='{range .items[*]}{.storageClassName}={.capacity} {end}' | sed 's/ $//'
}

capacity_is() { # POOL "CLASS=CAP ..."
  local got
  got=$(capacity_of "$1")
  [ "$got" = "$2" ] || {
    echo "capacities: $got"
    return 1
  }
}

# claim NAME CLASS SIZE: a plain PVC.
claim() {
  k create -n "$NS" -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $1}
spec:
  storageClassName: $2
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: $3}}
YAML
}

# race_settled: of the claims race1 and race2, one is Bound (still
# annotated node-b), the other Pending without the annotation.
race_settled() {
  local got
  got=$(k get pvc -n "$NS" race1 race2 -o json | python3 -c '
import json, sys
sel = "volume.kubernetes.io/selected-node"
print(" ".join(sorted("%s/%s" % (p["status"].get("phase"), (p["metadata"].get("annotations") or {}).get(sel, ""))
                      for p in json.load(sys.stdin)["items"])))')
  [ "$got" = "Bound/node-b Pending/" ] || {
    echo "phase/selected-node: $got"
    return 1
  }
}

pvc_phase_is() { # NAME PHASE
  [ "$(k get pvc -n "$NS" "$1" -o jsonpath='{.status.phase}')" = "$2" ]
}

test_dynamic_provisioning() {
  k apply -f "$SRC/config/storage/csidriver.yaml" >/dev/null
  k apply -f - >/dev/null <<YAML
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: $SC_W}
provisioner: local.provisio.dev
reclaimPolicy: Delete
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: $SC_I}
provisioner: local.provisio.dev
reclaimPolicy: Delete
volumeBindingMode: Immediate
YAML
  mkdir -p "$E2E_TMP/root-node-b/srv/$P_DB" "$E2E_TMP/root-node-c/srv/$P_DC"
  pool "$P_DB" node-b "{\"capacity\": \"300Mi\", \"storageClassName\": \"$SC_W\"}"
  pool "$P_DC" node-c "{\"capacity\": \"2Gi\", \"storageClassName\": \"$SC_W\"}"
  e2e_wait_for 20 "$P_DB and $P_DC Ready" sh -c "kubectl wait --for=condition=Ready storagepool/$P_DB storagepool/$P_DC --timeout=1s >/dev/null 2>&1"
  e2e_wait_for 20 "CSIStorageCapacity of $P_DB" capacity_is "$P_DB" "$SC_W=300Mi"
  e2e_wait_for 20 "CSIStorageCapacity of $P_DC" capacity_is "$P_DC" "$SC_W=2Gi"
  k get csistoragecapacities -A -l provisio.dev/pool | sed 's/^/# /'

  # Pools with no class serve every class: their objects exist too. Only
  # node-c has 1500Mi free for $SC_W (node-b's largest: 1Gi).
  claim big "$SC_W" 1500Mi
  sleep 1
  pvc_phase_is big Pending || e2e_fail "a WaitForFirstConsumer claim was bound before any pod"
  pod_on user-big big
  e2e_wait_for 30 "the pod of claim big placed on node-c" \
    sh -c "[ \"\$(kubectl get pod -n $NS user-big -o jsonpath='{.spec.nodeName}')\" = node-c ]"
  e2e_wait_for 60 "claim big Bound" pvc_phase_is big Bound
  local uid
  uid=$(k get pvc -n "$NS" big -o jsonpath='{.metadata.uid}')
  [ "$(k get pvc -n "$NS" big -o jsonpath='{.spec.volumeName}')" = "pvc-$uid" ] || e2e_fail "claim big is not bound to PV pvc-$uid"
  k get pv "pvc-$uid" -o json | python3 -c '
import json, sys
pv = json.load(sys.stdin)
assert pv["spec"]["storageClassName"] == sys.argv[1], pv["spec"]
assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["node-c"]
assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"' "$SC_W" || e2e_fail "PV pvc-$uid is not on node-c with the class"
  vol_is big "st.get('pool') == '$P_DC' and ready.get('status') == 'True'" || e2e_fail "Volume big is not Ready in $P_DC"
  e2e_wait_for 20 "the capacity of $P_DC lowered by 1500Mi" capacity_is "$P_DC" "$SC_W=548Mi"
  k get pvc,pv -n "$NS" | grep -E 'NAME|big' | sed 's/^/# /'

  # Two claims of 1100Mi picked for node-b at once (the test annotates them
  # as kube-scheduler does when two pods race for what looked like room for
  # each). On node-b only $P_RB (2000Mi, this class) can hold 1100Mi (the
  # classless pools of earlier tests hold 1Gi): it takes one; the other's
  # pick is given back (the annotation removed, its Volume deleted, a
  # Rescheduling Event) and its pod, scheduled afterwards, lands on node-c,
  # where $P_RC (1200Mi) has room, and is Bound there.
  mkdir -p "$E2E_TMP/root-node-b/srv/$P_RB" "$E2E_TMP/root-node-c/srv/$P_RC"
  pool "$P_RB" node-b "{\"capacity\": \"2000Mi\", \"storageClassName\": \"$SC_W\"}"
  pool "$P_RC" node-c "{\"capacity\": \"1200Mi\", \"storageClassName\": \"$SC_W\"}"
  e2e_wait_for 20 "$P_RB and $P_RC Ready" sh -c "kubectl wait --for=condition=Ready storagepool/$P_RB storagepool/$P_RC --timeout=1s >/dev/null 2>&1"
  # Published capacity means the operator's ledger of each pool is set up.
  e2e_wait_for 20 "CSIStorageCapacity of $P_RB" capacity_is "$P_RB" "$SC_W=2000Mi"
  e2e_wait_for 20 "CSIStorageCapacity of $P_RC" capacity_is "$P_RC" "$SC_W=1200Mi"
  claim race1 "$SC_W" 1100Mi
  claim race2 "$SC_W" 1100Mi
  k annotate pvc -n "$NS" race1 race2 volume.kubernetes.io/selected-node=node-b >/dev/null
  e2e_wait_for 60 "one of race1/race2 Bound on node-b, the other's node given back" race_settled
  local lost won
  for lost in race1 race2; do pvc_phase_is "$lost" Bound || break; done
  won=race1
  [ "$lost" = race2 ] || won=race2
  e2e_wait_for 30 "$lost's Volume on node-b deleted" gone volume "$lost" "$NS"
  k get events -n "$NS" --field-selector "involvedObject.name=$lost,reason=Rescheduling" \
    -o jsonpath='{.items[0].message}' | grep -q 'node node-b cannot hold this claim' ||
    e2e_fail "no Rescheduling Event on $lost"
  e2e_diag "event: $(k get events -n "$NS" --field-selector "involvedObject.name=$lost,reason=Rescheduling" -o jsonpath='{.items[0].message}')"
  vol_is "$won" "st.get('pool') == '$P_RB'" || e2e_fail "$won is not in $P_RB"
  pod_on "user-$lost" "$lost"
  e2e_wait_for 30 "the pod of $lost placed on node-c (node-b has 900Mi left)" \
    sh -c "[ \"\$(kubectl get pod -n $NS user-$lost -o jsonpath='{.spec.nodeName}')\" = node-c ]"
  e2e_wait_for 60 "$lost Bound in $P_RC" vol_is "$lost" "st.get('pool') == '$P_RC' and ready.get('status') == 'True'"

  claim huge "$SC_W" 5Gi
  pod_on user-huge huge
  e2e_wait_for 30 "the pod of a claim larger than every pool stays Pending, unschedulable" sh -c \
    "kubectl get pod -n $NS user-huge -o jsonpath='{.status.conditions[?(@.type==\"PodScheduled\")].message}' | grep -q 'free storage'"
  e2e_diag "scheduler: $(k get pod -n "$NS" user-huge -o jsonpath='{.status.conditions[?(@.type=="PodScheduled")].message}')"
  pvc_phase_is huge Pending || e2e_fail "claim huge is not Pending"

  claim now "$SC_I" 100Mi
  e2e_wait_for 60 "an Immediate claim Bound without a pod" pvc_phase_is now Bound
  claim nowhuge "$SC_I" 5Gi
  e2e_wait_for 30 "ProvisioningFailed Event on claim nowhuge" sh -c \
    "kubectl get events -n $NS --field-selector involvedObject.name=nowhuge,reason=ProvisioningFailed -o jsonpath='{.items[*].message}' | grep -q 'larger than every'"
  e2e_diag "event: $(k get events -n "$NS" --field-selector involvedObject.name=nowhuge,reason=ProvisioningFailed -o jsonpath='{.items[0].message}')"
  pvc_phase_is nowhuge Pending || e2e_fail "claim nowhuge is not Pending"

  e2e_force_delete_pods "$NS"
  k delete pvc -n "$NS" big huge now nowhuge race1 race2 --wait=false >/dev/null
  e2e_wait_for 120 "the claims' Volumes and PVs gone" sh -c \
    "[ -z \"\$(kubectl get volumes -n $NS -o name | grep -E '/(big|huge|now|nowhuge|race1|race2)\$')\" ] && ! kubectl get pv pvc-$uid >/dev/null 2>&1"
  [ -z "$(k get pv -o jsonpath='{.items[?(@.status.phase=="Released")].metadata.name}')" ] ||
    e2e_fail "PVs left Released: $(k get pv -o jsonpath='{.items[?(@.status.phase=="Released")].metadata.name}')"
  e2e_wait_for 15 "no directory left in $P_DC" dirs_are node-c "$P_DC" ""
  # Their Reservations go at their admission's deadline + 30 s (ledger rule 4).
  e2e_wait_for 90 "no directory left in $P_RB and $P_RC" sh -c \
    "[ -z \"\$(find $E2E_TMP/root-node-b/srv/$P_RB $E2E_TMP/root-node-c/srv/$P_RC -mindepth 1)\" ]"
  k delete storagepool "$P_RB" "$P_RC" --wait=true --timeout=60s >/dev/null ||
    e2e_fail "$P_RB and $P_RC not deleted"
  e2e_wait_for 20 "the capacity of $P_DC back to 2Gi" capacity_is "$P_DC" "$SC_W=2Gi"
  k delete storageclass "$SC_I" >/dev/null
  e2e_wait_for 20 "deleting a class deletes its capacity objects" sh -c "! kubectl get csistoragecapacities -A -l provisio.dev/pool -o jsonpath='{.items[*].storageClassName}' | grep -q $SC_I"
}

# ---- 10. an API server restart mid-batch ----------------------------------------------------

# ready_is BATCH N: N Volumes of BATCH are Ready=True.
ready_is() {
  local got
  got=$(k get volumes -n "$NS" -l "e2e-batch=$1" \
    -o jsonpath='{.items[*].status.conditions[?(@.type=="Ready")].status}' | tr ' ' '\n' | grep -c True)
  [ "$got" = "$2" ] || {
    echo "Ready: $got"
    return 1
  }
}

test_apiserver_restart_mid_batch() {
  mkdir -p "$E2E_TMP/root-node-b/srv/$P_A"
  pool "$P_A" node-b '{"capacity": "300Mi"}'
  e2e_wait_for 20 "$P_A Ready" reason_is "$P_A" True PathReady
  volumes r 1 20 20Mi "{\"pool\": \"$P_A\"}" >"$E2E_TMP/restart.json"
  local t0 creator
  t0=$(e2e_now)
  k create -n "$NS" -f "$E2E_TMP/restart.json" >/dev/null 2>&1 &
  creator=$!
  e2e_wait_for 30 "3 of the batch placed" storm_placed_at_least 3 r
  local from
  from=$(e2e_now)
  "$SRC/hack/kube-local" restart-apiserver "$PROVISIO_KUBE_DIR" >"$E2E_TMP/restart.log" 2>&1 ||
    e2e_fail "kube-apiserver was not restarted" "$(tail -n 20 "$E2E_TMP/restart.log")"
  # Errors logged while it was away or installing its paths (503s for a few
  # seconds after /readyz) are expected: test 12 leaves them out.
  echo "$from $(python3 -c 'import time; print(time.time() + 15)')" >"$E2E_TMP/restart.window"
  e2e_diag "kube-apiserver restarted when 3 of 20 Volumes were placed; back $(e2e_since "$t0") s into the batch"
  # The create may have been cut by the restart: what it did not make is
  # made now (those already there stay).
  wait "$creator" || k create -n "$NS" -f "$E2E_TMP/restart.json" >/dev/null 2>&1 || true
  e2e_wait_for 120 "15 placed, 5 InsufficientCapacity (300Mi of 20Mi each)" storm_is "15 5" r
  local b=$((15 * 20 * 1048576))
  e2e_wait_for 30 "the pool's counts equal the valid Reservations" held_is "$P_A" "$b 15 $b 15"
  e2e_wait_for 90 "the 15 placed Ready (PVC Bound)" ready_is r 15
  e2e_diag "figure: 20 Volumes on a 300Mi pool, API server restarted mid-batch: 15 Ready, 5 waiting after $(e2e_since "$t0") s"
  [ "$(dirs node-b "$P_A" | wc -w)" = 15 ] || e2e_fail "node-b holds $(dirs node-b "$P_A" | wc -w) directories in $P_A, want 15"
  e2e_bg_alive op || e2e_fail "the operator died across the restart" "$(tail -n 20 "$(e2e_bg_log op)")"
  k delete volumes -n "$NS" -l e2e-batch=r --wait=false >/dev/null
  e2e_wait_for 120 "the batch gone" sh -c "[ -z \"\$(kubectl get volumes -n $NS -l e2e-batch=r -o name)\" ]"
  e2e_wait_for 15 "no directory left in $P_A" dirs_are node-b "$P_A" ""
  [ -z "$(k get pv -o jsonpath='{.items[?(@.status.phase=="Released")].metadata.name}')" ] ||
    e2e_fail "PVs left Released: $(k get pv -o jsonpath='{.items[?(@.status.phase=="Released")].metadata.name}')"
  e2e_wait_for 30 "$P_A counts nothing" sp_is "$P_A" "st.get('allocatedBytes') == 0 and st.get('volumes') == 0"
  k delete storagepool "$P_A" --wait=true --timeout=60s >/dev/null || e2e_fail "$P_A not deleted"
}

# ---- 11. a node that stops ------------------------------------------------------------------

test_node_stops() {
  mkdir -p "$E2E_TMP/root-node-c/srv/$P_N"
  pool "$P_N" node-c
  e2e_wait_for 20 "$P_N Ready" reason_is "$P_N" True PathReady
  volumes held 1 1 10Mi "{\"pool\": \"$P_N\"}" | k create -n "$NS" -f - >/dev/null
  e2e_wait_for 30 "held1 Ready" bound held1
  local uid t0
  uid=$(k get volume -n "$NS" held1 -o jsonpath='{.metadata.uid}')
  t0=$(e2e_now)
  "$SRC/hack/kube-local" node-stop "$PROVISIO_KUBE_DIR" node-c 2>&1 | sed 's/^/# /'
  e2e_wait_for 90 "$P_N NodeNotReady once kube-controller-manager marks node-c" reason_is "$P_N" False NodeNotReady
  e2e_diag "figure: node-stop to NodeNotReady $(e2e_since "$t0") s; $(k get storagepool "$P_N" -o jsonpath='{.status.conditions[?(@.type=="Ready")].message}')"
  # What it holds stays: the Volume Ready, its PV, PVC and directory.
  bound held1 || e2e_fail "held1 is no longer Ready while its node is away"
  k get pv "vol-$uid" >/dev/null || e2e_fail "held1's PV is gone while its node is away"
  [ -d "$E2E_TMP/root-node-c/srv/$P_N/${NS}_held1_$uid" ] || e2e_fail "held1's directory is gone"
  # Nothing new is placed there.
  volumes held 2 2 10Mi "{\"pool\": \"$P_N\"}" | k create -n "$NS" -f - >/dev/null
  e2e_wait_for 20 "held2 PoolNotReady" vol_is held2 "ready.get('reason') == 'PoolNotReady'"
  "$SRC/hack/kube-local" node-start "$PROVISIO_KUBE_DIR" node-c 2>&1 | sed 's/^/# /'
  e2e_wait_for 60 "$P_N Ready again" reason_is "$P_N" True PathReady
  e2e_wait_for 30 "held2 Ready once the node is back" bound held2
  k delete volumes -n "$NS" held1 held2 --wait=false >/dev/null
  e2e_wait_for 90 "held1 and held2 gone, no directory left" sh -c \
    "[ -z \"\$(kubectl get volumes -n $NS -l e2e-batch=held -o name)\" ] && [ -z \"\$(ls $E2E_TMP/root-node-c/srv/$P_N)\" ]"
  k delete storagepool "$P_N" --wait=true --timeout=60s >/dev/null || e2e_fail "$P_N not deleted"
}

# ---- 12. a node deleted for good -------------------------------------------------------------

# node-c's heartbeat and agent stop and its Node object is deleted, as when
# a machine is removed from the cluster with its disks: the pool says
# NodeNotFound; a Volume held there, deleted, is released without an agent
# (the operator takes the directory finalizer off): no Volume, Reservation
# or PV is left and the bytes are freed; nothing touched the directory.
# Then node-c comes back (kube-nodes registers it again, as a kubelet
# would) with its agent, and the pool is Ready again.
node_registered() {
  [ "$(k get node node-c -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

test_node_deleted_for_good() {
  local uid dir t0 pv rc
  mkdir -p "$E2E_TMP/root-node-c/srv/$P_G"
  pool "$P_G" node-c
  e2e_wait_for 20 "$P_G Ready" reason_is "$P_G" True PathReady
  volumes lost 1 1 10Mi "{\"pool\": \"$P_G\"}" | k create -n "$NS" -f - >/dev/null
  e2e_wait_for 30 "lost1 Ready" bound lost1
  uid=$(k get volume -n "$NS" lost1 -o jsonpath='{.metadata.uid}')
  pv=$(k get volume -n "$NS" lost1 -o jsonpath='{.status.persistentVolumeName}')
  dir=$E2E_TMP/root-node-c/srv/$P_G/${NS}_lost1_$uid
  [ -d "$dir" ] || e2e_fail "no directory $dir"
  rc=$(e2e_bg_stop agent-node-c TERM 15) || true
  "$SRC/hack/kube-local" node-stop "$PROVISIO_KUBE_DIR" node-c 2>&1 | sed 's/^/# /'
  k delete node node-c --wait=true --timeout=60s >/dev/null
  e2e_wait_for 30 "$P_G NodeNotFound" reason_is "$P_G" False NodeNotFound
  t0=$(e2e_now)
  k delete volume -n "$NS" lost1 --wait=false >/dev/null
  e2e_wait_for 120 "lost1 released without an agent: no Volume, Reservation, PV; counts 0" sh -c "
    ! kubectl get volume -n $NS lost1 >/dev/null 2>&1 &&
    ! kubectl get pv $pv >/dev/null 2>&1 &&
    [ -z \"\$(kubectl get reservations -l provisio.dev/pool=$P_G -o name)\" ] &&
    [ \"\$(kubectl get storagepool $P_G -o jsonpath='{.status.allocatedBytes} {.status.volumes}')\" = '0 0' ]"
  e2e_diag "figure: deleted Volume on a deleted node released in $(e2e_since "$t0") s (the admission deadline + 30 s first)"
  [ -d "$dir" ] || e2e_fail "the directory of a node that is gone was touched"
  "$SRC/hack/kube-local" node-start "$PROVISIO_KUBE_DIR" node-c 2>&1 | sed 's/^/# /'
  e2e_wait_for 60 "node-c registered again and Ready" node_registered
  start_agent node-c
  e2e_wait_for 60 "$P_G Ready again with node-c back" reason_is "$P_G" True PathReady
  rm -rf "$dir"
  k delete storagepool "$P_G" --wait=true --timeout=60s >/dev/null || e2e_fail "$P_G not deleted"
}

# ---- 13. exits ----------------------------------------------------------------------------------

test_operator_exits_cleanly() {
  e2e_force_delete_pods "$NS"
  local rc a
  for a in agent-node-b agent-node-c; do
    rc=$(e2e_bg_stop "$a" TERM 15) || true
    [ "$rc" = 0 ] || e2e_fail "$a exited $rc on SIGTERM, want 0"
  done
  k delete namespace "$NS" --wait=false >/dev/null
  rc=$(e2e_bg_stop op TERM 15) || true
  [ "$rc" = 0 ] || e2e_fail "the operator exited $rc on SIGTERM, want 0"
  local out
  out=$({ grep -hE '"level":"error".*"(storagepool|volume)"' "$E2E_TMP"/op*.log || true; } | outside_restart) ||
    e2e_fail "error lines of the volume controllers" "$out"
  out=$({ grep -hE '"level":"error".*"(storagepool-agent|volume-agent)"' "$E2E_TMP"/agent-*.log || true; } | outside_restart) ||
    e2e_fail "error lines of the agents' volume controllers" "$out"
}

# outside_restart: the log lines on stdin whose ts is outside the API server
# restart of test 10 ($E2E_TMP/restart.window); fails when there is one.
outside_restart() {
  python3 -c '
import json, sys
from datetime import datetime
try:
    lo, hi = map(float, open(sys.argv[1]).read().split())
except (OSError, ValueError):
    lo = hi = 0.0
bad = []
for line in sys.stdin:
    try:
        ts = datetime.fromisoformat(json.loads(line)["ts"].replace("Z", "+00:00")).timestamp()
    except (ValueError, KeyError, TypeError):
        ts = None
    if ts is None or not lo <= ts <= hi:
        bad.append(line.rstrip())
print("\n".join(bad[:10]))
sys.exit(1 if bad else 0)' "$E2E_TMP/restart.window"
}

e2e_test "setup: CRDs, the operator, agents on node-b and node-c" test_setup
e2e_last_ok || e2e_bail "no operator"
e2e_test "no report: AgentNotReporting, ledger set up; no node: NodeNotFound" test_unreported_and_nodeless_pools
e2e_test "the agent's report: PathReady, PathNotFound, NotWritable, QuotaUnsupported, stale, old spec" test_agent_report
e2e_test "the ledger: Reservations count, late ones do not, frees recounted, hand edits undone" test_ledger
e2e_test "a pool holding a Reservation is Terminating, then goes" test_delete_waits_for_reservations
e2e_test "the agent's pool report; Volumes Ready with PV, PVC Bound, a Pod placed; PoolNotFound, InvalidSpec; a delete removes all and frees bytes" \
  test_volumes_placed_within_capacity
e2e_test "30 Volumes on a 1Gi pool, two replicas, kill -9: exactly 10 placed, never overcommitted" \
  test_storm_two_replicas_kill9
e2e_test "no leaks: Retain keeps the directory; a PVC deleted comes back to its PV; deleted at once, agent killed -9: nothing left" test_no_leaks
e2e_test "hard limits on btrfs: EDQUOT past the size, usedBytes from the quota" test_hard_limits_btrfs
e2e_test "dynamic provisioning: WaitForFirstConsumer on the node with room, Immediate, CSIStorageCapacity, ProvisioningFailed, nothing left" \
  test_dynamic_provisioning
e2e_test "API server restart mid-batch: exactly the Volumes that fit placed and Ready, nothing left after delete" \
  test_apiserver_restart_mid_batch
e2e_test "a node that stops: the pool NodeNotReady, its volumes stay, nothing new placed; back: Ready" \
  test_node_stops
e2e_test "a node deleted for good: NodeNotFound, its Volume released without an agent, nothing left; back: Ready" \
  test_node_deleted_for_good
e2e_test "the operators and agents exit 0 on SIGTERM, no error lines" test_operator_exits_cleanly
e2e_done
