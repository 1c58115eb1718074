package main

// The devicenode reconciler (publish: NodeCapacity): a node's
// status.capacity[resourceName] is the healthy devices of its NodeCapacity
// DevicePools and status.allocatable[resourceName] the healthy devices no
// claim holds, summed over the node's pools of one resource, read from the
// pools' status (capacity, available). Keyed by node; runs when the node or
// one of its pools changes. A key goes when no live NodeCapacity pool of
// the node publishes it any more (remembered from the pool's update or
// delete event until the patch succeeds) and, synchronously, before a
// deleted pool's finalizer goes (finalizePool). Writes are merge patches of
// nodes/status with only the keys concerned; a patch that only changes
// numbers comes at most once a second per node.

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

type DevNodeReconciler struct {
	client.Client

	mu        sync.Mutex
	gone      map[string]map[string]bool // node -> resource names to take off
	lastPatch map[string]time.Time
}

func newDevNodeReconciler(c client.Client) *DevNodeReconciler {
	return &DevNodeReconciler{Client: c, gone: map[string]map[string]bool{}, lastPatch: map[string]time.Time{}}
}

func publishesCapacity(p *DevicePool) bool { return publishOf(&p.Spec) == publishNodeCapacity }

func liveCapacity(p *DevicePool) bool { return p.DeletionTimestamp.IsZero() && publishesCapacity(p) }

func (r *DevNodeReconciler) addGone(node, resource string) {
	if node == "" || resource == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.gone[node]
	if m == nil {
		m = map[string]bool{}
		r.gone[node] = m
	}
	m[resource] = true
}

func (r *DevNodeReconciler) takeGone(node string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for k := range r.gone[node] {
		out = append(out, k)
	}
	delete(r.gone, node)
	return out
}

func nodeHas(node *corev1.Node, key string, capacity, allocatable int64) bool {
	c, ok1 := node.Status.Capacity[corev1.ResourceName(key)]
	a, ok2 := node.Status.Allocatable[corev1.ResourceName(key)]
	return ok1 && ok2 && c.Value() == capacity && a.Value() == allocatable
}

func nodeHasKey(node *corev1.Node, key string) bool {
	_, ok1 := node.Status.Capacity[corev1.ResourceName(key)]
	_, ok2 := node.Status.Allocatable[corev1.ResourceName(key)]
	return ok1 || ok2
}

// patchNode: a merge patch of nodes/status setting (value) or removing
// (nil) keys of capacity and allocatable.
func (r *DevNodeReconciler) patchNode(ctx context.Context, node *corev1.Node, capacity, allocatable map[string]any) error {
	body, err := json.Marshal(map[string]any{"status": map[string]any{"capacity": capacity, "allocatable": allocatable}})
	if err != nil {
		return err
	}
	return client.IgnoreNotFound(r.Status().Patch(ctx, node, client.RawPatch(types.MergePatchType, body)))
}

func (r *DevNodeReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var node corev1.Node
	if err := r.Get(ctx, req.NamespacedName, &node); err != nil {
		if apierrors.IsNotFound(err) {
			r.takeGone(req.Name) // nothing to take off a node that is not there
			r.mu.Lock()
			delete(r.lastPatch, req.Name)
			r.mu.Unlock()
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	var pools DevicePoolList
	if err := r.List(ctx, &pools, client.MatchingFields{idxDevPoolNode: node.Name}, client.UnsafeDisableDeepCopy); err != nil {
		return ctrl.Result{}, err
	}
	type sum struct{ capacity, allocatable int64 }
	want := map[string]*sum{}
	for i := range pools.Items {
		p := &pools.Items[i]
		// counted: the devicepool controller has written its status
		if !liveCapacity(p) || p.Spec.ResourceName == "" || meta.FindStatusCondition(p.Status.Conditions, condReady) == nil {
			continue
		}
		s := want[p.Spec.ResourceName]
		if s == nil {
			s = &sum{}
			want[p.Spec.ResourceName] = s
		}
		s.capacity += p.Status.Capacity
		s.allocatable += p.Status.Available
	}
	gone := r.takeGone(node.Name)
	capacity, allocatable := map[string]any{}, map[string]any{}
	needed, keys := false, false
	for k, s := range want {
		if nodeHas(&node, k, s.capacity, s.allocatable) {
			continue
		}
		keys = keys || !nodeHasKey(&node, k)
		capacity[k] = strconv.FormatInt(s.capacity, 10)
		allocatable[k] = strconv.FormatInt(s.allocatable, 10)
		needed = true
	}
	for _, k := range gone {
		if want[k] != nil || !nodeHasKey(&node, k) {
			continue
		}
		capacity[k], allocatable[k] = nil, nil
		needed, keys = true, true
	}
	if !needed {
		return ctrl.Result{}, nil
	}
	now := time.Now()
	if !keys {
		// Only numbers: the reconcile after the wait patches what they are then.
		r.mu.Lock()
		last, ok := r.lastPatch[node.Name]
		r.mu.Unlock()
		if wait := devNodeInterval - now.Sub(last); ok && wait > 0 {
			return ctrl.Result{RequeueAfter: wait}, nil
		}
	}
	if err := r.patchNode(ctx, &node, capacity, allocatable); err != nil {
		for _, k := range gone {
			r.addGone(node.Name, k) // again next time
		}
		return ctrl.Result{}, err
	}
	r.mu.Lock()
	r.lastPatch[node.Name] = now
	r.mu.Unlock()
	return ctrl.Result{}, nil
}

// finalizePool: before a deleted pool's finalizer goes, its resource comes
// off its node unless another live NodeCapacity pool there publishes it.
func (r *DevNodeReconciler) finalizePool(ctx context.Context, p *DevicePool) error {
	if !publishesCapacity(p) || p.Spec.NodeName == "" || p.Spec.ResourceName == "" {
		return nil
	}
	var pools DevicePoolList
	if err := r.List(ctx, &pools, client.MatchingFields{idxDevPoolNode: p.Spec.NodeName}, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	for i := range pools.Items {
		o := &pools.Items[i]
		if o.UID != p.UID && liveCapacity(o) && o.Spec.ResourceName == p.Spec.ResourceName {
			return nil // the node controller sums the others
		}
	}
	var node corev1.Node
	if err := r.Get(ctx, types.NamespacedName{Name: p.Spec.NodeName}, &node); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !nodeHasKey(&node, p.Spec.ResourceName) {
		return nil
	}
	k := p.Spec.ResourceName
	return r.patchNode(ctx, &node, map[string]any{k: nil}, map[string]any{k: nil})
}
