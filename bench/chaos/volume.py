"""volume - the storage domain of the chaos run: StoragePools on the fake
nodes, storms of Volumes (and of dynamically provisioned PVCs), and the
invariants of API.md ("Invariants") checked exactly for bytes of pool
capacity, read from the API server and from the agents' host roots.

The domain interface is at the top of ip.py. What is real here
(src/reconcilers/volume/README.md, vol_claim.c, agent/vol_node.c):

- a placed Volume holds one Reservation storagepool.<pool>.<volume uid>
  (spec.slot = the uid, spec.bytes = its size, spec.admittedUntil = the
  deadline of its admission); a Reservation counts only if the API server
  created it by that deadline (creationTimestamp <= admittedUntil): an
  invalid one holds nothing and is deleted;
- the pool's status.allocatedBytes is the sum of the valid Reservations'
  bytes (Terminating ones too: their directory still holds them) plus the
  admissions in flight (status.inFlight, empty once nothing moves);
- the agent of the pool's node makes <host root><pool path>/<ns>_<name>_<uid>
  while the Reservation carries the finalizer provisio.dev/volume-directory,
  and removes it before that finalizer goes; for Retain the operator takes
  the finalizer off first and the directory stays (so a leftover directory
  is allowed only for a Volume of policy Retain: the storm names them r-*);
- once the directory is Ready the operator makes the PV (vol-<volume uid>,
  or pvc-<pvc uid> for a dynamic one, label provisio.dev/volume-uid) and,
  for a Volume, the PVC of its name owned by it; Ready = the PVC Bound.
  On delete it deletes both (for either policy) before the Reservation;
- a Volume that cannot be placed rests Ready=False PoolNotFound (spec.pool
  missing), PoolNotReady (spec.pool being deleted or not Ready),
  InvalidSpec (spec.pool on another node than spec.nodeName, or a size
  larger than the pool / every Ready pool), InsufficientCapacity (no
  eligible pool has the room; vol_claim.c choose_pool).

The storm: Volumes of sizes from 8Mi to 200Mi (a few of 700Mi, which only
the larger pools hold, and of 3Gi, which none does), reclaimPolicy Delete
and Retain, placed by spec.pool (now and then with spec.nodeName, rarely
another node's, or a pool that never exists), by spec.nodeName, or
anywhere; plain PVCs of an Immediate StorageClass of local.provisio.dev
(dynamic provisioning); deletes, and creates deleted 0-0.3 s later. The
pools hold about a third of what the live volumes ask, so most of the time
some wait InsufficientCapacity and are placed as others free their bytes.
No fault of its own: what a person could do to a node's volume directory
(remove it, fill the disk) is data loss or is not limited here (this
kernel has no project quota: the pools say quota Unsupported); the agent
kills and node heartbeat losses of chaos.py are the node-side faults.
"""

import calendar
import json
import os
import re
import threading
import time

from common import Domain, is_ready, key, ready_cond

GROUP = "/apis/provisio.dev/v1alpha1"
NS = "chaos-vol"  # Volumes
DYN_NS = "chaos-vol-dyn"  # plain PVCs of the StorageClass below (dynamic provisioning)
NAMESPACES = [NS, DYN_NS]
CLASS = "chaos-vol-imm"  # provisioner local.provisio.dev, Immediate, reclaimPolicy Delete
PROVISIONER = "local.provisio.dev"
UID_LABEL = "provisio.dev/volume-uid"
DIR_FINALIZER = "provisio.dev/volume-directory"
REST_REASONS = {"PoolNotFound", "PoolNotReady", "InvalidSpec", "InsufficientCapacity"}
MAX_OBJECT_BYTES = 8192  # invariant 4
Mi = 1 << 20

# The pools: small, so that the storm contends for space. "vol-late" is
# created a third of the way through (Volumes naming it wait PoolNotFound);
# "vol-doomed" is deleted two thirds of the way through while Volumes hold
# bytes of it (Terminating; Volumes naming it wait PoolNotReady), and the
# Volumes in it are deleted after the storm: it must then go.
POOLS = {
    "vol-a1": {"nodeName": "node-a", "path": "/srv/chaos-vol/a1", "capacity": "1Gi"},
    "vol-a2": {"nodeName": "node-a", "path": "/srv/chaos-vol/a2", "capacity": "600Mi"},
    "vol-b1": {"nodeName": "node-b", "path": "/srv/chaos-vol/b1", "capacity": "1Gi"},
    "vol-c1": {"nodeName": "node-c", "path": "/srv/chaos-vol/c1", "capacity": "800Mi"},
    "vol-late": {"nodeName": "node-b", "path": "/srv/chaos-vol/late", "capacity": "512Mi"},
    "vol-doomed": {"nodeName": "node-c", "path": "/srv/chaos-vol/doomed", "capacity": "512Mi"},
}
LATE, DOOMED = "vol-late", "vol-doomed"
MISSING_POOL = "vol-nope"  # never created: PoolNotFound for good
# spec.pool of the Volumes that name one
POOL_WEIGHTS = {"vol-a1": 3, "vol-a2": 2, "vol-b1": 3, "vol-c1": 2, LATE: 2, DOOMED: 2, MISSING_POOL: 0.3}
NODES = ["node-a", "node-b", "node-c"]
# sizes: mostly small (a few tens fit a pool); 700Mi fits only the 1Gi and
# 800Mi pools; 3Gi never fits (InvalidSpec); some in decimal units or bytes
SIZES = [("8Mi", 3), ("16Mi", 4), ("32Mi", 4), ("48Mi", 3), ("64Mi", 3), ("100M", 2), ("128Mi", 2),
         (50000000, 1), ("200Mi", 1), ("700Mi", 0.3), ("3Gi", 0.3)]
