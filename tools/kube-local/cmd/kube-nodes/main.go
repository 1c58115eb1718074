// Command kube-nodes keeps kube-local's fake nodes alive: it registers each
// node (labels, capacity) and then does what a kubelet does to say it is
// there, and nothing else: it renews the node's Lease in kube-node-lease and
// posts the Ready condition (with the pressure conditions a kubelet reports)
// on the node's status. Nothing runs on these nodes; only the heartbeat is
// real, so kube-controller-manager's node lifecycle controller sees them
// Ready and, when a heartbeat stops, marks the node Unknown and taints it as
// it would a lost machine.
//
//	kube-nodes --kubeconfig FILE --state-dir DIR --nodes node-a,node-b
//
// A node's heartbeat pauses while the file DIR/NODE.stopped exists
// (hack/kube-local node-stop / node-start create and remove it), so a test
// can lose and regain a node without restarting anything.
//
// Only the Ready, MemoryPressure, DiskPressure and PIDPressure conditions are
// written, with a strategic merge patch (conditions merge by type): capacity
// and allocatable are set once, when the node is registered, so what others
// publish there (extended resources) is left alone, as a running kubelet
// leaves resources it does not manage.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
)

const leaseNamespace = "kube-node-lease"

type options struct {
	kubeconfig     string
	stateDir       string
	nodes          []string
	leaseDuration  time.Duration
	renewInterval  time.Duration
	statusInterval time.Duration
	version        string
}

func main() {
	var o options
	var nodes string
	flag.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of a user that may write nodes and leases")
	flag.StringVar(&o.stateDir, "state-dir", "", "directory holding NODE.stopped files")
	flag.StringVar(&nodes, "nodes", "node-a,node-b,node-c", "comma-separated node names")
	flag.DurationVar(&o.leaseDuration, "lease-duration", 40*time.Second, "spec.leaseDurationSeconds of the node Leases (the kubelet's default)")
	flag.DurationVar(&o.renewInterval, "renew-interval", 2*time.Second, "how often each Lease is renewed")
	flag.DurationVar(&o.statusInterval, "status-interval", 20*time.Second, "how often the Ready condition's heartbeat is refreshed while nothing changes")
	flag.StringVar(&o.version, "kubelet-version", "", "status.nodeInfo.kubeletVersion to report (the control plane's version)")
	flag.Parse()
	if o.kubeconfig == "" || o.stateDir == "" {
		fmt.Fprintln(os.Stderr, "kube-nodes: --kubeconfig and --state-dir are required")
		os.Exit(2)
	}
	for _, n := range strings.Split(nodes, ",") {
		if n = strings.TrimSpace(n); n != "" {
			o.nodes = append(o.nodes, n)
		}
	}
	if len(o.nodes) == 0 {
		fmt.Fprintln(os.Stderr, "kube-nodes: --nodes names no node")
		os.Exit(2)
	}
	log.SetFlags(log.LstdFlags | log.Lmicroseconds | log.LUTC)

	cfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		log.Fatalf("kubeconfig %s: %v", o.kubeconfig, err)
	}
	cfg.UserAgent = "kube-local-nodes"
	cfg.QPS, cfg.Burst = 50, 100
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		log.Fatalf("client: %v", err)
	}
	if err := os.MkdirAll(o.stateDir, 0o755); err != nil {
		log.Fatalf("state dir: %v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var wg sync.WaitGroup
	for _, name := range o.nodes {
		wg.Add(1)
		go func(name string) {
			defer wg.Done()
			(&node{o: &o, client: client, name: name}).run(ctx)
		}(name)
	}
	log.Printf("keeping %d nodes alive (lease %s, renewed every %s)", len(o.nodes), o.leaseDuration, o.renewInterval)
	wg.Wait()
	log.Printf("stopped")
}

// node is one fake node's heartbeat; only its own goroutine touches it.
type node struct {
	o          *options
	client     kubernetes.Interface
	name       string
	lease      *coordinationv1.Lease
	lastStatus time.Time
	paused     bool
}

func (n *node) run(ctx context.Context) {
	t := time.NewTicker(n.o.renewInterval)
	defer t.Stop()
	for {
		n.beat(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (n *node) stopped() bool {
	_, err := os.Stat(filepath.Join(n.o.stateDir, n.name+".stopped"))
	return err == nil
}

// beat: one heartbeat, unless paused. Errors are logged and retried at the
// next tick, as a kubelet retries.
func (n *node) beat(ctx context.Context) {
	if n.stopped() {
		if !n.paused {
			log.Printf("%s: heartbeat stopped (%s.stopped exists)", n.name, n.name)
			n.paused = true
		}
		return
	}
	if n.paused {
		log.Printf("%s: heartbeat resumed", n.name)
		n.paused = false
		n.lastStatus = time.Time{} // post Ready at once
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := n.syncStatus(rctx); err != nil && ctx.Err() == nil {
		log.Printf("%s: status: %v", n.name, err)
	}
	if err := n.renewLease(rctx); err != nil && ctx.Err() == nil {
		log.Printf("%s: lease: %v", n.name, err)
	}
}

func nodeResources() corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("4"),
		corev1.ResourceMemory:           resource.MustParse("8Gi"),
		corev1.ResourcePods:             resource.MustParse("110"),
		corev1.ResourceEphemeralStorage: resource.MustParse("50Gi"),
	}
}

// register creates the node as a kubelet registers itself: labels, then
// capacity and allocatable on its status.
func (n *node) register(ctx context.Context) (*corev1.Node, error) {
	obj := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: map[string]string{
		"kubernetes.io/hostname": n.name,
		"kubernetes.io/os":       "linux",
		"kubernetes.io/arch":     "amd64",
	}}}
	created, err := n.client.CoreV1().Nodes().Create(ctx, obj, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return n.client.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
	}
	if err != nil {
		return nil, err
	}
	created.Status.Capacity = nodeResources()
	created.Status.Allocatable = nodeResources()
	// No kubelet and no container runtime: the node says so where
	// `kubectl get nodes -o wide` shows it.
	created.Status.NodeInfo = corev1.NodeSystemInfo{
		KubeletVersion:          n.o.version,
		OperatingSystem:         "linux",
		Architecture:            "amd64",
		OSImage:                 "kube-local fake node (no kubelet)",
		ContainerRuntimeVersion: "none://",
	}
	log.Printf("%s: registered", n.name)
	return n.client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
}

func readyCondition(obj *corev1.Node) *corev1.NodeCondition {
	for i := range obj.Status.Conditions {
		if obj.Status.Conditions[i].Type == corev1.NodeReady {
			return &obj.Status.Conditions[i]
		}
	}
	return nil
}

// syncStatus posts the conditions when the node is not Ready=True (new,
// or marked Unknown by the node lifecycle controller while paused) or the
// last post is older than the status interval.
func (n *node) syncStatus(ctx context.Context) error {
	obj, err := n.client.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		obj, err = n.register(ctx)
	}
	if err != nil {
		return err
	}
	ready := readyCondition(obj)
	isReady := ready != nil && ready.Status == corev1.ConditionTrue
	if isReady && time.Since(n.lastStatus) < n.o.statusInterval {
		return nil
	}
	now := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
	cond := func(t corev1.NodeConditionType, status corev1.ConditionStatus, reason, msg string) map[string]any {
		c := map[string]any{"type": t, "status": status, "reason": reason, "message": msg,
			"lastHeartbeatTime": now}
		// lastTransitionTime only when the status changes, as the kubelet does.
		var old *corev1.NodeCondition
		for i := range obj.Status.Conditions {
			if obj.Status.Conditions[i].Type == t {
				old = &obj.Status.Conditions[i]
			}
		}
		if old == nil || old.Status != status {
			c["lastTransitionTime"] = now
		}
		return c
	}
	conds := []map[string]any{
		cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "kube-local node has sufficient memory available"),
		cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kube-local node has no disk pressure"),
		cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "kube-local node has sufficient PID available"),
		cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "kube-local node is posting ready status (no kubelet: pods bound here never run)"),
	}
	data, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": conds}})
	if err != nil {
		return err
	}
	if _, err := n.client.CoreV1().Nodes().Patch(ctx, n.name, types.StrategicMergePatchType, data, metav1.PatchOptions{}, "status"); err != nil {
		return err
	}
	if !isReady {
		log.Printf("%s: posted Ready=True", n.name)
	}
	n.lastStatus = time.Now()
	return nil
}

