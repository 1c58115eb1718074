package main

// The Volume reconciler ("volume", provisio's vol_claim.c): the finalizer;
// the Reservations of the Volume's uid from the cache (a valid one means
// placed; an invalid one, made after its deadline, holds nothing and is
// released); otherwise a pool is chosen (spec.pool, or the Ready pool with
// the most bytes free, on spec.nodeName if set), the Volume waits for the
// pool's reconcile to admit it into the ledger (volume_state.go), and the
// Reservation storagepool.<pool>.<uid> is created with the admission's
// deadline (checked against the creationTimestamp the API server gave it)
// and the finalizer provisio.dev/volume-directory, labelled with the node so
// that node's agent makes the directory. Once the agent says the directory
// is Ready, the PersistentVolume and its claim (volume_pv.go); Ready=True
// Bound when the PVC is Bound. Deleting: the PVC and PV go first, then each
// Reservation once its deadline + 30 s has passed, then the finalizer.
//
// And the orphan sweep ("volumereservation"): a Reservation whose Volume is
// not cached, and that the API server says is gone, is released as the
// Volume's reconcile would have done.

import (
	"context"
	"fmt"
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
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

type VolumeReconciler struct {
	client.Client
	APIReader client.Reader
	Recorder  events.EventRecorder
	V         *volState
}

func secs(n int64) time.Duration { return time.Duration(n) * time.Second }

// volHeld: the cached StoragePool Reservations naming uid.
func volHeld(ctx context.Context, c client.Reader, uid string) ([]*Reservation, error) {
	var list ReservationList
	if err := c.List(ctx, &list, client.MatchingFields{idxResvClaimUID: uid}); err != nil {
		return nil, err
	}
	var out []*Reservation
	for i := range list.Items {
		if list.Items[i].Spec.Pool.Kind == kindStoragePool {
			out = append(out, &list.Items[i])
		}
	}
	return out, nil
}

func (r *VolumeReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var v Volume
	if err := r.Get(ctx, req.NamespacedName, &v); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	uid := string(v.UID)
	now := time.Now().Unix()
	held, err := volHeld(ctx, r.Client, uid)
	if err != nil {
		return ctrl.Result{}, err
	}

	if !v.DeletionTimestamp.IsZero() {
		r.V.waitRemove(uid)
		r.V.admittedForget(uid)
		gone, err := r.teardown(ctx, &v)
		if err != nil {
			return ctrl.Result{}, fmt.Errorf("deleting the PersistentVolume and its claim: %w", err)
		}
		if !gone {
			return ctrl.Result{RequeueAfter: volTeardownRecheck}, nil // the PV's events come sooner
		}
		wait, res, err := releaseVolResv(ctx, r.Client, r.APIReader, uid, held, nil, volRetains(&v), now)
		if err != nil || !res.IsZero() {
			return res, err
		}
		if wait > 0 {
			return ctrl.Result{RequeueAfter: wait}, nil // not before deadline + grace
		}
		if controllerutil.ContainsFinalizer(&v, finalizer) {
			if conflict, err := patchFinalizer(ctx, r.Client, &v, finalizer, false); err != nil {
				return ctrl.Result{}, fmt.Errorf("removing the finalizer: %w", err)
			} else if conflict {
				return ctrl.Result{Requeue: true}, nil
			}
		}
		return ctrl.Result{}, nil
	}
	if !controllerutil.ContainsFinalizer(&v, finalizer) {
		if conflict, err := patchFinalizer(ctx, r.Client, &v, finalizer, true); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding the finalizer: %w", err)
		} else if conflict {
			return ctrl.Result{Requeue: true}, nil
		}
		return ctrl.Result{}, nil // the watch brings the Volume back with it
	}
	w, why := volumeWant(&v)
	if w == nil {
		return r.pending(ctx, &v, reasonInvalidSpec, why, 0)
	}
	// Placed: the valid Reservation status names, else the first.
	var keep *Reservation
	for _, rv := range held {
		if !viewResv(rv).valid || !rv.DeletionTimestamp.IsZero() {
			continue
		}
		if keep == nil || (v.Status.Pool != "" && rv.Spec.Pool.Name == v.Status.Pool) {
			keep = rv
		}
	}
	// Invalid ones, and a second one.
	wait, res, err := releaseVolResv(ctx, r.Client, r.APIReader, uid, held, keep, false, now)
	if err != nil || !res.IsZero() {
		return res, err
	}
	if keep != nil {
		r.V.waitRemove(uid)
		r.V.admittedForget(uid)
		var pool StoragePool
		pp := &pool
		if err := r.Get(ctx, types.NamespacedName{Name: keep.Spec.Pool.Name}, &pool); err != nil {
			if !apierrors.IsNotFound(err) {
				return ctrl.Result{}, err
			}
			pp = nil
		}
		res, err := r.placed(ctx, &v, w, keep.Spec.Pool.Name, pp, keep)
		if err == nil && res.IsZero() && wait > 0 {
			res = ctrl.Result{RequeueAfter: wait}
		}
		return res, err
	}
	pool, reason, msg, err := r.choose(ctx, uid, w)
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("choosing a pool: %w", err)
	}
	if pool == nil {
		r.V.waitRemove(uid)
		return r.pending(ctx, &v, reason, msg, volRecheckMax)
	}
	if r.V.rejectedTake(uid, pool.Name) {
		// The pool's own reconcile found no room though our cache of it
		// still shows some: wait for the pool to change.
		return r.pending(ctx, &v, reasonInsufficientCap,
			fmt.Sprintf("StoragePool %s has fewer than %d bytes free; waiting for space", pool.Name, w.size), volRecheckMax)
	}
	until, res := r.admission(&v, w, pool, now)
	if until == 0 {
		return res, nil
	}
	return r.reserve(ctx, &v, w, pool, until)
}

