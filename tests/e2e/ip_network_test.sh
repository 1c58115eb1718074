#!/usr/bin/env bash
# End-to-end test of IPPool spec.network (issue 16: one address, one holder,
# across overlapping pools). Contract: API.md "Network: IPPool / IPClaim"
# (spec.network) and "Invariants" 1-3.
#
# Pools of this run: A = 10.88.0.0/28 (network default by the CRD's default,
# 14 addresses .1-.14), B = 10.88.0.0/27 (network default, written out; 30
# addresses .1-.30, A's inside them), C = 10.88.0.0/29 (network blue, .1-.6).
#
#  1. setup: CRDs, namespace, the operator; the three pools Ready with their
#     totals; spec.network defaulted to "default";
#  2. kubectl: `get ipp -o wide` has a NETWORK column (default, default,
#     blue); changing spec.network is refused by the API server with a
#     message naming spec.network; A and B are Overlapping=True
#     (OverlappingPools) each naming the other, C is Overlapping=False
#     (NoOverlap);
#  3. one address, one holder per network: a claim on A for 10.88.0.1 is
#     Ready (ipnet.default.10-88-0-1, labels pool=A network=default); a claim
#     on B for the same address is AddressInUse naming the holder claim and
#     "IPPool A"; a claim on C (blue) for 10.88.0.1 is Ready all the same
#     (ipnet.blue.10-88-0-1); counts A 14/1/13, B 30/0/29, C 6/1/5; once A's
#     holder is deleted the B claim gets 10.88.0.1 through B (A 0 allocated,
#     13 available; B 1/29);
#  4. a storm of 40 claims alternating A and B, two operator replicas without
#     leader election, one killed with SIGKILL mid-storm (when 10 claims are
#     Ready) and restarted; over every state of the claims (a kubectl watch
#     from before the first create to convergence) no address is shown by
#     two claims at once; after convergence: Ready addresses distinct, A's
#     in .1-.14, every claim not Ready is PoolExhausted with its pool's
#     available 0, Ready A + B <= 30, every Reservation ipnet.default.<addr>
#     with the labels and spec of its claim and the pool it was taken
#     through, exactly one per Ready claim, pool counts exact (allocated =
#     held through the pool, available = total - addresses of the network
#     held in the pool's set by any pool);
#  5. all claims deleted: no Reservation of this run, counts back to
#     14/0/14, 30/0/30, 6/0/6; pools deleted;
#  6. the operators exit 0 on SIGTERM; no error lines of the network domain
#     (but transient API answers).
#
# Environment (set by the ctest fixture, see tests/CMakeLists.txt):
#   KUBECONFIG           admin kubeconfig of the control plane
#   PATH                 with the control plane's bin/ (kubectl) first
#   PROVISIO_BINARY      the built provisio
#   PROVISIO_SOURCE_DIR  the source tree (crds/)
# Run by hand:
#   hack/kube-local up /tmp/kl && . /tmp/kl/env
#   PROVISIO_BINARY=build/provisio PROVISIO_SOURCE_DIR=$PWD bash tests/e2e/ip_network_test.sh
#   hack/kube-local down /tmp/kl
# E2E_KEEP=1 keeps the scratch directory (operator logs) even on success;
# IP_NETWORK_TEST_ONLY=REGEX runs only the tests whose function name matches
# (and setup).
#
# Output is TAP; the exit status is non-zero if any test failed.
# Test functions run through e2e_test, which shellcheck cannot follow.
# shellcheck disable=SC2317
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
e2e_init ip-network

e2e_require_env KUBECONFIG PROVISIO_BINARY PROVISIO_SOURCE_DIR
e2e_require_cmd kubectl python3
[ -x "$PROVISIO_BINARY" ] || e2e_bail "$PROVISIO_BINARY is not an executable"

SRC=$PROVISIO_SOURCE_DIR
WORKERS=${IP_TEST_WORKERS:-4}
RUN=$(date +%s | tail -c 5)$((RANDOM % 100))
NS=e2e-ipnet-$RUN
PA=ipn-$RUN-a
PB=ipn-$RUN-b
PC=ipn-$RUN-c
# The second network: one word, so that a leftover of another run is seen at
# setup (the test refuses to start when a pool it did not make overlaps).
BLUE=blue
LABEL=provisio-e2e=ipnet-$RUN

k() { kubectl "$@"; }

# ---- checks (python, reading the cluster with kubectl) -----------------------

