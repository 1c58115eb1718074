#!/usr/bin/env bash
# End-to-end test of provisio-cni (src/cni, API.md "CNI: provisio-cni"): the
# plugin binary invoked directly, as a runtime does (CNI_* environment, the
# network configuration on stdin), against the real control plane, with the
# operator running (so claims turn Ready). Every command:
#
#  1. VERSION lists the versions; bad environment, not JSON and invalid
#     configuration are CNI errors (codes 4, 6, 7) on stdout, exit 1;
#  2. ADD for a Pod: one IPClaim named from (network, container, ifname) in
#     the Pod's namespace, labelled (node, network, container), owned by the
#     Pod; the result holds its address, gateway and routes;
#  3. a retried ADD gives the same address and makes no second claim;
#  4. CHECK passes with the ADD's result as prevResult, fails with another
#     address (101) and for an attachment without a claim (3);
#  5. DEL removes the claim; a second DEL succeeds too;
#  6. pools one per family: an IPv4 and an IPv6 address in one result;
#  7. STATUS: 0 for a pool with room; 50 for an exhausted pool, a missing
#     pool, an unreachable API server;
#  8. ADD on an exhausted pool fails at once (11) and leaves no claim; on a
#     missing pool (7); with an unreachable API server (11);
#  9. GC deletes this node's claims of the network whose attachment is not
#     in cni.dev/valid-attachments, and only those;
# 10. 100 ADDs from parallel processes on one pool: all succeed, 100
#     distinct addresses;
# 11. a Pod deleted without DEL: kube-controller-manager's garbage collector
#     deletes its claim (ownerReference) and the address is freed;
# 12. in a real network namespace (root): cnitool runs Debian's bridge
#     plugin, which delegates IPAM to provisio-cni; `ip -n NS addr` shows
#     the claim's address; cnitool del removes the claim;
# 13. with the kubeconfig a node agent writes (--cni-kubeconfig: a token of
#     config/cni's ServiceAccount), ADD, CHECK, STATUS and DEL work within
#     config/cni's RBAC;
# 14. ADD times out (11, the claim removed) when the operator is stopped.
#
# Environment (set by the ctest fixture, see tests/CMakeLists.txt):
#   KUBECONFIG, PATH (kubectl first), PROVISIO_BINARY (provisio-cni is
#   beside it, or PROVISIO_CNI_BINARY), PROVISIO_SOURCE_DIR
# Run by hand:
#   hack/kube-local up /tmp/kl
#   KUBECONFIG=/tmp/kl/kubeconfig PATH=/tmp/kl/bin:$PATH PROVISIO_BINARY=build/provisio \
#     PROVISIO_SOURCE_DIR=$PWD bash tests/e2e/cni_test.sh
#
# Output is TAP; the exit status is non-zero if any test failed.
# Test functions run through e2e_test, which shellcheck cannot follow.
# shellcheck disable=SC2317
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init cni

e2e_require_env KUBECONFIG PROVISIO_BINARY PROVISIO_SOURCE_DIR
e2e_require_cmd kubectl python3
CNI_BIN=${PROVISIO_CNI_BINARY:-$(dirname "$PROVISIO_BINARY")/provisio-cni}
[ -x "$CNI_BIN" ] || e2e_bail "$CNI_BIN is not an executable"

k() { kubectl "$@"; }
sfx=$(date +%s | tail -c 5)$$
ns=e2e-cni-$sfx
NET=e2enet-$sfx
P4=cni4-$sfx
P6=cni6-$sfx
PX=cnix-$sfx
PN=cnin-$sfx
NODE=$(hostname | tr '[:upper:]' '[:lower:]')
OUT=$E2E_TMP/out
mkdir -p "$OUT"

fail() { e2e_fail "$@"; }

# conf POOLS-JSON-MEMBER [EXTRA-TOP-LEVEL-MEMBERS] [IPAM-EXTRA]: a network
# configuration as a delegating plugin passes it.
conf() {
  printf '{"cniVersion":"1.1.0","name":"%s","type":"bridge","ipam":{"type":"provisio-cni",%s,"kubeconfig":"%s"%s}%s}' \
    "$NET" "$1" "$KUBECONFIG" "${3:-}" "${2:-}"
}

