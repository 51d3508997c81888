package snapshot

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/tcpstat/tcpstat/internal/tcp"
)

// userHZ is the unit of the procfs timer column (jiffies_to_clock_t).
const userHZ = 100

// procNetFile is the /proc/net file for a protocol and family.
func procNetFile(p Proto, f Family) string {
	name := p.String()
	if p != UNIX && f == IPv6 {
		name += "6"
	}
	return "/proc/net/" + name
}

// dumpProcfs appends one protocol and family's sockets read from /proc/net.
func dumpProcfs(out []Socket, p Proto, f Family, states StateSet) ([]Socket, error) {
	path := procNetFile(p, f)
	file, err := os.Open(path)
	if err != nil {
		return out, err
	}
	defer file.Close()
	out, err = parseProcNet(file, p, f == IPv6, states, out)
	if err != nil {
		return out, fmt.Errorf("parse %s: %w", path, err)
	}
	return out, nil
}

// parseProcNet parses a /proc/net/{tcp,tcp6,udp,udp6,raw,raw6,unix} file,
// header line included, appending to out.
func parseProcNet(r io.Reader, p Proto, ipv6 bool, states StateSet, out []Socket) ([]Socket, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	if !sc.Scan() {
		return out, sc.Err() // empty file: no sockets
	}
	for n := 2; sc.Scan(); n++ {
		var s Socket
		var err error
		if p == UNIX {
			err = parseUnixLine(sc.Bytes(), &s)
		} else {
			err = parseInetLine(sc.Bytes(), p, ipv6, &s)
		}
		if err != nil {
			return out, fmt.Errorf("line %d: %w", n, err)
		}
		if p == TCP && !states.Has(s.State) {
			continue
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

// fields splits b on spaces into at most len(dst) fields without allocating.
func fields(b []byte, dst [][]byte) int {
	n := 0
	for n < len(dst) {
		for len(b) > 0 && b[0] == ' ' {
			b = b[1:]
		}
		if len(b) == 0 {
			break
		}
		i := bytes.IndexByte(b, ' ')
		if i < 0 {
			i = len(b)
		}
		dst[n] = b[:i]
		b = b[i:]
		n++
	}
	return n
}

// parseInetLine parses one row of /proc/net/{tcp,udp,raw}[6]:
//
//	sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode …
//
// Addresses are hex dumps of the kernel's 32-bit words in host byte order;
// ports are plain hex numbers.
func parseInetLine(line []byte, p Proto, ipv6 bool, s *Socket) error {
	var f [10][]byte
	if fields(line, f[:]) < 10 {
		return fmt.Errorf("want at least 10 fields in %q", line)
	}
	*s = Socket{Proto: p, IPv6: ipv6}
	var err error
	if s.Local, err = parseHexAddrPort(f[1], ipv6); err != nil {
		return fmt.Errorf("local address: %w", err)
	}
	if s.Remote, err = parseHexAddrPort(f[2], ipv6); err != nil {
		return fmt.Errorf("remote address: %w", err)
	}
	st, err := parseHex(f[3], 8)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	s.State = tcp.State(st)
	tx, rx, err := parseHexPair(f[4], 32)
	if err != nil {
		return fmt.Errorf("queues: %w", err)
	}
	s.SendQ, s.RecvQ = uint32(tx), uint32(rx)
	tr, when, err := parseHexPair(f[5], 64)
	if err != nil {
		return fmt.Errorf("timer: %w", err)
	}
	s.Timer = Timer(tr)
	s.TimerLeft = time.Duration(int64(when)) * (time.Second / userHZ)
	retr, err := parseHex(f[6], 8)
	if err != nil {
		return fmt.Errorf("retransmits: %w", err)
	}
	s.Retrans = uint8(retr)
	uid, err := strconv.ParseUint(string(f[7]), 10, 32)
	if err != nil {
		return fmt.Errorf("uid: %w", err)
	}
	s.UID = uint32(uid)
	probes, err := strconv.ParseUint(string(f[8]), 10, 8)
	if err != nil {
		return fmt.Errorf("timeout: %w", err)
	}
	s.Probes = uint8(probes)
	if s.Inode, err = strconv.ParseUint(string(f[9]), 10, 64); err != nil {
		return fmt.Errorf("inode: %w", err)
	}
	// A request socket is listed as SYN_RECV without an inode; a full
	// socket in SYN_RECV (TCP Fast Open) has one.
	if p == TCP && s.State == tcp.SynRecv && s.Inode == 0 {
		s.State = tcp.NewSynRecv
	}
	return nil
}

func parseHex(b []byte, bits int) (uint64, error) {
	return strconv.ParseUint(string(b), 16, bits)
}

func parseHexPair(b []byte, bits int) (uint64, uint64, error) {
	i := bytes.IndexByte(b, ':')
	if i < 0 {
		return 0, 0, fmt.Errorf("want A:B in %q", b)
	}
	a, err := parseHex(b[:i], bits)
	if err != nil {
		return 0, 0, err
	}
	c, err := parseHex(b[i+1:], bits)
	return a, c, err
}

// parseHexAddrPort parses "0100007F:1F90" (IPv4) or 32 hex digits and a
// port (IPv6). Each 8-digit group is a 32-bit word in host order, so it is
// written back with the native byte order to get the address bytes.
func parseHexAddrPort(b []byte, ipv6 bool) (netip.AddrPort, error) {
	i := bytes.IndexByte(b, ':')
	if i < 0 {
		return netip.AddrPort{}, fmt.Errorf("want ADDR:PORT in %q", b)
	}
	port, err := parseHex(b[i+1:], 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port: %w", err)
	}
	hex := b[:i]
	words := 1
	if ipv6 {
		words = 4
	}
	if len(hex) != 8*words {
		return netip.AddrPort{}, fmt.Errorf("want %d hex digits in address %q", 8*words, hex)
	}
	var raw [16]byte
	for w := 0; w < words; w++ {
		v, err := parseHex(hex[8*w:8*w+8], 32)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("address: %w", err)
		}
		binary.NativeEndian.PutUint32(raw[4*w:], uint32(v))
	}
	if ipv6 {
		return netip.AddrPortFrom(netip.AddrFrom16(raw), uint16(port)), nil
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(raw[:4])), uint16(port)), nil
}

// Socket states and flags of /proc/net/unix (include/uapi/linux/net.h).
const (
	ssUnconnected = 1
	ssConnecting  = 2
	ssConnected   = 3
	soAcceptCon   = 1 << 16
)

// parseUnixLine parses one row of /proc/net/unix:
//
//	Num RefCount Protocol Flags Type St Inode [Path]
//
// The path is the rest of the line; it may contain spaces.
func parseUnixLine(line []byte, s *Socket) error {
	var f [7][]byte
	if fields(line, f[:]) < 7 {
		return fmt.Errorf("want at least 7 fields in %q", line)
	}
	refcnt, err := parseHex(f[1], 32)
	if err != nil {
		return fmt.Errorf("refcount: %w", err)
	}
	flags, err := parseHex(f[3], 32)
	if err != nil {
		return fmt.Errorf("flags: %w", err)
	}
	typ, err := parseHex(f[4], 8)
	if err != nil {
		return fmt.Errorf("type: %w", err)
	}
	ss, err := parseHex(f[5], 8)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	inode, err := strconv.ParseUint(string(f[6]), 10, 64)
	if err != nil {
		return fmt.Errorf("inode: %w", err)
	}
	*s = Socket{Proto: UNIX, RefCnt: uint32(refcnt), UnixType: UnixType(typ), Inode: inode}
	switch {
	case flags&soAcceptCon != 0:
		s.State = tcp.Listen
	case ss == ssConnected:
		s.State = tcp.Established
	case ss == ssConnecting:
		s.State = tcp.SynSent
	default:
		s.State = tcp.Close
	}
	// The path starts one space after the inode field.
	rest := line[cap(line)-cap(f[6])+len(f[6]):]
	if len(rest) > 1 && rest[0] == ' ' {
		s.Path = string(rest[1:])
	}
	return nil
}