# check CMD ARGS...: ip_check.py (its cmd_* functions). Prints why a check
# does not hold (and exits 1), so that e2e_wait_for explains a timeout.
check() { python3 "$here/ip_check.py" "$@"; }

pool_is() { check pool "$@"; }       # NAME EXPR
claim_is() { check claim "$NS" "$@"; } # NAME EXPR
resv_is() { check resv "$@"; }       # NAME EXPR

# pool_counts_are NAME "TOTAL ALLOCATED AVAILABLE"
pool_counts_are() {
  local t a v
  read -r t a v <<<"$2"
  pool_is "$1" "(st.get('total'), st.get('allocated'), st.get('available')) == ($t, $a, $v) and cond.get('Ready', {}).get('status') == 'True'"
}

# has_reason NAME STATUS REASON
has_reason() {
  claim_is "$1" "ready.get('status') == '$2' and ready.get('reason') == '$3'"
}

# ---- the operator ---------------------------------------------------------------

# start_op NAME: a replica without leader election (admin kubeconfig,
# ephemeral ports), one log per start (NAME.N.log); waits for its caches.
start_op() {
  local name=$1 run=1 log
  while [ -e "$E2E_TMP/$name.$run.log" ]; do run=$((run + 1)); done
  log=$E2E_TMP/$name.$run.log
  e2e_bg_start "$name" "$log" "$PROVISIO_BINARY" --kubeconfig "$KUBECONFIG" --leader-elect=false \
    --metrics-bind-address=127.0.0.1:0 --health-probe-bind-address=127.0.0.1:0 \
    --max-concurrent-reconciles="$WORKERS"
  e2e_wait_for 60 "$name synced its caches" grep -q '"all informers synced"' "$log"
}

# ---- objects ------------------------------------------------------------------------

