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

// BenchmarkWalkTCP streams the same dump socket by socket, as listings and
// the live table read it (tcpiter's BenchmarkDump is the BPF iterator's
// side).
func BenchmarkWalkTCP(b *testing.B) {
	if !canDiag() {
		b.Skip("needs sock_diag (root)")
	}
	n := 0
	for b.Loop() {
		n = 0
		if err := Walk(context.Background(), Options{Protos: []Proto{TCP}, Source: Netlink}, func(*Socket) error {
			n++
			return nil
		}); err != nil {
			b.Fatal(err)
		}
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

// BenchmarkIndexOwners is the owner scan's index at 130 000 socket
// descriptors held by seven processes, in the order a scan finds them.
func BenchmarkIndexOwners(b *testing.B) {
	var x OwnerIndex
	for pid := range 7 {
		x.procs = append(x.procs, Owner{PID: uint32(100 + pid), Comm: "holder", Cmd: "holder"})
	}
	src := make([]ownerRef, 130_000)
	for i := range src {
		src[i] = ownerRef{uint64(1_000_000 + (i*7919)%len(src)), uint32(i / 20_000)}
	}
	x.refs = make([]ownerRef, len(src))
	for b.Loop() {
		copy(x.refs, src)
		x.shared = nil
		x.index()
	}
}
