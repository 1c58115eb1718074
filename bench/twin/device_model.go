package main

// The device domain's pure part: a DevicePool as the reconcilers use it
// (declared devices sorted by id, health), what a DeviceClaim wants, the
// choice of pool and devices (spread by a hash of the claim's uid, the same
// hash as provisio's inf_map_hash), and the state the device reconcilers
// share (Reservations created that the cache does not show yet, parsed
// pools by resourceVersion, the pacing of count-only pool status writes).

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

const (
	kindDevicePool  = "DevicePool"
	kindDeviceClaim = "DeviceClaim"

	publishNodeCapacity  = "NodeCapacity"
	publishResourceSlice = "ResourceSlice"
	publishNone          = "None"

	condDevicesHealthy = "DevicesHealthy"
	condAgent          = "AgentReporting"

	reasonNoMatch       = "NoMatchingDevices"
	reasonInsufficient  = "InsufficientDevices"
	reasonDeviceLost    = "DeviceLost"
	reasonDevUnhealthy  = "DeviceUnhealthy"
	reasonDevHealthy    = "DevicesHealthy"
	reasonNodeNotFound  = "NodeNotFound"
	reasonPoolValid     = "Valid"
	reasonPoolTerminate = "Terminating"

	// field indexes of the device domain
	idxDevResvPool     = "devicepool.spec.pool.name" // Reservations of DevicePools
	idxDevPoolResource = "spec.resourceName"         // DevicePools
	idxDevPoolNode     = "spec.nodeName"             // DevicePools
	idxDevClaimWaiting = "waiting.spec.resourceName" // DeviceClaims not Ready

	devPoolCoalesce    = 200 * time.Millisecond // a count-only change waits for more
	devPoolCountsEvery = 200 * time.Millisecond // count-only writes, all pools: 5 a second
	devNodeInterval    = time.Second            // between count-only patches of a node
	devPoolGoneRetry   = time.Second
	holdersShownDev    = 5
)

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// devHash: FNV-1a of s with a murmur3-style finish, as inf_map_hash.
func devHash(s string) uint64 {
	h := uint64(1469598103934665603)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return h
}

// devResvName: the Reservation of device id of pool ("" when id cannot be one).
func devResvName(pool, id string) string {
	if len(id) > 63 || !dnsLabel.MatchString(id) {
		return ""
	}
	return "devicepool." + pool + "." + id
}

type devDevice struct {
	id      string
	healthy bool
	message string
	attrs   map[string]string
}

type devPool struct {
	uid, rv                   string
	name, node, resource, pub string
	wantsAgent                bool
	devs                      []devDevice // sorted by id
	byID                      map[string]int
	nHealthy                  int
}

func publishOf(spec *DevicePoolSpec) string {
	switch {
	case spec.Publish == publishResourceSlice || spec.Publish == publishNone:
		return spec.Publish
	case spec.Publish == "" && spec.Advertise != nil && !*spec.Advertise:
		return publishNone
	}
	return publishNodeCapacity
}

// parseDevPool: the pool, or why its spec cannot be used.
func parseDevPool(p *DevicePool) (*devPool, string) {
	if p.Spec.NodeName == "" || p.Spec.ResourceName == "" {
		return nil, "spec.nodeName and spec.resourceName are required"
	}
	dp := &devPool{uid: string(p.UID), rv: p.ResourceVersion, name: p.Name, node: p.Spec.NodeName,
		resource: p.Spec.ResourceName, pub: publishOf(&p.Spec), wantsAgent: p.Spec.Discover != nil,
		byID: make(map[string]int, len(p.Spec.Devices))}
	dp.devs = make([]devDevice, 0, len(p.Spec.Devices))
	for i := range p.Spec.Devices {
		d := &p.Spec.Devices[i]
		if len(d.ID) > 63 || !dnsLabel.MatchString(d.ID) {
			id := d.ID
			if id == "" {
				id = "(missing)"
			}
			return nil, fmt.Sprintf("spec.devices[%d].id %s is not a DNS label", i, id)
		}
		if _, dup := dp.byID[d.ID]; dup {
			continue
		}
		dev := devDevice{id: d.ID, healthy: d.Healthy == nil || *d.Healthy, attrs: d.Attributes}
		if !dev.healthy {
			dev.message = "spec.devices says healthy: false"
		}
		if d.Path != "" {
			dp.wantsAgent = true // its health is the agent's word: not read here
		}
		dp.byID[d.ID] = 0
		dp.devs = append(dp.devs, dev)
	}
	sort.Slice(dp.devs, func(i, j int) bool { return dp.devs[i].id < dp.devs[j].id })
	for i := range dp.devs {
		dp.byID[dp.devs[i].id] = i
		if dp.devs[i].healthy {
			dp.nHealthy++
		}
	}
	return dp, ""
}

func (dp *devPool) find(id string) *devDevice {
	if i, ok := dp.byID[id]; ok {
		return &dp.devs[i]
	}
	return nil
}

type devWant struct {
	resource, node string
	count          int
	sel            map[string]string
}

