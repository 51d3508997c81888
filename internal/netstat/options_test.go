package netstat

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpstat/tcpstat/internal/filter"
	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/tcp"
)

func TestParse(t *testing.T) {
	num := func(c Config) Config { c.NumericHosts, c.NumericPorts, c.NumericUsers = true, true, true; return c }
	tests := []struct {
		args []string
		want Config
	}{
		{[]string{"-tanp"}, num(Config{TCP: true, All: true, Programs: true})},
		{[]string{"-t", "-a", "-n", "-p"}, num(Config{TCP: true, All: true, Programs: true})},
		{[]string{"-tlnpe"}, num(Config{TCP: true, Listening: true, Programs: true, Extend: 1})},
		{[]string{"-c"}, Config{Interval: time.Second}},
		{[]string{"-tc2"}, Config{TCP: true, Interval: 2 * time.Second}},
		{[]string{"-c", "3", "-t"}, Config{TCP: true, Interval: 3 * time.Second}},
		{[]string{"--continuous=0.5"}, Config{Interval: 500 * time.Millisecond}},
		{[]string{"-s", "5", "3"}, Config{Form: Statistics, Interval: 5 * time.Second, Count: 3}},
		{[]string{"-i", "2"}, Config{Form: Interfaces, Interval: 2 * time.Second}},
		{[]string{"-P", "tcp", "-f", "inet6"}, Config{TCP: true, IPv6: true, v6First: true}},
		{[]string{"-Pudp", "-finet"}, Config{UDP: true, IPv4: true}},
		{[]string{"--protocol=raw", "--family", "unix"}, Config{RAW: true, UNIX: true}},
		{[]string{"-s", "-P", "icmp"}, Config{Form: Statistics, ICMP: true}},
		{[]string{"--state", "established,time-wait"}, Config{States: snapshot.States(tcp.Established, tcp.TimeWait)}},
		{[]string{"--state=bucket", "--summary"}, Config{States: snapshot.States(tcp.SynRecv, tcp.NewSynRecv, tcp.TimeWait), Summary: true}},
		{[]string{"-r", "-n", "--json"}, num(Config{Form: Routes, JSON: true})},
		{[]string{"-46g"}, Config{Form: Groups, IPv4: true, IPv6: true}},
		{[]string{"--help"}, Config{Help: true}},
		{[]string{"-r", "-6"}, Config{Form: Routes, IPv6: true, v6First: true}},
		{[]string{"-6", "-r", "-4"}, Config{Form: Routes, IPv4: true, IPv6: true, v6First: true}},
		{[]string{"-rn4", "-6"}, num(Config{Form: Routes, IPv4: true, IPv6: true})},
		{[]string{"-ie"}, Config{Form: Interfaces, Extend: 1}},
		{[]string{"-rvCN"}, Config{Form: Routes, Verbose: true, Cache: true, Symbolic: true}},
		{[]string{"-m", "2", "3"}, Config{Form: Memory, Interval: 2 * time.Second, Count: 3}},
		{[]string{"-Ms", "1"}, Config{Form: MulticastStats, Interval: time.Second}},
		{[]string{"-M", "-n"}, num(Config{Form: MulticastRoutes})},
		{[]string{"-D", "-I", "eth0"}, Config{Form: DHCP, Iface: "eth0"}},
		{[]string{"--arp", "-f", "inet6"}, Config{Form: NetToMedia, IPv6: true, v6First: true}},
		{[]string{"-i", "-I", "abcdefghijklmno", "5", "2"}, Config{Form: Interfaces, Iface: "abcdefghijklmno", Interval: 5 * time.Second, Count: 2}},
		{[]string{"-ra", "-f", "af:inet"}, Config{Form: Routes, All: true, IPv4: true}},
	}
	for _, tt := range tests {
		got, err := Parse(tt.args)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.args, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(Config{})); diff != "" {
			t.Errorf("Parse(%q) (-want +got)\n%s", tt.args, diff)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-tanz"}, `unknown flag -z in "-tanz"`},
		{[]string{"-tanL"}, `unknown flag -L in "-tanL" (did you mean -l, --listening?)`},
		{[]string{"--bogus"}, "unknown flag --bogus"},
		{[]string{"--routes"}, "unknown flag --routes (did you mean --route?)"},
		{[]string{"--listen"}, "unknown flag --listen (did you mean --listening?)"},
		{[]string{"--staistics"}, "unknown flag --staistics (did you mean --statistics?)"},
		{[]string{"-S"}, "-S (SCTP) has no listing in tcpstat; use ss -S or /proc/net/sctp/assocs"},
		{[]string{"-s", "-i"}, "-s and -i are different forms; give one of -s, -i, -r, -g, -m, -M, -D, --arp (or -Ms)"},
		{[]string{"-r", "-f", "inif:eth0"}, "-f inif:eth0: routes on Linux have no input interface; policy rules select by it (ip rule show iif IF)"},
		{[]string{"-r", "-f", "color:red"}, `-f color:red: unknown keyword "color" (want af, outif, dst, src or flags)`},
		{[]string{"-r", "-f", "dst:10.0.0.0/99"}, `-f dst:10.0.0.0/99: "10.0.0.0/99" is not an address[/length], any or none`},
		{[]string{"-t", "-f", "outif:lo"}, "-f keyword:value filters routes; add -r"},
		{[]string{"-I", "lo"}, "-I IFACE goes with -i (or -D); add -i"},
		{[]string{"-i", "-I", "a/b"}, `-I "a/b" is not an interface name`},
		{[]string{"-P"}, "flag -P needs a value"},
		{[]string{"-P", "sctp"}, `unknown protocol "sctp" for -P (want tcp, udp, raw, unix, ip or icmp)`},
		{[]string{"-f", "ipx"}, `unknown address family "ipx" for -f (want inet, inet6 or unix)`},
		{[]string{"--state", "nope"}, `--state: unknown state or group "nope" (groups: all, connected, synchronized, bucket, big)`},
		{[]string{"-x", "-4"}, "-x (unix) and -4/-6 (inet) contradict each other"},
		{[]string{"-s", "--summary"}, "--summary counts sockets; it does not combine with another form"},
		{[]string{"-l", "--state", "established"}, "-l (listening) and --state without listening contradict each other"},
		{[]string{"-s", "x"}, `a filter selects sockets; it does not combine with another form`},
		{[]string{"-s", "1", "0"}, `count "0" is not a positive whole number`},
		{[]string{"-c0"}, `-c: interval "0" is not a number of seconds between 0 and 86400`},
		{[]string{"-P", "ip"}, "-P ip and -P icmp select statistics; add -s"},
		{[]string{"--json=yes"}, "flag --json takes no value"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.args)
		if err == nil {
			t.Errorf("Parse(%q) = nil error, want %q", tt.args, tt.want)
			continue
		}
		if !IsUsage(err) || err.Error() != tt.want {
			t.Errorf("Parse(%q) = %q (usage=%v), want %q", tt.args, err, IsUsage(err), tt.want)
		}
	}
}

