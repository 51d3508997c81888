package snapshot

import (
	"context"
	"testing"
)

// BenchmarkDumpTCP measures a TCP dump of whatever sockets the host holds
// (run cmd/listbench -hold N in another shell to give it many).
func BenchmarkDumpTCP(b *testing.B) {
	if !canDiag() {
		b.Skip("needs sock_diag (root)")
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		socks, err := Dump(context.Background(), Options{Protos: []Proto{TCP}, Source: Netlink})
		if err != nil {
			b.Fatal(err)
		}
		n = len(socks)
	}
	b.ReportMetric(float64(n), "sockets")
}

func canDiag() bool {
	c, err := openDiag()
	if err != nil {
		return false
	}
	c.Close()
	return true
}
