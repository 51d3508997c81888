// Package tcpiter lists the TCP sockets of the reader's network namespace
// through the kernel's BPF tcp iterator (Linux 5.9+): one fixed record per
// socket, written by bpf/tcpsocks.c, where sock_diag builds a netlink
// message of attributes per socket. It is issue 13's lever "iter/tcp against
// sock_diag for dumps", measured by BenchmarkDump beside
// snapshot.BenchmarkDumpTCP (docs/performance.md); listings and the live
// table still read sock_diag, which has what the iterator's record leaves out
// (timers, tcp_info, marks, devices) and needs no privilege.
package tcpiter

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"unsafe"

	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/tcp"
)

const recordSize = int(unsafe.Sizeof(tcpsocksTcpSocket{}))

const afInet6 = 10

// Iter is the loaded iterator program; Dump runs it once per call.
type Iter struct {
	objs tcpsocksObjects
}

// Load loads the iterator program (it needs CAP_BPF and CAP_PERFMON, or
// CAP_SYS_ADMIN, and a kernel with BTF).
func Load() (*Iter, error) {
	// The limit only matters before Linux 5.11; a refusal to raise it is
	// not fatal, the load says whether it was needed.
	_ = rlimit.RemoveMemlock()
	it := &Iter{}
	if err := loadTcpsocksObjects(&it.objs, nil); err != nil {
		return nil, fmt.Errorf("load the BPF tcp iterator: %w", err)
	}
	return it, nil
}

// Close unloads the program.
func (it *Iter) Close() error { return it.objs.Close() }

// Dump calls fn with each TCP socket of the caller's network namespace. The
// Socket is reused between calls: fn copies what it keeps. Its Cookie is 0
// for a socket no one has asked the cookie of yet (sock_diag assigns one).
func (it *Iter) Dump(fn func(*snapshot.Socket)) error {
	l, err := link.AttachIter(link.IterOptions{Program: it.objs.TcpSockets})
	if err != nil {
		return fmt.Errorf("attach the BPF tcp iterator: %w", err)
	}
	defer l.Close()
	rd, err := l.Open()
	if err != nil {
		return fmt.Errorf("open the BPF tcp iterator: %w", err)
	}
	defer rd.Close()
	return read(rd, fn)
}

// read decodes the iterator's records.
func read(r io.Reader, fn func(*snapshot.Socket)) error {
	buf := make([]byte, 64<<10)
	have := 0
	var s snapshot.Socket
	for {
		n, err := r.Read(buf[have:])
		have += n
		recs := buf[:have-have%recordSize]
		for ; len(recs) > 0; recs = recs[recordSize:] {
			decode(recs[:recordSize], &s)
			fn(&s)
		}
		rest := have % recordSize
		copy(buf, buf[have-rest:have])
		have = rest
		switch {
		case err == io.EOF:
			if have != 0 {
				return fmt.Errorf("read the BPF tcp iterator: %d bytes after the last record", have)
			}
			return nil
		case err != nil:
			return fmt.Errorf("read the BPF tcp iterator: %w", err)
		}
	}
}

// decode fills s from one record, laid out as bpf/tcpsocks.c's struct
// tcp_socket.
func decode(b []byte, s *snapshot.Socket) {
	ne := binary.NativeEndian
	*s = snapshot.Socket{
		Proto:  snapshot.TCP,
		Cookie: ne.Uint64(b[0:8]),
		Inode:  ne.Uint64(b[8:16]),
		State:  tcp.State(b[53]),
		UID:    ne.Uint32(b[56:60]),
		RecvQ:  ne.Uint32(b[60:64]),
		SendQ:  ne.Uint32(b[64:68]),
	}
	if s.State == tcp.NewSynRecv {
		s.State = tcp.SynRecv // as sock_diag reports request sockets
	}
	sport := ne.Uint16(b[48:50])
	dport := binary.BigEndian.Uint16(b[50:52])
	if b[52] == afInet6 {
		s.IPv6 = true
		s.Local = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[16:32])), sport)
		s.Remote = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[32:48])), dport)
		return
	}
	s.Local = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[16:20])), sport)
	s.Remote = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[32:36])), dport)
}
