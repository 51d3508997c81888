package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// Inside a block, records are: type (1 byte), payload length (uvarint),
// payload. Events and rows repeat a few values (cookies, addresses,
// processes, the namespace) over and over: each block keeps small tables
// of recent ones that the writer and the reader fill the same way, so a
// repeat is one byte. Both start empty at every block, which keeps each
// block readable on its own.
const (
	recentCookies = 32
	recentAddrs   = 16
	recentProcs   = 16

	addrLit4    = recentAddrs     // a literal IPv4 address follows
	addrLit6    = recentAddrs + 1 // a literal IPv6 address follows
	addrInvalid = recentAddrs + 2 // the zero netip.Addr
	procLit     = recentProcs
)

// Event flags.
const (
	evAccept = 1 << iota
	evInferred
	evTimeWaitFinWait2
	evOwnerKnown
	evDwellKnown
	evSynthetic
	evReason
	evCounters
	evNetNS // the namespace differs from the previous record's
	evWideStates
	evOwnerSource
)

// Row flags.
const (
	rowInferred = 1 << iota
	rowTimeWait
	rowOwnerKnown
	rowSinceKnown
	rowBornKnown
	rowHandshakeKnown
	rowCounters
	rowNetNS
	rowOwnerFormer
)

// dict is the per-block state shared by encoder and decoder.
type dict struct {
	prevTime   uint64
	netns      uint32
	cookies    [recentCookies]uint64
	nCookies   int
	lastCookie uint64
	addrs      [recentAddrs]netip.Addr
	nAddrs     int
	procs      [recentProcs]tracer.Process
	nProcs     int
}

func (d *dict) reset() { *d = dict{} }

func (d *dict) addCookie(c uint64) {
	d.cookies[d.nCookies%recentCookies] = c
	d.nCookies++
	d.lastCookie = c
}

func (d *dict) addAddr(a netip.Addr) {
	d.addrs[d.nAddrs%recentAddrs] = a
	d.nAddrs++
}

func (d *dict) addProc(p tracer.Process) {
	d.procs[d.nProcs%recentProcs] = p
	d.nProcs++
}

func zigzag(v int64) uint64   { return uint64(v<<1) ^ uint64(v>>63) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

// encoder appends records to a block's raw payload.
type encoder struct {
	b []byte
	d dict
}

func (e *encoder) reset() {
	e.b = e.b[:0]
	e.d.reset()
}

// begin starts a record; end fills in its length.
func (e *encoder) begin(t Type) int {
	e.b = append(e.b, byte(t), 0)
	return len(e.b)
}

func (e *encoder) end(start int) {
	n := len(e.b) - start
	if n < 0x80 {
		e.b[start-1] = byte(n)
		return
	}
	var lb [binary.MaxVarintLen64]byte
	l := binary.PutUvarint(lb[:], uint64(n))
	e.b = append(e.b, lb[1:l]...) // room for the longer length
	copy(e.b[start+l-1:], e.b[start:start+n])
	copy(e.b[start-1:], lb[:l])
}

func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }

func (e *encoder) bytes(s string) {
	e.uvarint(uint64(len(s)))
	e.b = append(e.b, s...)
}

// time appends t as a difference from the previous record's time.
func (e *encoder) time(t uint64) {
	e.uvarint(zigzag(int64(t - e.d.prevTime)))
	e.d.prevTime = t
}

func (e *encoder) cookie(c uint64) {
	d := &e.d
	for i := range min(d.nCookies, recentCookies) {
		if d.cookies[i] == c {
			e.uvarint(uint64(i) + 1)
			return
		}
	}
	e.b = append(e.b, 0)
	e.uvarint(zigzag(int64(c - d.lastCookie)))
	d.addCookie(c)
}