# pool NAME CIDR [NETWORK]: an IPPool of this run (labelled); without NETWORK
# the field is left out (the CRD's default).
pool() {
  local net=
  [ $# -lt 3 ] || net=$'\n'"  network: $3"
  printf 'apiVersion: provisio.dev/v1alpha1\nkind: IPPool\nmetadata:\n  name: %s\n  labels: {%s: %s}\nspec:\n  cidr: %s%s\n' \
    "$1" "${LABEL%%=*}" "${LABEL#*=}" "$2" "$net" | k apply -f - >/dev/null
}

# claim NAME POOL [ADDRESS]: an IPClaim in $NS.
claim() {
  local extra=
  [ $# -lt 3 ] || extra=$'\n'"  address: $3"
  printf 'apiVersion: provisio.dev/v1alpha1\nkind: IPClaim\nmetadata:\n  name: %s\nspec:\n  pool: %s%s\n' \
    "$1" "$2" "$extra" | k create -n "$NS" -f - >/dev/null
}

# claims_table: "name|pool|address|ready|reason" of every claim of $NS.
claims_table() {
  k get ipclaim -n "$NS" -o jsonpath='{range .items[*]}{.metadata.name}{"|"}{.spec.pool}{"|"}{.status.address}{"|"}{.status.conditions[?(@.type=="Ready")].status}{"|"}{.status.conditions[?(@.type=="Ready")].reason}{"\n"}{end}'
}

elapsed_since() {
  local now=$EPOCHREALTIME
  local us=$(((${now/./} - ${1/./}) / 1000))
  printf '%d.%02d\n' $((us / 1000)) $((us % 1000 / 10))
}

# ---- cleanup (after the operators were stopped: finalizers removed by hand) ----

cleanup() {
  local o
  for o in $(k get ipclaims -n "$NS" -o name 2>/dev/null); do
    k patch -n "$NS" "$o" --type=merge -p '{"metadata":{"finalizers":null}}'
  done
  k delete namespace "$NS" --wait=false
  for o in $(k get ippools -l "$LABEL" -o name 2>/dev/null); do
    k patch "$o" --type=merge -p '{"metadata":{"finalizers":null}}'
    k delete reservations -l "provisio.dev/pool=${o#*/}" --wait=false
  done
  k delete ippools -l "$LABEL" --wait=false
}
e2e_on_exit cleanup

# ---- 1. setup --------------------------------------------------------------------------

test_setup() {
  k apply --server-side --force-conflicts -f "$SRC/crds/" >/dev/null
  k wait --for=condition=Established --timeout=60s -f "$SRC/crds/" >/dev/null
  # Another pool on 10.88.0.0/27 (a leftover of another run) would overlap
  # ours and change the counts and conditions this test expects.
  local other
  other=$(check foreign "$PA,$PB,$PC" 10.88.0.0/27) ||
    e2e_fail "pools not of this run overlap 10.88.0.0/27:" "$other"
  k create namespace "$NS" >/dev/null
  start_op op1
  pool "$PA" 10.88.0.0/28
  pool "$PB" 10.88.0.0/27 default
  pool "$PC" 10.88.0.0/29 "$BLUE"
  e2e_wait_for 30 "$PA counts 14 0 14, Ready" pool_counts_are "$PA" "14 0 14"
  e2e_wait_for 30 "$PB counts 30 0 30, Ready" pool_counts_are "$PB" "30 0 30"
  e2e_wait_for 30 "$PC counts 6 0 6, Ready" pool_counts_are "$PC" "6 0 6"
  [ "$(k get ipp "$PA" -o jsonpath='{.spec.network}')" = default ] ||
    e2e_fail "spec.network of $PA (left out) is '$(k get ipp "$PA" -o jsonpath='{.spec.network}')', want default"
}

# ---- 2. kubectl: NETWORK column, immutability, Overlapping -----------------------

test_kubectl_network_column_immutable_overlapping() {
  local out
  out=$(k get ipp "$PA" "$PB" "$PC" -o wide)
  e2e_diag "kubectl get ipp -o wide:" "$out"
  python3 - "$out" "$PA=default" "$PB=default" "$PC=$BLUE" <<'PY' || e2e_fail "NETWORK column of kubectl get ipp -o wide"
import sys
lines = sys.argv[1].splitlines()
head = lines[0].split()
if "NETWORK" not in head:
    sys.exit("# no NETWORK column: %s" % lines[0])
i = head.index("NETWORK")
rows = {l.split()[0]: l.split() for l in lines[1:]}
for want in sys.argv[2:]:
    name, net = want.split("=")
    if rows.get(name, [None] * (i + 1))[i] != net:
        sys.exit("# %s: NETWORK %r, want %s" % (name, rows.get(name, [None] * (i + 1))[i], net))
PY
  # spec.network is immutable: the API server refuses the change.
  local rc=0
  out=$(k patch ipp "$PA" --type=merge -p '{"spec":{"network":"x"}}' 2>&1) || rc=$?
  ((rc != 0)) || e2e_fail "changing spec.network of $PA was accepted: $out"
  [[ "$out" == *"spec.network"* ]] || e2e_fail "the refusal does not mention spec.network: $out"
  e2e_diag "refused: $out"
  rc=0
  out=$(k patch ipp "$PC" --type=merge -p '{"spec":{"network":"default"}}' 2>&1) || rc=$?
  ((rc != 0)) || e2e_fail "changing spec.network of $PC to default was accepted: $out"
  [ "$(k get ipp "$PA" "$PC" -o jsonpath='{.items[*].spec.network}')" = "default $BLUE" ] ||
    e2e_fail "spec.network changed: $(k get ipp "$PA" "$PC" -o jsonpath='{.items[*].spec.network}')"
  # Overlapping: A and B name each other; C is alone in its network.
  e2e_wait_for 30 "$PA Overlapping=True OverlappingPools naming $PB" pool_is "$PA" \
    "cond.get('Overlapping', {}).get('status') == 'True' and cond['Overlapping'].get('reason') == 'OverlappingPools'
     and '$PB' in cond['Overlapping'].get('message', '') and '$PC' not in cond['Overlapping'].get('message', '')"
  e2e_wait_for 30 "$PB Overlapping=True OverlappingPools naming $PA" pool_is "$PB" \
    "cond.get('Overlapping', {}).get('status') == 'True' and cond['Overlapping'].get('reason') == 'OverlappingPools'
     and '$PA' in cond['Overlapping'].get('message', '') and '$PC' not in cond['Overlapping'].get('message', '')"
  e2e_wait_for 30 "$PC Overlapping=False NoOverlap" pool_is "$PC" \
    "cond.get('Overlapping', {}).get('status') == 'False' and cond['Overlapping'].get('reason') == 'NoOverlap'"
  e2e_diag "$PA Overlapping: $(k get ipp "$PA" -o jsonpath='{.status.conditions[?(@.type=="Overlapping")].message}')"
}

# ---- 3. one address, one holder per network -------------------------------------

test_fixed_address_across_pools_and_networks() {
  claim fa "$PA" 10.88.0.1
  e2e_wait_for 30 "fa Ready with 10.88.0.1/28" claim_is fa \
    "ready.get('status') == 'True' and st.get('address') == '10.88.0.1/28' and st.get('pool') == '$PA'"
  local uid
  uid=$(k get ipc -n "$NS" fa -o jsonpath='{.metadata.uid}')
  resv_is ipnet.default.10-88-0-1 "lab.get('provisio.dev/pool-kind') == 'IPPool' and lab.get('provisio.dev/pool') == '$PA'
    and lab.get('provisio.dev/network') == 'default' and sp['pool']['name'] == '$PA' and sp['slot'] == '10.88.0.1'
    and sp['claim'].get('namespace') == '$NS' and sp['claim'].get('name') == 'fa' and sp['claim'].get('uid') == '$uid'" ||
    e2e_fail "the Reservation of fa"
  # The same address through the other pool of the network: in use.
  claim fb "$PB" 10.88.0.1
  e2e_wait_for 30 "fb AddressInUse" has_reason fb False AddressInUse
  local msg
  msg=$(k get ipc -n "$NS" fb -o jsonpath='{.status.conditions[?(@.type=="Ready")].message}')
  e2e_diag "fb: $msg"
  [[ "$msg" == *"$NS/fa"* ]] || e2e_fail "fb's message does not name the holder $NS/fa: $msg"
  [[ "$msg" == *"IPPool $PA"* ]] || e2e_fail "fb's message does not say IPPool $PA: $msg"
  # Another network: the same address is free there.
  claim fc "$PC" 10.88.0.1
  e2e_wait_for 30 "fc (network $BLUE) Ready with 10.88.0.1/29" claim_is fc \
    "ready.get('status') == 'True' and st.get('address') == '10.88.0.1/29'"
  resv_is "ipnet.$BLUE.10-88-0-1" "lab.get('provisio.dev/pool') == '$PC' and lab.get('provisio.dev/network') == '$BLUE'
    and sp['claim'].get('name') == 'fc'" || e2e_fail "the Reservation of fc"
  e2e_wait_for 15 "$PA counts 14 1 13" pool_counts_are "$PA" "14 1 13"
  e2e_wait_for 15 "$PB counts 30 0 29" pool_counts_are "$PB" "30 0 29"
  e2e_wait_for 15 "$PC counts 6 1 5" pool_counts_are "$PC" "6 1 5"
  has_reason fb False AddressInUse || e2e_fail "fb is no longer AddressInUse"
  # The holder lets go: fb gets the address through B.
  k delete ipc -n "$NS" fa --wait=false >/dev/null
  e2e_wait_for 30 "fb Ready with 10.88.0.1/27 once fa is gone" claim_is fb \
    "ready.get('status') == 'True' and st.get('address') == '10.88.0.1/27' and st.get('pool') == '$PB'"
  e2e_wait_for 15 "ipnet.default.10-88-0-1 taken through $PB by fb" resv_is ipnet.default.10-88-0-1 \
    "lab.get('provisio.dev/pool') == '$PB' and sp['pool']['name'] == '$PB' and sp['claim'].get('name') == 'fb'"
  # 10.88.0.1 is held through B: A holds nothing, and has 13 available.
  e2e_wait_for 15 "$PA counts 14 0 13" pool_counts_are "$PA" "14 0 13"
  e2e_wait_for 15 "$PB counts 30 1 29" pool_counts_are "$PB" "30 1 29"
  e2e_wait_for 15 "invariants with fb holding 10.88.0.1 through $PB" check invariants "$NS" f "$PA" "$PB" "$PC"
  k delete ipc -n "$NS" fb fc --wait=false >/dev/null
  e2e_wait_for 30 "fa, fb, fc gone, their Reservations too" check left "$NS" "$PA" "$PB" "$PC"
  e2e_wait_for 15 "$PA counts 14 0 14" pool_counts_are "$PA" "14 0 14"
  e2e_wait_for 15 "$PB counts 30 0 30" pool_counts_are "$PB" "30 0 30"
  e2e_wait_for 15 "$PC counts 6 0 6" pool_counts_are "$PC" "6 0 6"
}

# ---- 4. the storm ------------------------------------------------------------------

# storm_claims N: a List of N claims s1..sN, odd ones on A, even ones on B.
storm_claims() {
  python3 - "$1" "$PA" "$PB" <<'PY'
import json, sys
n, pa, pb = int(sys.argv[1]), sys.argv[2], sys.argv[3]
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
    {"apiVersion": "provisio.dev/v1alpha1", "kind": "IPClaim",
     "metadata": {"name": "s%d" % i, "labels": {"e2e-batch": "s"}},
     "spec": {"pool": pa if i % 2 else pb}} for i in range(1, n + 1)]}))
