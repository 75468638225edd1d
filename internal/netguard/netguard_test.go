package netguard_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyhole-gw/keyhole/internal/netguard"
)

func mustGuard(t *testing.T, allow ...string) *netguard.Guard {
	t.Helper()
	g, err := netguard.New(allow)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestCheckAddr pins every blocked class of SPEC §3.6, also in the forms
// that smuggle an IPv4 address inside IPv6 (mapped, compatible, NAT64,
// 6to4, Teredo), and that public addresses pass.
func TestCheckAddr(t *testing.T) {
	tests := []struct {
		name      string
		addr      string
		allow     []string
		wantBlock bool
	}{
		// IPv4 classes.
		{name: "this network", addr: "0.1.2.3", wantBlock: true},
		{name: "unspecified v4", addr: "0.0.0.0", wantBlock: true},
		{name: "private 10/8", addr: "10.1.2.3", wantBlock: true},
		{name: "CGNAT low", addr: "100.64.0.1", wantBlock: true},
		{name: "CGNAT high", addr: "100.127.255.254", wantBlock: true},
		{name: "loopback", addr: "127.0.0.1", wantBlock: true},
		{name: "loopback, other address", addr: "127.255.255.254", wantBlock: true},
		{name: "cloud metadata", addr: "169.254.169.254", wantBlock: true},
		{name: "link-local", addr: "169.254.0.1", wantBlock: true},
		{name: "private 172.16/12 low", addr: "172.16.0.1", wantBlock: true},
		{name: "private 172.16/12 high", addr: "172.31.255.255", wantBlock: true},
		{name: "IETF protocol assignments", addr: "192.0.0.170", wantBlock: true},
		{name: "TEST-NET-1", addr: "192.0.2.1", wantBlock: true},
		{name: "6to4 relay anycast", addr: "192.88.99.1", wantBlock: true},
		{name: "private 192.168/16", addr: "192.168.1.1", wantBlock: true},
		{name: "benchmarking", addr: "198.19.0.1", wantBlock: true},
		{name: "TEST-NET-2", addr: "198.51.100.7", wantBlock: true},
		{name: "TEST-NET-3", addr: "203.0.113.9", wantBlock: true},
		{name: "multicast", addr: "224.0.0.251", wantBlock: true},
		{name: "SSDP multicast", addr: "239.255.255.250", wantBlock: true},
		{name: "reserved", addr: "240.0.0.1", wantBlock: true},
		{name: "broadcast", addr: "255.255.255.255", wantBlock: true},
		// IPv6 classes.
		{name: "unspecified v6", addr: "::", wantBlock: true},
		{name: "loopback v6", addr: "::1", wantBlock: true},
		{name: "discard-only", addr: "100::1", wantBlock: true},
		{name: "documentation", addr: "2001:db8::1", wantBlock: true},
		{name: "unique local", addr: "fc00::1", wantBlock: true},
		{name: "AWS IPv6 metadata", addr: "fd00:ec2::254", wantBlock: true},
		{name: "link-local v6", addr: "fe80::1", wantBlock: true},
		{name: "site-local", addr: "fec0::1", wantBlock: true},
		{name: "multicast v6", addr: "ff02::1", wantBlock: true},
		// IPv4 inside IPv6.
		{name: "IPv4-mapped metadata", addr: "::ffff:169.254.169.254", wantBlock: true},
		{name: "IPv4-mapped loopback", addr: "::ffff:127.0.0.1", wantBlock: true},
		{name: "IPv4-mapped private", addr: "::ffff:10.0.0.1", wantBlock: true},
		{name: "IPv4-compatible loopback", addr: "::127.0.0.1", wantBlock: true},
		{name: "IPv4-compatible metadata", addr: "::a9fe:a9fe", wantBlock: true},
		{name: "NAT64 metadata", addr: "64:ff9b::a9fe:a9fe", wantBlock: true},
		{name: "NAT64 loopback", addr: "64:ff9b::7f00:1", wantBlock: true},
		{name: "local-use NAT64 metadata", addr: "64:ff9b:1::a9fe:a9fe", wantBlock: true},
		{name: "6to4 metadata", addr: "2002:a9fe:a9fe::", wantBlock: true},
		{name: "6to4 private", addr: "2002:0a00:0001::1", wantBlock: true},
		{name: "Teredo", addr: "2001:0:4136:e378:8000:63bf:3fff:fdd2", wantBlock: true},
		{name: "Teredo embedding the metadata address", addr: "2001:0:4136:e378:8000:63bf:5601:5601", wantBlock: true},
		// Public addresses pass.
		{name: "public v4", addr: "8.8.8.8"},
		{name: "public v4, other", addr: "93.184.216.34"},
		{name: "just above 172.16/12", addr: "172.32.0.1"},
		{name: "just above CGNAT", addr: "100.128.0.1"},
		{name: "just below link-local", addr: "169.253.255.255"},
		{name: "public v6", addr: "2606:4700:4700::1111"},
		{name: "IPv4-mapped public", addr: "::ffff:8.8.8.8"},
		{name: "NAT64 of a public address", addr: "64:ff9b::808:808"},
		{name: "6to4 of a public address", addr: "2002:808:808::1"},
		// --allow-upstream-cidr overrides, for exactly its range.
		{name: "allowed loopback", addr: "127.0.0.1", allow: []string{"127.0.0.0/8"}},
		{name: "allowed loopback, mapped", addr: "::ffff:127.0.0.1", allow: []string{"127.0.0.0/8"}},
		{name: "allowed loopback, NAT64", addr: "64:ff9b::7f00:1", allow: []string{"127.0.0.0/8"}},
		{name: "allowance does not cover ::1", addr: "::1", allow: []string{"127.0.0.0/8"}, wantBlock: true},
		{name: "allowance does not cover metadata", addr: "169.254.169.254", allow: []string{"127.0.0.0/8"}, wantBlock: true},
		{name: "allowed internal range", addr: "10.1.2.3", allow: []string{"10.1.0.0/16"}},
		{name: "next to the allowed range", addr: "10.2.0.1", allow: []string{"10.1.0.0/16"}, wantBlock: true},
		{name: "allowed single address", addr: "192.168.7.7", allow: []string{"192.168.7.7"}},
		{name: "allowed v6 range", addr: "fd00:ec2::10", allow: []string{"fd00:ec2::/32"}},
		{name: "unmasked allowance is masked", addr: "10.9.0.1", allow: []string{"10.9.8.7/16"}},
		{name: "allowance with spaces", addr: "10.9.0.1", allow: []string{" 10.9.0.0/16 "}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := mustGuard(t, tc.allow...)
			err := g.CheckAddr(netip.MustParseAddr(tc.addr))
			if got := err != nil; got != tc.wantBlock {
				t.Fatalf("CheckAddr(%s) allow %v = %v, want blocked %v", tc.addr, tc.allow, err, tc.wantBlock)
			}
			if err == nil {
				return
			}
			if !netguard.IsBlocked(err) {
				t.Errorf("IsBlocked(%v) = false", err)
			}
			if !strings.Contains(err.Error(), "--allow-upstream-cidr") {
				t.Errorf("the error should say how to allow a range on purpose: %v", err)
			}
		})
	}
}

