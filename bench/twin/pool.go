package main

// The IPPool reconciler: finalizer, status total/allocated/available counted
// from the pool's Reservations in the cache, Ready Valid or InvalidSpec;
// deleting a pool waits (Ready=False Terminating, naming holders) until no
// Reservation of it is left, then removes the finalizer.

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

const (
	poolWriteInterval = 500 * time.Millisecond // between count-only status writes
	holdersShown      = 5
)

type PoolReconciler struct {
	client.Client
	APIReader client.Reader
	Recorder  events.EventRecorder
	S         *shared

	mu        sync.Mutex
	lastWrite map[string]time.Time
}

func (r *PoolReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var p IPPool
	if err := r.Get(ctx, req.NamespacedName, &p); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if r.S.isStale(p.UID, p.ResourceVersion) {
		return ctrl.Result{}, nil
	}
	deleting := !p.DeletionTimestamp.IsZero()
	// Only the counts can change (same spec, not deleting, already Valid):
	// space the writes out before counting anything.
	if !deleting && controllerutil.ContainsFinalizer(&p, finalizer) && p.Status.ObservedGeneration == p.Generation {
		if c := meta.FindStatusCondition(p.Status.Conditions, condReady); c != nil && c.Reason == "Valid" {
			if wait := r.wait(p.Name); wait > 0 {
				return ctrl.Result{RequeueAfter: wait}, nil
			}
		}
	}
	if deleting {
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
	ipool, perr := parsePool(&p.Spec)
	allocated, inPool, err := r.count(ctx, p.Name, ipool)
	if err != nil {
		return ctrl.Result{}, err
	}
	st := p.Status
	st.Conditions = copyConditions(st.Conditions)
	st.Allocated = allocated
	if perr != nil {
		st.Total, st.Available = 0, 0
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: condReady, Status: metav1.ConditionFalse,
			Reason: "InvalidSpec", Message: perr.Error(), ObservedGeneration: p.Generation})
	} else {
		st.Total = ipool.totalInt64()
		st.Available = max(st.Total-inPool, 0)
		msg := "the spec is valid"
		if !ipool.total.IsInt64() {
			msg = fmt.Sprintf("the spec is valid; the pool has %s addresses, more than status.total can show: total and available are capped at %d", ipool.total, st.Total)
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: condReady, Status: metav1.ConditionTrue,
			Reason: "Valid", Message: msg, ObservedGeneration: p.Generation})
	}
	return r.writeStatus(ctx, &p, st)
}

func (r *PoolReconciler) wait(name string) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	last, ok := r.lastWrite[name]
	if !ok {
		return 0
	}
	return poolWriteInterval - time.Since(last)
}

// count: the pool's Reservations in the cache (allocated) and how many of
// them are allocatable addresses of its current spec.
func (r *PoolReconciler) count(ctx context.Context, name string, p *pool) (int64, int64, error) {
	var list ReservationList
	if err := r.List(ctx, &list, client.MatchingFields{idxResvPool: name}, client.UnsafeDisableDeepCopy); err != nil {
		return 0, 0, err
	}
	var in int64
	for i := range list.Items {
		if p == nil {
			break
		}
		if a, err := parseAddr(list.Items[i].Spec.Slot); err == nil {
			if why, _ := p.check(a); why == "" {
				in++
			}
		}
	}
	return int64(len(list.Items)), in, nil
}

func (r *PoolReconciler) writeStatus(ctx context.Context, p *IPPool, st IPPoolStatus) (ctrl.Result, error) {
	st.ObservedGeneration = p.Generation
	if equality.Semantic.DeepEqual(p.Status, st) {
		return ctrl.Result{}, nil
	}
	old := meta.FindStatusCondition(p.Status.Conditions, condReady)
	nw := meta.FindStatusCondition(st.Conditions, condReady)
	if old != nil && nw != nil && old.Status == nw.Status && old.Reason == nw.Reason && old.Message == nw.Message {
		if wait := r.wait(p.Name); wait > 0 {
			return ctrl.Result{RequeueAfter: wait}, nil
		}
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
	r.mu.Lock()
	r.lastWrite[p.Name] = time.Now()
	r.mu.Unlock()
	// Events for trouble and for the recovery from it, not for every new pool.
	ok := nw.Status == metav1.ConditionTrue
	wasOK := old == nil || old.Status == metav1.ConditionTrue
	moved := old == nil || old.Status != nw.Status || old.Reason != nw.Reason
	if moved && (!ok || !wasOK) {
		typ := "Normal"
		if !ok {
			typ = "Warning"
		}
		r.Recorder.Eventf(p, nil, typ, nw.Reason, "Reconcile", "%s", nw.Message)
	}
	return ctrl.Result{}, nil
}

func (r *PoolReconciler) deleting(ctx context.Context, p *IPPool) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(p, finalizer) {
		return ctrl.Result{}, nil
	}
	var list ReservationList
	if err := r.List(ctx, &list, client.MatchingFields{idxResvPool: p.Name}, client.UnsafeDisableDeepCopy); err != nil {
		return ctrl.Result{}, err
	}
	nHeld := len(list.Items)
	for name := range r.S.inflightOf(p.Name) {
		var rv Reservation
		if err := r.Get(ctx, client.ObjectKey{Name: name}, &rv); err != nil {
			nHeld++ // created by us, not in the cache yet
		}
	}
	if nHeld == 0 {
		left, err := reservationsLeft(ctx, r.APIReader, kindIPPool, p.Name)
		if err != nil {
			return ctrl.Result{}, err
		}
		if left {
			return ctrl.Result{RequeueAfter: time.Second}, nil
		}
		if conflict, err := patchFinalizer(ctx, r.Client, p, finalizer, false); err != nil || conflict {
			return ctrl.Result{Requeue: conflict}, err
		}
		return ctrl.Result{}, nil
	}
	names := make([]string, 0, len(list.Items))
	byName := map[string]*Reservation{}
	for i := range list.Items {
		names = append(names, list.Items[i].Name)
		byName[list.Items[i].Name] = &list.Items[i]
	}
	sort.Strings(names)
	var shown []string
	for _, n := range names[:min(holdersShown, len(names))] {
		rv := byName[n]
		shown = append(shown, fmt.Sprintf("%s/%s %s", rv.Spec.Claim.Namespace, rv.Spec.Claim.Name, rv.Spec.Slot))
	}
	noun := "addresses are"
	if nHeld == 1 {
		noun = "address is"
	}
	var msg string
	if more := nHeld - len(shown); more > 0 {
		msg = fmt.Sprintf("%d %s still held by claims: %s and %d more; the IPPool is deleted once they are released",
			nHeld, noun, strings.Join(shown, ", "), more)
	} else {
		msg = fmt.Sprintf("%d %s still held by claims: %s; the IPPool is deleted once they are released",
			nHeld, noun, strings.Join(shown, ", "))
	}
	ipool, _ := parsePool(&p.Spec)
	allocated, inPool, _ := r.count(ctx, p.Name, ipool)
	st := p.Status
	st.Conditions = copyConditions(st.Conditions)
	st.Allocated = allocated
	if ipool != nil {
		st.Total = ipool.totalInt64()
		st.Available = max(st.Total-inPool, 0)
	}
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: condReady, Status: metav1.ConditionFalse,
		Reason: "Terminating", Message: msg, ObservedGeneration: p.Generation})
	return r.writeStatus(ctx, p, st)
}
