package main

// The IPClaim reconciler: finalizer first, then hold exactly one address of
// the pool through a Reservation created with POST (201 = ours, 409 = taken
// unless it names our uid), then status address/gateway/routes/pool and
// Ready; deleting a claim releases its Reservation (fresh GET, DELETE with
// uid and resourceVersion preconditions) and removes the finalizer.

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

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

const (
	finalizer     = "provisio.dev/finalizer"
	labelPoolKind = "provisio.dev/pool-kind"
	labelPool     = "provisio.dev/pool"
	labelNetwork  = "provisio.dev/network"
	kindIPPool    = "IPPool"
	kindIPClaim   = "IPClaim"

	condReady = "Ready"

	reasonAllocated          = "Allocated"
	reasonPoolNotFound       = "PoolNotFound"
	reasonPoolTerminating    = "PoolTerminating"
	reasonInvalidSpec        = "InvalidSpec"
	reasonAddressUnavailable = "AddressUnavailable"
	reasonAddressInUse       = "AddressInUse"
	reasonPoolExhausted      = "PoolExhausted"

	// field indexes
	idxResvClaimUID = "spec.claim.uid"
	idxResvPool     = "spec.pool.name"
	idxClaimPool    = "spec.pool"
	idxClaimWaiting = "waiting.spec.pool" // spec.pool of the claims not Ready

	attempts     = 8                // addresses tried per reconcile
	inflightTTL  = 30 * time.Second // our Reservations the cache has not shown
	staleTTL     = 60 * time.Second
	reserveTries = 3
)

// ---- state shared by the reconcilers ----

type inflight struct {
	name, claimUID string
	addr           netip.Addr
	at             time.Time
}

// shared: Reservations created that the cache does not show yet (per pool),
// and resourceVersions our own writes replaced (a reconcile that reads one
// from the cache stops: the event of our write follows).
type shared struct {
	mu       sync.Mutex
	inflight map[string]map[string]inflight // pool -> name -> entry
	stale    map[types.UID]staleEntry
	lastPrun time.Time
}

type staleEntry struct {
	rvs []string
	at  time.Time
}

func newShared() *shared {
	return &shared{inflight: map[string]map[string]inflight{}, stale: map[types.UID]staleEntry{}}
}

func (s *shared) noteStale(uid types.UID, rv string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if now.Sub(s.lastPrun) > 10*time.Second {
		for k, e := range s.stale {
			if now.Sub(e.at) > staleTTL {
				delete(s.stale, k)
			}
		}
		s.lastPrun = now
	}
	e := s.stale[uid]
	e.rvs = append(e.rvs, rv)
	if len(e.rvs) > 4 {
		e.rvs = e.rvs[len(e.rvs)-4:]
	}
	e.at = now
	s.stale[uid] = e
}

func (s *shared) isStale(uid types.UID, rv string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.stale[uid]
	if !ok || time.Since(e.at) > staleTTL {
		return false
	}
	for _, r := range e.rvs {
		if r == rv {
			return true
		}
	}
	return false
}

func (s *shared) addInflight(poolName, name, claimUID string, a netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.inflight[poolName]
	if m == nil {
		m = map[string]inflight{}
		s.inflight[poolName] = m
	}
	m[name] = inflight{name: name, claimUID: claimUID, addr: a, at: time.Now()}
}

func (s *shared) dropInflight(poolName, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.inflight[poolName]; m != nil {
		delete(m, name)
	}
}

func (s *shared) inflightOf(poolName string) map[string]inflight {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.inflight[poolName]
	out := make(map[string]inflight, len(m))
	now := time.Now()
	for k, e := range m {
		if now.Sub(e.at) > inflightTTL {
			delete(m, k)
			continue
		}
		out[k] = e
	}
	return out
}

// ---- the reconciler ----

type ClaimReconciler struct {
	client.Client
	APIReader client.Reader
	Recorder  events.EventRecorder
	S         *shared
}

type heldResv struct {
	name string
	addr netip.Addr
}

