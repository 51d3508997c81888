package tracer

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/tcpstat/tcpstat/internal/tcp"
)

// sweepEvery is how often the sockets map is swept of entries whose
// socket closed without its CLOSE transition being seen (a recursion loss):
// the LRU map would evict them only once full, after live sockets' state.
const sweepEvery = 10 * time.Second

// KeptSocket is a socket the kernel program keeps state for.
type KeptSocket struct {
	NetNS uint32
	State tcp.State
	// InStorage: state in the socket's local storage, freed with the
	// socket. InMap: an entry in the sockets map (with storage, a passive
	// open between ESTABLISHED and its first transition after accept).
	InStorage, InMap bool
}

// KeptSockets sweeps the sockets map (see Stats.Swept), then lists every
// socket the kernel program keeps state for, once each: what the tests use
// to show that per-socket state goes with its socket.
func (t *Tracer) KeptSockets() ([]KeptSocket, error) {
	if t.iteratorsErr != nil {
		return nil, fmt.Errorf("list per-socket state: %w", t.iteratorsErr)
	}
	var kept []KeptSocket
	at := map[uint64]int{}
	add := func(r *tcpstateKeptSocket) {
		i, ok := at[r.Sk]
		if !ok {
			i = len(kept)
			at[r.Sk] = i
			kept = append(kept, KeptSocket{NetNS: r.Netns, State: tcp.State(r.State)})
		}
		if r.InStorage != 0 {
			kept[i].InStorage = true
		} else {
			kept[i].InMap = true
		}
	}
	if err := t.iterate(t.objs.SweepSockets, t.objs.Sockets, add); err != nil {
		return nil, fmt.Errorf("sweep the sockets map: %w", err)
	}
	if t.storage {
		if err := t.iterate(t.objs.ListStorage, t.objs.SocketStorage, add); err != nil {
			return nil, fmt.Errorf("list socket storage: %w", err)
		}
	}
	return kept, nil
}

func (t *Tracer) sweepEvery(every time.Duration) {
	defer close(t.swept)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-t.sweeping:
			return
		case <-tick.C:
			// A failed sweep leaves the entries to the LRU; the next
			// sweep tries again.
			_ = t.iterate(t.objs.SweepSockets, t.objs.Sockets, nil)
		}
	}
}

const keptSocketSize = int(unsafe.Sizeof(tcpstateKeptSocket{}))

// iterate runs an iterator program over m and hands each record to each
// (nil: the records are read and dropped).
func (t *Tracer) iterate(prog *ebpf.Program, m *ebpf.Map, each func(*tcpstateKeptSocket)) error {
	it, err := link.AttachIter(link.IterOptions{Program: prog, Map: m})
	if err != nil {
		return err
	}
	defer it.Close()
	rd, err := it.Open()
	if err != nil {
		return err
	}
	defer rd.Close()
	if each == nil {
		_, err := io.Copy(io.Discard, rd)
		return err
	}
	var r tcpstateKeptSocket
	br := bufio.NewReader(rd)
	for {
		switch err := binary.Read(br, binary.NativeEndian, &r); {
		case err == io.EOF:
			return nil
		case err != nil:
			return fmt.Errorf("read the iterator's records of %d bytes: %w", keptSocketSize, err)
		}
		each(&r)
	}
}
