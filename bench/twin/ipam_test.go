package main

import (
	"net/netip"
	"testing"
)

func TestReservationName(t *testing.T) {
	for _, c := range []struct{ addr, want string }{
		{"10.20.0.5", "ipnet.p.10-20-0-5"},
		{"fd00:10::5", "ipnet.p.fd00-10-0-0-0-0-0-5"},
		{"::1", "ipnet.p.0-0-0-0-0-0-0-1"},
	} {
		if got := reservationName("p", netip.MustParseAddr(c.addr)); got != c.want {
			t.Errorf("%s: %s, want %s", c.addr, got, c.want)
		}
	}
}

func TestPoolTotalAndWalk(t *testing.T) {
	p, err := parsePool(&IPPoolSpec{CIDR: "10.20.0.0/24", Gateway: "10.20.0.1", Exclude: []string{"10.20.0.128/25", "10.20.0.10"}})
	if err != nil {
		t.Fatal(err)
	}
	// .2-.127 without .10
	if p.totalInt64() != 125 {
		t.Fatalf("total %d, want 125", p.totalInt64())
	}
	seen := map[netip.Addr]bool{}
	for {
		a, ok := p.nextFree(p.hint("x"), func(a netip.Addr) bool { return seen[a] })
		if !ok {
			break
		}
		if why, _ := p.check(a); why != "" {
			t.Fatalf("handed out %s: %s", a, why)
		}
		seen[a] = true
	}
	if len(seen) != 125 {
		t.Fatalf("handed out %d, want 125", len(seen))
	}
	if _, err := parsePool(&IPPoolSpec{CIDR: "10.20.0.1/24"}); err == nil {
		t.Fatal("host bits accepted")
	}
	v6, err := parsePool(&IPPoolSpec{CIDR: "fd00::/64"})
	if err != nil || v6.total.String() != "18446744073709551615" {
		t.Fatalf("fd00::/64: %v %v", err, v6)
	}
}