# cni CMD CID IFNAME POD CONF: run the plugin; stdout to $OUT/last.json,
# stderr to $OUT/last.err; prints nothing, returns its exit status. POD is
# "name" of a Pod of $ns (its uid is looked up) or "-" for none.
cni() {
  local cmd=$1 cid=$2 ifn=$3 pod=$4 cfg=$5 args="IgnoreUnknown=1;K8S_POD_NAMESPACE=$ns"
  if [ "$pod" != - ]; then
    args+=";K8S_POD_NAME=$pod;K8S_POD_UID=$(pod_uid "$pod")"
  fi
  CNI_COMMAND=$cmd CNI_CONTAINERID=$cid CNI_IFNAME=$ifn CNI_NETNS=/var/run/netns/none \
    CNI_PATH=/opt/cni/bin CNI_ARGS=$args "$CNI_BIN" <<<"$cfg" >"$OUT/last.json" 2>"$OUT/last.err"
}

# jget EXPR [FILE]: a Python expression over the JSON `j` of FILE ($OUT/last.json).
jget() {
  python3 -c 'import json, sys
j = json.load(open(sys.argv[2]))
v = eval(sys.argv[1])
print(v if not isinstance(v, (dict, list)) else json.dumps(v, sort_keys=True))' "$1" "${2:-$OUT/last.json}"
}

# expect_error CODE TEXT: the last run printed an error object with CODE
# whose msg contains TEXT.
expect_error() {
  local code msg
  code=$(jget 'j["code"]') || fail "no error object on stdout: $(cat "$OUT/last.json")"
  msg=$(jget 'j["msg"]')
  [ "$code" = "$1" ] || fail "code $code, expected $1: $msg"
  [[ "$msg" == *"$2"* ]] || fail "message does not say \"$2\": $msg"
  echo "#   code $code: $msg"
}

pod() { # NAME: a Pod of $ns on node-a (it never runs: no kubelet)
  printf 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\nspec:\n  nodeName: node-a\n  containers: [{name: c, image: pause}]\n' "$1" |
    k apply -n "$ns" -f - >/dev/null
}
pod_uid() { k get pod -n "$ns" "$1" -o jsonpath='{.metadata.uid}'; }
claim_count() { k get ipclaim -n "$ns" -o name | wc -l; }
claim_gone() { ! k get ipclaim -n "$ns" "$1" >/dev/null 2>&1; }

start_operator() {
  e2e_bg_start operator "$E2E_TMP/operator.log" "$PROVISIO_BINARY" --kubeconfig "$KUBECONFIG" \
    --metrics-bind-address=127.0.0.1:0 --health-probe-bind-address=127.0.0.1:0
  e2e_wait_for 60 "the operator synced" grep -q '"all informers synced"' "$E2E_TMP/operator.log"
}

cleanup() {
  k delete namespace "$ns" --wait=false
  k delete ippool "$P4" "$P6" "$PX" "$PN" --wait=false
  for c in $(k get ipclaim -n "$ns" -o name); do
    k patch -n "$ns" "$c" --type=merge -p '{"metadata":{"finalizers":null}}'
  done
  for p in "$P4" "$P6" "$PX" "$PN"; do
    k patch ippool "$p" --type=merge -p '{"metadata":{"finalizers":null}}'
  done
  ip netns del "cni-$sfx"
  ip link del "pv$sfx"
}
e2e_on_exit cleanup

