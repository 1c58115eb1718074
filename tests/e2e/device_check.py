#!/usr/bin/env python3
"""Assertions over DevicePools, DeviceClaims, Reservations and Nodes as the
API server holds them, for device_test.sh and device_health_test.sh.

Every command prints why its condition does not hold and exits 1, so that
e2e_wait_for shows the last reason when it times out. Only kubectl (from
PATH, KUBECONFIG from the environment) and the standard library.

  is KIND NAME NS EXPR     EXPR (Python) holds for the object; names: o,
                           spec, st (status), cond(type) (a dict, {} when
                           absent), ready (cond("Ready")), devs (status
                           devices of a pool by id); NS "-" for
                           cluster-scoped kinds
  invariants NS RESOURCE   API.md invariants 1-3 over the claims of NS and
                           the pools of RESOURCE (see cmd_invariants);
                           prints "<ready> <held>" when they hold
  overlap NS RESOURCE      no device shown by two claims of NS right now
  clean RESOURCE           no Reservation of a pool of RESOURCE, nothing
                           held in their status
  gone POOLS RESOURCES     no pool of POOLS (names, space-separated), no
                           Reservation of them, no node key of RESOURCES
  node NODE RESOURCE       prints "capacity allocatable" of RESOURCE on
                           NODE ("-" for a missing key)
  held NS NAME             prints the devices of claim NS/NAME, one a line
"""
import json
import subprocess
import sys