func (e *encoder) addr(a netip.Addr) {
	d := &e.d
	for i := range min(d.nAddrs, recentAddrs) {
		if d.addrs[i] == a {
			e.b = append(e.b, byte(i))
			return
		}
	}
	switch {
	case !a.IsValid():
		e.b = append(e.b, addrInvalid)
		return
	case a.Is4():
		b := a.As4()
		e.b = append(append(e.b, addrLit4), b[:]...)
	default:
		b := a.As16()
		e.b = append(append(e.b, addrLit6), b[:]...)
	}
	d.addAddr(a)
}

func (e *encoder) proc(p *tracer.Process) {
	d := &e.d
	for i := range min(d.nProcs, recentProcs) {
		if q := &d.procs[i]; q.PID == p.PID && q.UID == p.UID && q.Cgroup == p.Cgroup && q.Comm == p.Comm {
			e.b = append(e.b, byte(i))
			return
		}
	}
	e.b = append(e.b, procLit)
	e.uvarint(uint64(p.PID))
	e.uvarint(uint64(p.UID))
	e.uvarint(p.Cgroup)
	e.bytes(p.Comm)
	d.addProc(*p)
}

func (e *encoder) states(a, b tcp.State) {
	e.b = append(e.b, byte(a)<<4|byte(b)&0xf)
}

// event appends ev as a record of type t (TypeEvent or TypeRepeat).
func (e *encoder) event(t Type, ev *tracer.Event) {
	start := e.begin(t)
	var f uint64
	if ev.Kind == tracer.Accept {
		f |= evAccept
	}
	if ev.Inferred {
		f |= evInferred
	}
	if ev.TimeWaitFinWait2 {
		f |= evTimeWaitFinWait2
	}
	if ev.OwnerKnown {
		f |= evOwnerKnown
	}
	if ev.DwellKnown {
		f |= evDwellKnown
	}
	if ev.Synthetic {
		f |= evSynthetic
	}
	if ev.Reason != tracer.ReasonNone || ev.Errno != 0 {
		f |= evReason
	}
	if ev.Counters != (tracer.Counters{}) {
		f |= evCounters
	}
	if ev.NetNS != e.d.netns {
		f |= evNetNS
	}
	if ev.Old > 15 || ev.New > 15 {
		f |= evWideStates
	}
	if ev.OwnerSource != tracer.OwnerNone {
		f |= evOwnerSource
	}
	e.uvarint(f)
	if f&evWideStates != 0 {
		e.b = append(e.b, byte(ev.Old), byte(ev.New))
	} else {
		e.states(ev.Old, ev.New)
	}
	e.time(ev.Time)
	e.cookie(ev.Cookie)
	if f&evNetNS != 0 {
		e.uvarint(uint64(ev.NetNS))
		e.d.netns = ev.NetNS
	}
	e.addr(ev.Local.Addr())
	e.uvarint(uint64(ev.Local.Port()))
	e.addr(ev.Remote.Addr())
	e.uvarint(uint64(ev.Remote.Port()))
	if ev.OwnerKnown {
		e.proc(&ev.Owner)
	}
	if f&evOwnerSource != 0 {
		e.b = append(e.b, byte(ev.OwnerSource))
	}
	e.proc(&ev.Task)
	if ev.DwellKnown {
		e.uvarint(uint64(ev.Dwell))
	}
	if f&evReason != 0 {
		e.b = append(e.b, byte(ev.Reason))
		e.uvarint(uint64(ev.Errno))
	}
	if f&evCounters != 0 {
		c := &ev.Counters
		e.uvarint(c.BytesReceived)
		e.uvarint(c.BytesAcked)
		e.uvarint(uint64(c.Retransmits))
		e.uvarint(uint64(c.SRTT))
	}
	e.end(start)
}

// absTime appends a time that may be 0 (unknown) relative to base.
func (e *encoder) absTime(t, base uint64) {
	if t == 0 {
		e.b = append(e.b, 0)
		return
	}
	e.uvarint(zigzag(int64(t-base)) + 1)
}