func TestParseStatesGroups(t *testing.T) {
	set, err := ParseStates("connected")
	if err != nil {
		t.Fatal(err)
	}
	for st, want := range map[tcp.State]bool{tcp.Established: true, tcp.SynSent: true, tcp.FinWait1: true, tcp.CloseWait: true,
		tcp.Listen: false, tcp.TimeWait: false, tcp.SynRecv: false, tcp.NewSynRecv: false, tcp.Close: false} {
		if set.Has(st) != want {
			t.Errorf("connected has %v = %v, want %v", st, set.Has(st), want)
		}
	}
	set, _ = ParseStates("synchronized")
	if set.Has(tcp.SynSent) || !set.Has(tcp.Established) {
		t.Errorf("synchronized = %b", set)
	}
}

// TestInetSource: a filter on the device or mark reads sockets from
// sock_diag alone, since /proc/net has neither; any other falls back.
func TestInetSource(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want snapshot.Source
	}{
		{"", snapshot.Auto},
		{"sport = :22", snapshot.Auto},
		{"dev 0", snapshot.Netlink},
		{"sport = :22 or not fwmark 0x1/0x1", snapshot.Netlink},
	} {
		f, err := filter.ParseWith(tc.expr, filter.Options{Listing: true})
		if err != nil {
			t.Fatal(err)
		}
		c := Config{Filter: f}
		if got := c.inetSource(); got != tc.want {
			t.Errorf("%q: source %d, want %d", tc.expr, got, tc.want)
		}
	}
}
