package snapshot

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/tcpstat/tcpstat/internal/tcp"
)

// Family selects IPv4 or IPv6 sockets of the inet protocols.
type Family uint8

const (
	IPv4 Family = 4
	IPv6 Family = 6
	// bothFamilies is one TCP dump of IPv4 and IPv6 (Options.Interleaved).
	bothFamilies Family = 46
)

// tcpBothRefused is set once the kernel refused a dump of both families
// (Options.Interleaved): the process then dumps one family at a time.
var tcpBothRefused atomic.Bool

// Source says where a dump reads from.
type Source uint8

const (
	// Auto uses netlink sock_diag and falls back to /proc/net per protocol
	// when the kernel lacks the diag module or netlink is not allowed.
	Auto Source = iota
	Netlink
	Procfs
)

// StateSet is a set of TCP states as the kernel's sock_diag bitmask
// (bit n set = state n).
type StateSet uint32

// AllStates is every state that netstat and ss list: all of them except
// BOUND_INACTIVE (bound, never listened or connected), which neither shows.
const AllStates StateSet = (1<<(tcp.NewSynRecv+1) - 1) &^ 1

// States returns the set of the given states.
func States(states ...tcp.State) StateSet {
	var s StateSet
	for _, st := range states {
		s |= 1 << st
	}
	return s
}

// Has reports whether st is in the set.
func (s StateSet) Has(st tcp.State) bool { return st < 32 && s&(1<<st) != 0 }

// Options says what to dump. The zero value dumps every TCP, UDP, RAW and
// UNIX socket of both families, without tcp_info and owners.
type Options struct {
	Protos   []Proto  // default: TCP, UDP, RAW, UNIX, in that order
	Families []Family // default: IPv4 then IPv6 (not used for UNIX)
	// Interleaved lets TCP sockets of both families come in one dump, in
	// the kernel's order (IPv4 and IPv6 mixed), instead of IPv4 then
	// IPv6: the kernel keeps one hash table for both, and each family's
	// dump walks all of it.
	Interleaved bool
	// States limits TCP sockets (only) to these states; 0 means AllStates.
	// SYN_RECV request sockets are tcp.NewSynRecv, the kernel's number.
	States StateSet
	// Info asks the kernel for tcp_info (RTT, bytes, probe count). It
	// roughly triples the dump's size, so leave it off for plain listings.
	Info   bool
	Owners bool // fill Socket.Owners from a /proc/*/fd scan
	Source Source
	// NetNS dumps that network namespace (joined by a thread made for the
	// purpose) instead of tcpstat's own; sock_diag only. WalkNetNS dumps
	// many at once.
	NetNS *Namespace
}

