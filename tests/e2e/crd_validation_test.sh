#!/usr/bin/env bash
# End-to-end test of the CRDs in crds/ against a real API server: everything
# the schemas promise (API.md: "server-side validation of everything that can
# be checked without the operator") is checked here through kubectl, without
# the operator running.
#
# - installs the CRDs (idempotent, server-side apply) and waits for them;
# - every property of every schema has a description, and `kubectl explain`
#   shows it;
# - the samples of config/samples and config/default are accepted;
# - defaults are applied (healthy, count, replaceUnhealthy, reclaimPolicy,
#   accessModes, IPPool network) and not applied where there is none (publish, advertise);
# - invalid objects are refused with the expected message fragment;
# - immutable fields cannot be changed; the Reservation lock gives 409;
# - printer columns and `kubectl get provisio`.
#
# Uses KUBECONFIG from the environment and kubectl from PATH (or $KUBECTL).
# Creates its own namespace; cluster-scoped objects it creates carry a label
# and are deleted at the end, as is the namespace.
set -euo pipefail

root=${PROVISIO_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
kubectl=${KUBECTL:-kubectl}
: "${KUBECONFIG:?KUBECONFIG must point at the cluster to test}"

id=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
ns=crdv-$id
label=provisio-test=crdv-$id
passed=0
failed=0
failures=()

cleanup() {
  set +e
  "$kubectl" delete ippools,devicepools,storagepools,reservations -l "$label" \
    --wait=false >/dev/null 2>&1
  "$kubectl" delete namespace "$ns" --wait=false >/dev/null 2>&1
}
trap cleanup EXIT

pass() {
  passed=$((passed + 1))
  printf 'ok     %s\n' "$1"
}
fail() {
  failed=$((failed + 1))
  failures+=("$1")
  printf 'FAIL   %s\n       %s\n' "$1" "${2//$'\n'/$'\n'       }"
}

# obj KIND NAME SPEC [EXTRA-METADATA]: a manifest; SPEC is YAML flow style.
obj() {
  printf 'apiVersion: provisio.dev/v1alpha1\nkind: %s\nmetadata: {name: "%s", labels: {provisio-test: "crdv-%s"}%s}\nspec: %s\n' \
    "$1" "$2" "$id" "${4:-}" "$3"
}

# refused DESC FRAGMENT KIND NAME SPEC: a server dry-run create must fail and
# its message contain FRAGMENT.
refused() {
  local desc=$1 fragment=$2 out
  if out=$(obj "$3" "$4" "$5" | "$kubectl" create -n "$ns" --dry-run=server -f - 2>&1); then
    fail "refuses $desc" "accepted: $out"
  elif [[ $out != *"$fragment"* ]]; then
    fail "refuses $desc" "message lacks '$fragment': $out"
  else
    pass "refuses $desc: $(grep -F -- "$fragment" <<<"$out" | head -1 | sed 's/^\* //')"
  fi
}

# accepted DESC KIND NAME SPEC
accepted() {
  local desc=$1 out
  if out=$(obj "$2" "$3" "$4" | "$kubectl" create -n "$ns" --dry-run=server -f - 2>&1); then
    pass "accepts $desc"
  else
    fail "accepts $desc" "$out"
  fi
}

# create KIND NAME SPEC: a real object (for immutability and column tests).
create() {
  local out
  out=$(obj "$1" "$2" "$3" | "$kubectl" create -n "$ns" -f - 2>&1) ||
    {
      fail "create $1/$2" "$out"
      return 1
    }
}

# patch_refused DESC FRAGMENT RESOURCE PATCH: a merge patch must fail with FRAGMENT.
patch_refused() {
  local desc=$1 fragment=$2 out
  if out=$("$kubectl" patch -n "$ns" "$3" --type=merge -p "$4" 2>&1); then
    fail "refuses $desc" "accepted: $out"
  elif [[ $out != *"$fragment"* ]]; then
    fail "refuses $desc" "message lacks '$fragment': $out"
  else
    pass "refuses $desc: $(grep -F -- "$fragment" <<<"$out" | head -1 | sed 's/^\* //')"
  fi
}

# patch_accepted DESC RESOURCE PATCH
patch_accepted() {
  local out
  if out=$("$kubectl" patch -n "$ns" "$2" --type=merge -p "$3" 2>&1); then
    pass "accepts $1"
  else
    fail "accepts $1" "$out"
  fi
}

# expect_eq DESC WANT GOT
expect_eq() {
  if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "want '$2', got '$3'"; fi
}

# --- install --------------------------------------------------------------
"$kubectl" apply --server-side --force-conflicts -f "$root/crds/" >/dev/null
"$kubectl" wait --for=condition=Established --timeout=60s -f "$root/crds/" >/dev/null
pass "CRDs applied and Established"
"$kubectl" create namespace "$ns" >/dev/null

# --- schemas --------------------------------------------------------------
crd_names=(ippools ipclaims devicepools deviceclaims storagepools volumes reservations)
for c in "${crd_names[@]}"; do
  out=$("$kubectl" get crd "$c.provisio.dev" -o json | python3 -c '
import json, sys
crd = json.load(sys.stdin)
missing = []
def walk(s, path):
    for k, v in (s.get("properties") or {}).items():
        if k != "metadata" and not v.get("description"):
            missing.append(path + "." + k)
        walk(v, path + "." + k)
    if "items" in s:
        walk(s["items"], path + "[]")
    if isinstance(s.get("additionalProperties"), dict):
        walk(s["additionalProperties"], path + "{}")
    if s.get("x-kubernetes-preserve-unknown-fields"):
        missing.append(path + " (preserve-unknown-fields)")
for v in crd["spec"]["versions"]:
    walk(v["schema"]["openAPIV3Schema"], crd["spec"]["names"]["kind"])
print(" ".join(missing))
')
  if [ -z "$out" ]; then pass "$c: every field has a description"; else fail "$c: fields without description" "$out"; fi
  cats=$("$kubectl" get crd "$c.provisio.dev" -o jsonpath='{.spec.names.categories}')
  expect_eq "$c: in category provisio" '["provisio"]' "$cats"
done
for c in ippools ipclaims devicepools deviceclaims storagepools volumes; do
  sub=$("$kubectl" get crd "$c.provisio.dev" -o jsonpath='{.spec.versions[0].subresources.status}')
  expect_eq "$c: has the status subresource" '{}' "$sub"
done
out=$("$kubectl" explain ippool.spec.cidr 2>&1 | tr -s ' \n' '  ' || true)
if [[ $out == *"canonical CIDR form"* ]]; then pass "kubectl explain ippool.spec.cidr"; else fail "kubectl explain ippool.spec.cidr" "$out"; fi
out=$("$kubectl" explain volume.spec.reclaimPolicy 2>&1 | tr -s ' \n' '  ' || true)
if [[ $out == *"Delete (default)"* ]]; then pass "kubectl explain volume.spec.reclaimPolicy"; else fail "kubectl explain volume.spec.reclaimPolicy" "$out"; fi

# --- samples --------------------------------------------------------------
if out=$("$kubectl" apply -n "$ns" --dry-run=server -k "$root/config/samples" 2>&1); then
  pass "config/samples accepted ($(wc -l <<<"$out") objects)"
else
  fail "config/samples accepted" "$out"
fi
if out=$("$kubectl" kustomize "$root/config/default" 2>&1) &&
  n=$(grep -c '^kind: CustomResourceDefinition' <<<"$out") && [ "$n" -eq 7 ]; then
  pass "config/default builds with the 7 CRDs"
else
  fail "config/default builds with the 7 CRDs" "$out"
fi

# --- defaults -------------------------------------------------------------
# publish and advertise have no default (the operator reads "unset" as
# NodeCapacity, or None for the deprecated advertise: false); healthy does.
got=$(obj DevicePool "crdv-$id-defaults" '{nodeName: node-a, resourceName: vendor.example/fpga, devices: [{id: fpga0}]}' |
  "$kubectl" create --dry-run=server -o jsonpath='{.spec.advertise}|{.spec.publish}|{.spec.devices[0].healthy}' -f -)
expect_eq "DevicePool defaults healthy to true, leaves publish and advertise unset" "||true" "$got"
got=$(obj DeviceClaim d '{resourceName: vendor.example/fpga}' |
  "$kubectl" create -n "$ns" --dry-run=server -o jsonpath='{.spec.count} {.spec.replaceUnhealthy}' -f -)
expect_eq "DeviceClaim defaults count to 1 and replaceUnhealthy to false" "1 false" "$got"
got=$(obj Volume v '{size: 1Gi}' |
  "$kubectl" create -n "$ns" --dry-run=server -o jsonpath='{.spec.reclaimPolicy} {.spec.accessModes}' -f -)
expect_eq "Volume defaults reclaimPolicy and accessModes" 'Delete ["ReadWriteOnce"]' "$got"

# --- IPPool ---------------------------------------------------------------
p=crdv-$id
accepted "an IPv4 pool with everything" IPPool "$p" '{cidr: 10.20.0.0/24, gateway: 10.20.0.1, rangeStart: 10.20.0.10, rangeEnd: 10.20.0.200, exclude: [10.20.0.50, 10.20.0.64/28], routes: [{dst: 0.0.0.0/0, gw: 10.20.0.1}, {dst: 192.168.0.0/16}]}'
accepted "an IPv6 pool narrowed by a range" IPPool "$p" '{cidr: "fd00:10::/64", rangeStart: "fd00:10::100", rangeEnd: "fd00:10::1:ff"}'
accepted "rangeStart equal to rangeEnd" IPPool "$p" '{cidr: 10.20.0.0/24, rangeStart: 10.20.0.9, rangeEnd: 10.20.0.9}'
accepted "rangeStart just below rangeEnd across a bit boundary" IPPool "$p" '{cidr: 10.20.0.0/24, rangeStart: 10.20.0.127, rangeEnd: 10.20.0.128}'
refused "a pool without cidr" "spec.cidr: Required value" IPPool "$p" '{gateway: 10.20.0.1}'
refused "a CIDR with prefix 33" "spec.cidr 10.20.0.0/33 is not a CIDR" IPPool "$p" '{cidr: 10.20.0.0/33}'
refused "a CIDR that is an address" "is not a CIDR" IPPool "$p" '{cidr: 10.20.0.1}'
refused "a CIDR with host bits" "write 10.20.0.0/16" IPPool "$p" '{cidr: 10.20.0.1/16}'
refused "an uppercase IPv6 CIDR" "write fd00::/64" IPPool "$p" '{cidr: "FD00::/64"}'
refused "a gateway outside the cidr" "spec.gateway 10.30.0.1 must be inside spec.cidr 10.20.0.0/24" IPPool "$p" '{cidr: 10.20.0.0/24, gateway: 10.30.0.1}'
refused "a gateway of the other family" "spec.gateway fd00::1 is an IPv6 address but spec.cidr 10.20.0.0/24 is IPv4" IPPool "$p" '{cidr: 10.20.0.0/24, gateway: "fd00::1"}'
refused "a gateway that is not an address" "spec.gateway 10.20.0.300 is not an IP address" IPPool "$p" '{cidr: 10.20.0.0/24, gateway: 10.20.0.300}'
refused "rangeStart outside the cidr" "spec.rangeStart 10.21.0.1 must be inside spec.cidr" IPPool "$p" '{cidr: 10.20.0.0/24, rangeStart: 10.21.0.1}'
refused "rangeEnd of the other family" "spec.rangeEnd fd00::9 is an IPv6 address" IPPool "$p" '{cidr: 10.20.0.0/24, rangeEnd: "fd00::9"}'
refused "rangeStart after rangeEnd" "spec.rangeStart 10.20.0.200 must not be after spec.rangeEnd 10.20.0.10" IPPool "$p" '{cidr: 10.20.0.0/24, rangeStart: 10.20.0.200, rangeEnd: 10.20.0.10}'
refused "rangeStart one after rangeEnd" "must not be after" IPPool "$p" '{cidr: 10.20.0.0/24, rangeStart: 10.20.0.128, rangeEnd: 10.20.0.127}'
refused "an IPv6 rangeStart after rangeEnd" "spec.rangeStart fd00:10::1:0 must not be after spec.rangeEnd fd00:10::ffff" IPPool "$p" '{cidr: "fd00:10::/64", rangeStart: "fd00:10::1:0", rangeEnd: "fd00:10::ffff"}'
refused "a non-canonical rangeStart" "write fd00::1" IPPool "$p" '{cidr: "fd00::/64", rangeStart: "fd00:0::0001"}'
refused "an exclude entry outside the cidr" "spec.exclude entry 10.20.1.0/28 must be inside spec.cidr 10.20.0.0/24" IPPool "$p" '{cidr: 10.20.0.0/24, exclude: [10.20.0.5, 10.20.1.0/28]}'
refused "an exclude entry that is no address" "spec.exclude entry foo is neither an IP address nor a CIDR" IPPool "$p" '{cidr: 10.20.0.0/24, exclude: [foo]}'
refused "a non-canonical exclude CIDR" "write 10.20.0.64/28" IPPool "$p" '{cidr: 10.20.0.0/24, exclude: [10.20.0.65/28]}'
refused "a duplicate exclude entry" 'Duplicate value: "10.20.0.5"' IPPool "$p" '{cidr: 10.20.0.0/24, exclude: [10.20.0.5, 10.20.0.5]}'
refused "a route of the other family" "route dst ::/0 is not of the address family of spec.cidr 10.20.0.0/24" IPPool "$p" '{cidr: 10.20.0.0/24, routes: [{dst: "::/0"}]}'
refused "a route gw of the other family" "route gw fd00::1 is not of the address family of its dst 0.0.0.0/0" IPPool "$p" '{cidr: 10.20.0.0/24, routes: [{dst: 0.0.0.0/0, gw: "fd00::1"}]}'
refused "a route without dst" "spec.routes[0].dst: Required value" IPPool "$p" '{cidr: 10.20.0.0/24, routes: [{gw: 10.20.0.1}]}'
refused "a pool name with a dot" "metadata.name of an IPPool must be a DNS label" IPPool "a.$p" '{cidr: 10.20.0.0/24}'
refused "an unknown field" 'unknown field "spec.range"' IPPool "$p" '{cidr: 10.20.0.0/24, range: x}'
got=$(obj IPPool "$p" '{cidr: 10.20.0.0/24}' | "$kubectl" create --dry-run=server -o jsonpath='{.spec.network}' -f -)
expect_eq "IPPool defaults spec.network to default" default "$got"
refused "a network that is not a DNS label" "spec.network in body should match" IPPool "$p" '{cidr: 10.20.0.0/24, network: Net_1}'

# --- IPClaim --------------------------------------------------------------
accepted "a claim" IPClaim c '{pool: demo-v4}'
accepted "a claim for an IPv6 address" IPClaim c '{pool: demo-v6, address: "fd00:10::5"}'
refused "a claim without pool" "spec.pool: Required value" IPClaim c '{address: 10.20.0.5}'
refused "a claim with a bad pool name" "spec.pool must be the name of an IPPool" IPClaim c '{pool: Demo_V4}'
refused "an address with a prefix length" "spec.address 10.20.0.5/24 is not an IP address" IPClaim c '{pool: demo-v4, address: 10.20.0.5/24}'
refused "a non-canonical address" "write fd00::5" IPClaim c '{pool: demo-v4, address: "FD00::5"}'

# --- DevicePool / DeviceClaim ---------------------------------------------
dev='{nodeName: node-a, resourceName: vendor.example/fpga, devices: [{id: fpga0, path: /dev/fpga0, attributes: {model: u250, vendor.example/pci: "0000:3b:00.0"}}, {id: fpga1, healthy: false}]}'
dp() { printf '{nodeName: node-a, resourceName: vendor.example/fpga, %s}' "$1"; }
accepted "a device pool" DevicePool "$p" "$dev"
accepted "a pool without devices (0 allowed)" DevicePool "$p" "$(dp 'devices: []')"
accepted "a pool with only spec.discover" DevicePool "$p" "$(dp 'discover: {paths: [/dev/fpga*, "/dev/dri/renderD[0-9]*"], attributes: {model: u250}}')"
accepted "a pool with neither devices nor discover" DevicePool "$p" '{nodeName: node-a, resourceName: vendor.example/fpga}'
for pub in NodeCapacity ResourceSlice None; do
  accepted "publish: $pub" DevicePool "$p" "$(dp "publish: $pub, devices: [{id: a}]")"
done
accepted "the deprecated advertise: false" DevicePool "$p" "$(dp 'advertise: false, devices: [{id: a}]')"
refused "publish: Bogus" 'Unsupported value: "Bogus"' DevicePool "$p" "$(dp 'publish: Bogus, devices: [{id: a}]')"
refused "duplicate device ids" 'Duplicate value: {"id":"fpga0"}' DevicePool "$p" "$(dp 'devices: [{id: fpga0}, {id: fpga0}]')"
many=$(python3 -c 'import json; print(json.dumps({"nodeName": "node-a", "resourceName": "vendor.example/fpga", "devices": [{"id": "d%d" % i} for i in range(1025)]}))')
refused "1025 devices" "must have at most 1024 items" DevicePool "$p" "$many"
refused "a device id with ':'" "device id must be a DNS label" DevicePool "$p" "$(dp 'devices: [{id: "0000:3b:00.0"}]')"
refused "a device id with a dot" "device id must be a DNS label" DevicePool "$p" "$(dp 'devices: [{id: fpga.0}]')"
refused "an uppercase device id" "device id must be a DNS label" DevicePool "$p" "$(dp 'devices: [{id: FPGA0}]')"
refused "a device id ending in '-'" "device id must be a DNS label" DevicePool "$p" "$(dp 'devices: [{id: fpga-}]')"
refused "a device id of 64 characters" "spec.devices[0].id: Too long" DevicePool "$p" "$(dp "devices: [{id: $(printf 'a%.0s' {1..64})}]")"
refused "a device without id" "spec.devices[0].id: Required value" DevicePool "$p" "$(dp 'devices: [{healthy: true}]')"
refused "a relative device path" "path must be an absolute path on the node" DevicePool "$p" "$(dp 'devices: [{id: a, path: dev/fpga0}]')"
refused "a device path with '..'" "path must be an absolute path on the node" DevicePool "$p" "$(dp 'devices: [{id: a, path: /dev/../etc/shadow}]')"
refused "a relative discover glob" "discover.paths must be absolute paths" DevicePool "$p" "$(dp 'discover: {paths: ["dev/fpga*"]}')"
refused "a discover glob with '..'" "discover.paths must be absolute paths" DevicePool "$p" "$(dp 'discover: {paths: [/dev/../fpga*]}')"
refused "discover without paths" "spec.discover.paths: Required value" DevicePool "$p" "$(dp 'discover: {attributes: {model: u250}}')"
refused "discover with no paths" "should have at least 1 items" DevicePool "$p" "$(dp 'discover: {paths: []}')"
globs=$(python3 -c 'print(", ".join("/dev/g%d*" % i for i in range(17)))')
refused "17 discover globs" "must have at most 16 items" DevicePool "$p" "$(dp "discover: {paths: [$globs]}")"
refused "a bad discover attribute key" "attribute keys must look like label keys" DevicePool "$p" "$(dp 'discover: {paths: [/dev/fpga*], attributes: {"bad key": x}}')"
refused "a resource name without domain" "spec.resourceName must be an extended resource name" DevicePool "$p" '{nodeName: node-a, resourceName: fpga, devices: [{id: a}]}'
refused "a kubernetes.io resource name" "must not be in the kubernetes.io domain" DevicePool "$p" '{nodeName: node-a, resourceName: kubernetes.io/fpga, devices: [{id: a}]}'
refused "a bad node name" "spec.nodeName must be a node name" DevicePool "$p" '{nodeName: Node_A, resourceName: vendor.example/fpga, devices: [{id: a}]}'
refused "a pool without nodeName" "spec.nodeName: Required value" DevicePool "$p" '{resourceName: vendor.example/fpga}'
refused "a bad attribute key" "attribute keys must look like label keys" DevicePool "$p" "$(dp 'devices: [{id: a, attributes: {"bad key": x}}]')"
refused "a non-string attribute" "spec.devices[0].attributes.count: Invalid value: \"integer\"" DevicePool "$p" "$(dp 'devices: [{id: a, attributes: {count: 1}}]')"
refused "a device pool name with a dot" "metadata.name of a DevicePool must be a DNS label" DevicePool "a.$p" "$(dp 'devices: [{id: a}]')"
accepted "a device claim" DeviceClaim c '{resourceName: vendor.example/fpga, count: 2, nodeName: node-a, selector: {model: u250}}'
accepted "a device claim with replaceUnhealthy" DeviceClaim c '{resourceName: vendor.example/fpga, count: 64, replaceUnhealthy: true}'
refused "count 0" "should be greater than or equal to 1" DeviceClaim c '{resourceName: vendor.example/fpga, count: 0}'
refused "count 65" "should be less than or equal to 64" DeviceClaim c '{resourceName: vendor.example/fpga, count: 65}'
refused "a device claim without resourceName" "spec.resourceName: Required value" DeviceClaim c '{count: 1}'
refused "a claim of a kubernetes.io resource" "must not be in the kubernetes.io domain" DeviceClaim c '{resourceName: kubernetes.io/fpga}'
refused "replaceUnhealthy that is no boolean" 'spec.replaceUnhealthy: Invalid value: "string"' DeviceClaim c '{resourceName: vendor.example/fpga, replaceUnhealthy: "yes"}'

# --- StoragePool / Volume -------------------------------------------------
accepted "a storage pool" StoragePool "$p" '{nodeName: node-a, path: /var/lib/provisio/a, capacity: 10Gi, storageClassName: provisio-local}'
accepted "a capacity in plain bytes" StoragePool "$p" '{nodeName: node-a, path: /var/lib/provisio/a, capacity: 1073741824}'
refused "a relative path" "spec.path var/lib/provisio must be an absolute path" StoragePool "$p" '{nodeName: node-a, path: var/lib/provisio, capacity: 10Gi}'
refused "the path /" "spec.path must be a clean directory path other than /" StoragePool "$p" '{nodeName: node-a, path: /, capacity: 10Gi}'
refused "a path with .." "spec.path must be a clean directory path" StoragePool "$p" '{nodeName: node-a, path: /var/../etc, capacity: 10Gi}'
refused "a path with a trailing /" "spec.path must be a clean directory path" StoragePool "$p" '{nodeName: node-a, path: /var/lib/, capacity: 10Gi}'
refused "a capacity that is no quantity" "spec.capacity must be a quantity of bytes" StoragePool "$p" '{nodeName: node-a, path: /var/lib/p, capacity: 10GB}'
refused "a zero capacity" "spec.capacity must be a positive whole number of bytes" StoragePool "$p" '{nodeName: node-a, path: /var/lib/p, capacity: 0}'
refused "a negative capacity" "spec.capacity must be a positive whole number of bytes" StoragePool "$p" '{nodeName: node-a, path: /var/lib/p, capacity: -1Gi}'
refused "a fractional capacity" "spec.capacity must be a positive whole number of bytes" StoragePool "$p" '{nodeName: node-a, path: /var/lib/p, capacity: 1500m}'
refused "a pool without capacity" "spec.capacity: Required value" StoragePool "$p" '{nodeName: node-a, path: /var/lib/p}'
accepted "quota Off (a string, not YAML's false)" StoragePool "$p" '{nodeName: node-a, path: /var/lib/p, capacity: 1Gi, quota: "Off"}'
refused "quota: Off unquoted (YAML's false), saying what is allowed" 'supported values: "Auto", "Required", "Off"' StoragePool "$p" '{nodeName: node-a, path: /var/lib/p, capacity: 1Gi, quota: Off}'
refused "an unknown quota mode" 'Unsupported value: "Sometimes"' StoragePool "$p" '{nodeName: node-a, path: /var/lib/p, capacity: 1Gi, quota: Sometimes}'
accepted "a volume" Volume v '{size: 1Gi, pool: demo-local, nodeName: node-a, reclaimPolicy: Retain, accessModes: [ReadWriteOnce, ReadOnlyMany]}'
refused "a size that is no quantity" "spec.size must be a quantity of bytes" Volume v '{size: abc}'
refused "a volume without size" "spec.size: Required value" Volume v '{pool: demo-local}'
refused "reclaimPolicy Recycle" 'Unsupported value: "Recycle"' Volume v '{size: 1Gi, reclaimPolicy: Recycle}'
refused "an unknown access mode" 'Unsupported value: "ReadWriteSometimes"' Volume v '{size: 1Gi, accessModes: [ReadWriteSometimes]}'
refused "no access modes" "should have at least 1 items" Volume v '{size: 1Gi, accessModes: []}'

# --- Reservation ----------------------------------------------------------
# An IPPool address is locked once per network: ipnet.<spec.network>.<address>
# (the pool the address was taken through is spec.pool). The network of this
# run is its own, so that its real Reservation below cannot meet another's.
net=$p
# r_spec ADDR CLAIM UID [NETWORK]: NETWORK defaults to $net; "" leaves
# spec.network out.
r_spec() {
  local n=${4-$net}
  printf '{pool: {kind: IPPool, name: %s}, %sslot: "%s", claim: {kind: IPClaim, namespace: %s, name: %s, uid: %s}}' \
    "$p" "${n:+network: $n, }" "$1" "$ns" "$2" "$3"
}
accepted "an IPv4 reservation named with '-' for '.'" Reservation "ipnet.$net.10-20-0-5" "$(r_spec 10.20.0.5 c u1)"
accepted "an IPv6 reservation named with its 8 groups" Reservation "ipnet.$net.0-0-0-0-0-0-0-1" "$(r_spec ::1 c u1)"
accepted "a reservation in the network default" Reservation "ipnet.default.10-20-0-5" "$(r_spec 10.20.0.5 c u1 default)"
accepted "a device reservation" Reservation "devicepool.$p.fpga0" "{pool: {kind: DevicePool, name: $p}, slot: fpga0, claim: {kind: DeviceClaim, namespace: $ns, name: d, uid: u1}}"
refused "a reservation whose name is not its slot" "metadata.name of a Reservation must be" Reservation "ipnet.$net.10-20-0-6" "$(r_spec 10.20.0.5 c u1)"
refused "a reservation named with a compressed IPv6 address" "metadata.name of a Reservation must be" Reservation "ipnet.$net.fd00-10--5" "$(r_spec fd00:10::5 c u1)"
refused "a reservation named without the pool kind" "metadata.name of a Reservation must be" Reservation "$p.10-20-0-5" "$(r_spec 10.20.0.5 c u1)"
refused "an IPPool reservation named the old way (ippool.<pool>.<address>)" "metadata.name of a Reservation must be" Reservation "ippool.$p.10-20-0-5" "$(r_spec 10.20.0.5 c u1)"
refused "an old-style IPPool reservation without spec.network" "metadata.name of a Reservation must be" Reservation "ippool.$p.10-20-0-5" "$(r_spec 10.20.0.5 c u1 '')"
refused "an IPPool reservation without spec.network" "metadata.name of a Reservation must be" Reservation "ipnet.$net.10-20-0-5" "$(r_spec 10.20.0.5 c u1 '')"
refused "an IPPool reservation whose spec.network is not the one of its name" "metadata.name of a Reservation must be" Reservation "ipnet.$net.10-20-0-5" "$(r_spec 10.20.0.5 c u1 "other-$net")"
refused "an IPv6 IPPool reservation whose spec.network is not the one of its name" "metadata.name of a Reservation must be" Reservation "ipnet.default.0-0-0-0-0-0-0-1" "$(r_spec ::1 c u1 "$net")"
refused "a reservation network that is not a DNS label" "spec.network must be a DNS label" Reservation "ipnet.$net.10-20-0-5" "$(r_spec 10.20.0.5 c u1 Net_1)"
refused "a reservation of a non-canonical address" "must be an IP address in canonical form" Reservation "ipnet.$net.fd00-10-0-0-0-0-0-5" "$(r_spec fd00:10:0::5 c u1)"
refused "a StoragePool reservation without bytes" "must say how many bytes it holds" Reservation "storagepool.$p.u1" "{pool: {kind: StoragePool, name: $p}, slot: u1, admittedUntil: '2026-01-02T15:04:05Z', claim: {kind: Volume, namespace: $ns, name: v, uid: u1}}"
refused "a StoragePool reservation without its admission's deadline" "must carry the deadline of its admission" Reservation "storagepool.$p.u1" "{pool: {kind: StoragePool, name: $p}, slot: u1, bytes: 1024, claim: {kind: Volume, namespace: $ns, name: v, uid: u1}}"
accepted "a StoragePool reservation" Reservation "storagepool.$p.u1" "{pool: {kind: StoragePool, name: $p}, slot: u1, bytes: 1024, admittedUntil: '2026-01-02T15:04:05Z', claim: {kind: Volume, namespace: $ns, name: v, uid: u1}}"

# --- real objects: immutability, locks, columns ---------------------------
create IPPool "$p" "{cidr: 10.20.0.0/24, gateway: 10.20.0.1, network: $net}"
create IPClaim c-any "{pool: $p}"
create IPClaim c-fixed "{pool: $p, address: 10.20.0.5}"
create DevicePool "$p" "$dev"
create DeviceClaim dc "{resourceName: vendor.example/fpga}"
create StoragePool "$p" '{nodeName: node-a, path: /var/lib/provisio/a, capacity: 10Gi}'
create Volume vol "{size: 1Gi, pool: $p}"
create Reservation "ipnet.$net.10-20-0-5" "$(r_spec 10.20.0.5 c-fixed u1)"

patch_refused "a change of IPPool spec.cidr" "spec.cidr is immutable" "ippool/$p" '{"spec":{"cidr":"10.30.0.0/24"}}'
patch_refused "a change of IPPool spec.network" "spec.network is immutable" "ippool/$p" '{"spec":{"network":"other"}}'
patch_accepted "a change of IPPool spec.gateway" "ippool/$p" '{"spec":{"gateway":"10.20.0.254"}}'
patch_refused "a change of IPClaim spec.pool" "spec.pool is immutable" ipclaim/c-any '{"spec":{"pool":"other"}}'
patch_refused "adding IPClaim spec.address" "spec.address is immutable" ipclaim/c-any '{"spec":{"address":"10.20.0.6"}}'
patch_refused "a change of IPClaim spec.address" "spec.address is immutable" ipclaim/c-fixed '{"spec":{"address":"10.20.0.6"}}'
patch_refused "removing IPClaim spec.address" "spec.address is immutable" ipclaim/c-fixed '{"spec":{"address":null}}'
patch_refused "a change of DevicePool spec.nodeName" "spec.nodeName is immutable" "devicepool/$p" '{"spec":{"nodeName":"node-b"}}'
patch_accepted "a change of DevicePool devices" "devicepool/$p" '{"spec":{"devices":[{"id":"fpga0","healthy":false}]}}'
patch_refused "a change of DeviceClaim spec" "the spec of a DeviceClaim is immutable" deviceclaim/dc '{"spec":{"count":2}}'
patch_refused "a change of StoragePool spec.path" "spec.path is immutable" "storagepool/$p" '{"spec":{"path":"/var/lib/provisio/b"}}'
patch_accepted "a change of StoragePool spec.capacity" "storagepool/$p" '{"spec":{"capacity":"20Gi"}}'
patch_refused "a change of Volume spec.size" "spec.size is immutable" volume/vol '{"spec":{"size":"2Gi"}}'
patch_accepted "Volume spec.size written another way (1Gi as bytes)" volume/vol '{"spec":{"size":1073741824}}'
patch_refused "a change of Volume spec.pool" "spec.pool is immutable" volume/vol '{"spec":{"pool":"other"}}'
patch_refused "adding Volume spec.nodeName" "spec.nodeName is immutable" volume/vol '{"spec":{"nodeName":"node-a"}}'
patch_accepted "a change of Volume spec.reclaimPolicy" volume/vol '{"spec":{"reclaimPolicy":"Retain"}}'
patch_refused "a change of a Reservation" "the spec of a Reservation is immutable" "reservation/ipnet.$net.10-20-0-5" '{"spec":{"claim":{"name":"thief"}}}'
if out=$(obj Reservation "ipnet.$net.10-20-0-5" "$(r_spec 10.20.0.5 other u2)" | "$kubectl" create -f - 2>&1); then
  fail "a second Reservation of a slot gets AlreadyExists" "accepted: $out"
elif [[ $out == *AlreadyExists* ]]; then
  pass "a second Reservation of a slot gets AlreadyExists"
else
  fail "a second Reservation of a slot gets AlreadyExists" "$out"
fi

# Status subresource: status is written through /status only.
if out=$("$kubectl" patch "ippool/$p" --subresource=status --type=merge \
  -p '{"status":{"total":252,"allocated":1,"available":251,"observedGeneration":1,"conditions":[{"type":"Ready","status":"True","reason":"Counted","message":"","lastTransitionTime":"2025-01-02T15:04:05Z"}]}}' 2>&1); then
  pass "IPPool status written through /status"
else
  fail "IPPool status written through /status" "$out"
fi
refused_status() {
  local out
  if out=$("$kubectl" patch "ippool/$p" --subresource=status --type=merge -p "$2" 2>&1); then
    fail "refuses $1" "accepted: $out"
  elif [[ $out != *"$3"* ]]; then
    fail "refuses $1" "message lacks '$3': $out"
  else
    pass "refuses $1"
  fi
}
refused_status "a condition without reason" '{"status":{"conditions":[{"type":"Ready","status":"True","message":"","lastTransitionTime":"2025-01-02T15:04:05Z"}]}}' "reason: Required value"
refused_status "a condition status Maybe" '{"status":{"conditions":[{"type":"Ready","status":"Maybe","reason":"X","message":"","lastTransitionTime":"2025-01-02T15:04:05Z"}]}}' 'Unsupported value: "Maybe"'

# Printer columns.
header() { "$kubectl" get "$1" -n "$ns" 2>&1 | head -1 | tr -s ' '; }
expect_eq "IPPool columns" "NAME CIDR TOTAL ALLOCATED AVAILABLE READY AGE" "$(header ippools | sed 's/ $//')"
row=$("$kubectl" get ippool "$p" --no-headers | tr -s ' ' | cut -d' ' -f2-6)
expect_eq "IPPool row shows cidr, counts and Ready" "10.20.0.0/24 252 1 251 True" "$row"
expect_eq "IPClaim columns" "NAME POOL ADDRESS READY AGE" "$(header ipclaims | sed 's/ $//')"
expect_eq "DevicePool columns" "NAME NODE RESOURCE CAPACITY ALLOCATED AVAILABLE READY AGE" "$(header devicepools | sed 's/ $//')"
expect_eq "DevicePool wide columns" "NAME NODE RESOURCE CAPACITY ALLOCATED AVAILABLE READY PUBLISH UNHEALTHY AGE" \
  "$("$kubectl" get devicepools -o wide 2>&1 | head -1 | tr -s ' ' | sed 's/ $//')"
expect_eq "DeviceClaim columns" "NAME RESOURCE COUNT NODE DEVICES READY AGE" "$(header deviceclaims | sed 's/ $//')"
expect_eq "StoragePool columns" "NAME NODE PATH CAPACITY ALLOCATED AVAILABLE READY AGE" "$(header storagepools | sed 's/ $//')"
expect_eq "Volume columns" "NAME SIZE POOL NODE PV READY AGE" "$(header volumes | sed 's/ $//')"
expect_eq "Reservation columns" "NAME POOL SLOT CLAIM AGE" "$(header reservations | sed 's/ $//')"

# Short names and the provisio category.
for s in ipp ipc dp dc sp vol resv; do
  if out=$("$kubectl" get "$s" -n "$ns" -o name 2>&1) && [ -n "$out" ]; then
    pass "short name $s"
  else
    fail "short name $s" "$out"
  fi
done
out=$("$kubectl" get provisio -n "$ns" -o name 2>&1)
want=("ippool.provisio.dev/$p" ipclaim.provisio.dev/c-any devicepool.provisio.dev/"$p"
  deviceclaim.provisio.dev/dc storagepool.provisio.dev/"$p" volume.provisio.dev/vol
  "reservation.provisio.dev/ipnet.$net.10-20-0-5")
missing=()
for w in "${want[@]}"; do grep -qxF "$w" <<<"$out" || missing+=("$w"); done
if ((${#missing[@]} == 0)); then pass "kubectl get provisio lists every kind"; else fail "kubectl get provisio lists every kind" "missing ${missing[*]} in: $out"; fi

# --- result ---------------------------------------------------------------
echo
echo "crd_validation: $passed passed, $failed failed"
if ((failed)); then
  printf '  failed: %s\n' "${failures[@]}"
  exit 1
fi
