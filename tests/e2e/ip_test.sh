#!/usr/bin/env bash
# End-to-end test of the network domain (src/reconcilers/ip/ and core/):
# IPPool and IPClaim against the real control plane, with the real operator
# binary running in the background (admin kubeconfig, ephemeral metrics and
# probe ports). Contract: API.md "Network: IPPool / IPClaim" and invariants.
#
# - the samples (config/samples) become Ready; kubectl get ipp,ipc shows the
#   counts and the addresses; the specific-address claim got its address;
# - 500 claims created at once on one pool: all Ready, all distinct, none the
#   network, broadcast or gateway address, none excluded or out of range;
#   the time to Ready is printed;
# - half of them deleted: the pool counts 250, the Reservations are freed and
#   new claims reuse the freed addresses;
# - a /30 pool: two claims, a third waits PoolExhausted, gets the address of
#   a deleted one;
# - spec.address: held by another claim (AddressInUse, then Ready when it is
#   freed), the gateway (AddressUnavailable), outside the cidr (InvalidSpec);
#   claims taking any address leave the ones other claims ask for alone;
# - an invalid cidr is refused by the API server with a clear message;
# - a claim on a missing pool is PoolNotFound until the pool is created;
# - IPv6 pools (any address and a specific one);
# - a pool deleted while claims hold addresses stays Terminating (claims keep
#   their addresses, new claims get PoolTerminating) until they are released;
# - orphaned Reservations (claim gone, or another uid) are swept;
# - kill -9 of the operator in the middle of 200 allocations: after a restart
#   every claim holds exactly one address, no address twice, counts right;
# - two operators reconciling at once (no leader election: a split brain)
#   race for the last addresses of a pool: still one address per claim, none
#   twice, status equal to the Reservations.
#
# Environment (set by the ctest fixture, see tests/CMakeLists.txt):
#   KUBECONFIG           admin kubeconfig of the control plane
#   PATH                 with the control plane's bin/ (kubectl) first
#   PROVISIO_BINARY      the built provisio
#   PROVISIO_SOURCE_DIR  the source tree (crds/, config/samples/)
# Run by hand:
#   hack/kube-local up /tmp/kl-ip
#   KUBECONFIG=/tmp/kl-ip/kubeconfig PATH=/tmp/kl-ip/bin:$PATH \
#     PROVISIO_BINARY=build/provisio PROVISIO_SOURCE_DIR=$PWD bash tests/e2e/ip_test.sh
#   hack/kube-local down /tmp/kl-ip
# IP_TEST_WORKERS sets --max-concurrent-reconciles (default 4); IP_TEST_ONLY=REGEX
# runs only the tests whose function name matches; IP_TEST_LOG_DIR keeps the
# operator logs there.
#
# Output is TAP; the exit status is non-zero if any test failed.
set -euo pipefail

: "${KUBECONFIG:?KUBECONFIG must name the kube-local admin kubeconfig}"
: "${PROVISIO_BINARY:?PROVISIO_BINARY must name the built provisio}"
: "${PROVISIO_SOURCE_DIR:?PROVISIO_SOURCE_DIR must name the source tree}"
KUBECTL=${KUBECTL:-kubectl}
WORKERS=${IP_TEST_WORKERS:-4}
command -v "$KUBECTL" >/dev/null || {
  echo "Bail out! kubectl not found (PATH should start with the kube-local bin/)"
  exit 1
}
[ -x "$PROVISIO_BINARY" ] || {
  echo "Bail out! $PROVISIO_BINARY is not an executable"
  exit 1
}
command -v python3 >/dev/null || {
  echo "Bail out! python3 is needed for the address checks"
  exit 1
}

suffix=$(date +%s | tail -c 6)$$
ns=e2e-ip-$suffix
tmp=$(mktemp -d)
# Pools this run made (cluster-scoped) are listed in $tmp/pools (tests run in
# subshells) and removed at the end.
remember_pool() { echo "$1" >>"$tmp/pools"; }
pools_made() { cat "$tmp/pools" 2>/dev/null || true; }

k() { "$KUBECTL" "$@"; }

# ---- the operator -----------------------------------------------------------