// choose: the pool uid was admitted into (this process remembers it, or a
// cached ledger shows it: its own admission already holds its bytes there),
// else one chosen among the cached pools.
func (r *VolumeReconciler) choose(ctx context.Context, uid string, w *volWant) (*StoragePool, string, string, error) {
	var list StoragePoolList
	if err := r.List(ctx, &list); err != nil {
		return nil, "", "", err
	}
	pools := make([]*StoragePool, len(list.Items))
	for i := range list.Items {
		pools[i] = &list.Items[i]
	}
	var mine *StoragePool
	if name := r.V.admittedPool(uid); name != "" {
		for _, p := range pools {
			if p.Name == name {
				mine = p
			}
		}
	}
	for _, p := range pools {
		if mine != nil {
			break
		}
		for _, e := range p.Status.InFlight {
			if e.UID == uid {
				mine = p
			}
		}
	}
	if mine != nil && (w.pool == "" || w.pool == mine.Name) && (w.node == "" || w.node == mine.Spec.NodeName) &&
		mine.DeletionTimestamp.IsZero() {
		return mine, "", "", nil
	}
	name, reason, msg := choosePool(w, pools)
	for _, p := range pools {
		if name != "" && p.Name == name {
			return p, "", "", nil
		}
	}
	return nil, reason, msg, nil
}

// admission: what this process admitted, else an entry the cached ledger
// shows (another replica's). 0: none usable yet: the Volume waits in the
// pool's list, the pool is woken, and the result says when to look again.
func (r *VolumeReconciler) admission(v *Volume, w *volWant, pool *StoragePool, now int64) (int64, ctrl.Result) {
	uid := string(v.UID)
	u, have := r.V.admittedGet(uid, pool.Name)
	if !have {
		if l, _ := readLedger(pool); l != nil && l.known {
			if a := l.find(uid); a != nil {
				u, have = a.until, true
			}
		}
	}
	if have && u-now >= createMargin {
		return u, ctrl.Result{}
	}
	if have { // too late to use: a recount drops it, then a new admission
		r.V.admittedForget(uid)
		return 0, ctrl.Result{RequeueAfter: secs(u + admitGrace + 1 - now)}
	}
	r.V.waitAdd(pool.Name, volWaiter{uid: uid, ns: v.Namespace, name: v.Name, size: w.size})
	r.V.wakePool(pool.Name)
	return 0, ctrl.Result{RequeueAfter: volWaitRecheck} // woken sooner by the pool
}

