"""The IP domain's checks find what they are meant to find: a chaos run that
reports nothing is worth something only if a broken state is reported.
Synthetic snapshots, no cluster:  python3 -m unittest discover bench/chaos
"""

import copy
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True

import ip  # noqa: E402

POOL = "chaos-small"  # 10.60.0.0/27, gateway .1: 29 addresses


def claim(name, uid, addr=None, ready=True, reason="Allocated", spec_addr=None, deleting=False):
    c = {"metadata": {"namespace": "chaos-a", "name": name, "uid": uid, "generation": 1},
         "spec": {"pool": POOL},
         "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                    "reason": reason, "observedGeneration": 1}]}}
    if addr:
        c["status"].update({"address": addr + "/27", "pool": POOL})
    if spec_addr:
        c["spec"]["address"] = spec_addr
    if deleting:
        c["metadata"]["deletionTimestamp"] = "2026-12-05T00:00:00Z"
    return c


def resv(addr, name, uid, pool=POOL, network="default"):
    return {"metadata": {"name": ip.reservation_name(network, addr)},
            "spec": {"pool": {"kind": "IPPool", "name": pool}, "network": network, "slot": addr,
                     "claim": {"kind": "IPClaim", "namespace": "chaos-a", "name": name, "uid": uid}}}


def snap(claims, resvs, allocated=None, available=None):
    n = len(resvs)
    pool = {"metadata": {"name": POOL, "generation": 1}, "spec": ip.POOLS[POOL],
            "status": {"total": 29, "allocated": n if allocated is None else allocated,
                       "available": 29 - n if available is None else available, "observedGeneration": 1}}
    return {"pools": {POOL: pool}, "claims": {ip.key(c): c for c in claims}, "resv": resvs}


class Checks(unittest.TestCase):
    def setUp(self):
        self.d = ip.IPDomain(api=None, log=lambda m: None)
        self.a = claim("a", "u-a", "10.60.0.5")
        self.ra = resv("10.60.0.5", "a", "u-a")

    def found(self, s, prefix):
        v = self.d.check(s)
        self.assertTrue(any(x.startswith(prefix) for x in v), "%r not in %r" % (prefix, v))
        return v

    def test_clean_state_passes(self):
        s = snap([self.a, claim("b", "u-b", ready=False, reason="PoolNotFound")], [self.ra])
        s["claims"]["chaos-a/b"]["spec"]["pool"] = "nope"
        self.assertEqual(self.d.check(s), [])
        self.assertEqual(self.d.pending(s), [])

    def test_allocatable_counts_match_the_operator(self):
        # src/reconcilers/ip/ipam.h: IPv4 network/broadcast, IPv6 anycast, gateway, excludes, range
        self.assertEqual({p: len(ip.allocatable(s)) for p, s in ip.POOLS.items()},
                         {"chaos-small": 29, "chaos-big": 942, "chaos-v6": 250, "chaos-late": 126,
                          "chaos-doomed": 61})

    def test_two_ready_claims_with_one_address(self):
        b = claim("b", "u-b", "10.60.0.5")
        self.found(snap([self.a, b], [self.ra]), "1: address 10.60.0.5")

    def test_a_claim_holding_two_reservations(self):
        self.found(snap([self.a], [self.ra, resv("10.60.0.6", "a", "u-a")]), "1: claim chaos-a/a")

    def test_reservation_name_not_its_slot(self):
        r = copy.deepcopy(self.ra)
        r["spec"]["slot"] = "10.60.0.7"
        self.found(snap([self.a], [r]), "1: Reservation")

    def test_reservation_named_the_old_way(self):
        r = copy.deepcopy(self.ra)
        r["metadata"]["name"] = "ippool.%s.10-60-0-5" % POOL
        self.found(snap([self.a], [r]), "1: Reservation ippool.")

    def test_reservation_of_another_network_than_its_pool(self):
        r = resv("10.60.0.5", "a", "u-a", network="blue")
        self.found(snap([self.a], [r]), "1: Reservation ipnet.blue.10-60-0-5 is of network blue")

    def test_reservation_names(self):
        self.assertEqual(ip.reservation_name("default", "10.20.0.5"), "ipnet.default.10-20-0-5")
        self.assertEqual(ip.reservation_name("blue", "fd00:10::5"), "ipnet.blue.fd00-10-0-0-0-0-0-5")
        self.assertEqual(ip.reservation_name("default", "::1"), "ipnet.default.0-0-0-0-0-0-0-1")

    def test_held_address_not_allocatable(self):
        a = claim("a", "u-a", "10.60.0.1")  # the gateway
        self.found(snap([a], [resv("10.60.0.1", "a", "u-a")]), "1: IPClaim chaos-a/a holds 10.60.0.1")

    def test_orphan_reservation(self):
        v = self.found(snap([self.a], [self.ra, resv("10.60.0.9", "gone", "u-gone")]), "2: Reservation")
        self.assertIn("does not exist", " ".join(v))

    def test_reservation_of_an_older_claim_of_the_same_name(self):
        self.found(snap([claim("a", "u-new", "10.60.0.5")], [self.ra]), "2: Reservation")

    def test_claim_stuck_deleting(self):
        self.found(snap([claim("a", "u-a", "10.60.0.5", deleting=True)], [self.ra]), "2: IPClaim chaos-a/a still deleting")

    def test_ready_without_its_reservation(self):
        self.found(snap([self.a], []), "3: IPClaim chaos-a/a Ready with 10.60.0.5/27")

    def test_not_ready_but_holding(self):
        b = claim("b", "u-b", ready=False, reason="PoolExhausted")
        self.found(snap([self.a, b], [self.ra, resv("10.60.0.6", "b", "u-b")]), "3: IPClaim chaos-a/b is not Ready but holds")

    def test_spec_address_not_honoured(self):
        a = claim("a", "u-a", "10.60.0.5", spec_addr="10.60.0.6")
        self.found(snap([a], [self.ra]), "3: IPClaim chaos-a/a asked 10.60.0.6")

    def test_pool_counts_off(self):
        self.found(snap([self.a], [self.ra], allocated=2), "3: IPPool chaos-small")
        self.found(snap([self.a], [self.ra], available=29), "3: IPPool chaos-small")

    def test_false_resting_reasons(self):
        b = claim("b", "u-b", ready=False, reason="PoolExhausted")  # 28 addresses free
        self.found(snap([self.a, b], [self.ra]), "converged: IPClaim chaos-a/b")
        c = claim("c", "u-c", ready=False, reason="AddressInUse", spec_addr="10.60.0.9")  # nobody holds .9
        self.found(snap([self.a, c], [self.ra]), "converged: IPClaim chaos-a/c")
        d = claim("d", "u-d", ready=False, reason="AddressInUse", spec_addr="10.60.0.5")  # a holds .5
        self.assertEqual(self.d.check(snap([self.a, d], [self.ra])), [])

    def test_pending_until_orphans_swept_and_counts_settled(self):
        self.assertTrue(self.d.pending(snap([self.a], [self.ra, resv("10.60.0.9", "gone", "u-gone")])))
        self.assertTrue(self.d.pending(snap([self.a], [self.ra], allocated=0)))

    def test_object_too_big(self):
        a = copy.deepcopy(self.a)
        a["metadata"]["annotations"] = {"x": "y" * 9000}
        self.found(snap([a], [self.ra]), "4: IPClaim")


if __name__ == "__main__":
    unittest.main()