// held: the Reservations naming the claim's uid, from the cache and from
// what this process created that the cache does not show yet.
func (r *ClaimReconciler) held(ctx context.Context, claim *IPClaim) ([]heldResv, error) {
	var list ReservationList
	if err := r.List(ctx, &list, client.MatchingFields{idxResvClaimUID: string(claim.UID)}); err != nil {
		return nil, err
	}
	var out []heldResv
	seen := map[string]bool{}
	for i := range list.Items {
		rv := &list.Items[i]
		if rv.Spec.Pool.Kind != kindIPPool || rv.Spec.Pool.Name != claim.Spec.Pool {
			continue
		}
		a, err := netip.ParseAddr(rv.Spec.Slot)
		if err != nil {
			continue
		}
		seen[rv.Name] = true
		out = append(out, heldResv{rv.Name, a})
	}
	for name, e := range r.S.inflightOf(claim.Spec.Pool) {
		if e.claimUID == string(claim.UID) && !seen[name] {
			out = append(out, heldResv{name, e.addr})
		}
	}
	return out, nil
}

func (r *ClaimReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var claim IPClaim
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

	var poolObj IPPool
	poolFound := true
	if err := r.Get(ctx, types.NamespacedName{Name: claim.Spec.Pool}, &poolObj); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
		poolFound = false
	}
	var p *pool
	var poolProblem error
	if poolFound {
		p, poolProblem = parsePool(&poolObj.Spec)
	}

	held, err := r.held(ctx, &claim)
	if err != nil {
		return ctrl.Result{}, err
	}
	if len(held) > 0 {
		return r.holds(ctx, &claim, &poolObj, poolFound, p, held)
	}
	poolDeleting := poolFound && !poolObj.DeletionTimestamp.IsZero()
	if p != nil && !poolDeleting {
		if sa, ok := statusAddr(&claim); ok && p.prefix.Contains(sa) {
			res, handled, err := r.readopt(ctx, &claim, &poolObj, p, sa)
			if handled {
				return res, err
			}
		}
	}
	switch {
	case !poolFound:
		return r.pending(ctx, &claim, reasonPoolNotFound,
			fmt.Sprintf("IPPool %s does not exist; the claim gets an address once it is created", claim.Spec.Pool))
	case poolDeleting:
		return r.pending(ctx, &claim, reasonPoolTerminating,
			fmt.Sprintf("IPPool %s is being deleted and hands out no new addresses", claim.Spec.Pool))
	case p == nil:
		return r.pending(ctx, &claim, reasonInvalidSpec,
			fmt.Sprintf("IPPool %s cannot be used: %v", claim.Spec.Pool, poolProblem))
	case claim.Spec.Address != "":
		return r.specific(ctx, &claim, &poolObj, p)
	}
	return r.allocate(ctx, &claim, &poolObj, p)
}

func statusAddr(claim *IPClaim) (netip.Addr, bool) {
	if claim.Status.Address == "" {
		return netip.Addr{}, false
	}
	pfx, err := netip.ParsePrefix(claim.Status.Address)
	if err != nil {
		return netip.Addr{}, false
	}
	return pfx.Addr(), true
}

// ---- Reservations ----

var errTaken = fmt.Errorf("taken")

// acquire creates the Reservation of a for the claim. nil: ours (new, or
// ours from before); errTaken with the holder; another error.
func (r *ClaimReconciler) acquire(ctx context.Context, claim *IPClaim, poolName string, p *pool, a netip.Addr) (*Reservation, error) {
	name := reservationName(p.network, a)
	for i := 0; i < reserveTries; i++ {
		resv := &Reservation{
			ObjectMeta: metav1.ObjectMeta{
				Name:   name,
				Labels: map[string]string{labelPoolKind: kindIPPool, labelPool: poolName, labelNetwork: p.network},
			},
			Spec: ReservationSpec{
				Pool:    PoolRef{Kind: kindIPPool, Name: poolName},
				Network: p.network,
				Slot:    a.String(),
				Claim:   ClaimRef{Kind: kindIPClaim, Namespace: claim.Namespace, Name: claim.Name, UID: string(claim.UID)},
			},
		}
		err := r.Create(ctx, resv)
		if err == nil {
			r.S.addInflight(poolName, name, string(claim.UID), a)
			return resv, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, err
		}
		// Someone holds it: maybe us, from before a crash or a lost answer.
		var got Reservation
		if err := r.APIReader.Get(ctx, types.NamespacedName{Name: name}, &got); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return nil, err
		}
		if got.Spec.Claim.UID != string(claim.UID) {
			return &got, errTaken
		}
		if !got.DeletionTimestamp.IsZero() {
			return nil, apierrors.NewConflict(reservationGR, name, fmt.Errorf("being deleted"))
		}
		r.S.addInflight(poolName, name, string(claim.UID), a)
		return &got, nil
	}
	return nil, apierrors.NewConflict(reservationGR, name, fmt.Errorf("changed hands repeatedly"))
}

