"""The volume domain's checks find what they are meant to find: a chaos run
that reports nothing is worth something only if a broken state is reported.
Synthetic snapshots, no cluster:  python3 -m unittest discover bench/chaos
"""

import copy
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True

import volume  # noqa: E402
from volume import Mi  # noqa: E402

NS = volume.NS
T_ADMIT = "2026-12-07T10:00:00Z"  # creationTimestamp of the Reservations
T_UNTIL = "2026-12-07T10:00:15Z"  # their admittedUntil


def pool(name):
    spec = dict(volume.POOLS[name], quota="Auto")
    return {"metadata": {"name": name, "generation": 1, "finalizers": ["provisio.dev/finalizer"]},
            "spec": spec,
            "status": {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}]}}


def vol(name, uid, size="64Mi", spool=None, snode=None, ready=True, reason="Bound", policy=None, ns=NS):
    spec = {"size": size}
    if spool:
        spec["pool"] = spool
    if snode:
        spec["nodeName"] = snode
    if policy:
        spec["reclaimPolicy"] = policy
    return {"metadata": {"namespace": ns, "name": name, "uid": uid, "generation": 1},
            "spec": spec,
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       "reason": reason, "observedGeneration": 1, "message": "m"}]}}


def resv(v, pool_name, bytes_=None, created=T_ADMIT, until=T_UNTIL):
    m = v["metadata"]
    return {"metadata": {"name": "storagepool.%s.%s" % (pool_name, m["uid"]), "creationTimestamp": created,
                         "finalizers": [volume.DIR_FINALIZER],
                         "labels": {"provisio.dev/pool-kind": "StoragePool", "provisio.dev/pool": pool_name,
                                    "provisio.dev/node": volume.POOLS[pool_name]["nodeName"]}},
            "spec": {"pool": {"kind": "StoragePool", "name": pool_name}, "slot": m["uid"],
                     "bytes": volume.quantity(v["spec"]["size"]) if bytes_ is None else bytes_, "admittedUntil": until,
                     "claim": {"kind": "Volume", "namespace": m["namespace"], "name": m["name"], "uid": m["uid"]}},
            "status": {"phase": "Ready", "path": "%s/%s" % (volume.POOLS[pool_name]["path"], volume.dir_name(v)),
                       "quota": "Unsupported"}}


class World:
    """A converged state, built consistent: Volumes placed in pools get their
    Reservation, directory, PV, PVC and status; pool counts follow."""

    def __init__(self):
        self.pools = {p: pool(p) for p in ("vol-a1", "vol-b1", "vol-c1")}
        self.vols, self.resv, self.pvs, self.pvcs = {}, [], {}, {}
        self.dirs = {(s["nodeName"], s["path"]): [] for s in volume.POOLS.values()}

    def place(self, v, pool_name):
        m, p = v["metadata"], volume.POOLS[pool_name]
        path = "%s/%s" % (p["path"], volume.dir_name(v))
        pvn = volume.pv_name(v)
        v["status"].update({"pool": pool_name, "nodeName": p["nodeName"], "path": path,
                            "capacityBytes": volume.quantity(v["spec"]["size"]),
                            "persistentVolumeName": pvn, "persistentVolumeClaimName": m["name"]})
        self.resv.append(resv(v, pool_name))
        self.dirs[(p["nodeName"], p["path"])].append(volume.dir_name(v))
        self.pvs[pvn] = {"metadata": {"name": pvn, "labels": {volume.UID_LABEL: m["uid"]}},
                         "spec": {"capacity": {"storage": v["spec"]["size"]}, "local": {"path": path},
                                  "persistentVolumeReclaimPolicy": v["spec"].get("reclaimPolicy", "Delete"),
                                  "claimRef": {"namespace": m["namespace"], "name": m["name"],
                                               "uid": "pvc-" + m["uid"]},
                                  "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                                      {"key": "kubernetes.io/hostname", "operator": "In",
                                       "values": [p["nodeName"]]}]}]}}},
                         "status": {"phase": "Bound"}}
        self.pvcs[volume.key(v)] = {
            "metadata": {"namespace": m["namespace"], "name": m["name"], "uid": "pvc-" + m["uid"],
                         "ownerReferences": [{"kind": "Volume", "name": m["name"], "uid": m["uid"]}]},
            "spec": {"volumeName": pvn}, "status": {"phase": "Bound"}}
        return self.add(v)

    def add(self, v):
        self.vols[volume.key(v)] = v
        return v

    def snap(self):
        for name, p in self.pools.items():
            held = sum(r["spec"]["bytes"] for r in self.resv if r["spec"]["pool"]["name"] == name)
            n = sum(1 for r in self.resv if r["spec"]["pool"]["name"] == name)
            cap = volume.capacity_of(p)
            p["status"].update({"capacityBytes": cap, "allocatedBytes": held, "availableBytes": cap - held,
                                "volumes": n})
        return {"pools": self.pools, "volumes": self.vols, "resv": self.resv, "pvs": self.pvs, "pvcs": self.pvcs,
                "dirs": self.dirs}