// renewLease creates or renews the node's Lease, owned by the Node so the
// garbage collector removes it with the node (as the kubelet's is).
func (n *node) renewLease(ctx context.Context) error {
	leases := n.client.CoordinationV1().Leases(leaseNamespace)
	now := metav1.NewMicroTime(time.Now())
	if n.lease == nil {
		l, err := leases.Get(ctx, n.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			obj, gerr := n.client.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
			if gerr != nil {
				return gerr
			}
			l = &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: n.name, Namespace: leaseNamespace,
					OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: n.name, UID: obj.UID}}},
				Spec: coordinationv1.LeaseSpec{
					HolderIdentity:       ptr.To(n.name),
					LeaseDurationSeconds: ptr.To(int32(n.o.leaseDuration / time.Second)),
					RenewTime:            &now,
				},
			}
			l, err = leases.Create(ctx, l, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			n.lease = l
			return nil
		}
		if err != nil {
			return err
		}
		n.lease = l
	}
	l := n.lease.DeepCopy()
	l.Spec.HolderIdentity = ptr.To(n.name)
	l.Spec.LeaseDurationSeconds = ptr.To(int32(n.o.leaseDuration / time.Second))
	l.Spec.RenewTime = &now
	updated, err := leases.Update(ctx, l, metav1.UpdateOptions{})
	if err != nil {
		n.lease = nil // read it again next time (conflict, deleted, ...)
		return err
	}
	n.lease = updated
	return nil
}
