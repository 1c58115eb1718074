// provisio-twin: provisio's IPPool/IPClaim, DevicePool/DeviceClaim and
// StoragePool/Volume reconcilers written as a kubebuilder user would, on
// controller-runtime, for bench/run-twin-bench. It serves the same CRDs with
// the same semantics and the same writes (API.md "Network", "Devices" and
// "Volumes", src/reconcilers/; the volumes' node half is provisio's own
// node agent),
// so the two can be measured on one control plane. Not a product: no
// webhooks; README.md says what it leaves out.
package main

import (
	"context"
	"flag"
	"net/http"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

func main() {
	var metricsAddr, probeAddr, leNamespace string
	var leaderElect bool
	var workers int
	// --kubeconfig is registered by controller-runtime's config package.
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "address of the metrics endpoint (HTTP); 0 disables it")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	flag.BoolVar(&leaderElect, "leader-elect", false, "run only while holding the Lease")
	flag.StringVar(&leNamespace, "leader-election-namespace", "", "namespace of the Lease (default: the pod's, else default)")
	flag.IntVar(&workers, "max-concurrent-reconciles", 8, "workers per controller")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")

	scheme := runtime.NewScheme()
	must(clientgoscheme.AddToScheme(scheme))
	must(addKnownTypes(scheme))
	must(addDeviceTypes(scheme))
	must(addVolumeTypes(scheme))

	if leaderElect && leNamespace == "" {
		if _, err := os.Stat("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err != nil {
			leNamespace = "default"
		}
	}
	// One Reservation informer for the three domains: the IP, device and
	// storage kinds.
	kinds, err := labels.NewRequirement(labelPoolKind, selection.In, []string{kindIPPool, kindDevicePool, kindStoragePool})
	must(err)
	resvSel := labels.NewSelector().Add(*kinds)
	// PersistentVolumes: only those made for Volumes (as provisio's informer).
	ours, err := labels.NewRequirement(labelVolumeUID, selection.Exists, nil)
	must(err)
	pvSel := labels.NewSelector().Add(*ours)
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:        probeAddr,
		LeaderElection:                leaderElect,
		LeaderElectionID:              "provisio-twin.provisio.dev",
		LeaderElectionNamespace:       leNamespace,
		LeaderElectionReleaseOnCancel: true,
		Cache: cache.Options{
			DefaultTransform: cache.TransformStripManagedFields(),
			ByObject: map[client.Object]cache.ByObject{
				&Reservation{}:             {Label: resvSel},
				&corev1.PersistentVolume{}: {Label: pvSel},
			},
		},
	})
	if err != nil {
		log.Error(err, "creating the manager")
		os.Exit(1)
	}
	ctx := ctrl.SetupSignalHandler()
	must(setupIndexes(ctx, mgr))

	s := newShared()
	copts := controller.Options{MaxConcurrentReconciles: workers}
	claims := &ClaimReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(),
		Recorder: mgr.GetEventRecorder("provisio-twin"), S: s}
	pools := &PoolReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(),
		Recorder: mgr.GetEventRecorder("provisio-twin"), S: s, lastWrite: map[string]time.Time{}}
	resv := &ResvReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), S: s}
	c := mgr.GetClient()

	// Claims: their own events; a pool created, deleted, or whose spec or
	// deletion changed (not its status) enqueues all its claims; a
	// Reservation created enqueues its claim, one deleted its claim and the
	// claims of the pool still waiting for an address.
	poolSpecChanged := predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			return e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() ||
				!e.ObjectOld.GetDeletionTimestamp().Equal(e.ObjectNew.GetDeletionTimestamp())
		},
	}
	must(ctrl.NewControllerManagedBy(mgr).Named("ipclaim").For(&IPClaim{}).
		Watches(&IPPool{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return claimRequests(ctx, c, idxClaimPool, o.GetName())
		}), builder.WithPredicates(poolSpecChanged)).
		Watches(&Reservation{}, handler.TypedFuncs[client.Object, reconcile.Request]{
			CreateFunc: func(ctx context.Context, e event.TypedCreateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				rv := e.Object.(*Reservation)
				q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: rv.Spec.Claim.Namespace, Name: rv.Spec.Claim.Name}})
			},
			DeleteFunc: func(ctx context.Context, e event.TypedDeleteEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				rv, ok := e.Object.(*Reservation)
				if !ok {
					return
				}
				q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: rv.Spec.Claim.Namespace, Name: rv.Spec.Claim.Name}})
				for _, r := range claimRequests(ctx, c, idxClaimWaiting, rv.Spec.Pool.Name) {
					q.Add(r)
				}
			},
		}, builder.WithPredicates(isKind(kindIPPool))).
		WithOptions(copts).Complete(claims))

	// Pools: their own events; every Reservation created or deleted (counts).
	must(ctrl.NewControllerManagedBy(mgr).Named("ippool").For(&IPPool{}).
		Watches(&Reservation{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: o.(*Reservation).Spec.Pool.Name}}}
		}), builder.WithPredicates(isKind(kindIPPool), predicate.Funcs{UpdateFunc: func(event.UpdateEvent) bool { return false }})).
		WithOptions(copts).Complete(pools))

	// Reservations: the orphan sweep; a claim deleted maps to its Reservations.
	must(ctrl.NewControllerManagedBy(mgr).Named("ipreservation").For(&Reservation{},
		builder.WithPredicates(isKind(kindIPPool), predicate.Funcs{UpdateFunc: func(event.UpdateEvent) bool { return false }})).
		Watches(&IPClaim{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
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
		WithOptions(copts).Complete(resv))

	// The device domain: deviceclaim, devicepool, devicereservation, devicenode.
	must(setupDevices(ctx, mgr, s, copts))

	// The volume domain: storagepool, volume, volumereservation.
	must(setupVolumes(ctx, mgr, copts))

	must(mgr.AddHealthzCheck("healthz", healthz.Ping))
	must(mgr.AddReadyzCheck("readyz", func(_ *http.Request) error {
		cctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if !mgr.GetCache().WaitForCacheSync(cctx) {
			return errNotSynced
		}
		return nil
	}))

	log.Info("starting", "max-concurrent-reconciles", workers, "leader-elect", leaderElect)
	if err := mgr.Start(ctx); err != nil {
		log.Error(err, "manager")
		os.Exit(1)
	}
}

func must(err error) {
	if err != nil {
		ctrl.Log.Error(err, "setup")
		os.Exit(1)
	}
}

// claimRequests: the claims an index maps to value.
func claimRequests(ctx context.Context, c client.Client, index, value string) []reconcile.Request {
	var list IPClaimList
	if err := c.List(ctx, &list, client.MatchingFields{index: value}, client.UnsafeDisableDeepCopy); err != nil {
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: list.Items[i].Namespace, Name: list.Items[i].Name}})
	}
	return out
}