setup() {
  k apply -f "$PROVISIO_SOURCE_DIR/crds/" >/dev/null
  k wait --for=condition=Established --timeout=60s crd/ippools.provisio.dev \
    crd/ipclaims.provisio.dev crd/reservations.provisio.dev >/dev/null
  k create namespace "$ns" >/dev/null
  k apply -f - >/dev/null <<YAML
apiVersion: provisio.dev/v1alpha1
kind: IPPool
metadata: {name: $P4}
spec:
  cidr: 10.60.0.0/24
  gateway: 10.60.0.1
  routes: [{dst: 0.0.0.0/0, gw: 10.60.0.1}, {dst: 10.70.0.0/16}]
---
apiVersion: provisio.dev/v1alpha1
kind: IPPool
metadata: {name: $P6}
spec: {cidr: "fd00:60::/64", gateway: "fd00:60::1", rangeStart: "fd00:60::10", rangeEnd: "fd00:60::ff"}
---
apiVersion: provisio.dev/v1alpha1
kind: IPPool
metadata: {name: $PX}
spec: {cidr: 10.61.0.0/30}
---
apiVersion: provisio.dev/v1alpha1
kind: IPPool
metadata: {name: $PN}
spec: {cidr: 10.199.0.0/24, gateway: 10.199.0.1}
YAML
  start_operator
  k wait --for=condition=Ready --timeout=60s "ippool/$P4" "ippool/$P6" "ippool/$PX" "ippool/$PN" >/dev/null
}

# ---- tests --------------------------------------------------------------------

test_version_and_invalid_input_are_cni_answers() {
  CNI_COMMAND=VERSION "$CNI_BIN" <<<'{"cniVersion":"1.1.0"}' >"$OUT/last.json"
  [ "$(jget 'j["supportedVersions"]')" = '["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]' ] ||
    fail "VERSION: $(cat "$OUT/last.json")"
  local rc=0
  env -u CNI_COMMAND "$CNI_BIN" </dev/null >"$OUT/last.json" 2>/dev/null || rc=$?
  ((rc == 1)) || fail "no CNI_COMMAND: exit $rc"
  expect_error 4 "CNI_COMMAND is not set"
  rc=0
  cni ADD c-bad eth0 - 'not json' || rc=$?
  ((rc == 1)) || fail "not JSON: exit $rc"
  expect_error 6 "not JSON"
  rc=0
  cni ADD c-bad eth0 - '{"cniVersion":"1.1.0","name":"n","ipam":{"type":"provisio-cni"}}' || rc=$?
  ((rc == 1)) || fail "no pool: exit $rc"
  expect_error 7 "ipam.pool is missing"
  rc=0
  cni ADD c-bad eth0 - "$(conf '"pool":"x"' '' ',"kubeconfig":"/nonexistent"')" || rc=$?
  expect_error 7 "/nonexistent"
}

test_add_creates_an_owned_labelled_claim_and_prints_the_result() {
  pod p1
  cni ADD c-one eth0 p1 "$(conf "\"pool\":\"$P4\"")" || fail "ADD failed: $(cat "$OUT/last.json")"
  sed 's/^/#   /' "$OUT/last.json"
  cp "$OUT/last.json" "$OUT/add1.json"
  local addr name
  addr=$(jget 'j["ips"][0]["address"]')
  [[ "$addr" == 10.60.0.*/24 ]] || fail "address $addr"
  [ "$(jget 'j["ips"][0]["gateway"]')" = 10.60.0.1 ] || fail "no gateway"
  [ "$(jget 'j["routes"]')" = '[{"dst": "0.0.0.0/0", "gw": "10.60.0.1"}, {"dst": "10.70.0.0/16"}]' ] ||
    fail "routes: $(jget 'j["routes"]')"
  [ "$(jget 'j["cniVersion"]')" = 1.1.0 ] || fail "cniVersion"
  [ "$(claim_count)" -eq 1 ] || fail "$(claim_count) claims"
  name=$(k get ipclaim -n "$ns" -o jsonpath='{.items[0].metadata.name}')
  echo "$name" >"$OUT/name1"
  [[ "$name" =~ ^cni-[0-9a-f]{24}$ ]] || fail "claim name $name"
  local got
  got=$(k get ipclaim -n "$ns" "$name" -o jsonpath='{.status.address}|{.spec.pool}|{.metadata.labels.provisio\.dev/cni-node}|{.metadata.labels.provisio\.dev/cni-network}|{.metadata.labels.provisio\.dev/cni-container-id}|{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}/{.metadata.ownerReferences[0].uid}')
  [ "$got" = "$addr|$P4|$NODE|$NET|c-one|Pod/p1/$(pod_uid p1)" ] || fail "claim: $got"
  k get ipclaim -n "$ns" | sed 's/^/#   /'
}