LATE_AT, DOOM_AT = 1 / 3, 2 / 3

_SUFFIX = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60,
           "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12, "P": 10 ** 15, "E": 10 ** 18, "": 1}


def quantity(v):
    """Bytes of a Kubernetes quantity (int, "10Gi", "100M", "1e3"), or None
    when it is not a whole number of bytes."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?)\s*",
                     str(v))
    if not m:
        return None
    num, exp, suf = m.group(1), m.group(2), m.group(3) or ""
    whole, _, frac = num.partition(".")
    frac = frac.rstrip("0")
    scale = int(exp[1:]) if exp else 0
    n = int(whole + frac) * _SUFFIX[suf]
    scale -= len(frac)
    if scale >= 0:
        return n * 10 ** scale
    d = 10 ** -scale
    return n // d if n % d == 0 else None


def parse_time(s):
    """Seconds since the epoch of a metav1.Time ("2026-12-07T03:46:00Z"), or None."""
    if not s:
        return None
    try:
        return calendar.timegm(time.strptime(s.split(".")[0].rstrip("Z") + "Z", "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return None


def valid(r):
    """A storage Reservation counts only if the API server created it by the
    deadline of its admission (README.md "The ledger", vol_resv_valid)."""
    s = r.get("spec") or {}
    created, until = parse_time(r["metadata"].get("creationTimestamp")), parse_time(s.get("admittedUntil"))
    return created is not None and until is not None and created <= until and (s.get("bytes") or 0) > 0


def deleting(obj):
    return bool(obj["metadata"].get("deletionTimestamp"))


def dir_name(vol):
    """<namespace>_<name>_<uid>: a Volume's directory in its pool (API.md)."""
    m = vol["metadata"]
    return "%s_%s_%s" % (m["namespace"], m["name"], m["uid"])


def retained_name(name):
    """The storm names its Volumes of reclaimPolicy Retain r-*: the policy of
    a Volume that is gone, read from its directory's name."""
    return name.startswith("r-")


def capacity_of(pool):
    return quantity(pool["spec"].get("capacity"))


def serves(pool, cls):
    """vol_pool_serves: a pool with no spec.storageClassName serves every class."""
    mine = pool["spec"].get("storageClassName")
    return not mine or mine == cls


def pv_name(vol):
    return ((vol["metadata"].get("annotations") or {}).get("provisio.dev/persistent-volume-name")
            or "vol-" + vol["metadata"]["uid"])


