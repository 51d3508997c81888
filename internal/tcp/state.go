// Package tcp holds the vocabulary every tcpstat package shares: TCP states
// as the kernel numbers them (include/net/tcp_states.h).
package tcp

import (
	"fmt"
	"strconv"
	"strings"
)

// State is a TCP state with the kernel's numbering.
type State uint8

// Kernel TCP states, include/net/tcp_states.h.
const (
	Established   State = 1
	SynSent       State = 2
	SynRecv       State = 3
	FinWait1      State = 4
	FinWait2      State = 5
	TimeWait      State = 6
	Close         State = 7
	CloseWait     State = 8
	LastAck       State = 9
	Listen        State = 10
	Closing       State = 11
	NewSynRecv    State = 12 // request sockets; shown as SYN_RECV by ss and netstat
	BoundInactive State = 13 // bound, not listening or connected (6.8+)
)

var names = [...]string{
	Established:   "ESTABLISHED",
	SynSent:       "SYN_SENT",
	SynRecv:       "SYN_RECV",
	FinWait1:      "FIN_WAIT1",
	FinWait2:      "FIN_WAIT2",
	TimeWait:      "TIME_WAIT",
	Close:         "CLOSE",
	CloseWait:     "CLOSE_WAIT",
	LastAck:       "LAST_ACK",
	Listen:        "LISTEN",
	Closing:       "CLOSING",
	NewSynRecv:    "NEW_SYN_RECV",
	BoundInactive: "BOUND_INACTIVE",
}

// String returns the kernel's name without the TCP_ prefix, or
// "UNKNOWN(n)" for a number this build does not know.
func (s State) String() string {
	if int(s) < len(names) && names[s] != "" {
		return names[s]
	}
	return fmt.Sprintf("UNKNOWN(%d)", uint8(s))
}

// Valid reports whether s is a state this build names. Events carry
// states it does not (a newer kernel's) through unchanged: they print, and
// parse back, as UNKNOWN(n).
func (s State) Valid() bool {
	return int(s) < len(names) && names[s] != ""
}

// ParseState accepts a kernel name ("FIN_WAIT1", "fin-wait-1", "TCP_FIN_WAIT1"),
// case-insensitively, with dashes or underscores, and what String gives for
// a state this build does not name ("UNKNOWN(14)").
func ParseState(name string) (State, error) {
	n := strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
	if num, ok := strings.CutPrefix(n, "UNKNOWN("); ok {
		v, err := strconv.ParseUint(strings.TrimSuffix(num, ")"), 10, 8)
		if err != nil || !strings.HasSuffix(num, ")") || v == 0 || State(v).Valid() {
			return 0, fmt.Errorf("unknown TCP state %q", name)
		}
		return State(v), nil
	}
	n = strings.TrimPrefix(n, "TCP_")
	n = strings.ReplaceAll(n, "WAIT_", "WAIT") // FIN_WAIT_1 → FIN_WAIT1
	for s, v := range names {
		if v != "" && v == n {
			return State(s), nil
		}
	}
	return 0, fmt.Errorf("unknown TCP state %q", name)
}
