#!/usr/bin/env bash
# End-to-end test of the network domain (IPPool / IPClaim) under
# production-like conditions: the operator runs in-cluster as the
# ServiceAccount of config/rbac, with RBAC enforced by the real API server,
# leader election on, two replicas, kill -9 of the leader in the middle of an
# allocation storm and a restart of the API server during another one.
#
#  1. install: CRDs (crds/), namespace provisio-system, config/rbac
#     (idempotent: server-side apply, so a re-run or another test's earlier
#     install is fine);
#  2. the role is not over-broad: `kubectl auth can-i --as=<the SA>` says no
#     to secrets, node deletion, pod creation, ... and yes to what the
#     operator needs;
#  3. one replica in-cluster (KUBERNETES_SERVICE_HOST/PORT, a service-account
#     directory with a token minted by `kubectl create token`, the cluster CA
#     and the namespace, given through PROVISIO_SERVICEACCOUNT_DIR; no
#     KUBECONFIG) with --leader-elect: it takes the Lease, a pool and a few
#     claims (one asking for a fixed address) become Ready, nothing is
#     handed out twice or outside the range, and it never got a 403 (its log
#     and rest_client_requests_total{code="403"} of its /metrics); SIGTERM
#     releases the Lease and exits 0;
#  4. two replicas, one Lease: 300 claims created at once on one pool; once
#     about 50 are Ready the leader is killed with SIGKILL; the standby takes
#     the Lease over and finishes; then the invariants of API.md: addresses
#     distinct (1), one Reservation per claim holding an address, each naming
#     a live claim by uid and the address the claim shows, nothing else held
#     (2), pool status allocated == 300 and available == total - allocated
#     (3). All claims deleted: every Reservation goes, allocated == 0;
#  5. API server restart during a second storm (200 claims, same pool, so
#     released addresses are reused): the operator converges (a replica that
#     lost its lease exits 1, as controller-runtime does, and is started
#     again as a Deployment would) and the invariants hold; all released
#     again; both replicas stop with exit 0 on SIGTERM.
# Timings (time to all Ready, failover) are printed as TAP diagnostics.
#
# The replicas get the flags of config/manager's Deployment (no
# --leader-election-namespace: the Lease goes to the namespace of the
# service-account directory, provisio-system) plus our own Lease name and
# free loopback ports.
#
# One allowance, about the environment rather than the operator: a
# kube-apiserver that was just restarted serves requests a moment before its
# RBAC caches have synced (before /readyz is ok) and answers 403 meanwhile;
# log lines inside that window are counted and printed, not failed, and the
# 403 counter of /metrics is judged from a scrape taken after convergence.
# Knobs: E2E_INCL_STORM (300), E2E_INCL_STORM2 (200), E2E_INCL_KILL_AT (50).
#
# Environment (set by the ctest fixture, see tests/CMakeLists.txt):
#   KUBECONFIG           admin kubeconfig of the control plane (used by the
#                        test's kubectl only; the operator never sees it)
#   PROVISIO_KUBE_DIR    the kube-local directory (pki/ca.crt, run/ports.env)
#   PATH                 with the control plane's bin/ (kubectl) first
#   PROVISIO_BINARY      the built provisio
#   PROVISIO_SOURCE_DIR  the source tree (crds/, config/rbac, hack/)
# Run by hand:
#   hack/kube-local up /tmp/kl-inc
#   KUBECONFIG=/tmp/kl-inc/kubeconfig PROVISIO_KUBE_DIR=/tmp/kl-inc \
#     PATH=/tmp/kl-inc/bin:$PATH PROVISIO_BINARY=build/provisio \
#     PROVISIO_SOURCE_DIR=$PWD bash tests/e2e/ip_incluster_test.sh
#   hack/kube-local down /tmp/kl-inc
# E2E_KEEP=1 keeps the scratch directory (operator logs) even on success.
#
# Output is TAP; the exit status is non-zero if any test failed.
# Test functions run through e2e_test, which shellcheck cannot follow.
# shellcheck disable=SC2317
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init ip-incluster

e2e_require_env KUBECONFIG PROVISIO_KUBE_DIR PROVISIO_BINARY PROVISIO_SOURCE_DIR
e2e_require_cmd kubectl python3
[ -x "$PROVISIO_BINARY" ] || e2e_bail "$PROVISIO_BINARY is not an executable"
[ -r "$PROVISIO_KUBE_DIR/pki/ca.crt" ] || e2e_bail "no $PROVISIO_KUBE_DIR/pki/ca.crt"
[ -r "$PROVISIO_KUBE_DIR/run/ports.env" ] || e2e_bail "no $PROVISIO_KUBE_DIR/run/ports.env"
APISERVER_PORT=$(sed -n 's/^APISERVER_PORT=//p' "$PROVISIO_KUBE_DIR/run/ports.env")
[ -n "$APISERVER_PORT" ] || e2e_bail "no APISERVER_PORT in $PROVISIO_KUBE_DIR/run/ports.env"

SRC=$PROVISIO_SOURCE_DIR
SYS_NS=provisio-system
SA=provisio-controller-manager
SA_USER=system:serviceaccount:$SYS_NS:$SA
suffix=$(date +%s)-$$
NS=e2e-incl-$suffix                  # the claims
LEASE=provisio-e2e-incl-$suffix      # our own Lease: never another run's
POOL_SMALL=incl-small-$suffix        # step 3
POOL_STORM=incl-storm-$suffix        # steps 4 and 5
STORM=${E2E_INCL_STORM:-300}
STORM2=${E2E_INCL_STORM2:-200}
KILL_AT=${E2E_INCL_KILL_AT:-50}
SA_DIR=$E2E_TMP/serviceaccount
CHECK=$E2E_TMP/check.py
STATE=$E2E_TMP/state # values tests hand to later tests (they run in subshells)
mkdir -p "$STATE"

