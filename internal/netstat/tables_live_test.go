package netstat

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestTablesMatchNetstat compares -rn and -gn, which do not move between
// two reads on an idle host, line for line with net-tools netstat, on the
// host and in a namespace with 15-character interface names.
func TestTablesMatchNetstat(t *testing.T) {
	needRoot(t, "netstat")
	t.Run("host", tablesMatchNetstat)
	t.Run("netns", func(t *testing.T) { inNetns(t, tablesMatchNetstat) })
}

func tablesMatchNetstat(t *testing.T) {
	needRoot(t, "netstat")
	for _, flags := range []string{"-rn", "-rne", "-rnee", "-gn"} {
		want := strings.Split(theirs(t, "netstat", flags), "\n")
		got := strings.Split(ours(t, flags), "\n")
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("netstat %s vs tcpstat list %s (-netstat +tcpstat):\n%s", flags, flags, diff)
		}
	}
}

// TestInterfacesMatchNetstat compares -ia with netstat read before and
// after ours: names, MTU and flags must be equal, every counter between
// the two readings (traffic moves them meanwhile).
func TestInterfacesMatchNetstat(t *testing.T) {
	needRoot(t, "netstat")
	t.Run("host", interfacesMatchNetstat)
	t.Run("netns", func(t *testing.T) { inNetns(t, interfacesMatchNetstat) })
}

func interfacesMatchNetstat(t *testing.T) {
	needRoot(t, "netstat", "ip")
	before, ipBefore := strings.Split(theirs(t, "netstat", "-ia"), "\n"), ipCounters(t)
	got := strings.Split(ours(t, "-ia"), "\n")
	after, ipAfter := strings.Split(theirs(t, "netstat", "-ia"), "\n"), ipCounters(t)
	if len(got) != len(before) || len(got) != len(after) {
		t.Fatalf("line counts: netstat %d then %d, tcpstat %d", len(before), len(after), len(got))
	}
	for i := range got {
		b, g, a := strings.Fields(before[i]), strings.Fields(got[i]), strings.Fields(after[i])
		if i < 2 || len(g) != 11 {
			if before[i] != got[i] {
				t.Errorf("line %d: netstat %q, tcpstat %q", i+1, before[i], got[i])
			}
			continue
		}
		if len(b) != 11 || len(a) != 11 || b[0] != g[0] || b[1] != g[1] || b[10] != g[10] {
			t.Errorf("line %d: netstat %q, tcpstat %q", i+1, before[i], got[i])
			continue
		}
		lo, hi := counterColumns(b), counterColumns(a)
		if len(g[0]) == 15 {
			// net-tools 2.10 reads no counters for a name of 15
			// characters (it shows zeros); ip(8) is the reference.
			if lo != ([8]uint64{}) || hi != ([8]uint64{}) {
				t.Errorf("%s: netstat shows counters for a 15-character name: fix the test", g[0])
			}
			lo, hi = ipBefore[g[0]], ipAfter[g[0]]
		}
		mine := counterColumns(g)
		for c := range mine {
			if mine[c] < lo[c] || mine[c] > hi[c] {
				t.Errorf("%s column %d: tcpstat %d, reference %d then %d", g[0], c+3, mine[c], lo[c], hi[c])
			}
		}
	}
}

// counterColumns reads the eight counters of a -i row.
func counterColumns(fields []string) [8]uint64 {
	var v [8]uint64
	for c := range v {
		v[c], _ = strconv.ParseUint(fields[c+2], 10, 64)
	}
	return v
}

// ipCounters reads every interface's -i counters from `ip -j -s -s link`
// as /proc/net/dev sums them (drops include missed, overruns are FIFO
// errors).
func ipCounters(t *testing.T) map[string][8]uint64 {
	t.Helper()
	var links []struct {
		Name  string `json:"ifname"`
		Stats struct {
			RX struct {
				Packets, Errors, Dropped uint64
				Missed                   uint64 `json:"missed_errors"`
				FIFO                     uint64 `json:"fifo_errors"`
			} `json:"rx"`
			TX struct {
				Packets, Errors, Dropped uint64
				FIFO                     uint64 `json:"fifo_errors"`
			} `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(theirs(t, "ip", "-j", "-s", "-s", "link")), &links); err != nil {
		t.Fatal(err)
	}
	m := make(map[string][8]uint64)
	for _, l := range links {
		rx, tx := l.Stats.RX, l.Stats.TX
		m[l.Name] = [8]uint64{rx.Packets, rx.Errors, rx.Dropped + rx.Missed, rx.FIFO, tx.Packets, tx.Errors, tx.Dropped, tx.FIFO}
	}
	return m
}
