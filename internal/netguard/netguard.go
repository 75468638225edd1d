// Package netguard is keyhole's SSRF guard (SPEC §3.6): an upstream whose
// address is loopback, private, link-local, CGNAT, a cloud metadata address,
// unspecified, multicast or otherwise not a public unicast address is
// refused — when the proxy is saved, and again at every dial, so that a DNS
// answer that changes after the check (rebinding) still cannot reach an
// internal address. IPv4-mapped IPv6 addresses and the IPv6 transition
// prefixes that embed an IPv4 address are judged by that IPv4 address.
//
// A node started with --allow-upstream-cidr lets chosen ranges through
// (tests use 127.0.0.0/8; a deployment might allow one internal API).
package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// blocked are the ranges an upstream may not resolve to (unless allowed).
var blocked = mustPrefixes(
	"0.0.0.0/8",       // "this network", unspecified (RFC 791)
	"10.0.0.0/8",      // private (RFC 1918)
	"100.64.0.0/10",   // CGNAT (RFC 6598)
	"127.0.0.0/8",     // loopback
	"169.254.0.0/16",  // link-local, cloud metadata 169.254.169.254
	"172.16.0.0/12",   // private
	"192.0.0.0/24",    // IETF protocol assignments (RFC 6890)
	"192.0.2.0/24",    // TEST-NET-1
	"192.88.99.0/24",  // 6to4 relay anycast (deprecated)
	"192.168.0.0/16",  // private
	"198.18.0.0/15",   // benchmarking
	"198.51.100.0/24", // TEST-NET-2
	"203.0.113.0/24",  // TEST-NET-3
	"224.0.0.0/4",     // multicast
	"240.0.0.0/4",     // reserved, broadcast
	"::/128",          // unspecified
	"::1/128",         // loopback
	"::/96",           // IPv4-compatible (deprecated)
	"100::/64",        // discard-only
	"2001::/32",       // Teredo: embeds an obfuscated IPv4 address
	"2001:db8::/32",   // documentation
	"fc00::/7",        // unique local, incl. AWS metadata fd00:ec2::254
	"fe80::/10",       // link-local
	"fec0::/10",       // site-local (deprecated)
	"ff00::/8",        // multicast
)

var (
	nat64  = netip.MustParsePrefix("64:ff9b::/96")   // RFC 6052: IPv4 in the low 32 bits
	nat64l = netip.MustParsePrefix("64:ff9b:1::/48") // RFC 8215 local-use NAT64
	sixto4 = netip.MustParsePrefix("2002::/16")      // RFC 3056: IPv4 in bits 16–48
)

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// Guard decides which upstream addresses may be dialled.
type Guard struct {
	allow []netip.Prefix
	// Resolver is used by CheckHost; nil means net.DefaultResolver.
	Resolver *net.Resolver
}

// New returns a guard that also allows the given CIDR ranges.
func New(allow []string) (*Guard, error) {
	g := &Guard{}
	for _, s := range allow {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			if a, err2 := netip.ParseAddr(strings.TrimSpace(s)); err2 == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			} else {
				return nil, fmt.Errorf("--allow-upstream-cidr %q is not a CIDR range such as 10.1.0.0/16", s)
			}
		}
		g.allow = append(g.allow, p.Masked())
	}
	return g, nil
}

// Allowed lists the extra ranges.
func (g *Guard) Allowed() []netip.Prefix { return g.allow }

// ErrBlocked is returned for a refused address; its message says how to
// allow the range on purpose.
type ErrBlocked struct {
	Addr netip.Addr
	Why  string
}

func (e *ErrBlocked) Error() string {
	return fmt.Sprintf("upstream address %s is %s; keyhole refuses it (SSRF guard) unless the node is started with --allow-upstream-cidr covering it", e.Addr, e.Why)
}

// CheckAddr refuses an address in a blocked range that no allowed range covers.
func (g *Guard) CheckAddr(a netip.Addr) error {
	a = a.Unmap()
	for _, p := range g.allow {
		if p.Contains(a) {
			return nil
		}
	}
	if why := classify(a); why != "" {
		return &ErrBlocked{Addr: a, Why: why}
	}
	// IPv6 transition forms embed an IPv4 address: judge that one too.
	if v4, ok := embedded(a); ok {
		for _, p := range g.allow {
			if p.Contains(v4) {
				return nil
			}
		}
		if why := classify(v4); why != "" {
			return &ErrBlocked{Addr: a, Why: why + " (embedded in an IPv6 address)"}
		}
	}
	return nil
}

func classify(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "not a valid address"
	case a.IsUnspecified():
		return "unspecified"
	case a.IsLoopback():
		return "loopback"
	case a.Is4() && a.As4() == [4]byte{169, 254, 169, 254}:
		return "a cloud metadata address"
	case a.IsLinkLocalUnicast():
		return "link-local"
	case a.IsPrivate():
		return "private"
	case a.IsMulticast() || a.IsInterfaceLocalMulticast() || a.IsLinkLocalMulticast():
		return "multicast"
	}
	for _, p := range blocked {
		if p.Contains(a) {
			return "not a public address (" + p.String() + ")"
		}
	}
	return ""
}

func embedded(a netip.Addr) (netip.Addr, bool) {
	if !a.Is6() {
		return netip.Addr{}, false
	}
	b := a.As16()
	switch {
	case nat64.Contains(a), nat64l.Contains(a):
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
	case sixto4.Contains(a):
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), true
	}
	return netip.Addr{}, false
}

// numericHost matches hosts that some resolvers read as IPv4 numbers in
// decimal, octal or hex forms (2130706433, 0x7f.1, 017700000001): they are
// refused outright, since what they mean depends on who parses them.
func numericHost(h string) bool {
	if h == "" {
		return false
	}
	for _, part := range strings.Split(h, ".") {
		if part == "" {
			continue
		}
		p := strings.ToLower(part)
		if strings.HasPrefix(p, "0x") {
			p = p[2:]
			if p == "" || strings.Trim(p, "0123456789abcdef") != "" {
				return false
			}
			continue
		}
		if strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}

// CheckHost checks a host as written in an upstream URL, at save time: an
// IP literal is checked directly; a numeric non-canonical form is refused;
// a name is resolved and every address checked. A name that does not
// resolve (yet) is accepted: the dial-time check is the one that holds.
func (g *Guard) CheckHost(ctx context.Context, host string) error {
	h := strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if i := strings.IndexByte(h, '%'); i >= 0 { // zone: fe80::1%eth0
		h = h[:i]
	}
	if a, err := netip.ParseAddr(h); err == nil {
		return g.CheckAddr(a)
	}
	if numericHost(h) {
		return fmt.Errorf("upstream host %q is a number that resolvers read as an IPv4 address in different ways; write the address in dotted decimal", host)
	}
	if strings.EqualFold(h, "localhost") || strings.HasSuffix(strings.ToLower(h), ".localhost") {
		if err := g.CheckAddr(netip.MustParseAddr("127.0.0.1")); err != nil {
			return err
		}
	}
	r := g.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	addrs, err := r.LookupNetIP(ctx, "ip", h)
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if err := g.CheckAddr(a); err != nil {
			return err
		}
	}
	return nil
}

// Control is a net.Dialer Control function: it runs after DNS resolution,
// on the exact address about to be connected, so every dial is checked.
func (g *Guard) Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("upstream dial to an unparsable address refused")
	}
	return g.CheckAddr(ap.Addr())
}

// IsBlocked reports whether err (from a dial) came from the guard.
func IsBlocked(err error) bool {
	var b *ErrBlocked
	return errors.As(err, &b)
}