PY
}

# kill_when_ready NAME N: SIGKILL replica NAME once N storm claims were seen
# Ready (a watch); the seconds since $t0 go to $E2E_TMP/killed-after.
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
  done < <(timeout 120 kubectl get ipc -n "$NS" -l e2e-batch=s -w \
    -o jsonpath='{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}' 2>/dev/null)
  return 1
}

# watch_storm: every state of the storm's claims (kubectl get -w, in
# resourceVersion order) to $E2E_TMP/storm.watch, in the background
# (storm-watch); waits for the first (empty) list to be done.
watch_storm() {
  e2e_bg_start storm-watch "$E2E_TMP/storm.watch" kubectl get -w ipc -n "$NS" -l e2e-batch=s \
    -o jsonpath='{.metadata.name} {.metadata.uid} {.status.address}{"\n"}'
  sleep 1
  e2e_bg_alive storm-watch || e2e_fail "the watch of the storm did not start"
}

test_storm_two_replicas_kill9() {
  start_op op2
  storm_claims 40 >"$E2E_TMP/storm.json"
  watch_storm
  local creator t0=$EPOCHREALTIME
  kill_when_ready op1 10 &
  local killer=$!
  k create -n "$NS" -f "$E2E_TMP/storm.json" >/dev/null &
  creator=$!
  wait "$killer" || e2e_fail "op1 was not killed"
  e2e_bg_wait op1 10 >/dev/null || e2e_fail "op1 did not die of SIGKILL"
  e2e_diag "op1 killed with SIGKILL when 10 of 40 claims were Ready, $(cat "$E2E_TMP/killed-after") s into the storm"
  start_op op1
  wait "$creator" || e2e_fail "kubectl create of the 40 claims failed"
  local got
  e2e_wait_for 120 "the storm converged: invariants 1-3" check invariants "$NS" s "$PA" "$PB"
  e2e_diag "figure: 40 claims on two overlapping pools, two replicas, one killed: converged $(elapsed_since "$t0") s"
  # Every state the watch saw: no address shown by two claims at once (all
  # storm claims are of network default).
  e2e_bg_alive storm-watch || e2e_fail "the watch of the storm ended early"
  e2e_bg_stop storm-watch >/dev/null || true
  got=$(check history /dev/null "$E2E_TMP/storm.watch" /dev/null) || e2e_fail "during the storm:" "$got"
  e2e_diag "every state of the storm's claims watched ($got): no address shown twice at once"
  # Stable: a second look a few seconds later finds the same.
  sleep 3
  got=$(check invariants "$NS" s "$PA" "$PB") || e2e_fail "invariants no longer hold:" "$got"
  local ra rb
  read -r ra rb <<<"$got"
  e2e_diag "Ready: $ra of 20 on $PA, $rb of 20 on $PB; $(k get ipp "$PA" "$PB" --no-headers | awk '{print $1, $3, $4, $5}' | tr '\n' ';')"
  ((ra <= 14)) || e2e_fail "$ra claims Ready on $PA (14 addresses)"
  ((ra + rb <= 30)) || e2e_fail "$((ra + rb)) claims Ready on $PA and $PB (30 addresses in all)"
  # Nothing waits while its pool has an address free: a claim of A waits
  # only when all 14 of A's addresses are held (through A or B), one of B
  # only when all 30 are. (B may keep a free address above A's range while
  # A's claims wait: it is not theirs to take.)
  local names held_a
  names=$(k get reservations -l "provisio.dev/pool in ($PA,$PB)" -o name | sed 's#.*/##')
  held_a=$(grep -cE '^ipnet\.default\.10-88-0-([1-9]|1[0-4])$' <<<"$names" || true)
  if ((ra < 20)) && ((held_a != 14)); then
    e2e_fail "$((20 - ra)) claims of $PA wait, but only $held_a of its 14 addresses are held"
  fi
  if ((rb < 20)) && ((ra + rb != 30)); then
    e2e_fail "$((20 - rb)) claims of $PB wait, but only $((ra + rb)) of its 30 addresses are held"
  fi
  # Every Reservation of the storm is ipnet.default.*.
  [ "$(grep -c . <<<"$names")" -eq $((ra + rb)) ] || e2e_fail "$(grep -c . <<<"$names") Reservations of $PA and $PB, $((ra + rb)) Ready claims"
  ! grep -v '^ipnet\.default\.10-88-0-' <<<"$names" >"$E2E_TMP/bad-names.txt" ||
    e2e_fail "Reservations not named ipnet.default.*:" "$(head -5 "$E2E_TMP/bad-names.txt")"
  # A's claims: addresses in .1-.14 (checked by invariants too, said here).
  claims_table | awk -F'|' -v p="$PA" '$2 == p && $4 == "True" {print $3}' | python3 -c '
import ipaddress, sys
bad = [l.strip() for l in sys.stdin if not (1 <= int(ipaddress.ip_interface(l.strip()).ip) - int(ipaddress.ip_address("10.88.0.0")) <= 14)]
sys.exit("# A addresses outside .1-.14: %s" % bad if bad else 0)' || e2e_fail "an A claim outside 10.88.0.1-14"
  # Both still Overlapping, naming each other.
  pool_is "$PA" "cond.get('Overlapping', {}).get('status') == 'True' and '$PB' in cond['Overlapping'].get('message', '')" ||
    e2e_fail "$PA no longer Overlapping naming $PB"
  pool_is "$PB" "cond.get('Overlapping', {}).get('status') == 'True' and '$PA' in cond['Overlapping'].get('message', '')" ||
    e2e_fail "$PB no longer Overlapping naming $PA"
}