// Dump lists the sockets selected by opts, grouped by protocol then family
// in the order opts gives them (TCP's two families mixed when
// opts.Interleaved). Interrupted netlink dumps are retried.
func Dump(ctx context.Context, opts Options) ([]Socket, error) {
	out := make([]Socket, 0, Estimate(opts.Protos...))
	err := walk(ctx, opts, func(s *Socket) error {
		out = append(out, *s)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if opts.Owners {
		owners, err := Owners(ctx)
		var partial *PartialError
		if err != nil && !errors.As(err, &partial) {
			return nil, err
		}
		Attach(out, owners)
	}
	return out, nil
}

// Walk calls fn for every socket Dump would return, in the same order,
// without building a slice: the path for listings of 100 000 sockets. The
// *Socket passed to fn is reused; copy it to keep it. Info is filled when
// opts.Info asks for tcp_info; Owners never are: look them up by Inode in
// the map Owners returns.
func Walk(ctx context.Context, opts Options, fn func(*Socket) error) error {
	return walk(ctx, opts, fn)
}

func walk(ctx context.Context, opts Options, fn func(*Socket) error) error {
	if opts.NetNS != nil {
		res, err := WalkNetNS(ctx, []Namespace{*opts.NetNS}, opts, 1, fn)
		if err == nil {
			err = res[0].Err
		}
		return err
	}
	var conn *diagConn
	if opts.Source != Procfs {
		c, err := openDiag()
		if err != nil && opts.Source == Netlink {
			return err
		}
		if err == nil {
			conn = c
			defer conn.Close()
		}
	}
	ns, _ := CurrentNetNS() // 0 when /proc is not mounted: rows then say nothing
	return walkConn(ctx, conn, true, opts, func(s *Socket) error {
		s.NetNS = ns
		return fn(s)
	})
}

// walkConn dumps through conn, or /proc/net when conn is nil. procfs says
// whether /proc/net may stand in for sock_diag: only in tcpstat's own
// namespace, which is the one /proc/net shows.
func walkConn(ctx context.Context, conn *diagConn, procfs bool, opts Options, fn func(*Socket) error) error {
	protos, families, states := opts.defaults()
	for _, p := range protos {
		fams := familiesFor(p, families)
		if conn != nil && p == TCP && opts.Interleaved && !tcpBothRefused.Load() &&
			slices.Contains(fams, IPv4) && slices.Contains(fams, IPv6) {
			if err := ctx.Err(); err != nil {
				return err
			}
			n, err := walkNetlink(conn, p, bothFamilies, states, opts.Info, fn)
			if err == nil {
				continue
			}
			// A kernel without the old interface gets one dump per
			// family, from now on without asking again.
			if n > 0 || !diagUnsupported(err) {
				return fmt.Errorf("dump %s sockets: %w", familyName(p, bothFamilies), err)
			}
			tcpBothRefused.Store(true)
		}
		for _, fam := range fams {
			if err := ctx.Err(); err != nil {
				return err
			}
			if conn != nil {
				n, err := walkNetlink(conn, p, fam, states, opts.Info, fn)
				if err == nil {
					continue
				}
				// Fall back only when the kernel refused the request
				// outright; after sockets were handed out it is an error.
				if !procfs || opts.Source == Netlink || n > 0 || !diagUnsupported(err) {
					return fmt.Errorf("dump %s sockets: %w", familyName(p, fam), err)
				}
			}
			socks, err := dumpProcfs(nil, p, fam, states)
			if err != nil {
				return fmt.Errorf("read %s sockets: %w", familyName(p, fam), err)
			}
			for i := range socks {
				if err := fn(&socks[i]); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (opts *Options) defaults() ([]Proto, []Family, StateSet) {
	protos := opts.Protos
	if len(protos) == 0 {
		protos = []Proto{TCP, UDP, RAW, UNIX}
	}
	families := opts.Families
	if len(families) == 0 {
		families = []Family{IPv4, IPv6}
	}
	states := opts.States
	if states == 0 {
		states = AllStates
	}
	return protos, families, states
}

// Attach sets each socket's Owners from an owner index.
func Attach(socks []Socket, owners *OwnerIndex) {
	for i := range socks {
		if socks[i].Inode != 0 {
			socks[i].Owners = owners.Of(socks[i].Inode)
		}
	}
}

// familiesFor returns the families to walk for p: UNIX has exactly one.
func familiesFor(p Proto, families []Family) []Family {
	if p == UNIX {
		return []Family{0}
	}
	return families
}

func familyName(p Proto, f Family) string {
	switch f {
	case IPv6:
		return p.String() + "6"
	case bothFamilies:
		return p.String() + " and " + p.String() + "6"
	}
	return p.String()
}

// diagUnsupported reports errors that mean "this kernel has no sock_diag
// handler for that protocol" (module not built or not loaded), which the
// procfs files still cover.
func diagUnsupported(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EOPNOTSUPP) ||
		errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EPROTONOSUPPORT) ||
		errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM)
}

// walkNetlink hands one protocol and family's sockets to fn in one reused
// Socket as they arrive. When the kernel flags the dump as interrupted
// (its tables changed under the walk), the dump is run again and only the
// sockets the interrupted attempt did not hand out, by cookie, are handed
// out, so fn never sees a socket twice. It returns how many it handed out.
func walkNetlink(c *diagConn, p Proto, fam Family, states StateSet, info bool, fn func(*Socket) error) (int, error) {
	req, err := diagRequest(p, fam, states, info)
	if err != nil {
		return 0, err
	}
	var infos infoSlab
	var s Socket
	var handed cookieSet // for a retry to skip
	for attempt := 1; ; attempt++ {
		retry := attempt > 1
		interrupted, err := c.dump(req, func(msg []byte) error {
			if err := parseMsg(msg, p, &s, info, &infos); err != nil {
				return err
			}
			if retry && handed.has(s.Cookie) {
				return nil
			}
			handed.add(s.Cookie)
			return fn(&s)
		})
		if err != nil || !interrupted {
			return handed.n, err
		}
		if attempt == maxDumpAttempts {
			return handed.n, fmt.Errorf("%w (%d attempts)", errDumpInterrupted, attempt)
		}
	}
}

func diagRequest(p Proto, fam Family, states StateSet, info bool) (diagReq, error) {
	switch {
	case p == TCP && fam == bothFamilies:
		return diagReq{tcpBothType, tcpBothRequest(uint32(states), info)}, nil
	case p == TCP:
		return diagReq{unix.SOCK_DIAG_BY_FAMILY, inetRequest(afOf(fam), unix.IPPROTO_TCP, uint32(states), info)}, nil
	case p == UDP:
		return diagReq{unix.SOCK_DIAG_BY_FAMILY, inetRequest(afOf(fam), unix.IPPROTO_UDP, 0xffffffff, false)}, nil
	case p == RAW:
		return diagReq{unix.SOCK_DIAG_BY_FAMILY, inetRequest(afOf(fam), unix.IPPROTO_RAW, 0xffffffff, false)}, nil
	case p == UNIX:
		return diagReq{unix.SOCK_DIAG_BY_FAMILY, unixRequest()}, nil
	}
	return diagReq{}, fmt.Errorf("unknown protocol %d", p)
}

func parseMsg(msg []byte, p Proto, s *Socket, info bool, infos *infoSlab) error {
	if p == UNIX {
		return parseUnixMsg(msg, s)
	}
	var ti *TCPInfo
	if info && p == TCP {
		ti = infos.next()
	}
	return parseInetMsg(msg, p, s, ti)
}

func afOf(f Family) uint8 {
	if f == IPv6 {
		return unix.AF_INET6
	}
	return unix.AF_INET
}

// infoSlab hands out TCPInfo values from blocks, so a dump with tcp_info
// costs one allocation per thousand sockets, not one per socket.
type infoSlab struct{ block []TCPInfo }

func (s *infoSlab) next() *TCPInfo {
	if len(s.block) == 0 {
		s.block = make([]TCPInfo, 1024)
	}
	ti := &s.block[0]
	s.block = s.block[1:]
	return ti
}
