package main

// The volume domain's pure logic, as provisio has it
// (src/reconcilers/volume/README.md "The ledger", vol_ledger.c, vol_pool.c,
// the pool choice of vol_claim.c): the capacity ledger kept in a
// StoragePool's status (allocatedBytes and inFlight, changed only by a PUT
// of the status at the resourceVersion read), the pool's Ready condition
// from the node agent's report, and the choice of a pool for a Volume. No
// requests here; times are Unix seconds (metav1.Time's resolution).

import (
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	admitTTL     = 15  // s an admission waits for its Reservation
	admitGrace   = 30  // s of clock skew allowed (recount, release)
	inflightMax  = 256 // entries in status.inFlight (the CRD's maxItems)
	agentStale   = 120 // s: an older agent report counts as none
	createMargin = 3   // s: an admission this close to its deadline is not used

	volRecountInterval = 2 * time.Second  // between recounts of one pool
	volRecheckMax      = 60 * time.Second // a pool, a waiting Volume: looked at again
	volWaitRecheck     = 10 * time.Second // a Volume waiting for its admission
	volTeardownRecheck = 5 * time.Second  // a deleted Volume looks at its PV again
	volResvResync      = 60 * time.Second // the orphan sweep, every Reservation

	kindStoragePool = "StoragePool"
	kindVolume      = "Volume"
	labelNode       = "provisio.dev/node"
	labelReclaim    = "provisio.dev/reclaim-policy"
	labelVolumeUID  = "provisio.dev/volume-uid"
	annPVName       = "provisio.dev/persistent-volume-name"
	annClass        = "provisio.dev/storage-class"
	dirFinalizer    = "provisio.dev/volume-directory"
	volProvisioner  = "local.provisio.dev"

	reasonPathReady       = "PathReady"
	reasonPathNotFound    = "PathNotFound"
	reasonNotWritable     = "NotWritable"
	reasonAgentNotReport  = "AgentNotReporting"
	reasonQuotaUnsupp     = "QuotaUnsupported"
	reasonNodeNotReady    = "NodeNotReady"
	reasonInsufficientCap = "InsufficientCapacity"
	reasonPoolNotReady    = "PoolNotReady"
	reasonBound           = "Bound"
	reasonBinding         = "Binding"
	reasonProvisioning    = "Provisioning"
	reasonDirFailed       = "DirectoryFailed"
	reasonVolumeConflict  = "VolumeConflict"
	reasonClaimConflict   = "ClaimConflict"
)

// ---- the ledger ----

type admission struct {
	uid   string
	bytes int64
	until int64
}

type ledger struct {
	capacity  int64 // spec.capacity in bytes
	allocated int64 // status.allocatedBytes
	known     bool  // false: no usable ledger in status; recount first
	inflight  []admission
}

// readLedger: the ledger of a pool; nil and why when spec.capacity is not a
// positive whole number of bytes. A status without allocatedBytes, or with
// an inFlight entry the schema would not allow, gives known=false.
func readLedger(p *StoragePool) (*ledger, string) {
	c, ok := p.Spec.Capacity.AsInt64()
	if !ok || c <= 0 {
		return nil, fmt.Sprintf("spec.capacity of StoragePool %s is not a positive whole number of bytes (such as 100Gi or 1073741824)", p.Name)
	}
	l := &ledger{capacity: c}
	st := &p.Status
	if st.AllocatedBytes == nil || *st.AllocatedBytes < 0 || len(st.InFlight) > inflightMax {
		return l, ""
	}
	seen := make(map[string]bool, len(st.InFlight))
	for _, e := range st.InFlight {
		if e.UID == "" || len(e.UID) > 63 || e.Bytes < 1 || e.AdmittedUntil.IsZero() || seen[e.UID] {
			l.inflight = nil
			return l, ""
		}
		seen[e.UID] = true
		l.inflight = append(l.inflight, admission{e.UID, e.Bytes, e.AdmittedUntil.Unix()})
	}
	l.allocated = *st.AllocatedBytes
	l.known = true
	return l, ""
}

// available: capacity - allocated, or 0 when the capacity was lowered below it.
func (l *ledger) available() int64 {
	if l.allocated >= l.capacity {
		return 0
	}
	return l.capacity - l.allocated
}

func (l *ledger) find(uid string) *admission {
	for i := range l.inflight {
		if l.inflight[i].uid == uid {
			return &l.inflight[i]
		}
	}
	return nil
}

type admitResult int

const (
	admitted admitResult = iota
	admittedAgain
	noRoom
	ledgerFull
	ledgerUnknown
)

