#!/usr/bin/env bash
# End-to-end test of the upgrade to per-network locks (issue 16): a cluster
# run by the version before networks, with Ready claims holding
# ippool.<pool>.<address> Reservations, is taken over mid-storm by this
# version. Contract: API.md "Network: IPPool / IPClaim" (spec.network) and
# "Invariants" 1-3.
#
# The version before is the commit before the change (UPGRADE_FROM below),
# built from a git worktree of it (target provisio, RelWithDebInfo) and kept
# in ${XDG_CACHE_HOME:-~/.cache}/provisio/provisio-<commit> (the tree of a
# commit does not change: the next run reuses it).
#
#  1. setup: the old binary; the old CRDs (from the old commit); namespace;
#     two old replicas (no leader election); pools U = 10.89.0.0/26 (62
#     addresses), D = 10.89.1.0/30 (.1-.2) and E = 10.89.1.0/29 (.1-.6,
#     overlapping D: the old version keeps one lock per pool, so both d1 on
#     D and e1 on E are given 10.89.1.1, the bug of the issue);
#  2. the old storm: 40 claims u1..u40 on U; both old replicas killed with
#     SIGKILL once 20 are Ready (some claims are left half done: a
#     Reservation without a status, or nothing); the Ready claims are the
#     snapshot (their Reservations are ippool.*);
#  3. the upgrade: the new CRDs applied, two new replicas started while 20
#     more claims v1..v20 are created; every state of the claims and of the
#     Reservations is watched (kubectl get -w) until convergence: no address
#     of the snapshot (d1 and e1 aside) ever shown by another claim or
#     locked by a Reservation of another claim, no address ever shown by two
#     claims at once; after convergence: every snapshot claim Ready with its address
#     (uid unchanged), all 60 claims Ready, invariants 1-3 over U, D and E
#     (every Reservation ipnet.default.<address> with spec.network and the
#     label, one per Ready claim, counts exact), no ippool.* Reservation
#     left;
#  4. the duplicate the old version made: exactly one of d1 and e1 keeps
#     10.89.1.1, the other is Ready with another address of its pool and
#     has an AddressLost Event naming the keeper;
#  5. the new replicas exit 0 on SIGTERM, no error lines of the network
#     domain.
#
# Environment (set by the ctest fixture, see tests/CMakeLists.txt):
#   KUBECONFIG           admin kubeconfig of the control plane
#   PATH                 with the control plane's bin/ (kubectl) first
#   PROVISIO_BINARY      the built provisio
#   PROVISIO_SOURCE_DIR  the source tree (a git clone: crds/, the old commit)
# Run by hand:
#   hack/kube-local up /tmp/kl && . /tmp/kl/env
#   PROVISIO_BINARY=build/provisio PROVISIO_SOURCE_DIR=$PWD bash tests/e2e/ip_upgrade_test.sh
#   hack/kube-local down /tmp/kl
# E2E_KEEP=1 keeps the scratch directory (operator logs) even on success.
#
# Output is TAP; the exit status is non-zero if any test failed.
# Test functions run through e2e_test, which shellcheck cannot follow.
# shellcheck disable=SC2317
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
e2e_init ip-upgrade

e2e_require_env KUBECONFIG PROVISIO_BINARY PROVISIO_SOURCE_DIR
e2e_require_cmd kubectl python3 git cmake
[ -x "$PROVISIO_BINARY" ] || e2e_bail "$PROVISIO_BINARY is not an executable"

# The last commit before Reservations were named by network ("store_get_in").
UPGRADE_FROM=6b807dbe85d8f1190b6c7638f57dc553d6e269d2
SRC=$PROVISIO_SOURCE_DIR
OLD_BIN=${XDG_CACHE_HOME:-$HOME/.cache}/provisio/provisio-$UPGRADE_FROM/provisio
WORKERS=${IP_TEST_WORKERS:-4}
RUN=$(date +%s | tail -c 5)$((RANDOM % 100))
NS=e2e-ipup-$RUN
PU=ipup-$RUN-u
PD=ipup-$RUN-d
PE=ipup-$RUN-e
LABEL=provisio-e2e=ipup-$RUN

