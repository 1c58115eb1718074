package main

// The device domain's controllers, indexes and watches, registered by main
// beside the IP ones: deviceclaim, devicepool, devicereservation (the orphan
// sweep) and devicenode, as provisio names them.

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

type rlQueue = workqueue.TypedRateLimitingInterface[reconcile.Request]

func isKind(kind string) predicate.Funcs {
	return predicate.NewPredicateFuncs(func(o client.Object) bool {
		rv, ok := o.(*Reservation)
		return ok && rv.Spec.Pool.Kind == kind
	})
}

func setupDeviceIndexes(ctx context.Context, mgr ctrl.Manager) error {
	fi := mgr.GetFieldIndexer()
	if err := fi.IndexField(ctx, &Reservation{}, idxDevResvPool, func(o client.Object) []string {
		rv := o.(*Reservation)
		if rv.Spec.Pool.Kind != kindDevicePool {
			return nil
		}
		return []string{rv.Spec.Pool.Name}
	}); err != nil {
		return err
	}
	if err := fi.IndexField(ctx, &DevicePool{}, idxDevPoolResource, func(o client.Object) []string {
		return []string{o.(*DevicePool).Spec.ResourceName}
	}); err != nil {
		return err
	}
	if err := fi.IndexField(ctx, &DevicePool{}, idxDevPoolNode, func(o client.Object) []string {
		return []string{o.(*DevicePool).Spec.NodeName}
	}); err != nil {
		return err
	}
	return fi.IndexField(ctx, &DeviceClaim{}, idxDevClaimWaiting, func(o client.Object) []string {
		cl := o.(*DeviceClaim)
		if meta.IsStatusConditionTrue(cl.Status.Conditions, condReady) {
			return nil
		}
		return []string{cl.Spec.ResourceName}
	})
}

// devClaimRequests: the DeviceClaims an index maps to value.
func devClaimRequests(ctx context.Context, c client.Client, index, value string) []reconcile.Request {
	var list DeviceClaimList
	if err := c.List(ctx, &list, client.MatchingFields{index: value}, client.UnsafeDisableDeepCopy); err != nil {
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: list.Items[i].Namespace, Name: list.Items[i].Name}})
	}
	return out
}

func claimOf(rv *Reservation) reconcile.Request {
	return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: rv.Spec.Claim.Namespace, Name: rv.Spec.Claim.Name}}
}

