package main

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func testSP(name, node, capacity string, alloc *int64, inflight ...Admission) *StoragePool {
	return &StoragePool{
		ObjectMeta: metav1.ObjectMeta{Name: name, Generation: 1},
		Spec:       StoragePoolSpec{NodeName: node, Path: "/pools/" + name, Capacity: resource.MustParse(capacity)},
		Status:     StoragePoolStatus{AllocatedBytes: alloc, InFlight: inflight},
	}
}

func i64(v int64) *int64 { return &v }

func TestReadLedger(t *testing.T) {
	if l, why := readLedger(testSP("p", "n", "1.5", nil)); l != nil || !strings.Contains(why, "whole number") {
		t.Fatalf("fractional capacity: %v %q", l, why)
	}
	if l, _ := readLedger(testSP("p", "n", "1Ki", nil)); l == nil || l.known || l.capacity != 1024 {
		t.Fatalf("no allocatedBytes: %+v", l)
	}
	u := metav1.Unix(100, 0)
	dup := testSP("p", "n", "1Ki", i64(20), Admission{"a", 10, u}, Admission{"a", 10, u})
	if l, _ := readLedger(dup); l.known {
		t.Fatal("a uid twice read as a ledger")
	}
	ok := testSP("p", "n", "1Ki", i64(20), Admission{"a", 10, u})
	l, _ := readLedger(ok)
	if !l.known || l.allocated != 20 || l.find("a").until != 100 || l.available() != 1004 {
		t.Fatalf("ledger: %+v", l)
	}
}

func TestAdmitAndRecount(t *testing.T) {
	l := &ledger{capacity: 100, known: true}
	if r := l.admit("a", 60, 1000); r != admitted || l.allocated != 60 || l.find("a").until != 1000+admitTTL {
		t.Fatalf("admit a: %v %+v", r, l)
	}
	if r := l.admit("a", 60, 1005); r != admittedAgain || l.find("a").until != 1000+admitTTL {
		t.Fatalf("admit a again: %v (deadline renewed?)", r)
	}
	if r := l.admit("b", 41, 1000); r != noRoom {
		t.Fatalf("b over capacity: %v", r)
	}
	if r := l.admit("b", 40, 1000); r != admitted || l.allocated != 100 {
		t.Fatalf("b: %v %+v", r, l)
	}
	// a landed (its Reservation listed, with its deadline), b not yet;
	// an older Reservation of b's name (another deadline) is not b's.
	listed := []listedResv{{"a", 60, 1001, 1015}, {"b", 40, 900, 910}}
	l.recount(listed, 1002)
	if l.allocated != 60+40+40 || len(l.inflight) != 1 || l.inflight[0].uid != "b" {
		t.Fatalf("recount: %+v", l)
	}
	// Past b's deadline + grace: dropped; the invalid listed one (made after
	// its deadline) counts nothing.
	l.recount([]listedResv{{"a", 60, 1001, 1015}, {"c", 5, 2000, 1990}}, 1015+admitGrace)
	if l.allocated != 60 || len(l.inflight) != 0 {
		t.Fatalf("recount after the deadline: %+v", l)
	}
	l.known = false
	if r := l.admit("d", 1, 0); r != ledgerUnknown {
		t.Fatalf("unknown ledger admitted: %v", r)
	}
}

func TestRecountDueAndLanded(t *testing.T) {
	l := &ledger{capacity: 100, known: true}
	l.admit("a", 10, 0)
	l.admit("b", 20, 0)
	none := func(string, int64) bool { return false }
	if l.recountDue(0, none) {
		t.Fatal("due with every admission in flight")
	}
	aLanded := func(uid string, until int64) bool { return uid == "a" && until == admitTTL }
	if l.recountDue(10, aLanded) {
		t.Fatal("due after a landed")
	}
	if !l.recountDue(0, aLanded) {
		t.Fatal("not due after a was freed")
	}
	if n := l.forgetLanded(aLanded); n != 1 || l.allocated != 30 || len(l.inflight) != 1 {
		t.Fatalf("forgetLanded: %d %+v", n, l)
	}
	var st StoragePoolStatus
	l.write(&st)
	if *st.AllocatedBytes != 30 || *st.AvailableBytes != 70 || *st.CapacityBytes != 100 ||
		len(st.InFlight) != 1 || st.InFlight[0].AdmittedUntil.Unix() != admitTTL {
		t.Fatalf("write: %+v", st)
	}
	if !releaseDue(100, 100+admitGrace+1) || releaseDue(100, 100+admitGrace) {
		t.Fatal("releaseDue")
	}
}

