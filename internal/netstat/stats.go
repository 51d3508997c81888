package netstat

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Section is one protocol's counters from /proc/net/snmp or
// /proc/net/netstat, in the kernel's order.
type Section struct {
	Name   string
	Keys   []string
	Values []int64
}

// ReadCounters reads /proc/net/snmp then /proc/net/netstat.
func ReadCounters() ([]Section, error) {
	var all []Section
	for _, path := range []string{"/proc/net/snmp", "/proc/net/netstat"} {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("read counters: %w", err)
		}
		secs, err := ParseCounters(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", path, err)
		}
		all = append(all, secs...)
	}
	return all, nil
}

// ParseCounters parses the "Name: key key …" / "Name: value value …" line
// pairs of /proc/net/snmp and /proc/net/netstat.
func ParseCounters(r io.Reader) ([]Section, error) {
	var secs []Section
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 16<<10), 1<<20)
	for n := 1; sc.Scan(); n += 2 {
		head := sc.Text()
		if !sc.Scan() {
			return nil, fmt.Errorf("line %d: header without a value line", n)
		}
		vals := sc.Text()
		hname, hrest, ok1 := strings.Cut(head, ":")
		vname, vrest, ok2 := strings.Cut(vals, ":")
		if !ok1 || !ok2 || hname != vname {
			return nil, fmt.Errorf("line %d: want two lines of the same section, got %q and %q", n, hname, vname)
		}
		keys := strings.Fields(hrest)
		fs := strings.Fields(vrest)
		if len(keys) != len(fs) {
			return nil, fmt.Errorf("section %s: %d names but %d values", hname, len(keys), len(fs))
		}
		s := Section{Name: hname, Keys: keys, Values: make([]int64, len(fs))}
		for i, f := range fs {
			v, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				u, uerr := strconv.ParseUint(f, 10, 64)
				if uerr != nil {
					return nil, fmt.Errorf("section %s, %s: %w", hname, keys[i], err)
				}
				v = int64(u) // counters past 2^63 wrap, as deltas expect
			}
			s.Values[i] = v
		}
		secs = append(secs, s)
	}
	return secs, sc.Err()
}

// Delta returns cur minus prev, counter by counter (matched by name).
// Gauges (CurrEstab, Forwarding, DefaultTTL, Rto*, MaxConn) stay absolute.
func Delta(cur, prev []Section) []Section {
	old := make(map[string]int64)
	for _, s := range prev {
		for i, k := range s.Keys {
			old[s.Name+"."+k] = s.Values[i]
		}
	}
	out := make([]Section, len(cur))
	for j, s := range cur {
		d := Section{Name: s.Name, Keys: s.Keys, Values: make([]int64, len(s.Values))}
		for i, k := range s.Keys {
			d.Values[i] = s.Values[i]
			if p, ok := old[s.Name+"."+k]; ok && !gauge[k] {
				d.Values[i] -= p
			}
		}
		out[j] = d
	}
	return out
}

var gauge = map[string]bool{"CurrEstab": true, "Forwarding": true, "DefaultTTL": true, "RtoAlgorithm": true, "RtoMin": true, "RtoMax": true, "MaxConn": true}

// How netstat shows one counter.
type showKind uint8

const (
	always  showKind = iota // shown even when zero
	nonZero                 // shown only when not zero
	hidden
	icmpIn  // under "ICMP input histogram:", shown when not zero
	icmpOut // under "ICMP output histogram:", shown when not zero
)

type phrase struct {
	text string // with %d where the value goes
	kind showKind
}

