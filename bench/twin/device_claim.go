package main

// The DeviceClaim reconciler, the claim flow of claim.go for devices:
// finalizer first; what a claim holds is read from the cached Reservations
// naming its uid (plus this process's creations the cache does not show
// yet); a claim holding nothing gets a pool chosen among those of its
// resource name (the ones with enough free matching devices, spread by a
// hash of its uid) and spec.count devices of it, each locked by a
// Reservation devicepool.<pool>.<id> created with POST, all or none; then
// status pool/nodeName/devices and Ready (Allocated, NoMatchingDevices,
// InsufficientDevices, InvalidSpec, PoolNotFound, PoolTerminating) with a
// PUT only when it changed and an Event on every change of reason. Deleting
// a claim releases its Reservations (GET, DELETE with preconditions) and
// removes the finalizer.

import (
	"context"
	"fmt"
	"sort"
	"strings"

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

type DevClaimReconciler struct {
	client.Client
	APIReader client.Reader
	Recorder  events.EventRecorder
	S         *shared   // own-write memory (stale cache versions)
	D         *devState // in-flight creations, parsed pools
}

type devHeld struct{ name, slot, pool string }

// devRun: one reconcile of a claim.
type devRun struct {
	claim    *DeviceClaim
	want     *devWant
	poolName string
	poolObj  *DevicePool // nil: not in the cache
	dp       *devPool    // nil: missing or invalid
	problem  string
}

func (run *devRun) uid() string { return string(run.claim.UID) }

func (run *devRun) poolDeleting() bool {
	return run.poolObj != nil && !run.poolObj.DeletionTimestamp.IsZero()
}

// poolReservations: the cached Reservations of a DevicePool (read-only).
func poolReservations(ctx context.Context, c client.Reader, pool string) ([]Reservation, error) {
	var list ReservationList
	if err := c.List(ctx, &list, client.MatchingFields{idxDevResvPool: pool}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// used: the devices of pool held in the cache or being created by us.
func (r *DevClaimReconciler) used(ctx context.Context, pool string) (map[string]bool, error) {
	items, err := poolReservations(ctx, r.Client, pool)
	if err != nil {
		return nil, err
	}
	used := make(map[string]bool, len(items))
	for i := range items {
		used[items[i].Spec.Slot] = true
	}
	for _, e := range r.D.inflightOf(pool) {
		used[e.slot] = true
	}
	return used, nil
}

// held: the Reservations naming the claim's uid, from the cache and from
// what this process created that the cache does not show yet.
func (r *DevClaimReconciler) held(ctx context.Context, claim *DeviceClaim) ([]devHeld, error) {
	var list ReservationList
	if err := r.List(ctx, &list, client.MatchingFields{idxResvClaimUID: string(claim.UID)}); err != nil {
		return nil, err
	}
	var out []devHeld
	seen := map[string]bool{}
	for i := range list.Items {
		rv := &list.Items[i]
		if rv.Spec.Pool.Kind != kindDevicePool {
			continue
		}
		seen[rv.Name] = true
		out = append(out, devHeld{rv.Name, rv.Spec.Slot, rv.Spec.Pool.Name})
	}
	for _, h := range r.D.inflightOfClaim(string(claim.UID)) {
		if !seen[h.name] {
			out = append(out, h)
		}
	}
	return out, nil
}

func (r *DevClaimReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var claim DeviceClaim
	if err := r.Get(ctx, req.NamespacedName, &claim); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if r.S.isStale(claim.UID, claim.ResourceVersion) {
		return ctrl.Result{}, nil
	}
	if !claim.DeletionTimestamp.IsZero() {
		return r.deleting(ctx, &claim)
	}
	// The finalizer first: nothing is held by a claim that could vanish unseen.
	if !controllerutil.ContainsFinalizer(&claim, finalizer) {
		base := claim.DeepCopy()
		controllerutil.AddFinalizer(&claim, finalizer)
		if err := r.Patch(ctx, &claim, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
			if apierrors.IsNotFound(err) {
				return ctrl.Result{}, nil
			}
			if apierrors.IsConflict(err) || apierrors.IsInvalid(err) {
				return ctrl.Result{Requeue: true}, nil
			}
			return ctrl.Result{}, fmt.Errorf("adding the finalizer: %w", err)
		}
		r.S.noteStale(claim.UID, base.ResourceVersion)
	}
	run := &devRun{claim: &claim}
	want, problem := parseWant(&claim)
	if want == nil {
		return r.pending(ctx, run, reasonInvalidSpec, problem)
	}
	run.want = want
	held, err := r.held(ctx, &claim)
	if err != nil {
		return ctrl.Result{}, err
	}

	// The pool: the one status names if it holds from it, else the one it
	// holds from, else the one status names devices of, else one chosen now.
	sp := claim.Status.Pool
	pick := ""
	for _, h := range held {
		if sp != "" && h.pool == sp {
			pick = sp
		}
	}
	if pick == "" && len(held) > 0 {
		pick = held[0].pool
	}
	if pick == "" && sp != "" && len(claim.Status.Devices) > 0 {
		pick = sp
	}
	if pick == "" {
		name, res, err := r.choose(ctx, run)
		if name == "" {
			return res, err
		}
		pick = name
	}
	run.poolName = pick
	var poolObj DevicePool
	if err := r.Get(ctx, types.NamespacedName{Name: pick}, &poolObj); err == nil {
		run.poolObj = &poolObj
		run.dp, run.problem = r.D.open(&poolObj)
	} else if !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}

	if len(held) > 0 {
		return r.holds(ctx, run, held)
	}
	if run.dp != nil && !run.poolDeleting() && len(claim.Status.Devices) > 0 {
		if res, handled, err := r.readopt(ctx, run); handled {
			return res, err
		}
	}
	switch {
	case run.poolObj == nil:
		return r.pending(ctx, run, reasonPoolNotFound,
			fmt.Sprintf("DevicePool %s, which the claim held devices of, does not exist", pick))
	case run.poolDeleting():
		return r.pending(ctx, run, reasonPoolTerminating, fmt.Sprintf("DevicePool %s is being deleted", pick))
	case run.dp == nil:
		return r.pending(ctx, run, reasonInvalidSpec, fmt.Sprintf("DevicePool %s cannot be used: %s", pick, run.problem))
	}
	return r.allocate(ctx, run)
}

// choose: the pool for a claim that holds nothing ("" and the result of
// writing why none).
func (r *DevClaimReconciler) choose(ctx context.Context, run *devRun) (string, ctrl.Result, error) {
	var pools DevicePoolList
	if err := r.List(ctx, &pools, client.MatchingFields{idxDevPoolResource: run.want.resource}, client.UnsafeDisableDeepCopy); err != nil {
		return "", ctrl.Result{}, err
	}
	views := make([]devView, 0, len(pools.Items))
	for i := range pools.Items {
		p := &pools.Items[i]
		v := devView{name: p.Name, deleting: !p.DeletionTimestamp.IsZero()}
		v.dp, _ = r.D.open(p)
		if v.dp != nil {
			used, err := r.used(ctx, p.Name)
			if err != nil {
				return "", ctrl.Result{}, err
			}
			v.fit, v.free = run.want.fit(v.dp, used)
		}
		views = append(views, v)
	}
	i, reason, msg := run.want.choosePool(views, run.uid())
	if i < 0 {
		res, err := r.pending(ctx, run, reason, msg)
		return "", res, err
	}
	return views[i].name, ctrl.Result{}, nil
}

// ---- Reservations ----

// acquire creates the Reservation of device slot of the run's pool. nil:
// ours (new, or ours from before); errTaken with the holder; another error.
func (r *DevClaimReconciler) acquire(ctx context.Context, run *devRun, slot string) (*Reservation, string, error) {
	name := devResvName(run.poolName, slot)
	if name == "" {
		return nil, "", fmt.Errorf("device id %q cannot name a Reservation", slot)
	}
	claim := run.claim
	for i := 0; i < reserveTries; i++ {
		resv := &Reservation{
			ObjectMeta: metav1.ObjectMeta{
				Name:   name,
				Labels: map[string]string{labelPoolKind: kindDevicePool, labelPool: run.poolName},
			},
			Spec: ReservationSpec{
				Pool:  PoolRef{Kind: kindDevicePool, Name: run.poolName},
				Slot:  slot,
				Claim: ClaimRef{Kind: kindDeviceClaim, Namespace: claim.Namespace, Name: claim.Name, UID: string(claim.UID)},
			},
		}
		err := r.Create(ctx, resv)
		if err == nil {
			r.noteInflight(ctx, run, name, slot)
			return resv, name, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, name, err
		}
		// Someone holds it: maybe us, from before a crash or a lost answer.
		var got Reservation
		if err := r.APIReader.Get(ctx, types.NamespacedName{Name: name}, &got); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return nil, name, err
		}
		if got.Spec.Claim.UID != string(claim.UID) {
			return &got, name, errTaken
		}
		if !got.DeletionTimestamp.IsZero() {
			return nil, name, apierrors.NewConflict(reservationGR, name, fmt.Errorf("being deleted"))
		}
		r.noteInflight(ctx, run, name, slot)
		return &got, name, nil
	}
	return nil, name, apierrors.NewConflict(reservationGR, name, fmt.Errorf("changed hands repeatedly"))
}

// noteInflight: remember a Reservation we hold unless the cache shows it.
func (r *DevClaimReconciler) noteInflight(ctx context.Context, run *devRun, name, slot string) {
	var cached Reservation
	if err := r.Get(ctx, types.NamespacedName{Name: name}, &cached); err == nil && cached.Spec.Claim.UID == run.uid() {
		return
	}
	r.D.addInflight(run.poolName, name, slot, run.uid())
}

func (r *DevClaimReconciler) releaseAll(ctx context.Context, run *devRun, hs []devHeld, what string) error {
	for _, h := range hs {
		if _, err := release(ctx, r.Client, r.APIReader, h.name, run.uid()); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		r.D.dropInflight(h.pool, h.name)
	}
	return nil
}

// ---- the paths of a claim ----

func (r *DevClaimReconciler) deleting(ctx context.Context, claim *DeviceClaim) (ctrl.Result, error) {
	held, err := r.held(ctx, claim)
	if err != nil {
		return ctrl.Result{}, err
	}
	// What status says it holds, in case the cache has not seen it.
	sp := claim.Status.Pool
	if sp != "" {
		for _, id := range claim.Status.Devices {
			name := devResvName(sp, id)
			dup := name == ""
			for _, h := range held {
				dup = dup || h.name == name
			}
			if !dup {
				held = append(held, devHeld{name, id, sp})
			}
		}
	}
	any := false
	for _, h := range held {
		released, err := release(ctx, r.Client, r.APIReader, h.name, string(claim.UID))
		if err != nil {
			return ctrl.Result{}, fmt.Errorf("releasing a reservation: %w", err)
		}
		r.D.dropInflightClaim(h.pool, string(claim.UID))
		any = any || released
	}
	if controllerutil.ContainsFinalizer(claim, finalizer) {
		if conflict, err := patchFinalizer(ctx, r.Client, claim, finalizer, false); err != nil {
			return ctrl.Result{}, fmt.Errorf("removing the finalizer: %w", err)
		} else if conflict {
			return ctrl.Result{Requeue: true}, nil
		}
	}
	if any {
		from := sp
		if from == "" && len(held) > 0 {
			from = held[0].pool
		}
		r.Recorder.Eventf(claim, nil, "Normal", "Released", "Release", "Released what it held of DevicePool %s", from)
	}
	return ctrl.Result{}, nil
}

// writeStatus writes st when it differs from the cached status (PUT of the
// status subresource carrying the cached resourceVersion) and records an
// Event when the Ready condition's status or reason moved.
func (r *DevClaimReconciler) writeStatus(ctx context.Context, claim *DeviceClaim, st DeviceClaimStatus, evType, reason, note string) (ctrl.Result, error) {
	st.ObservedGeneration = claim.Generation
	old := meta.FindStatusCondition(claim.Status.Conditions, condReady)
	nw := meta.FindStatusCondition(st.Conditions, condReady)
	transition := old == nil || old.Status != nw.Status || old.Reason != nw.Reason
	if equality.Semantic.DeepEqual(claim.Status, st) {
		return ctrl.Result{}, nil
	}
	before := claim.ResourceVersion
	claim.Status = st
	if err := r.Status().Update(ctx, claim); err != nil {
		if apierrors.IsConflict(err) {
			return ctrl.Result{Requeue: true}, nil
		}
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("writing the DeviceClaim status: %w", err)
	}
	r.S.noteStale(claim.UID, before)
	if transition {
		r.Recorder.Eventf(claim, nil, evType, reason, "Reconcile", "%s", note)
	}
	return ctrl.Result{}, nil
}

func setCond(conds *[]metav1.Condition, gen int64, typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(conds, metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen})
}