// The ledger never counts less than every valid Reservation made from its
// admissions, and never admits past the capacity: two writers admitting
// and creating Reservations late or never, recounts from LISTs taken
// anywhere between, on one ledger (each step a compare-and-swap).
func TestLedgerNeverOvercommits(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for run := 0; run < 300; run++ {
		l := &ledger{capacity: 100, known: true}
		type resv struct {
			uid            string
			bytes          int64
			created, until int64
		}
		var made []resv
		pending := map[string]admission{} // admitted, Reservation not made yet
		now := int64(1000)
		for step := 0; step < 200; step++ {
			now += int64(rng.Intn(4))
			switch rng.Intn(4) {
			case 0:
				uid := fmt.Sprintf("u%d", rng.Intn(30))
				if l.admit(uid, int64(1+rng.Intn(40)), now) == admitted {
					pending[uid] = *l.find(uid)
				}
			case 1: // a creator, maybe late
				for uid, a := range pending {
					made = append(made, resv{uid, a.bytes, now, a.until})
					delete(pending, uid)
					break
				}
			case 2: // recount
				var listed []listedResv
				for _, r := range made {
					listed = append(listed, listedResv{r.uid, r.bytes, r.created, r.until})
				}
				l.recount(listed, now-int64(rng.Intn(3)))
			case 3: // release a Reservation whose time has come
				for i, r := range made {
					if releaseDue(r.until, now) {
						made = append(made[:i], made[i+1:]...)
						break
					}
				}
			}
			var valid int64
			for _, r := range made {
				if resvValid(r.created, r.until) {
					valid += r.bytes
				}
			}
			if valid > l.capacity {
				t.Fatalf("run %d step %d: %d bytes of valid Reservations in a pool of %d", run, step, valid, l.capacity)
			}
			if l.allocated > l.capacity {
				t.Fatalf("run %d step %d: allocated %d > capacity", run, step, l.allocated)
			}
		}
	}
}