def kget(*args):
    r = subprocess.run(["kubectl", "get", "-o", "json", *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("kubectl get %s: %s" % (" ".join(args), r.stderr.strip()))
    return json.loads(r.stdout)


def cond_of(obj, ctype):
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return {}


def is_ready(obj):
    return cond_of(obj, "Ready").get("status") == "True"


def pools_of(resource):
    return [p for p in kget("devicepools.provisio.dev")["items"]
            if p["spec"].get("resourceName") == resource]


def reservations_of(pool_names):
    items = kget("reservations.provisio.dev", "-l", "provisio.dev/pool-kind=DevicePool")["items"]
    return [r for r in items if r["spec"]["pool"].get("name") in pool_names]


def short(o, n=600):
    return json.dumps(o, sort_keys=True)[:n]


def cmd_is(kind, name, ns, expr):
    args = [kind, name] + ([] if ns == "-" else ["-n", ns])
    o = kget(*args)
    st = o.get("status") or {}
    env = {
        "o": o,
        "spec": o.get("spec") or {},
        "st": st,
        "cond": lambda t: cond_of(o, t),
        "ready": cond_of(o, "Ready"),
        "devs": {d["id"]: d for d in st.get("devices") or [] if isinstance(d, dict)},
    }
    if not eval("(" + expr + ")", env):
        print("%s %s: status %s" % (kind, name, short(st, 1500)))
        return 1
    return 0


def cmd_invariants(ns, resource):
    """1. no device of a pool is held twice (claims' status and Reservations);
    2. every Reservation names a live claim (uid) that shows the device, and
       every device a Ready claim shows has its Reservation; a claim that is
       not Ready holds nothing (all or nothing);
    3. each pool's status: allocated == Reservations == devices the claims
       show, devices[].claim names exactly the holder, capacity and
       available agree with devices[]."""
    bad = []
    claims = kget("deviceclaims.provisio.dev", "-n", ns)["items"]
    claims = [c for c in claims if c["spec"].get("resourceName") == resource]
    pools = {p["metadata"]["name"]: p for p in pools_of(resource)}
    resv = reservations_of(set(pools))
    by_uid = {c["metadata"]["uid"]: c for c in claims}
    shown = {}  # (pool, id) -> ns/name, from the claims' status
    n_ready = 0
    for c in claims:
        name = ns + "/" + c["metadata"]["name"]
        st = c.get("status") or {}
        devs = st.get("devices") or []
        if not is_ready(c):
            if devs:
                bad.append("%s is not Ready but shows devices %s" % (name, devs))
            continue
        n_ready += 1
        if len(devs) != c["spec"].get("count", 1) or len(set(devs)) != len(devs):
            bad.append("%s is Ready with devices %s (count %s)" % (name, devs, c["spec"].get("count")))
        pool = st.get("pool")
        if pool not in pools:
            bad.append("%s shows pool %r, not a pool of %s" % (name, pool, resource))
            continue
        if st.get("nodeName") != pools[pool]["spec"]["nodeName"]:
            bad.append("%s shows node %s, its pool %s is on %s" % (name, st.get("nodeName"), pool,
                                                                    pools[pool]["spec"]["nodeName"]))
        sel = c["spec"].get("selector") or {}
        pdevs = {d["id"]: d for d in (pools[pool].get("status") or {}).get("devices") or []}
        decl = {d["id"]: d for d in pools[pool]["spec"].get("devices") or []}
        for d in devs:
            if (pool, d) in shown:
                bad.append("device %s of %s is shown by %s and %s" % (d, pool, shown[(pool, d)], name))
            shown[(pool, d)] = name
            attrs = (decl.get(d) or {}).get("attributes") or {}
            if d in decl and any(attrs.get(k) != v for k, v in sel.items()):
                bad.append("%s holds %s of %s, which does not match its selector %s" % (name, d, pool, sel))
            if d not in pdevs:
                bad.append("%s holds %s, not in %s status.devices" % (name, d, pool))
    held = {}  # (pool, id) -> claim uid, from the Reservations
    for r in resv:
        key = (r["spec"]["pool"]["name"], r["spec"]["slot"])
        rc = r["spec"]["claim"]
        if key in held:
            bad.append("two Reservations of %s/%s" % key)
        held[key] = rc.get("uid")
        c = by_uid.get(rc.get("uid"))
        if c is None:
            bad.append("Reservation %s names %s/%s uid %s, no live claim" % (
                r["metadata"]["name"], rc.get("namespace"), rc.get("name"), rc.get("uid")))
        elif shown.get(key) != ns + "/" + c["metadata"]["name"]:
            bad.append("Reservation %s of %s/%s: the claim shows %s" % (
                r["metadata"]["name"], rc.get("namespace"), rc.get("name"),
                short(c.get("status") or {}, 300)))
    for key, name in shown.items():
        if key not in held:
            bad.append("%s shows %s of %s without a Reservation" % (name, key[1], key[0]))
    for pname, p in pools.items():
        st = p.get("status") or {}
        pdevs = st.get("devices") or []
        mine = sum(1 for k in shown if k[0] == pname)
        nres = sum(1 for k in held if k[0] == pname)
        if st.get("allocated") != mine or nres != mine:
            bad.append("pool %s: allocated %s, %d Reservations, claims show %d" % (
                pname, st.get("allocated"), nres, mine))
        for d in pdevs:
            want = shown.get((pname, d["id"]))
            if d.get("claim") != want:
                bad.append("pool %s device %s: status claim %r, held by %r" % (
                    pname, d["id"], d.get("claim"), want))
        healthy = sum(1 for d in pdevs if d.get("healthy"))
        free = sum(1 for d in pdevs if d.get("healthy") and not d.get("claim"))
        if st.get("capacity") != healthy or st.get("available") != free:
            bad.append("pool %s: capacity %s available %s, devices[] say %d %d" % (
                pname, st.get("capacity"), st.get("available"), healthy, free))
    for b in bad[:12]:
        print(b)
    if bad:
        return 1
    print("%d %d" % (n_ready, len(shown)))
    return 0


def cmd_overlap(ns, resource):
    """Invariant 1 at this moment, from the claims' status alone (no
    convergence needed): no device of a pool shown by two claims."""
    seen, bad = {}, []
    for c in kget("deviceclaims.provisio.dev", "-n", ns)["items"]:
        if c["spec"].get("resourceName") != resource:
            continue
        st = c.get("status") or {}
        for d in st.get("devices") or []:
            key = (st.get("pool"), d)
            if key in seen:
                bad.append("device %s of %s shown by %s and %s" % (d, key[0], seen[key], c["metadata"]["name"]))
            seen[key] = c["metadata"]["name"]
    for b in bad[:12]:
        print(b)
    return 1 if bad else 0


def cmd_clean(resource):
    pools = {p["metadata"]["name"]: p for p in pools_of(resource)}
    bad = ["Reservation %s left (claim %s/%s)" % (r["metadata"]["name"], r["spec"]["claim"].get("namespace"),
                                                  r["spec"]["claim"].get("name"))
           for r in reservations_of(set(pools))]
    for pname, p in pools.items():
        st = p.get("status") or {}
        if st.get("allocated") != 0:
            bad.append("pool %s: allocated %s" % (pname, st.get("allocated")))
        bad += ["pool %s: %s still held by %s" % (pname, d["id"], d["claim"])
                for d in st.get("devices") or [] if d.get("claim")]
    for b in bad[:12]:
        print(b)
    return 1 if bad else 0


def cmd_gone(pools, resources):
    """Nothing left of deleted pools (space-separated names) and resources
    (space-separated): no pool, no Reservation of them, no node key."""
    pools, resources = set(pools.split()), set(resources.split())
    bad = ["pool %s still exists" % p["metadata"]["name"]
           for p in kget("devicepools.provisio.dev")["items"] if p["metadata"]["name"] in pools]
    bad += ["Reservation %s left" % r["metadata"]["name"] for r in reservations_of(pools)]
    for n in kget("nodes")["items"]:
        st = n.get("status") or {}
        for field in ("capacity", "allocatable"):
            bad += ["node %s status.%s has %s" % (n["metadata"]["name"], field, r)
                    for r in sorted(resources & set(st.get(field) or {}))]
    for b in bad[:12]:
        print(b)
    return 1 if bad else 0


def cmd_node(node, resource):
    st = kget("node", node).get("status") or {}
    print("%s %s" % ((st.get("capacity") or {}).get(resource, "-"),
                     (st.get("allocatable") or {}).get(resource, "-")))
    return 0


def cmd_held(ns, name):
    for d in (kget("deviceclaims.provisio.dev", name, "-n", ns).get("status") or {}).get("devices") or []:
        print(d)
    return 0


def main(argv):
    cmds = {"is": (cmd_is, 4), "invariants": (cmd_invariants, 2), "clean": (cmd_clean, 1),
            "gone": (cmd_gone, 2), "overlap": (cmd_overlap, 2),
            "node": (cmd_node, 2), "held": (cmd_held, 2)}
    if len(argv) < 2 or argv[1] not in cmds or len(argv) - 2 != cmds[argv[1]][1]:
        sys.exit(__doc__)
    fn, _ = cmds[argv[1]]
    return fn(*argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