func TestNewRefusesBadRanges(t *testing.T) {
	for _, s := range []string{"", "10.0.0.0/33", "not-a-cidr", "10.0.0.0/8/8", "::1/129"} {
		if _, err := netguard.New([]string{s}); err == nil {
			t.Errorf("New(%q) accepted a range that does not parse", s)
		} else if !strings.Contains(err.Error(), "--allow-upstream-cidr") {
			t.Errorf("New(%q): the error should name the flag: %v", s, err)
		}
	}
}

// TestCheckHost pins the save-time check of hosts as written in upstream
// URLs: IP literals in every form, numeric hosts that resolvers read in
// different ways, localhost, and names through a resolver (a fake one, so
// no network is used).
func TestCheckHost(t *testing.T) {
	res := newFakeDNS(map[string][][]string{
		"public.test":   {{"93.184.216.34"}},
		"internal.test": {{"10.0.0.5"}},
		"mixed.test":    {{"93.184.216.34", "169.254.169.254"}},
		"v6meta.test":   {{"fd00:ec2::254"}},
		"v6public.test": {{"2606:4700:4700::1111"}},
		"mapped.test":   {{"::ffff:127.0.0.1"}},
	})
	tests := []struct {
		host      string
		allow     []string
		wantBlock bool
	}{
		{host: "169.254.169.254", wantBlock: true},
		{host: "[::1]", wantBlock: true},
		{host: "::1", wantBlock: true},
		{host: "[::ffff:169.254.169.254]", wantBlock: true},
		{host: "[64:ff9b::a9fe:a9fe]", wantBlock: true},
		{host: "fe80::1%eth0", wantBlock: true},
		{host: "2130706433", wantBlock: true},
		{host: "0x7f000001", wantBlock: true},
		{host: "0X7F000001", wantBlock: true},
		{host: "017700000001", wantBlock: true},
		{host: "0x7f.1", wantBlock: true},
		{host: "127.1", wantBlock: true},
		{host: "0177.0.0.1", wantBlock: true},
		{host: "2852039166", wantBlock: true},                                 // 169.254.169.254
		{host: "2130706433", allow: []string{"127.0.0.0/8"}, wantBlock: true}, // ambiguous forms are refused even when the range is allowed
		{host: "localhost", wantBlock: true},
		{host: "LOCALHOST.", wantBlock: true},
		{host: "api.localhost", wantBlock: true},
		{host: "127.0.0.1", allow: []string{"127.0.0.0/8"}},
		{host: "8.8.8.8"},
		{host: "public.test"},
		{host: "v6public.test"},
		{host: "PUBLIC.TEST."},
		{host: "internal.test", wantBlock: true},
		{host: "mixed.test", wantBlock: true}, // one internal address among public ones is enough
		{host: "v6meta.test", wantBlock: true},
		{host: "mapped.test", wantBlock: true},
		{host: "internal.test", allow: []string{"10.0.0.0/24"}},
		{host: "nx.test"}, // does not resolve (yet): the dial-time check is the one that holds
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			g := mustGuard(t, tc.allow...)
			g.Resolver = res.resolver()
			err := g.CheckHost(context.Background(), tc.host)
			if got := err != nil; got != tc.wantBlock {
				t.Errorf("CheckHost(%q) allow %v = %v, want blocked %v", tc.host, tc.allow, err, tc.wantBlock)
			}
		})
	}
}

