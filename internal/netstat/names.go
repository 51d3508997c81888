package netstat

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"time"
)

// hostLookupBudget bounds all reverse lookups of one listing: after it is
// spent every further address prints numerically, so a dead resolver
// costs at most this long, never a hang.
const hostLookupBudget = 2 * time.Second

// hostLookupTimeout bounds one reverse lookup.
const hostLookupTimeout = 250 * time.Millisecond

// names turns addresses, ports and uids into names, with caches. The zero
// value resolves nothing until load is called.
type names struct {
	mu       sync.Mutex
	hosts    map[netip.Addr]string
	services map[servKey]string
	users    map[uint32]string
	spent    time.Duration
	resolver *net.Resolver
}

type servKey struct {
	port  uint16
	proto string
}

func newNames() *names {
	return &names{
		hosts:    make(map[netip.Addr]string),
		users:    make(map[uint32]string),
		resolver: net.DefaultResolver,
	}
}

// host returns the name of a, or its numeric form when no name is known
// in time.
func (n *names) host(ctx context.Context, a netip.Addr) string {
	if a.IsUnspecified() {
		if a.Is6() {
			return "[::]" // as net-tools' INET6_rresolve names it
		}
		return a.String()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if h, ok := n.hosts[a]; ok {
		return h
	}
	name := a.String()
	if n.spent < hostLookupBudget {
		start := time.Now()
		lctx, cancel := context.WithTimeout(ctx, hostLookupTimeout)
		found, err := n.resolver.LookupAddr(lctx, a.String())
		cancel()
		n.spent += time.Since(start)
		if err == nil && len(found) > 0 {
			name = strings.TrimSuffix(found[0], ".")
		}
	}
	n.hosts[a] = name
	return name
}

// service returns /etc/services' name for port/proto, or the number; 0
// is "*" as netstat prints it.
func (n *names) service(port uint16, proto string, numeric bool) string {
	if port == 0 {
		return "*"
	}
	if numeric {
		return strconv.Itoa(int(port))
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.services == nil {
		n.services = loadServices("/etc/services")
	}
	if s, ok := n.services[servKey{port, proto}]; ok {
		return s
	}
	return strconv.Itoa(int(port))
}

// user returns the login name of uid, or the number.
func (n *names) user(uid uint32) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if u, ok := n.users[uid]; ok {
		return u
	}
	name := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(name); err == nil {
		name = u.Username
	}
	n.users[uid] = name
	return name
}

// loadServices reads /etc/services; the first name given to a port/proto
// wins, as getservbyport returns it. A missing file means no names.
func loadServices(path string) map[servKey]string {
	m := make(map[servKey]string)
	f, err := os.Open(path)
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fs := strings.Fields(line)
		if len(fs) < 2 {
			continue
		}
		portStr, proto, ok := strings.Cut(fs[1], "/")
		if !ok {
			continue
		}
		port, err := strconv.ParseUint(portStr, 10, 16)
		if err != nil {
			continue
		}
		k := servKey{uint16(port), proto}
		if _, dup := m[k]; !dup {
			m[k] = fs[0]
		}
	}
	return m
}