test_retried_add_gives_the_same_address() {
  cni ADD c-one eth0 p1 "$(conf "\"pool\":\"$P4\"")" || fail "ADD failed: $(cat "$OUT/last.json")"
  [ "$(jget 'j["ips"][0]["address"]')" = "$(jget 'j["ips"][0]["address"]' "$OUT/add1.json")" ] ||
    fail "another address: $(jget 'j["ips"]')"
  [ "$(claim_count)" -eq 1 ] || fail "$(claim_count) claims"
}

test_check_compares_the_claim_with_prev_result() {
  local prev
  prev=$(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))' "$OUT/add1.json")
  cni CHECK c-one eth0 p1 "$(conf "\"pool\":\"$P4\"" ",\"prevResult\":$prev")" ||
    fail "CHECK failed: $(cat "$OUT/last.json")"
  [ ! -s "$OUT/last.json" ] || fail "CHECK printed: $(cat "$OUT/last.json")"
  local rc=0
  cni CHECK c-one eth0 p1 "$(conf "\"pool\":\"$P4\"" ',"prevResult":{"ips":[{"address":"10.60.0.254/24"}]}')" || rc=$?
  ((rc == 1)) || fail "CHECK with another address: exit $rc"
  expect_error 101 "which prevResult does not list"
  rc=0
  cni CHECK c-never eth0 p1 "$(conf "\"pool\":\"$P4\"" ",\"prevResult\":$prev")" || rc=$?
  expect_error 3 "no IPClaim"
}

test_del_removes_the_claim_and_is_idempotent() {
  cni ADD c-del eth0 p1 "$(conf "\"pool\":\"$P4\"")" || fail "ADD failed"
  [ "$(claim_count)" -eq 2 ] || fail "$(claim_count) claims"
  local name
  name=$(k get ipclaim -n "$ns" -l provisio.dev/cni-container-id=c-del -o jsonpath='{.items[0].metadata.name}')
  cni DEL c-del eth0 p1 "$(conf "\"pool\":\"$P4\"")" || fail "DEL failed: $(cat "$OUT/last.json")"
  e2e_wait_for 30 "claim $name gone" claim_gone "$name"
  cni DEL c-del eth0 p1 "$(conf "\"pool\":\"$P4\"")" || fail "second DEL failed: $(cat "$OUT/last.json")"
  cni DEL c-never-added eth1 - "$(conf "\"pool\":\"$P4\"")" || fail "DEL of nothing failed"
}

test_pools_one_per_family_give_v4_and_v6() {
  cni ADD c-dual eth0 p1 "$(conf "\"pools\":[\"$P4\",\"$P6\"]")" || fail "ADD failed: $(cat "$OUT/last.json")"
  sed 's/^/#   /' "$OUT/last.json"
  [[ "$(jget 'j["ips"][0]["address"]')" == 10.60.0.*/24 ]] || fail "v4: $(jget 'j["ips"]')"
  [[ "$(jget 'j["ips"][1]["address"]')" == fd00:60::*/64 ]] || fail "v6: $(jget 'j["ips"]')"
  [ "$(jget 'j["ips"][1]["gateway"]')" = fd00:60::1 ] || fail "v6 gateway"
  cni DEL c-dual eth0 p1 "$(conf "\"pools\":[\"$P4\",\"$P6\"]")" || fail "DEL failed"
}