// release frees the Reservation name if it still names claimUID.
func release(ctx context.Context, c client.Client, reader client.Reader, name, claimUID string) (bool, error) {
	for i := 0; i < reserveTries; i++ {
		var got Reservation
		if err := reader.Get(ctx, types.NamespacedName{Name: name}, &got); err != nil {
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			return false, err
		}
		if got.Spec.Claim.UID != claimUID {
			return false, nil // not ours (any more): it must stay
		}
		uid, rv := got.UID, got.ResourceVersion
		err := c.Delete(ctx, &got, client.Preconditions{UID: &uid, ResourceVersion: &rv})
		if err == nil {
			return true, nil
		}
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if !apierrors.IsConflict(err) {
			return false, err
		}
	}
	return false, fmt.Errorf("reservation %s changed hands repeatedly", name)
}

// ---- the paths of a claim ----

func (r *ClaimReconciler) deleting(ctx context.Context, claim *IPClaim) (ctrl.Result, error) {
	held, err := r.held(ctx, claim)
	if err != nil {
		return ctrl.Result{}, err
	}
	if sa, ok := statusAddr(claim); ok && claim.Spec.Pool != "" {
		// The status address's lock is in the pool's network; a pool gone
		// from the cache leaves "default" (the CRD's default).
		network := "default"
		var poolObj IPPool
		if err := r.Get(ctx, types.NamespacedName{Name: claim.Spec.Pool}, &poolObj); err == nil {
			network = networkOf(&poolObj.Spec)
		}
		name := reservationName(network, sa)
		dup := false
		for _, h := range held {
			dup = dup || h.name == name
		}
		if !dup {
			held = append(held, heldResv{name, sa})
		}
	}
	any := false
	for _, h := range held {
		released, err := release(ctx, r.Client, r.APIReader, h.name, string(claim.UID))
		if err != nil {
			return ctrl.Result{}, fmt.Errorf("releasing the address: %w", err)
		}
		r.S.dropInflight(claim.Spec.Pool, h.name)
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
		addr := claim.Status.Address
		if addr == "" {
			addr = "its address"
		}
		r.Recorder.Eventf(claim, nil, "Normal", "Released", "Release", "Released %s of IPPool %s", addr, claim.Spec.Pool)
	}
	return ctrl.Result{}, nil
}

// writeStatus writes st when it differs from the cached status (PUT of the
// status subresource, carrying the cached resourceVersion) and records an
// Event when the Ready condition's status or reason moved.
func (r *ClaimReconciler) writeStatus(ctx context.Context, claim *IPClaim, st IPClaimStatus, evType, reason, note string) (ctrl.Result, error) {
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
		return ctrl.Result{}, fmt.Errorf("writing the IPClaim status: %w", err)
	}
	r.S.noteStale(claim.UID, before)
	if transition {
		r.Recorder.Eventf(claim, nil, evType, reason, "Reconcile", "%s", note)
	}
	return ctrl.Result{}, nil
}

func withCondition(claim *IPClaim, st IPClaimStatus, status metav1.ConditionStatus, reason, message string) IPClaimStatus {
	st.Conditions = copyConditions(st.Conditions)
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type: condReady, Status: status, Reason: reason, Message: message,
		ObservedGeneration: claim.Generation,
	})
	return st
}

func (r *ClaimReconciler) pending(ctx context.Context, claim *IPClaim, reason, message string) (ctrl.Result, error) {
	st := withCondition(claim, claim.Status, metav1.ConditionFalse, reason, message)
	return r.writeStatus(ctx, claim, st, "Warning", reason, message)
}

