package main

// The orphan sweep: a Reservation whose claim (by uid) is not in the cache is
// checked against the API server, and freed only when the claim is gone or
// has another uid. Every Reservation is looked at again every minute.

import (
	"context"
	"net/netip"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

const resvResync = 60 * time.Second

var reservationGR = schema.GroupResource{Group: "provisio.dev", Resource: "reservations"}

func parseAddr(s string) (netip.Addr, error) { return netip.ParseAddr(s) }

type ResvReconciler struct {
	client.Client
	APIReader client.Reader
	S         *shared
}

func (r *ResvReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var rv Reservation
	if err := r.Get(ctx, req.NamespacedName, &rv); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if rv.Spec.Pool.Kind != kindIPPool {
		return ctrl.Result{}, nil // the device domain's (device_claim.go)
	}
	// The cache shows it: it is no longer in flight.
	r.S.dropInflight(rv.Spec.Pool.Name, rv.Name)
	if !rv.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	key := types.NamespacedName{Namespace: rv.Spec.Claim.Namespace, Name: rv.Spec.Claim.Name}
	var claim IPClaim
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

type syncError struct{}

func (syncError) Error() string { return "the caches have not synced yet" }

var errNotSynced error = syncError{}
