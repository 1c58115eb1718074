package main

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

// patchFinalizer adds (add) or removes the finalizer fin on o with a merge
// patch carrying o's resourceVersion. An object already gone is not an
// error; conflict says the cache was stale (the caller requeues).
func patchFinalizer(ctx context.Context, c client.Client, o client.Object, fin string, add bool) (conflict bool, err error) {
	base := o.DeepCopyObject().(client.Object)
	if add {
		controllerutil.AddFinalizer(o, fin)
	} else {
		controllerutil.RemoveFinalizer(o, fin)
	}
	err = c.Patch(ctx, o, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
	switch {
	case err == nil || apierrors.IsNotFound(err):
		return false, nil
	case apierrors.IsConflict(err):
		return true, nil
	}
	return false, err
}

// reservationsLeft asks the API server (not the cache, which may lag)
// whether any Reservation of the pool kind/name is left.
func reservationsLeft(ctx context.Context, reader client.Reader, kind, pool string) (bool, error) {
	var left ReservationList
	err := reader.List(ctx, &left, client.MatchingLabels{labelPoolKind: kind, labelPool: pool}, client.Limit(1))
	return len(left.Items) > 0, err
}