k() { kubectl "$@"; }
# check CMD ARGS...: ip_check.py (its cmd_* functions).
check() { python3 "$here/ip_check.py" "$@"; }
claim_is() { check claim "$NS" "$@"; } # NAME EXPR
pool_counts_are() {                    # NAME "TOTAL ALLOCATED AVAILABLE"
  local t a v
  read -r t a v <<<"$2"
  check pool "$1" "(st.get('total'), st.get('allocated'), st.get('available')) == ($t, $a, $v) and cond.get('Ready', {}).get('status') == 'True'"
}

elapsed_since() {
  local now=$EPOCHREALTIME
  local us=$(((${now/./} - ${1/./}) / 1000))
  printf '%d.%02d\n' $((us / 1000)) $((us % 1000 / 10))
}

# ---- the two versions -------------------------------------------------------

# build_old: the old binary, from a worktree of UPGRADE_FROM, unless cached.
build_old() {
  [ -x "$OLD_BIN" ] && return 0
  git -C "$SRC" cat-file -e "$UPGRADE_FROM^{commit}" 2>/dev/null ||
    e2e_fail "$SRC has no commit $UPGRADE_FROM (a clone with its history is needed)"
  local wt=$E2E_TMP/old-tree
  git -C "$SRC" worktree add --detach "$wt" "$UPGRADE_FROM" >/dev/null 2>&1 ||
    e2e_fail "git worktree add of $UPGRADE_FROM failed"
  local rc=0
  {
    cmake -S "$wt" -B "$wt/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPROVISIO_TESTS=OFF &&
      cmake --build "$wt/build" -j2 --target provisio
  } >"$E2E_TMP/old-build.log" 2>&1 || rc=$?
  if ((rc == 0)); then
    mkdir -p "$(dirname "$OLD_BIN")"
    cp "$wt/build/provisio" "$OLD_BIN.tmp" && mv "$OLD_BIN.tmp" "$OLD_BIN"
  fi
  git -C "$SRC" worktree remove --force "$wt" >/dev/null 2>&1 || true
  ((rc == 0)) || e2e_fail "building $UPGRADE_FROM failed:" "$(tail -20 "$E2E_TMP/old-build.log")"
}

# The CRDs of each version.
old_crds() {
  mkdir -p "$E2E_TMP/old-crds"
  git -C "$SRC" archive "$UPGRADE_FROM" crds | tar -x -C "$E2E_TMP/old-crds"
  echo "$E2E_TMP/old-crds/crds"
}
apply_crds() {
  k apply --server-side --force-conflicts -f "$1" >/dev/null
  k wait --for=condition=Established --timeout=60s -f "$1" >/dev/null
}

# start_op NAME BINARY: a replica without leader election (admin kubeconfig,
# ephemeral ports); waits for its caches.
start_op() {
  local name=$1 bin=$2 log=$E2E_TMP/$1.log
  e2e_bg_start "$name" "$log" "$bin" --kubeconfig "$KUBECONFIG" --leader-elect=false \
    --metrics-bind-address=127.0.0.1:0 --health-probe-bind-address=127.0.0.1:0 \
    --max-concurrent-reconciles="$WORKERS"
  e2e_wait_for 60 "$name synced its caches" grep -q '"all informers synced"' "$log"
}

# ---- objects ------------------------------------------------------------------