func (r *ClaimReconciler) ready(ctx context.Context, claim *IPClaim, poolObj *IPPool, p *pool, a netip.Addr) (ctrl.Result, error) {
	st := claim.Status
	st.Pool = claim.Spec.Pool
	switch {
	case p != nil:
		st.Address = p.cidrForm(a)
	case st.Address != "":
		if pfx, err := netip.ParsePrefix(st.Address); err != nil || pfx.Addr() != a {
			st.Address = fmt.Sprintf("%s/%d", a, a.BitLen())
		}
	default:
		st.Address = fmt.Sprintf("%s/%d", a, a.BitLen())
	}
	if p != nil {
		st.Gateway = poolObj.Spec.Gateway
		st.Routes = copyRoutes(poolObj.Spec.Routes)
	}
	st = withCondition(claim, st, metav1.ConditionTrue, reasonAllocated,
		fmt.Sprintf("holds %s of IPPool %s", st.Address, claim.Spec.Pool))
	return r.writeStatus(ctx, claim, st, "Normal", reasonAllocated,
		fmt.Sprintf("Allocated %s from IPPool %s", st.Address, claim.Spec.Pool))
}

// holds: keep one (status.address, else spec.address, else the lowest),
// release the others, write the status.
func (r *ClaimReconciler) holds(ctx context.Context, claim *IPClaim, poolObj *IPPool, poolFound bool, p *pool, held []heldResv) (ctrl.Result, error) {
	keep := -1
	if sa, ok := statusAddr(claim); ok {
		for i, h := range held {
			if h.addr == sa {
				keep = i
			}
		}
	}
	if keep < 0 && claim.Spec.Address != "" {
		if pa, err := netip.ParseAddr(claim.Spec.Address); err == nil {
			for i, h := range held {
				if h.addr == pa {
					keep = i
				}
			}
		}
	}
	if keep < 0 {
		keep = 0
		for i, h := range held {
			if h.addr.Less(held[keep].addr) {
				keep = i
			}
		}
	}
	for i, h := range held {
		if i == keep {
			continue
		}
		released, err := release(ctx, r.Client, r.APIReader, h.name, string(claim.UID))
		if err != nil {
			return ctrl.Result{}, fmt.Errorf("releasing a second address: %w", err)
		}
		r.S.dropInflight(claim.Spec.Pool, h.name)
		if released {
			logf.FromContext(ctx).Info("released a second address of a claim", "address", h.addr.String())
		}
	}
	if !poolFound {
		p = nil
	}
	return r.ready(ctx, claim, poolObj, p, held[keep].addr)
}

// settle: after acquiring a, make sure it is the claim's only address
// (a lagging cache may have hidden another), then write the status.
func (r *ClaimReconciler) settle(ctx context.Context, claim *IPClaim, poolObj *IPPool, p *pool, a netip.Addr) (ctrl.Result, error) {
	held, err := r.held(ctx, claim)
	if err != nil {
		return ctrl.Result{}, err
	}
	for _, h := range held {
		if h.addr != a {
			// Let the one just taken go; the next pass keeps h.
			name := reservationName(p.network, a)
			if _, err := release(ctx, r.Client, r.APIReader, name, string(claim.UID)); err != nil {
				return ctrl.Result{}, fmt.Errorf("releasing a second address: %w", err)
			}
			r.S.dropInflight(claim.Spec.Pool, name)
			return ctrl.Result{Requeue: true}, nil
		}
	}
	return r.ready(ctx, claim, poolObj, p, a)
}

func (r *ClaimReconciler) specific(ctx context.Context, claim *IPClaim, poolObj *IPPool, p *pool) (ctrl.Result, error) {
	a, err := netip.ParseAddr(claim.Spec.Address)
	if err != nil {
		return r.pending(ctx, claim, reasonInvalidSpec,
			fmt.Sprintf("spec.address %s is not an IP address", claim.Spec.Address))
	}
	if why, invalid := p.check(a); why != "" {
		reason := reasonAddressUnavailable
		if invalid {
			reason = reasonInvalidSpec
		}
		return r.pending(ctx, claim, reason,
			fmt.Sprintf("spec.address %s cannot be allocated from IPPool %s: %s", claim.Spec.Address, claim.Spec.Pool, why))
	}
	holder, err := r.acquire(ctx, claim, claim.Spec.Pool, p, a)
	switch {
	case err == nil:
		return r.settle(ctx, claim, poolObj, p, a)
	case err == errTaken:
		return r.pending(ctx, claim, reasonAddressInUse,
			fmt.Sprintf("%s of IPPool %s is held by IPClaim %s/%s; the claim gets it once that claim releases it",
				claim.Spec.Address, claim.Spec.Pool, holder.Spec.Claim.Namespace, holder.Spec.Claim.Name))
	case apierrors.IsConflict(err):
		return ctrl.Result{Requeue: true}, nil
	}
	return ctrl.Result{}, fmt.Errorf("reserving the address: %w", err)
}