# ---- 5. everything deleted -------------------------------------------------------------

test_all_deleted_leaves_nothing() {
  local t0=$EPOCHREALTIME
  k delete ipc -n "$NS" --all --wait=false >/dev/null
  e2e_wait_for 60 "no claim and no Reservation of this run left" check left "$NS" "$PA" "$PB" "$PC"
  e2e_wait_for 30 "$PA counts 14 0 14" pool_counts_are "$PA" "14 0 14"
  e2e_wait_for 30 "$PB counts 30 0 30" pool_counts_are "$PB" "30 0 30"
  e2e_wait_for 30 "$PC counts 6 0 6" pool_counts_are "$PC" "6 0 6"
  e2e_diag "figure: all claims deleted to nothing held, counts back: $(elapsed_since "$t0") s"
  k delete ipp "$PA" "$PB" "$PC" --wait=false >/dev/null
  e2e_wait_for 30 "the pools gone" sh -c "[ -z \"\$(kubectl get ipp -l $LABEL -o name)\" ]"
}

# ---- 6. the operators exit cleanly ------------------------------------------------

test_operators_exit_cleanly() {
  local rc n
  for n in op1 op2; do
    e2e_bg_alive "$n" || e2e_fail "$n is not running"
    rc=$(e2e_bg_stop "$n" TERM 15) || true
    [ "$rc" = 0 ] || e2e_fail "$n exited $rc on SIGTERM, want 0"
  done
  # No failed reconcile or write of this domain but transient API answers
  # (see ip_test.sh), in any log of this run (op1's killed run included).
  local transient='"code":-(4|5|429|500|503|504)[,}]'
  grep -hE '"level":"error".*"(ipclaim|ippool|ipreservation)"' "$E2E_TMP"/op*.log |
    grep -Ev "$transient" >"$E2E_TMP/errors.txt" || true
  [ ! -s "$E2E_TMP/errors.txt" ] || e2e_fail "error lines in the operator logs:" "$(head -5 "$E2E_TMP/errors.txt")"
  e2e_diag "warning lines of the network domain: $(cat "$E2E_TMP"/op*.log | grep -cE '"level":"warn".*"(ipclaim|ippool|ipreservation)"' || true)"
}

run() {
  [[ -z "${IP_NETWORK_TEST_ONLY:-}" || "$2" =~ ${IP_NETWORK_TEST_ONLY:-} ]] || return 0
  e2e_test "$@"
}

e2e_test "setup: CRDs, namespace, the operator, pools A (/28), B (/27, overlapping) and C (network $BLUE)" test_setup
e2e_last_ok || e2e_bail "no setup"
run "kubectl: NETWORK column, spec.network immutable, Overlapping conditions" test_kubectl_network_column_immutable_overlapping
run "one address, one holder per network: AddressInUse through the other pool, free in another network" test_fixed_address_across_pools_and_networks
run "40 claims over A and B, two replicas, one killed with SIGKILL: invariants" test_storm_two_replicas_kill9
run "all claims deleted: no Reservation, counts back; pools deleted" test_all_deleted_leaves_nothing
run "the operators exit 0 on SIGTERM, no error lines" test_operators_exit_cleanly
e2e_done