// admit bytes for uid at now: a new entry with deadline now + admitTTL. An
// entry of uid already there is kept as it is (never renewed).
func (l *ledger) admit(uid string, bytes, now int64) admitResult {
	switch {
	case !l.known:
		return ledgerUnknown
	case l.find(uid) != nil:
		return admittedAgain
	case bytes <= 0 || bytes > l.capacity || l.allocated > l.capacity-bytes:
		return noRoom
	case len(l.inflight) >= inflightMax:
		return ledgerFull
	}
	l.inflight = append(l.inflight, admission{uid, bytes, now + admitTTL})
	l.allocated += bytes
	return admitted
}

// landedFn: whether the writer's cache shows the Reservation of uid made
// from the admission with deadline until.
type landedFn func(uid string, until int64) bool

// forgetLanded drops the admissions whose Reservation the cache shows
// (allocated unchanged); how many.
func (l *ledger) forgetLanded(landed landedFn) int {
	kept := l.inflight[:0]
	n := 0
	for _, a := range l.inflight {
		if landed(a.uid, a.until) {
			n++
			continue
		}
		kept = append(kept, a)
	}
	l.inflight = kept
	return n
}

// resvValid: a Reservation counts only if the API server created it by its deadline.
func resvValid(created, until int64) bool { return created <= until }

// releaseDue: a Reservation with deadline until may be deleted at now.
func releaseDue(until, now int64) bool { return until+admitGrace < now }

// listedResv: one Reservation of the pool from a consistent LIST.
type listedResv struct {
	uid            string // spec.slot
	bytes          int64
	created, until int64
}

// recount from the listed Reservations; t0 was taken before the LIST was sent.
func (l *ledger) recount(listed []listedResv, t0 int64) {
	var sum int64
	for _, r := range listed {
		if r.bytes > 0 && resvValid(r.created, r.until) {
			sum += r.bytes
		}
	}
	kept := l.inflight[:0]
	for _, a := range l.inflight {
		landed := false
		for _, r := range listed {
			if r.uid == a.uid && r.until == a.until {
				landed = true
				break
			}
		}
		if landed || a.until+admitGrace <= t0 {
			continue
		}
		sum += a.bytes
		kept = append(kept, a)
	}
	l.inflight = kept
	l.allocated = sum
	l.known = true
}

// recountDue: the ledger is unknown, or allocated differs from the valid
// cached Reservations plus the admissions not landed.
func (l *ledger) recountDue(heldBytes int64, landed landedFn) bool {
	if !l.known {
		return true
	}
	expected := heldBytes
	for _, a := range l.inflight {
		if !landed(a.uid, a.until) {
			expected += a.bytes
		}
	}
	return l.allocated != expected
}

// expired: an admission past its deadline + grace (only a recount drops it).
func (l *ledger) expired(now int64) bool {
	for _, a := range l.inflight {
		if a.until+admitGrace < now {
			return true
		}
	}
	return false
}

// write the ledger's fields into st (nothing for an unknown ledger).
func (l *ledger) write(st *StoragePoolStatus) {
	if !l.known {
		return
	}
	c, a, v := l.capacity, l.allocated, l.available()
	st.CapacityBytes, st.AllocatedBytes, st.AvailableBytes = &c, &a, &v
	st.InFlight = nil
	for _, e := range l.inflight {
		st.InFlight = append(st.InFlight, Admission{UID: e.uid, Bytes: e.bytes, AdmittedUntil: metav1.Unix(e.until, 0)})
	}
}

// ---- a Reservation of the volume domain ----

type resvView struct {
	bytes, until int64
	valid        bool
}

func viewResv(rv *Reservation) resvView {
	v := resvView{bytes: rv.Spec.Bytes}
	if rv.Spec.AdmittedUntil == nil || rv.CreationTimestamp.IsZero() {
		return v
	}
	v.until = rv.Spec.AdmittedUntil.Unix()
	v.valid = v.bytes > 0 && resvValid(rv.CreationTimestamp.Unix(), v.until)
	return v
}

// ---- the pool's readiness ----

type quotaModeT int

const (
	quotaAuto quotaModeT = iota
	quotaRequired
	quotaOff
)

func quotaModeOf(p *StoragePool) quotaModeT {
	switch p.Spec.Quota {
	case "Required":
		return quotaRequired
	case "Off":
		return quotaOff
	}
	return quotaAuto
}

type agentView struct {
	fresh, current, present, writable, quotaSupported, hasUsed bool
	used                                                       int64
	heartbeat                                                  int64
	filesystem, quotaMessage, message                          string
}