// allocate: any free address, from the claim's hint, skipping what the
// cache, this process's in-flight creates, other claims' spec.address and
// the addresses that answered 409 in this reconcile show as taken.
func (r *ClaimReconciler) allocate(ctx context.Context, claim *IPClaim, poolObj *IPPool, p *pool) (ctrl.Result, error) {
	offset := p.hint(string(claim.UID))
	tried := map[netip.Addr]bool{}
	requested, err := r.requested(ctx, claim)
	if err != nil {
		return ctrl.Result{}, err
	}
	for n := 0; n < attempts; n++ {
		inf := r.S.inflightOf(claim.Spec.Pool)
		var getErr error
		a, ok := p.nextFree(offset, func(a netip.Addr) bool {
			if tried[a] || requested[a] {
				return true
			}
			name := reservationName(p.network, a)
			if _, ok := inf[name]; ok {
				return true
			}
			var rv Reservation
			err := r.Get(ctx, types.NamespacedName{Name: name}, &rv)
			if err == nil {
				return true
			}
			if !apierrors.IsNotFound(err) {
				getErr = err
			}
			return false
		})
		if getErr != nil {
			return ctrl.Result{}, getErr
		}
		if !ok {
			return r.pending(ctx, claim, reasonPoolExhausted,
				fmt.Sprintf("IPPool %s has no free address: all %d allocatable addresses are held; the claim gets one as soon as one is released",
					claim.Spec.Pool, p.totalInt64()))
		}
		_, err := r.acquire(ctx, claim, claim.Spec.Pool, p, a)
		switch {
		case err == nil:
			return r.settle(ctx, claim, poolObj, p, a)
		case err == errTaken:
			tried[a] = true // our cache lags: that one is used
			continue
		case apierrors.IsConflict(err):
			return ctrl.Result{Requeue: true}, nil
		}
		return ctrl.Result{}, fmt.Errorf("reserving an address: %w", err)
	}
	logf.FromContext(ctx).V(1).Info("every address tried was taken; requeue")
	return ctrl.Result{Requeue: true}, nil
}

// requested: the spec.address of the pool's other claims, left to them.
func (r *ClaimReconciler) requested(ctx context.Context, claim *IPClaim) (map[netip.Addr]bool, error) {
	var list IPClaimList
	if err := r.List(ctx, &list, client.MatchingFields{idxClaimRequested: claim.Spec.Pool}); err != nil {
		return nil, err
	}
	out := map[netip.Addr]bool{}
	for i := range list.Items {
		if list.Items[i].UID == claim.UID {
			continue
		}
		if a, err := netip.ParseAddr(list.Items[i].Spec.Address); err == nil {
			out[a] = true
		}
	}
	return out, nil
}

// readopt: status.address is set but no Reservation is known: take it again
// (409 with our uid: it was ours all along). handled=false: it went to
// another claim; allocate afresh.
func (r *ClaimReconciler) readopt(ctx context.Context, claim *IPClaim, poolObj *IPPool, p *pool, sa netip.Addr) (ctrl.Result, bool, error) {
	holder, err := r.acquire(ctx, claim, claim.Spec.Pool, p, sa)
	switch {
	case err == nil:
		res, err := r.settle(ctx, claim, poolObj, p, sa)
		return res, true, err
	case err == errTaken:
		r.Recorder.Eventf(claim, nil, "Warning", "AddressLost", "Reconcile",
			"%s was released outside the operator and is now held by IPClaim %s/%s; taking another address",
			sa, holder.Spec.Claim.Namespace, holder.Spec.Claim.Name)
		return ctrl.Result{}, false, nil
	case apierrors.IsConflict(err):
		return ctrl.Result{Requeue: true}, true, nil
	}
	return ctrl.Result{}, true, fmt.Errorf("reserving the address: %w", err)
}
