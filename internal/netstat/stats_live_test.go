package netstat

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestStatisticsMatchNetstat gives the installed netstat and our -s the
// same /proc/net/{snmp,netstat} (with this kernel's counter names, bind
// mounted over /proc in a private mount namespace for netstat) and wants
// the same text: every counter distinct, all zero, and every other one zero.
func TestStatisticsMatchNetstat(t *testing.T) {
	needRoot(t, "netstat", "unshare")
	real, err := ReadCounters()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]func(i int) int64{
		"distinct": func(i int) int64 { return 700000 + int64(i) },
		"zeros":    func(int) int64 { return 0 },
		"alternate": func(i int) int64 {
			if i%2 == 0 {
				return 0
			}
			return int64(i)
		},
	}
	for name, value := range values {
		t.Run(name, func(t *testing.T) {
			var snmp, netstat bytes.Buffer
			i := 0
			for _, s := range real {
				w := &snmp
				if !isSNMPSection(s.Name) {
					w = &netstat
				}
				vals := make([]string, len(s.Keys))
				fake := Section{Name: s.Name, Keys: s.Keys, Values: make([]int64, len(s.Keys))}
				for j := range s.Keys {
					fake.Values[j] = value(i)
					vals[j] = fmt.Sprint(fake.Values[j])
					i++
				}
				fmt.Fprintf(w, "%s: %s\n%s: %s\n", s.Name, strings.Join(s.Keys, " "), s.Name, strings.Join(vals, " "))
			}
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "net"), 0o755); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dir, "net", "snmp"), snmp.Bytes(), 0o644)
			os.WriteFile(filepath.Join(dir, "net", "netstat"), netstat.Bytes(), 0o644)
			var secs []Section
			for _, b := range [][]byte{snmp.Bytes(), netstat.Bytes()} {
				s, err := ParseCounters(bytes.NewReader(b))
				if err != nil {
					t.Fatal(err)
				}
				secs = append(secs, s...)
			}
			for _, flags := range []string{"-s", "-st", "-su", "-sw", "-stu"} {
				out, err := exec.Command("unshare", "-m", "sh", "-c", "mount --bind \"$0\" /proc && netstat "+flags, dir).CombinedOutput()
				if err != nil {
					t.Fatalf("run netstat on a private /proc (unshare -m, mount --bind): %v: %s", err, out)
				}
				c, err := Parse([]string{flags})
				if err != nil {
					t.Fatal(err)
				}
				var ours bytes.Buffer
				writeStatsText(&ours, secs, sectionsFor(&c))
				if diff := cmp.Diff(strings.Split(string(out), "\n"), strings.Split(ours.String(), "\n")); diff != "" {
					t.Errorf("netstat %s vs tcpstat list %s (-netstat +tcpstat):\n%s", flags, flags, diff)
				}
			}
		})
	}
}

// isSNMPSection says which file a section comes from.
func isSNMPSection(name string) bool {
	switch name {
	case "Ip", "Icmp", "IcmpMsg", "Tcp", "Udp", "UdpLite":
		return true
	}
	return false
}