// phrases are net-tools netstat 2.10's sentences, per section and counter,
// and when it shows them. They were read off netstat itself: run on a
// /proc/net/{snmp,netstat} with a distinct value per counter, then with
// zeros (TestStatisticsMatchNetstat repeats that against the installed
// netstat). Counters not listed print as "Name: value" when not zero, as
// netstat prints counters it does not know.
var phrases = map[string]map[string]phrase{
	"Ip": {
		"DefaultTTL":      {"", hidden},
		"InReceives":      {"%d total packets received", always},
		"InHdrErrors":     {"%d with invalid headers", nonZero},
		"InAddrErrors":    {"%d with invalid addresses", nonZero},
		"ForwDatagrams":   {"%d forwarded", always},
		"InUnknownProtos": {"%d with unknown protocol", nonZero},
		"InDiscards":      {"%d incoming packets discarded", always},
		"InDelivers":      {"%d incoming packets delivered", always},
		"OutRequests":     {"%d requests sent out", always},
		"OutDiscards":     {"%d outgoing packets dropped", nonZero},
		"OutNoRoutes":     {"%d dropped because of missing route", nonZero},
		"ReasmTimeout":    {"%d fragments dropped after timeout", nonZero},
		"ReasmReqds":      {"%d reassemblies required", nonZero},
		"ReasmOKs":        {"%d packets reassembled ok", nonZero},
		"ReasmFails":      {"%d packet reassemblies failed", nonZero},
		"FragOKs":         {"%d outgoing packets fragmented ok", nonZero},
		"FragFails":       {"%d outgoing packets failed fragmentation", nonZero},
		"FragCreates":     {"%d fragments created", nonZero},
	},
	"Icmp": {
		"InMsgs":           {"%d ICMP messages received", always},
		"InErrors":         {"%d input ICMP message failed", always},
		"InDestUnreachs":   {"destination unreachable: %d", icmpIn},
		"InTimeExcds":      {"timeout in transit: %d", icmpIn},
		"InParmProbs":      {"wrong parameters: %d", icmpIn},
		"InSrcQuenchs":     {"source quenches: %d", icmpIn},
		"InRedirects":      {"redirects: %d", icmpIn},
		"InEchos":          {"echo requests: %d", icmpIn},
		"InEchoReps":       {"echo replies: %d", icmpIn},
		"InTimestamps":     {"timestamp request: %d", icmpIn},
		"InTimestampReps":  {"timestamp reply: %d", icmpIn},
		"InAddrMasks":      {"address mask request: %d", icmpIn},
		"InAddrMaskReps":   {"address mask replies: %d", icmpIn},
		"OutMsgs":          {"%d ICMP messages sent", always},
		"OutErrors":        {"%d ICMP messages failed", always},
		"OutDestUnreachs":  {"destination unreachable: %d", icmpOut},
		"OutTimeExcds":     {"time exceeded: %d", icmpOut},
		"OutParmProbs":     {"wrong parameters: %d", icmpOut},
		"OutSrcQuenchs":    {"source quench: %d", icmpOut},
		"OutRedirects":     {"redirect: %d", icmpOut},
		"OutEchos":         {"echo requests: %d", icmpOut},
		"OutEchoReps":      {"echo replies: %d", icmpOut},
		"OutTimestamps":    {"timestamp requests: %d", icmpOut},
		"OutTimestampReps": {"timestamp replies: %d", icmpOut},
		"OutAddrMasks":     {"address mask requests: %d", icmpOut},
		"OutAddrMaskReps":  {"address mask replies: %d", icmpOut},
	},
	"IcmpMsg": {},
	"Tcp": {
		"RtoAlgorithm": {"", hidden},
		"RtoMin":       {"", hidden},
		"RtoMax":       {"", hidden},
		"MaxConn":      {"", hidden},
		"ActiveOpens":  {"%d active connection openings", always},
		"PassiveOpens": {"%d passive connection openings", always},
		"AttemptFails": {"%d failed connection attempts", always},
		"EstabResets":  {"%d connection resets received", always},
		"CurrEstab":    {"%d connections established", always},
		"InSegs":       {"%d segments received", always},
		"OutSegs":      {"%d segments sent out", always},
		"RetransSegs":  {"%d segments retransmitted", always},
		"InErrs":       {"%d bad segments received", always},
		"OutRsts":      {"%d resets sent", always},
	},
	"Udp": {
		"InDatagrams":  {"%d packets received", always},
		"NoPorts":      {"%d packets to unknown port received", always},
		"InErrors":     {"%d packet receive errors", always},
		"OutDatagrams": {"%d packets sent", always},
		"RcvbufErrors": {"%d receive buffer errors", always},
		"SndbufErrors": {"%d send buffer errors", always},
	},
	"UdpLite": {},
	"TcpExt": {
		"SyncookiesSent":      {"%d SYN cookies sent", nonZero},
		"SyncookiesRecv":      {"%d SYN cookies received", nonZero},
		"SyncookiesFailed":    {"%d invalid SYN cookies received", nonZero},
		"EmbryonicRsts":       {"%d resets received for embryonic SYN_RECV sockets", nonZero},
		"PruneCalled":         {"%d packets pruned from receive queue because of socket buffer overrun", nonZero},
		"RcvPruned":           {"%d packets pruned from receive queue", nonZero},
		"OfoPruned":           {"%d packets dropped from out-of-order queue because of socket buffer overrun", nonZero},
		"OutOfWindowIcmps":    {"%d ICMP packets dropped because they were out-of-window", nonZero},
		"LockDroppedIcmps":    {"%d ICMP packets dropped because socket was locked", nonZero},
		"TW":                  {"%d TCP sockets finished time wait in fast timer", nonZero},
		"TWRecycled":          {"%d time wait sockets recycled by time stamp", nonZero},
		"PAWSActive":          {"%d active connections rejected because of time stamp", nonZero},
		"PAWSEstab":           {"%d packets rejected in established connections because of timestamp", nonZero},
		"DelayedACKs":         {"%d delayed acks sent", nonZero},
		"DelayedACKLocked":    {"%d delayed acks further delayed because of locked socket", nonZero},
		"DelayedACKLost":      {"Quick ack mode was activated %d times", nonZero},
		"ListenOverflows":     {"%d times the listen queue of a socket overflowed", nonZero},
		"ListenDrops":         {"%d SYNs to LISTEN sockets dropped", nonZero},
		"TCPHPHits":           {"%d packet headers predicted", always},
		"TCPPureAcks":         {"%d acknowledgments not containing data payload received", nonZero},
		"TCPHPAcks":           {"%d predicted acknowledgments", nonZero},
		"TCPRenoRecovery":     {"%d times recovered from packet loss due to fast retransmit", nonZero},
		"TCPSACKReorder":      {"Detected reordering %d times using SACK", nonZero},
		"TCPRenoReorder":      {"Detected reordering %d times using reno fast retransmit", nonZero},
		"TCPTSReorder":        {"Detected reordering %d times using time stamp", nonZero},
		"TCPFullUndo":         {"%d congestion windows fully recovered without slow start", nonZero},
		"TCPPartialUndo":      {"%d congestion windows partially recovered using Hoe heuristic", nonZero},
		"TCPLossUndo":         {"%d congestion windows recovered without slow start after partial ack", nonZero},
		"TCPRenoFailures":     {"%d timeouts after reno fast retransmit", nonZero},
		"TCPLossFailures":     {"%d timeouts in loss state", nonZero},
		"TCPFastRetrans":      {"%d fast retransmits", nonZero},
		"TCPSlowStartRetrans": {"%d retransmits in slow start", nonZero},
		"TCPRcvCollapsed":     {"%d packets collapsed in receive queue due to low socket buffer", nonZero},
		"TCPAbortOnData":      {"%d connections reset due to unexpected data", nonZero},
		"TCPAbortOnClose":     {"%d connections reset due to early user close", nonZero},
		"TCPAbortOnMemory":    {"%d connections aborted due to memory pressure", nonZero},
		"TCPAbortOnTimeout":   {"%d connections aborted due to timeout", nonZero},
		"TCPAbortOnLinger":    {"%d connections aborted after user close in linger timeout", nonZero},
		"TCPAbortFailed":      {"%d times unable to send RST due to no memory", nonZero},
		"TCPMemoryPressures":  {"TCP ran low on memory %d times", nonZero},
	},
	"IpExt":    {},
	"MPTcpExt": {},
}