// row appends one table row of a checkpoint taken at base.
func (e *encoder) row(r *table.Row, base uint64) {
	start := e.begin(TypeRow)
	var f uint64
	if r.Inferred() {
		f |= rowInferred
	}
	if r.TimeWait() {
		f |= rowTimeWait
	}
	owner, ownerKnown := r.Owner()
	if former, ok := r.FormerOwner(); ok {
		owner, ownerKnown = former, true
		f |= rowOwnerFormer
	}
	if ownerKnown {
		f |= rowOwnerKnown
	}
	since, sinceKnown := r.Since()
	if sinceKnown {
		f |= rowSinceKnown
	}
	born, bornKnown := r.Born()
	if bornKnown {
		f |= rowBornKnown
	}
	if _, ok := r.Handshake(); ok {
		f |= rowHandshakeKnown
	}
	counters, countersKnown := r.Counters()
	if countersKnown {
		f |= rowCounters
	}
	if r.NetNS() != e.d.netns {
		f |= rowNetNS
	}
	e.uvarint(f)
	e.b = append(e.b, byte(r.State()))
	e.cookie(r.Cookie())
	if f&rowNetNS != 0 {
		e.uvarint(uint64(r.NetNS()))
		e.d.netns = r.NetNS()
	}
	l, rm := r.Local(), r.Remote()
	e.addr(l.Addr())
	e.uvarint(uint64(l.Port()))
	e.addr(rm.Addr())
	e.uvarint(uint64(rm.Port()))
	if ownerKnown {
		e.proc(&owner)
		e.b = append(e.b, byte(r.OwnerSource()))
	}
	e.absTime(since, base)
	e.absTime(born, base)
	e.absTime(r.Ended(), base)
	e.absTime(r.Expires(), base)
	n := 0
	for _, s := range table.DwellStates() {
		if r.Dwell(s) != 0 {
			n++
		}
	}
	e.uvarint(uint64(n))
	for _, s := range table.DwellStates() {
		if d := r.Dwell(s); d != 0 {
			e.b = append(e.b, byte(s))
			e.uvarint(uint64(d))
		}
	}
	if countersKnown {
		e.uvarint(counters.BytesReceived)
		e.uvarint(counters.BytesAcked)
		e.uvarint(uint64(counters.Retransmits))
		e.uvarint(uint64(counters.SRTT))
	}
	e.end(start)
}

// decoder reads the records of one block's raw payload.
type decoder struct {
	b   []byte // the rest of the current record
	rec []byte // the rest of the block after it
	d   dict
}

var errShort = errors.New("record shorter than its fields")

func (d *decoder) reset(raw []byte) {
	d.rec = raw
	d.b = nil
	d.d.reset()
}

// next splits off the next record: its type, with its payload in d.b.
func (d *decoder) next() (Type, bool, error) {
	if len(d.rec) == 0 {
		return 0, false, nil
	}
	t := Type(d.rec[0])
	n, l := binary.Uvarint(d.rec[1:])
	if l <= 0 || n > uint64(len(d.rec)-1-l) {
		return 0, false, fmt.Errorf("%s record: length past the end of its block", t)
	}
	d.b = d.rec[1+l : 1+l+int(n)]
	d.rec = d.rec[1+l+int(n):]
	return t, true, nil
}

func (d *decoder) uvarint() (uint64, error) {
	v, l := binary.Uvarint(d.b)
	if l <= 0 {
		return 0, errShort
	}
	d.b = d.b[l:]
	return v, nil
}

