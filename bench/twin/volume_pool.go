package main

// The StoragePool reconciler ("storagepool", provisio's vol_domain.c): the
// finalizer (kept while any Reservation of the pool exists, the API server
// asked before it goes); the ledger (volume_model.go: rebuilt by a recount
// when the status has none, recounted from a consistent LIST when the
// cached Reservations say something was freed, at most once per pool every
// 2 s); Ready from the node agent's report and the Node; the waiting
// Volumes admitted (volume_state.go); and the status, written by a PUT at
// the cached resourceVersion: the ledger's compare-and-swap. Reconciles come
// back by themselves when the agent's report would turn stale or an
// admission could be dropped.

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

const (
	idxVolResvPool = "storagepool.spec.pool.name" // Reservations of StoragePools
	idxSPNode      = "spec.nodeName"              // StoragePools
	idxVolWaiting  = "waiting"                    // Volumes placed nowhere yet: ""
)

type StoragePoolReconciler struct {
	client.Client
	APIReader client.Reader
	V         *volState
}

// volPoolReservations: the cached Reservations of a StoragePool (read-only).
func volPoolReservations(ctx context.Context, c client.Reader, pool string) ([]Reservation, error) {
	var list ReservationList
	if err := c.List(ctx, &list, client.MatchingFields{idxVolResvPool: pool}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// heldOf: the valid bytes and count of the pool's cached Reservations, and
// which admissions they show landed.
func heldOf(items []Reservation) (int64, int64, landedFn) {
	var bytes, count int64
	type key struct {
		uid   string
		until int64
	}
	landed := make(map[key]bool, len(items))
	for i := range items {
		rv := &items[i]
		if rv.Spec.Slot == "" || rv.Spec.AdmittedUntil == nil || rv.CreationTimestamp.IsZero() {
			continue // not ours to count: the schema requires all of it
		}
		v := viewResv(rv)
		if v.valid {
			bytes += v.bytes
			count++
		}
		landed[key{rv.Spec.Slot, v.until}] = true
	}
	return bytes, count, func(uid string, until int64) bool { return landed[key{uid, until}] }
}

func (r *StoragePoolReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var p StoragePool
	if err := r.Get(ctx, req.NamespacedName, &p); err != nil {
		if apierrors.IsNotFound(err) {
			r.V.recountForget(req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	items, err := volPoolReservations(ctx, r.Client, p.Name)
	if err != nil {
		return ctrl.Result{}, err
	}
	if !p.DeletionTimestamp.IsZero() {
		return r.deleting(ctx, &p, len(items))
	}
	if !controllerutil.ContainsFinalizer(&p, finalizer) {
		if conflict, err := patchFinalizer(ctx, r.Client, &p, finalizer, true); err != nil || conflict {
			return ctrl.Result{Requeue: conflict}, err
		}
		return ctrl.Result{}, nil // the watch brings the pool back with it
	}

	nowT := time.Now()
	now := nowT.Unix()
	heldBytes, volumes, landed := heldOf(items)
	again := volRecheckMax
	l, why := readLedger(&p)
	var cond metav1.ConditionStatus
	var reason, msg string
	if l == nil {
		cond, reason, msg = metav1.ConditionFalse, reasonInvalidSpec, why
	} else if l.recountDue(heldBytes, landed) || l.expired(now) {
		if ok, wait := r.V.recountAllowed(p.Name, nowT); ok {
			if err := r.recount(ctx, p.Name, l); err != nil {
				return ctrl.Result{}, fmt.Errorf("recounting StoragePool %s: %w", p.Name, err)
			}
		} else if wait < again {
			again = wait
		}
	}
	if l != nil {
		// Admissions the cache shows landed leave the ledger with this write.
		l.forgetLanded(landed)
	}
	rep := poolReport(&p, now)
	if cond == "" {
		var node corev1.Node
		var np *corev1.Node
		if err := r.Get(ctx, types.NamespacedName{Name: p.Spec.NodeName}, &node); err == nil {
			np = &node
		} else if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
		cond, reason, msg = poolReadiness(&p, nodeStateOf(np), rep)
	}
	st := poolStatus(&p, l, volumes, rep, cond, reason, msg)

	// This process's waiting Volumes, admitted in the same write (only into
	// a Ready pool with a ledger).
	var in, out []volBatchItem
	if l != nil && l.known && cond == metav1.ConditionTrue {
		in, out = r.V.admitBatch(p.Name, l, now, func(w *volWaiter) bool {
			var v Volume
			if err := r.Get(ctx, types.NamespacedName{Namespace: w.ns, Name: w.name}, &v); err != nil {
				return !apierrors.IsNotFound(err) // kept on other errors: the next round looks again
			}
			return string(v.UID) == w.uid && v.DeletionTimestamp.IsZero()
		})
		if len(in)+len(out) > 0 {
			l.write(&st)
		}
	}
	if !equality.Semantic.DeepEqual(p.Status, st) {
		p.Status = st
		if err := r.Status().Update(ctx, &p); err != nil {
			switch {
			case apierrors.IsConflict(err) && len(in) > 0:
				// Lost the race: again at once, from a fresher cache.
				return ctrl.Result{RequeueAfter: 10 * time.Millisecond}, nil
			case apierrors.IsConflict(err):
				return ctrl.Result{Requeue: true}, nil
			case !apierrors.IsNotFound(err):
				return ctrl.Result{}, fmt.Errorf("writing the StoragePool status: %w", err)
			}
		}
	}
	r.V.admitCommit(p.Name, in, out)

	// Come back when the agent's report turns stale, and when an admission
	// can be dropped.
	if rep.fresh {
		if d := time.Duration(rep.heartbeat+agentStale+1-now) * time.Second; d < again {
			again = d
		}
	}
	if l != nil {
		for _, a := range l.inflight {
			if d := time.Duration(a.until+admitGrace+1-now) * time.Second; d < again {
				again = d
			}
		}
	}
	if again < 100*time.Millisecond {
		again = 100 * time.Millisecond
	}
	return ctrl.Result{RequeueAfter: again}, nil
}

// recount l from a consistent LIST of the pool's Reservations (pages of
// 500); t0 is taken before the request goes out.
func (r *StoragePoolReconciler) recount(ctx context.Context, pool string, l *ledger) error {
	t0 := time.Now().Unix()
	var listed []listedResv
	cont := ""
	for {
		var list ReservationList
		opts := []client.ListOption{client.MatchingLabels{labelPoolKind: kindStoragePool, labelPool: pool}, client.Limit(500)}
		if cont != "" {
			opts = append(opts, client.Continue(cont))
		}
		if err := r.APIReader.List(ctx, &list, opts...); err != nil {
			return err
		}
		for i := range list.Items {
			rv := &list.Items[i]
			if rv.Spec.Slot == "" || rv.Spec.AdmittedUntil == nil || rv.CreationTimestamp.IsZero() {
				continue
			}
			listed = append(listed, listedResv{uid: rv.Spec.Slot, bytes: rv.Spec.Bytes,
				created: rv.CreationTimestamp.Unix(), until: rv.Spec.AdmittedUntil.Unix()})
		}
		if cont = list.Continue; cont == "" {
			break
		}
	}
	l.recount(listed, t0)
	return nil
}

// deleting: the finalizer goes once nothing of the pool is held (the API
// server asked when the cache shows nothing); until then Ready=False
// Terminating.
func (r *StoragePoolReconciler) deleting(ctx context.Context, p *StoragePool, nHeld int) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(p, finalizer) {
		return ctrl.Result{}, nil
	}
	if nHeld == 0 {
		left, err := reservationsLeft(ctx, r.APIReader, kindStoragePool, p.Name)
		if err != nil {
			return ctrl.Result{}, err
		}
		if left {
			return ctrl.Result{RequeueAfter: time.Second}, nil // the cache does not show it yet
		}
		if conflict, err := patchFinalizer(ctx, r.Client, p, finalizer, false); err != nil || conflict {
			return ctrl.Result{Requeue: conflict}, err
		}
		r.V.recountForget(p.Name)
		return ctrl.Result{}, nil
	}
	st := p.Status
	st.Conditions = copyConditions(p.Status.Conditions)
	st.ObservedGeneration = p.Generation
	setCond(&st.Conditions, p.Generation, condReady, metav1.ConditionFalse, reasonPoolTerminate,
		fmt.Sprintf("StoragePool %s is being deleted; it stays until the %d volume(s) placed in it are deleted and their directories removed", p.Name, nHeld))
	if !equality.Semantic.DeepEqual(p.Status, st) {
		p.Status = st
		if err := r.Status().Update(ctx, p); err != nil {
			if apierrors.IsConflict(err) {
				return ctrl.Result{Requeue: true}, nil
			}
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
	}
	return ctrl.Result{RequeueAfter: 5 * time.Second}, nil
}