test_status_says_whether_the_pool_can_serve() {
  cni STATUS - - - "$(conf "\"pool\":\"$P4\"")" || fail "STATUS of $P4: $(cat "$OUT/last.json")"
  local rc=0
  cni STATUS - - - "$(conf '"pool":"no-such-pool"')" || rc=$?
  ((rc == 1)) || fail "missing pool: exit $rc"
  expect_error 50 "does not exist"
  # Fill the /30 (two addresses) with two claims.
  cni ADD c-x1 eth0 p1 "$(conf "\"pool\":\"$PX\"")" || fail "ADD 1 on $PX failed: $(cat "$OUT/last.json")"
  cni ADD c-x2 eth0 p1 "$(conf "\"pool\":\"$PX\"")" || fail "ADD 2 on $PX failed: $(cat "$OUT/last.json")"
  e2e_wait_for 20 "$PX available 0" bash -c "[ \"\$(kubectl get ippool $PX -o jsonpath='{.status.available}')\" = 0 ]"
  rc=0
  cni STATUS - - - "$(conf "\"pool\":\"$PX\"")" || rc=$?
  expect_error 50 "exhausted"
  sed "s#server: https://.*#server: https://127.0.0.1:1#" "$KUBECONFIG" >"$E2E_TMP/dead.kubeconfig"
  rc=0
  cni STATUS - - - "$(conf "\"pool\":\"$P4\"" '' ",\"kubeconfig\":\"$E2E_TMP/dead.kubeconfig\"")" || rc=$?
  expect_error 50 "https://127.0.0.1:1"
}

test_add_errors_exhausted_missing_unreachable() {
  local rc=0 start
  start=$(e2e_now)
  cni ADD c-x3 eth0 p1 "$(conf "\"pool\":\"$PX\"")" || rc=$?
  ((rc == 1)) || fail "ADD on an exhausted pool: exit $rc"
  expect_error 11 "PoolExhausted"
  echo "#   failed in $(e2e_since "$start") s"
  [ -z "$(k get ipclaim -n "$ns" -l provisio.dev/cni-container-id=c-x3 -o name)" ] ||
    e2e_wait_for 20 "the failed ADD's claim removed" bash -c "[ -z \"\$(kubectl get ipclaim -n $ns -l provisio.dev/cni-container-id=c-x3 -o name)\" ]"
  rc=0
  cni ADD c-m eth0 p1 "$(conf '"pool":"no-such-pool"')" || rc=$?
  expect_error 7 "PoolNotFound"
  rc=0
  start=$(e2e_now)
  cni ADD c-u eth0 p1 "$(conf "\"pool\":\"$P4\"" '' ",\"kubeconfig\":\"$E2E_TMP/dead.kubeconfig\",\"timeout\":3,\"requestTimeout\":1")" || rc=$?
  expect_error 11 "https://127.0.0.1:1"
  echo "#   unreachable: failed in $(e2e_since "$start") s"
}

test_gc_deletes_only_stale_attachments_of_this_node_and_network() {
  local c
  for c in g-a g-b g-c; do
    cni ADD "$c" eth0 p1 "$(conf "\"pool\":\"$P4\"")" || fail "ADD $c failed"
  done
  # A claim of another network is not this GC's business.
  CNI_COMMAND=ADD CNI_CONTAINERID=g-b CNI_IFNAME=eth0 CNI_ARGS="K8S_POD_NAMESPACE=$ns" "$CNI_BIN" \
    <<<"$(conf "\"pool\":\"$P4\"" | sed "s/\"name\":\"$NET\"/\"name\":\"other-$sfx\"/")" >/dev/null ||
    fail "ADD on the other network failed"
  local before valid
  before=$(claim_count)
  valid='"cni.dev/valid-attachments":[{"containerID":"g-a","ifname":"eth0"},{"containerID":"c-one","ifname":"eth0"},{"containerID":"c-x1","ifname":"eth0"},{"containerID":"c-x2","ifname":"eth0"}]'
  cni GC - - - "$(conf "\"pool\":\"$P4\"" ",$valid")" || fail "GC failed: $(cat "$OUT/last.json")"
  e2e_wait_for 30 "g-b and g-c claims gone" bash -c \
    "[ -z \"\$(kubectl get ipclaim -n $ns -l provisio.dev/cni-network=$NET,provisio.dev/cni-container-id=g-b -o name)\$(kubectl get ipclaim -n $ns -l provisio.dev/cni-container-id=g-c -o name)\" ]"
  [ -n "$(k get ipclaim -n "$ns" -l provisio.dev/cni-container-id=g-a -o name)" ] || fail "g-a was collected"
  [ -n "$(k get ipclaim -n "$ns" -l "provisio.dev/cni-network=other-$sfx" -o name)" ] ||
    fail "the other network's claim was collected"
  [ -n "$(k get ipclaim -n "$ns" -l provisio.dev/cni-container-id=c-one -o name)" ] || fail "c-one was collected"
  echo "#   $before claims before GC, $(claim_count) after"
}