// reserve: the Reservation of the admission (POST: 201 ours, 409 read back:
// ours from before, or another claim's).
func (r *VolumeReconciler) reserve(ctx context.Context, v *Volume, w *volWant, pool *StoragePool, until int64) (ctrl.Result, error) {
	uid := string(v.UID)
	name := volResvName(pool.Name, uid)
	if time.Now().Unix() > until-1 {
		return ctrl.Result{Requeue: true}, nil // the deadline passed while we worked: admit again
	}
	policy := "Delete"
	if volRetains(v) {
		policy = "Retain"
	}
	deadline := metav1.Unix(until, 0)
	var got *Reservation
	for i := 0; i < reserveTries && got == nil; i++ {
		rv := &Reservation{
			ObjectMeta: metav1.ObjectMeta{
				Name: name,
				Labels: map[string]string{labelPoolKind: kindStoragePool, labelPool: pool.Name,
					labelNode: pool.Spec.NodeName, labelReclaim: policy},
				Finalizers: []string{dirFinalizer}, // the node agent removes the directory, then this
			},
			Spec: ReservationSpec{
				Pool:          PoolRef{Kind: kindStoragePool, Name: pool.Name},
				Slot:          uid,
				Claim:         ClaimRef{Kind: kindVolume, Namespace: v.Namespace, Name: v.Name, UID: uid},
				Bytes:         w.size,
				AdmittedUntil: &deadline,
			},
		}
		err := r.Create(ctx, rv)
		if err == nil {
			got = rv
			break
		}
		if !apierrors.IsAlreadyExists(err) {
			return ctrl.Result{}, fmt.Errorf("creating Reservation %s: %w", name, err)
		}
		// Someone holds it: maybe us, from before a crash or a lost answer.
		var have Reservation
		if err := r.APIReader.Get(ctx, types.NamespacedName{Name: name}, &have); err != nil {
			if apierrors.IsNotFound(err) {
				continue // released in between: try again
			}
			return ctrl.Result{}, err
		}
		if have.Spec.Claim.UID != uid {
			return ctrl.Result{}, fmt.Errorf("reservation %s is held by another claim", name)
		}
		if !have.DeletionTimestamp.IsZero() {
			return ctrl.Result{Requeue: true}, nil // ours, being deleted: it is gone shortly
		}
		got = &have
	}
	if got == nil {
		return ctrl.Result{Requeue: true}, nil // changed hands repeatedly
	}
	if !resvValid(got.CreationTimestamp.Unix(), until) {
		// Made after the deadline (a slow request): it holds nothing.
		if _, err := release(ctx, r.Client, r.APIReader, name, uid); err != nil {
			return ctrl.Result{}, fmt.Errorf("releasing a late Reservation %s: %w", name, err)
		}
		return ctrl.Result{Requeue: true}, nil
	}
	r.V.admittedForget(uid)
	r.Recorder.Eventf(v, nil, "Normal", "Placed", "Provision", "%d bytes held in StoragePool %s on node %s",
		w.size, pool.Name, pool.Spec.NodeName)
	return r.placed(ctx, v, w, pool.Name, pool, nil)
}