// pending: Ready=False; status keeps its conditions only (what it held is
// not claimed any more).
func (r *DevClaimReconciler) pending(ctx context.Context, run *devRun, reason, msg string) (ctrl.Result, error) {
	st := DeviceClaimStatus{Conditions: copyConditions(run.claim.Status.Conditions)}
	setCond(&st.Conditions, run.claim.Generation, condReady, metav1.ConditionFalse, reason, msg)
	return r.writeStatus(ctx, run.claim, st, "Warning", reason, msg)
}

func (r *DevClaimReconciler) exhausted(ctx context.Context, run *devRun) (ctrl.Result, error) {
	healthy, n := 0, 0
	if run.dp != nil {
		healthy, n = run.dp.nHealthy, len(run.dp.devs)
	}
	return r.pending(ctx, run, reasonInsufficient,
		fmt.Sprintf("DevicePool %s has not enough free healthy matching devices (%d healthy of %d); waiting for devices to be freed or to appear",
			run.poolName, healthy, n))
}

func (r *DevClaimReconciler) ready(ctx context.Context, run *devRun, kept []devHeld) (ctrl.Result, error) {
	claim := run.claim
	ids := make([]string, 0, len(kept))
	for _, h := range kept {
		ids = append(ids, h.slot)
	}
	sort.Strings(ids)
	node := claim.Status.NodeName
	switch {
	case run.dp != nil:
		node = run.dp.node
	case run.poolObj != nil:
		node = run.poolObj.Spec.NodeName
	}
	st := DeviceClaimStatus{Conditions: copyConditions(claim.Status.Conditions), Pool: run.poolName, NodeName: node, Devices: ids}
	if claim.Status.ResourceClaimName != "" && run.dp != nil && run.dp.pub == publishResourceSlice {
		st.ResourceClaimName = claim.Status.ResourceClaimName
	}
	shown := node
	if shown == "" {
		shown = "(unknown)"
	}
	msg := fmt.Sprintf("Allocated %s of DevicePool %s on node %s", strings.Join(ids, ", "), run.poolName, shown)
	setCond(&st.Conditions, claim.Generation, condReady, metav1.ConditionTrue, reasonAllocated, msg)
	var sick []string
	for _, id := range ids {
		if run.dp == nil {
			break
		}
		d := run.dp.find(id)
		switch {
		case d == nil:
			sick = append(sick, id+" is no longer in the pool")
		case !d.healthy:
			sick = append(sick, fmt.Sprintf("%s is unhealthy (%s)", id, d.message))
		}
	}
	if len(sick) > 0 {
		setCond(&st.Conditions, claim.Generation, condDevicesHealthy, metav1.ConditionFalse, reasonDevUnhealthy, strings.Join(sick, "; "))
	} else {
		setCond(&st.Conditions, claim.Generation, condDevicesHealthy, metav1.ConditionTrue, reasonDevHealthy, "every device held is healthy")
	}
	return r.writeStatus(ctx, claim, st, "Normal", reasonAllocated, msg)
}