// TestControl pins the dial-time check on the exact address connected.
func TestControl(t *testing.T) {
	g := mustGuard(t)
	tests := []struct {
		address   string
		wantBlock bool
		wantErr   bool
	}{
		{"127.0.0.1:80", true, true},
		{"[::1]:443", true, true},
		{"[::ffff:169.254.169.254]:80", true, true},
		{"[fe80::1%25eth0]:80", true, true},
		{"8.8.8.8:53", false, false},
		{"[2606:4700:4700::1111]:443", false, false},
		{"garbage", false, true},
		{"", false, true},
	}
	for _, tc := range tests {
		err := g.Control("tcp", tc.address, nil)
		if (err != nil) != tc.wantErr || netguard.IsBlocked(err) != tc.wantBlock {
			t.Errorf("Control(%q) = %v, want error %v, blocked %v", tc.address, err, tc.wantErr, tc.wantBlock)
		}
	}
}

// TestDNSRebindingIsRefusedAtDial is the rebinding attack: a name answers
// with a public address when the proxy is saved (CheckHost passes), then
// with 127.0.0.1 when keyhole connects. The dialer's Control runs on the
// address actually dialled, so the connection is refused and the loopback
// listener never sees it; a guard that allows 127.0.0.0/8 connects (the
// control that proves the setup dials what it says).
func TestDNSRebindingIsRefusedAtDial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	accepted := 0
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted++
			mu.Unlock()
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())

	for _, tc := range []struct {
		name      string
		allow     []string
		wantBlock bool
	}{
		{"without the allowance", nil, true},
		{"with 127.0.0.0/8 allowed", []string{"127.0.0.0/8"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// First answer public, every later one loopback.
			dns := newFakeDNS(map[string][][]string{"rebind.test": {{"93.184.216.34"}, {"127.0.0.1"}}})
			g := mustGuard(t, tc.allow...)
			g.Resolver = dns.resolver()
			if err := g.CheckHost(context.Background(), "rebind.test"); err != nil {
				t.Fatalf("save-time check: rebind.test answers a public address first, want accepted, got %v", err)
			}
			mu.Lock()
			before := accepted
			mu.Unlock()
			d := &net.Dialer{Timeout: 5 * time.Second, Resolver: dns.resolver(), Control: g.Control}
			c, err := d.DialContext(context.Background(), "tcp4", net.JoinHostPort("rebind.test", port))
			if c != nil {
				c.Close()
			}
			if tc.wantBlock {
				if !netguard.IsBlocked(err) {
					t.Fatalf("dialling rebind.test once it resolves to 127.0.0.1 → want the guard's refusal, got %v", err)
				}
				mu.Lock()
				defer mu.Unlock()
				if accepted != before {
					t.Errorf("the loopback listener accepted a connection the guard refused")
				}
				return
			}
			if err != nil {
				t.Fatalf("with 127.0.0.0/8 allowed the dial must connect: %v", err)
			}
		})
	}
}