// placed: the status of a Volume placed in pool (nil: gone from the cache),
// held by resv (nil: just made, no status yet): waiting for the node
// agent's directory, then for the PV and its claim to be bound.
func (r *VolumeReconciler) placed(ctx context.Context, v *Volume, w *volWant, poolName string, pool *StoragePool, resv *Reservation) (ctrl.Result, error) {
	var node, ppath string
	if pool != nil {
		node, ppath = pool.Spec.NodeName, pool.Spec.Path
	}
	var rst ReservationStatus
	if resv != nil && resv.Status != nil {
		rst = *resv.Status
	}
	path := rst.Path
	if path == "" && ppath != "" {
		path = volumeDir(ppath, v)
	}
	onNode := "?"
	if node != "" {
		onNode = node
	}
	cond, reason := metav1.ConditionFalse, reasonProvisioning
	var msg string
	var b binding
	res := ctrl.Result{}
	switch {
	case rst.Phase == "Ready" && rst.Path != "" && node != "":
		cls := v.Annotations[annClass]
		if cls == "" && pool != nil {
			cls = pool.Spec.StorageClassName
		}
		var err error
		b, err = r.ensurePV(ctx, v, w.size, node, rst.Path, cls)
		if err != nil {
			return ctrl.Result{}, fmt.Errorf("making the PersistentVolume and its claim: %w", err)
		}
		if b.ready {
			if !meta.IsStatusConditionTrue(v.Status.Conditions, condReady) {
				r.Recorder.Eventf(v, nil, "Normal", reasonBound, "Provision",
					"PersistentVolumeClaim %s Bound to PersistentVolume %s on node %s", b.pvc, b.pv, node)
			}
			cond, reason = metav1.ConditionTrue, reasonBound
			msg = fmt.Sprintf("%d bytes in StoragePool %s on node %s; PersistentVolumeClaim %s is Bound to PersistentVolume %s",
				w.size, poolName, node, b.pvc, b.pv)
		} else {
			reason, msg = b.reason, b.message
			res = ctrl.Result{RequeueAfter: volRecheckMax} // PV and PVC events come sooner
		}
	case rst.Phase == "Failed":
		why := rst.Message
		if why == "" {
			why = "(no message)"
		}
		reason = reasonDirFailed
		msg = fmt.Sprintf("the node agent on node %s could not make the directory: %s", onNode, why)
		r.Recorder.Eventf(v, nil, "Warning", reason, "Provision", "%s", msg)
	default:
		on := ""
		if node != "" {
			on = " on node " + node
		}
		msg = fmt.Sprintf("%d bytes held in StoragePool %s%s; waiting for the node agent to make the directory", w.size, poolName, on)
	}
	size := w.size
	st := VolumeStatus{
		ObservedGeneration:   v.Generation,
		Pool:                 poolName,
		NodeName:             node,
		Path:                 path,
		PersistentVolumeName: b.pv,
		CapacityBytes:        &size,
		UsedBytes:            copyInt64(rst.UsedBytes),
		Conditions:           copyConditions(v.Status.Conditions),
	}
	if b.pv != "" {
		st.PersistentVolumeClaimName = b.pvc
	}
	setCond(&st.Conditions, v.Generation, condReady, cond, reason, msg)
	wr, err := r.writeStatus(ctx, v, st)
	if err != nil || !wr.IsZero() {
		return wr, err
	}
	return res, nil
}

// pending: Ready=False with reason, nothing held (the status keeps only
// its conditions); a Warning Event but for Provisioning.
func (r *VolumeReconciler) pending(ctx context.Context, v *Volume, reason, msg string, again time.Duration) (ctrl.Result, error) {
	if reason != reasonProvisioning {
		r.Recorder.Eventf(v, nil, "Warning", reason, "Provision", "%s", msg)
	}
	st := VolumeStatus{ObservedGeneration: v.Generation, Conditions: copyConditions(v.Status.Conditions)}
	setCond(&st.Conditions, v.Generation, condReady, metav1.ConditionFalse, reason, msg)
	res, err := r.writeStatus(ctx, v, st)
	if err == nil && res.IsZero() && again > 0 {
		res = ctrl.Result{RequeueAfter: again}
	}
	return res, err
}

// writeStatus: a PUT of the status subresource at the cached
// resourceVersion, only when it changed.
func (r *VolumeReconciler) writeStatus(ctx context.Context, v *Volume, st VolumeStatus) (ctrl.Result, error) {
	if equality.Semantic.DeepEqual(v.Status, st) {
		return ctrl.Result{}, nil
	}
	v.Status = st
	if err := r.Status().Update(ctx, v); err != nil {
		if apierrors.IsConflict(err) {
			return ctrl.Result{Requeue: true}, nil
		}
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("writing the Volume status: %w", err)
	}
	return ctrl.Result{}, nil
}

