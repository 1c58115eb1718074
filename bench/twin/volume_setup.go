package main

// The volume domain's controllers, indexes and watches, registered by main
// beside the IP and device ones: storagepool, volume and volumereservation
// (the orphan sweep), as provisio names them. The node half (directories,
// their status on the Reservation, the pools' status.agent) is provisio's own
// node agent (`provisio agent`), which the twin does not replace.

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

func setupVolumeIndexes(ctx context.Context, mgr ctrl.Manager) error {
	fi := mgr.GetFieldIndexer()
	if err := fi.IndexField(ctx, &Reservation{}, idxVolResvPool, func(o client.Object) []string {
		rv := o.(*Reservation)
		if rv.Spec.Pool.Kind != kindStoragePool {
			return nil
		}
		return []string{rv.Spec.Pool.Name}
	}); err != nil {
		return err
	}
	if err := fi.IndexField(ctx, &StoragePool{}, idxSPNode, func(o client.Object) []string {
		return []string{o.(*StoragePool).Spec.NodeName}
	}); err != nil {
		return err
	}
	return fi.IndexField(ctx, &Volume{}, idxVolWaiting, func(o client.Object) []string {
		if o.(*Volume).Status.Pool != "" {
			return nil
		}
		return []string{""}
	})
}

func setupVolumes(ctx context.Context, mgr ctrl.Manager, copts controller.Options) error {
	if err := setupVolumeIndexes(ctx, mgr); err != nil {
		return err
	}
	c := mgr.GetClient()
	v := newVolState()
	pools := &StoragePoolReconciler{Client: c, APIReader: mgr.GetAPIReader(), V: v}
	vols := &VolumeReconciler{Client: c, APIReader: mgr.GetAPIReader(),
		Recorder: mgr.GetEventRecorder("provisio-twin"), V: v}
	sweep := &VolResvReconciler{Client: c, APIReader: mgr.GetAPIReader()}

	// Pools: their own events; every event of a Reservation of the pool; a
	// Node's events wake the pools on it; a Volume that waits for an
	// admission wakes its pool (a channel).
	err := ctrl.NewControllerManagedBy(mgr).Named("storagepool").For(&StoragePool{}).
		Watches(&Reservation{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: o.(*Reservation).Spec.Pool.Name}}}
		}), builder.WithPredicates(isKind(kindStoragePool))).
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			var list StoragePoolList
			if err := c.List(ctx, &list, client.MatchingFields{idxSPNode: o.GetName()}, client.UnsafeDisableDeepCopy); err != nil {
				return nil
			}
			out := make([]reconcile.Request, 0, len(list.Items))
			for i := range list.Items {
				out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: list.Items[i].Name}})
			}
			return out
		})).
		WatchesRawSource(source.Channel(v.toPools, &handler.EnqueueRequestForObject{})).
		WithOptions(copts).Complete(pools)
	if err != nil {
		return err
	}

	// Volumes: their own events; every event of one of their Reservations;
	// a pool's events wake the Volumes placed nowhere yet; a PV's events its
	// claimRef's Volume, a PVC's the Volume of its name; an admission wakes
	// the Volume (a channel).
	err = ctrl.NewControllerManagedBy(mgr).Named("volume").For(&Volume{}).
		Watches(&Reservation{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			rv := o.(*Reservation)
			if rv.Spec.Claim.Kind != kindVolume {
				return nil
			}
			return []reconcile.Request{claimOf(rv)}
		}), builder.WithPredicates(isKind(kindStoragePool))).
		Watches(&StoragePool{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			var list VolumeList
			if err := c.List(ctx, &list, client.MatchingFields{idxVolWaiting: ""}, client.UnsafeDisableDeepCopy); err != nil {
				return nil
			}
			out := make([]reconcile.Request, 0, len(list.Items))
			for i := range list.Items {
				out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: list.Items[i].Namespace, Name: list.Items[i].Name}})
			}
			return out
		})).
		Watches(&corev1.PersistentVolume{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			ref := o.(*corev1.PersistentVolume).Spec.ClaimRef
			if ref == nil || ref.Namespace == "" || ref.Name == "" {
				return nil
			}
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}}}
		})).
		Watches(&corev1.PersistentVolumeClaim{}, &handler.EnqueueRequestForObject{}).
		WatchesRawSource(source.Channel(v.toVolumes, &handler.EnqueueRequestForObject{})).
		WithOptions(copts).Complete(vols)
	if err != nil {
		return err
	}

	// The orphan sweep: every StoragePool Reservation when it changes, and
	// again every minute.
	return ctrl.NewControllerManagedBy(mgr).Named("volumereservation").
		For(&Reservation{}, builder.WithPredicates(isKind(kindStoragePool))).
		WithOptions(copts).Complete(sweep)
}