const idxClaimRequested = "requested.spec.pool" // spec.pool of claims with spec.address

func setupIndexes(ctx context.Context, mgr ctrl.Manager) error {
	fi := mgr.GetFieldIndexer()
	if err := fi.IndexField(ctx, &Reservation{}, idxResvClaimUID, func(o client.Object) []string {
		return []string{o.(*Reservation).Spec.Claim.UID}
	}); err != nil {
		return err
	}
	if err := fi.IndexField(ctx, &Reservation{}, idxResvPool, func(o client.Object) []string {
		rv := o.(*Reservation)
		if rv.Spec.Pool.Kind != kindIPPool {
			return nil // an IPPool's count: a DevicePool may have its name
		}
		return []string{rv.Spec.Pool.Name}
	}); err != nil {
		return err
	}
	if err := fi.IndexField(ctx, &IPClaim{}, idxClaimPool, func(o client.Object) []string {
		return []string{o.(*IPClaim).Spec.Pool}
	}); err != nil {
		return err
	}
	if err := fi.IndexField(ctx, &IPClaim{}, idxClaimWaiting, func(o client.Object) []string {
		cl := o.(*IPClaim)
		if meta.IsStatusConditionTrue(cl.Status.Conditions, condReady) {
			return nil
		}
		return []string{cl.Spec.Pool}
	}); err != nil {
		return err
	}
	return fi.IndexField(ctx, &IPClaim{}, idxClaimRequested, func(o client.Object) []string {
		cl := o.(*IPClaim)
		if cl.Spec.Address == "" {
			return nil
		}
		return []string{cl.Spec.Pool}
	})
}