# The e2e tier runs the sanitizer build on a shared 2-core machine: 100
# ASan processes starting at once take tens of seconds there, so the
# request timeout is raised; bench/run-cni-bench measures a Release build.
test_100_parallel_adds_get_distinct_addresses() {
  local i start pids=()
  pod p100
  local uid
  uid=$(pod_uid p100)
  start=$(e2e_now)
  for ((i = 0; i < 100; i++)); do
    CNI_COMMAND=ADD CNI_CONTAINERID="par-$i" CNI_IFNAME=eth0 \
      CNI_ARGS="K8S_POD_NAMESPACE=$ns;K8S_POD_NAME=p100;K8S_POD_UID=$uid" \
      "$CNI_BIN" <<<"$(conf "\"pool\":\"$P4\"" '' ',"timeout":120,"requestTimeout":60')" >"$OUT/par-$i.json" 2>"$OUT/par-$i.err" &
    pids+=($!)
  done
  local failed=0
  for i in "${pids[@]}"; do wait "$i" || failed=$((failed + 1)); done
  echo "#   100 parallel ADDs done in $(e2e_since "$start") s, $failed failed"
  ((failed == 0)) || fail "$failed ADDs failed, e.g. $(cat "$OUT"/par-*.json | grep -m1 code)"
  local n distinct
  python3 -c 'import json, sys
for i in range(100):
    print(json.load(open("%s/par-%d.json" % (sys.argv[1], i)))["ips"][0]["address"])' "$OUT" | sort >"$OUT/par.txt"
  n=$(wc -l <"$OUT/par.txt")
  distinct=$(sort -u "$OUT/par.txt" | wc -l)
  ((n == 100 && distinct == 100)) || fail "$n addresses, $distinct distinct"
  [ "$(k get ipclaim -n "$ns" -l "provisio.dev/cni-network=$NET" -o jsonpath='{range .items[*]}{.status.address}{"\n"}{end}' | grep -c .)" -ge 100 ] ||
    fail "fewer than 100 claims"
}

test_pod_deleted_without_del_frees_its_claim() {
  pod p-gone
  cni ADD c-gone eth0 p-gone "$(conf "\"pool\":\"$P4\"")" || fail "ADD failed"
  local name
  name=$(k get ipclaim -n "$ns" -l provisio.dev/cni-container-id=c-gone -o jsonpath='{.items[0].metadata.name}')
  k delete pod -n "$ns" p-gone --grace-period=0 --force >/dev/null 2>&1 || true
  local start
  start=$(e2e_now)
  # The garbage collector notices new CRDs through discovery (about every 30 s).
  e2e_wait_for 120 "claim $name deleted by the garbage collector" claim_gone "$name"
  echo "#   claim collected $(e2e_since "$start") s after its Pod was deleted"
}

test_bridge_in_a_network_namespace_delegates_to_provisio_cni() {
  if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || [ ! -x /usr/lib/cni/bridge ]; then
    echo "#   skipped: needs root, iproute2 and containernetworking-plugins (hack/install-deps)"
    return 0
  fi
  local cnitool netns=cni-$sfx dir=$E2E_TMP/netconf bindir=$E2E_TMP/cnibin
  cnitool=$("$PROVISIO_SOURCE_DIR/hack/cnitool")
  mkdir -p "$dir" "$bindir"
  ln -sf "$CNI_BIN" "$bindir/provisio-cni"
  cat >"$dir/10-e2e.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "$NET",
 "plugins": [{"type": "bridge", "bridge": "pv$sfx", "isGateway": true,
              "ipam": {"type": "provisio-cni", "pool": "$PN", "kubeconfig": "$KUBECONFIG"}}]}
