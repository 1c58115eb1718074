"""device - the device domain of the chaos run: DevicePools on the fake
nodes (declared devices, devices the node agents discover, NodeCapacity and
ResourceSlice publishing), storms of DeviceClaims, device files removed and
put back on the nodes, and the invariants of API.md ("Invariants") checked
exactly for devices, node capacity and DRA ResourceClaims.

The interface is the one at the top of ip.py. Everything is read from the
API server, never from the operator; the device files are the agents'
(--host-root) directories, chaos.node_root(node).
"""

import json
import os
import subprocess
import threading

from common import Domain, is_ready, key, ready_cond

GROUP = "/apis/provisio.dev/v1alpha1"
DRA = "/apis/resource.k8s.io/v1"
NAMESPACES = ["chaos-dev"]
FPGA, ACC = "chaos.example/fpga", "chaos.example/acc"
DRIVER = "provisio.dev"  # src/reconcilers/device/dev_dra.h
REST_REASONS = {"InsufficientDevices", "NoMatchingDevices", "InvalidSpec"}
MAX_OBJECT_BYTES = 8192  # invariant 4 (a DevicePool lists its own devices: these are small)


def declared(prefix, models, paths=()):
    """Declared devices PREFIX0.. with the attribute model of MODELS; the
    indexes in PATHS get a device file /dev/chaos-PREFIXi on the node."""
    out = []
    for i, m in enumerate(models):
        d = {"id": "%s%d" % (prefix, i), "attributes": {"model": m}}
        if i in paths:
            d["path"] = "/dev/chaos-%s%d" % (prefix, i)
        out.append(d)
    return out


# The pools. dev-a mixes declared devices with four the agent of node-a
# discovers (/dev/chfpga*); dev-b has declared devices with device files;
# dev-c is published as DRA ResourceSlices; dev-late (node-c) is created a
# third of the way through, so claims wait NoMatchingDevices or
# InsufficientDevices first; dev-doomed (node-c, the same resource as
# dev-late: node-c's capacity is the sum of both) is deleted two thirds of
# the way through while claims hold its devices, and its claims are deleted
# after the storm: it must then go, its node keys with it.
POOLS = {
    "dev-a": {"nodeName": "node-a", "resourceName": FPGA, "devices": declared("fa", "xxyyxxyy"),
              "discover": {"paths": ["/dev/chfpga*"], "attributes": {"model": "z"}}},
    "dev-b": {"nodeName": "node-b", "resourceName": FPGA, "devices": declared("fb", "xyxyxyxyxy", paths=(0, 1, 2))},
    "dev-c": {"nodeName": "node-c", "resourceName": ACC, "publish": "ResourceSlice",
              "devices": declared("ac", "xyxyxyxy")},
    "dev-late": {"nodeName": "node-c", "resourceName": FPGA, "devices": declared("fl", "xxxxxx")},
    "dev-doomed": {"nodeName": "node-c", "resourceName": FPGA, "devices": declared("fd", "yyyyyy")},
}
DISCOVERED = {"dev-a": ["chfpga%d" % i for i in range(4)]}  # files the agent of the pool's node finds
LATE_AT, DOOM_AT = 1 / 3, 2 / 3


def device_files():
    """(node, path on the node) of every device file of POOLS: the declared
    devices' paths and the discovered files."""
    out = []
    for name, spec in POOLS.items():
        out += [(spec["nodeName"], d["path"]) for d in spec["devices"] if "path" in d]
        out += [(spec["nodeName"], "/dev/" + f) for f in DISCOVERED.get(name, [])]
    return out


def attributes(pool):
    """id -> attributes of every device a pool's status lists: declared ones
    from spec.devices, discovered ones from spec.discover.attributes."""
    spec = pool["spec"]
    decl = {d["id"]: d.get("attributes") or {} for d in spec.get("devices") or []}
    disc = (spec.get("discover") or {}).get("attributes") or {}
    return {d["id"]: decl.get(d["id"], disc) for d in (pool.get("status") or {}).get("devices") or []}


def matches(attrs, spec):
    return all(attrs.get(k) == v for k, v in (spec.get("selector") or {}).items())


def publish_of(pool):
    return pool["spec"].get("publish") or "NodeCapacity"


