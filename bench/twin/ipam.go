package main

// The address arithmetic of an IPPool: which addresses are allocatable, how
// many there are, where a claim starts looking (a hash of its uid, like
// provisio's ipam_hint), and the Reservation name of an address.

import (
	"fmt"
	"math"
	"math/big"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

type span struct{ lo, hi *big.Int } // inclusive

type pool struct {
	prefix  netip.Prefix
	bits    int // 32 or 128
	lo, hi  *big.Int
	blocked []span // sorted, merged, inside [lo, hi]
	total   *big.Int
	gateway string
	routes  []Route
	network string // spec.network, "default" when unset: the lock's scope
}

func addrInt(a netip.Addr) *big.Int {
	b := a.AsSlice()
	return new(big.Int).SetBytes(b)
}

func intAddr(v *big.Int, bits int) netip.Addr {
	buf := make([]byte, bits/8)
	v.FillBytes(buf)
	a, _ := netip.AddrFromSlice(buf)
	return a
}

type poolError struct{ msg string }

func (e *poolError) Error() string { return e.msg }

func badPool(format string, args ...any) error { return &poolError{fmt.Sprintf(format, args...)} }

// parsePool checks an IPPool's spec; an error says why it cannot be used.
func parsePool(spec *IPPoolSpec) (*pool, error) {
	if spec.CIDR == "" {
		return nil, badPool("spec.cidr is missing: write a network such as 10.20.0.0/16")
	}
	pfx, err := netip.ParsePrefix(spec.CIDR)
	if err != nil {
		return nil, badPool("spec.cidr %s is not a CIDR", spec.CIDR)
	}
	if pfx.Masked() != pfx {
		return nil, badPool("spec.cidr %s has host bits set (write %s)", spec.CIDR, pfx.Masked())
	}
	p := &pool{prefix: pfx, bits: pfx.Addr().BitLen(), gateway: spec.Gateway, routes: spec.Routes, network: networkOf(spec)}
	one := big.NewInt(1)
	netLo := addrInt(pfx.Addr())
	size := new(big.Int).Lsh(one, uint(p.bits-pfx.Bits()))
	netHi := new(big.Int).Sub(new(big.Int).Add(netLo, size), one)
	p.lo, p.hi = new(big.Int).Set(netLo), new(big.Int).Set(netHi)
	inCIDR := func(field, s string) (*big.Int, error) {
		a, err := netip.ParseAddr(s)
		if err != nil || a.BitLen() != p.bits || !pfx.Contains(a) {
			return nil, badPool("spec.%s %s is not an address inside %s", field, s, spec.CIDR)
		}
		return addrInt(a), nil
	}
	if spec.RangeStart != "" {
		if p.lo, err = inCIDR("rangeStart", spec.RangeStart); err != nil {
			return nil, err
		}
	}
	if spec.RangeEnd != "" {
		if p.hi, err = inCIDR("rangeEnd", spec.RangeEnd); err != nil {
			return nil, err
		}
	}
	if p.lo.Cmp(p.hi) > 0 {
		return nil, badPool("spec.rangeStart %s is after spec.rangeEnd %s", spec.RangeStart, spec.RangeEnd)
	}
	var blocked []span
	block := func(lo, hi *big.Int) { blocked = append(blocked, span{lo, hi}) }
	if p.bits == 32 && pfx.Bits() <= 30 {
		block(netLo, netLo)
		block(netHi, netHi)
	}
	if p.bits == 128 && pfx.Bits() <= 126 {
		block(netLo, netLo) // subnet-router anycast
	}
	if spec.Gateway != "" {
		g, err := inCIDR("gateway", spec.Gateway)
		if err != nil {
			return nil, err
		}
		block(g, g)
	}
	for _, e := range spec.Exclude {
		if strings.Contains(e, "/") {
			ep, err := netip.ParsePrefix(e)
			if err != nil || ep.Addr().BitLen() != p.bits {
				return nil, badPool("spec.exclude entry %s is not a CIDR of the pool's family", e)
			}
			ep = ep.Masked()
			l := addrInt(ep.Addr())
			h := new(big.Int).Sub(new(big.Int).Add(l, new(big.Int).Lsh(one, uint(p.bits-ep.Bits()))), one)
			block(l, h)
		} else {
			a, err := netip.ParseAddr(e)
			if err != nil || a.BitLen() != p.bits {
				return nil, badPool("spec.exclude entry %s is not an address of the pool's family", e)
			}
			v := addrInt(a)
			block(v, v)
		}
	}
	// Clip to [lo, hi], sort, merge.
	var clipped []span
	for _, s := range blocked {
		l, h := s.lo, s.hi
		if l.Cmp(p.lo) < 0 {
			l = p.lo
		}
		if h.Cmp(p.hi) > 0 {
			h = p.hi
		}
		if l.Cmp(h) <= 0 {
			clipped = append(clipped, span{new(big.Int).Set(l), new(big.Int).Set(h)})
		}
	}
	sort.Slice(clipped, func(i, j int) bool { return clipped[i].lo.Cmp(clipped[j].lo) < 0 })
	for _, s := range clipped {
		n := len(p.blocked)
		if n > 0 && s.lo.Cmp(new(big.Int).Add(p.blocked[n-1].hi, one)) <= 0 {
			if s.hi.Cmp(p.blocked[n-1].hi) > 0 {
				p.blocked[n-1].hi = s.hi
			}
			continue
		}
		p.blocked = append(p.blocked, s)
	}
	p.total = new(big.Int).Add(new(big.Int).Sub(p.hi, p.lo), one)
	for _, s := range p.blocked {
		p.total.Sub(p.total, new(big.Int).Add(new(big.Int).Sub(s.hi, s.lo), one))
	}
	return p, nil
}

func (p *pool) totalInt64() int64 {
	if p.total.IsInt64() {
		return p.total.Int64()
	}
	return math.MaxInt64
}

// blockedAt: the blocked span holding v, or nil.
func (p *pool) blockedAt(v *big.Int) *span {
	i := sort.Search(len(p.blocked), func(i int) bool { return p.blocked[i].hi.Cmp(v) >= 0 })
	if i < len(p.blocked) && p.blocked[i].lo.Cmp(v) <= 0 {
		return &p.blocked[i]
	}
	return nil
}

// check says why a is not allocatable ("" when it is) and whether that is
// InvalidSpec (other family, outside the cidr) rather than AddressUnavailable.
func (p *pool) check(a netip.Addr) (why string, invalid bool) {
	if a.BitLen() != p.bits {
		return fmt.Sprintf("%s is not of the address family of the pool's cidr %s", a, p.prefix), true
	}
	if !p.prefix.Contains(a) {
		return fmt.Sprintf("%s is outside the pool's cidr %s", a, p.prefix), true
	}
	v := addrInt(a)
	if v.Cmp(p.lo) < 0 || v.Cmp(p.hi) > 0 {
		return fmt.Sprintf("%s is outside the pool's range %s to %s", a, intAddr(p.lo, p.bits), intAddr(p.hi, p.bits)), false
	}
	if p.blockedAt(v) != nil {
		switch {
		case a.String() == p.gateway:
			return fmt.Sprintf("%s is the pool's gateway and is never allocated", a), false
		case a == p.prefix.Addr():
			return fmt.Sprintf("%s is the network address of %s and is never allocated", a, p.prefix), false
		}
		return fmt.Sprintf("%s is in the pool's exclude list or is the broadcast address and is never allocated", a), false
	}
	return "", false
}

// hint: where the claim with this uid starts looking (FNV-1a + splitmix64,
// the same mix as provisio's ipam_hint), as an offset from lo.
func (p *pool) hint(uid string) *big.Int {
	h := uint64(0xcbf29ce484222325)
	for i := 0; i < len(uid); i++ {
		h = (h ^ uint64(uid[i])) * 0x100000001b3
	}
	z := h + 0x632be59bd9b4e019
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	spanSize := new(big.Int).Add(new(big.Int).Sub(p.hi, p.lo), big.NewInt(1))
	return new(big.Int).Mod(new(big.Int).SetUint64(z), spanSize)
}

// nextFree walks from lo+offset (wrapping) to the first allocatable address
// taken() says is free; false when every allocatable address is taken.
func (p *pool) nextFree(offset *big.Int, taken func(netip.Addr) bool) (netip.Addr, bool) {
	one := big.NewInt(1)
	spanSize := new(big.Int).Add(new(big.Int).Sub(p.hi, p.lo), one)
	v := new(big.Int).Add(p.lo, offset)
	seen := new(big.Int)
	for seen.Cmp(spanSize) < 0 {
		if v.Cmp(p.hi) > 0 {
			v.Set(p.lo)
		}
		if b := p.blockedAt(v); b != nil {
			skip := new(big.Int).Add(new(big.Int).Sub(b.hi, v), one)
			seen.Add(seen, skip)
			v = new(big.Int).Add(b.hi, one)
			continue
		}
		a := intAddr(v, p.bits)
		if !taken(a) {
			return a, true
		}
		seen.Add(seen, one)
		v.Add(v, one)
	}
	return netip.Addr{}, false
}

// cidrForm: "10.20.0.5/16", the address with the pool's prefix length.
func (p *pool) cidrForm(a netip.Addr) string {
	return a.String() + "/" + strconv.Itoa(p.prefix.Bits())
}

// networkOf: the pool's spec.network, "default" when unset (the CRD's
// default).
func networkOf(spec *IPPoolSpec) string {
	if spec.Network == "" {
		return "default"
	}
	return spec.Network
}

// reservationName: ipnet.<network>.<address>, IPv4 with '-' for '.', IPv6 as
// its 8 groups without leading zeros joined by '-': an address is locked once
// per network, whichever of the network's pools it is taken through.
func reservationName(network string, a netip.Addr) string {
	if a.Is4() {
		return "ipnet." + network + "." + strings.ReplaceAll(a.String(), ".", "-")
	}
	b := a.As16()
	groups := make([]string, 8)
	for i := 0; i < 8; i++ {
		groups[i] = strconv.FormatUint(uint64(b[2*i])<<8|uint64(b[2*i+1]), 16)
	}
	return "ipnet." + network + "." + strings.Join(groups, "-")
}