// holds: keep spec.count of the held devices in the run's pool (those
// status names first, then by id), give back the rest, complete what is
// missing, write the status.
func (r *DevClaimReconciler) holds(ctx context.Context, run *devRun, held []devHeld) (ctrl.Result, error) {
	var other, inPool []devHeld
	for _, h := range held {
		if h.pool == run.poolName {
			inPool = append(inPool, h)
		} else {
			other = append(other, h)
		}
	}
	keep := make([]bool, len(inPool))
	nKeep := 0
	for _, s := range run.claim.Status.Devices {
		for i := range inPool {
			if nKeep < run.want.count && !keep[i] && inPool[i].slot == s {
				keep[i] = true
				nKeep++
				break
			}
		}
	}
	rest := make([]int, 0, len(inPool))
	for i := range inPool {
		if !keep[i] {
			rest = append(rest, i)
		}
	}
	sort.Slice(rest, func(a, b int) bool { return inPool[rest[a]].slot < inPool[rest[b]].slot })
	for _, i := range rest {
		if nKeep == run.want.count {
			break
		}
		keep[i] = true
		nKeep++
	}
	var kept, extra []devHeld
	for i := range inPool {
		if keep[i] {
			kept = append(kept, inPool[i])
		} else {
			extra = append(extra, inPool[i])
		}
	}
	if err := r.releaseAll(ctx, run, other, "releasing a reservation of another pool"); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.releaseAll(ctx, run, extra, "releasing a second reservation"); err != nil {
		return ctrl.Result{}, err
	}
	for _, h := range extra {
		logf.FromContext(ctx).Info("released a second reservation of a claim", "device", h.slot)
	}
	if len(kept) < run.want.count && run.dp != nil && !run.poolDeleting() {
		// Complete the claim (a round cut short by a crash, a device lost).
		got, done, res, err := r.fill(ctx, run, kept, run.want.count-len(kept))
		switch {
		case done && len(got) == run.want.count-len(kept):
			return r.afterRound(ctx, run, got)
		case done:
			// None free: all or nothing, so two waiting claims do not
			// starve each other holding half of what each needs.
			if err := r.releaseAll(ctx, run, got, "giving back a partial allocation"); err != nil {
				return ctrl.Result{}, err
			}
			if len(run.claim.Status.Devices) == 0 {
				if err := r.releaseAll(ctx, run, kept, "giving back a partial allocation"); err != nil {
					return ctrl.Result{}, err
				}
			}
			return r.exhausted(ctx, run)
		}
		return res, err
	}
	if len(kept) < run.want.count {
		return r.exhausted(ctx, run)
	}
	return r.ready(ctx, run, kept)
}