// filtered are the sections netstat -s leaves out unless their protocol
// is asked for (-t, -u, -w); every other section (IcmpMsg, UdpLite, IpExt,
// MPTcpExt, …) it always prints, and so do we.
var filtered = map[string]func(c *Config) bool{
	"Ip":     func(c *Config) bool { return c.RAW || c.IP },
	"Icmp":   func(c *Config) bool { return c.RAW || c.ICMP },
	"Tcp":    func(c *Config) bool { return c.TCP },
	"TcpExt": func(c *Config) bool { return c.TCP },
	"Udp":    func(c *Config) bool { return c.UDP },
}

// sectionsFor says which sections -s shows: nil means all.
func sectionsFor(c *Config) func(name string) bool {
	if !(c.TCP || c.UDP || c.RAW || c.IP || c.ICMP) {
		return nil
	}
	return func(name string) bool {
		f, ok := filtered[name]
		return !ok || f(c)
	}
}

// writeStatsText prints counters as netstat -s does.
func writeStatsText(w io.Writer, secs []Section, only func(string) bool) {
	// state is netstat's indentation state: it follows the last counter
	// it handled, across the sections it shows, so IcmpMsg's counters
	// print indented like the ICMP histogram before them.
	state := always
	for _, s := range secs {
		if only != nil && !only(s.Name) {
			continue
		}
		fmt.Fprintf(w, "%s:\n", s.Name)
		table := phrases[s.Name]
		for i, k := range s.Keys {
			v := s.Values[i]
			p, known := table[k]
			switch {
			case !known && s.Name == "IcmpMsg":
				// netstat has no table for IcmpMsg: its counters print
				// at whatever indentation the ICMP histograms left.
				if v != 0 {
					indent := "    "
					if state == icmpIn || state == icmpOut {
						indent = "        "
					}
					fmt.Fprintf(w, "%s%s: %d\n", indent, k, v)
				}
			case !known:
				if v != 0 {
					fmt.Fprintf(w, "    %s: %d\n", k, v)
				}
				state = always
			case p.kind == hidden:
			case p.kind == icmpIn || p.kind == icmpOut:
				if state != p.kind {
					if p.kind == icmpIn {
						fmt.Fprintf(w, "    ICMP input histogram:\n")
					} else {
						fmt.Fprintf(w, "    ICMP output histogram:\n")
					}
					state = p.kind
				}
				if v != 0 {
					fmt.Fprintf(w, "        "+p.text+"\n", v)
				}
			default:
				if p.kind == always || v != 0 {
					fmt.Fprintf(w, "    "+p.text+"\n", v)
				}
				state = always
			}
		}
	}
}