func (d *decoder) byte1() (byte, error) {
	if len(d.b) == 0 {
		return 0, errShort
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c, nil
}

func (d *decoder) raw(n int) ([]byte, error) {
	if n < 0 || len(d.b) < n {
		return nil, errShort
	}
	s := d.b[:n]
	d.b = d.b[n:]
	return s, nil
}

func (d *decoder) str() (string, error) {
	n, err := d.uvarint()
	if err != nil {
		return "", err
	}
	if n > uint64(len(d.b)) {
		return "", errShort
	}
	s, _ := d.raw(int(n))
	return string(s), nil
}

func (d *decoder) time() (uint64, error) {
	v, err := d.uvarint()
	if err != nil {
		return 0, err
	}
	d.d.prevTime += uint64(unzigzag(v))
	return d.d.prevTime, nil
}

func (d *decoder) absTime(base uint64) (uint64, error) {
	v, err := d.uvarint()
	if err != nil || v == 0 {
		return 0, err
	}
	return base + uint64(unzigzag(v-1)), nil
}

func (d *decoder) cookie() (uint64, error) {
	v, err := d.uvarint()
	if err != nil {
		return 0, err
	}
	if v > 0 {
		if v > uint64(min(d.d.nCookies, recentCookies)) {
			return 0, errors.New("reference to a cookie not yet seen")
		}
		return d.d.cookies[v-1], nil
	}
	delta, err := d.uvarint()
	if err != nil {
		return 0, err
	}
	c := d.d.lastCookie + uint64(unzigzag(delta))
	d.d.addCookie(c)
	return c, nil
}

func (d *decoder) addr() (netip.Addr, error) {
	tag, err := d.byte1()
	if err != nil {
		return netip.Addr{}, err
	}
	var a netip.Addr
	switch {
	case tag < recentAddrs:
		if int(tag) >= min(d.d.nAddrs, recentAddrs) {
			return a, errors.New("reference to an address not yet seen")
		}
		return d.d.addrs[tag], nil
	case tag == addrInvalid:
		return a, nil
	case tag == addrLit4:
		b, err := d.raw(4)
		if err != nil {
			return a, err
		}
		a = addrFrom(b)
	case tag == addrLit6:
		b, err := d.raw(16)
		if err != nil {
			return a, err
		}
		a = addrFrom(b)
	default:
		return a, fmt.Errorf("address tag %d", tag)
	}
	d.d.addAddr(a)
	return a, nil
}

func (d *decoder) addrPort() (netip.AddrPort, error) {
	a, err := d.addr()
	if err != nil {
		return netip.AddrPort{}, err
	}
	p, err := d.uvarint()
	if err != nil {
		return netip.AddrPort{}, err
	}
	if p > 0xffff {
		return netip.AddrPort{}, fmt.Errorf("port %d", p)
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}

func (d *decoder) proc(p *tracer.Process) error {
	tag, err := d.byte1()
	if err != nil {
		return err
	}
	if tag < recentProcs {
		if int(tag) >= min(d.d.nProcs, recentProcs) {
			return errors.New("reference to a process not yet seen")
		}
		*p = d.d.procs[tag]
		return nil
	}
	if tag != procLit {
		return fmt.Errorf("process tag %d", tag)
	}
	pid, err := d.uvarint()
	if err != nil {
		return err
	}
	uid, err := d.uvarint()
	if err != nil {
		return err
	}
	cg, err := d.uvarint()
	if err != nil {
		return err
	}
	comm, err := d.str()
	if err != nil {
		return err
	}
	*p = tracer.Process{PID: uint32(pid), UID: uint32(uid), Cgroup: cg, Comm: comm}
	d.d.addProc(*p)
	return nil
}

// event decodes an event record's payload into ev.
func (d *decoder) event(ev *tracer.Event) error {
	f, err := d.uvarint()
	if err != nil {
		return err
	}
	*ev = tracer.Event{Kind: tracer.Transition}
	if f&evAccept != 0 {
		ev.Kind = tracer.Accept
	}
	ev.Inferred = f&evInferred != 0
	ev.TimeWaitFinWait2 = f&evTimeWaitFinWait2 != 0
	ev.OwnerKnown = f&evOwnerKnown != 0
	ev.DwellKnown = f&evDwellKnown != 0
	ev.Synthetic = f&evSynthetic != 0
	if f&evWideStates != 0 {
		b, err := d.raw(2)
		if err != nil {
			return err
		}
		ev.Old, ev.New = tcp.State(b[0]), tcp.State(b[1])
	} else {
		s, err := d.byte1()
		if err != nil {
			return err
		}
		ev.Old, ev.New = tcp.State(s>>4), tcp.State(s&0xf)
	}
	if ev.Time, err = d.time(); err != nil {
		return err
	}
	if ev.Cookie, err = d.cookie(); err != nil {
		return err
	}
	if f&evNetNS != 0 {
		ns, err := d.uvarint()
		if err != nil {
			return err
		}
		d.d.netns = uint32(ns)
	}
	ev.NetNS = d.d.netns
	if ev.Local, err = d.addrPort(); err != nil {
		return err
	}
	if ev.Remote, err = d.addrPort(); err != nil {
		return err
	}
	if ev.OwnerKnown {
		if err := d.proc(&ev.Owner); err != nil {
			return err
		}
	}
	if f&evOwnerSource != 0 {
		src, err := d.byte1()
		if err != nil {
			return err
		}
		ev.OwnerSource = tracer.OwnerSource(src)
	}
	if err := d.proc(&ev.Task); err != nil {
		return err
	}
	if ev.DwellKnown {
		v, err := d.uvarint()
		if err != nil {
			return err
		}
		ev.Dwell = time.Duration(v)
	}
	if f&evReason != 0 {
		r, err := d.byte1()
		if err != nil {
			return err
		}
		errno, err := d.uvarint()
		if err != nil {
			return err
		}
		ev.Reason, ev.Errno = tracer.Reason(r), uint16(errno)
	}
	if f&evCounters != 0 {
		var v [4]uint64
		for i := range v {
			if v[i], err = d.uvarint(); err != nil {
				return err
			}
		}
		ev.Counters = tracer.Counters{BytesReceived: v[0], BytesAcked: v[1], Retransmits: uint32(v[2]), SRTT: time.Duration(v[3])}
	}
	return nil
}

// row decodes a row record of a checkpoint taken at base.
func (d *decoder) row(c *table.Conn, base uint64) error {
	f, err := d.uvarint()
	if err != nil {
		return err
	}
	st, err := d.byte1()
	if err != nil {
		return err
	}
	*c = table.Conn{State: tcp.State(st), Inferred: f&rowInferred != 0, TimeWait: f&rowTimeWait != 0,
		OwnerKnown: f&rowOwnerKnown != 0, OwnerFormer: f&rowOwnerFormer != 0, SinceKnown: f&rowSinceKnown != 0, BornKnown: f&rowBornKnown != 0,
		HandshakeKnown: f&rowHandshakeKnown != 0, CountersKnown: f&rowCounters != 0}
	if c.Cookie, err = d.cookie(); err != nil {
		return err
	}
	if f&rowNetNS != 0 {
		ns, err := d.uvarint()
		if err != nil {
			return err
		}
		d.d.netns = uint32(ns)
	}
	c.NetNS = d.d.netns
	if c.Local, err = d.addrPort(); err != nil {
		return err
	}
	if c.Remote, err = d.addrPort(); err != nil {
		return err
	}
	if c.OwnerKnown {
		if err := d.proc(&c.Owner); err != nil {
			return err
		}
		src, err := d.byte1()
		if err != nil {
			return err
		}
		c.OwnerSource = tracer.OwnerSource(src)
	}
	for _, p := range []*uint64{&c.Since, &c.Born, &c.Ended, &c.Expires} {
		if *p, err = d.absTime(base); err != nil {
			return err
		}
	}
	n, err := d.uvarint()
	if err != nil {
		return err
	}
	if n > uint64(len(d.b)) {
		return errShort
	}
	for range n {
		s, err := d.byte1()
		if err != nil {
			return err
		}
		v, err := d.uvarint()
		if err != nil {
			return err
		}
		c.Dwell = append(c.Dwell, table.StateDwell{State: tcp.State(s), Dwell: time.Duration(v)})
		if tcp.State(s) == tcp.SynSent {
			c.Handshake = time.Duration(v)
		}
	}
	if c.CountersKnown {
		var v [4]uint64
		for i := range v {
			if v[i], err = d.uvarint(); err != nil {
				return err
			}
		}
		c.Counters = tracer.Counters{BytesReceived: v[0], BytesAcked: v[1], Retransmits: uint32(v[2]), SRTT: time.Duration(v[3])}
	}
	return nil
}