pool() { # NAME CIDR (no spec.network: the old CRD has none)
  printf 'apiVersion: provisio.dev/v1alpha1\nkind: IPPool\nmetadata:\n  name: %s\n  labels: {%s: %s}\nspec:\n  cidr: %s\n' \
    "$1" "${LABEL%%=*}" "${LABEL#*=}" "$2" | k apply -f - >/dev/null
}
claim() { # NAME POOL [ADDRESS]
  local extra=
  [ $# -lt 3 ] || extra=$'\n'"  address: $3"
  printf 'apiVersion: provisio.dev/v1alpha1\nkind: IPClaim\nmetadata:\n  name: %s\nspec:\n  pool: %s%s\n' \
    "$1" "$2" "$extra" | k create -n "$NS" -f - >/dev/null
}
# claims PREFIX N: a List of N claims PREFIX1..PREFIXN on U.
claims() {
  python3 - "$1" "$2" "$PU" <<'PY'
import json, sys
p, n, pool = sys.argv[1], int(sys.argv[2]), sys.argv[3]
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
    {"apiVersion": "provisio.dev/v1alpha1", "kind": "IPClaim",
     "metadata": {"name": "%s%d" % (p, i)}, "spec": {"pool": pool}} for i in range(1, n + 1)]}))
PY
}

# ---- cleanup: the new CRDs back whatever happened; finalizers by hand ---------

cleanup() {
  local o
  e2e_bg_stop_all >/dev/null 2>&1 || true
  apply_crds "$SRC/crds/" || true
  for o in $(k get ipclaims -n "$NS" -o name 2>/dev/null); do
    k patch -n "$NS" "$o" --type=merge -p '{"metadata":{"finalizers":null}}'
  done
  k delete namespace "$NS" --wait=false
  k delete reservations -l "provisio.dev/pool-kind=IPPool,provisio.dev/pool in ($PU,$PD,$PE)" --wait=false
  for o in $(k get ippools -l "$LABEL" -o name 2>/dev/null); do
    k patch "$o" --type=merge -p '{"metadata":{"finalizers":null}}'
  done
  k delete ippools -l "$LABEL" --wait=false
  git -C "$SRC" worktree prune 2>/dev/null || true
}
e2e_on_exit cleanup

# ---- 1. setup: the old version ------------------------------------------------

test_setup_old() {
  local t0=$EPOCHREALTIME
  build_old
  e2e_diag "old binary ($UPGRADE_FROM): $OLD_BIN, ready in $(elapsed_since "$t0") s"
  apply_crds "$(old_crds)"
  # A pool not of this run overlapping ours would change the counts.
  local other
  other=$(check foreign "$PU,$PD,$PE" 10.89.0.0/23) ||
    e2e_fail "pools not of this run overlap 10.89.0.0/23:" "$other"
  k create namespace "$NS" >/dev/null
  start_op old1 "$OLD_BIN"
  start_op old2 "$OLD_BIN"
  pool "$PU" 10.89.0.0/26
  pool "$PD" 10.89.1.0/30
  pool "$PE" 10.89.1.0/29
  e2e_wait_for 30 "$PU counts 62 0 62" pool_counts_are "$PU" "62 0 62"
  # The old version's bug: one lock per pool.
  claim d1 "$PD" 10.89.1.1
  claim e1 "$PE" 10.89.1.1
  e2e_wait_for 30 "d1 Ready (old)" claim_is d1 "ready.get('status') == 'True'"
  e2e_wait_for 30 "e1 Ready with the same address (old, one lock per pool)" claim_is e1 "ready.get('status') == 'True'"
  local names
  names=$(k get reservations -l "provisio.dev/pool in ($PD,$PE)" -o name | sed 's#.*/##' | sort | tr '\n' ' ')
  e2e_diag "the old version's Reservations of d1 and e1: $names"
  [ "$names" = "ippool.$PD.10-89-1-1 ippool.$PE.10-89-1-1 " ] || e2e_fail "old Reservations: $names"
}

# ---- 2. the old storm, cut by SIGKILL -------------------------------------------