func parseWant(c *DeviceClaim) (*devWant, string) {
	if c.Spec.ResourceName == "" {
		return nil, "spec.resourceName is required"
	}
	w := &devWant{resource: c.Spec.ResourceName, node: c.Spec.NodeName, count: 1, sel: c.Spec.Selector}
	if c.Spec.Count != nil {
		w.count = int(*c.Spec.Count)
	}
	if w.count < 1 || w.count > 64 {
		return nil, fmt.Sprintf("spec.count %d is out of range: 1 to 64", w.count)
	}
	return w, ""
}

func (w *devWant) onNode(dp *devPool) bool { return w.node == "" || w.node == dp.node }

func (w *devWant) matches(d *devDevice) bool {
	for k, v := range w.sel {
		if got, ok := d.attrs[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func (w *devWant) describe() string {
	var b strings.Builder
	s := "s"
	if w.count == 1 {
		s = ""
	}
	fmt.Fprintf(&b, "%d device%s of %s", w.count, s, w.resource)
	if w.node != "" {
		fmt.Fprintf(&b, " on node %s", w.node)
	}
	keys := make([]string, 0, len(w.sel))
	for k := range w.sel {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i == 0 {
			b.WriteString(" matching ")
		} else {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "%s=%s", k, w.sel[k])
	}
	return b.String()
}

// fit: of dp's devices, how many the claim could ever use and how many of
// those are free now (healthy, not in used).
func (w *devWant) fit(dp *devPool, used map[string]bool) (fit, free int) {
	if !w.onNode(dp) {
		return 0, 0
	}
	if len(w.sel) == 0 {
		inUse := 0
		for id := range used {
			if d := dp.find(id); d != nil && d.healthy {
				inUse++
			}
		}
		return len(dp.devs), dp.nHealthy - inUse
	}
	for i := range dp.devs {
		d := &dp.devs[i]
		if !w.matches(d) {
			continue
		}
		fit++
		if d.healthy && !used[d.id] {
			free++
		}
	}
	return fit, free
}

// pick: a healthy matching device not in used or skip, from the claim's
// place (hash of its uid), or "".
func (w *devWant) pick(dp *devPool, uid string, used, skip map[string]bool) string {
	n := len(dp.devs)
	if n == 0 || !w.onNode(dp) {
		return ""
	}
	start := int(devHash(uid) % uint64(n))
	for k := 0; k < n; k++ {
		d := &dp.devs[(start+k)%n]
		if d.healthy && w.matches(d) && !used[d.id] && !skip[d.id] {
			return d.id
		}
	}
	return ""
}

type devView struct {
	name      string
	dp        *devPool
	deleting  bool
	fit, free int
}

// choosePool: the index of the pool for a claim that holds nothing, or the
// reason and message why none.
func (w *devWant) choosePool(views []devView, uid string) (int, string, string) {
	anyPool := false
	for i := range views {
		anyPool = anyPool || views[i].dp != nil
	}
	if anyPool {
		keys := make([]string, 0, len(w.sel))
		for k := range w.sel {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !keyKnown(views, k) {
				return -1, reasonInvalidSpec, fmt.Sprintf("spec.selector: no %s device has the attribute %s; check the attributes of the DevicePools of %s (kubectl get dp -o yaml)",
					w.resource, k, w.resource)
			}
		}
	}
	var fitting, could []int
	for i := range views {
		v := &views[i]
		if v.dp == nil || v.deleting || v.fit < w.count {
			continue
		}
		could = append(could, i)
		if v.free >= w.count {
			fitting = append(fitting, i)
		}
	}
	byName := func(ix []int) {
		sort.Slice(ix, func(a, b int) bool { return views[ix[a]].name < views[ix[b]].name })
	}
	if len(fitting) > 0 {
		byName(fitting)
		return fitting[devHash(uid)%uint64(len(fitting))], "", ""
	}
	byName(could)
	var b strings.Builder
	if len(could) > 0 {
		b.WriteString(w.describe())
		b.WriteString(" wanted; ")
		for i, ix := range could {
			if i == 5 {
				break
			}
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s has %d free", views[ix].name, views[ix].free)
		}
		b.WriteString("; waiting for devices to be freed or to appear")
		return -1, reasonInsufficient, b.String()
	}
	b.WriteString("no DevicePool can ever hold ")
	b.WriteString(w.describe())
	if len(views) == 0 {
		fmt.Fprintf(&b, ": there is no DevicePool of %s", w.resource)
	}
	for i := range views {
		if i == 5 {
			break
		}
		sep := "; "
		if i == 0 {
			sep = ": "
		}
		v := &views[i]
		switch {
		case v.dp == nil:
			fmt.Fprintf(&b, "%s%s has an invalid spec", sep, v.name)
		case v.deleting:
			fmt.Fprintf(&b, "%s%s is being deleted", sep, v.name)
		case !w.onNode(v.dp):
			fmt.Fprintf(&b, "%s%s is on another node", sep, v.name)
		default:
			fmt.Fprintf(&b, "%s%s has %d matching", sep, v.name, v.fit)
		}
	}
	return -1, reasonNoMatch, b.String()
}

func keyKnown(views []devView, key string) bool {
	for i := range views {
		if views[i].dp == nil {
			continue
		}
		for j := range views[i].dp.devs {
			if _, ok := views[i].dp.devs[j].attrs[key]; ok {
				return true
			}
		}
	}
	return false
}

// ---- state the device reconcilers share ----

type devInflight struct {
	slot, claimUID string
	at             time.Time
}

type devPace struct {
	since, turn, lastWrite time.Time
	rv                     string
}

type devState struct {
	mu         sync.Mutex
	inflight   map[string]map[string]devInflight // pool -> Reservation name -> entry
	parsed     map[string]*devPool               // pool name -> parsed at its rv
	problems   map[string][2]string              // pool name -> {rv, problem}
	pace       map[string]*devPace
	countsNext time.Time
}

func newDevState() *devState {
	return &devState{inflight: map[string]map[string]devInflight{}, parsed: map[string]*devPool{},
		problems: map[string][2]string{}, pace: map[string]*devPace{}}
}

// open: the parsed pool, parsed once per resourceVersion.
func (s *devState) open(p *DevicePool) (*devPool, string) {
	s.mu.Lock()
	if dp := s.parsed[p.Name]; dp != nil && dp.uid == string(p.UID) && dp.rv == p.ResourceVersion {
		s.mu.Unlock()
		return dp, ""
	}
	if pr, ok := s.problems[p.Name]; ok && pr[0] == string(p.UID)+"/"+p.ResourceVersion {
		s.mu.Unlock()
		return nil, pr[1]
	}
	s.mu.Unlock()
	dp, problem := parseDevPool(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	if dp != nil {
		s.parsed[p.Name] = dp
		delete(s.problems, p.Name)
	} else {
		delete(s.parsed, p.Name)
		s.problems[p.Name] = [2]string{string(p.UID) + "/" + p.ResourceVersion, problem}
	}
	return dp, problem
}

func (s *devState) forgetPool(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.parsed, name)
	delete(s.problems, name)
	delete(s.pace, name)
}

func (s *devState) addInflight(pool, name, slot, claimUID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.inflight[pool]
	if m == nil {
		m = map[string]devInflight{}
		s.inflight[pool] = m
	}
	m[name] = devInflight{slot: slot, claimUID: claimUID, at: time.Now()}
}

func (s *devState) dropInflight(pool, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.inflight[pool]; m != nil {
		delete(m, name)
	}
}

func (s *devState) dropInflightClaim(pool, claimUID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, e := range s.inflight[pool] {
		if e.claimUID == claimUID {
			delete(s.inflight[pool], name)
		}
	}
}

// inflightOf: the live entries of pool (expired ones dropped).
func (s *devState) inflightOf(pool string) map[string]devInflight {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.inflight[pool]
	out := make(map[string]devInflight, len(m))
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

// inflightOfClaim: the claim's entries in every pool.
func (s *devState) inflightOfClaim(claimUID string) []devHeld {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []devHeld
	now := time.Now()
	for pool, m := range s.inflight {
		for name, e := range m {
			if now.Sub(e.at) > inflightTTL {
				delete(m, name)
				continue
			}
			if e.claimUID == claimUID {
				out = append(out, devHeld{name: name, slot: e.slot, pool: pool})
			}
		}
	}
	return out
}

func (s *devState) paceOf(name string) *devPace {
	p := s.pace[name]
	if p == nil {
		p = &devPace{}
		s.pace[name] = p
	}
	return p
}

func (p *devPace) due() time.Time {
	due := p.since.Add(devPoolCoalesce)
	if !p.lastWrite.IsZero() && p.lastWrite.Add(poolWriteInterval).After(due) {
		due = p.lastWrite.Add(poolWriteInterval)
	}
	if p.turn.After(due) {
		due = p.turn
	}
	return due
}

// countsWaiting: while a count-only write of the pool waits and the cached
// pool is the version the wait began at, the rest of the wait (0: none).
func (s *devState) countsWaiting(name, rv string) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pace[name]
	if p == nil || p.since.IsZero() || p.rv != rv {
		return 0
	}
	return time.Until(p.due())
}

// countsWait: a count-only change of the pool (cached at rv): how long it
// still waits; when due it takes the domain's next turn (5 a second).
func (s *devState) countsWait(name, rv string, now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.paceOf(name)
	if p.since.IsZero() {
		p.since = now
	}
	p.rv = rv
	due := p.due()
	if !due.After(now) && p.turn.IsZero() {
		p.turn = now
		if s.countsNext.After(now) {
			p.turn = s.countsNext
		}
		s.countsNext = p.turn.Add(devPoolCountsEvery)
		due = p.due()
	}
	return due.Sub(now)
}

func (s *devState) countsSettled(name string, written bool, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pace[name]
	if p == nil && !written {
		return
	}
	p = s.paceOf(name)
	p.since, p.turn, p.rv = time.Time{}, time.Time{}, ""
	if written {
		p.lastWrite = now
	}
}