k() { kubectl "$@"; }

# ---- the checker (python3: JSON assertions, no jq) ---------------------------
cat >"$CHECK" <<'PY'
"""Assertions over what the API server holds, for ip_incluster_test.sh.

Every command prints why a condition does not hold (and exits 1), so that
e2e_wait_for can show the last reason on a timeout.
"""
import ipaddress
import json
import re
import subprocess
import sys


def kget(*args):
    out = subprocess.run(["kubectl", "get", "-o", "json", *args], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def claims(ns):
    return kget("ipclaims.provisio.dev", "-n", ns)["items"]


def reservations(pool):
    items = kget("reservations.provisio.dev")["items"]
    return [r for r in items
            if r.get("spec", {}).get("pool", {}).get("kind") == "IPPool"
            and r["spec"]["pool"].get("name") == pool]


def pool_obj(name):
    return kget("ippools.provisio.dev", name)


def cond(obj, ctype):
    for c in obj.get("status", {}).get("conditions", []) or []:
        if c.get("type") == ctype:
            return c
    return None


def is_ready(obj):
    c = cond(obj, "Ready")
    return c is not None and c.get("status") == "True"


def claim_ip(c):
    a = c.get("status", {}).get("address")
    if not a:
        return None
    return ipaddress.ip_interface(a).ip


def allocatable(spec):
    """The set of addresses API.md lets the pool hand out."""
    net = ipaddress.ip_network(spec["cidr"])
    lo = ipaddress.ip_address(spec["rangeStart"]) if spec.get("rangeStart") else net[0]
    hi = ipaddress.ip_address(spec["rangeEnd"]) if spec.get("rangeEnd") else net[-1]
    if net.num_addresses > 1 << 20:
        sys.exit("pool too large for this checker")
    never = set()
    if net.version == 4 and net.prefixlen < 31:
        never |= {net.network_address, net.broadcast_address}
    if spec.get("gateway"):
        never.add(ipaddress.ip_address(spec["gateway"]))
    for e in spec.get("exclude", []) or []:
        never |= set(ipaddress.ip_network(e, strict=False))
    return {a for a in net if lo <= a <= hi and a not in never}


def name(o):
    m = o["metadata"]
    return m["namespace"] + "/" + m["name"] if m.get("namespace") else m["name"]


def short(o):
    """A compact dump of an object for a failure message."""
    o = dict(o)
    meta = dict(o.get("metadata", {}))
    meta.pop("managedFields", None)
    o["metadata"] = meta
    return json.dumps(o, sort_keys=True)[:1500]


def cmd_ready(ns, want):
    """All `want` claims of ns exist and are Ready with an address."""
    cs = claims(ns)
    ready = [c for c in cs if is_ready(c) and claim_ip(c) is not None]
    print("%d of %d claims Ready (want %s)" % (len(ready), len(cs), want))
    waiting = [c for c in cs if not (is_ready(c) and claim_ip(c) is not None)]
    for c in waiting[:5]:
        print("not Ready: %s spec=%s status=%s" % (name(c), json.dumps(c.get("spec")),
                                                  json.dumps(c.get("status"))[:600]))
    return 0 if len(cs) == int(want) and len(ready) == len(cs) else 1


def cmd_count_ready(ns):
    cs = claims(ns)
    print(sum(1 for c in cs if is_ready(c) and claim_ip(c) is not None))
    return 0


def cmd_pool_allocated(pool, want):
    p = pool_obj(pool)
    st = p.get("status", {})
    print("pool %s status: %s" % (pool, json.dumps(st.get("allocated"))))
    return 0 if st.get("allocated") == int(want) and is_ready(p) else 1


def cmd_invariants(ns, pool, want):
    """API.md invariants 1-3 for the claims of ns on pool, after convergence."""
    want = int(want)
    bad = []
    p = pool_obj(pool)
    allowed = allocatable(p["spec"])
    net = ipaddress.ip_network(p["spec"]["cidr"])
    network = p["spec"].get("network", "default")
    cs = [c for c in claims(ns) if c["spec"].get("pool") == pool]
    rs = reservations(pool)
    by_uid = {c["metadata"]["uid"]: c for c in cs}

    # Every claim Ready, with an address of the pool in CIDR form.
    holding = {}
    for c in cs:
        if not is_ready(c):
            bad.append("claim %s not Ready: %s" % (name(c), json.dumps(cond(c, "Ready"))))
        a = c.get("status", {}).get("address")
        if not a:
            bad.append("claim %s has no status.address" % name(c))
            continue
        itf = ipaddress.ip_interface(a)
        if itf.network.prefixlen != net.prefixlen:
            bad.append("claim %s address %s: prefix is not the pool's /%d" % (name(c), a, net.prefixlen))
        if itf.ip not in allowed:
            bad.append("claim %s address %s is not allocatable in pool %s" % (name(c), a, pool))
        if c["spec"].get("address") and ipaddress.ip_address(c["spec"]["address"]) != itf.ip:
            bad.append("claim %s asked for %s, got %s" % (name(c), c["spec"]["address"], a))
        holding.setdefault(itf.ip, []).append(c)
    if len(cs) != want:
        bad.append("%d claims on pool %s in %s, want %d" % (len(cs), pool, ns, want))

    # Invariant 1: no address held by two live claims.
    for ip, who in sorted(holding.items()):
        if len(who) > 1:
            bad.append("INVARIANT 1: %s held by %s" % (ip, ", ".join(name(c) for c in who)))

    # Invariant 2: one Reservation per held address, each naming a live claim
    # (uid) that shows exactly that address; nothing else held.
    held_by = sum(len(w) for w in holding.values())
    if len(rs) != held_by:
        bad.append("INVARIANT 2: %d Reservations for pool %s, %d claims hold an address" % (len(rs), pool, held_by))
    seen_uid = {}
    for r in rs:
        sp = r["spec"]
        slot = ipaddress.ip_address(sp["slot"])
        # ipnet.<network>.<address>: the address is locked once in the
        # pool's network (IPv4 with '-' for '.', IPv6 as 8 groups).
        if slot.version == 4:
            enc = str(slot).replace(".", "-")
        else:
            enc = "-".join("%x" % int(g, 16) for g in slot.exploded.split(":"))
        want_name = "ipnet.%s.%s" % (network, enc)
        if r["metadata"]["name"] != want_name:
            bad.append("Reservation %s: name should be %s" % (r["metadata"]["name"], want_name))
        if sp.get("network") != network \
                or r["metadata"].get("labels", {}).get("provisio.dev/network") != network:
            bad.append("Reservation %s: spec.network %s, label provisio.dev/network %s, want %s (pool %s)"
                       % (r["metadata"]["name"], sp.get("network"),
                          r["metadata"].get("labels", {}).get("provisio.dev/network"), network, pool))
        cl = sp.get("claim", {})
        uid = cl.get("uid")
        if uid in seen_uid:
            bad.append("claim uid %s holds two Reservations: %s and %s" % (uid, seen_uid[uid], r["metadata"]["name"]))
        seen_uid[uid] = r["metadata"]["name"]
        c = by_uid.get(uid)
        if c is None:
            bad.append("INVARIANT 2: Reservation %s names claim %s/%s uid %s, which does not exist: %s"
                       % (r["metadata"]["name"], cl.get("namespace"), cl.get("name"), uid, short(r)))
            continue
        if cl.get("kind") != "IPClaim" or cl.get("namespace") != c["metadata"]["namespace"] \
                or cl.get("name") != c["metadata"]["name"]:
            bad.append("Reservation %s: claim ref %s does not match claim %s" % (r["metadata"]["name"], json.dumps(cl), name(c)))
        if claim_ip(c) != slot:
            bad.append("Reservation %s holds %s for %s, which shows address %s"
                       % (r["metadata"]["name"], slot, name(c), c.get("status", {}).get("address")))
    for c in cs:
        if claim_ip(c) is not None and c["metadata"]["uid"] not in seen_uid:
            bad.append("claim %s shows %s but no Reservation holds it: %s" % (name(c), c["status"]["address"], short(c)))

    # Invariant 3: pool counts equal what the claims hold.
    st = p.get("status", {})
    if st.get("allocated") != held_by:
        bad.append("INVARIANT 3: pool %s status.allocated=%s, claims hold %d" % (pool, st.get("allocated"), held_by))
    if st.get("total") != len(allowed):
        bad.append("pool %s status.total=%s, %d addresses are allocatable" % (pool, st.get("total"), len(allowed)))
    if st.get("available") != len(allowed) - held_by:
        bad.append("pool %s status.available=%s, want %d" % (pool, st.get("available"), len(allowed) - held_by))
    if not is_ready(p):
        bad.append("pool %s not Ready: %s" % (pool, json.dumps(cond(p, "Ready"))))

    print("pool %s: %d claims, %d distinct addresses, %d Reservations, status %s"
          % (pool, len(cs), len(holding), len(rs),
             json.dumps({k: st.get(k) for k in ("total", "allocated", "available")})))
    for b in bad[:40]:
        print("VIOLATION: " + b)
    if len(bad) > 40:
        print("... and %d more" % (len(bad) - 40))
    return 1 if bad else 0


def cmd_released(ns, pool):
    """Every claim of ns is gone, no Reservation of pool is left, allocated 0."""
    cs = claims(ns)
    rs = reservations(pool)
    st = pool_obj(pool).get("status", {})
    print("%d claims left, %d Reservations of %s left, status allocated=%s available=%s"
          % (len(cs), len(rs), pool, st.get("allocated"), st.get("available")))
    for r in rs[:5]:
        print("left: " + short(r))
    for c in cs[:5]:
        print("left: " + short(c))
    return 0 if not cs and not rs and st.get("allocated") == 0 \
        and st.get("available") == st.get("total") else 1


def cmd_identity(log):
    """The identity the operator logged at start ("starting manager")."""
    with open(log, errors="replace") as f:
        for line in f:
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if isinstance(d, dict) and d.get("identity"):
                print(d["identity"])
                return 0
    print("no identity logged yet in " + log)
    return 1


def cmd_rest_code(metrics_file, code):
    """Sum of rest_client_requests_total{code=CODE}; 0 when absent."""
    total = 0.0
    families = False
    pat = re.compile(r'^rest_client_requests_total\{([^}]*)\}\s+(\S+)')
    with open(metrics_file) as f:
        for line in f:
            if line.startswith("# TYPE rest_client_requests_total"):
                families = True
            m = pat.match(line)
            if m and re.search(r'(^|,)code="%s"' % re.escape(code), m.group(1)):
                total += float(m.group(2))
    if not families:
        print("no rest_client_requests_total family in " + metrics_file)
        return 1
    print(int(total))
    return 0


def cmd_manifest(ns, pool, prefix, count, parts, outdir):
    """Split `count` claims named prefix-N into `parts` files in outdir."""
    count, parts = int(count), int(parts)
    files = [open("%s/part-%d.yaml" % (outdir, i), "w") for i in range(parts)]
    for i in range(count):
        files[i % parts].write(
            "---\napiVersion: provisio.dev/v1alpha1\nkind: IPClaim\n"
            "metadata:\n  name: %s-%d\n  namespace: %s\nspec:\n  pool: %s\n"
            % (prefix, i, ns, pool))
    for f in files:
        f.close()
    return 0


if __name__ == "__main__":
    cmd = sys.argv[1].replace("-", "_")
    sys.exit(globals()["cmd_" + cmd](*sys.argv[2:]))
PY
check() { python3 "$CHECK" "$@"; }

# ---- cleanup -----------------------------------------------------------------
# Runs after every operator was stopped, so claims may still carry the
# finalizer: strip it (as admin) so the namespace can go, and remove our
# Reservations, pools and Lease. provisio-system, the CRDs and the RBAC stay.
cleanup() {
  local obj
  for obj in $(k get ipclaims.provisio.dev -n "$NS" -o name 2>/dev/null); do
    k patch -n "$NS" "$obj" --type=merge -p '{"metadata":{"finalizers":null}}' &
  done
  wait
  k delete namespace "$NS" --wait=false
  # Ours by the pool they were taken through (their names are
  # ipnet.<network>.<address>, which do not say the pool).
  k get reservations.provisio.dev -o name \
    -l "provisio.dev/pool-kind=IPPool,provisio.dev/pool in ($POOL_SMALL,$POOL_STORM)" 2>/dev/null |
    xargs -r -n 50 kubectl delete --wait=false
  for obj in "$POOL_SMALL" "$POOL_STORM"; do
    k patch ippools.provisio.dev "$obj" --type=merge -p '{"metadata":{"finalizers":null}}'
    k delete ippools.provisio.dev "$obj" --wait=false
  done
  k delete lease -n "$SYS_NS" "$LEASE" --wait=false
}
e2e_on_exit cleanup

# ---- operator replicas -------------------------------------------------------

# start_replica NAME: run the operator in-cluster as the ServiceAccount, the
# way a pod of config/manager runs it (plus our own Lease name),
# with metrics and probes on free loopback ports (NAME.metrics, NAME.probe in
# $STATE).
start_replica() {
  local name=$1 mport pport run=1
  # One log per start (NAME.1.log, NAME.2.log, ...): the identity is new.
  while [ -e "$E2E_TMP/$name.$run.log" ]; do run=$((run + 1)); done
  mport=$(e2e_free_port)
  pport=$(e2e_free_port)
  while [ "$pport" = "$mport" ]; do pport=$(e2e_free_port); done
  echo "$mport" >"$STATE/$name.metrics"
  echo "$pport" >"$STATE/$name.probe"
  e2e_bg_start "$name" "$E2E_TMP/$name.$run.log" \
    env -u KUBECONFIG \
    KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT="$APISERVER_PORT" \
    PROVISIO_SERVICEACCOUNT_DIR="$SA_DIR" HOME="$E2E_TMP" \
    "$PROVISIO_BINARY" --leader-elect --leader-election-id="$LEASE" \
    --metrics-bind-address="127.0.0.1:$mport" \
    --health-probe-bind-address="127.0.0.1:$pport"
}

ready_probe() { e2e_http_get "http://127.0.0.1:$(cat "$STATE/$1.probe")/readyz"; }

# scrape NAME FILE: save NAME's /metrics to FILE.
scrape() { e2e_http_get "http://127.0.0.1:$(cat "$STATE/$1.metrics")/metrics" >"$2"; }

identity_of() { check identity "$(e2e_bg_log "$1")"; }

lease_holder() { k get lease -n "$SYS_NS" "$LEASE" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null; }

holder_is() { [ "$(lease_holder)" = "$1" ]; }

# wait_leader NAME LIMIT: NAME holds the Lease within LIMIT seconds.
wait_leader() {
  local id
  e2e_wait_for 10 "$1 logs its identity" identity_of "$1"
  id=$(identity_of "$1")
  e2e_wait_for "$2" "$1 ($id) holds Lease $SYS_NS/$LEASE (holder: $(lease_holder))" holder_is "$id"
}

# rest_code NAME CODE: rest_client_requests_total{code=CODE} of NAME's
# /metrics (scraped now into NAME.metrics.txt; for a replica that is gone,
# the last scrape before it went), minus the baseline saved by
# save_baseline from the same process. Prints nothing when there is no
# scrape at all.
rest_code() {
  local n=$1 code=$2 m=$E2E_TMP/$1.metrics.txt now base=0
  if e2e_bg_alive "$n"; then
    scrape "$n" "$m" || e2e_fail "cannot scrape /metrics of $n"
    e2e_bg_pid "$n" >"$m.pid"
  fi
  [ -s "$m" ] || return 0
  now=$(check rest-code "$m" "$code") || e2e_fail "$now"
  if [ -s "$m.base" ] && [ "$(cat "$m.base.pid")" = "$(cat "$m.pid" 2>/dev/null)" ]; then
    base=$(check rest-code "$m.base" "$code")
  fi
  echo $((now - base))
}

# save_baseline NAME...: scrape the replicas now; later rest_code calls
# count only what came after (used after the API server restart window).
save_baseline() {
  local n m
  for n in "$@"; do
    e2e_bg_alive "$n" || continue
    m=$E2E_TMP/$n.metrics.txt
    scrape "$n" "$m.base" || e2e_fail "cannot scrape /metrics of $n"
    e2e_bg_pid "$n" >"$m.base.pid"
  done
}

# assert_no_403 NAME...: no 403 in the replicas' logs (every start) nor in
# their rest_client_requests_total (see rest_code), except log lines inside
# the API server restart window ($STATE/restart.window), which are counted
# and reported: a kube-apiserver serves requests a moment before its RBAC
# caches have synced (before /readyz is ok), and answers 403 meanwhile.
assert_no_403() {
  local n logs=() out window=-
  [ -s "$STATE/restart.window" ] && window=$(cat "$STATE/restart.window")
  for n in "$@"; do
    logs+=("$E2E_TMP/$n".*.log)
    out=$(rest_code "$n" 403)
    [ "${out:-0}" = 0 ] || e2e_fail "$n: rest_client_requests_total{code=\"403\"} rose by $out" \
      "$(grep '^rest_client_requests_total' "$E2E_TMP/$n.metrics.txt")"
    out=$(rest_code "$n" 401)
    [ "${out:-0}" = 0 ] || e2e_fail "$n: rest_client_requests_total{code=\"401\"} rose by $out"
  done
  out=$(python3 "$SRC/tests/e2e/logcheck.py" no-forbidden "$window" "${logs[@]}") || e2e_fail "403/Forbidden in the operator log:" "$out"
  [ "$out" = "tolerated 0" ] ||
    e2e_diag "${out#tolerated } log lines with 403 while kube-apiserver was starting (before /readyz; RBAC caches not synced): tolerated"
}

# create_storm PREFIX COUNT: create COUNT claims on POOL_STORM at once (four
# kubectl processes in parallel).
create_storm() {
  local dir=$E2E_TMP/$1 pids=() f rc=0
  mkdir -p "$dir"
  check manifest "$NS" "$POOL_STORM" "$1" "$2" 4 "$dir"
  for f in "$dir"/part-*.yaml; do
    k create -f "$f" >/dev/null &
    pids+=($!)
  done
  for f in "${pids[@]}"; do
    wait "$f" || rc=1
  done
  return "$rc"
}

# ---- 1. install --------------------------------------------------------------

# terminating_namespaces: the names of namespaces being deleted.
terminating_namespaces() {
  k get namespaces -o jsonpath='{range .items[?(@.status.phase=="Terminating")]}{.metadata.name} {end}'
}

test_install_crds_and_rbac() {
  # The operator watches IPClaims cluster-wide. Claims left in a namespace
  # an earlier test is still deleting get reconciled too, and their Events
  # are refused with 403 (NamespaceLifecycle), which the no-403 checks would
  # count. Start on a quiet cluster.
  local t0 deadline left
  t0=$(e2e_now)
  deadline=$(($(date +%s) + 180))
  while left=$(terminating_namespaces) && [ -n "$left" ]; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      e2e_diag "namespaces still terminating after 180 s: $left(Events into them get 403)"
      break
    fi
    sleep 1
  done
  [ -n "$left" ] || e2e_diag "no namespace terminating ($(e2e_since "$t0") s waited)"
  k apply --server-side --force-conflicts -f "$SRC/crds/" >/dev/null
  k wait --for=condition=Established --timeout=60s \
    crd/ippools.provisio.dev crd/ipclaims.provisio.dev crd/reservations.provisio.dev >/dev/null
  k get namespace "$SYS_NS" >/dev/null 2>&1 || k create namespace "$SYS_NS" >/dev/null
  k apply --server-side --force-conflicts -k "$SRC/config/rbac" >/dev/null
  k create namespace "$NS" >/dev/null
  # Wait for the default ServiceAccount controller (namespace usable) and
  # for the operator's own ServiceAccount.
  k get serviceaccount -n "$SYS_NS" "$SA" >/dev/null
}

test_service_account_dir() {
  mkdir -p "$SA_DIR"
  k create token "$SA" -n "$SYS_NS" --duration=1h >"$SA_DIR/token"
  [ -s "$SA_DIR/token" ] || e2e_fail "kubectl create token gave nothing"
  cp "$PROVISIO_KUBE_DIR/pki/ca.crt" "$SA_DIR/ca.crt"
  echo "$SYS_NS" >"$SA_DIR/namespace"
  # The token is the SA's: the API server says who it is.
  local who
  who=$(k --token="$(cat "$SA_DIR/token")" --kubeconfig=/dev/null \
    --server="https://127.0.0.1:$APISERVER_PORT" --certificate-authority="$SA_DIR/ca.crt" \
    auth whoami -o jsonpath='{.status.userInfo.username}')
  [ "$who" = "$SA_USER" ] || e2e_fail "token authenticates as '$who', want $SA_USER"
}

# ---- 2. RBAC is not over-broad -----------------------------------------------

test_role_is_not_over_broad() {
  local -a denied=(
    "get secrets -A"
    "list secrets -n $SYS_NS"
    "watch secrets -n kube-system"
    "delete nodes"
    "patch nodes"
    "create pods -n default"
    "create pods -n $SYS_NS"
    "delete pods -A"
    "create serviceaccounts --subresource=token -n $SYS_NS"
    "create ippools.provisio.dev"
    "delete ippools.provisio.dev"
    "create ipclaims.provisio.dev -n default"
    "delete ipclaims.provisio.dev -A"
    "update reservations.provisio.dev"
    "create leases.coordination.k8s.io -n default"
    "update leases.coordination.k8s.io -n kube-system"
    "create clusterrolebindings"
    "bind clusterroles"
    "escalate clusterroles"
    "impersonate users"
    "delete customresourcedefinitions"
    "delete namespaces"
  )
  local -a allowed=(
    "list ippools.provisio.dev"
    "watch ipclaims.provisio.dev -A"
    "update ipclaims.provisio.dev -n default"
    "patch ipclaims.provisio.dev --subresource=status -n default"
    "update ippools.provisio.dev --subresource=status"
    "create reservations.provisio.dev"
    "delete reservations.provisio.dev"
    "list reservations.provisio.dev"
    "create events -n default"
    "get leases.coordination.k8s.io -n $SYS_NS"
    "update leases.coordination.k8s.io -n $SYS_NS"
    "create leases.coordination.k8s.io -n $SYS_NS"
  )
  # Ask in parallel (one kubectl per question, 8 at a time): "want<TAB>query<TAB>answer".
  local out
  # shellcheck disable=SC2016 # the script of bash -c expands its own variables
  out=$( {
    printf 'no\t%s\n' "${denied[@]}"
    printf 'yes\t%s\n' "${allowed[@]}"
  } | xargs -d '\n' -P 8 -I{} bash -c '
      want=${1%%$(printf "\t")*} q=${1#*$(printf "\t")}
      ans=$(kubectl auth can-i --as="$2" $q 2>/dev/null || true)
      printf "%s\t%s\t%s\n" "$want" "$q" "$ans"' _ {} "$SA_USER")
  local n bad=() want q ans
  n=$(printf '%s\n' "$out" | grep -c .)
  ((n == ${#denied[@]} + ${#allowed[@]})) || e2e_fail "asked $((${#denied[@]} + ${#allowed[@]})) questions, got $n answers"
  while IFS=$'\t' read -r want q ans; do
    [ "$ans" = "$want" ] || bad+=("can-i $q: '$ans', want $want")
  done <<<"$out"
  ((${#bad[@]} == 0)) || e2e_fail "${bad[@]}"
}

# ---- 3. one replica in-cluster -----------------------------------------------

test_operator_runs_in_cluster_and_leads() {
  start_replica op1
  e2e_wait_for 30 "op1 /readyz ok" ready_probe op1
  wait_leader op1 30
  local log
  log=$(e2e_bg_log op1)
  grep -q '"inCluster":true' "$log" || e2e_fail "op1 does not say inCluster:true" \
    "$(head -n 3 "$log")"
  grep -q "\"server\":\"https://127.0.0.1:$APISERVER_PORT\"" "$log" ||
    e2e_fail "op1 does not use the in-cluster server https://127.0.0.1:$APISERVER_PORT"
  grep -q "\"leaderElectionNamespace\":\"$SYS_NS\"" "$log" ||
    e2e_fail "op1 did not take the Lease namespace from the service-account directory"
}

test_small_pool_claims_become_ready() {
  k apply -f - >/dev/null <<EOF
apiVersion: provisio.dev/v1alpha1
kind: IPPool
metadata:
  name: $POOL_SMALL
spec:
  cidr: 10.61.0.0/24
  gateway: 10.61.0.1
  rangeStart: 10.61.0.2
  rangeEnd: 10.61.0.20
  exclude: [10.61.0.5, 10.61.0.8/30]
  routes:
    - dst: 0.0.0.0/0
      gw: 10.61.0.1
EOF
  # The fixed claim first: a claim without spec.address may be handed
  # 10.61.0.17 too, and then small-fixed would rightly wait (AddressInUse).
  printf -- '---\napiVersion: provisio.dev/v1alpha1\nkind: IPClaim\nmetadata:\n  name: small-fixed\n  namespace: %s\nspec:\n  pool: %s\n  address: 10.61.0.17\n' \
    "$NS" "$POOL_SMALL" | k apply -f - >/dev/null
  e2e_wait_for 60 "small-fixed Ready" check ready "$NS" 1
  local i
  for i in 1 2 3 4 5; do
    printf -- '---\napiVersion: provisio.dev/v1alpha1\nkind: IPClaim\nmetadata:\n  name: small-%d\n  namespace: %s\nspec:\n  pool: %s\n' \
      "$i" "$NS" "$POOL_SMALL"
  done | k apply -f - >/dev/null
  e2e_wait_for 60 "6 claims Ready" check ready "$NS" 6
  k wait --for=condition=Ready --timeout=30s -n "$NS" ipclaim/small-1 >/dev/null
  e2e_wait_for 30 "pool $POOL_SMALL allocated 6" check pool-allocated "$POOL_SMALL" 6
  local out
  out=$(check invariants "$NS" "$POOL_SMALL" 6) || e2e_fail "$out"
  e2e_diag "$out"
  # What a person reads: the fixed address, the gateway, the routes.
  local got
  got=$(k get ipclaim -n "$NS" small-fixed -o jsonpath='{.status.address} {.status.gateway} {.status.routes[0].dst}')
  [ "$got" = "10.61.0.17/24 10.61.0.1 0.0.0.0/0" ] ||
    e2e_fail "small-fixed status: '$got', want '10.61.0.17/24 10.61.0.1 0.0.0.0/0'"
}

test_no_403_as_the_service_account() {
  assert_no_403 op1
}

test_release_of_small_claims() {
  k delete ipclaims.provisio.dev -n "$NS" --all --wait=false >/dev/null
  e2e_wait_for 60 "claims of $POOL_SMALL released" check released "$NS" "$POOL_SMALL"
  k delete ippools.provisio.dev "$POOL_SMALL" --wait=true --timeout=30s >/dev/null
}

test_sigterm_releases_lease_and_exits_0() {
  local rc start
  start=$(e2e_now)
  rc=$(e2e_bg_stop op1 TERM 15)
  [ "$rc" = 0 ] || e2e_fail "op1 exited $rc on SIGTERM, want 0" "$(tail -n 20 "$(e2e_bg_log op1)")"
  holder_is "" || e2e_fail "Lease still held by '$(lease_holder)' after a clean stop"
  e2e_diag "SIGTERM to exit: $(e2e_since "$start") s"
}

# ---- 4. two replicas, a storm, kill -9 of the leader ---------------------------

test_two_replicas_one_leads() {
  k apply -f - >/dev/null <<EOF
apiVersion: provisio.dev/v1alpha1
kind: IPPool
metadata:
  name: $POOL_STORM
spec:
  cidr: 10.62.0.0/22
  gateway: 10.62.0.1
  exclude: [10.62.3.0/24]
EOF
  start_replica op-a
  e2e_wait_for 30 "op-a /readyz ok" ready_probe op-a
  wait_leader op-a 30
  start_replica op-b
  e2e_wait_for 30 "op-b /readyz ok (a standby keeps warm caches)" ready_probe op-b
  e2e_wait_for 10 "op-b logs its identity" identity_of op-b
  holder_is "$(identity_of op-a)" || e2e_fail "the Lease moved to $(lease_holder)"
  e2e_wait_for 30 "pool $POOL_STORM Ready with allocated 0" check pool-allocated "$POOL_STORM" 0
}

test_storm_with_leader_killed() {
  local leader standby t0 n t_kill id_standby
  leader=op-a
  standby=op-b
  id_standby=$(identity_of "$standby")
  t0=$(e2e_now)
  echo "$t0" >"$STATE/storm.t0"
  create_storm storm "$STORM" || e2e_fail "creating $STORM claims failed"
  e2e_diag "$STORM claims created in $(e2e_since "$t0") s (4 kubectl in parallel)"
  # Kill the leader once about KILL_AT claims are Ready.
  n=0
  local deadline=$((SECONDS + 120))
  while :; do
    n=$(check count-ready "$NS")
    ((n >= KILL_AT)) && break
    ((SECONDS < deadline)) || e2e_fail "only $n of $STORM Ready after 120 s: allocation too slow or stuck"
    sleep 0.1
  done
  # The leader must still be the leader (nothing else moved the Lease).
  holder_is "$(identity_of "$leader")" || e2e_fail "$leader does not hold the Lease before the kill"
  scrape "$leader" "$E2E_TMP/$leader.metrics.txt" || true
  kill -s KILL "$(e2e_bg_pid "$leader")"
  t_kill=$(e2e_now)
  e2e_diag "kill -9 $leader with $n of $STORM Ready, $(e2e_since "$t0") s after the storm began"
  ((n < STORM)) || e2e_diag "NOTE: every claim was Ready before the kill; the failover ran after the storm"
  echo "$n" >"$STATE/storm.ready_at_kill"
  e2e_bg_wait "$leader" 10 >/dev/null || e2e_fail "$leader survived kill -9"
  # The standby takes the Lease once it expires (15 s) plus a retry (2 s).
  e2e_wait_for 40 "$standby takes the Lease over" holder_is "$id_standby"
  local failover
  failover=$(e2e_since "$t_kill")
  echo "$failover" >"$STATE/storm.failover"
  e2e_diag "failover: $standby leads $failover s after kill -9 (lease duration 15 s, retry period 2 s)"
  # client-go's bound, which leader.c follows: a candidate retries every
  # retry period plus up to 120 % jitter (2 .. 4.4 s), so it notices the
  # last renewal up to 4.4 s late, counts the lease duration from then, and
  # takes the Lease at its next try, up to 4.4 s after expiry: 15 + 2 x 4.4,
  # plus 1.5 s for our polling of the Lease.
  python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) <= 15 + 2 * 4.4 + 1.5 else 1)' "$failover" ||
    e2e_fail "failover took $failover s, more than lease duration + 2 jittered retry periods (25.3 s)"
  e2e_wait_for 180 "all $STORM claims Ready" check ready "$NS" "$STORM"
  e2e_diag "time to all $STORM Ready: $(e2e_since "$t0") s from the first create ($(e2e_since "$t_kill") s after the kill)"
}

test_storm_invariants() {
  e2e_wait_for 60 "pool $POOL_STORM allocated $STORM" check pool-allocated "$POOL_STORM" "$STORM"
  local out
  out=$(check invariants "$NS" "$POOL_STORM" "$STORM") || e2e_fail "$out"
  e2e_diag "$out"
}

test_storm_no_403() {
  assert_no_403 op-a op-b
}

test_storm_release() {
  local t0
  t0=$(e2e_now)
  k delete ipclaims.provisio.dev -n "$NS" --all --wait=false >/dev/null
  e2e_wait_for 180 "all claims and Reservations of $POOL_STORM released" \
    check released "$NS" "$POOL_STORM"
  e2e_diag "released $STORM claims in $(e2e_since "$t0") s"
}

# ---- 5. API server restart during a storm --------------------------------------

# restart_lost_replicas NAME...: a replica that exited 1 after "leader
# election lost" is started again (its Deployment would); any other exit is
# a failure (crash).
restart_lost_replicas() {
  local n rc
  for n in "$@"; do
    e2e_bg_alive "$n" && continue
    rc=$(e2e_bg_status "$n")
    if [ "$rc" = 1 ] && grep -q 'leader election lost' "$(e2e_bg_log "$n")"; then
      e2e_diag "$n exited 1 after losing the Lease; starting it again"
      start_replica "$n"
    else
      e2e_fail "$n ended with status $rc" "$(tail -n 30 "$(e2e_bg_log "$n")")"
    fi
  done
}

test_apiserver_restart_during_storm() {
  # op-b leads; op-a comes back as the standby.
  start_replica op-a
  e2e_wait_for 30 "op-a /readyz ok" ready_probe op-a
  local t0 n
  t0=$(e2e_now)
  create_storm storm2 "$STORM2" || e2e_fail "creating $STORM2 claims failed"
  local deadline=$((SECONDS + 120))
  while :; do
    n=$(check count-ready "$NS")
    ((n >= KILL_AT)) && break
    ((SECONDS < deadline)) || e2e_fail "only $n of $STORM2 Ready after 120 s"
    sleep 0.1
  done
  e2e_diag "restarting kube-apiserver with $n of $STORM2 Ready"
  local tr
  tr=$(e2e_now)
  "$SRC/hack/kube-local" restart-apiserver "$PROVISIO_KUBE_DIR" >"$E2E_TMP/restart.log" 2>&1 ||
    e2e_fail "restart-apiserver failed" "$(tail -n 20 "$E2E_TMP/restart.log")"
  # restart-apiserver returns once /readyz is ok; 1 s of slack for the
  # answers in flight at that moment.
  echo "$tr,$(python3 -c 'import time; print(time.time() + 1)')" >"$STATE/restart.window"
  e2e_diag "kube-apiserver back after $(e2e_since "$tr") s"
  local end=$((SECONDS + 180))
  until check ready "$NS" "$STORM2" >/dev/null 2>&1; do
    restart_lost_replicas op-a op-b
    ((SECONDS < end)) || break
    sleep 0.5
  done
  e2e_wait_for 5 "all $STORM2 claims Ready after the restart" check ready "$NS" "$STORM2"
  e2e_diag "time to all $STORM2 Ready: $(e2e_since "$t0") s (API server restart included)"
  e2e_wait_for 60 "pool $POOL_STORM allocated $STORM2" check pool-allocated "$POOL_STORM" "$STORM2"
  local out
  out=$(check invariants "$NS" "$POOL_STORM" "$STORM2") || e2e_fail "$out"
  e2e_diag "$out"
  save_baseline op-a op-b
}

test_release_after_restart_and_clean_stop() {
  restart_lost_replicas op-a op-b
  k delete ipclaims.provisio.dev -n "$NS" --all --wait=false >/dev/null
  e2e_wait_for 180 "all claims and Reservations of $POOL_STORM released" \
    check released "$NS" "$POOL_STORM"
  assert_no_403 op-a op-b
  local n rc
  for n in op-a op-b; do
    rc=$(e2e_bg_stop "$n" TERM 15)
    [ "$rc" = 0 ] || e2e_fail "$n exited $rc on SIGTERM, want 0" "$(tail -n 20 "$(e2e_bg_log "$n")")"
  done
  holder_is "" || e2e_fail "Lease still held by '$(lease_holder)' after both stopped"
}

# ---- run ---------------------------------------------------------------------

e2e_diag "operator: $PROVISIO_BINARY; API server: https://127.0.0.1:$APISERVER_PORT; namespace $NS; Lease $SYS_NS/$LEASE"
e2e_test "install CRDs, provisio-system and config/rbac (idempotent)" test_install_crds_and_rbac
e2e_last_ok || e2e_bail "cannot install"
e2e_test "service-account dir: a token of $SA, the cluster CA, the namespace" test_service_account_dir
e2e_last_ok || e2e_bail "no service-account token"
e2e_test "the manager role is not over-broad (kubectl auth can-i --as the SA)" test_role_is_not_over_broad
e2e_test "operator runs in-cluster as the SA and takes the Lease" test_operator_runs_in_cluster_and_leads
e2e_last_ok || e2e_bail "the operator does not run in-cluster"
e2e_test "pool with gateway, range and excludes: claims Ready, fixed address honoured" \
  test_small_pool_claims_become_ready
e2e_test "no 403 in the operator log nor in rest_client_requests_total" test_no_403_as_the_service_account
e2e_test "claims deleted: Reservations gone, allocated 0" test_release_of_small_claims
e2e_test "SIGTERM releases the Lease and exits 0" test_sigterm_releases_lease_and_exits_0
e2e_test "two replicas on one Lease: one leads, the standby is ready" test_two_replicas_one_leads
e2e_last_ok || e2e_bail "no two replicas"
e2e_test "$STORM claims at once, leader killed -9 mid-storm: standby takes over, all Ready" \
  test_storm_with_leader_killed
e2e_test "invariants 1-3 after the storm and the failover" test_storm_invariants
e2e_test "no 403 in either replica" test_storm_no_403
e2e_test "all $STORM claims deleted: every Reservation gone, allocated 0" test_storm_release
e2e_last_ok || e2e_bail "the storm's claims were not released; no second storm on this pool"
e2e_test "kube-apiserver restarted during a storm of $STORM2: converges, invariants hold" \
  test_apiserver_restart_during_storm
e2e_test "released again; both replicas exit 0 on SIGTERM, Lease released" \
  test_release_after_restart_and_clean_stop
e2e_done