test_old_storm_killed() {
  local claim status t0=$EPOCHREALTIME
  local -A ready=()
  claims u 40 >"$E2E_TMP/u.json"
  k create -n "$NS" -f "$E2E_TMP/u.json" >/dev/null &
  local creator=$!
  while read -r claim status; do
    [ "$status" = True ] && ready[$claim]=1
    if ((${#ready[@]} >= 20)); then
      kill -KILL "$(e2e_bg_pid old1)" "$(e2e_bg_pid old2)"
      break
    fi
  done < <(timeout 120 kubectl get ipc -n "$NS" -w \
    -o jsonpath='{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}' 2>/dev/null)
  wait "$creator" || e2e_fail "kubectl create of the 40 claims failed"
  e2e_bg_wait old1 10 >/dev/null || e2e_fail "old1 did not die"
  e2e_bg_wait old2 10 >/dev/null || e2e_fail "old2 did not die"
  ((${#ready[@]} >= 20)) || e2e_fail "only ${#ready[@]} claims were seen Ready under the old version"
  check snapshot "$NS" >"$E2E_TMP/snapshot"
  local n legacy
  n=$(grep -c . "$E2E_TMP/snapshot")
  legacy=$(k get reservations -l "provisio.dev/pool=$PU" -o name | grep -c '/ippool\.' || true)
  e2e_diag "both old replicas killed with SIGKILL $(elapsed_since "$t0") s into the storm: $n claims Ready (d1, e1 included), $legacy ippool.* Reservations of $PU"
  ((legacy >= n - 2)) || e2e_fail "$legacy ippool.* Reservations of $PU for $((n - 2)) Ready claims"
}

# ---- 3. the upgrade mid-storm ---------------------------------------------------------

# watch NAME FILE ARGS...: kubectl get -w ARGS in the background (NAME),
# every state it sees appended to FILE; waits for the first list.
watch() {
  local name=$1 file=$2
  shift 2
  e2e_bg_start "$name" "$file" kubectl get -w "$@"
  e2e_wait_for 30 "$name listed" test -s "$file"
}

test_upgrade_mid_storm() {
  local t0=$EPOCHREALTIME
  apply_crds "$SRC/crds/"
  # Every state of the claims and of the IPPool Reservations from here on
  # (watches of the new CRDs: a CRD's change ends the watches on it).
  watch claims-watch "$E2E_TMP/claims.watch" ipc -n "$NS" \
    -o jsonpath='{.metadata.name} {.metadata.uid} {.status.address}{"\n"}'
  watch resv-watch "$E2E_TMP/resv.watch" reservations -l provisio.dev/pool-kind=IPPool \
    -o jsonpath='{.metadata.name} {.spec.slot} {.spec.claim.uid}{"\n"}'
  claims v 20 >"$E2E_TMP/v.json"
  k create -n "$NS" -f "$E2E_TMP/v.json" >/dev/null &
  local creator=$!
  start_op new1 "$PROVISIO_BINARY"
  start_op new2 "$PROVISIO_BINARY"
  wait "$creator" || e2e_fail "kubectl create of the 20 claims failed"
  local got
  e2e_wait_for 120 "converged: invariants 1-3 over $PU, $PD, $PE" check invariants "$NS" "" "$PU" "$PD" "$PE"
  e2e_diag "figure: new CRDs to converged, 60 claims, $(grep -c . "$E2E_TMP/snapshot") held the old way: $(elapsed_since "$t0") s"
  sleep 2
  got=$(check invariants "$NS" "" "$PU" "$PD" "$PE") || e2e_fail "invariants no longer hold:" "$got"
  got=$(check kept "$NS" "$E2E_TMP/snapshot" d1 e1) || e2e_fail "claims Ready under the old version lost their address:" "$got"
  got=$(check legacy "$PU" "$PD" "$PE") || e2e_fail "Reservations still named the old way:" "$got"
  local ready
  ready=$(k get ipc -n "$NS" -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True || true)
  [ "$ready" = 62 ] || e2e_fail "$ready of 62 claims Ready"
  pool_counts_are "$PU" "62 60 2" || e2e_fail "counts of $PU"
  # The whole history: the watches must have lasted to here.
  e2e_bg_alive claims-watch || e2e_fail "the watch of the claims ended early"
  e2e_bg_alive resv-watch || e2e_fail "the watch of the Reservations ended early"
  e2e_bg_stop claims-watch >/dev/null || true
  e2e_bg_stop resv-watch >/dev/null || true
  got=$(check history "$E2E_TMP/snapshot" "$E2E_TMP/claims.watch" "$E2E_TMP/resv.watch" d1 e1) ||
    e2e_fail "during the upgrade:" "$got"
  e2e_diag "every state watched during the upgrade ($got): each held address stayed with its claim, none shown twice"
  e2e_diag "reservations moved to their current name: $(cat "$E2E_TMP"/new*.log | grep -c 'moved a reservation to its current name' || true)"
}

# ---- 4. the old duplicate -----------------------------------------------------------------

test_old_duplicate_resolved() {
  local d e keeper loser
  d=$(k get ipc -n "$NS" d1 -o jsonpath='{.status.address}')
  e=$(k get ipc -n "$NS" e1 -o jsonpath='{.status.address}')
  e2e_diag "d1 (pool $PD) $d, e1 (pool $PE) $e"
  if [ "${d%/*}" = 10.89.1.1 ] && [ "${e%/*}" != 10.89.1.1 ]; then
    keeper=d1 loser=e1
  elif [ "${e%/*}" = 10.89.1.1 ] && [ "${d%/*}" != 10.89.1.1 ]; then
    keeper=e1 loser=d1
  else
    e2e_fail "one of d1 and e1 must keep 10.89.1.1: d1 $d, e1 $e"
  fi
  local ev
  ev=$(k get events -n "$NS" --field-selector "involvedObject.name=$loser,reason=AddressLost" \
    -o jsonpath='{range .items[*]}{.message}{"\n"}{end}')
  e2e_diag "$loser AddressLost: $ev"
  [[ $ev == *"$keeper"* ]] || e2e_fail "no AddressLost Event on $loser naming $keeper"
}

# ---- 5. the new replicas exit cleanly ---------------------------------------------

test_new_exit_cleanly() {
  local rc n
  for n in new1 new2; do
    e2e_bg_alive "$n" || e2e_fail "$n is not running"
    rc=$(e2e_bg_stop "$n" TERM 15) || true
    [ "$rc" = 0 ] || e2e_fail "$n exited $rc on SIGTERM, want 0"
  done
  local transient='"code":-(4|5|429|500|503|504)[,}]'
  grep -hE '"level":"error".*"(ipclaim|ippool|ipreservation)"' "$E2E_TMP"/new*.log |
    grep -Ev "$transient" >"$E2E_TMP/errors.txt" || true
  [ ! -s "$E2E_TMP/errors.txt" ] || e2e_fail "error lines in the new operators' logs:" "$(head -5 "$E2E_TMP/errors.txt")"
}

e2e_test "setup: the old version ($UPGRADE_FROM) with its CRDs, two replicas, pools U, D and E (D and E overlapping)" test_setup_old
e2e_last_ok || e2e_bail "no setup"
e2e_test "the old storm: 40 claims on U, both old replicas killed with SIGKILL when 20 are Ready" test_old_storm_killed
e2e_last_ok || e2e_bail "no old storm"
e2e_test "the upgrade mid-storm: new CRDs, two new replicas, 20 more claims; held addresses kept, invariants, no ippool.* left" test_upgrade_mid_storm
e2e_test "the old duplicate (d1 and e1 both on 10.89.1.1): one keeps it, the other moves with an AddressLost Event" test_old_duplicate_resolved
e2e_test "the new replicas exit 0 on SIGTERM, no error lines" test_new_exit_cleanly
e2e_done
