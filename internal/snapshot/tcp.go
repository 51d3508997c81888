package snapshot

import (
	"context"
	"errors"
	"fmt"
)

// DumpTCP lists every TCP socket of the current network namespace, IPv4
// and IPv6, from one sock_diag dump, with their owners when asked. The
// owner scan reads every process's descriptors and costs as much as the
// dump itself (measured at 100 000 sockets), so the two run side by side.
// tcp_info is left out: it triples the dump, and the counters the
// connection table needs come with each connection's end.
//
// When some processes' descriptors could not be read, the sockets are
// returned with a *PartialError: they are valid, and those processes'
// sockets show no owner.
func DumpTCP(ctx context.Context, owners bool) ([]Socket, error) {
	opts := Options{Protos: []Proto{TCP}, Interleaved: true}
	if !owners {
		return Dump(ctx, opts)
	}
	type scan struct {
		owners *OwnerIndex
		err    error
	}
	scanned := make(chan scan, 1)
	go func() {
		o, err := Owners(ctx)
		scanned <- scan{o, err}
	}()
	socks, err := Dump(ctx, opts)
	sc := <-scanned
	if err != nil {
		return nil, err
	}
	var partial *PartialError
	if sc.err != nil && !errors.As(sc.err, &partial) {
		return nil, fmt.Errorf("find socket owners: %w", sc.err)
	}
	Attach(socks, sc.owners)
	if partial != nil {
		return socks, partial
	}
	return socks, nil
}

// WalkTCP hands every TCP socket of the current network namespace to fn
// as the kernel lists it, without owners and without collecting them: the
// sockets DumpTCP(ctx, false) would return. fn must not keep s; it is
// never called twice at once. IPv4 and IPv6 come mixed, from one walk of
// the kernel's hash table (Options.Interleaved).
func WalkTCP(ctx context.Context, fn func(s *Socket)) error {
	return Walk(ctx, Options{Protos: []Proto{TCP}, Interleaved: true}, func(s *Socket) error {
		fn(s)
		return nil
	})
}