func agentJSON(t *testing.T, gen int64, hb int64, present, writable bool) json.RawMessage {
	b, err := json.Marshal(AgentReport{ObservedGeneration: &gen, HeartbeatTime: &metav1.Time{Time: metav1.Unix(hb, 0).Time},
		Present: present, Writable: writable, Filesystem: "ext4"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPoolReadiness(t *testing.T) {
	p := testSP("p0", "node-a", "1Ti", nil)
	ready := &corev1.Node{Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
	if _, reason, _ := poolReadiness(p, nodeStateOf(nil), poolReport(p, 1000)); reason != reasonNodeNotFound {
		t.Fatalf("no node: %s", reason)
	}
	if _, reason, _ := poolReadiness(p, nodeStateOf(&corev1.Node{}), poolReport(p, 1000)); reason != reasonNodeNotReady {
		t.Fatalf("node not ready: %s", reason)
	}
	if _, reason, _ := poolReadiness(p, nodeStateOf(ready), poolReport(p, 1000)); reason != reasonAgentNotReport {
		t.Fatalf("no report: %s", reason)
	}
	p.Status.Agent = agentJSON(t, 1, 1000-agentStale-1, true, true)
	if _, reason, _ := poolReadiness(p, nodeReady, poolReport(p, 1000)); reason != reasonAgentNotReport {
		t.Fatalf("stale report: %s", reason)
	}
	p.Status.Agent = agentJSON(t, 1, 990, true, false)
	if _, reason, _ := poolReadiness(p, nodeReady, poolReport(p, 1000)); reason != reasonNotWritable {
		t.Fatalf("not writable: %s", reason)
	}
	p.Status.Agent = agentJSON(t, 1, 990, true, true)
	c, reason, msg := poolReadiness(p, nodeReady, poolReport(p, 1000))
	if c != metav1.ConditionTrue || reason != reasonPathReady || msg != "/pools/p0 on node node-a is present and writable on ext4" {
		t.Fatalf("ready: %s %s %q", c, reason, msg)
	}
	if q := quotaStatus(quotaAuto, poolReport(p, 1000)); q != "Unsupported" {
		t.Fatalf("quota: %q", q)
	}
	p.Spec.Quota = "Required"
	if _, reason, _ := poolReadiness(p, nodeReady, poolReport(p, 1000)); reason != reasonQuotaUnsupp {
		t.Fatalf("quota required: %s", reason)
	}
	// The status: ledger fields only when known, the agent's report kept.
	l, _ := readLedger(p)
	st := poolStatus(p, l, 0, poolReport(p, 1000), c, reason, msg)
	if st.AllocatedBytes != nil || string(st.Agent) != string(p.Status.Agent) || len(st.Conditions) != 1 {
		t.Fatalf("status of an unknown ledger: %+v", st)
	}
}

func readySP(name, node string, capacity string, alloc int64) *StoragePool {
	p := testSP(name, node, capacity, i64(alloc))
	setCond(&p.Status.Conditions, 1, condReady, metav1.ConditionTrue, reasonPathReady, "")
	return p
}

func TestChoosePool(t *testing.T) {
	pools := []*StoragePool{
		readySP("a", "node-a", "1Gi", 100),
		readySP("b", "node-b", "1Gi", 50),
		readySP("c", "node-b", "1Gi", 50),
		testSP("d", "node-c", "4Gi", i64(0)), // not Ready
	}
	w := &volWant{size: 1 << 20}
	if name, _, _ := choosePool(w, pools); name != "b" {
		t.Fatalf("most free, lowest name: %q", name)
	}
	w.node = "node-a"
	if name, _, _ := choosePool(w, pools); name != "a" {
		t.Fatalf("on node-a: %q", name)
	}
	w.node = "node-c"
	if _, reason, _ := choosePool(w, pools); reason != reasonInsufficientCap {
		t.Fatalf("no Ready pool on node-c: %s", reason)
	}
	w.node, w.size = "", 2<<30
	if _, reason, _ := choosePool(w, pools); reason != reasonInvalidSpec {
		t.Fatalf("larger than every pool: %s", reason)
	}
	w.size, w.pool = 1<<30, "a"
	if _, reason, msg := choosePool(w, pools); reason != reasonInsufficientCap || !strings.Contains(msg, "bytes free") {
		t.Fatalf("spec.pool full: %s %s", reason, msg)
	}
	w.pool = "d"
	if _, reason, _ := choosePool(w, pools); reason != reasonPoolNotReady {
		t.Fatalf("spec.pool not Ready: %s", reason)
	}
	w.pool = "x"
	if _, reason, _ := choosePool(w, pools); reason != reasonPoolNotFound {
		t.Fatalf("spec.pool missing: %s", reason)
	}
}

func TestAdmitBatch(t *testing.T) {
	s := newVolState()
	s.waitAdd("p", volWaiter{"u1", "ns", "v1", 60})
	s.waitAdd("q", volWaiter{"u2", "ns", "v2", 30})
	s.waitAdd("p", volWaiter{"u2", "ns", "v2", 30}) // moves from q to p
	s.waitAdd("p", volWaiter{"u3", "ns", "v3", 50})
	s.waitAdd("p", volWaiter{"gone", "ns", "v4", 1})
	if len(s.waiting["q"]) != 0 || len(s.waiting["p"]) != 4 {
		t.Fatalf("waiting: %+v", s.waiting)
	}
	l := &ledger{capacity: 100, known: true}
	in, out := s.admitBatch("p", l, 1000, func(w *volWaiter) bool { return w.uid != "gone" })
	if len(in) != 2 || in[0].uid != "u1" || in[1].uid != "u2" || len(out) != 1 || out[0].uid != "u3" || l.allocated != 90 {
		t.Fatalf("batch: in %+v out %+v ledger %+v", in, out, l)
	}
	go func() { // the channel sources
		for range s.toVolumes {
		}
	}()
	s.admitCommit("p", in, out)
	if len(s.waiting["p"]) != 0 {
		t.Fatalf("still waiting: %+v", s.waiting)
	}
	if until, ok := s.admittedGet("u1", "p"); !ok || until != 1000+admitTTL {
		t.Fatalf("admitted u1: %d %v", until, ok)
	}
	if !s.rejectedTake("u3", "p") || s.rejectedTake("u3", "p") {
		t.Fatal("the verdict on u3 is taken once")
	}
}

func TestVolumeNames(t *testing.T) {
	v := &Volume{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "v", UID: "0b9f"}}
	if pvName(v) != "vol-0b9f" || volResvName("p", "0b9f") != "storagepool.p.0b9f" || volumeDir("/pools/p", v) != "/pools/p/ns_v_0b9f" {
		t.Fatal("names")
	}
	v.Spec.Size = resource.MustParse("1Mi")
	if w, _ := volumeWant(v); w == nil || w.size != 1<<20 {
		t.Fatalf("want: %+v", w)
	}
	if q := resource.NewQuantity(1<<20, resource.BinarySI); q.String() != "1Mi" {
		t.Fatalf("PV size %s, provisio writes 1Mi", q)
	}
}
