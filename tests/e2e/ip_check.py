"""Checks of the network domain's e2e tests (ip_network_test.sh,
ip_upgrade_test.sh), reading the cluster with kubectl.

    python3 ip_check.py CMD ARGS...

Each command prints why its check does not hold and exits 1 (so that
e2e_wait_for explains a timeout); see the cmd_* functions.
"""
import ipaddress, json, subprocess, sys

def kget(*args):
    out = subprocess.run(["kubectl", "get", *args, "-o", "json"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)["items"]

def ready_of(o):
    for c in o.get("status", {}).get("conditions", []) or []:
        if c.get("type") == "Ready":
            return c
    return {}

def cond_of(o, t):
    for c in o.get("status", {}).get("conditions", []) or []:
        if c.get("type") == t:
            return c
    return {}

def allocatable(spec):
    """The allocatable addresses of a small pool spec (a set)."""
    net = ipaddress.ip_network(spec["cidr"])
    lo = ipaddress.ip_address(spec.get("rangeStart", str(net.network_address)))
    hi = ipaddress.ip_address(spec.get("rangeEnd", str(net.broadcast_address)))
    gw = spec.get("gateway")
    excl = [ipaddress.ip_network(e) for e in spec.get("exclude", []) or []]
    s = set()
    for a in net:
        if net.version == 4 and net.prefixlen <= 30 and a in (net.network_address, net.broadcast_address):
            continue
        if gw and a == ipaddress.ip_address(gw):
            continue
        if any(a in e for e in excl) or not (lo <= a <= hi):
            continue
        s.add(a)
    return s

def dashed(a):
    return str(a).replace(".", "-")

def world(ns, pools):
    claims = kget("ipclaims.provisio.dev", "-n", ns)
    allpools = {p["metadata"]["name"]: p for p in kget("ippools.provisio.dev")}
    resv = kget("reservations.provisio.dev", "-l", "provisio.dev/pool-kind=IPPool")
    return claims, {n: allpools[n] for n in pools if n in allpools}, resv

def net_of(pool):
    return pool["spec"].get("network", "<unset>")

def cmd_invariants(ns, prefix, *pools):
    """Invariants 1-3 for the claims of ns named prefix* and the pools:
    prints "ready-per-pool..." on success."""
    claims, P, resv = world(ns, pools)
    bad = []
    if len(P) != len(pools):
        print("pools missing: %s" % sorted(set(pools) - set(P)))
        sys.exit(1)
    sets = {n: allocatable(p["spec"]) for n, p in P.items()}
    mine = [c for c in claims if c["metadata"]["name"].startswith(prefix)]
    byname = {c["metadata"]["name"]: c for c in claims}
    # 1. Ready claims: an address of their pool, distinct per network.
    held = {}  # (network, address) -> claim
    ready = {n: 0 for n in P}
    for c in mine:
        name, st = c["metadata"]["name"], c.get("status", {})
        r = ready_of(c)
        pool = c["spec"]["pool"]
        if pool not in P:
            bad.append("%s: pool %s is not one of %s" % (name, pool, sorted(P)))
            continue
        if r.get("status") != "True":
            if r.get("reason") != "PoolExhausted":
                bad.append("%s (pool %s): not Ready, reason %r: %s" % (name, pool, r.get("reason"), r.get("message")))
            elif P[pool].get("status", {}).get("available") != 0:
                bad.append("%s: PoolExhausted but pool %s has available %r" % (name, pool, P[pool].get("status", {}).get("available")))
            if st.get("address"):
                bad.append("%s: not Ready but shows address %s" % (name, st["address"]))
            continue
        ready[pool] += 1
        iface = ipaddress.ip_interface(st.get("address", "0.0.0.0/0"))
        net = ipaddress.ip_network(P[pool]["spec"]["cidr"])
        if iface.network.prefixlen != net.prefixlen:
            bad.append("%s %s: prefix is not /%d" % (name, st.get("address"), net.prefixlen))
        if iface.ip not in sets[pool]:
            bad.append("%s %s: not allocatable in pool %s" % (name, st.get("address"), pool))
        if st.get("pool") != pool:
            bad.append("%s: status.pool %r, spec.pool %s" % (name, st.get("pool"), pool))
        key = (net_of(P[pool]), iface.ip)
        if key in held:
            bad.append("%s %s: also held by %s in network %s" % (name, iface.ip, held[key], key[0]))
        held[key] = name
    # 2. Reservations of these pools: ipnet.<network>.<address>, each of a
    # Ready claim holding that address, with the labels and spec of it.
    per_claim = {}
    for r in resv:
        name, lab, sp = r["metadata"]["name"], r["metadata"].get("labels", {}), r["spec"]
        if sp["pool"]["name"] not in P:
            continue
        if sp["claim"].get("namespace") != ns:
            bad.append("Reservation %s of pool %s is of a claim in %s" % (name, sp["pool"]["name"], sp["claim"].get("namespace")))
            continue
        if not sp["claim"]["name"].startswith(prefix):
            continue
        pool = sp["pool"]["name"]
        net = net_of(P[pool])
        want = "ipnet.%s.%s" % (net, dashed(ipaddress.ip_address(sp["slot"])))
        if name != want:
            bad.append("Reservation %s: name is not %s" % (name, want))
        if lab.get("provisio.dev/pool-kind") != "IPPool" or lab.get("provisio.dev/pool") != pool \
                or lab.get("provisio.dev/network") != net:
            bad.append("Reservation %s: labels %s (pool %s, network %s)" % (name, lab, pool, net))
        c = byname.get(sp["claim"]["name"])
        if c is None or c["metadata"]["uid"] != sp["claim"].get("uid"):
            bad.append("Reservation %s: of no live claim (%s)" % (name, sp["claim"]))
            continue
        per_claim.setdefault(c["metadata"]["name"], []).append(r)
        if c["spec"]["pool"] != pool:
            bad.append("Reservation %s: taken through %s, the claim's pool is %s" % (name, pool, c["spec"]["pool"]))
        addr = c.get("status", {}).get("address", "")
        if ready_of(c).get("status") != "True" or addr.split("/")[0] != sp["slot"]:
            bad.append("Reservation %s (slot %s): claim %s shows %r, Ready %r" % (name, sp["slot"], c["metadata"]["name"], addr, ready_of(c).get("status")))
    for c in mine:
        n = c["metadata"]["name"]
        if ready_of(c).get("status") == "True" and len(per_claim.get(n, [])) != 1:
            bad.append("%s: %d Reservations, want 1: %s" % (n, len(per_claim.get(n, [])), [r["metadata"]["name"] for r in per_claim.get(n, [])]))
    # 3. Pool counts: allocated = held through it; available = total - the
    # addresses of its network held (through any pool) in its set.
    netheld = {}
    for r in resv:
        lab = r["metadata"].get("labels", {})
        if r["metadata"]["name"].startswith("ipnet.") and "provisio.dev/network" in lab:
            netheld.setdefault(lab["provisio.dev/network"], set()).add(ipaddress.ip_address(r["spec"]["slot"]))
    for n, p in P.items():
        st = p.get("status", {})
        through = sum(1 for r in resv if r["spec"]["pool"]["name"] == n)
        want = (len(sets[n]), through, len(sets[n]) - len(sets[n] & netheld.get(net_of(p), set())))
        got = (st.get("total"), st.get("allocated"), st.get("available"))
        if got != want:
            bad.append("pool %s: total/allocated/available %s, want %s" % (n, got, want))
        if through != sum(1 for c in claims if c["spec"]["pool"] == n and ready_of(c).get("status") == "True"):
            bad.append("pool %s: %d Reservations, but a different number of Ready claims" % (n, through))
    if bad:
        print("\n".join(bad[:12]))
        sys.exit(1)
    print(" ".join(str(ready[n]) for n in pools))

def cmd_pool(name, expr):
    """Evaluate expr over the pool (p), its status (st), its conditions by
    type (cond)."""
    p = kget("ippools.provisio.dev", "--field-selector", "metadata.name=" + name)
    if not p:
        print("no pool %s" % name); sys.exit(1)
    p = p[0]
    st = p.get("status", {})
    cond = {c["type"]: c for c in st.get("conditions", []) or []}
    if not eval("(" + expr + ")"):
        print("pool %s: %s does not hold; spec %s; status %s" % (name, expr, json.dumps(p["spec"]), json.dumps(st)))
        sys.exit(1)

def cmd_claim(ns, name, expr):
    """Evaluate expr over the claim (c), its status (st), Ready (ready)."""
    c = kget("ipclaims.provisio.dev", "-n", ns, "--field-selector", "metadata.name=" + name)
    if not c:
        print("no claim %s/%s" % (ns, name)); sys.exit(1)
    c = c[0]
    st = c.get("status", {})
    ready = ready_of(c)
    if not eval("(" + expr + ")"):
        print("claim %s/%s: %s does not hold; status %s" % (ns, name, expr, json.dumps(st)))
        sys.exit(1)

def cmd_resv(name, expr):
    """Evaluate expr over the Reservation (r), its labels (lab), spec (sp)."""
    r = kget("reservations.provisio.dev", "--field-selector", "metadata.name=" + name)
    if not r:
        print("no Reservation %s" % name); sys.exit(1)
    r = r[0]
    lab, sp = r["metadata"].get("labels", {}), r["spec"]
    if not eval("(" + expr + ")"):
        print("Reservation %s: %s does not hold: %s" % (name, expr, json.dumps(r["metadata"].get("labels")) + " " + json.dumps(sp)))
        sys.exit(1)

def cmd_foreign(mine_csv, cidr):
    """Pools not of this run whose cidr overlaps cidr (in any network)."""
    mine = set(mine_csv.split(","))
    net = ipaddress.ip_network(cidr)
    bad = ["%s (%s, network %s)" % (p["metadata"]["name"], p["spec"]["cidr"], net_of(p))
           for p in kget("ippools.provisio.dev")
           if p["metadata"]["name"] not in mine and ipaddress.ip_network(p["spec"]["cidr"]).overlaps(net)]
    print("\n".join(bad))
    sys.exit(1 if bad else 0)

def cmd_left(ns, *pools):
    """No Reservation of these pools or of a claim of ns; no claim left."""
    bad = ["Reservation %s" % r["metadata"]["name"] for r in kget("reservations.provisio.dev")
           if r["spec"]["pool"]["name"] in pools or r["spec"]["claim"].get("namespace") == ns]
    bad += ["claim %s" % c["metadata"]["name"] for c in kget("ipclaims.provisio.dev", "-n", ns)]
    if bad:
        print("\n".join(bad[:12]))
    sys.exit(1 if bad else 0)

def cmd_snapshot(ns):
    """The Ready claims of ns: "name uid address" lines (address without its
    prefix length)."""
    for c in kget("ipclaims.provisio.dev", "-n", ns):
        st = c.get("status", {})
        if ready_of(c).get("status") == "True" and st.get("address"):
            print("%s %s %s" % (c["metadata"]["name"], c["metadata"]["uid"], st["address"].split("/")[0]))

def read_snapshot(path):
    return [l.split() for l in open(path) if l.strip()]

def cmd_kept(ns, path, *skip):
    """Every claim of the snapshot (but those in skip) is Ready with the
    same uid and address."""
    now = {c["metadata"]["name"]: c for c in kget("ipclaims.provisio.dev", "-n", ns)}
    bad = []
    for n, u, a in read_snapshot(path):
        if n in skip:
            continue
        c = now.get(n)
        if c is None or c["metadata"]["uid"] != u:
            bad.append("%s: gone" % n)
            continue
        addr = c.get("status", {}).get("address", "")
        if ready_of(c).get("status") != "True" or addr.split("/")[0] != a:
            bad.append("%s: held %s, now %r Ready %r" % (n, a, addr, ready_of(c).get("status")))
    if bad:
        print("\n".join(bad[:12]))
    sys.exit(1 if bad else 0)

def cmd_legacy(*pools):
    """Reservations of the pools still named the old way
    (ippool.<pool>.<address>): listed, exit 1 if any."""
    bad = [r["metadata"]["name"] for r in kget("reservations.provisio.dev")
           if r["spec"]["pool"]["name"] in pools and not r["metadata"]["name"].startswith("ipnet.")]
    if bad:
        print("\n".join(bad[:12]))
    sys.exit(1 if bad else 0)

def cmd_history(path, claims_watch, resv_watch, *skip):
    """Over every state the watches saw (kubectl get -w, in resourceVersion
    order): no address of the snapshot (path; claims in skip left out) was
    ever shown by another claim or locked by a Reservation of another claim,
    and no two claims (but those in skip) ever showed one address at once. claims_watch lines:
    "name uid [address]"; resv_watch lines: "name slot claim-uid"."""
    snap = [x for x in read_snapshot(path) if x[0] not in skip]
    owner = {ipaddress.ip_address(a): (n, u) for n, u, a in snap}
    bad, shown, states = [], {}, 0
    for line in open(claims_watch):
        f = line.split()
        # kubectl's own lines ("No resources found ...") are not states.
        if len(f) < 2 or len(f[1]) != 36 or f[1].count("-") != 4:
            continue
        name, uid = f[0], f[1]
        addr = ipaddress.ip_interface(f[2]).ip if len(f) > 2 else None
        states += 1
        if addr in owner and owner[addr][1] != uid:
            bad.append("address %s of %s shown by claim %s" % (addr, owner[addr][0], name))
        if name in skip:
            continue
        shown[name] = addr
        if addr is not None:
            others = [n for n, a in shown.items() if a == addr and n != name]
            if others:
                bad.append("address %s shown by %s and %s at once" % (addr, name, others[0]))
    locks = 0
    for line in open(resv_watch):
        f = line.split()
        if len(f) < 3 or len(f[2]) != 36 or f[2].count("-") != 4:
            continue
        locks += 1
        a = ipaddress.ip_address(f[1])
        if a in owner and owner[a][1] != f[2]:
            bad.append("address %s of %s locked by Reservation %s of uid %s" % (a, owner[a][0], f[0], f[2]))
    if bad:
        print("\n".join(sorted(set(bad))[:12]))
        sys.exit(1)
    print("%d claim states, %d Reservation states" % (states, locks))

sys.exit(globals()["cmd_" + sys.argv[1]](*sys.argv[2:]))