class VolumeDomain(Domain):
    name = "volume"

    def __init__(self, api, log, chaos=None):
        self.api, self.log, self.chaos = api, log, chaos
        self.lock = threading.Lock()
        self.live = {}  # "ns/name" -> {"kind": "Volume"|"PVC", "pool": spec.pool or None}
        self.seq = 0
        self.pools_made = set()
        self.n = {k: 0 for k in ("created", "created_retain", "created_dynamic", "created_by_pool",
                                 "created_by_node", "created_anywhere", "created_never_fit",
                                 "created_pool_missing", "created_pool_node_mismatch", "deleted",
                                 "deleted_pending", "doomed_volumes_deleted", "api_retries",
                                 "pools_created", "pools_deleted")}
        self.late_done = self.doom_done = self.finished = False

    def _make(self, path, body, what):
        st, doc = self._req("POST", path, body)
        if st not in (201, 409):
            raise RuntimeError("creating %s: HTTP %s %s" % (what, st, (doc or {}).get("message")))

    def _make_pool(self, name):
        spec = POOLS[name]
        if self.chaos is not None:  # the directory the agent checks (API.md: spec.path on that node)
            os.makedirs(self.chaos.node_root(spec["nodeName"]) + spec["path"], exist_ok=True)
        self._make(GROUP + "/storagepools", {"apiVersion": "provisio.dev/v1alpha1", "kind": "StoragePool",
                                             "metadata": {"name": name}, "spec": dict(spec, quota="Auto")},
                   "StoragePool " + name)
        self.pools_made.add(name)
        self.n["pools_created"] += 1

    def setup(self):
        for ns in NAMESPACES:
            self._make("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                       "namespace " + ns)
        self._make("/apis/storage.k8s.io/v1/storageclasses",
                   {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": CLASS},
                    "provisioner": PROVISIONER, "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"},
                   "StorageClass " + CLASS)
        for p in POOLS:
            if p != LATE:
                self._make_pool(p)
        # the storm may start before the pools are Ready (Volumes wait
        # InsufficientCapacity "no StoragePool is Ready" and are woken), but
        # a pool that never gets Ready is a broken setup, said at once
        end = time.monotonic() + 90
        while time.monotonic() < end:
            pools = self.api.list(GROUP + "/storagepools") or []
            ready = {p["metadata"]["name"] for p in pools if is_ready(p)}
            if self.pools_made <= ready:
                break
            time.sleep(1)
        else:
            self.log("volume: StoragePools not Ready 90 s after creation: %s" % sorted(self.pools_made - ready))

    def progress(self, fraction):
        if fraction >= LATE_AT and not self.late_done:
            self.late_done = True
            self._make_pool(LATE)
            self.log("volume: StoragePool %s created (Volumes waiting PoolNotFound get placed)" % LATE)
        if fraction >= DOOM_AT and not self.doom_done:
            self.doom_done = True
            self._req("DELETE", GROUP + "/storagepools/" + DOOMED)
            self.n["pools_deleted"] += 1
            self.log("volume: StoragePool %s deleted while its volumes hold bytes" % DOOMED)

    # ---- the storm ---------------------------------------------------------------

    def _create(self, rng):
        size = rng.choices([s for s, _ in SIZES], weights=[w for _, w in SIZES])[0]
        never = quantity(size) > max(capacity_of({"spec": s}) for s in POOLS.values())
        with self.lock:
            self.seq += 1
            seq = self.seq
        if rng.random() < 0.12:  # a plain PVC of the provisioner's class
            name = "p-%05d" % seq
            body = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": name, "namespace": DYN_NS},
                    "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": CLASS,
                             "resources": {"requests": {"storage": str(size)}}}}
            st, doc = self._req("POST", "/api/v1/namespaces/%s/persistentvolumeclaims" % DYN_NS, body)
            kind, ns, what = "PVC", DYN_NS, {"kind": "PVC", "pool": None}
            counts = ["created_dynamic"]
        else:
            retain = rng.random() < 0.3
            name = ("r-%05d" if retain else "d-%05d") % seq
            spec = {"size": size, "reclaimPolicy": "Retain" if retain else "Delete"}
            counts = ["created_retain"] if retain else []
            r = rng.random()
            if r < 0.4:
                spec["pool"] = rng.choices(list(POOL_WEIGHTS), weights=list(POOL_WEIGHTS.values()))[0]
                counts.append("created_by_pool")
                if spec["pool"] == MISSING_POOL:
                    counts.append("created_pool_missing")
                elif rng.random() < 0.15:  # with its node, now and then another one (InvalidSpec)
                    node = POOLS[spec["pool"]]["nodeName"]
                    if rng.random() < 0.2:
                        node = rng.choice([n for n in NODES if n != node])
                        counts.append("created_pool_node_mismatch")
                    spec["nodeName"] = node
            elif r < 0.65:
                spec["nodeName"] = rng.choice(NODES)
                counts.append("created_by_node")
            else:
                counts.append("created_anywhere")
            body = {"apiVersion": "provisio.dev/v1alpha1", "kind": "Volume",
                    "metadata": {"name": name, "namespace": NS}, "spec": spec}
            st, doc = self._req("POST", "%s/namespaces/%s/volumes" % (GROUP, NS), body)
            kind, ns, what = "Volume", NS, {"kind": "Volume", "pool": spec.get("pool")}
        if st not in (201, 409):  # 409: a retry of a POST whose answer was lost
            self.log("volume: create %s %s/%s: HTTP %s %s" % (kind, ns, name, st, (doc or {}).get("message")))
            return None, what
        k = "%s/%s" % (ns, name)
        with self.lock:
            self.live[k] = what
            self.n["created"] += 1
            for c in counts + (["created_never_fit"] if never else []):
                self.n[c] += 1
        return k, what

    def _delete(self, k, what):
        kind = what["kind"]
        ns, name = k.split("/")
        path = ("/api/v1/namespaces/%s/persistentvolumeclaims/%s" % (ns, name) if kind == "PVC"
                else "%s/namespaces/%s/volumes/%s" % (GROUP, ns, name))
        st, doc = self._req("DELETE", path)
        if st not in (200, 202, 404):
            self.log("volume: delete %s %s: HTTP %s %s" % (kind, k, st, (doc or {}).get("message")))
        with self.lock:
            self.n["deleted"] += 1

    def finish(self):
        """Delete every volume of the deleted pool (named by spec.pool, or
        placed there: its Reservations say so): the pool must then go."""
        self.finished = True
        with self.lock:
            doomed = {k: w for k, w in self.live.items() if w["pool"] == DOOMED}
        end = time.monotonic() + 120
        while True:  # the Volumes placed there without naming it are known only from the server
            resv, vols = self.api.list(GROUP + "/reservations"), self.api.list(GROUP + "/volumes")
            if (resv is not None and vols is not None) or time.monotonic() > end:
                break
            time.sleep(1)
        resv, vols = resv or [], {key(v): v for v in vols or []}
        for r in resv:
            s = r["spec"]
            if s["pool"]["name"] != DOOMED or s["claim"]["kind"] != "Volume":
                continue
            k = "%s/%s" % (s["claim"]["namespace"], s["claim"]["name"])
            v = vols.get(k)
            if v is None or v["metadata"]["uid"] != s["claim"]["uid"]:
                continue
            doomed[k] = {"kind": "PVC" if s["claim"]["namespace"] == DYN_NS else "Volume", "pool": DOOMED}
        for k, v in vols.items():
            if (v.get("status") or {}).get("pool") == DOOMED:
                doomed.setdefault(k, {"kind": "PVC" if v["metadata"]["namespace"] == DYN_NS else "Volume",
                                      "pool": DOOMED})
        with self.lock:
            for k in doomed:
                self.live.pop(k, None)
        for k, w in sorted(doomed.items()):
            self._delete(k, w)
        self.n["doomed_volumes_deleted"] = len(doomed)
        self.log("volume: deleted the %d volumes of the deleted pool %s" % (len(doomed), DOOMED))

    # ---- reading and judging -----------------------------------------------------

    def _dirs(self):
        """Every pool directory on its node (under the agent's host root), the
        gone pool's too: {(node, path): [entries]} (dot-names left out: the
        agent's probe file)."""
        out = {}
        for p, s in POOLS.items():
            d = self.chaos.node_root(s["nodeName"]) + s["path"]
            try:
                out[(s["nodeName"], s["path"])] = sorted(e for e in os.listdir(d) if not e.startswith("."))
            except FileNotFoundError:
                out[(s["nodeName"], s["path"])] = []
        return out

    def snapshot(self):
        pools = self.api.list(GROUP + "/storagepools")
        vols = self.api.list(GROUP + "/volumes")
        resv = self.api.list(GROUP + "/reservations")
        pvs = self.api.list("/api/v1/persistentvolumes")
        pvcs = [self.api.list("/api/v1/namespaces/%s/persistentvolumeclaims" % ns) for ns in NAMESPACES]
        if pools is None or vols is None or resv is None or pvs is None or any(x is None for x in pvcs):
            return None
        return {"pools": {p["metadata"]["name"]: p for p in pools},
                "volumes": {key(v): v for v in vols if v["metadata"]["namespace"] in NAMESPACES},
                "resv": [r for r in resv if r["spec"]["pool"]["kind"] == "StoragePool"],
                "pvs": {p["metadata"]["name"]: p for p in pvs if UID_LABEL in (p["metadata"].get("labels") or {})},
                "pvcs": {key(c): c for lst in pvcs for c in lst},
                "dirs": self._dirs() if self.chaos is not None else {}}

    def _index(self, snap):
        by_pool, by_uid, by_name = {}, {}, {}
        for r in snap["resv"]:
            s = r["spec"]
            by_pool.setdefault(s["pool"]["name"], []).append(r)
            by_uid.setdefault(s["claim"]["uid"], []).append(r)
            by_name[r["metadata"]["name"]] = r
        return by_pool, by_uid, by_name

    def _candidates(self, v, snap):
        """The pools an unpinned Volume may be placed in (choose_pool): Ready,
        not deleting, on spec.nodeName if set, serving its class."""
        node = v["spec"].get("nodeName")
        cls = (v["metadata"].get("annotations") or {}).get("provisio.dev/storage-class")
        return [p for p in snap["pools"].values()
                if not deleting(p) and is_ready(p) and (not node or p["spec"]["nodeName"] == node)
                and (not cls or serves(p, cls))]

    def _resting(self, v, snap):
        """Why Volume v is not (yet) in a state it may rest in, or None: Ready,
        or Ready=False with a reason true of the state (vol_claim.c choose_pool)."""
        m, spec = v["metadata"], v["spec"]
        if deleting(v):
            return "still deleting (finalizers %s)" % m.get("finalizers")
        cond = ready_cond(v)
        if cond is None:
            return "no Ready condition"
        if cond.get("observedGeneration") != m.get("generation"):
            return "Ready.observedGeneration %s != generation %s" % (cond.get("observedGeneration"),
                                                                     m.get("generation"))
        if cond["status"] == "True":
            return None
        reason = cond.get("reason")
        if reason not in REST_REASONS:
            return "Ready=False %s (not a reason to rest in): %s" % (reason, cond.get("message"))
        size = quantity(spec.get("size"))
        if size is None or size <= 0:
            return None if reason == "InvalidSpec" else "%s, but spec.size %r is not a size" % (reason, spec.get("size"))
        if spec.get("pool"):
            pool = snap["pools"].get(spec["pool"])
            if reason == "PoolNotFound":
                return None if pool is None else "PoolNotFound but StoragePool %s exists" % spec["pool"]
            if pool is None:
                return "%s but StoragePool %s does not exist" % (reason, spec["pool"])
            node_off = spec.get("nodeName") and spec["nodeName"] != pool["spec"]["nodeName"]
            if reason == "PoolNotReady":
                return (None if not node_off and (deleting(pool) or not is_ready(pool))
                        else "PoolNotReady but StoragePool %s is Ready and not deleting" % spec["pool"])
            if reason == "InvalidSpec":
                cap = capacity_of(pool)
                return (None if node_off or (cap is not None and size > cap)
                        else "InvalidSpec but %s fits StoragePool %s (%s bytes) on its node"
                        % (size, spec["pool"], cap))
            avail = (pool.get("status") or {}).get("availableBytes")
            if node_off or deleting(pool) or not is_ready(pool):
                return "InsufficientCapacity but StoragePool %s is %s" % (
                    spec["pool"], "on another node" if node_off else "not Ready or deleting")
            return (None if avail is not None and avail < size
                    else "InsufficientCapacity but StoragePool %s has availableBytes %s >= %s"
                    % (spec["pool"], avail, size))
        if reason in ("PoolNotFound", "PoolNotReady"):
            return "%s without spec.pool" % reason
        cands = self._candidates(v, snap)
        if reason == "InvalidSpec":
            caps = [capacity_of(p) or 0 for p in cands]
            return (None if caps and max(caps) < size
                    else "InvalidSpec but a Ready StoragePool can hold %s bytes (capacities %s)" % (size, caps))
        room = [p["metadata"]["name"] for p in cands
                if ((p.get("status") or {}).get("availableBytes") or 0) >= size]
        return None if not room else "InsufficientCapacity but %s have room for %d bytes" % (room, size)

    def _dir_entries(self, snap):
        """[(pool path key, entry, (namespace, name, uid))] of every volume directory on the nodes."""
        out = []
        for where, entries in snap["dirs"].items():
            for e in entries:
                parts = e.split("_")
                out.append((where, e, tuple(parts) if len(parts) == 3 else None))
        return out

    def pending(self, snap):
        """Not converged yet: Volumes not resting, deletions not done, orphans
        not swept, directories not removed, pool counts not settled."""
        by_pool, by_uid, by_name = self._index(snap)
        out = []
        for k, v in snap["volumes"].items():
            why = self._resting(v, snap)
            if why:
                out.append("Volume %s: %s" % (k, why))
        uids = {v["metadata"]["uid"]: v for v in snap["volumes"].values()}
        for r in snap["resv"]:
            name = r["metadata"]["name"]
            if r["spec"]["claim"]["uid"] not in uids:
                out.append("Reservation %s: its Volume is gone" % name)
            elif not valid(r):
                out.append("Reservation %s: invalid (made after its deadline), not released yet" % name)
            elif deleting(r):
                out.append("Reservation %s: Terminating (finalizers %s)" % (name, r["metadata"].get("finalizers")))
        for name, p in snap["pools"].items():
            st = p.get("status") or {}
            if deleting(p):
                out.append("StoragePool %s: still there, deleting (%d Reservations)"
                           % (name, len(by_pool.get(name, []))))
                continue
            if not is_ready(p):
                out.append("StoragePool %s: not Ready (%s)" % (name, (ready_cond(p) or {}).get("reason")))
            held = sum(r["spec"]["bytes"] for r in by_pool.get(name, []) if valid(r))
            if st.get("allocatedBytes") != held or st.get("inFlight"):
                out.append("StoragePool %s: allocatedBytes %s, inFlight %d, Reservations hold %d"
                           % (name, st.get("allocatedBytes"), len(st.get("inFlight") or []), held))
        for name, pv in snap["pvs"].items():
            if pv["metadata"]["labels"][UID_LABEL] not in uids:
                out.append("PersistentVolume %s: its Volume is gone" % name)
        for k, c in snap["pvcs"].items():
            ns = c["metadata"]["namespace"]
            if deleting(c):
                out.append("PersistentVolumeClaim %s: still deleting" % k)
            elif ns == NS and not any(o.get("uid") in uids for o in c["metadata"].get("ownerReferences") or []):
                out.append("PersistentVolumeClaim %s: its Volume is gone" % k)
            elif ns == DYN_NS and (c.get("status") or {}).get("phase") != "Bound" and k not in snap["volumes"]:
                out.append("PersistentVolumeClaim %s: %s, no Volume for it" % (k, (c.get("status") or {}).get("phase")))
        for where, e, parts in self._dir_entries(snap):
            if parts and parts[2] not in by_uid and not (parts[2] not in uids and retained_name(parts[1])):
                out.append("directory %s:%s/%s: no Reservation of its Volume" % (where[0], where[1], e))
        if self.finished and DOOMED in snap["pools"]:
            out.append("StoragePool %s: still there (deleted, its volumes deleted)" % DOOMED)
        return out

    def check(self, snap):
        """The four invariants of API.md for bytes of StoragePools; every violation as a line."""
        v = []
        by_pool, by_uid, by_name = self._index(snap)
        pools, vols, pvs, pvcs = snap["pools"], snap["volumes"], snap["pvs"], snap["pvcs"]
        uids = {x["metadata"]["uid"]: x for x in vols.values()}

        # 1. no byte held twice: the valid Reservations of a pool add up to at
        #    most its capacity, and so do its Ready Volumes' sizes; a Volume
        #    holds at most one Reservation; a Reservation is named for its
        #    pool and its Volume's uid and holds the Volume's size.
        for name, rs in sorted(by_pool.items()):
            p = pools.get(name)
            cap = capacity_of(p) if p else capacity_of({"spec": POOLS[name]}) if name in POOLS else None
            held = sum(r["spec"]["bytes"] for r in rs if valid(r))
            if cap is not None and held > cap:
                v.append("1: StoragePool %s: valid Reservations hold %d bytes, capacity %d" % (name, held, cap))
        ready_sum = {}
        for k, x in vols.items():
            if is_ready(x) and not deleting(x):
                pn = (x.get("status") or {}).get("pool")
                ready_sum[pn] = ready_sum.get(pn, 0) + (quantity(x["spec"].get("size")) or 0)
        for pn, n in sorted(ready_sum.items(), key=lambda kv: str(kv[0])):
            cap = capacity_of(pools[pn]) if pn in pools else None
            if cap is not None and n > cap:
                v.append("1: StoragePool %s: Ready Volumes' sizes add up to %d bytes, capacity %d" % (pn, n, cap))
        for uid, rs in by_uid.items():
            if len(rs) > 1:
                x = uids.get(uid)
                v.append("1: Volume %s (uid %s) holds %d Reservations: %s"
                         % (key(x) if x else "?", uid, len(rs), sorted(r["metadata"]["name"] for r in rs)))
        for r in snap["resv"]:
            s, name = r["spec"], r["metadata"]["name"]
            if name != "storagepool.%s.%s" % (s["pool"]["name"], s["slot"]) or s["slot"] != s["claim"]["uid"]:
                v.append("1: Reservation %s: slot %s, claim uid %s (name mismatch)"
                         % (name, s["slot"], s["claim"]["uid"]))
            x = uids.get(s["claim"]["uid"])
            if x is not None and quantity(x["spec"].get("size")) != s.get("bytes"):
                v.append("1: Reservation %s holds %s bytes, its Volume %s is %s"
                         % (name, s.get("bytes"), key(x), x["spec"].get("size")))
            p = pools.get(s["pool"]["name"])
            node = (r["metadata"].get("labels") or {}).get("provisio.dev/node")
            if p and node != p["spec"]["nodeName"]:
                v.append("1: Reservation %s labelled node %s, its pool is on %s" % (name, node, p["spec"]["nodeName"]))

        # 2. nothing held without its claim: every Reservation names a live
        #    Volume by uid (and is valid: an invalid one is released), its pool
        #    exists; no Volume stuck deleting; no directory of a Delete Volume
        #    that is gone, and none without its Reservation; no PV or PVC of a
        #    Volume that is gone.
        for r in snap["resv"]:
            s, name = r["spec"], r["metadata"]["name"]
            c = s["claim"]
            x = vols.get("%s/%s" % (c["namespace"], c["name"]))
            if c.get("kind") != "Volume":
                v.append("2: Reservation %s: claim kind %s, not Volume" % (name, c.get("kind")))
            if x is None:
                v.append("2: Reservation %s: Volume %s/%s does not exist" % (name, c["namespace"], c["name"]))
            elif x["metadata"]["uid"] != c["uid"]:
                v.append("2: Reservation %s: Volume %s has uid %s, not %s"
                         % (name, key(x), x["metadata"]["uid"], c["uid"]))
            elif deleting(x):
                v.append("2: Reservation %s: Volume %s is being deleted" % (name, key(x)))
            elif x["spec"].get("pool") and x["spec"]["pool"] != s["pool"]["name"]:
                v.append("2: Reservation %s is of pool %s, its Volume %s asks %s"
                         % (name, s["pool"]["name"], key(x), x["spec"]["pool"]))
            if not valid(r):
                v.append("2: Reservation %s: invalid (created %s after its deadline %s), still there"
                         % (name, r["metadata"].get("creationTimestamp"), s.get("admittedUntil")))
            if deleting(r):
                v.append("2: Reservation %s still Terminating (finalizers %s)"
                         % (name, r["metadata"].get("finalizers")))
        for name in by_pool:
            if name not in pools:
                v.append("2: %d Reservations of StoragePool %s, which does not exist" % (len(by_pool[name]), name))
        for k, x in vols.items():
            if deleting(x):
                v.append("2: Volume %s still deleting (finalizers %s)" % (k, x["metadata"].get("finalizers")))
        for where, e, parts in self._dir_entries(snap):
            if parts is None:
                v.append("2: %s:%s/%s: not a volume directory name" % (where[0], where[1], e))
                continue
            ns, vname, uid = parts
            x = uids.get(uid)
            if x is None:
                if not retained_name(vname):
                    v.append("2: directory %s:%s/%s of Volume %s/%s (Delete), which does not exist"
                             % (where[0], where[1], e, ns, vname))
                continue
            mine = [r for r in by_uid.get(uid, []) if r["spec"]["pool"]["name"] in pools and
                    (pools[r["spec"]["pool"]["name"]]["spec"]["nodeName"],
                     pools[r["spec"]["pool"]["name"]]["spec"]["path"]) == where]
            if not mine:
                v.append("2: directory %s:%s/%s of Volume %s without its Reservation in that pool"
                         % (where[0], where[1], e, key(x)))
            elif not any(DIR_FINALIZER in (r["metadata"].get("finalizers") or []) for r in mine):
                v.append("2: directory %s:%s/%s: its Reservation %s lacks the finalizer %s"
                         % (where[0], where[1], e, mine[0]["metadata"]["name"], DIR_FINALIZER))
        for name, pv in sorted(pvs.items()):
            if pv["metadata"]["labels"][UID_LABEL] not in uids:
                policy = pv["spec"].get("persistentVolumeReclaimPolicy")
                v.append("2: PersistentVolume %s (%s%s) of Volume uid %s, which does not exist"
                         % (name, policy, "" if policy == "Delete" else "; the operator deletes it for either policy",
                            pv["metadata"]["labels"][UID_LABEL]))
        for k, c in sorted(pvcs.items()):
            owners = c["metadata"].get("ownerReferences") or []
            if c["metadata"]["namespace"] == NS and not any(o.get("uid") in uids for o in owners):
                v.append("2: PersistentVolumeClaim %s owned by %s, a Volume that does not exist"
                         % (k, [o.get("uid") for o in owners]))

        # 3. status backed by what exists: pool counts equal the valid
        #    Reservations; a Ready Volume's pool, node, path, PV and PVC are
        #    real, its directory is on that node; a Volume not Ready holds nothing.
        for name, p in sorted(pools.items()):
            if deleting(p):
                continue  # its status is kept as it was; pending says it did not go
            st = p.get("status") or {}
            rs = [r for r in by_pool.get(name, []) if valid(r)]
            cap = capacity_of(p)
            alloc = sum(r["spec"]["bytes"] for r in rs)
            want = {"capacityBytes": cap, "allocatedBytes": alloc, "availableBytes": max(0, cap - alloc),
                    "volumes": len(rs), "inFlight": 0, "observedGeneration": p["metadata"].get("generation")}
            got = {f: st.get(f) for f in want}
            got["inFlight"] = len(st.get("inFlight") or [])
            if got != want:
                v.append("3: StoragePool %s status %s, the Reservations say %s" % (name, got, want))
        for k, x in sorted(vols.items()):
            if deleting(x):
                continue
            mine = [r for r in by_uid.get(x["metadata"]["uid"], []) if valid(r)]
            if is_ready(x):
                v += ["3: Volume %s Ready: %s" % (k, why) for why in self._ready_backing(x, snap, mine)]
            elif mine:
                v.append("3: Volume %s is not Ready but holds %s" % (k, [r["metadata"]["name"] for r in mine]))
        for k, c in sorted(pvcs.items()):
            if c["metadata"]["namespace"] != DYN_NS or (c.get("status") or {}).get("phase") != "Bound":
                continue
            x = vols.get(k)
            want_pv = "pvc-" + c["metadata"]["uid"]
            if x is None or not is_ready(x):
                v.append("3: PersistentVolumeClaim %s Bound, its Volume %s"
                         % (k, "missing" if x is None else "not Ready"))
            if c["spec"].get("volumeName") != want_pv:
                v.append("3: PersistentVolumeClaim %s bound to %s, not %s" % (k, c["spec"].get("volumeName"), want_pv))

        # the Volumes' resting reasons are true (one stuck Ready=False while it
        # could be placed is a lost retry, not an invariant, but a finding)
        for k, x in sorted(vols.items()):
            why = self._resting(x, snap)
            if why:
                v.append("converged: Volume %s: %s" % (k, why))

        # 4. no object grows with the number of volumes
        for kind, objs in (("StoragePool", pools.values()), ("Volume", vols.values()), ("Reservation", snap["resv"]),
                           ("PersistentVolume", pvs.values()), ("PersistentVolumeClaim", pvcs.values())):
            for o in objs:
                n = len(json.dumps(o))
                if n > MAX_OBJECT_BYTES:
                    v.append("4: %s %s is %d bytes" % (kind, key(o), n))
        return v

    def _ready_backing(self, x, snap, mine):
        """What is wrong with Ready Volume x (its valid Reservations: mine)."""
        out = []
        st, spec, m = x.get("status") or {}, x["spec"], x["metadata"]
        size = quantity(spec.get("size"))
        pn = st.get("pool")
        pool = snap["pools"].get(pn)
        if pool is None:
            return ["status.pool %s does not exist" % pn]
        if spec.get("pool") and spec["pool"] != pn:
            out.append("status.pool %s, spec.pool %s" % (pn, spec["pool"]))
        node = pool["spec"]["nodeName"]
        if spec.get("nodeName") and spec["nodeName"] != node:
            out.append("in pool %s on %s, spec.nodeName %s" % (pn, node, spec["nodeName"]))
        if st.get("nodeName") != node:
            out.append("status.nodeName %s, its pool is on %s" % (st.get("nodeName"), node))
        want_path = "%s/%s" % (pool["spec"]["path"], dir_name(x))
        if st.get("path") != want_path:
            out.append("status.path %s, not %s" % (st.get("path"), want_path))
        if dir_name(x) not in snap["dirs"].get((node, pool["spec"]["path"]), []) and snap["dirs"]:
            out.append("no directory %s on node %s" % (want_path, node))
        if st.get("capacityBytes") != size:
            out.append("status.capacityBytes %s, spec.size %s" % (st.get("capacityBytes"), size))
        r = [r for r in mine if r["spec"]["pool"]["name"] == pn]
        if not r:
            out.append("no valid Reservation in %s (holds %s)" % (pn, [r["metadata"]["name"] for r in mine]))
        else:
            rs = r[0].get("status") or {}
            if rs.get("phase") != "Ready" or rs.get("path") != want_path:
                out.append("Reservation %s status phase %s path %s"
                           % (r[0]["metadata"]["name"], rs.get("phase"), rs.get("path")))
        pvn, pvcn = st.get("persistentVolumeName"), st.get("persistentVolumeClaimName")
        if pvn != pv_name(x):
            out.append("status.persistentVolumeName %s, not %s" % (pvn, pv_name(x)))
        pv = snap["pvs"].get(pvn)
        if pv is None:
            out.append("PersistentVolume %s does not exist" % pvn)
        else:
            ps = pv["spec"]
            terms = (((ps.get("nodeAffinity") or {}).get("required") or {}).get("nodeSelectorTerms") or [{}])
            exprs = terms[0].get("matchExpressions") or [{}]
            ref = ps.get("claimRef") or {}
            if pv["metadata"]["labels"].get(UID_LABEL) != m["uid"]:
                out.append("PersistentVolume %s labelled for uid %s" % (pvn, pv["metadata"]["labels"].get(UID_LABEL)))
            if (ps.get("local") or {}).get("path") != want_path or exprs[0].get("values") != [node]:
                out.append("PersistentVolume %s local.path %s on %s"
                           % (pvn, (ps.get("local") or {}).get("path"), exprs[0].get("values")))
            if quantity((ps.get("capacity") or {}).get("storage")) != size:
                out.append("PersistentVolume %s capacity %s" % (pvn, (ps.get("capacity") or {}).get("storage")))
            if (ref.get("namespace"), ref.get("name")) != (m["namespace"], pvcn):
                out.append("PersistentVolume %s claimRef %s/%s" % (pvn, ref.get("namespace"), ref.get("name")))
            if ps.get("persistentVolumeReclaimPolicy") != (spec.get("reclaimPolicy") or "Delete"):
                out.append("PersistentVolume %s policy %s, spec.reclaimPolicy %s"
                           % (pvn, ps.get("persistentVolumeReclaimPolicy"), spec.get("reclaimPolicy")))
            if (pv.get("status") or {}).get("phase") != "Bound":
                out.append("PersistentVolume %s is %s" % (pvn, (pv.get("status") or {}).get("phase")))
        pvc = snap["pvcs"].get("%s/%s" % (m["namespace"], pvcn))
        if pvcn != m["name"] or pvc is None:
            out.append("PersistentVolumeClaim %s/%s %s"
                       % (m["namespace"], pvcn, "missing" if pvc is None else "is not the Volume's name"))
        elif (pvc.get("status") or {}).get("phase") != "Bound" or pvc["spec"].get("volumeName") != pvn:
            out.append("PersistentVolumeClaim %s %s to %s"
                       % (pvcn, (pvc.get("status") or {}).get("phase"), pvc["spec"].get("volumeName")))
        elif pv is not None and (pv["spec"].get("claimRef") or {}).get("uid") != pvc["metadata"]["uid"]:
            out.append("PersistentVolume %s claimRef uid is not PersistentVolumeClaim %s's" % (pvn, pvcn))
        return out

    def check_live(self):
        """Invariant 1 at any moment: in one list of Reservations (one
        resourceVersion: a consistent view) the valid ones of a pool hold at
        most its capacity; in one list of Volumes, the Ready live ones of a
        pool add up to at most its capacity."""
        resv = self.api.list(GROUP + "/reservations")
        if resv is None:
            return None
        vols = self.api.list("%s/namespaces/%s/volumes" % (GROUP, NS)) or []
        dyn = self.api.list("%s/namespaces/%s/volumes" % (GROUP, DYN_NS)) or []
        caps = {p: capacity_of({"spec": s}) for p, s in POOLS.items()}
        v = []
        held = {}
        for r in resv:
            s = r["spec"]
            if s["pool"]["kind"] == "StoragePool" and valid(r):
                held[s["pool"]["name"]] = held.get(s["pool"]["name"], 0) + s["bytes"]
        for p, n in sorted(held.items()):
            if p in caps and n > caps[p]:
                v.append("1 (during the storm): StoragePool %s: valid Reservations hold %d bytes, capacity %d"
                         % (p, n, caps[p]))
        ready = {}
        for x in vols + dyn:
            if is_ready(x) and not deleting(x):
                p = (x.get("status") or {}).get("pool")
                ready[p] = ready.get(p, 0) + (quantity(x["spec"].get("size")) or 0)
        for p, n in sorted(ready.items(), key=lambda kv: str(kv[0])):
            if p in caps and n > caps[p]:
                v.append("1 (during the storm): StoragePool %s: Ready Volumes' sizes add up to %d bytes, capacity %d"
                         % (p, n, caps[p]))
        return v

    def figures(self, snap):
        f = dict(self.n)
        if snap:
            vols = snap["volumes"].values()
            f["volumes_at_end"] = len(snap["volumes"])
            f["volumes_ready_at_end"] = sum(1 for x in vols if is_ready(x))
            rest = {}
            for x in vols:
                cond = ready_cond(x) or {}
                if cond.get("status") == "False":
                    rest[cond.get("reason")] = rest.get(cond.get("reason"), 0) + 1
            f["volumes_not_ready_at_end"] = ", ".join("%s %d" % kv for kv in sorted(rest.items())) or "0"
            f["dynamic_pvcs_bound_at_end"] = sum(1 for k, c in snap["pvcs"].items() if k.startswith(DYN_NS + "/")
                                                 and (c.get("status") or {}).get("phase") == "Bound")
            f["reservations_at_end"] = len(snap["resv"])
            f["persistent_volumes_at_end"] = len(snap["pvs"])
            f["pools_at_end"] = ", ".join(
                "%s %s/%s Mi" % (n, ((p.get("status") or {}).get("allocatedBytes") or 0) // Mi,
                                 ((p.get("status") or {}).get("capacityBytes") or 0) // Mi)
                for n, p in sorted(snap["pools"].items()))
            entries = [parts for _, _, parts in self._dir_entries(snap) if parts]
            f["directories_at_end"] = len(entries)
            uids = {x["metadata"]["uid"] for x in vols}
            f["retained_directories_at_end"] = sum(1 for p in entries if p[2] not in uids)
            objs = (list(snap["pools"].values()) + list(vols) + snap["resv"] + list(snap["pvs"].values())
                    + list(snap["pvcs"].values()))
            f["largest_object_bytes"] = max((len(json.dumps(o)) for o in objs), default=0)
        return f
