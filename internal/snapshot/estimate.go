package snapshot

import (
	"bufio"
	"os"
	"slices"
	"strconv"
	"strings"
)

// maxEstimate caps the up-front allocation, whatever sockstat says.
const maxEstimate = 1 << 20

// Estimate guesses how many sockets a dump of protos (all when none)
// returns from /proc/net/sockstat{,6}, so that what holds them can be
// allocated once instead of growing (and copying) a dozen times at 100 000
// sockets. A wrong or missing estimate only costs speed.
func Estimate(protos ...Proto) int {
	all := len(protos) == 0
	want := func(p Proto) bool { return all || slices.Contains(protos, p) }
	n := 0
	for _, path := range []string{"/proc/net/sockstat", "/proc/net/sockstat6"} {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			name, rest, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			fs := strings.Fields(rest)
			val := func(key string) int {
				for i := 0; i+1 < len(fs); i += 2 {
					if fs[i] == key {
						v, _ := strconv.Atoi(fs[i+1])
						return v
					}
				}
				return 0
			}
			switch name {
			case "TCP": // alloc counts IPv4 and IPv6; tw the TIME_WAIT mini-sockets
				if want(TCP) {
					n += val("alloc") + val("tw")
				}
			case "UDP", "UDP6":
				if want(UDP) {
					n += val("inuse")
				}
			case "RAW", "RAW6":
				if want(RAW) {
					n += val("inuse")
				}
			}
		}
		f.Close()
	}
	return min(n, maxEstimate)
}
