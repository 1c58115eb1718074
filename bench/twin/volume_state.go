package main

// What the volume controllers share in memory (provisio's vol_admit.c):
// admissions batched per pool. A Volume that needs bytes of a pool does not
// write the pool's ledger itself (with a storm of Volumes on one pool every
// such compare-and-swap but one would fail): it waits in the pool's list
// here and wakes the pool; the pool's reconcile admits every waiter that
// fits, in the order they came, in the one status write it makes anyway,
// then wakes the admitted Volumes (a channel source of the volume
// controller), which create their Reservations. What this process admitted
// is remembered (uid -> pool, deadline) so a Volume's reconcile need not
// wait for its cache to show the pool's write. And the time of each pool's
// last recount (at most one every volRecountInterval).

import (
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

const volRejected = -1 // volAdmitted.until of a verdict of no room

type volWaiter struct {
	uid, ns, name string
	size          int64
}

type volAdmitted struct {
	pool  string
	until int64 // the entry's deadline, or volRejected
}

type volBatchItem struct {
	uid, ns, name string
	until         int64
}

type volState struct {
	mu          sync.Mutex
	waiting     map[string][]volWaiter // pool -> its waiting Volumes, first come first
	admitted    map[string]volAdmitted // Volume uid -> what this process admitted
	lastRecount map[string]time.Time   // pool -> its last recount
	toPools     chan event.GenericEvent
	toVolumes   chan event.GenericEvent
}

func newVolState() *volState {
	return &volState{
		waiting:     map[string][]volWaiter{},
		admitted:    map[string]volAdmitted{},
		lastRecount: map[string]time.Time{},
		toPools:     make(chan event.GenericEvent, 1024),
		toVolumes:   make(chan event.GenericEvent, 1024),
	}
}

// wakePool: the pool's reconcile, soon (the channel source of "storagepool").
func (s *volState) wakePool(pool string) {
	s.toPools <- event.GenericEvent{Object: &StoragePool{ObjectMeta: metav1.ObjectMeta{Name: pool}}}
}

func (s *volState) wakeVolume(ns, name string) {
	s.toVolumes <- event.GenericEvent{Object: &Volume{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}}
}

// unwaitLocked: uid out of every list but keepPool's ("": all).
func (s *volState) unwaitLocked(uid, keepPool string) {
	for pool, ws := range s.waiting {
		if keepPool != "" && pool == keepPool {
			continue
		}
		for i := range ws {
			if ws[i].uid == uid {
				s.waiting[pool] = append(ws[:i:i], ws[i+1:]...)
				break
			}
		}
		if len(s.waiting[pool]) == 0 {
			delete(s.waiting, pool)
		}
	}
}

// waitAdd: w waits in pool's list (and in no other's).
func (s *volState) waitAdd(pool string, w volWaiter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unwaitLocked(w.uid, pool)
	ws := s.waiting[pool]
	for i := range ws {
		if ws[i].uid == w.uid {
			ws[i].size = w.size
			return
		}
	}
	s.waiting[pool] = append(ws, w)
}

func (s *volState) waitRemove(uid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unwaitLocked(uid, "")
}

// admittedGet: what this process admitted uid into pool for.
func (s *volState) admittedGet(uid, pool string) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.admitted[uid]
	if !ok || a.until <= 0 || a.pool != pool {
		return 0, false
	}
	return a.until, true
}

// admittedPool: the pool this process admitted uid into, or "".
func (s *volState) admittedPool(uid string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.admitted[uid]; ok && a.until > 0 {
		return a.pool
	}
	return ""
}

// rejectedTake: whether this process's pool reconcile found no room for
// uid in pool (the verdict is taken: true once).
func (s *volState) rejectedTake(uid, pool string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.admitted[uid]
	if ok && a.until == volRejected && a.pool == pool {
		delete(s.admitted, uid)
		return true
	}
	return false
}

func (s *volState) admittedForget(uid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.admitted, uid)
}

// admitBatch admits pool's waiters into l (in memory, in the order they
// came) until one does not fit the ledger's room for entries: in the
// admitted (or already admitted) ones, out those with no room. stillWanted
// says whether the waiter's Volume is still cached with its uid and not
// being deleted (those that are not leave the list).
func (s *volState) admitBatch(pool string, l *ledger, now int64, stillWanted func(w *volWaiter) bool) (in, out []volBatchItem) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.waiting[pool]
	kept := ws[:0]
	stop := false
	for i := range ws {
		w := ws[i]
		if stop {
			kept = append(kept, w)
			continue
		}
		if !stillWanted(&w) {
			continue // deleted meanwhile: never admitted
		}
		kept = append(kept, w)
		switch l.admit(w.uid, w.size, now) {
		case admitted, admittedAgain:
			in = append(in, volBatchItem{w.uid, w.ns, w.name, l.find(w.uid).until})
		case noRoom:
			out = append(out, volBatchItem{w.uid, w.ns, w.name, 0})
		default:
			stop = true // full, or unknown: the rest wait for the next round
		}
	}
	if len(kept) == 0 {
		delete(s.waiting, pool)
	} else {
		s.waiting[pool] = kept
	}
	return in, out
}

// admitCommit: after the ledger was written: remember in (and out as
// rejected), take them off the lists, wake their Volumes.
func (s *volState) admitCommit(pool string, in, out []volBatchItem) {
	s.mu.Lock()
	for k, it := range append(append([]volBatchItem(nil), in...), out...) {
		s.unwaitLocked(it.uid, "")
		until := int64(volRejected)
		if k < len(in) {
			until = it.until
		}
		s.admitted[it.uid] = volAdmitted{pool: pool, until: until}
	}
	s.mu.Unlock()
	for _, it := range in {
		s.wakeVolume(it.ns, it.name)
	}
	for _, it := range out {
		s.wakeVolume(it.ns, it.name)
	}
}

// recountAllowed: whether a recount of pool may run now (then it is
// marked); else how long to wait.
func (s *volState) recountAllowed(pool string, now time.Time) (bool, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	last, ok := s.lastRecount[pool]
	if ok && now.Sub(last) < volRecountInterval {
		return false, volRecountInterval - now.Sub(last)
	}
	s.lastRecount[pool] = now
	return true, 0
}

func (s *volState) recountForget(pool string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.lastRecount, pool)
}