// poolReport: status.agent at now (all false when there is none).
func poolReport(p *StoragePool, now int64) agentView {
	var out agentView
	if len(p.Status.Agent) == 0 {
		return out
	}
	var a AgentReport
	if err := json.Unmarshal(p.Status.Agent, &a); err != nil {
		return out
	}
	if a.HeartbeatTime != nil {
		hb := a.HeartbeatTime.Unix()
		out.heartbeat = hb
		out.fresh = now-hb <= agentStale && hb-now <= agentStale
	}
	out.current = a.ObservedGeneration != nil && *a.ObservedGeneration == p.Generation
	out.present, out.writable, out.quotaSupported = a.Present, a.Writable, a.QuotaSupported
	if a.UsedBytes != nil && *a.UsedBytes >= 0 {
		out.hasUsed, out.used = true, *a.UsedBytes
	}
	out.filesystem, out.quotaMessage, out.message = a.Filesystem, a.QuotaMessage, a.Message
	return out
}

type nodeStateT int

const (
	nodeMissing nodeStateT = iota
	nodeNotReady
	nodeReady
)

func nodeStateOf(n *corev1.Node) nodeStateT {
	if n == nil {
		return nodeMissing
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			return nodeReady
		}
	}
	return nodeNotReady
}

func sepText(why string) string {
	if why == "" {
		return ""
	}
	return ": " + why
}

// poolReadiness: the Ready condition of a pool (provisio's vol_pool_readiness).
func poolReadiness(p *StoragePool, node nodeStateT, r agentView) (metav1.ConditionStatus, string, string) {
	n, path := p.Spec.NodeName, p.Spec.Path
	if n == "" {
		n = "?"
	}
	if path == "" {
		path = "?"
	}
	switch {
	case node == nodeMissing:
		return metav1.ConditionFalse, reasonNodeNotFound,
			fmt.Sprintf("node %s does not exist: no agent can make volumes in %s", n, path)
	case node == nodeNotReady:
		return metav1.ConditionFalse, reasonNodeNotReady,
			fmt.Sprintf("node %s is not Ready: the volumes in %s stay where they are, and no new one is placed there until the node is back", n, path)
	case !r.fresh || !r.current:
		since := ""
		if r.fresh {
			since = " since its spec changed"
		}
		return metav1.ConditionFalse, reasonAgentNotReport,
			fmt.Sprintf("no report from the node agent on %s about %s%s in the last %d s: is the provisio-agent DaemonSet running there?", n, path, since, agentStale)
	case !r.present:
		return metav1.ConditionFalse, reasonPathNotFound,
			fmt.Sprintf("%s is not a directory on node %s%s", path, n, sepText(r.message))
	case !r.writable:
		return metav1.ConditionFalse, reasonNotWritable,
			fmt.Sprintf("the node agent cannot write in %s on node %s%s", path, n, sepText(r.message))
	case quotaModeOf(p) == quotaRequired && !r.quotaSupported:
		return metav1.ConditionFalse, reasonQuotaUnsupp,
			fmt.Sprintf("spec.quota is Required but %s on node %s cannot limit directories%s (use XFS or ext4 with project quotas, or btrfs; or set spec.quota to Auto)", path, n, sepText(r.quotaMessage))
	}
	on := ""
	if r.filesystem != "" {
		on = " on " + r.filesystem
	}
	return metav1.ConditionTrue, reasonPathReady, fmt.Sprintf("%s on node %s is present and writable%s", path, n, on)
}

// quotaStatus: status.quota, "" while no fresh report says.
func quotaStatus(mode quotaModeT, r agentView) string {
	switch {
	case mode == quotaOff:
		return "Off"
	case !r.fresh || !r.current || !r.present:
		return ""
	case r.quotaSupported:
		return "Enforced"
	}
	return "Unsupported"
}

// poolStatus: the status to write (provisio's vol_pool_status): the cached
// conditions and agent report, the ledger (nothing of an unknown one), the
// count of valid Reservations, usedBytes and quota from the report, Ready.
func poolStatus(p *StoragePool, l *ledger, volumes int64, r agentView, cond metav1.ConditionStatus, reason, msg string) StoragePoolStatus {
	st := StoragePoolStatus{
		ObservedGeneration: p.Generation,
		Volumes:            int32(volumes),
		Quota:              quotaStatus(quotaModeOf(p), r),
		Agent:              p.Status.Agent,
		Conditions:         copyConditions(p.Status.Conditions),
	}
	if r.hasUsed && r.fresh {
		u := r.used
		st.UsedBytes = &u
	}
	if l != nil {
		l.write(&st)
	}
	setCond(&st.Conditions, p.Generation, condReady, cond, reason, msg)
	return st
}

// ---- choosing a pool ----

type volWant struct {
	size            int64
	pool, node, cls string // "": any
}

// poolServes: the pool's spec.storageClassName is cls or empty.
func poolServes(p *StoragePool, cls string) bool {
	return p.Spec.StorageClassName == "" || p.Spec.StorageClassName == cls
}

func poolIsReady(p *StoragePool) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == condReady {
			return c.Status == metav1.ConditionTrue
		}
	}
	return false
}

