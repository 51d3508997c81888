package netstat

import (
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestTablesMatchNetstat compares -rn and -gn, which do not move between
// two reads on an idle host, line for line with net-tools netstat.
func TestTablesMatchNetstat(t *testing.T) {
	needRoot(t, "netstat")
	for _, flags := range []string{"-rn", "-gn"} {
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
	before := strings.Split(theirs(t, "netstat", "-ia"), "\n")
	got := strings.Split(ours(t, "-ia"), "\n")
	after := strings.Split(theirs(t, "netstat", "-ia"), "\n")
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
		for c := 2; c < 10; c++ {
			lo, _ := strconv.ParseUint(b[c], 10, 64)
			hi, _ := strconv.ParseUint(a[c], 10, 64)
			v, err := strconv.ParseUint(g[c], 10, 64)
			if err != nil || v < lo || v > hi {
				t.Errorf("%s column %d: tcpstat %s, netstat %d then %d", g[0], c+1, g[c], lo, hi)
			}
		}
	}
}