class DeviceDomain(Domain):
    name = "device"

    def __init__(self, api, log, chaos=None):
        self.api, self.log, self.chaos = api, log, chaos
        self.lock = threading.Lock()
        self.live = {}  # "ns/name" -> spec, claims the storm created and has not deleted
        self.seq = 0
        self.removed = {}  # (node, path) -> the timer that puts the file back
        self.n = {k: 0 for k in ("created", "created_count_gt_1", "created_with_node", "created_with_selector",
                                 "created_never_fits", "created_invalid", "created_replace_unhealthy",
                                 "deleted", "deleted_pending", "api_retries", "pools_created", "pools_deleted",
                                 "device_files_removed", "device_files_restored")}
        self.late_done = self.doom_done = False

    def _host(self, node, path):
        return os.path.join(self.chaos.node_root(node), path.lstrip("/"))

    def _make_pool(self, name):
        body = {"apiVersion": "provisio.dev/v1alpha1", "kind": "DevicePool",
                "metadata": {"name": name}, "spec": POOLS[name]}
        st, doc = self._req("POST", GROUP + "/devicepools", body)
        if st not in (201, 409):
            raise RuntimeError("creating DevicePool %s: HTTP %s %s" % (name, st, doc))
        self.n["pools_created"] += 1

    def setup(self):
        for node, path in device_files():
            p = self._host(node, path)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            open(p, "w").close()
        r = subprocess.run([self.chaos.kubectl, "--kubeconfig", self.chaos.kubeconfig, "apply", "-f",
                            os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
                                __file__)))), "config", "dra", "deviceclass.yaml")],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("the DeviceClass: %s" % r.stderr.strip())
        for ns in NAMESPACES:
            st, doc = self._req("POST", "/api/v1/namespaces",
                                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            if st not in (201, 409):
                raise RuntimeError("creating namespace %s: HTTP %s %s" % (ns, st, doc))
        for p in POOLS:
            if p != "dev-late":
                self._make_pool(p)

    def progress(self, fraction):
        if fraction >= LATE_AT and not self.late_done:
            self.late_done = True
            self._make_pool("dev-late")
            self.log("device: DevicePool dev-late created (waiting claims of node-c's fpgas get devices)")
        if fraction >= DOOM_AT and not self.doom_done:
            self.doom_done = True
            self._req("DELETE", GROUP + "/devicepools/dev-doomed")
            self.n["pools_deleted"] += 1
            self.log("device: DevicePool dev-doomed deleted while claims hold its devices")

    # ---- faults of the domain: a device file removed, put back later -------------

    def faults(self):
        return [("device-file", 2, self.fault_device_file)]

    def fault_device_file(self):
        """A device file vanishes from its node (a device unplugged, or dead)
        and comes back 3-20 s later: the device is unhealthy (declared) or
        gone (discovered) meanwhile; claims holding it show DevicesHealthy
        False, those with replaceUnhealthy get another."""
        rng = self.chaos.rng
        with self.lock:
            files = [f for f in device_files() if f not in self.removed]
            if not files:
                return
            f = rng.choice(files)
            t = threading.Timer(rng.uniform(3, 20), self._restore, args=(f,))
            t.daemon = True
            self.removed[f] = t
            self.n["device_files_removed"] += 1
        os.unlink(self._host(*f))
        t.start()
        self.log("fault: device file %s of %s removed" % (f[1], f[0]))

    def _restore(self, f):
        with self.lock:
            if self.removed.pop(f, None) is None:
                return
            self.n["device_files_restored"] += 1
        open(self._host(*f), "w").close()

    # ---- the storm ---------------------------------------------------------------

    def _create(self, rng):
        res = FPGA if rng.random() < 0.75 else ACC
        spec = {"resourceName": res}
        kinds = []
        r = rng.random()
        if r < 0.03:
            spec["count"] = 20  # more than any pool of either resource has
            kinds.append("created_never_fits")
        elif r < 0.12:
            spec["count"] = 3
        elif r < 0.30:
            spec["count"] = 2
        if spec.get("count", 1) > 1:
            kinds.append("created_count_gt_1")
        r = rng.random()
        if r < 0.02:
            spec["selector"] = {"colour": "red"}  # an attribute no device has: InvalidSpec
            kinds.append("created_invalid")
        elif r < 0.05:
            spec["selector"] = {"model": "nope"}  # a value no device has: NoMatchingDevices
            kinds.append("created_never_fits")
        elif r < 0.30:
            spec["selector"] = {"model": rng.choice("xyz")}
            kinds.append("created_with_selector")
        if rng.random() < 0.2:
            spec["nodeName"] = rng.choice(["node-a", "node-b", "node-c"])
            kinds.append("created_with_node")
        if rng.random() < 0.3:
            spec["replaceUnhealthy"] = True
            kinds.append("created_replace_unhealthy")
        with self.lock:
            self.seq += 1
            name = "d-%05d" % self.seq
        ns = rng.choice(NAMESPACES)
        body = {"apiVersion": "provisio.dev/v1alpha1", "kind": "DeviceClaim",
                "metadata": {"name": name, "namespace": ns}, "spec": spec}
        st, doc = self._req("POST", "%s/namespaces/%s/deviceclaims" % (GROUP, ns), body)
        if st not in (201, 409):
            self.log("device: create %s/%s: HTTP %s %s" % (ns, name, st, (doc or {}).get("message")))
            return None, spec
        k = "%s/%s" % (ns, name)
        with self.lock:
            self.live[k] = spec
            self.n["created"] += 1
            for kind in set(kinds):
                self.n[kind] += 1
        return k, spec

    def _delete(self, k, _what=None):
        ns, name = k.split("/")
        st, doc = self._req("DELETE", "%s/namespaces/%s/deviceclaims/%s" % (GROUP, ns, name))
        if st not in (200, 202, 404):
            self.log("device: delete %s: HTTP %s %s" % (k, st, (doc or {}).get("message")))
        with self.lock:
            self.n["deleted"] += 1

    def finish(self):
        """Every device file back; the claims holding dev-doomed's devices deleted."""
        with self.lock:
            back = list(self.removed.items())
        for f, t in back:
            t.cancel()
            self._restore(f)
        doomed = []
        claims = None
        while claims is None:
            claims = self.api.list(GROUP + "/deviceclaims")
        for c in claims:
            if (c.get("status") or {}).get("pool") == "dev-doomed":
                doomed.append(key(c))
        with self.lock:
            for k in doomed:
                self.live.pop(k, None)
        for k in doomed:
            self._delete(k)
        self.log("device: %d device files put back; deleted the %d claims of the deleted pool dev-doomed"
                 % (len(back), len(doomed)))

    # ---- reading and judging -----------------------------------------------------

    def snapshot(self):
        pools = self.api.list(GROUP + "/devicepools")
        claims = self.api.list(GROUP + "/deviceclaims")
        resv = self.api.list(GROUP + "/reservations")
        nodes = self.api.list("/api/v1/nodes")
        rclaims = self.api.list(DRA + "/resourceclaims")
        slices = self.api.list(DRA + "/resourceslices")
        if None in (pools, claims, resv, nodes, rclaims, slices):
            return None
        return {"pools": {p["metadata"]["name"]: p for p in pools},
                "claims": {key(c): c for c in claims},
                "resv": [r for r in resv if r["spec"]["pool"]["kind"] == "DevicePool"],
                "nodes": {n["metadata"]["name"]: n for n in nodes},
                "rclaims": {key(r): r for r in rclaims
                            if (r["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by") == "provisio"},
                "slices": [s for s in slices if s["spec"].get("driver") == DRIVER]}

    def _held(self, snap):
        """(pool, device) -> claim uid, from the Reservations."""
        return {(r["spec"]["pool"]["name"], r["spec"]["slot"]): r["spec"]["claim"]["uid"] for r in snap["resv"]}

    def _fit(self, snap, spec, held):
        """(pools that could ever hold the claim, pools that can now): the rule
        of dev_choose.c, from the pools' status and spec: matching devices
        (node, selector) >= count; free ones are healthy and not held."""
        count = spec.get("count", 1)
        could, now = [], []
        for name, p in snap["pools"].items():
            if p["spec"]["resourceName"] != spec["resourceName"] or p["metadata"].get("deletionTimestamp"):
                continue
            if spec.get("nodeName") and spec["nodeName"] != p["spec"]["nodeName"]:
                continue
            attrs = attributes(p)
            devs = [d for d in (p.get("status") or {}).get("devices") or [] if matches(attrs[d["id"]], spec)]
            if len(devs) >= count:
                could.append(name)
                if sum(1 for d in devs if d.get("healthy") and (name, d["id"]) not in held) >= count:
                    now.append(name)
        return could, now

    def _resting(self, c, snap, held):
        """Why claim c is not (yet) in a state it may rest in, or None."""
        m, spec = c["metadata"], c["spec"]
        if m.get("deletionTimestamp"):
            return "still deleting (finalizers %s)" % m.get("finalizers")
        cond = ready_cond(c)
        if cond is None:
            return "no Ready condition"
        if cond.get("observedGeneration") != m.get("generation"):
            return "Ready.observedGeneration %s != generation %s" % (cond.get("observedGeneration"), m.get("generation"))
        hc = ready_cond(c, "DevicesHealthy")
        if hc and hc.get("status") == "False":
            return "DevicesHealthy=False (%s) with every device file back" % hc.get("message")
        if cond["status"] == "True":
            return None
        reason = cond.get("reason")
        if reason not in REST_REASONS:
            return "Ready=False %s (not a reason to rest in)" % reason
        keys = {k for p in snap["pools"].values() if p["spec"]["resourceName"] == spec["resourceName"]
                for a in attributes(p).values() for k in a}
        unknown = [k for k in spec.get("selector") or {} if k not in keys]
        if reason == "InvalidSpec":
            return None if unknown else "InvalidSpec but every selector key is an attribute"
        could, now = self._fit(snap, spec, held)
        if reason == "NoMatchingDevices":
            return None if not could else "NoMatchingDevices but %s could hold it" % could
        if now:
            return "InsufficientDevices but %s has the devices free" % now
        return None if could else "InsufficientDevices but no pool could ever hold it"

    def _node_want(self, snap, held):
        """node -> resource -> (capacity, allocatable) the NodeCapacity pools
        say: healthy devices, and healthy devices not held."""
        want = {}
        for name, p in snap["pools"].items():
            if publish_of(p) != "NodeCapacity":
                continue
            devs = (p.get("status") or {}).get("devices") or []
            cap = sum(1 for d in devs if d.get("healthy"))
            free = sum(1 for d in devs if d.get("healthy") and (name, d["id"]) not in held)
            w = want.setdefault(p["spec"]["nodeName"], {})
            c0, a0 = w.get(p["spec"]["resourceName"], (0, 0))
            w[p["spec"]["resourceName"]] = (c0 + cap, a0 + free)
        return want

    def _node_diffs(self, snap, held):
        out = []
        want = self._node_want(snap, held)
        for node, n in snap["nodes"].items():
            st = n.get("status") or {}
            for res in (FPGA, ACC):
                w = want.get(node, {}).get(res)
                got = ((st.get("capacity") or {}).get(res), (st.get("allocatable") or {}).get(res))
                exp = (str(w[0]), str(w[1])) if w else (None, None)
                if got != exp:
                    out.append("node %s %s: capacity/allocatable %s, the pools say %s" % (node, res, got, exp))
        return out

    def _pool_devices_pending(self, snap):
        """With every device file back: every device healthy and every
        discovered file listed."""
        out = []
        for name, p in snap["pools"].items():
            st = p.get("status") or {}
            ids = {d["id"]: d for d in st.get("devices") or []}
            for d in ids.values():
                if not d.get("healthy"):
                    out.append("DevicePool %s: device %s unhealthy (%s)" % (name, d["id"], d.get("message")))
            for f in DISCOVERED.get(name, []):
                if f not in ids:
                    out.append("DevicePool %s: discovered device %s not listed" % (name, f))
        return out

    def pending(self, snap):
        held = self._held(snap)
        out = []
        for k, c in snap["claims"].items():
            why = self._resting(c, snap, held)
            if why:
                out.append("DeviceClaim %s: %s" % (k, why))
            elif is_ready(c) and c["spec"]["resourceName"] == ACC:
                rc = snap["rclaims"].get(k)
                if not rc or not (rc.get("status") or {}).get("allocation"):
                    out.append("DeviceClaim %s: its ResourceClaim is %s" % (k, "missing" if not rc else "not allocated"))
        uids = {c["metadata"]["uid"] for c in snap["claims"].values()}
        for r in snap["resv"]:
            if r["spec"]["claim"]["uid"] not in uids:
                out.append("Reservation %s: its claim is gone" % r["metadata"]["name"])
        for k, rc in snap["rclaims"].items():
            if k not in snap["claims"]:
                out.append("ResourceClaim %s: its DeviceClaim is gone" % k)
        for name, p in snap["pools"].items():
            st = p.get("status") or {}
            n = sum(1 for pk in held if pk[0] == name)
            if st.get("allocated") != n:
                out.append("DevicePool %s: status.allocated %s, Reservations %d" % (name, st.get("allocated"), n))
            if st.get("observedGeneration") != p["metadata"].get("generation"):
                out.append("DevicePool %s: observedGeneration %s" % (name, st.get("observedGeneration")))
        out += self._pool_devices_pending(snap)
        out += self._node_diffs(snap, held)
        if "dev-doomed" in snap["pools"] and self.doom_done:
            out.append("DevicePool dev-doomed: still there (deleted, its claims deleted)")
        return out

    def check(self, snap):
        """The four invariants of API.md for devices; every violation as a line."""
        v = []
        pools, claims = snap["pools"], snap["claims"]
        held = {}
        by_uid = {}
        for r in snap["resv"]:
            s, name = r["spec"], r["metadata"]["name"]
            pk = (s["pool"]["name"], s["slot"])
            # 1. one device, one Reservation (its name is the lock)
            if name != "devicepool.%s.%s" % pk:
                v.append("1: Reservation %s locks %s of %s (name mismatch)" % (name, pk[1], pk[0]))
            if pk in held:
                v.append("1: device %s of %s held by two Reservations" % (pk[1], pk[0]))
            held[pk] = s["claim"]["uid"]
            by_uid.setdefault(s["claim"]["uid"], []).append(pk)
        claim_of_uid = {c["metadata"]["uid"]: k for k, c in claims.items()}

        # 1 and 3: every Ready claim shows count distinct devices of one pool
        # that match it, each locked by a Reservation of its uid; nothing is
        # shown by two claims; a claim that is not Ready holds nothing.
        shown = {}
        for k, c in claims.items():
            spec, st, uid = c["spec"], c.get("status") or {}, c["metadata"]["uid"]
            mine = sorted(by_uid.get(uid, []))
            if not is_ready(c):
                if mine and not c["metadata"].get("deletionTimestamp"):
                    v.append("3: DeviceClaim %s is not Ready but holds %s" % (k, mine))
                if st.get("devices"):
                    v.append("3: DeviceClaim %s is not Ready but shows devices %s" % (k, st.get("devices")))
                continue
            devs, pool = st.get("devices") or [], st.get("pool")
            if len(devs) != spec.get("count", 1) or len(set(devs)) != len(devs):
                v.append("3: DeviceClaim %s Ready with devices %s, count %s" % (k, devs, spec.get("count", 1)))
            p = pools.get(pool)
            if p is None:
                v.append("3: DeviceClaim %s shows pool %s, which does not exist" % (k, pool))
                continue
            if p["spec"]["resourceName"] != spec["resourceName"]:
                v.append("3: DeviceClaim %s of %s holds devices of %s's %s"
                         % (k, spec["resourceName"], pool, p["spec"]["resourceName"]))
            if st.get("nodeName") != p["spec"]["nodeName"] or spec.get("nodeName") not in (None, p["spec"]["nodeName"]):
                v.append("3: DeviceClaim %s (nodeName %s) shows node %s, its pool %s is on %s"
                         % (k, spec.get("nodeName"), st.get("nodeName"), pool, p["spec"]["nodeName"]))
            attrs = attributes(p)
            for d in devs:
                pk = (pool, d)
                if pk in shown:
                    v.append("1: device %s of %s shown by two Ready claims: %s and %s" % (d, pool, shown[pk], k))
                shown[pk] = k
                if d not in attrs:
                    v.append("3: DeviceClaim %s holds %s, not a device of %s" % (k, d, pool))
                elif not matches(attrs[d], spec):
                    v.append("3: DeviceClaim %s holds %s of %s (attributes %s), not matching its selector %s"
                             % (k, d, pool, attrs[d], spec.get("selector")))
                if held.get(pk) != uid:
                    v.append("3: DeviceClaim %s shows %s of %s, Reservation %s"
                             % (k, d, pool, "missing" if pk not in held else "of uid " + held[pk]))
            if sorted((pool, d) for d in devs) != mine:
                v.append("3: DeviceClaim %s shows %s of %s, holds %s" % (k, devs, pool, mine))

        # 2. nothing held without its claim
        for r in snap["resv"]:
            s, name = r["spec"], r["metadata"]["name"]
            c = claims.get("%s/%s" % (s["claim"]["namespace"], s["claim"]["name"]))
            if c is None or c["metadata"]["uid"] != s["claim"]["uid"]:
                v.append("2: Reservation %s: no live claim %s/%s of uid %s"
                         % (name, s["claim"]["namespace"], s["claim"]["name"], s["claim"]["uid"]))
            if s["pool"]["name"] not in pools:
                v.append("2: Reservation %s: pool %s does not exist" % (name, s["pool"]["name"]))
        for k, c in claims.items():
            if c["metadata"].get("deletionTimestamp"):
                v.append("2: DeviceClaim %s still deleting (finalizers %s)" % (k, c["metadata"].get("finalizers")))

        # 3. pool status: devices[].claim names the holder; counts agree
        for name, p in pools.items():
            st = p.get("status") or {}
            devs = st.get("devices") or []
            for d in devs:
                want = claim_of_uid.get(held.get((name, d["id"])))
                if d.get("claim") != want:
                    v.append("3: DevicePool %s device %s: status claim %r, held by %r" % (name, d["id"], d.get("claim"), want))
            ids = {d["id"] for d in devs}
            for pk in held:
                if pk[0] == name and pk[1] not in ids:
                    v.append("3: DevicePool %s: %s is held but not in status.devices" % (name, pk[1]))
            healthy = sum(1 for d in devs if d.get("healthy"))
            nheld = sum(1 for pk in held if pk[0] == name)
            free = sum(1 for d in devs if d.get("healthy") and (name, d["id"]) not in held)
            want = {"capacity": healthy, "allocated": nheld, "available": free,
                    "unhealthy": len(devs) - healthy}
            got = {f: st.get(f) for f in want}
            if got != want:
                v.append("3: DevicePool %s status %s, devices[] and the Reservations say %s" % (name, got, want))
            decl = [d["id"] for d in p["spec"].get("devices") or []]
            want_ids = set(decl) | set(DISCOVERED.get(name, []))
            if ids != want_ids:
                v.append("3: DevicePool %s lists %s, its devices are %s" % (name, sorted(ids), sorted(want_ids)))
        v += ["3: " + x for x in self._node_diffs(snap, held)]

        # DRA: every Ready claim of a ResourceSlice pool has its ResourceClaim
        # allocated to exactly its devices; no ResourceClaim of provisio
        # without its DeviceClaim (2); no device in two allocations (1); the
        # slices list exactly the pools' devices, tainted when unhealthy.
        allocated = {}
        for k, rc in snap["rclaims"].items():
            res = ((((rc.get("status") or {}).get("allocation") or {}).get("devices") or {}).get("results") or [])
            got = sorted((x.get("driver"), x.get("pool"), x.get("device")) for x in res)
            for g in got:
                if g in allocated:
                    v.append("1: device %s of %s allocated to ResourceClaims %s and %s" % (g[2], g[1], allocated[g], k))
                allocated[g] = k
            c = claims.get(k)
            owners = [o.get("uid") for o in rc["metadata"].get("ownerReferences") or []]
            if c is None or c["metadata"]["uid"] not in owners:
                v.append("2: ResourceClaim %s without its DeviceClaim (owners %s)" % (k, owners))
                continue
            st = c.get("status") or {}
            want = sorted((DRIVER, st.get("pool"), d) for d in st.get("devices") or []) if is_ready(c) else []
            if got != want:
                v.append("3: ResourceClaim %s allocates %s, its DeviceClaim holds %s" % (k, got, want))
        for k, c in claims.items():
            p = pools.get((c.get("status") or {}).get("pool"))
            if is_ready(c) and p and publish_of(p) == "ResourceSlice":
                if (c.get("status") or {}).get("resourceClaimName") != c["metadata"]["name"] or k not in snap["rclaims"]:
                    v.append("3: DeviceClaim %s Ready in a ResourceSlice pool, resourceClaimName %s, ResourceClaim %s"
                             % (k, (c.get("status") or {}).get("resourceClaimName"),
                                "exists" if k in snap["rclaims"] else "missing"))
        sliced = {}
        for s in snap["slices"]:
            pool = s["spec"]["pool"]["name"]
            for d in s["spec"].get("devices") or []:
                sliced.setdefault(pool, {})[d["name"]] = d
        for name, p in pools.items():
            if publish_of(p) != "ResourceSlice":
                if name in sliced:
                    v.append("2: ResourceSlices of %s, which is not published that way" % name)
                continue
            devs = {d["id"]: d for d in (p.get("status") or {}).get("devices") or []}
            got = sliced.get(name, {})
            if set(got) != set(devs):
                v.append("3: the ResourceSlices of %s list %s, the pool %s" % (name, sorted(got), sorted(devs)))
            for i, d in devs.items():
                taints = {t.get("key") for t in (got.get(i) or {}).get("taints") or []}
                if "provisio.dev/managed" not in taints:
                    v.append("1: device %s of %s is not tainted provisio.dev/managed in its slice" % (i, name))
        for name in sliced:
            if name not in pools:
                v.append("2: ResourceSlices of %s, which does not exist" % name)

        # the claims' resting reasons are true
        for k, c in claims.items():
            why = self._resting(c, snap, held)
            if why:
                v.append("converged: DeviceClaim %s: %s" % (k, why))

        # 4. no object grows with the number of claims
        for kind, objs in (("DevicePool", pools.values()), ("DeviceClaim", claims.values()),
                           ("Reservation", snap["resv"])):
            for o in objs:
                n = len(json.dumps(o))
                if n > MAX_OBJECT_BYTES:
                    v.append("4: %s %s is %d bytes" % (kind, key(o), n))
        return v

    def check_live(self):
        """Invariant 1 at any moment: no device of a pool in two live Ready
        claims (one consistent list), nor in two ResourceClaims' allocations."""
        claims = self.api.list(GROUP + "/deviceclaims")
        if claims is None:
            return None
        seen, v = {}, []
        for c in claims:
            st = c.get("status") or {}
            if c["metadata"].get("deletionTimestamp") or not is_ready(c):
                continue
            for d in st.get("devices") or []:
                pk = (st.get("pool"), d)
                if pk in seen:
                    v.append("1 (during the storm): device %s of %s Ready in two live claims: %s and %s"
                             % (d, pk[0], seen[pk], key(c)))
                seen[pk] = key(c)
        rclaims = self.api.list(DRA + "/resourceclaims")
        alloc = {}
        for rc in rclaims or []:
            for x in ((((rc.get("status") or {}).get("allocation") or {}).get("devices") or {}).get("results") or []):
                g = (x.get("pool"), x.get("device"))
                if g in alloc:
                    v.append("1 (during the storm): device %s of %s allocated to ResourceClaims %s and %s"
                             % (g[1], g[0], alloc[g], key(rc)))
                alloc[g] = key(rc)
        return v

    def figures(self, snap):
        f = dict(self.n)
        if snap:
            f["claims_at_end"] = len(snap["claims"])
            f["claims_ready_at_end"] = sum(1 for c in snap["claims"].values() if is_ready(c))
            rest = {}
            for c in snap["claims"].values():
                cond = ready_cond(c) or {}
                if cond.get("status") == "False":
                    rest[cond.get("reason")] = rest.get(cond.get("reason"), 0) + 1
            f["claims_not_ready_at_end"] = ", ".join("%s %d" % kv for kv in sorted(rest.items())) or "0"
            f["reservations_at_end"] = len(snap["resv"])
            f["resource_claims_at_end"] = len(snap["rclaims"])
            f["pools_at_end"] = ", ".join("%s %s/%s" % (n, (p.get("status") or {}).get("allocated"),
                                                       (p.get("status") or {}).get("capacity"))
                                          for n, p in sorted(snap["pools"].items()))
            sizes = [len(json.dumps(o)) for o in list(snap["claims"].values()) + snap["resv"]]
            f["largest_claim_or_reservation_bytes"] = max(sizes) if sizes else 0
        return f