class Checks(unittest.TestCase):
    def setUp(self):
        self.d = volume.VolumeDomain(api=None, log=lambda m: None)
        self.w = World()
        self.a = self.w.place(vol("d-1", "u-a", "600Mi", spool="vol-a1"), "vol-a1")  # 424Mi left in a1
        self.b = self.w.place(vol("r-2", "u-b", "100M", snode="node-b", policy="Retain"), "vol-b1")
        self.c = self.w.place(vol("d-3", "u-c", 50000000), "vol-c1")

    def found(self, s, prefix):
        v = self.d.check(s)
        self.assertTrue(any(x.startswith(prefix) for x in v), "%r not in %r" % (prefix, v))
        return v

    def test_clean_state_passes(self):
        # resting Volumes whose reasons are true
        self.w.add(vol("d-4", "u-4", "500Mi", spool="vol-a1", ready=False, reason="InsufficientCapacity"))
        self.w.add(vol("d-5", "u-5", "8Mi", spool="vol-nope", ready=False, reason="PoolNotFound"))
        self.w.add(vol("d-6", "u-6", "3Gi", ready=False, reason="InvalidSpec"))
        self.w.add(vol("d-7", "u-7", "8Mi", spool="vol-a1", snode="node-b", ready=False, reason="InvalidSpec"))
        self.w.add(vol("d-8", "u-8", "900Mi", snode="node-c", ready=False, reason="InsufficientCapacity"))
        # a Retain Volume that is gone left its directory: allowed
        self.w.dirs[("node-a", "/srv/chaos-vol/a1")].append("%s_r-9_u-9" % NS)
        s = self.w.snap()
        self.assertEqual(self.d.check(s), [])
        self.assertEqual(self.d.pending(s), [])

    def test_quantities(self):
        self.assertEqual([volume.quantity(q) for q in ("1Gi", "100M", "1.5Gi", "1e3", 7, "0.5", "1k")],
                         [1 << 30, 10 ** 8, 3 * 512 * Mi, 1000, 7, None, 1000])

    def test_validity_of_a_reservation(self):
        self.assertTrue(volume.valid(resv(self.a, "vol-a1")))
        self.assertTrue(volume.valid(resv(self.a, "vol-a1", created=T_UNTIL)))
        self.assertFalse(volume.valid(resv(self.a, "vol-a1", created="2026-12-07T10:00:16Z")))

    # ---- 1. no byte held twice --------------------------------------------------

    def test_bytes_over_capacity(self):
        x = self.w.place(vol("d-4", "u-4", "500Mi"), "vol-a1")  # 1100Mi in 1Gi
        self.assertTrue(x)
        self.found(self.w.snap(), "1: StoragePool vol-a1: valid Reservations hold")
        v = self.d.check(self.w.snap())
        self.assertTrue(any(x.startswith("1: StoragePool vol-a1: Ready Volumes' sizes") for x in v), v)

    def test_invalid_reservations_do_not_count_toward_capacity(self):
        x = self.w.add(vol("d-4", "u-4", "500Mi", ready=False, reason="Provisioning"))
        self.w.resv.append(resv(x, "vol-a1", created="2026-12-07T10:01:00Z"))
        s = self.w.snap()
        v = self.d.check(s)
        self.assertFalse(any(y.startswith("1: StoragePool") for y in v), v)
        self.assertTrue(any(y.startswith("2: Reservation storagepool.vol-a1.u-4: invalid") for y in v), v)
        self.assertTrue(self.d.pending(s))

    def test_a_volume_holding_two_reservations(self):
        self.w.resv.append(resv(self.c, "vol-b1"))
        self.found(self.w.snap(), "1: Volume chaos-vol/d-3 (uid u-c) holds 2 Reservations")

    def test_reservation_bytes_not_the_volume_size(self):
        self.w.resv[0]["spec"]["bytes"] = 1
        self.found(self.w.snap(), "1: Reservation storagepool.vol-a1.u-a holds 1 bytes")

    def test_reservation_name_not_its_slot(self):
        self.w.resv[0]["spec"]["slot"] = "u-x"
        self.found(self.w.snap(), "1: Reservation storagepool.vol-a1.u-a: slot u-x")

    def test_live_check_over_capacity(self):
        x = vol("d-4", "u-4", "500Mi")
        self.w.place(x, "vol-a1")
        w = self.w

        class Api:
            def list(self, path):
                if path.endswith("/reservations"):
                    return w.resv
                return [v for v in w.vols.values()
                        if path.endswith("/namespaces/%s/volumes" % v["metadata"]["namespace"])]

        d = volume.VolumeDomain(Api(), lambda m: None)
        v = d.check_live()
        self.assertEqual(len(v), 2, v)
        self.assertTrue(v[0].startswith("1 (during the storm): StoragePool vol-a1: valid Reservations hold"))
        w.resv.pop()
        x["metadata"]["deletionTimestamp"] = "2026-12-07T10:02:00Z"  # deleting, its bytes freed
        self.assertEqual(d.check_live(), [])

    # ---- 2. nothing held without its claim -----------------------------------------

    def test_reservation_without_its_volume(self):
        gone = vol("d-9", "u-9", "8Mi")
        self.w.resv.append(resv(gone, "vol-c1"))
        s = self.w.snap()
        self.found(s, "2: Reservation storagepool.vol-c1.u-9: Volume chaos-vol/d-9 does not exist")
        self.assertIn("Reservation storagepool.vol-c1.u-9: its Volume is gone", self.d.pending(s))

    def test_reservation_of_an_older_volume_of_the_same_name(self):
        self.w.vols["chaos-vol/d-3"]["metadata"]["uid"] = "u-new"
        self.found(self.w.snap(), "2: Reservation storagepool.vol-c1.u-c: Volume chaos-vol/d-3 has uid u-new")

    def test_reservation_of_a_pool_that_is_gone(self):
        del self.w.pools["vol-c1"]
        self.found(self.w.snap(), "2: 1 Reservations of StoragePool vol-c1")

    def test_volume_stuck_deleting(self):
        self.c["metadata"]["deletionTimestamp"] = "2026-12-07T10:02:00Z"
        s = self.w.snap()
        self.found(s, "2: Volume chaos-vol/d-3 still deleting")
        self.assertTrue(self.d.pending(s))

    def test_leftover_directory_of_a_delete_volume(self):
        self.w.dirs[("node-c", "/srv/chaos-vol/c1")].append("%s_d-9_u-9" % NS)
        s = self.w.snap()
        self.found(s, "2: directory node-c:/srv/chaos-vol/c1/chaos-vol_d-9_u-9 of Volume chaos-vol/d-9 (Delete)")
        self.assertTrue(self.d.pending(s))

    def test_directory_of_a_live_volume_without_its_reservation(self):
        x = self.w.add(vol("r-4", "u-4", "8Mi", ready=False, reason="InsufficientCapacity", policy="Retain"))
        self.w.dirs[("node-b", "/srv/chaos-vol/b1")].append(volume.dir_name(x))
        self.found(self.w.snap(),
                   "2: directory node-b:/srv/chaos-vol/b1/chaos-vol_r-4_u-4 of Volume chaos-vol/r-4 without")

    def test_directory_in_the_wrong_pool(self):
        self.w.dirs[("node-a", "/srv/chaos-vol/a2")].append(volume.dir_name(self.a))
        self.found(self.w.snap(),
                   "2: directory node-a:/srv/chaos-vol/a2/chaos-vol_d-1_u-a of Volume chaos-vol/d-1 without")

    def test_pv_without_its_volume(self):
        del self.w.vols["chaos-vol/d-3"]
        self.w.resv = [r for r in self.w.resv if r["spec"]["slot"] != "u-c"]
        self.w.dirs[("node-c", "/srv/chaos-vol/c1")] = []
        del self.w.pvcs["chaos-vol/d-3"]
        s = self.w.snap()
        self.found(s, "2: PersistentVolume vol-u-c (Delete) of Volume uid u-c")
        self.assertIn("PersistentVolume vol-u-c: its Volume is gone", self.d.pending(s))

    def test_pvc_without_its_volume(self):
        del self.w.pvs["vol-u-c"]
        del self.w.vols["chaos-vol/d-3"]
        self.w.resv = [r for r in self.w.resv if r["spec"]["slot"] != "u-c"]
        self.w.dirs[("node-c", "/srv/chaos-vol/c1")] = []
        self.found(self.w.snap(), "2: PersistentVolumeClaim chaos-vol/d-3 owned by ['u-c']")

    # ---- 3. status counts and what a Ready Volume says --------------------------------

    def test_wrong_allocated_bytes(self):
        s = self.w.snap()
        s["pools"]["vol-a1"]["status"]["allocatedBytes"] += 1
        self.found(s, "3: StoragePool vol-a1 status")
        self.assertTrue(self.d.pending(s))

    def test_wrong_available_bytes_and_volumes(self):
        s = self.w.snap()
        s["pools"]["vol-b1"]["status"]["availableBytes"] = 0
        self.found(s, "3: StoragePool vol-b1 status")
        s = self.w.snap()
        s["pools"]["vol-b1"]["status"]["volumes"] = 2
        self.found(s, "3: StoragePool vol-b1 status")

    def test_admissions_left_in_flight(self):
        s = self.w.snap()
        s["pools"]["vol-c1"]["status"]["inFlight"] = [{"uid": "u-z", "bytes": 1, "admittedUntil": T_UNTIL}]
        self.found(s, "3: StoragePool vol-c1 status")
        self.assertTrue(self.d.pending(s))

    def test_ready_volume_without_its_directory(self):
        self.w.dirs[("node-c", "/srv/chaos-vol/c1")] = []
        self.found(self.w.snap(), "3: Volume chaos-vol/d-3 Ready: no directory")

    def test_ready_volume_without_its_pv(self):
        del self.w.pvs["vol-u-c"]
        self.found(self.w.snap(), "3: Volume chaos-vol/d-3 Ready: PersistentVolume vol-u-c does not exist")

    def test_ready_volume_with_pvc_not_bound(self):
        self.w.pvcs["chaos-vol/d-3"]["status"]["phase"] = "Pending"
        self.found(self.w.snap(), "3: Volume chaos-vol/d-3 Ready: PersistentVolumeClaim d-3 Pending")

    def test_ready_volume_status_wrong(self):
        self.c["status"]["nodeName"] = "node-a"
        self.found(self.w.snap(), "3: Volume chaos-vol/d-3 Ready: status.nodeName node-a")
        self.c["status"]["nodeName"] = "node-c"
        self.c["status"]["path"] = "/elsewhere"
        self.found(self.w.snap(), "3: Volume chaos-vol/d-3 Ready: status.path /elsewhere")

    def test_ready_volume_without_a_reservation(self):
        self.w.resv = [r for r in self.w.resv if r["spec"]["slot"] != "u-c"]
        self.found(self.w.snap(), "3: Volume chaos-vol/d-3 Ready: no valid Reservation in vol-c1")

    def test_spec_pool_and_node_not_honoured(self):
        self.a["spec"]["pool"] = "vol-b1"  # placed in vol-a1
        self.found(self.w.snap(), "3: Volume chaos-vol/d-1 Ready: status.pool vol-a1, spec.pool vol-b1")
        self.b["spec"]["nodeName"] = "node-c"  # placed on node-b
        self.found(self.w.snap(), "3: Volume chaos-vol/r-2 Ready: in pool vol-b1 on node-b, spec.nodeName node-c")

    def test_not_ready_but_holding(self):
        x = self.w.add(vol("d-4", "u-4", "8Mi", ready=False, reason="Provisioning"))
        self.w.resv.append(resv(x, "vol-a1"))
        self.found(self.w.snap(), "3: Volume chaos-vol/d-4 is not Ready but holds")

    # ---- resting reasons --------------------------------------------------------------

    def test_false_insufficient_capacity(self):
        # vol-a1 has 424Mi free: 400Mi fits there
        self.w.add(vol("d-4", "u-4", "400Mi", spool="vol-a1", ready=False, reason="InsufficientCapacity"))
        s = self.w.snap()
        self.found(s, "converged: Volume chaos-vol/d-4: InsufficientCapacity but StoragePool vol-a1 has availableBytes")
        self.assertTrue(self.d.pending(s))
        # unpinned: vol-a1 can hold it
        self.w.vols["chaos-vol/d-4"]["spec"].pop("pool")
        self.found(self.w.snap(), "converged: Volume chaos-vol/d-4: InsufficientCapacity but ['vol-a1', 'vol-b1'")
        # on node-c (800Mi - 50MB free) it does not fit: true
        self.w.vols["chaos-vol/d-4"]["spec"]["nodeName"] = "node-c"
        self.w.vols["chaos-vol/d-4"]["spec"]["size"] = "760Mi"
        self.assertEqual(self.d.check(self.w.snap()), [])

    def test_insufficient_capacity_when_the_pool_is_not_ready(self):
        self.w.add(vol("d-4", "u-4", "900Mi", snode="node-b", ready=False, reason="InsufficientCapacity"))
        self.w.pools["vol-b1"]["status"]["conditions"][0].update(status="False", reason="NodeNotReady")
        self.assertFalse([x for x in self.d.check(self.w.snap()) if x.startswith("converged")])
        self.w.add(vol("d-5", "u-5", "8Mi", spool="vol-b1", ready=False, reason="PoolNotReady"))
        self.assertFalse([x for x in self.d.check(self.w.snap()) if x.startswith("converged")])
        self.assertIn("StoragePool vol-b1: not Ready (NodeNotReady)", self.d.pending(self.w.snap()))

    def test_false_other_reasons(self):
        self.w.add(vol("d-4", "u-4", "8Mi", spool="vol-a1", ready=False, reason="PoolNotFound"))
        self.found(self.w.snap(), "converged: Volume chaos-vol/d-4: PoolNotFound but StoragePool vol-a1 exists")
        self.w.vols["chaos-vol/d-4"]["status"]["conditions"][0]["reason"] = "PoolNotReady"
        self.found(self.w.snap(), "converged: Volume chaos-vol/d-4: PoolNotReady but")
        self.w.vols["chaos-vol/d-4"]["status"]["conditions"][0]["reason"] = "InvalidSpec"
        self.found(self.w.snap(), "converged: Volume chaos-vol/d-4: InvalidSpec but")
        self.w.vols["chaos-vol/d-4"]["status"]["conditions"][0]["reason"] = "Provisioning"
        self.found(self.w.snap(), "converged: Volume chaos-vol/d-4: Ready=False Provisioning")
        del self.w.vols["chaos-vol/d-4"]["spec"]["pool"]
        self.w.vols["chaos-vol/d-4"]["status"]["conditions"][0]["reason"] = "InvalidSpec"
        self.found(self.w.snap(), "converged: Volume chaos-vol/d-4: InvalidSpec but a Ready StoragePool")

    def test_doomed_pool_deleting(self):
        p = pool("vol-doomed")
        p["metadata"]["deletionTimestamp"] = "2026-12-07T10:02:00Z"
        self.w.pools["vol-doomed"] = p
        self.w.add(vol("d-4", "u-4", "8Mi", spool="vol-doomed", ready=False, reason="PoolNotReady"))
        s = self.w.snap()
        self.assertEqual([x for x in self.d.check(s) if x.startswith("converged")], [])
        self.d.finished = True
        self.assertIn("StoragePool vol-doomed: still there (deleted, its volumes deleted)", self.d.pending(s))

    # ---- dynamic provisioning ----------------------------------------------------------

    def test_dynamic_pvc(self):
        x = vol("p-4", "u-4", "8Mi", ns=volume.DYN_NS)
        x["metadata"]["annotations"] = {"provisio.dev/persistent-volume-name": "pvc-c-4",
                                        "provisio.dev/storage-class": volume.CLASS}
        self.w.place(x, "vol-a1")
        c = self.w.pvcs["%s/p-4" % volume.DYN_NS]
        c["metadata"].update(uid="c-4", ownerReferences=[])
        self.w.pvs["pvc-c-4"]["spec"]["claimRef"]["uid"] = "c-4"
        s = self.w.snap()
        self.assertEqual(self.d.check(s), [])
        self.assertEqual(self.d.pending(s), [])
        c["spec"]["volumeName"] = "pvc-other"
        self.found(self.w.snap(), "3: PersistentVolumeClaim chaos-vol-dyn/p-4 bound to pvc-other")
        c["spec"]["volumeName"] = "pvc-c-4"
        del self.w.vols["%s/p-4" % volume.DYN_NS]
        c["status"]["phase"] = "Pending"
        self.assertIn("PersistentVolumeClaim chaos-vol-dyn/p-4: Pending, no Volume for it",
                      self.d.pending(self.w.snap()))

    # ---- 4. -----------------------------------------------------------------------------

    def test_object_too_big(self):
        s = self.w.snap()
        big = copy.deepcopy(s["pools"]["vol-a1"])
        big["status"]["inFlight"] = [{"uid": "u-%03d" % i, "bytes": 1, "admittedUntil": T_UNTIL} for i in range(200)]
        s["pools"]["vol-a1"] = big
        self.found(s, "4: StoragePool /vol-a1")


if __name__ == "__main__":
    unittest.main()