// fakeDNS answers DNS queries over an in-memory stream connection (the
// resolver's TCP framing), so resolution needs no network. Each name has a
// list of answer sets: the n-th query for a name gets the n-th set (the
// last one repeats), which is how a rebinding name behaves. Unknown names
// are NXDOMAIN.
type fakeDNS struct {
	mu      sync.Mutex
	answers map[string][][]string
	asked   map[string]int // lookups per name (A and AAAA count as one)
}

func newFakeDNS(answers map[string][][]string) *fakeDNS {
	return &fakeDNS{answers: answers, asked: map[string]int{}}
}

func (f *fakeDNS) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
		c, s := net.Pipe()
		go f.serve(s)
		return c, nil
	}}
}

func (f *fakeDNS) lookup(name string, qtype uint16) ([]netip.Addr, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sets, ok := f.answers[name]
	if !ok {
		return nil, false
	}
	i := f.asked[name]
	if qtype == 28 { // AAAA follows A for the same lookup
		i = max(0, i-1)
	} else {
		f.asked[name]++
	}
	set := sets[min(i, len(sets)-1)]
	var out []netip.Addr
	for _, s := range set {
		a := netip.MustParseAddr(s)
		if a.Is4() && qtype == 1 || !a.Is4() && qtype == 28 {
			out = append(out, a)
		}
	}
	return out, true
}

func (f *fakeDNS) serve(c net.Conn) {
	defer c.Close()
	for {
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return
		}
		msg := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, msg); err != nil || len(msg) < 12 {
			return
		}
		i := 12
		var labels []string
		for i < len(msg) && msg[i] != 0 {
			n := int(msg[i])
			labels = append(labels, string(msg[i+1:i+1+n]))
			i += 1 + n
		}
		qtype := binary.BigEndian.Uint16(msg[i+1:])
		qend := i + 5
		addrs, known := f.lookup(strings.ToLower(strings.Join(labels, ".")), qtype)
		resp := append([]byte{}, msg[:2]...)
		flags := uint16(0x8180) // response, recursion desired and available
		if !known {
			flags |= 3 // NXDOMAIN
		}
		resp = binary.BigEndian.AppendUint16(resp, flags)
		resp = binary.BigEndian.AppendUint16(resp, 1)
		resp = binary.BigEndian.AppendUint16(resp, uint16(len(addrs)))
		resp = append(resp, 0, 0, 0, 0)
		resp = append(resp, msg[12:qend]...)
		for _, a := range addrs {
			resp = append(resp, 0xc0, 0x0c)
			resp = binary.BigEndian.AppendUint16(resp, qtype)
			resp = binary.BigEndian.AppendUint16(resp, 1)
			resp = binary.BigEndian.AppendUint32(resp, 1)
			b := a.AsSlice()
			resp = binary.BigEndian.AppendUint16(resp, uint16(len(b)))
			resp = append(resp, b...)
		}
		out := binary.BigEndian.AppendUint16(nil, uint16(len(resp)))
		if _, err := c.Write(append(out, resp...)); err != nil {
			return
		}
	}
}