// fill acquires need more devices of the run's pool, skipping have. done
// with len(got) < need: the pool has no more free for it; !done: res/err
// say what next (what was got stays held).
func (r *DevClaimReconciler) fill(ctx context.Context, run *devRun, have []devHeld, need int) ([]devHeld, bool, ctrl.Result, error) {
	skip := map[string]bool{}
	for _, h := range have {
		skip[h.slot] = true
	}
	var got []devHeld
	tried := 0
	for len(got) < need {
		if tried == attempts {
			logf.FromContext(ctx).V(1).Info("every device tried was taken; requeue")
			return got, false, ctrl.Result{Requeue: true}, nil
		}
		used, err := r.used(ctx, run.poolName)
		if err != nil {
			return got, false, ctrl.Result{}, err
		}
		slot := run.want.pick(run.dp, run.uid(), used, skip)
		if slot == "" {
			return got, true, ctrl.Result{}, nil
		}
		_, name, err := r.acquire(ctx, run, slot)
		switch {
		case err == nil:
			got = append(got, devHeld{name, slot, run.poolName})
			skip[slot] = true
			continue
		case err == errTaken:
			tried++ // our cache lags: that one is used
			skip[slot] = true
			continue
		case apierrors.IsConflict(err):
			return got, false, ctrl.Result{Requeue: true}, nil
		}
		return got, false, ctrl.Result{}, fmt.Errorf("reserving a device: %w", err)
	}
	return got, true, ctrl.Result{}, nil
}