// ---- release ----

// releaseVolResv releases every Reservation in held but keep whose time has
// come (deadline + 30 s passed, or invalid); retain: their directories stay
// (the directory finalizer comes off first, as it does when their node is
// gone for good). wait: until the next one may go (0: none).
func releaseVolResv(ctx context.Context, c client.Client, reader client.Reader, uid string, held []*Reservation, keep *Reservation, retain bool, now int64) (time.Duration, ctrl.Result, error) {
	var wait time.Duration
	for _, rv := range held {
		if rv == keep {
			continue
		}
		view := viewResv(rv)
		due := !view.valid || releaseDue(view.until, now)
		deleting := !rv.DeletionTimestamp.IsZero()
		if (due || deleting) && stripDirFinalizer(ctx, c, rv, retain) {
			if conflict, err := patchFinalizer(ctx, c, rv, dirFinalizer, false); err != nil {
				return 0, ctrl.Result{}, fmt.Errorf("keeping the directory of %s: %w", rv.Name, err)
			} else if conflict {
				return 0, ctrl.Result{Requeue: true}, nil
			}
		}
		if deleting {
			continue
		}
		if !due {
			if w := secs(view.until + admitGrace + 1 - now); wait == 0 || w < wait {
				wait = w
			}
			continue
		}
		if _, err := release(ctx, c, reader, rv.Name, uid); err != nil {
			return 0, ctrl.Result{}, fmt.Errorf("releasing Reservation %s: %w", rv.Name, err)
		}
	}
	return wait, ctrl.Result{}, nil
}

// stripDirFinalizer: the directory finalizer must come off rv before it is
// released: the Volume keeps its directory (Retain), or the node is gone,
// so no agent will ever remove it.
func stripDirFinalizer(ctx context.Context, c client.Reader, rv *Reservation, retain bool) bool {
	if !controllerutil.ContainsFinalizer(rv, dirFinalizer) {
		return false
	}
	if retain {
		return true
	}
	node := rv.Labels[labelNode]
	if node == "" {
		return false
	}
	var n corev1.Node
	err := c.Get(ctx, types.NamespacedName{Name: node}, &n)
	return apierrors.IsNotFound(err)
}

// ---- the orphan sweep ----

type VolResvReconciler struct {
	client.Client
	APIReader client.Reader
}

func (r *VolResvReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var rv Reservation
	if err := r.Get(ctx, req.NamespacedName, &rv); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if rv.Spec.Pool.Kind != kindStoragePool || rv.Spec.Claim.Kind != kindVolume ||
		rv.Spec.Claim.Namespace == "" || rv.Spec.Claim.Name == "" || rv.Spec.Claim.UID == "" {
		return ctrl.Result{}, nil
	}
	key := types.NamespacedName{Namespace: rv.Spec.Claim.Namespace, Name: rv.Spec.Claim.Name}
	var v Volume
	if err := r.Get(ctx, key, &v); err == nil && string(v.UID) == rv.Spec.Claim.UID {
		return ctrl.Result{RequeueAfter: volResvResync}, nil // its reconcile owns it
	} else if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	// The cache may lag: only the API server can say the Volume is gone.
	err := r.APIReader.Get(ctx, key, &v)
	if err == nil && string(v.UID) == rv.Spec.Claim.UID {
		return ctrl.Result{RequeueAfter: volResvResync}, nil
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	// Delete the directory only when the label says so.
	retain := rv.Labels[labelReclaim] != "Delete"
	wait, res, err := releaseVolResv(ctx, r.Client, r.APIReader, rv.Spec.Claim.UID, []*Reservation{&rv}, nil, retain, time.Now().Unix())
	if err != nil || !res.IsZero() {
		return res, err
	}
	if wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, nil // not before its deadline + grace
	}
	logf.FromContext(ctx).V(1).Info("released the reservation of a volume that no longer exists",
		"namespace", rv.Spec.Claim.Namespace, "volume", rv.Spec.Claim.Name, "pool", rv.Spec.Pool.Name)
	return ctrl.Result{}, nil
}