JSON
  pod p-ns
  ip netns add "$netns"
  local args uid
  uid=$(pod_uid p-ns)
  args="IgnoreUnknown=1;K8S_POD_NAMESPACE=$ns;K8S_POD_NAME=p-ns;K8S_POD_UID=$uid"
  NETCONFPATH=$dir CNI_PATH=$bindir:/usr/lib/cni CNI_ARGS=$args \
    "$cnitool" add "$NET" "/var/run/netns/$netns" >"$OUT/cnitool-add.json" 2>"$OUT/cnitool-add.err" ||
    fail "cnitool add failed: $(cat "$OUT/cnitool-add.json" "$OUT/cnitool-add.err")"
  { cat "$OUT/cnitool-add.json"; echo; } | sed 's/^/#   /'
  local addr
  addr=$(k get ipclaim -n "$ns" -l "provisio.dev/cni-network=$NET,provisio.dev/cni-container-id" \
    -o jsonpath='{.items[?(@.spec.pool=="'"$PN"'")].status.address}')
  [[ "$addr" == 10.199.0.*/24 ]] || fail "no claim address of $PN: $addr"
  ip -n "$netns" addr show eth0 | tee "$OUT/ip-addr.txt" | sed 's/^/#   /'
  grep -q "inet $addr " "$OUT/ip-addr.txt" || fail "eth0 in $netns does not have $addr"
  NETCONFPATH=$dir CNI_PATH=$bindir:/usr/lib/cni CNI_ARGS=$args \
    "$cnitool" check "$NET" "/var/run/netns/$netns" >"$OUT/cnitool-check.out" 2>&1 ||
    fail "cnitool check failed: $(cat "$OUT/cnitool-check.out")"
  NETCONFPATH=$dir CNI_PATH=$bindir:/usr/lib/cni CNI_ARGS=$args \
    "$cnitool" del "$NET" "/var/run/netns/$netns" >"$OUT/cnitool-del.out" 2>&1 ||
    fail "cnitool del failed: $(cat "$OUT/cnitool-del.out")"
  e2e_wait_for 30 "the claim of $netns gone after cnitool del" bash -c \
    "[ -z \"\$(kubectl get ipclaim -n $ns -o jsonpath='{.items[?(@.spec.pool==\"$PN\")].metadata.name}')\" ]"
  ip netns del "$netns"
  ip link del "pv$sfx" 2>/dev/null || true
}

# The kubeconfig a node agent writes (--cni-kubeconfig, a token of
# config/cni's ServiceAccount): ADD, CHECK, STATUS and DEL work with it and
# nothing else; every request the plugin makes is within config/cni's RBAC.
test_plugin_works_with_the_kubeconfig_a_node_agent_writes() {
  local root=$E2E_TMP/agent-root kc
  kc=$root/etc/cni/net.d/provisio.d/kubeconfig
  k get namespace provisio-system >/dev/null 2>&1 || k create namespace provisio-system >/dev/null
  k apply --server-side --force-conflicts -f "$PROVISIO_SOURCE_DIR/config/cni/rbac.yaml" >/dev/null
  mkdir -p "$root"
  e2e_bg_start agent "$E2E_TMP/agent.log" "$PROVISIO_BINARY" agent --kubeconfig "$KUBECONFIG" \
    --node-name node-a --host-root "$root" --metrics-bind-address=0 \
    --health-probe-bind-address=0 --cni-kubeconfig /etc/cni/net.d/provisio.d/kubeconfig \
    --cni-service-account provisio-system/provisio-cni
  e2e_wait_for 30 "the agent wrote $kc" test -s "$kc"
  e2e_bg_stop agent TERM 10 >/dev/null
  local cfg
  cfg=$(KUBECONFIG=$kc conf "\"pool\":\"$P4\"")
  cni ADD c-sa eth0 p1 "$cfg" || fail "ADD as provisio-cni failed: $(cat "$OUT/last.json")"
  cp "$OUT/last.json" "$OUT/add-sa.json"
  echo "#   ADD as provisio-cni: $(jget 'j["ips"][0]["address"]')"
  cni CHECK c-sa eth0 p1 "$(KUBECONFIG=$kc conf "\"pool\":\"$P4\"" ",\"prevResult\":$(cat "$OUT/add-sa.json")")" ||
    fail "CHECK as provisio-cni failed: $(cat "$OUT/last.json")"
  cni STATUS - - - "$cfg" || fail "STATUS as provisio-cni failed: $(cat "$OUT/last.json")"
  cni DEL c-sa eth0 p1 "$cfg" || fail "DEL as provisio-cni failed: $(cat "$OUT/last.json")"
  e2e_wait_for 30 "the claim of c-sa gone" bash -c \
    "[ -z \"\$(kubectl get ipclaim -n $ns -l provisio.dev/cni-container-id=c-sa -o name)\" ]"
  # And the token is what limits it: no more than config/cni allows.
  [ "$(k --kubeconfig "$kc" auth can-i update ippools.provisio.dev 2>/dev/null || true)" = no ] ||
    fail "provisio-cni's token may update pools"
}

