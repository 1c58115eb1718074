package main

// The DevicePool reconciler: finalizer; status capacity (healthy devices),
// allocated, available, unhealthy, publish, devices[] (id, healthy, source,
// claim) counted from the pool's cached Reservations, Ready Valid /
// InvalidSpec / NodeNotFound. A write whose only change is what allocations
// move (counts, holders) waits 0.2 s for more, comes at least 0.5 s after
// the pool's last one and takes a turn among all DevicePools (5 a second),
// as provisio paces them. Deleting a pool waits (Ready=False Terminating,
// naming holders) until nothing of it is held (the API server is asked),
// takes its resource off the node (devicenode) and removes the finalizer.

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

type DevPoolReconciler struct {
	client.Client
	APIReader client.Reader
	Recorder  events.EventRecorder
	S         *shared
	D         *devState
	Nodes     *DevNodeReconciler
}

func (r *DevPoolReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var p DevicePool
	if err := r.Get(ctx, req.NamespacedName, &p); err != nil {
		if apierrors.IsNotFound(err) {
			r.D.forgetPool(req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	// A count-only write waits and the pool is the version it began at.
	if wait := r.D.countsWaiting(p.Name, p.ResourceVersion); wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	if r.S.isStale(p.UID, p.ResourceVersion) {
		return ctrl.Result{}, nil
	}
	if !p.DeletionTimestamp.IsZero() {
		return r.deleting(ctx, &p)
	}
	if !controllerutil.ContainsFinalizer(&p, finalizer) {
		base := p.DeepCopy()
		controllerutil.AddFinalizer(&p, finalizer)
		if err := r.Patch(ctx, &p, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
			if apierrors.IsConflict(err) || apierrors.IsInvalid(err) {
				return ctrl.Result{Requeue: true}, nil
			}
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
		r.S.noteStale(p.UID, base.ResourceVersion)
	}
	dp, problem := r.D.open(&p)
	items, err := poolReservations(ctx, r.Client, p.Name)
	if err != nil {
		return ctrl.Result{}, err
	}
	condStatus, reason, msg := metav1.ConditionTrue, reasonPoolValid, ""
	switch {
	case dp == nil:
		condStatus, reason, msg = metav1.ConditionFalse, reasonInvalidSpec, problem
	default:
		var node corev1.Node
		if err := r.Get(ctx, types.NamespacedName{Name: dp.node}, &node); apierrors.IsNotFound(err) {
			condStatus, reason = metav1.ConditionFalse, reasonNodeNotFound
			msg = fmt.Sprintf("node %s does not exist: its devices are not handed out until it joins (kubectl get nodes)", dp.node)
		} else if err != nil {
			return ctrl.Result{}, err
		} else {
			s := "s"
			if len(dp.devs) == 1 {
				s = ""
			}
			msg = fmt.Sprintf("%d device%s on node %s (%d healthy), published as %s", len(dp.devs), s, dp.node, dp.nHealthy, dp.pub)
		}
	}
	st := devPoolStatus(&p, dp, items, condStatus, reason, msg)
	return r.writeStatus(ctx, &p, st)
}

// devPoolStatus: the pool's status from its Reservations (dp nil: invalid
// spec, counts only).
func devPoolStatus(p *DevicePool, dp *devPool, items []Reservation, condStatus metav1.ConditionStatus, reason, msg string) DevicePoolStatus {
	st := DevicePoolStatus{
		ObservedGeneration: p.Generation,
		Allocated:          int64(len(items)),
		Agent:              p.Status.Agent,
		Conditions:         copyConditions(p.Status.Conditions),
	}
	if dp != nil {
		holders := make(map[string]string, len(items))
		for i := range items {
			holders[items[i].Spec.Slot] = items[i].Spec.Claim.Namespace + "/" + items[i].Spec.Claim.Name
		}
		st.Capacity = int64(dp.nHealthy)
		st.Publish = dp.pub
		st.Devices = make([]DeviceState, len(dp.devs))
		for i := range dp.devs {
			d := &dp.devs[i]
			holder, held := holders[d.id]
			st.Devices[i] = DeviceState{ID: d.id, Healthy: d.healthy, Source: "Declared", Claim: holder, Message: d.message}
			if d.healthy && !held {
				st.Available++
			}
			if !d.healthy {
				st.Unhealthy++
			}
		}
		if !dp.wantsAgent {
			meta.RemoveStatusCondition(&st.Conditions, condAgent)
		}
	}
	setCond(&st.Conditions, p.Generation, condReady, condStatus, reason, msg)
	return st
}

// devCountsOnly: a and b differ only where allocations move them: counts
// and which claim holds a device.
func devCountsOnly(a, b *DevicePoolStatus) bool {
	if len(a.Devices) != len(b.Devices) {
		return false
	}
	x, y := *a, *b
	x.Allocated, x.Available, x.Devices = 0, 0, nil
	y.Allocated, y.Available, y.Devices = 0, 0, nil
	if !equality.Semantic.DeepEqual(x, y) {
		return false
	}
	for i := range a.Devices {
		da, db := a.Devices[i], b.Devices[i]
		da.Claim, db.Claim = "", ""
		if da != db {
			return false
		}
	}
	return true
}

func (r *DevPoolReconciler) writeStatus(ctx context.Context, p *DevicePool, st DevicePoolStatus) (ctrl.Result, error) {
	now := time.Now()
	if equality.Semantic.DeepEqual(p.Status, st) {
		r.D.countsSettled(p.Name, false, now)
		return ctrl.Result{}, nil
	}
	if meta.FindStatusCondition(p.Status.Conditions, condReady) != nil && devCountsOnly(&p.Status, &st) {
		if wait := r.D.countsWait(p.Name, p.ResourceVersion, now); wait > 0 {
			return ctrl.Result{RequeueAfter: wait}, nil
		}
	}
	old := meta.FindStatusCondition(p.Status.Conditions, condReady)
	var oldCopy *metav1.Condition
	if old != nil {
		c := *old
		oldCopy = &c
	}
	before := p.ResourceVersion
	p.Status = st
	if err := r.Status().Update(ctx, p); err != nil {
		if apierrors.IsConflict(err) {
			return ctrl.Result{Requeue: true}, nil
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	r.S.noteStale(p.UID, before)
	r.D.countsSettled(p.Name, true, now)
	// Events for trouble and for the recovery from it, not for every new pool.
	nw := meta.FindStatusCondition(st.Conditions, condReady)
	ok := nw.Status == metav1.ConditionTrue
	wasOK := oldCopy == nil || oldCopy.Status == metav1.ConditionTrue
	moved := oldCopy == nil || oldCopy.Status != nw.Status || oldCopy.Reason != nw.Reason
	if moved && (!ok || !wasOK) {
		typ := "Normal"
		if !ok {
			typ = "Warning"
		}
		r.Recorder.Eventf(p, nil, typ, nw.Reason, "Reconcile", "%s", nw.Message)
	}
	return ctrl.Result{}, nil
}

func (r *DevPoolReconciler) deleting(ctx context.Context, p *DevicePool) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(p, finalizer) {
		return ctrl.Result{}, nil
	}
	items, err := poolReservations(ctx, r.Client, p.Name)
	if err != nil {
		return ctrl.Result{}, err
	}
	nHeld := len(items)
	inflight := r.D.inflightOf(p.Name)
	for name := range inflight {
		var rv Reservation
		if err := r.Get(ctx, client.ObjectKey{Name: name}, &rv); err != nil {
			nHeld++ // created by us, not in the cache yet
		}
	}
	if nHeld == 0 {
		left, err := reservationsLeft(ctx, r.APIReader, kindDevicePool, p.Name)
		if err != nil {
			return ctrl.Result{}, err
		}
		if left {
			return ctrl.Result{RequeueAfter: devPoolGoneRetry}, nil
		}
		// Take the resource off the node before the pool can go.
		if err := r.Nodes.finalizePool(ctx, p); err != nil {
			return ctrl.Result{}, err
		}
		if conflict, err := patchFinalizer(ctx, r.Client, p, finalizer, false); err != nil || conflict {
			return ctrl.Result{Requeue: conflict}, err
		}
		r.D.forgetPool(p.Name)
		return ctrl.Result{}, nil
	}
	sorted := append([]Reservation(nil), items...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	var shown []string
	for i := 0; i < len(sorted) && i < holdersShownDev; i++ {
		rv := &sorted[i]
		shown = append(shown, fmt.Sprintf("%s/%s %s", rv.Spec.Claim.Namespace, rv.Spec.Claim.Name, rv.Spec.Slot))
	}
	noun := "devices are"
	if nHeld == 1 {
		noun = "device is"
	}
	var msg string
	if len(shown) == 0 {
		msg = fmt.Sprintf("the pool is being deleted but %d %s being reserved (Reservations not seen yet); it goes once that is settled", nHeld, noun)
	} else {
		more := ""
		if nHeld > len(shown) {
			more = ", ..."
		}
		msg = fmt.Sprintf("the pool is being deleted but %d %s still held (%s%s); it goes when those DeviceClaims are deleted",
			nHeld, noun, strings.Join(shown, ", "), more)
	}
	dp, _ := r.D.open(p)
	st := devPoolStatus(p, dp, items, metav1.ConditionFalse, reasonPoolTerminate, msg)
	res, err := r.writeStatus(ctx, p, st)
	if err == nil && res.IsZero() && len(inflight) > 0 {
		// A creation of ours not seen yet may never show: look again then.
		res = ctrl.Result{RequeueAfter: inflightTTL}
	}
	return res, err
}
