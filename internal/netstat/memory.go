package netstat

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// SocketMemory is the -m listing: Solaris shows STREAMS memory there; Linux
// keeps socket counts and memory in /proc/net/sockstat (and sockstat6)
// and per-protocol sizes in /proc/net/protocols.
type SocketMemory struct {
	SocketsUsed int64          `json:"sockets_used"`
	Sockstat    []SockstatLine `json:"sockstat"`
	Protocols   []Protocol     `json:"protocols"`
}

// SockstatLine is one protocol line of /proc/net/sockstat{,6}: its
// counters by the kernel's names (inuse, orphan, tw, alloc, mem in pages,
// memory in bytes).
type SockstatLine struct {
	Proto  string           `json:"proto"`
	Values map[string]int64 `json:"values"`
}

// Protocol is one line of /proc/net/protocols.
type Protocol struct {
	Name     string `json:"name"`
	Size     int64  `json:"size"`    // bytes per socket
	Sockets  int64  `json:"sockets"` // -1: not counted
	Memory   int64  `json:"memory"`  // pages; -1: not accounted
	Pressure string `json:"pressure"`
	MaxHdr   int64  `json:"max_header"`
	Slab     string `json:"slab"`
	Module   string `json:"module"`
}

// ParseSockstat parses "NAME: key value key value …" lines; "sockets:
// used N" gives the total.
func ParseSockstat(r io.Reader) (used int64, lines []SockstatLine, err error) {
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		fs := strings.Fields(rest)
		if !ok || len(fs)%2 != 0 {
			return 0, nil, fmt.Errorf("line %d: want \"NAME: key value …\"", n)
		}
		l := SockstatLine{Proto: name, Values: make(map[string]int64, len(fs)/2)}
		for i := 0; i < len(fs); i += 2 {
			v, err := strconv.ParseInt(fs[i+1], 10, 64)
			if err != nil {
				return 0, nil, fmt.Errorf("line %d, %s: %w", n, fs[i], err)
			}
			l.Values[fs[i]] = v
		}
		if name == "sockets" {
			used = l.Values["used"]
			continue
		}
		lines = append(lines, l)
	}
	return used, lines, sc.Err()
}

// ParseProtocols parses /proc/net/protocols (a header, then name, size,
// sockets, memory, pressure, maxhdr, slab, module, method flags).
func ParseProtocols(r io.Reader) ([]Protocol, error) {
	var ps []Protocol
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		if n == 1 {
			continue
		}
		fs := strings.Fields(sc.Text())
		if len(fs) < 8 {
			return nil, fmt.Errorf("line %d: want at least 8 fields, got %d", n, len(fs))
		}
		var v [3]int64
		for i, f := range []string{fs[1], fs[2], fs[3]} {
			x, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			v[i] = x
		}
		maxHdr, err := strconv.ParseInt(fs[5], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		ps = append(ps, Protocol{Name: fs[0], Size: v[0], Sockets: v[1], Memory: v[2], Pressure: fs[4], MaxHdr: maxHdr, Slab: fs[6], Module: fs[7]})
	}
	return ps, sc.Err()
}

func readMemory() (*SocketMemory, error) {
	m := &SocketMemory{}
	for _, path := range []string{"/proc/net/sockstat", "/proc/net/sockstat6"} {
		f, err := os.Open(path)
		if os.IsNotExist(err) && path == "/proc/net/sockstat6" {
			continue // IPv6 disabled
		}
		if err != nil {
			return nil, fmt.Errorf("read socket memory: %w", err)
		}
		used, lines, err := ParseSockstat(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", path, err)
		}
		m.SocketsUsed += used
		m.Sockstat = append(m.Sockstat, lines...)
	}
	f, err := os.Open("/proc/net/protocols")
	if err != nil {
		return nil, fmt.Errorf("read protocols: %w", err)
	}
	defer f.Close()
	if m.Protocols, err = ParseProtocols(f); err != nil {
		return nil, fmt.Errorf("parse /proc/net/protocols: %w", err)
	}
	return m, nil
}

// sockstatColumns are the sockstat keys, in the kernel's order.
var sockstatColumns = []string{"inuse", "orphan", "tw", "alloc", "mem", "memory"}

func writeMemoryText(w io.Writer, m *SocketMemory) {
	fmt.Fprintf(w, "Socket memory (/proc/net/sockstat, sockstat6): %d sockets in use\n", m.SocketsUsed)
	fmt.Fprintf(w, "Proto      inuse orphan     tw  alloc  mem(pages) memory(bytes)\n")
	for _, l := range m.Sockstat {
		fmt.Fprintf(w, "%-8s", l.Proto)
		for i, k := range sockstatColumns {
			width := []int{7, 7, 7, 7, 12, 14}[i]
			if v, ok := l.Values[k]; ok {
				fmt.Fprintf(w, "%*d", width, v)
			} else {
				fmt.Fprintf(w, "%*s", width, "-")
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "\nProtocols (/proc/net/protocols; memory in pages, -1: not accounted)\n")
	fmt.Fprintf(w, "Protocol     Size Sockets  Memory Press MaxHdr Slab Module\n")
	for _, p := range m.Protocols {
		fmt.Fprintf(w, "%-11s %5d %7d %7d %-5s %6d %-4s %s\n", p.Name, p.Size, p.Sockets, p.Memory, p.Pressure, p.MaxHdr, p.Slab, p.Module)
	}
}