// afterRound: if the claim now holds more than it wants (a lagging cache hid
// some), give the round back and requeue; else go on from what is held.
func (r *DevClaimReconciler) afterRound(ctx context.Context, run *devRun, got []devHeld) (ctrl.Result, error) {
	held, err := r.held(ctx, run.claim)
	if err != nil {
		return ctrl.Result{}, err
	}
	if len(held) > run.want.count {
		if err := r.releaseAll(ctx, run, got, "releasing a second reservation"); err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{Requeue: true}, nil
	}
	return r.holds(ctx, run, held)
}

// allocate: spec.count free devices of the pool, all or none.
func (r *DevClaimReconciler) allocate(ctx context.Context, run *devRun) (ctrl.Result, error) {
	got, done, res, err := r.fill(ctx, run, nil, run.want.count)
	switch {
	case done && len(got) == run.want.count:
		return r.afterRound(ctx, run, got)
	case done:
		if err := r.releaseAll(ctx, run, got, "giving back a partial allocation"); err != nil {
			return ctrl.Result{}, err
		}
		return r.exhausted(ctx, run)
	}
	return res, err
}

// readopt: status names devices but no Reservation of the claim is known:
// take them again (409 with our uid: they were ours all along). handled
// false: they went to other claims; allocate afresh.
func (r *DevClaimReconciler) readopt(ctx context.Context, run *devRun) (ctrl.Result, bool, error) {
	var got []devHeld
	for _, id := range run.claim.Status.Devices {
		if run.dp.find(id) == nil {
			continue
		}
		holder, name, err := r.acquire(ctx, run, id)
		switch {
		case err == nil:
			got = append(got, devHeld{name, id, run.poolName})
		case err == errTaken:
			r.Recorder.Eventf(run.claim, nil, "Warning", reasonDeviceLost, "Reconcile",
				"%s was released outside the operator and is now held by DeviceClaim %s/%s; taking another device",
				id, holder.Spec.Claim.Namespace, holder.Spec.Claim.Name)
		case apierrors.IsConflict(err):
			return ctrl.Result{Requeue: true}, true, nil
		default:
			return ctrl.Result{}, true, fmt.Errorf("reserving the device status names: %w", err)
		}
	}
	if len(got) == 0 {
		return ctrl.Result{}, false, nil
	}
	res, err := r.afterRound(ctx, run, got)
	return res, true, err
}

