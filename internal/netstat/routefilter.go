package netstat

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// RouteFilter is one Solaris -f keyword:value rule for -r. Rules with the
// same keyword are alternatives; rules with different keywords must all
// hold ("-f outif:eth0 -f outif:eth1 -f dst:10.0.0.0/8").
type RouteFilter struct {
	kind filterKind
	text string // the value as given

	any, none bool         // outif/dst/src: any or none
	iface     string       // outif
	prefix    netip.Prefix // dst/src: this prefix or a more specific one
	exact     string       // flags: exactly these letters (no sign)
	set, not  string       // flags: +letters set, -letters not set
}

type filterKind uint8

const (
	filterAF filterKind = iota
	filterOutIf
	filterDst
	filterSrc
	filterFlags
)

var filterNames = [...]string{filterAF: "af", filterOutIf: "outif", filterDst: "dst", filterSrc: "src", filterFlags: "flags"}

func (f RouteFilter) String() string { return filterNames[f.kind] + ":" + f.text }

// parseRouteFilter reads "keyword:value" (af, outif, dst, src, flags).
func parseRouteFilter(v string) (RouteFilter, error) {
	key, val, _ := strings.Cut(v, ":")
	f := RouteFilter{text: val}
	if val == "" {
		return f, fmt.Errorf("no value after %q", key+":")
	}
	switch key {
	case "af":
		f.kind = filterAF
	case "outif":
		f.kind = filterOutIf
		switch val {
		case "any":
			f.any = true
		case "none":
			f.none = true
		default:
			f.iface = val
			if idx, err := strconv.Atoi(val); err == nil {
				ifc, err := net.InterfaceByIndex(idx)
				if err != nil {
					return f, fmt.Errorf("no interface has index %d", idx)
				}
				f.iface = ifc.Name
			}
		}
	case "dst", "src":
		f.kind = filterDst
		if key == "src" {
			f.kind = filterSrc
		}
		switch val {
		case "any":
			f.any = true
		case "none":
			f.none = true
		default:
			p, err := netip.ParsePrefix(val)
			if err != nil {
				a, aerr := netip.ParseAddr(val)
				if aerr != nil {
					return f, fmt.Errorf("%q is not an address[/length], any or none", val)
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
			f.prefix = p.Masked()
		}
	case "inif":
		return f, fmt.Errorf("routes on Linux have no input interface; policy rules select by it (ip rule show iif IF)")
	case "flags":
		f.kind = filterFlags
		rest := val
		for rest != "" {
			sign := rest[0]
			if sign == '+' || sign == '-' {
				rest = rest[1:]
			} else {
				sign = 0
			}
			end := strings.IndexAny(rest, "+-")
			if end < 0 {
				end = len(rest)
			}
			letters := rest[:end]
			rest = rest[end:]
			if letters == "" {
				return f, fmt.Errorf("%q: a sign without flag letters", val)
			}
			switch sign {
			case '+':
				f.set += letters
			case '-':
				f.not += letters
			default:
				f.exact += letters
			}
		}
	default:
		return f, fmt.Errorf("unknown keyword %q (want af, outif, dst, src or flags)", key)
	}
	return f, nil
}

// routeKey is what a filter looks at in a row of either family.
type routeKey struct {
	dst, src netip.Prefix // src: the zero Prefix when the route has none
	iface    string
	flags    string
}

func (f *RouteFilter) match(k routeKey) bool {
	switch f.kind {
	case filterOutIf:
		none := k.iface == "" || k.iface == "*"
		switch {
		case f.any:
			return !none
		case f.none:
			return none
		}
		return k.iface == f.iface
	case filterDst, filterSrc:
		p := k.dst
		if f.kind == filterSrc {
			p = k.src
		}
		zero := !p.IsValid() || p.Addr().IsUnspecified()
		switch {
		case f.any:
			return !zero
		case f.none:
			return zero
		}
		return p.IsValid() && p.Addr().BitLen() == f.prefix.Addr().BitLen() && p.Bits() >= f.prefix.Bits() && f.prefix.Contains(p.Addr())
	case filterFlags:
		if f.exact != "" && !sameLetters(k.flags, f.exact) {
			return false
		}
		return allIn(f.set, k.flags) && !strings.ContainsAny(k.flags, f.not)
	}
	return true
}

func allIn(letters, s string) bool {
	for _, c := range letters {
		if !strings.ContainsRune(s, c) {
			return false
		}
	}
	return true
}

func sameLetters(a, b string) bool { return allIn(a, b) && allIn(b, a) }

// matchRoute applies every rule: alternatives within a keyword, all
// keywords together.
func matchRoute(filters []RouteFilter, k routeKey) bool {
	var seen, ok [len(filterNames)]bool
	for i := range filters {
		f := &filters[i]
		seen[f.kind] = true
		if f.match(k) {
			ok[f.kind] = true
		}
	}
	for kind := range seen {
		if seen[kind] && !ok[kind] {
			return false
		}
	}
	return true
}

func (r *Route) key() routeKey {
	ones := 0 // netmasks are contiguous
	for _, b := range r.Genmask.As4() {
		for ; b != 0; b <<= 1 {
			ones++
		}
	}
	return routeKey{dst: netip.PrefixFrom(r.Destination, ones), iface: r.Iface, flags: r.Flags}
}

func (r *Route6) key() routeKey {
	k := routeKey{dst: r.Destination, iface: r.Iface, flags: r.Flags}
	if r.Source.Bits() > 0 {
		k.src = r.Source
	}
	return k
}
