"""ip - the network domain of the chaos run: IPPools, storms of IPClaims,
and the invariants of API.md ("Invariants") checked exactly for addresses.

A domain of the chaos run is a class made as Domain(api, log, chaos) (chaos:
the run, for chaos.node_root(node), the agent's --host-root of a node) with
these methods (chaos.py calls them; device.py and volume.py are the other
domains, with their own storms and checks):

  setup()                 make the pools (and namespaces) the storm uses
  storm_op(rng)           one random operation of the storm (thread-safe)
  progress(fraction)      called as the faults advance (0..1): pool events
  finish()                the storm is over: last deliberate changes
  snapshot()              what the API server holds (None if unreachable)
  pending(snap)           why snap is not converged yet ([] = converged)
  check(snap)             the invariants: a list of violations ([] = none)
  check_live()            invariant 1 at any moment, during the storm: one
                          consistent read, its violations ([] = none)
  figures(snap)           counts for the report, {name: value}

Everything is read straight from the API server, never from the operator.
"""

import ipaddress
import json
import threading

from common import Domain, key, ready_cond

GROUP = "/apis/provisio.dev/v1alpha1"
NAMESPACES = ["chaos-a", "chaos-b"]
# Reasons a claim may rest in after convergence (ip/README.md): each is
# checked against the state it claims (the pool really is exhausted, the
# address really is held by another claim, ...).
REST_REASONS = {"PoolNotFound", "PoolTerminating", "PoolExhausted", "AddressInUse",
                "AddressUnavailable", "InvalidSpec"}
MAX_OBJECT_BYTES = 8192  # invariant 4: no object grows past a few KiB

# The pools. "small" is exhausted most of the time (contention, PoolExhausted
# and retries when an address frees); "late" is created a third of the way
# through (claims wait PoolNotFound first); "doomed" is deleted two thirds of
# the way through while claims hold addresses (Terminating), and its claims
# are deleted after the storm: it must then go away with no Reservation left.
POOLS = {
    "chaos-small": {"cidr": "10.60.0.0/27", "gateway": "10.60.0.1"},
    "chaos-big": {"cidr": "10.61.0.0/22", "gateway": "10.61.0.1", "rangeStart": "10.61.0.10",
                  "rangeEnd": "10.61.3.200", "exclude": ["10.61.1.0/28", "10.61.2.5"]},
    "chaos-v6": {"cidr": "fd00:60::/120", "gateway": "fd00:60::1", "exclude": ["fd00:60::80/126"]},
    "chaos-late": {"cidr": "10.62.0.0/25"},
    "chaos-doomed": {"cidr": "10.63.0.0/26", "gateway": "10.63.0.1"},
}
POOL_WEIGHTS = {"chaos-small": 3, "chaos-big": 4, "chaos-v6": 2, "chaos-late": 1, "chaos-doomed": 1}
LATE_AT, DOOM_AT = 1 / 3, 2 / 3


def allocatable(spec):
    """The addresses a pool hands out, as a set of ip_address (pools here are
    small): the rule of src/reconcilers/ip/ipam.h, written again from API.md
    and that header so the count is checked, not copied."""
    net = ipaddress.ip_network(spec["cidr"])
    lo, hi = int(net.network_address), int(net.broadcast_address)
    if net.version == 4 and net.prefixlen <= 30:  # network and broadcast
        lo, hi = lo + 1, hi - 1
    if net.version == 6 and net.prefixlen <= 126:  # subnet-router anycast (RFC 4291)
        lo += 1
    if "rangeStart" in spec:
        lo = max(lo, int(ipaddress.ip_address(spec["rangeStart"])))
    if "rangeEnd" in spec:
        hi = min(hi, int(ipaddress.ip_address(spec["rangeEnd"])))
    out = {ipaddress.ip_address(a) for a in range(lo, hi + 1)} if hi >= lo else set()
    if net.version == 6:  # IPv4-mapped addresses are IPv4 addresses (ipam.h)
        mapped = ipaddress.ip_network("::ffff:0:0/96")
        if net.overlaps(mapped):
            out -= set(mapped if net.prefixlen <= 96 else net)
    if "gateway" in spec:
        out.discard(ipaddress.ip_address(spec["gateway"]))
    for e in spec.get("exclude", []):
        if "/" in e:
            out -= set(ipaddress.ip_network(e))
        else:
            out.discard(ipaddress.ip_address(e))
    return out


def network_of(pool):
    """The network of an IPPool object: spec.network, "default" when unset
    (the CRD's default)."""
    return (pool or {}).get("spec", {}).get("network") or "default"