// ---- the orphan sweep of device Reservations ----

type DevResvReconciler struct {
	client.Client
	APIReader client.Reader
	D         *devState
}

func (r *DevResvReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var rv Reservation
	if err := r.Get(ctx, req.NamespacedName, &rv); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if rv.Spec.Pool.Kind != kindDevicePool {
		return ctrl.Result{}, nil
	}
	// The cache shows it: it is no longer in flight.
	r.D.dropInflight(rv.Spec.Pool.Name, rv.Name)
	if !rv.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	key := types.NamespacedName{Namespace: rv.Spec.Claim.Namespace, Name: rv.Spec.Claim.Name}
	var claim DeviceClaim
	if err := r.Get(ctx, key, &claim); err == nil && string(claim.UID) == rv.Spec.Claim.UID {
		return ctrl.Result{RequeueAfter: resvResync}, nil
	} else if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	// Not in the cache (or another uid): ask the API server.
	err := r.APIReader.Get(ctx, key, &claim)
	if err == nil && string(claim.UID) == rv.Spec.Claim.UID {
		return ctrl.Result{RequeueAfter: resvResync}, nil
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	released, err := release(ctx, r.Client, r.APIReader, rv.Name, rv.Spec.Claim.UID)
	if err != nil {
		return ctrl.Result{}, err
	}
	if released {
		logf.FromContext(ctx).Info("freed an orphaned reservation", "reservation", rv.Name)
	}
	return ctrl.Result{}, nil
}
