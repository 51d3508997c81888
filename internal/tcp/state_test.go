package tcp

import "testing"

func TestStateNames(t *testing.T) {
	for _, tc := range []struct {
		s    State
		want string
	}{
		{Established, "ESTABLISHED"}, {SynSent, "SYN_SENT"}, {SynRecv, "SYN_RECV"},
		{FinWait1, "FIN_WAIT1"}, {FinWait2, "FIN_WAIT2"}, {TimeWait, "TIME_WAIT"},
		{Close, "CLOSE"}, {CloseWait, "CLOSE_WAIT"}, {LastAck, "LAST_ACK"},
		{Listen, "LISTEN"}, {Closing, "CLOSING"}, {NewSynRecv, "NEW_SYN_RECV"},
		{BoundInactive, "BOUND_INACTIVE"}, {0, "UNKNOWN(0)"}, {200, "UNKNOWN(200)"},
	} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("State(%d).String() = %q, want %q", uint8(tc.s), got, tc.want)
		}
	}
}

func TestParseState(t *testing.T) {
	for in, want := range map[string]State{
		"ESTABLISHED": Established, "fin-wait-1": FinWait1, "TCP_FIN_WAIT2": FinWait2,
		"time_wait": TimeWait, "Syn-Recv": SynRecv, "FIN_WAIT_1": FinWait1,
		"UNKNOWN(14)": 14, "unknown(255)": 255,
	} {
		got, err := ParseState(in)
		if err != nil || got != want {
			t.Errorf("ParseState(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "ESTABLISH", "UNKNOWN(0)", "UNKNOWN(1)", "UNKNOWN(256)", "UNKNOWN(14", "UNKNOWN()"} {
		if _, err := ParseState(bad); err == nil {
			t.Errorf("ParseState(%q) succeeded, want error", bad)
		}
	}
}

// A state a newer kernel adds round-trips through its printed name.
func TestUnknownStateRoundTrips(t *testing.T) {
	for n := 1; n < 256; n++ {
		s := State(n)
		got, err := ParseState(s.String())
		if err != nil || got != s {
			t.Errorf("ParseState(%q) = %v, %v; want %d", s.String(), got, err, n)
		}
	}
}
