package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ErrNoLink says a network namespace has no device of that name.
var ErrNoLink = errors.New("no such device")

// LinkIndex is the index of the network device called name (its name or
// one of its alternative names, as `ip link` shows them) in namespace ns,
// nil for tcpstat's own: what sock_diag reports as a socket's bound device
// (Socket.Dev). It asks the kernel by name (RTM_GETLINK), as iproute2 does;
// a name the kernel does not know is ErrNoLink.
func LinkIndex(ns *Namespace, name string) (uint32, error) {
	self, err := CurrentNetNS()
	if ns == nil || err == nil && ns.Inode == self {
		return linkIndex(name)
	}
	var idx uint32
	OnDiscardedThread(func() {
		if err = join(ns); err == nil {
			idx, err = linkIndex(name)
		}
	})
	return idx, err
}

// Sizes of struct ifinfomsg and of an interface name with its NUL
// (include/uapi/linux/rtnetlink.h, if.h).
const (
	sizeofIfInfomsg = 16
	ifNameSize      = 16
)

func linkIndex(name string) (uint32, error) {
	if name == "" {
		return 0, ErrNoLink
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return 0, fmt.Errorf("open rtnetlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("bind rtnetlink socket: %w", err)
	}
	// Names too long for IFLA_IFNAME can only be alternative names.
	attr := uint16(unix.IFLA_IFNAME)
	if len(name) >= ifNameSize {
		attr = unix.IFLA_ALT_IFNAME
	}
	req := linkRequest(attr, name)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("send RTM_GETLINK: %w", err)
	}
	buf := make([]byte, 32<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("receive RTM_GETLINK answer: %w", err)
		}
		idx, found, err := parseLinkAnswer(buf[:n])
		if err != nil || found {
			return idx, err
		}
	}
}

// linkRequest is an RTM_GETLINK request for the device whose name is in
// attribute attr.
func linkRequest(attr uint16, name string) []byte {
	alen := sizeofRtAttr + len(name) + 1
	req := make([]byte, sizeofNlMsghdr+sizeofIfInfomsg+(alen+3)&^3)
	binary.NativeEndian.PutUint32(req[0:4], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:6], unix.RTM_GETLINK)
	binary.NativeEndian.PutUint16(req[6:8], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(req[8:12], 1)
	a := req[sizeofNlMsghdr+sizeofIfInfomsg:]
	binary.NativeEndian.PutUint16(a[0:2], uint16(alen))
	binary.NativeEndian.PutUint16(a[2:4], attr)
	copy(a[sizeofRtAttr:], name)
	return req
}

// parseLinkAnswer reads the kernel's answer to linkRequest: the device's
// index from RTM_NEWLINK, or the error. found is false for a datagram
// without either.
func parseLinkAnswer(b []byte) (idx uint32, found bool, err error) {
	var errno unix.Errno
	_, _, err = walkMessages(b, 1, func(msg []byte) error {
		if len(msg) < sizeofIfInfomsg {
			return fmt.Errorf("short RTM_NEWLINK: %d bytes", len(msg))
		}
		idx, found = binary.NativeEndian.Uint32(msg[4:8]), true
		return nil
	})
	if errors.As(err, &errno) {
		// ENODEV: no such name; EINVAL: a kernel without alternative
		// names (before 5.5) refusing IFLA_ALT_IFNAME.
		if errno == unix.ENODEV || errno == unix.EINVAL {
			return 0, true, ErrNoLink
		}
		return 0, true, fmt.Errorf("RTM_GETLINK %w", errno)
	}
	if err != nil {
		return 0, true, err
	}
	if found && idx == 0 {
		return 0, true, errors.New("RTM_NEWLINK without an index")
	}
	return idx, found, nil
}
