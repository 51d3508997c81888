// Package ssdump parses what iproute2's `ss -tanepi` prints: one line per
// TCP socket with state, queues, addresses, users, uid, inode and socket
// cookie (sk:), followed by indented tcp_info lines. Tests use it as an
// independent witness of what the kernel holds.
package ssdump

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"strconv"
	"strings"

	"github.com/tcpstat/tcpstat/internal/tcp"
)

// User is a process holding the socket, as `users:(("comm",pid=N,fd=M))`.
type User struct {
	Comm string
	PID  uint32
	FD   int
}

// Socket is one socket line.
type Socket struct {
	State         tcp.State
	RecvQ, SendQ  uint32
	Local, Remote netip.AddrPort
	Users         []User
	UID           uint32
	Inode         uint64
	Cookie        uint64
	Timer         string // timer name: on, keepalive, timewait, persist
}

// ss's state names (ss.c sstate_name).
var states = map[string]tcp.State{
	"ESTAB": tcp.Established, "SYN-SENT": tcp.SynSent, "SYN-RECV": tcp.SynRecv,
	"FIN-WAIT-1": tcp.FinWait1, "FIN-WAIT-2": tcp.FinWait2, "TIME-WAIT": tcp.TimeWait,
	"UNCONN": tcp.Close, "CLOSE-WAIT": tcp.CloseWait, "LAST-ACK": tcp.LastAck,
	"LISTEN": tcp.Listen, "CLOSING": tcp.Closing, "BOUND-INACTIVE": tcp.BoundInactive,
}

// Parse reads ss output. Detail lines (indented) and the header are skipped.
func Parse(r io.Reader) ([]Socket, error) {
	var out []Socket
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if line == "" || line[0] == ' ' || line[0] == '\t' || strings.HasPrefix(line, "State") {
			continue
		}
		s, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("ss output line %d: %w", n, err)
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read ss output: %w", err)
	}
	return out, nil
}

func parseLine(line string) (Socket, error) {
	var s Socket
	// users:(...) may hold spaces (a comm like "tmux: server"): cut it out
	// before splitting the rest into fields.
	const usersOpen = " users:(("
	if i := strings.Index(line, usersOpen); i >= 0 {
		from := i + len(usersOpen)
		inner, after, ok := strings.Cut(line[from:], ")) ")
		if !ok {
			if inner, ok = strings.CutSuffix(line[from:], "))"); !ok {
				return s, fmt.Errorf("unterminated users field in %q", line)
			}
		}
		users, err := parseUsers(inner)
		if err != nil {
			return s, err
		}
		s.Users = users
		line = line[:i] + " " + after
	}
	f := strings.Fields(line)
	if len(f) < 5 {
		return s, fmt.Errorf("want at least 5 fields, got %d in %q", len(f), line)
	}
	var ok bool
	if s.State, ok = states[f[0]]; !ok {
		return s, fmt.Errorf("unknown state %q", f[0])
	}
	var err error
	if s.RecvQ, err = parseQueue(f[1]); err != nil {
		return s, fmt.Errorf("receive queue %q: %w", f[1], err)
	}
	if s.SendQ, err = parseQueue(f[2]); err != nil {
		return s, fmt.Errorf("send queue %q: %w", f[2], err)
	}
	if s.Local, err = parseAddrPort(f[3]); err != nil {
		return s, err
	}
	if s.Remote, err = parseAddrPort(f[4]); err != nil {
		return s, err
	}
	for _, field := range f[5:] {
		key, value, _ := strings.Cut(field, ":")
		switch key {
		case "uid":
			v, err := strconv.ParseUint(value, 10, 32)
			if err != nil {
				return s, fmt.Errorf("uid %q: %w", value, err)
			}
			s.UID = uint32(v)
		case "ino":
			if s.Inode, err = strconv.ParseUint(value, 10, 64); err != nil {
				return s, fmt.Errorf("inode %q: %w", value, err)
			}
		case "sk":
			if s.Cookie, err = strconv.ParseUint(value, 16, 64); err != nil {
				return s, fmt.Errorf("socket cookie %q: %w", value, err)
			}
		case "timer":
			name, _, _ := strings.Cut(strings.TrimPrefix(value, "("), ",")
			s.Timer = name
		}
	}
	return s, nil
}

// parseQueue reads a queue length. ss prints the kernel's u32 with %d, so
// one of 2^31 or more comes out negative: a send queue read while the
// socket's sequence numbers moved (write_seq - snd_una, seen on 5.10).
func parseQueue(v string) (uint32, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, err
	}
	if n < math.MinInt32 || n > math.MaxUint32 {
		return 0, errors.New("out of a 32-bit range")
	}
	return uint32(n), nil
}

// parseUsers reads `"comm",pid=N,fd=M),("comm",pid=N,fd=M` (the outer
// parentheses removed).
func parseUsers(v string) ([]User, error) {
	var users []User
	for v != "" {
		if !strings.HasPrefix(v, `"`) {
			return nil, fmt.Errorf("users field: want a quoted command at %q", v)
		}
		end := strings.Index(v[1:], `",pid=`) + 1
		if end == 0 {
			return nil, fmt.Errorf("users field: no pid after %q", v)
		}
		u := User{Comm: v[1:end]}
		rest := v[end+len(`",pid=`):]
		pidText, rest, ok := strings.Cut(rest, ",fd=")
		if !ok {
			return nil, fmt.Errorf("users field: no fd after pid in %q", v)
		}
		fdText, rest, _ := strings.Cut(rest, ")")
		pid, err := strconv.ParseUint(pidText, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("users field: pid %q: %w", pidText, err)
		}
		if u.FD, err = strconv.Atoi(fdText); err != nil {
			return nil, fmt.Errorf("users field: fd %q: %w", fdText, err)
		}
		u.PID = uint32(pid)
		users = append(users, u)
		v = strings.TrimPrefix(rest, ",(")
	}
	return users, nil
}

// parseAddrPort reads ss's numeric forms: 127.0.0.1:80, [::1]:80,
// 0.0.0.0:*, [::]:*, *:22 (a dual-stack wildcard), 127.0.0.53%lo:53.
func parseAddrPort(v string) (netip.AddrPort, error) {
	i := strings.LastIndexByte(v, ':')
	if i < 0 {
		return netip.AddrPort{}, fmt.Errorf("address %q has no port", v)
	}
	host, portText := v[:i], v[i+1:]
	var port uint64
	if portText != "*" {
		var err error
		if port, err = strconv.ParseUint(portText, 10, 16); err != nil {
			return netip.AddrPort{}, fmt.Errorf("port in %q: %w", v, err)
		}
	}
	if rest, ok := strings.CutPrefix(host, "["); ok {
		inside, _, ok := strings.Cut(rest, "]") // [fe80::1]%eth0 or [::1]
		if !ok {
			return netip.AddrPort{}, fmt.Errorf("address %q: unmatched [", v)
		}
		host = inside
	} else if j := strings.IndexByte(host, '%'); j >= 0 {
		host = host[:j] // 127.0.0.53%lo
	}
	if host == "*" {
		return netip.AddrPortFrom(netip.IPv6Unspecified(), uint16(port)), nil
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address in %q: %w", v, err)
	}
	return netip.AddrPortFrom(a, uint16(port)), nil
}