func setupDevices(ctx context.Context, mgr ctrl.Manager, s *shared, copts controller.Options) error {
	if err := setupDeviceIndexes(ctx, mgr); err != nil {
		return err
	}
	c := mgr.GetClient()
	d := newDevState()
	nodes := newDevNodeReconciler(c)
	claims := &DevClaimReconciler{Client: c, APIReader: mgr.GetAPIReader(),
		Recorder: mgr.GetEventRecorder("provisio-twin"), S: s, D: d}
	pools := &DevPoolReconciler{Client: c, APIReader: mgr.GetAPIReader(),
		Recorder: mgr.GetEventRecorder("provisio-twin"), S: s, D: d, Nodes: nodes}
	resv := &DevResvReconciler{Client: c, APIReader: mgr.GetAPIReader(), D: d}

	// Claims: their own events; a pool created, deleted, or whose spec or
	// deletion changed wakes the waiting claims of its resource and those
	// holding its devices; a Reservation created enqueues its claim, one
	// deleted its claim and the waiting claims of the pool's resource.
	poolWake := func(ctx context.Context, p *DevicePool, q rlQueue) {
		for _, r := range devClaimRequests(ctx, c, idxDevClaimWaiting, p.Spec.ResourceName) {
			q.Add(r)
		}
		items, err := poolReservations(ctx, c, p.Name)
		if err != nil {
			return
		}
		for i := range items {
			q.Add(claimOf(&items[i]))
		}
	}
	err := ctrl.NewControllerManagedBy(mgr).Named("deviceclaim").For(&DeviceClaim{}).
		Watches(&DevicePool{}, handler.TypedFuncs[client.Object, reconcile.Request]{
			CreateFunc: func(ctx context.Context, e event.TypedCreateEvent[client.Object], q rlQueue) {
				poolWake(ctx, e.Object.(*DevicePool), q)
			},
			UpdateFunc: func(ctx context.Context, e event.TypedUpdateEvent[client.Object], q rlQueue) {
				o, n := e.ObjectOld.(*DevicePool), e.ObjectNew.(*DevicePool)
				if o.Generation != n.Generation || o.UID != n.UID ||
					o.DeletionTimestamp.IsZero() != n.DeletionTimestamp.IsZero() {
					poolWake(ctx, n, q)
				}
			},
			DeleteFunc: func(ctx context.Context, e event.TypedDeleteEvent[client.Object], q rlQueue) {
				if p, ok := e.Object.(*DevicePool); ok {
					poolWake(ctx, p, q)
				}
			},
		}).
		Watches(&Reservation{}, handler.TypedFuncs[client.Object, reconcile.Request]{
			CreateFunc: func(ctx context.Context, e event.TypedCreateEvent[client.Object], q rlQueue) {
				q.Add(claimOf(e.Object.(*Reservation)))
			},
			DeleteFunc: func(ctx context.Context, e event.TypedDeleteEvent[client.Object], q rlQueue) {
				rv, ok := e.Object.(*Reservation)
				if !ok {
					return
				}
				q.Add(claimOf(rv))
				var p DevicePool
				if err := c.Get(ctx, types.NamespacedName{Name: rv.Spec.Pool.Name}, &p); err == nil {
					for _, r := range devClaimRequests(ctx, c, idxDevClaimWaiting, p.Spec.ResourceName) {
						q.Add(r)
					}
				}
			},
		}, builder.WithPredicates(isKind(kindDevicePool))).
		WithOptions(copts).Complete(claims)
	if err != nil {
		return err
	}

	// Pools: their own events; every device Reservation created or deleted.
	err = ctrl.NewControllerManagedBy(mgr).Named("devicepool").For(&DevicePool{}).
		Watches(&Reservation{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: o.(*Reservation).Spec.Pool.Name}}}
		}), builder.WithPredicates(isKind(kindDevicePool), predicate.Funcs{UpdateFunc: func(event.UpdateEvent) bool { return false }})).
		WithOptions(copts).Complete(pools)
	if err != nil {
		return err
	}

	// Reservations: the orphan sweep; a claim deleted maps to its Reservations.
	err = ctrl.NewControllerManagedBy(mgr).Named("devicereservation").For(&Reservation{},
		builder.WithPredicates(isKind(kindDevicePool), predicate.Funcs{UpdateFunc: func(event.UpdateEvent) bool { return false }})).
		Watches(&DeviceClaim{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			var list ReservationList
			if err := c.List(ctx, &list, client.MatchingFields{idxResvClaimUID: string(o.GetUID())}); err != nil {
				return nil
			}
			out := make([]reconcile.Request, 0, len(list.Items))
			for i := range list.Items {
				out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: list.Items[i].Name}})
			}
			return out
		}), builder.WithPredicates(predicate.Funcs{
			CreateFunc: func(event.CreateEvent) bool { return false },
			UpdateFunc: func(event.UpdateEvent) bool { return false },
		})).
		WithOptions(copts).Complete(resv)
	if err != nil {
		return err
	}

	// Nodes: their own events; every event of one of their pools (a pool
	// that stops publishing, or goes, leaves its resource to take off).
	nodeOf := func(p *DevicePool) reconcile.Request {
		return reconcile.Request{NamespacedName: types.NamespacedName{Name: p.Spec.NodeName}}
	}
	return ctrl.NewControllerManagedBy(mgr).Named("devicenode").For(&corev1.Node{}).
		Watches(&DevicePool{}, handler.TypedFuncs[client.Object, reconcile.Request]{
			CreateFunc: func(ctx context.Context, e event.TypedCreateEvent[client.Object], q rlQueue) {
				q.Add(nodeOf(e.Object.(*DevicePool)))
			},
			UpdateFunc: func(ctx context.Context, e event.TypedUpdateEvent[client.Object], q rlQueue) {
				o, n := e.ObjectOld.(*DevicePool), e.ObjectNew.(*DevicePool)
				if liveCapacity(o) && !liveCapacity(n) {
					nodes.addGone(o.Spec.NodeName, o.Spec.ResourceName)
				}
				q.Add(nodeOf(n))
			},
			DeleteFunc: func(ctx context.Context, e event.TypedDeleteEvent[client.Object], q rlQueue) {
				p, ok := e.Object.(*DevicePool)
				if !ok {
					return
				}
				if publishesCapacity(p) {
					nodes.addGone(p.Spec.NodeName, p.Spec.ResourceName)
				}
				q.Add(nodeOf(p))
			},
		}).
		WithOptions(copts).Complete(nodes)
}