test_add_times_out_without_the_operator() {
  e2e_bg_stop operator TERM 20 >/dev/null
  local rc=0 start
  start=$(e2e_now)
  cni ADD c-slow eth0 p1 "$(conf "\"pool\":\"$P4\"" '' ',"timeout":1.5')" || rc=$?
  expect_error 11 "was not Ready within 1.5 s"
  echo "#   failed after $(e2e_since "$start") s"
  e2e_wait_for 20 "the timed-out claim removed" bash -c \
    "[ -z \"\$(kubectl get ipclaim -n $ns -l provisio.dev/cni-container-id=c-slow -o name)\" ]"
  start_operator
}

test_everything_is_released() {
  # With the operator running, the claims' finalizers go with them.
  k delete ipclaim -n "$ns" --all --wait=false >/dev/null
  e2e_wait_for 60 "every claim of $ns gone" bash -c "[ -z \"\$(kubectl get ipclaim -n $ns -o name)\" ]"
  k delete ippool "$P4" "$P6" "$PX" "$PN" --wait=false >/dev/null
  e2e_wait_for 60 "the pools gone" bash -c "! kubectl get ippool $P4 $P6 $PX $PN -o name 2>/dev/null | grep -q ."
  # Sanitizer reports of the plugin runs (their stderr is in $OUT).
  "${BASH_SOURCE[0]%/*}/scan-sanitizer-reports" "$OUT"
}

# ---------------------------------------------------------------------------

setup
e2e_test "version and invalid input are CNI answers (codes 4, 6, 7)" test_version_and_invalid_input_are_cni_answers
e2e_test "ADD creates an owned, labelled claim and prints the result" test_add_creates_an_owned_labelled_claim_and_prints_the_result
e2e_last_ok || e2e_bail "ADD does not work"
e2e_test "a retried ADD gives the same address" test_retried_add_gives_the_same_address
e2e_test "CHECK compares the claim with prevResult (101, 3)" test_check_compares_the_claim_with_prev_result
e2e_test "DEL removes the claim and is idempotent" test_del_removes_the_claim_and_is_idempotent
e2e_test "pools one per family give an IPv4 and an IPv6 address" test_pools_one_per_family_give_v4_and_v6
e2e_test "STATUS: 0 with room, 50 exhausted, missing or unreachable" test_status_says_whether_the_pool_can_serve
e2e_test "ADD errors: exhausted 11 at once, missing pool 7, unreachable 11" test_add_errors_exhausted_missing_unreachable
e2e_test "GC deletes only stale attachments of this node and network" test_gc_deletes_only_stale_attachments_of_this_node_and_network
e2e_test "100 parallel ADDs get distinct addresses" test_100_parallel_adds_get_distinct_addresses
e2e_test "a Pod deleted without DEL frees its claim (garbage collector)" test_pod_deleted_without_del_frees_its_claim
e2e_test "bridge in a network namespace, IPAM by provisio-cni, driven by cnitool" test_bridge_in_a_network_namespace_delegates_to_provisio_cni
e2e_test "ADD, CHECK, STATUS, DEL as provisio-cni, with the kubeconfig a node agent writes" \
  test_plugin_works_with_the_kubeconfig_a_node_agent_writes
e2e_test "ADD times out (11) without the operator, and removes its claim" test_add_times_out_without_the_operator
e2e_test "every claim and pool released" test_everything_is_released
e2e_done