# The operator's pid and log live in files: tests run in subshells, and one
# of them restarts the operator.
op_pid() { cat "$tmp/op.pid" 2>/dev/null || true; }
op_log() { cat "$tmp/op.log" 2>/dev/null || true; }
op_alive() {
  local pid
  pid=$(op_pid)
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

start_operator() {
  local n=1 log
  while [ -e "$tmp/operator-$n.log" ]; do n=$((n + 1)); done
  log=$tmp/operator-$n.log
  "$PROVISIO_BINARY" --kubeconfig "$KUBECONFIG" \
    --metrics-bind-address=127.0.0.1:0 --health-probe-bind-address=127.0.0.1:0 \
    --max-concurrent-reconciles="$WORKERS" >"$log" 2>&1 &
  echo $! >"$tmp/op.pid"
  echo "$log" >"$tmp/op.log"
  local deadline=$((SECONDS + 60))
  until grep -q '"all informers synced"' "$log" 2>/dev/null; do
    if ! op_alive; then
      echo "# the operator exited at start:"
      sed 's/^/#   /' "$log"
      return 1
    fi
    ((SECONDS < deadline)) || {
      echo "# the operator did not sync its caches within 60 s"
      return 1
    }
    sleep 0.2
  done
}

# stop_operator [SIGNAL]: TERM (default) or KILL, and wait until it is gone.
stop_operator() {
  local sig=${1:-TERM} pid
  pid=$(op_pid)
  [ -n "$pid" ] || return 0
  kill -"$sig" "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 20))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$tmp/op.pid"
}

show_operator_log() {
  local log
  log=$(op_log)
  [ -n "$log" ] && [ -f "$log" ] || return 0
  echo "# last lines of $log:"
  tail -n 40 "$log" | sed 's/^/#   /'
}

cleanup() {
  set +e
  if [ -f "$tmp/second.pid" ]; then
    kill -TERM "$(cat "$tmp/second.pid")" 2>/dev/null
    sleep 3
    kill -KILL "$(cat "$tmp/second.pid")" 2>/dev/null
  fi
  # The operator must run for the finalizers of claims and pools to go.
  op_alive || start_operator >/dev/null 2>&1
  k delete namespace "$ns" --wait=false >/dev/null 2>&1
  for p in $(pools_made); do
    k delete ippool "$p" --wait=false >/dev/null 2>&1
  done
  local deadline=$((SECONDS + 90))
  while ((SECONDS < deadline)); do
    local left=0
    k get namespace "$ns" >/dev/null 2>&1 && left=1
    for p in $(pools_made); do
      k get ippool "$p" >/dev/null 2>&1 && left=1
    done
    ((left)) || break
    sleep 1
  done
  stop_operator
  # Whatever is still there (operator broken): let it go.
  for p in $(pools_made); do
    k patch ippool "$p" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1
  done
  for c in $(k get ipclaim -n "$ns" -o name 2>/dev/null); do
    k patch -n "$ns" "$c" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1
  done
  [ -z "${IP_TEST_LOG_DIR:-}" ] || cp "$tmp"/operator-*.log "$IP_TEST_LOG_DIR"/ 2>/dev/null
  # Sanitizer reports of the processes it started, before their logs go
  # (tests/e2e/sanitized fails the test on the printed lines).
  "${BASH_SOURCE[0]%/*}/scan-sanitizer-reports" "$tmp"
  rm -rf "$tmp"
}
trap cleanup EXIT

# ---- helpers ------------------------------------------------------------------

# fail MESSAGE...: end the current test (tests run under set -e in a subshell).
fail() {
  printf '#   %s\n' "$@" >&2
  return 1
}

# eventually SECONDS DESCRIPTION CMD...: poll CMD until it succeeds.
eventually() {
  local limit=$1 what=$2 deadline
  shift 2
  deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "not within ${limit} s: $what"
    sleep 0.3
  done
}

# pool NAME YAML-SPEC-LINES: create an IPPool (remembered for cleanup).
pool() {
  local name=$1
  shift
  remember_pool "$name"
  printf 'apiVersion: provisio.dev/v1alpha1\nkind: IPPool\nmetadata:\n  name: %s\nspec:\n%s\n' \
    "$name" "$*" | k apply -f - >/dev/null
}

# claim NAME POOL [ADDRESS]: create an IPClaim in $ns.
claim() {
  local extra=
  [ $# -lt 3 ] || extra=$'\n'"  address: $3"
  printf 'apiVersion: provisio.dev/v1alpha1\nkind: IPClaim\nmetadata:\n  name: %s\nspec:\n  pool: %s%s\n' \
    "$1" "$2" "$extra" | k apply -n "$ns" -f - >/dev/null
}

# claims_table: "name|address|ready|reason" for every claim of $ns.
claims_table() {
  k get ipclaim -n "$ns" -o jsonpath='{range .items[*]}{.metadata.name}{"|"}{.status.address}{"|"}{.status.conditions[?(@.type=="Ready")].status}{"|"}{.status.conditions[?(@.type=="Ready")].reason}{"\n"}{end}'
}

# ready_count [PREFIX]: claims of $ns (whose name starts with PREFIX) that are Ready.
ready_count() {
  claims_table | awk -F'|' -v p="${1:-}" 'index($1, p) == 1 && $3 == "True"' | wc -l
}

all_ready() { # PREFIX N
  [ "$(ready_count "$1")" -eq "$2" ]
}

# cond NAME: "status|reason|message" of the claim's Ready condition.
cond() {
  k get ipclaim -n "$ns" "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}{"|"}{.status.conditions[?(@.type=="Ready")].reason}{"|"}{.status.conditions[?(@.type=="Ready")].message}'
}

has_reason() { # NAME STATUS REASON
  local c
  c=$(cond "$1")
  [[ "$c" == "$2|$3|"* ]]
}

address_of() { k get ipclaim -n "$ns" "$1" -o jsonpath='{.status.address}'; }

pool_counts() { # NAME -> "total allocated available ready"
  k get ippool "$1" -o jsonpath='{.status.total} {.status.allocated} {.status.available} {.status.conditions[?(@.type=="Ready")].status}'
}

pool_counts_are() { [ "$(pool_counts "$1")" = "$2" ]; }

reservations_of() { # POOL -> number of Reservations
  k get reservations -l "provisio.dev/pool=$1" -o name | wc -l
}

# check_addresses POOL-JSON < "name|address|..." lines: every address is in the
# pool's allocatable set, with the pool's prefix, and distinct.
check_addresses() {
  python3 -c '
import ipaddress, json, sys
spec = json.loads(sys.argv[1])
net = ipaddress.ip_network(spec["cidr"])
lo = ipaddress.ip_address(spec.get("rangeStart", str(net.network_address)))
hi = ipaddress.ip_address(spec.get("rangeEnd", str(net.broadcast_address)))
gw = spec.get("gateway")
excl = [ipaddress.ip_network(e) for e in spec.get("exclude", [])]
seen, bad = {}, []
for line in sys.stdin:
    name, addr = line.rstrip("\n").split("|")[:2]
    iface = ipaddress.ip_interface(addr)
    a = iface.ip
    if iface.network.prefixlen != net.prefixlen: bad.append(f"{name} {addr}: prefix is not /{net.prefixlen}")
    if a not in net: bad.append(f"{name} {addr}: outside {net}")
    if net.version == 4 and net.prefixlen <= 30 and a in (net.network_address, net.broadcast_address):
        bad.append(f"{name} {addr}: network or broadcast address")
    if gw and a == ipaddress.ip_address(gw): bad.append(f"{name} {addr}: the gateway")
    if any(a in e for e in excl): bad.append(f"{name} {addr}: excluded")
    if not (lo <= a <= hi): bad.append(f"{name} {addr}: outside rangeStart..rangeEnd")
    if a in seen: bad.append(f"{name} {addr}: also held by {seen[a]}")
    seen[a] = name
for b in bad[:10]: print(b)
sys.exit(1 if bad else 0)
' "$1"
}

# make_claims PREFIX FIRST LAST POOL [HALF] > file: a multi-document file of
# claims; with HALF, those numbered up to HALF are labelled ip-test/half=first,
# the others ip-test/half=second (kubectl deletes by selector far faster than
# by 250 names, which it fetches one by one).
make_claims() {
  local i half=${5:-0} label
  for ((i = $2; i <= $3; i++)); do
    label=second
    ((i > half)) || label=first
    printf -- '---\napiVersion: provisio.dev/v1alpha1\nkind: IPClaim\nmetadata:\n  name: %s%d\n  labels:\n    ip-test/half: %s\nspec:\n  pool: %s\n' "$1" "$i" "$label" "$4"
  done
}

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }

setup() {
  k apply -f "$PROVISIO_SOURCE_DIR/crds/" >/dev/null
  k wait --for=condition=Established --timeout=60s \
    crd/ippools.provisio.dev crd/ipclaims.provisio.dev crd/reservations.provisio.dev >/dev/null
  k create namespace "$ns" >/dev/null
  start_operator
}

# ---- tests --------------------------------------------------------------------

test_samples_become_ready_with_addresses() {
  local had=0
  k get ippool demo-v4 >/dev/null 2>&1 && had=1
  k apply -f "$PROVISIO_SOURCE_DIR/config/samples/provisio_v1alpha1_ippool.yaml" >/dev/null
  ((had)) || { remember_pool demo-v4 && remember_pool demo-v6; }
  k apply -n "$ns" -f "$PROVISIO_SOURCE_DIR/config/samples/provisio_v1alpha1_ipclaim.yaml" >/dev/null
  k wait --for=condition=Ready ipclaim --all -n "$ns" --timeout=60s >/dev/null ||
    fail "the sample claims are not Ready: $(claims_table | tr '\n' ' ')"
  k wait --for=condition=Ready ippool/demo-v4 ippool/demo-v6 --timeout=60s >/dev/null

  local out
  out=$(k get ipp,ipc -n "$ns")
  echo "$out" | sed 's/^/# /'
  grep -Eq 'demo-v4 +10\.20\.0\.0/24 +224 ' <<<"$out" || fail "demo-v4 does not show CIDR and TOTAL 224"
  grep -Eq 'web-fixed +demo-v4 +10\.20\.0\.50/24 +True' <<<"$out" || fail "web-fixed has not 10.20.0.50/24"
  grep -Eq 'web-a +demo-v4 +10\.20\.0\.[0-9]+/24 +True' <<<"$out" || fail "web-a shows no address"
  grep -Eq 'web-v6 +demo-v6 +fd00:10::[0-9a-f]+/64 +True' <<<"$out" || fail "web-v6 shows no IPv6 address"

  claims_table | grep -E '^web-(a|fixed)\|' |
    check_addresses '{"cidr":"10.20.0.0/24","gateway":"10.20.0.1","rangeStart":"10.20.0.10","rangeEnd":"10.20.0.250","exclude":["10.20.0.53/32","10.20.0.96/28"]}' ||
    fail "a demo-v4 address is not allocatable"
  claims_table | grep -E '^web-v6\|' |
    check_addresses '{"cidr":"fd00:10::/64","gateway":"fd00:10::1","rangeStart":"fd00:10::100","rangeEnd":"fd00:10::1ff"}' ||
    fail "the demo-v6 address is not allocatable"

  # Gateway and routes come from the pool; the finalizer is on.
  [ "$(k get ipclaim -n "$ns" web-a -o jsonpath='{.status.gateway} {.status.routes[1].dst} {.status.pool}')" = \
    "10.20.0.1 192.168.100.0/24 demo-v4" ] || fail "web-a status lacks gateway, routes or pool"
  [ "$(k get ipclaim -n "$ns" web-a -o jsonpath='{.metadata.finalizers[0]}')" = provisio.dev/finalizer ] ||
    fail "web-a has no finalizer"
  [ "$(k get ipclaim -n "$ns" web-a -o jsonpath='{.status.observedGeneration}')" = 1 ] ||
    fail "web-a status has no observedGeneration"
  eventually 10 "an Allocated event for web-fixed" \
    bash -c "$KUBECTL get events -n $ns --field-selector involvedObject.name=web-fixed,reason=Allocated -o name | grep -q ."
}

test_500_claims_ready_distinct_and_allocatable() {
  local p=ipb-$suffix
  local spec='{"cidr":"10.40.0.0/22","gateway":"10.40.0.1","rangeEnd":"10.40.2.10","exclude":["10.40.0.128/28","10.40.1.7/32"]}'
  pool "$p" '  cidr: 10.40.0.0/22
  gateway: 10.40.0.1
  rangeEnd: 10.40.2.10
  exclude: [10.40.0.128/28, 10.40.1.7]'
  # 10.40.0.0 .. 10.40.2.10 is 523 addresses, less network, gateway, 16 + 1 excluded.
  eventually 60 "pool $p counts 504 0 504 True" pool_counts_are "$p" "504 0 504 True"

  make_claims b 1 500 "$p" 250 >"$tmp/bulk.yaml"
  local t0 t1 t2
  t0=$(now)
  k create -n "$ns" -f "$tmp/bulk.yaml" >/dev/null
  t1=$(now)
  eventually 300 "500 claims Ready" all_ready b 500
  t2=$(now)
  echo "# 500 claims: kubectl create took $(elapsed "$t0" "$t1") s; all Ready $(elapsed "$t0" "$t2") s after the first create ($(elapsed "$t1" "$t2") s after the last; $WORKERS workers)"

  claims_table | grep '^b' >"$tmp/b.txt"
  [ "$(wc -l <"$tmp/b.txt")" -eq 500 ] || fail "expected 500 claims"
  check_addresses "$spec" <"$tmp/b.txt" || fail "addresses are not distinct and allocatable"
  eventually 60 "pool $p counts 504 500 4 True" pool_counts_are "$p" "504 500 4 True"
  [ "$(reservations_of "$p")" -eq 500 ] || fail "$(reservations_of "$p") Reservations, expected 500"
}

test_delete_half_frees_counts_and_addresses_are_reused() {
  local p=ipb-$suffix
  local spec='{"cidr":"10.40.0.0/22","gateway":"10.40.0.1","rangeEnd":"10.40.2.10","exclude":["10.40.0.128/28","10.40.1.7/32"]}'
  [ -f "$tmp/b.txt" ] || fail "needs the 500 claims of the previous test"
  grep -E '^b([1-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|250)\|' "$tmp/b.txt" | cut -d'|' -f2 |
    sed 's#/.*##' | sort >"$tmp/freed.txt"
  [ "$(wc -l <"$tmp/freed.txt")" -eq 250 ] || fail "expected 250 addresses to free"
  local t0 t1 t2
  t0=$(now)
  k delete ipclaim -n "$ns" --wait=false -l ip-test/half=first >/dev/null
  t1=$(now)
  eventually 120 "250 claims gone" bash -c "[ \$($KUBECTL get ipclaim -n $ns -o name | grep -c '^ipclaim.provisio.dev/b') -eq 250 ]"
  t2=$(now)
  echo "# 250 claims deleted: kubectl delete took $(elapsed "$t0" "$t1") s; all gone $(elapsed "$t1" "$t2") s later"
  eventually 60 "pool $p counts 504 250 254 True" pool_counts_are "$p" "504 250 254 True"
  [ "$(reservations_of "$p")" -eq 250 ] || fail "$(reservations_of "$p") Reservations, expected 250"

  make_claims n 1 250 "$p" >"$tmp/new.yaml"
  k create -n "$ns" -f "$tmp/new.yaml" >/dev/null
  eventually 180 "250 new claims Ready" all_ready n 250
  claims_table | grep -E '^(b|n)[0-9]+\|' >"$tmp/live.txt"
  [ "$(wc -l <"$tmp/live.txt")" -eq 500 ] || fail "expected 500 live claims"
  check_addresses "$spec" <"$tmp/live.txt" || fail "addresses are not distinct and allocatable"
  # Only 254 addresses were free, 250 of them just released: most are reused.
  local reused
  reused=$(grep '^n' "$tmp/live.txt" | cut -d'|' -f2 | sed 's#/.*##' | sort | comm -12 - "$tmp/freed.txt" | wc -l)
  echo "# $reused of the 250 new claims got a freed address"
  ((reused >= 246)) || fail "only $reused new claims reuse a freed address (at least 246 must)"
  eventually 60 "pool $p counts 504 500 4 True" pool_counts_are "$p" "504 500 4 True"
}

test_exhausted_pool_waits_and_gets_a_freed_address() {
  local p=ipx-$suffix
  pool "$p" '  cidr: 10.41.0.0/30'
  claim x1 "$p"
  claim x2 "$p"
  eventually 60 "x1 and x2 Ready" all_ready x 2
  claims_table | grep '^x' | check_addresses '{"cidr":"10.41.0.0/30"}' || fail "bad /30 addresses"
  claim x3 "$p"
  eventually 60 "x3 PoolExhausted" has_reason x3 False PoolExhausted
  local c
  c=$(cond x3)
  [[ "$c" == *"IPPool $p has no free address"* ]] || fail "x3 message: $c"
  eventually 10 "pool $p counts 2 2 0 True" pool_counts_are "$p" "2 2 0 True"
  local freed
  freed=$(address_of x1)
  k delete ipclaim -n "$ns" x1 --wait=false >/dev/null
  eventually 60 "x3 Ready after x1 is deleted" has_reason x3 True Allocated
  [ "$(address_of x3)" = "$freed" ] || fail "x3 got $(address_of x3), expected $freed"
}

test_fixed_address_is_left_to_the_claim_that_asks_for_it() {
  # With the operator stopped, a claim asking for 10.50.0.6 and five taking
  # any address are created; on start all are reconciled at once, in any
  # order. A /29 has six addresses: the dynamic claims must leave .6 alone.
  local p=ipf-$suffix
  pool "$p" '  cidr: 10.50.0.0/29'
  eventually 60 "pool $p Ready" pool_counts_are "$p" "6 0 6 True"
  stop_operator TERM
  {
    printf 'apiVersion: provisio.dev/v1alpha1\nkind: IPClaim\nmetadata:\n  name: f-fixed\nspec:\n  pool: %s\n  address: 10.50.0.6\n' "$p"
    make_claims f-any 1 5 "$p"
  } | k create -n "$ns" -f - >/dev/null
  start_operator
  eventually 60 "six claims Ready" all_ready f- 6
  [ "$(address_of f-fixed)" = 10.50.0.6/29 ] || fail "f-fixed got $(address_of f-fixed)"
  claims_table | grep '^f-' | check_addresses '{"cidr":"10.50.0.0/29"}' || fail "bad addresses"
}

test_specific_address_in_use_unavailable_and_invalid() {
  local p=ips-$suffix
  pool "$p" '  cidr: 10.43.0.0/24
  gateway: 10.43.0.1
  exclude: [10.43.0.64/26]'
  claim s-holder "$p" 10.43.0.10
  eventually 60 "s-holder Ready" has_reason s-holder True Allocated
  [ "$(address_of s-holder)" = 10.43.0.10/24 ] || fail "s-holder got $(address_of s-holder)"

  claim s-second "$p" 10.43.0.10
  eventually 60 "s-second AddressInUse" has_reason s-second False AddressInUse
  [[ "$(cond s-second)" == *"held by IPClaim $ns/s-holder"* ]] || fail "message: $(cond s-second)"

  claim s-gw "$p" 10.43.0.1
  eventually 60 "s-gw AddressUnavailable" has_reason s-gw False AddressUnavailable
  [[ "$(cond s-gw)" == *"gateway"* ]] || fail "message does not say gateway: $(cond s-gw)"
  claim s-excl "$p" 10.43.0.70
  eventually 60 "s-excl AddressUnavailable" has_reason s-excl False AddressUnavailable
  [[ "$(cond s-excl)" == *"exclude"* ]] || fail "message does not say excluded: $(cond s-excl)"
  claim s-out "$p" 10.44.0.5
  eventually 60 "s-out InvalidSpec" has_reason s-out False InvalidSpec
  [[ "$(cond s-out)" == *"10.44.0.5"* ]] || fail "message does not name the address: $(cond s-out)"

  k delete ipclaim -n "$ns" s-holder --wait=false >/dev/null
  eventually 60 "s-second Ready once s-holder is gone" has_reason s-second True Allocated
  [ "$(address_of s-second)" = 10.43.0.10/24 ] || fail "s-second got $(address_of s-second)"
}

test_invalid_cidr_is_refused_by_the_api_server() {
  local out rc=0
  out=$(printf 'apiVersion: provisio.dev/v1alpha1\nkind: IPPool\nmetadata:\n  name: ipbad-%s\nspec:\n  cidr: 10.42.0.1/16\n' \
    "$suffix" | k apply -f - 2>&1) || rc=$?
  ((rc != 0)) || fail "a pool with cidr 10.42.0.1/16 was accepted"
  [[ "$out" == *"not in canonical form"* && "$out" == *"10.42.0.0/16"* ]] ||
    fail "unclear message: $out"
  rc=0
  out=$(printf 'apiVersion: provisio.dev/v1alpha1\nkind: IPPool\nmetadata:\n  name: ipbad-%s\nspec:\n  cidr: 300.1.1.0/24\n' \
    "$suffix" | k apply -f - 2>&1) || rc=$?
  ((rc != 0)) || fail "a pool with cidr 300.1.1.0/24 was accepted"
  [[ "$out" == *"is not a CIDR"* ]] || fail "unclear message: $out"
  ! k get ippool "ipbad-$suffix" >/dev/null 2>&1 || fail "the invalid pool exists"
}

test_claim_on_missing_pool_waits_until_it_is_created() {
  local p=ipl-$suffix
  claim m1 "$p"
  eventually 60 "m1 PoolNotFound" has_reason m1 False PoolNotFound
  [[ "$(cond m1)" == *"IPPool $p does not exist"* ]] || fail "message: $(cond m1)"
  pool "$p" '  cidr: 10.45.0.0/29'
  eventually 60 "m1 Ready once the pool exists" has_reason m1 True Allocated
  claims_table | grep '^m1|' | check_addresses '{"cidr":"10.45.0.0/29"}' || fail "bad address"
}

test_ipv6_pool_any_and_specific_address() {
  local p=ip6-$suffix
  pool "$p" '  cidr: fd00:45::/64
  gateway: fd00:45::1
  rangeStart: fd00:45::10
  rangeEnd: fd00:45::2f
  exclude: [fd00:45::20/125]'
  # v6s first: once it is cached, dynamic claims leave fd00:45::2a alone;
  # created after them it could find the address taken (AddressInUse).
  claim v6s "$p" fd00:45::2a
  claim v6a "$p"
  claim v6b "$p"
  eventually 60 "three IPv6 claims Ready" all_ready v6 3
  [ "$(address_of v6s)" = fd00:45::2a/64 ] || fail "v6s got $(address_of v6s)"
  claims_table | grep '^v6' |
    check_addresses '{"cidr":"fd00:45::/64","gateway":"fd00:45::1","rangeStart":"fd00:45::10","rangeEnd":"fd00:45::2f","exclude":["fd00:45::20/125"]}' ||
    fail "bad IPv6 addresses"
  # fd00:45::10 .. ::2f is 32 addresses, less 8 excluded (the gateway is outside).
  eventually 10 "pool $p counts 24 3 21 True" pool_counts_are "$p" "24 3 21 True"
  [ "$(k get ipclaim -n "$ns" v6a -o jsonpath='{.status.gateway}')" = fd00:45::1 ] || fail "no gateway"
}

test_pool_deleted_while_held_waits_for_its_claims() {
  local p=ipd-$suffix
  pool "$p" '  cidr: 10.46.0.0/28'
  claim d1 "$p"
  claim d2 "$p"
  eventually 60 "d1 and d2 Ready" all_ready d 2
  local a1
  a1=$(address_of d1)
  k delete ippool "$p" --wait=false >/dev/null
  pool_terminating() {
    local c
    c=$(k get ippool "$p" -o jsonpath='{.metadata.deletionTimestamp}|{.status.conditions[?(@.type=="Ready")].reason}|{.status.conditions[?(@.type=="Ready")].message}')
    [[ "$c" == ?*"|Terminating|2 addresses are still held by claims: "* &&
      "$c" == *"$ns/d1 "* && "$c" == *"$ns/d2 "* ]]
  }
  eventually 60 "pool $p Terminating, naming its holders" pool_terminating
  # The holders keep their addresses; a new claim gets nothing.
  has_reason d1 True Allocated || fail "d1 lost Ready: $(cond d1)"
  [ "$(address_of d1)" = "$a1" ] || fail "d1 address changed"
  claim d3 "$p"
  eventually 60 "d3 PoolTerminating" has_reason d3 False PoolTerminating
  k delete ipclaim -n "$ns" d1 d2 --wait=false >/dev/null
  eventually 60 "pool $p gone once its claims released" bash -c "! $KUBECTL get ippool $p"
  eventually 60 "d3 PoolNotFound after the pool is gone" has_reason d3 False PoolNotFound
  [ "$(reservations_of "$p")" -eq 0 ] || fail "Reservations of $p left"
}

test_orphaned_reservations_are_swept() {
  local p=ipo-$suffix
  pool "$p" '  cidr: 10.47.0.0/24'
  # A fixed address: a hashed one could be .200 or .201, taken below.
  claim o1 "$p" 10.47.0.10
  eventually 60 "o1 Ready" has_reason o1 True Allocated
  local uid
  uid=$(k get ipclaim -n "$ns" o1 -o jsonpath='{.metadata.uid}')
  # A Reservation of a claim that never existed, and one naming o1 with a
  # stale uid (o1 deleted and recreated): both orphans.
  local r
  for r in "10.47.0.200 ghost 7d3c1c8e-0000-4000-8000-000000000001" \
    "10.47.0.201 o1 7d3c1c8e-0000-4000-8000-000000000002"; do
    set -- $r
    printf 'apiVersion: provisio.dev/v1alpha1\nkind: Reservation\nmetadata:\n  name: ipnet.default.%s\n  labels:\n    provisio.dev/pool-kind: IPPool\n    provisio.dev/pool: %s\n    provisio.dev/network: default\nspec:\n  pool: {kind: IPPool, name: %s}\n  network: default\n  slot: %s\n  claim: {kind: IPClaim, namespace: %s, name: %s, uid: %s}\n' \
      "${1//./-}" "$p" "$p" "$1" "$ns" "$2" "$3" | k create -f - >/dev/null
  done
  eventually 60 "orphaned Reservations swept" bash -c "[ \$($KUBECTL get reservations -l provisio.dev/pool=$p -o name | wc -l) -eq 1 ]"
  # What is left is o1's own.
  [ "$(k get reservations -l "provisio.dev/pool=$p" -o jsonpath='{.items[0].spec.claim.uid}')" = "$uid" ] ||
    fail "o1's own Reservation was swept"
  has_reason o1 True Allocated || fail "o1 lost its address"
  eventually 10 "pool $p counts 1 allocated" bash -c "[ \"\$($KUBECTL get ippool $p -o jsonpath='{.status.allocated}')\" = 1 ]"
}

# status_is_reservations PREFIX POOL: the claims of $ns named PREFIX* and
# the Reservations of POOL name the same claim|address pairs (written to
# $tmp/PREFIX-status.txt and $tmp/PREFIX-resv.txt).
status_is_reservations() {
  local pre=$1 p=$2
  k get reservations -l "provisio.dev/pool=$p" -o jsonpath='{range .items[*]}{.spec.claim.name}{"|"}{.spec.slot}{"\n"}{end}' |
    sort >"$tmp/$pre-resv.txt"
  claims_table | grep "^$pre" | cut -d'|' -f1,2 | sed 's#/[0-9]*$##' | sort >"$tmp/$pre-status.txt"
  diff "$tmp/$pre-status.txt" "$tmp/$pre-resv.txt" >"$tmp/$pre-diff.txt"
}

test_kill_9_during_allocation_keeps_one_address_per_claim() {
  local p=ipk-$suffix
  pool "$p" '  cidr: 10.48.0.0/23'
  eventually 60 "pool $p Ready" pool_counts_are "$p" "510 0 510 True"
  make_claims k 1 200 "$p" >"$tmp/kill.yaml"
  k create -n "$ns" -f "$tmp/kill.yaml" >/dev/null &
  local creator=$!
  # Kill the operator while claims are being allocated, twice.
  eventually 60 "some claims Ready" bash -c "[ \$($KUBECTL get ipclaim -n $ns -o name | grep -c '/k') -ge 20 ]"
  stop_operator KILL
  start_operator
  sleep 1
  stop_operator KILL
  wait "$creator"
  start_operator
  eventually 180 "200 claims Ready after the restarts" all_ready k 200
  claims_table | grep '^k' >"$tmp/k.txt"
  check_addresses '{"cidr":"10.48.0.0/23"}' <"$tmp/k.txt" || fail "addresses not distinct"
  # Exactly one Reservation per claim, and it is the one in status.
  eventually 60 "200 Reservations of $p" bash -c "[ \$($KUBECTL get reservations -l provisio.dev/pool=$p -o name | wc -l) -eq 200 ]"
  eventually 60 "status and Reservations agree" status_is_reservations k "$p" ||
    fail "status and Reservations disagree:" "$(head -5 "$tmp/k-diff.txt")"
  eventually 60 "pool $p counts 510 200 310 True" pool_counts_are "$p" "510 200 310 True"
}

test_two_replicas_at_once_never_share_an_address() {
  # A split brain: a second operator without leader election reconciles the
  # same claims at the same time. Only the API server decides who holds what.
  local p=ipr-$suffix
  pool "$p" '  cidr: 10.49.0.0/24'
  eventually 60 "pool $p Ready" pool_counts_are "$p" "254 0 254 True"
  local log2=$tmp/operator-second.log
  "$PROVISIO_BINARY" --kubeconfig "$KUBECONFIG" \
    --metrics-bind-address=127.0.0.1:0 --health-probe-bind-address=127.0.0.1:0 \
    --max-concurrent-reconciles="$WORKERS" >"$log2" 2>&1 &
  local second=$!
  echo "$second" >"$tmp/second.pid" # stopped by cleanup if this test fails
  eventually 60 "the second operator synced" grep -q '"all informers synced"' "$log2"
  # 240 claims for 254 addresses: the replicas race for the last ones.
  make_claims r 1 240 "$p" >"$tmp/race.yaml"
  k create -n "$ns" -f "$tmp/race.yaml" >/dev/null
  eventually 180 "240 claims Ready" all_ready r 240
  kill -TERM "$second" 2>/dev/null || true
  wait "$second" 2>/dev/null || true
  rm -f "$tmp/second.pid"
  claims_table | grep '^r' >"$tmp/r.txt"
  check_addresses '{"cidr":"10.49.0.0/24"}' <"$tmp/r.txt" || fail "addresses not distinct"
  eventually 60 "240 Reservations of $p" bash -c "[ \$($KUBECTL get reservations -l provisio.dev/pool=$p -o name | wc -l) -eq 240 ]"
  eventually 60 "status and Reservations agree" status_is_reservations r "$p" ||
    fail "status and Reservations disagree:" "$(head -5 "$tmp/r-diff.txt")"
  eventually 60 "pool $p counts 254 240 14 True" pool_counts_are "$p" "254 240 14 True"
}

test_operator_stops_cleanly_without_sanitizer_reports() {
  local log
  log=$(op_log)
  op_alive || fail "the operator is not running"
  stop_operator TERM
  grep -q '"shutdown complete"' "$log" || fail "no clean shutdown in $log:" "$(tail -3 "$log")"
  # A sanitizer build reports leaks and errors at exit.
  ! grep -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$log" >"$tmp/san.txt" ||
    fail "sanitizer report:" "$(head -20 "$tmp/san.txt")"
  # No failed reconcile or write of this domain (other layers may log a
  # throttled watch on a loaded machine; that is not ours to judge here).
  # A transient answer of an overloaded API server (transport failure,
  # client timeout, 429, 500, 503, 504) is retried with backoff and is
  # counted, not judged.
  local transient='"code":-(4|5|429|500|503|504)[,}]'
  grep -E '"level":"error".*"(ipclaim|ippool|ipreservation)"' "$log" >"$tmp/err-all.txt" || true
  ! grep -Ev "$transient" "$tmp/err-all.txt" >"$tmp/err.txt" ||
    fail "error lines in $log:" "$(head -5 "$tmp/err.txt")"
  echo "# transient API errors retried by the operator: $(grep -cE "$transient" "$tmp/err-all.txt")"
}

# ---------------------------------------------------------------------------

setup
all_tests=(
  test_samples_become_ready_with_addresses
  test_500_claims_ready_distinct_and_allocatable
  test_delete_half_frees_counts_and_addresses_are_reused
  test_exhausted_pool_waits_and_gets_a_freed_address
  test_specific_address_in_use_unavailable_and_invalid
  test_fixed_address_is_left_to_the_claim_that_asks_for_it
  test_invalid_cidr_is_refused_by_the_api_server
  test_claim_on_missing_pool_waits_until_it_is_created
  test_ipv6_pool_any_and_specific_address
  test_pool_deleted_while_held_waits_for_its_claims
  test_orphaned_reservations_are_swept
  test_kill_9_during_allocation_keeps_one_address_per_claim
  test_two_replicas_at_once_never_share_an_address
  test_operator_stops_cleanly_without_sanitizer_reports
)
# IP_TEST_ONLY=REGEX runs only the matching tests (by hand; tests 3 needs 2).
tests=()
for t in "${all_tests[@]}"; do
  [[ -z "${IP_TEST_ONLY:-}" || "$t" =~ ${IP_TEST_ONLY:-} ]] && tests+=("$t")
done
echo "1..${#tests[@]}"
failed=0
i=0
for t in "${tests[@]}"; do
  i=$((i + 1))
  start=$SECONDS
  set +e
  (
    set -e
    "$t"
  )
  rc=$?
  set -e
  if ((rc == 0)); then
    echo "ok $i - ${t#test_} ($((SECONDS - start)) s)"
  else
    echo "not ok $i - ${t#test_} ($((SECONDS - start)) s)"
    echo "# claims not Ready (name|address|ready|reason), first 20:"
    { claims_table 2>&1 | grep -v '|True|' | head -20 | sed 's/^/#   /'; } || true
    { k get ippools 2>&1 | sed 's/^/#   /'; } || true
    show_operator_log
    failed=$((failed + 1))
  fi
done
if ((failed)); then
  echo "# $failed of ${#tests[@]} failed"
  exit 1
fi
