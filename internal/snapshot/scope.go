package snapshot

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Scope is the network namespaces a connection table dumps: every one on
// the host, or one a --netns selector named. Its DumpTCP and WalkTCP list
// them the way the functions of the same name list tcpstat's own, with
// Socket.NetNS set; Covers then says which namespaces the last dump
// speaks for. A Scope is used by one table: one dump at a time.
type Scope struct {
	only *Namespace // nil: every namespace

	mu sync.Mutex
	// After the last dump: namespaces dumped or found gone, whether the
	// namespace listing was complete (a row of an unlisted namespace is
	// then of one that ended).
	covered  map[uint32]bool
	listed   map[uint32]bool
	complete bool
	// gone holds namespaces an earlier dump listed and a later one did not,
	// with the number of the dump that missed them: their rows are judged
	// (and leave) even when the listing was not complete.
	gone  map[uint32]int
	dumps int
}

// AllNetNS is the scope of every network namespace. Joining others needs
// CAP_SYS_ADMIN; listing other users' processes' namespaces needs
// CAP_SYS_PTRACE.
func AllNetNS() *Scope { return &Scope{} }

// OneNetNS is the scope of one namespace (ResolveNetNS).
func OneNetNS(ns Namespace) *Scope { return &Scope{only: &ns} }

// Has reports whether the scope includes namespace netns: the events a
// table of this scope keeps.
func (sc *Scope) Has(netns uint32) bool { return sc.only == nil || sc.only.Inode == netns }

// Covers reports whether the last dump speaks for namespace netns: it was
// dumped, or it is gone. Rows of namespaces it does not cover (unreadable,
// failed to dump) must not be judged by it.
func (sc *Scope) Covers(netns uint32) bool {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.only != nil {
		return netns == sc.only.Inode
	}
	_, gone := sc.gone[netns]
	return sc.covered[netns] || gone || (sc.complete && !sc.listed[netns])
}

// goneFor is how many dumps a vanished namespace stays judged: enough for
// its rows to be missed twice.
const goneFor = 8

// namespaces lists the scope's namespaces.
func (sc *Scope) namespaces() ([]Namespace, int, error) {
	if sc.only != nil {
		return []Namespace{*sc.only}, 0, nil
	}
	nss, err := Namespaces()
	var partial *NamespacesError
	if errors.As(err, &partial) {
		return nss, partial.Unreadable, nil
	}
	return nss, 0, err
}

// walk dumps the scope's namespaces, TCP of both families, and records
// what the dump covered. A namespace that could not be joined fails the
// dump when it is the only one; among many it is left out, its rows left
// alone, and a *NetNSError says so after the others were handed out.
func (sc *Scope) walk(ctx context.Context, fn func(*Socket) error) error {
	nss, unreadable, err := sc.namespaces()
	if err != nil {
		return err
	}
	res, err := WalkNetNS(ctx, nss, Options{Protos: []Proto{TCP}, Interleaved: true}, 2, fn)
	if err != nil {
		return err
	}
	covered := make(map[uint32]bool, len(res))
	listed := make(map[uint32]bool, len(res))
	var failed []NetNSResult
	for _, r := range res {
		listed[r.Inode] = true
		switch {
		case r.Err == nil || errors.Is(r.Err, ErrNetNSGone):
			covered[r.Inode] = true
		default:
			failed = append(failed, r)
		}
	}
	if len(failed) > 0 && sc.only != nil {
		return failed[0].Err
	}
	sc.mu.Lock()
	sc.dumps++
	if sc.gone == nil {
		sc.gone = map[uint32]int{}
	}
	for ino := range sc.listed {
		if !listed[ino] {
			sc.gone[ino] = sc.dumps
		}
	}
	for ino, at := range sc.gone {
		if listed[ino] || sc.dumps-at >= goneFor {
			delete(sc.gone, ino)
		}
	}
	sc.covered, sc.listed, sc.complete = covered, listed, unreadable == 0
	sc.mu.Unlock()
	if len(failed) > 0 {
		return &NetNSError{Failed: len(failed), Of: len(res), First: failed[0].Err}
	}
	return nil
}

// NetNSError says a dump of every namespace could not dump some of them
// (joining another namespace needs CAP_SYS_ADMIN). The sockets that come
// with it are valid: those of the namespaces that were dumped, which are
// the only ones the dump covers.
type NetNSError struct {
	Failed, Of int
	First      error
}

func (e *NetNSError) Error() string {
	return fmt.Sprintf("%d of %d network namespaces not dumped, their sockets older than tcpstat are not shown: %v", e.Failed, e.Of, e.First)
}

func (e *NetNSError) Unwrap() error { return e.First }

// WalkTCP is WalkTCP (the function) over the scope's namespaces.
func (sc *Scope) WalkTCP(ctx context.Context, fn func(s *Socket)) error {
	return sc.walk(ctx, func(s *Socket) error {
		fn(s)
		return nil
	})
}

// DumpTCP is DumpTCP (the function) over the scope's namespaces.
func (sc *Scope) DumpTCP(ctx context.Context, owners bool) ([]Socket, error) {
	var scanned chan ownerScan
	if owners {
		scanned = make(chan ownerScan, 1)
		go func() {
			o, err := Owners(ctx)
			scanned <- ownerScan{o, err}
		}()
	}
	socks := make([]Socket, 0, Estimate(TCP))
	err := sc.walk(ctx, func(s *Socket) error {
		socks = append(socks, *s)
		return nil
	})
	var nsErr *NetNSError
	if err != nil && !errors.As(err, &nsErr) {
		if owners {
			<-scanned
		}
		return nil, err
	}
	if !owners {
		return socks, err
	}
	o := <-scanned
	var partial *PartialError
	if o.err != nil && !errors.As(o.err, &partial) {
		return nil, fmt.Errorf("find socket owners: %w", o.err)
	}
	Attach(socks, o.owners)
	switch {
	case nsErr != nil && partial != nil:
		return socks, errors.Join(nsErr, partial)
	case nsErr != nil:
		return socks, nsErr
	case partial != nil:
		return socks, partial
	}
	return socks, nil
}

type ownerScan struct {
	owners *OwnerIndex
	err    error
}