func onNode(node string) string {
	if node == "" {
		return ""
	}
	return " on node " + node
}

// choosePool: the pool for w among pools (spec.pool: the one of that name,
// else the Ready pool with the most bytes free that fits, on w.node if
// set; ties to the lowest name), or "" with a reason and a message.
func choosePool(w *volWant, pools []*StoragePool) (string, string, string) {
	if w.pool != "" {
		var p *StoragePool
		for _, q := range pools {
			if q.Name == w.pool {
				p = q
			}
		}
		switch {
		case p == nil:
			return "", reasonPoolNotFound, fmt.Sprintf("StoragePool %s does not exist", w.pool)
		case w.node != "" && p.Spec.NodeName != w.node:
			n := p.Spec.NodeName
			if n == "" {
				n = "?"
			}
			return "", reasonInvalidSpec, fmt.Sprintf("spec.pool %s is on node %s, not on spec.nodeName %s", w.pool, n, w.node)
		case !p.DeletionTimestamp.IsZero():
			return "", reasonPoolNotReady, fmt.Sprintf("StoragePool %s is being deleted", w.pool)
		case !poolIsReady(p):
			m := ""
			for _, c := range p.Status.Conditions {
				if c.Type == condReady && c.Message != "" {
					m = ": " + c.Message
				}
			}
			return "", reasonPoolNotReady, fmt.Sprintf("StoragePool %s is not Ready%s", w.pool, m)
		}
		if l, _ := readLedger(p); l != nil && l.known {
			if l.capacity < w.size {
				return "", reasonInvalidSpec, fmt.Sprintf("spec.size %d is larger than StoragePool %s (%d bytes)", w.size, w.pool, l.capacity)
			}
			if l.available() < w.size {
				return "", reasonInsufficientCap, fmt.Sprintf("StoragePool %s has %d bytes free, %d wanted; waiting for space", w.pool, l.available(), w.size)
			}
		}
		return p.Name, "", ""
	}
	best := ""
	var bestFree, largestCap, largestFree int64 = -1, 0, 0
	ready, serving, otherClass := 0, 0, 0
	for _, p := range pools {
		if w.node != "" && p.Spec.NodeName != w.node {
			continue
		}
		if !p.DeletionTimestamp.IsZero() || !poolIsReady(p) {
			continue
		}
		if w.cls != "" && !poolServes(p, w.cls) {
			otherClass++
			continue
		}
		serving++
		l, _ := readLedger(p)
		if l == nil || !l.known {
			continue
		}
		ready++
		avail := l.available()
		if l.capacity > largestCap {
			largestCap = l.capacity
		}
		if avail > largestFree {
			largestFree = avail
		}
		if avail >= w.size && (avail > bestFree || (avail == bestFree && p.Name < best)) {
			best, bestFree = p.Name, avail
		}
	}
	switch {
	case best != "":
		return best, "", ""
	case serving == 0 && otherClass > 0:
		return "", reasonInsufficientCap, fmt.Sprintf("no Ready StoragePool%s serves StorageClass %s (%d Ready serve other classes; spec.storageClassName of a StoragePool names the class it serves)", onNode(w.node), w.cls, otherClass)
	case ready == 0:
		return "", reasonInsufficientCap, fmt.Sprintf("no StoragePool%s is Ready", onNode(w.node))
	case largestCap < w.size:
		return "", reasonInvalidSpec, fmt.Sprintf("spec.size %d is larger than every Ready StoragePool%s (the largest holds %d bytes)", w.size, onNode(w.node), largestCap)
	}
	return "", reasonInsufficientCap, fmt.Sprintf("no Ready StoragePool%s has %d bytes free (the most free: %d); waiting for space", onNode(w.node), w.size, largestFree)
}

// volumeWant: the Volume's spec, or why it is invalid.
func volumeWant(v *Volume) (*volWant, string) {
	size, ok := v.Spec.Size.AsInt64()
	if !ok || size <= 0 {
		return nil, "spec.size must be a positive whole number of bytes such as 10Gi"
	}
	return &volWant{size: size, pool: v.Spec.Pool, node: v.Spec.NodeName, cls: v.Annotations[annClass]}, ""
}

// volumeDir: where the agent makes a Volume's directory.
func volumeDir(poolPath string, v *Volume) string {
	return fmt.Sprintf("%s/%s_%s_%s", poolPath, v.Namespace, v.Name, v.UID)
}

// pvName: the PersistentVolume of a Volume.
func pvName(v *Volume) string {
	if n := v.Annotations[annPVName]; n != "" {
		return n
	}
	return "vol-" + string(v.UID)
}

func volRetains(v *Volume) bool { return v.Spec.ReclaimPolicy == "Retain" }

func volResvName(pool, uid string) string { return "storagepool." + pool + "." + uid }