def reservation_name(network, addr):
    """ipnet.<network>.<address>: IPv4 with '-' for '.', IPv6 as 8 groups
    (crds/). An address is locked once per network, whichever of the
    network's pools it is taken through (that pool is spec.pool)."""
    a = ipaddress.ip_address(addr)
    if a.version == 4:
        slot = str(a).replace(".", "-")
    else:
        slot = "-".join("%x" % int(g, 16) for g in a.exploded.split(":"))
    return "ipnet.%s.%s" % (network, slot)


class IPDomain(Domain):
    name = "ip"

    def __init__(self, api, log, chaos=None):
        self.api, self.log = api, log
        self.lock = threading.Lock()
        self.live = {}  # "ns/name" -> spec, claims the storm created and has not deleted
        self.seq = 0
        self.pools_made = set()
        self.alloc = {p: sorted(allocatable(s)) for p, s in POOLS.items()}
        self.n = {k: 0 for k in ("created", "created_with_address", "created_colliding",
                                 "created_unavailable", "deleted", "deleted_pending",
                                 "api_retries", "pools_created", "pools_deleted")}
        self.late_done = self.doom_done = False

    def _make_pool(self, name):
        body = {"apiVersion": "provisio.dev/v1alpha1", "kind": "IPPool",
                "metadata": {"name": name}, "spec": POOLS[name]}
        st, doc = self._req("POST", GROUP + "/ippools", body)
        if st not in (201, 409):
            raise RuntimeError("creating IPPool %s: HTTP %s %s" % (name, st, doc))
        self.pools_made.add(name)
        self.n["pools_created"] += 1

    def setup(self):
        for ns in NAMESPACES:
            st, doc = self._req("POST", "/api/v1/namespaces",
                                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            if st not in (201, 409):
                raise RuntimeError("creating namespace %s: HTTP %s %s" % (ns, st, doc))
        for p in POOLS:
            if p != "chaos-late":
                self._make_pool(p)

    def progress(self, fraction):
        if fraction >= LATE_AT and not self.late_done:
            self.late_done = True
            self._make_pool("chaos-late")
            self.log("ip: IPPool chaos-late created (claims waiting PoolNotFound get addresses)")
        if fraction >= DOOM_AT and not self.doom_done:
            self.doom_done = True
            self._req("DELETE", GROUP + "/ippools/chaos-doomed")
            self.n["pools_deleted"] += 1
            self.log("ip: IPPool chaos-doomed deleted while its claims hold addresses")

    # ---- the storm ---------------------------------------------------------------

    def _create(self, rng):
        pool = rng.choices(list(POOL_WEIGHTS), weights=list(POOL_WEIGHTS.values()))[0]
        spec = {"pool": pool}
        r = rng.random()
        kind = None
        if r < 0.12:
            # an address another live claim of the pool asked for (AddressInUse
            # until that one goes), else one of the first few of the pool
            with self.lock:
                asked = [s["address"] for s in self.live.values()
                         if s.get("pool") == pool and "address" in s]
            spec["address"] = rng.choice(asked) if asked else str(self.alloc[pool][rng.randrange(4)])
            kind = "created_colliding"
        elif r < 0.25:
            spec["address"] = str(rng.choice(self.alloc[pool]))
            kind = "created_with_address"
        elif r < 0.27 and "gateway" in POOLS[pool]:
            spec["address"] = POOLS[pool]["gateway"]  # AddressUnavailable, never Ready
            kind = "created_unavailable"
        with self.lock:
            self.seq += 1
            name = "c-%05d" % self.seq
        ns = rng.choice(NAMESPACES)
        body = {"apiVersion": "provisio.dev/v1alpha1", "kind": "IPClaim",
                "metadata": {"name": name, "namespace": ns}, "spec": spec}
        st, doc = self._req("POST", "%s/namespaces/%s/ipclaims" % (GROUP, ns), body)
        if st not in (201, 409):  # 409: a retry of a POST whose answer was lost
            self.log("ip: create %s/%s: HTTP %s %s" % (ns, name, st, (doc or {}).get("message")))
            return None, spec
        k = "%s/%s" % (ns, name)
        with self.lock:
            self.live[k] = spec
            self.n["created"] += 1
            if kind:
                self.n[kind] += 1
        return k, spec

    def _delete(self, k, _what=None):
        ns, name = k.split("/")
        st, doc = self._req("DELETE", "%s/namespaces/%s/ipclaims/%s" % (GROUP, ns, name))
        if st not in (200, 202, 404):
            self.log("ip: delete %s: HTTP %s %s" % (k, st, (doc or {}).get("message")))
        with self.lock:
            self.n["deleted"] += 1

    def finish(self):
        """Delete the claims of the doomed pool: it must then go, leaving nothing."""
        with self.lock:
            doomed = [k for k, s in self.live.items() if s["pool"] == "chaos-doomed"]
            for k in doomed:
                del self.live[k]
        for k in doomed:
            self._delete(k)
        self.log("ip: deleted the %d claims of the deleted pool chaos-doomed" % len(doomed))

    # ---- reading and judging -----------------------------------------------------

    def snapshot(self):
        pools = self.api.list(GROUP + "/ippools")
        claims = self.api.list(GROUP + "/ipclaims")
        resv = self.api.list(GROUP + "/reservations")
        if pools is None or claims is None or resv is None:
            return None
        return {"pools": {p["metadata"]["name"]: p for p in pools},
                "claims": {key(c): c for c in claims},
                "resv": [r for r in resv if r["spec"]["pool"]["kind"] == "IPPool"]}

    def _index(self, snap):
        by_pool, by_uid, by_name = {}, {}, {}
        for r in snap["resv"]:
            s = r["spec"]
            by_pool.setdefault(s["pool"]["name"], []).append(r)
            by_uid.setdefault(s["claim"]["uid"], []).append(r)
            by_name[r["metadata"]["name"]] = r
        return by_pool, by_uid, by_name

    def _resting(self, c, snap, by_name):
        """Why claim c is not (yet) in a state it may rest in, or None."""
        m, spec, st = c["metadata"], c["spec"], c.get("status") or {}
        if m.get("deletionTimestamp"):
            return "still deleting (finalizer %s)" % m.get("finalizers")
        cond = ready_cond(c)
        if cond is None:
            return "no Ready condition"
        if cond.get("observedGeneration") != m.get("generation"):
            return "Ready.observedGeneration %s != generation %s" % (cond.get("observedGeneration"), m.get("generation"))
        if cond["status"] == "True":
            return None
        reason = cond.get("reason")
        if reason not in REST_REASONS:
            return "Ready=False %s (not a reason to rest in)" % reason
        pool = snap["pools"].get(spec["pool"])
        if reason == "PoolNotFound":
            return None if pool is None else "PoolNotFound but the pool exists"
        if pool is None:
            return "%s but the pool does not exist" % reason
        if reason == "PoolTerminating":
            return None if pool["metadata"].get("deletionTimestamp") else "PoolTerminating but the pool is not"
        alloc = self.alloc.get(spec["pool"])
        if reason == "PoolExhausted":
            avail = (pool.get("status") or {}).get("available")
            return None if avail == 0 else "PoolExhausted but the pool has available=%s" % avail
        addr = spec.get("address")
        if reason == "AddressInUse":
            r = by_name.get(reservation_name(network_of(pool), addr)) if addr else None
            if r and r["spec"]["claim"]["uid"] != m["uid"]:
                return None
            return "AddressInUse but no other claim holds %s" % addr
        if reason in ("AddressUnavailable", "InvalidSpec"):
            if addr and alloc is not None and ipaddress.ip_address(addr) not in set(alloc):
                return None
            return "%s but %s is allocatable" % (reason, addr)
        return "unexpected %s" % reason

    def pending(self, snap):
        """Not converged yet: claims not resting, orphans not swept, counts not settled."""
        by_pool, by_uid, by_name = self._index(snap)
        out = []
        for k, c in snap["claims"].items():
            why = self._resting(c, snap, by_name)
            if why:
                out.append("IPClaim %s: %s" % (k, why))
        uids = {c["metadata"]["uid"] for c in snap["claims"].values()}
        for r in snap["resv"]:
            if r["spec"]["claim"]["uid"] not in uids:
                out.append("Reservation %s: its claim is gone" % r["metadata"]["name"])
        for name, p in snap["pools"].items():
            st = p.get("status") or {}
            held = len(by_pool.get(name, []))
            if st.get("allocated") != held:
                out.append("IPPool %s: status.allocated %s, Reservations %d" % (name, st.get("allocated"), held))
        if "chaos-doomed" in snap["pools"] and self.doom_done:
            out.append("IPPool chaos-doomed: still there (deleted, its claims deleted)")
        return out

    def check(self, snap):
        """The four invariants of API.md for addresses; every violation as a line."""
        v = []
        by_pool, by_uid, by_name = self._index(snap)
        pools, claims = snap["pools"], snap["claims"]
        by_uid_claim = {c["metadata"]["uid"]: c for c in claims.values()}
        network = {n: network_of(p) for n, p in pools.items()}

        # 1. nothing held twice: an address at most once per network, across
        #    pools, both as Reservations and as Ready claims' status.address.
        held = {}
        for r in snap["resv"]:
            s = r["spec"]
            net = s.get("network") or "?"
            if r["metadata"]["name"] != reservation_name(net, s["slot"]):
                v.append("1: Reservation %s names slot %s of network %s (name mismatch)"
                         % (r["metadata"]["name"], s["slot"], net))
            if s["pool"]["name"] in network and network[s["pool"]["name"]] != net:
                v.append("1: Reservation %s is of network %s, its pool %s of network %s"
                         % (r["metadata"]["name"], net, s["pool"]["name"], network[s["pool"]["name"]]))
            nk = (net, ipaddress.ip_address(s["slot"]))
            if nk in held:
                v.append("1: address %s of network %s held by two Reservations: %s and %s"
                         % (nk[1], nk[0], held[nk], r["metadata"]["name"]))
            held[nk] = r["metadata"]["name"]
        ready_at = {}
        for k, c in claims.items():
            cond, st = ready_cond(c), c.get("status") or {}
            if not cond or cond["status"] != "True":
                continue
            if not st.get("address"):
                v.append("3: IPClaim %s is Ready without status.address" % k)
                continue
            a = ipaddress.ip_interface(st["address"]).ip
            nk = (network.get(c["spec"]["pool"], "?"), a)
            if nk in ready_at:
                v.append("1: address %s of network %s in status of two Ready claims: %s and %s"
                         % (a, nk[0], ready_at[nk], k))
            ready_at[nk] = k
        for uid, rs in by_uid.items():
            if len(rs) > 1:
                c = by_uid_claim.get(uid)
                v.append("1: claim %s (uid %s) holds %d Reservations: %s"
                         % (key(c) if c else "?", uid, len(rs), [r["metadata"]["name"] for r in rs]))

        # 2. nothing held without its claim: every Reservation names a live
        #    claim by uid, of its pool, and its pool exists; no claim is stuck
        #    deleting (its finalizer would keep what it holds).
        for r in snap["resv"]:
            s, name = r["spec"], r["metadata"]["name"]
            c = claims.get("%s/%s" % (s["claim"]["namespace"], s["claim"]["name"]))
            if c is None:
                v.append("2: Reservation %s: claim %s/%s does not exist"
                         % (name, s["claim"]["namespace"], s["claim"]["name"]))
            elif c["metadata"]["uid"] != s["claim"]["uid"]:
                v.append("2: Reservation %s: claim %s has uid %s, not %s"
                         % (name, key(c), c["metadata"]["uid"], s["claim"]["uid"]))
            elif c["metadata"].get("deletionTimestamp"):
                v.append("2: Reservation %s: claim %s is being deleted" % (name, key(c)))
            elif c["spec"]["pool"] != s["pool"]["name"]:
                v.append("2: Reservation %s is of pool %s, its claim %s of pool %s"
                         % (name, s["pool"]["name"], key(c), c["spec"]["pool"]))
            if s["pool"]["name"] not in pools:
                v.append("2: Reservation %s: pool %s does not exist" % (name, s["pool"]["name"]))
        for k, c in claims.items():
            if c["metadata"].get("deletionTimestamp"):
                v.append("2: IPClaim %s still deleting (finalizers %s)" % (k, c["metadata"].get("finalizers")))

        # 3. status backed by the Reservations; pool counts equal what is held.
        for k, c in claims.items():
            cond, st, m = ready_cond(c), c.get("status") or {}, c["metadata"]
            mine = by_uid.get(m["uid"], [])
            if cond and cond["status"] == "True" and st.get("address"):
                iface = ipaddress.ip_interface(st["address"])
                want = reservation_name(network.get(c["spec"]["pool"], "default"), str(iface.ip))
                r = by_name.get(want)
                if r is None or r["spec"]["claim"]["uid"] != m["uid"]:
                    v.append("3: IPClaim %s Ready with %s: Reservation %s %s"
                             % (k, st["address"], want, "missing" if r is None else
                                "held by uid " + r["spec"]["claim"]["uid"]))
                if st.get("pool") != c["spec"]["pool"]:
                    v.append("3: IPClaim %s status.pool %s, spec.pool %s" % (k, st.get("pool"), c["spec"]["pool"]))
                if c["spec"].get("address") and ipaddress.ip_address(c["spec"]["address"]) != iface.ip:
                    v.append("3: IPClaim %s asked %s, holds %s" % (k, c["spec"]["address"], iface.ip))
                pool = pools.get(c["spec"]["pool"])
                if pool and iface.network != ipaddress.ip_network(pool["spec"]["cidr"]):
                    v.append("3: IPClaim %s status.address %s not in %s with its prefix" % (k, st["address"], pool["spec"]["cidr"]))
                if c["spec"]["pool"] in self.alloc and iface.ip not in set(self.alloc[c["spec"]["pool"]]):
                    v.append("1: IPClaim %s holds %s, not allocatable in its pool" % (k, iface.ip))
            elif mine and not m.get("deletionTimestamp"):
                v.append("3: IPClaim %s is not Ready but holds %s" % (k, [r["metadata"]["name"] for r in mine]))
        for name, p in pools.items():
            st = p.get("status") or {}
            rs = by_pool.get(name, [])
            total = len(self.alloc[name]) if name in self.alloc else st.get("total")
            in_range = sum(1 for r in rs if name not in self.alloc or
                           ipaddress.ip_address(r["spec"]["slot"]) in set(self.alloc[name]))
            want = {"total": total, "allocated": len(rs), "available": total - in_range}
            got = {f: st.get(f) for f in want}
            if got != want:
                v.append("3: IPPool %s status %s, the Reservations say %s" % (name, got, want))
            if (st.get("observedGeneration") != p["metadata"].get("generation")):
                v.append("3: IPPool %s observedGeneration %s != generation %s"
                         % (name, st.get("observedGeneration"), p["metadata"].get("generation")))
        for name in by_pool:
            if name not in pools:
                v.append("2: %d Reservations of pool %s, which does not exist" % (len(by_pool[name]), name))

        # the claims' resting reasons are true (a claim stuck Ready=False while
        # it could be served is a lost retry, not an invariant, but a finding)
        for k, c in claims.items():
            why = self._resting(c, snap, by_name)
            if why:
                v.append("converged: IPClaim %s: %s" % (k, why))

        # 4. no object grows with the number of claims
        for kind, objs in (("IPPool", pools.values()), ("IPClaim", claims.values()), ("Reservation", snap["resv"])):
            for o in objs:
                n = len(json.dumps(o))
                if n > MAX_OBJECT_BYTES:
                    v.append("4: %s %s is %d bytes" % (kind, key(o), n))
        return v

    def check_live(self):
        """Two live (not deleting) claims Ready with one address of a network,
        in one list of IPClaims (one resourceVersion: a consistent view)."""
        claims = self.api.list(GROUP + "/ipclaims")
        if claims is None:
            return None
        st, doc = self.api.request("GET", GROUP + "/ippools")
        pools = {p["metadata"]["name"]: p for p in (doc or {}).get("items", [])} if st == 200 else {}
        seen, v = {}, []
        for c in claims:
            cond, status = ready_cond(c), c.get("status") or {}
            if c["metadata"].get("deletionTimestamp") or not cond or cond["status"] != "True":
                continue
            if not status.get("address"):
                continue
            p = pools.get(c["spec"]["pool"])
            nk = (network_of(p), ipaddress.ip_interface(status["address"]).ip)
            if nk in seen:
                v.append("1 (during the storm): address %s of network %s Ready in two live claims: %s and %s"
                         % (nk[1], nk[0], seen[nk], key(c)))
            seen[nk] = key(c)
        return v

    def figures(self, snap):
        f = dict(self.n)
        if snap:
            f["claims_at_end"] = len(snap["claims"])
            f["claims_ready_at_end"] = sum(1 for c in snap["claims"].values()
                                           if (ready_cond(c) or {}).get("status") == "True")
            rest = {}
            for c in snap["claims"].values():
                cond = ready_cond(c) or {}
                if cond.get("status") == "False":
                    rest[cond.get("reason")] = rest.get(cond.get("reason"), 0) + 1
            f["claims_not_ready_at_end"] = ", ".join("%s %d" % kv for kv in sorted(rest.items())) or "0"
            f["reservations_at_end"] = len(snap["resv"])
            f["pools_at_end"] = ", ".join("%s %s/%s" % (n, (p.get("status") or {}).get("allocated"),
                                                       (p.get("status") or {}).get("total"))
                                          for n, p in sorted(snap["pools"].items()))
            sizes = [len(json.dumps(o)) for o in
                     list(snap["pools"].values()) + list(snap["claims"].values()) + snap["resv"]]
            f["largest_object_bytes"] = max(sizes) if sizes else 0
        return f
