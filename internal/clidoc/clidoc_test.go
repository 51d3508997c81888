package clidoc

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRoff(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                "plain",
		".starts with a dot":   `\&.starts with a dot`,
		"a\n'quote":            "a\n\\&'quote",
		`back\slash`:           `back\eslash`,
		"--port -4":            `\-\-port \-4`,
		"local → remote, 12µs": `local \[u2192] remote, 12\[u00B5]s`,
	} {
		if got := roff(in); got != want {
			t.Errorf("roff(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestUsageFlags: the flags of a hand-written usage text, and not the
// letters of an example's combined short flags.
func TestUsageFlags(t *testing.T) {
	text := "  -t --tcp  -u --udp   protocols\n  -f|-A inet|inet6  families\n  --state STATES  states\nShort flags combine: -tanp, -c2.\n  tcpstat list -tln"
	var got []string
	for _, f := range usageFlags(text, Values{"state": {"established"}}) {
		for _, l := range f.Long {
			got = append(got, "--"+l)
		}
		for _, s := range f.Short {
			got = append(got, "-"+s)
		}
		if len(f.Values) > 0 {
			got = append(got, f.Values...)
		}
	}
	want := []string{"--tcp", "--udp", "--state", "established", "-t", "-u", "-f", "-A"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("usage flags (-want +got):\n%s", diff)
	}
}
