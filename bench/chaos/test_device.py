"""The device domain's checks find what they are meant to find: each broken
state below must be reported, and the consistent one must not. Synthetic
snapshots, no cluster:  python3 -m unittest discover -s bench/chaos
"""

import copy
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True

import device  # noqa: E402

NS = "chaos-dev"


def pool_obj(name):
    spec = copy.deepcopy(device.POOLS[name])
    ids = [d["id"] for d in spec["devices"]] + device.DISCOVERED.get(name, [])
    return {"metadata": {"name": name, "generation": 1}, "spec": spec,
            "status": {"observedGeneration": 1,
                       "devices": [{"id": i, "healthy": True,
                                    "source": "Discovered" if i.startswith("chfpga") else "Declared"} for i in ids]}}


def claim(name, uid, spec, pool=None, devices=(), reason="Allocated"):
    ready = pool is not None
    c = {"metadata": {"namespace": NS, "name": name, "uid": uid, "generation": 1},
         "spec": spec,
         "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                    "reason": reason, "observedGeneration": 1}]}}
    if ready:
        c["status"].update({"pool": pool, "nodeName": device.POOLS[pool]["nodeName"], "devices": list(devices)})
        if device.POOLS[pool].get("publish") == "ResourceSlice":
            c["status"]["resourceClaimName"] = name
    return c


def resv(pool, dev, name, uid):
    return {"metadata": {"name": "devicepool.%s.%s" % (pool, dev)},
            "spec": {"pool": {"kind": "DevicePool", "name": pool}, "slot": dev,
                     "claim": {"kind": "DeviceClaim", "namespace": NS, "name": name, "uid": uid}}}


def rclaim(c):
    st = c["status"]
    return {"metadata": {"namespace": NS, "name": c["metadata"]["name"],
                         "labels": {"app.kubernetes.io/managed-by": "provisio"},
                         "ownerReferences": [{"uid": c["metadata"]["uid"]}]},
            "status": {"allocation": {"devices": {"results": [
                {"request": "devices", "driver": device.DRIVER, "pool": st["pool"], "device": d}
                for d in st["devices"]]}}}}


def settle(s):
    """Make pool status, node keys and slices agree with the Reservations."""
    held = {(r["spec"]["pool"]["name"], r["spec"]["slot"]): r["spec"]["claim"] for r in s["resv"]}
    for name, p in s["pools"].items():
        st = p["status"]
        for d in st["devices"]:
            h = held.get((name, d["id"]))
            d.pop("claim", None)
            if h:
                d["claim"] = "%s/%s" % (h["namespace"], h["name"])
        healthy = [d for d in st["devices"] if d["healthy"]]
        st.update({"capacity": len(healthy), "allocated": sum(1 for k in held if k[0] == name),
                   "available": sum(1 for d in healthy if "claim" not in d),
                   "unhealthy": len(st["devices"]) - len(healthy)})
    for n in s["nodes"].values():
        n["status"] = {"capacity": {}, "allocatable": {}}
    for name, p in s["pools"].items():
        if device.publish_of(p) != "NodeCapacity":
            continue
        st, node, res = p["status"], s["nodes"][p["spec"]["nodeName"]]["status"], p["spec"]["resourceName"]
        node["capacity"][res] = str(int(node["capacity"].get(res, "0")) + st["capacity"])
        node["allocatable"][res] = str(int(node["allocatable"].get(res, "0")) + st["available"])
    s["slices"] = [{"spec": {"driver": device.DRIVER, "pool": {"name": name},
                             "devices": [{"name": d["id"], "taints": [{"key": "provisio.dev/managed"}]}
                                         for d in p["status"]["devices"]]}}
                   for name, p in s["pools"].items() if device.publish_of(p) == "ResourceSlice"]
    return s


def good():
    """dev-a (node-a, fpga) and dev-c (node-c, acc, ResourceSlice): claim one
    holds fa0 and fa2 (model x and y: no selector), two holds chfpga1
    (model z), three holds ac0 with its ResourceClaim, four waits for 20
    devices no pool has."""
    pools = {n: pool_obj(n) for n in ("dev-a", "dev-c")}
    claims = [claim("one", "u1", {"resourceName": device.FPGA, "count": 2}, "dev-a", ["fa0", "fa2"]),
              claim("two", "u2", {"resourceName": device.FPGA, "selector": {"model": "z"}}, "dev-a", ["chfpga1"]),
              claim("three", "u3", {"resourceName": device.ACC}, "dev-c", ["ac0"]),
              claim("four", "u4", {"resourceName": device.FPGA, "count": 20}, reason="NoMatchingDevices")]
    rs = [resv("dev-a", "fa0", "one", "u1"), resv("dev-a", "fa2", "one", "u1"),
          resv("dev-a", "chfpga1", "two", "u2"), resv("dev-c", "ac0", "three", "u3")]
    s = {"pools": pools, "claims": {device.key(c): c for c in claims}, "resv": rs,
         "nodes": {n: {"metadata": {"name": n}} for n in ("node-a", "node-b", "node-c")},
         "rclaims": {device.key(claims[2]): rclaim(claims[2])}, "slices": []}
    return settle(s)


class DeviceChecks(unittest.TestCase):
    def setUp(self):
        self.d = device.DeviceDomain(api=None, log=lambda m: None)

    def found(self, snap, text):
        v = self.d.check(snap)
        self.assertTrue(any(text in x for x in v), "%r not in %s" % (text, v))

    def test_consistent_state_passes(self):
        s = good()
        self.assertEqual(self.d.check(s), [])
        self.assertEqual(self.d.pending(s), [])

    def test_device_shown_by_two_ready_claims(self):
        s = good()
        c = claim("five", "u5", {"resourceName": device.FPGA}, "dev-a", ["fa0"])
        s["claims"][device.key(c)] = c
        self.found(s, "1: device fa0 of dev-a shown by two Ready claims")

    def test_reservation_without_its_claim(self):
        s = good()
        s["resv"].append(resv("dev-a", "fa5", "gone", "u9"))
        settle(s)
        self.found(s, "2: Reservation devicepool.dev-a.fa5: no live claim")
        self.assertTrue(any("its claim is gone" in x for x in self.d.pending(s)))

    def test_reservation_of_another_uid(self):
        s = good()
        s["resv"][0]["spec"]["claim"]["uid"] = "old"
        self.found(s, "Reservation of uid old")

    def test_not_ready_claim_holding_a_device(self):
        s = good()
        c = claim("six", "u6", {"resourceName": device.FPGA}, reason="InsufficientDevices")
        s["claims"][device.key(c)] = c
        s["resv"].append(resv("dev-a", "fa7", "six", "u6"))
        settle(s)
        self.found(s, "3: DeviceClaim chaos-dev/six is not Ready but holds")

    def test_selector_not_honoured(self):
        s = good()
        s["claims"][NS + "/two"]["spec"]["selector"] = {"model": "x"}
        self.found(s, "not matching its selector")

    def test_pool_counts_wrong(self):
        s = good()
        s["pools"]["dev-a"]["status"]["allocated"] = 2
        self.found(s, "3: DevicePool dev-a status")
        self.assertTrue(any("status.allocated 2" in x for x in self.d.pending(s)))

    def test_pool_device_claim_names_the_wrong_holder(self):
        s = good()
        s["pools"]["dev-a"]["status"]["devices"][0]["claim"] = NS + "/two"
        self.found(s, "device fa0: status claim")

    def test_node_allocatable_wrong(self):
        s = good()
        s["nodes"]["node-a"]["status"]["allocatable"][device.FPGA] = "12"
        self.found(s, "node node-a %s" % device.FPGA)

    def test_node_keys_left_of_a_pool_that_is_gone(self):
        s = good()
        s["nodes"]["node-b"]["status"]["capacity"][device.FPGA] = "10"
        self.found(s, "node node-b")

    def test_insufficient_while_devices_are_free(self):
        s = good()
        c = claim("seven", "u7", {"resourceName": device.FPGA}, reason="InsufficientDevices")
        s["claims"][device.key(c)] = c
        self.found(s, "InsufficientDevices but ['dev-a'] has the devices free")

    def test_insufficient_is_true_when_all_matching_are_held(self):
        s = good()
        c = claim("eight", "u8", {"resourceName": device.ACC, "count": 8}, reason="InsufficientDevices")
        s["claims"][device.key(c)] = c
        self.assertEqual(self.d.check(s), [])

    def test_no_match_while_a_pool_could(self):
        s = good()
        s["claims"][NS + "/four"]["spec"]["count"] = 3
        self.found(s, "NoMatchingDevices but ['dev-a'] could hold it")

    def test_invalid_spec_only_for_an_unknown_key(self):
        s = good()
        c = claim("nine", "u9", {"resourceName": device.FPGA, "selector": {"model": "q"}}, reason="InvalidSpec")
        s["claims"][device.key(c)] = c
        self.found(s, "InvalidSpec but every selector key is an attribute")
        c["spec"]["selector"] = {"colour": "red"}
        self.assertEqual(self.d.check(s), [])

    def test_resource_claim_allocates_other_devices(self):
        s = good()
        res = s["rclaims"][NS + "/three"]["status"]["allocation"]["devices"]["results"]
        res[0]["device"] = "ac1"
        self.found(s, "3: ResourceClaim chaos-dev/three allocates")

    def test_resource_claim_without_its_device_claim(self):
        s = good()
        rc = copy.deepcopy(s["rclaims"][NS + "/three"])
        rc["metadata"]["name"] = "ghost"
        rc["metadata"]["ownerReferences"] = [{"uid": "dead"}]
        s["rclaims"][NS + "/ghost"] = rc
        self.found(s, "2: ResourceClaim chaos-dev/ghost without its DeviceClaim")
        self.found(s, "1: device ac0 of dev-c allocated to ResourceClaims")

    def test_ready_resource_slice_claim_without_resource_claim(self):
        s = good()
        del s["rclaims"][NS + "/three"]
        self.found(s, "resourceClaimName three, ResourceClaim missing")
        self.assertTrue(any("ResourceClaim is missing" in x for x in self.d.pending(s)))

    def test_slice_missing_a_device_or_taint(self):
        s = good()
        s["slices"][0]["spec"]["devices"].pop()
        self.found(s, "3: the ResourceSlices of dev-c list")
        s = good()
        s["slices"][0]["spec"]["devices"][0]["taints"] = []
        self.found(s, "1: device ac0 of dev-c is not tainted")

    def test_claim_stuck_deleting(self):
        s = good()
        s["claims"][NS + "/one"]["metadata"]["deletionTimestamp"] = "2026-12-07T00:00:00Z"
        self.found(s, "2: DeviceClaim chaos-dev/one still deleting")

    def test_unhealthy_device_at_the_end_is_pending(self):
        s = good()
        s["pools"]["dev-a"]["status"]["devices"][9]["healthy"] = False  # chfpga1
        settle(s)
        self.assertTrue(any("device chfpga1 unhealthy" in x for x in self.d.pending(s)))

    def test_discovered_device_missing_is_found(self):
        s = good()
        s["pools"]["dev-a"]["status"]["devices"] = [d for d in s["pools"]["dev-a"]["status"]["devices"]
                                                    if d["id"] != "chfpga3"]
        settle(s)
        self.found(s, "3: DevicePool dev-a lists")

    def test_big_object(self):
        s = good()
        s["claims"][NS + "/one"]["metadata"]["annotations"] = {"x": "y" * 9000}
        self.found(s, "4: DeviceClaim chaos-dev/one is")


if __name__ == "__main__":
    unittest.main()
