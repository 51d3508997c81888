package record

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// BlockInfo is a block's header, as an index entry.
type BlockInfo struct {
	Offset      int64
	Size        int64 // on disk, sync marker included
	Flags       uint8
	Events      uint32
	FirstSeq    uint64
	First, Last uint64 // CLOCK_BOOTTIME ns
}

// HasCheckpoint reports a block where a checkpoint begins.
func (b BlockInfo) HasCheckpoint() bool { return b.Flags&blockHasCheckpoint != 0 }

// ReaderStats count what a Reader read and skipped.
type ReaderStats struct {
	Blocks  uint64
	Events  uint64
	Corrupt uint64 // stretches skipped, the torn tail included
	Skipped int64  // bytes skipped
}

// Reader reads one recording file. It never panics on bad input: a block
// that fails its checksum or does not decode is skipped to the next sync
// marker and reported as a TypeCorrupt record; so is a torn tail.
type Reader struct {
	name string
	f    io.ReaderAt
	size int64
	off  int64 // the next block
	zdec *zstd.Decoder
	comp []byte
	raw  []byte
	dec  decoder

	inBlock   bool
	blockOff  int64
	blockInfo BlockInfo
	nextSeq   uint64
	repeatSeq uint64
	cpBase    uint64
	offset    int64 // wall minus boot, ns, as last recorded
	header    *Header
	pending   []Corrupt
	stats     ReaderStats
	closer    io.Closer
}

// NewReader reads the size bytes of f; name is used in reports.
func NewReader(name string, f io.ReaderAt, size int64) (*Reader, error) {
	zdec, err := decompressor()
	if err != nil {
		return nil, fmt.Errorf("start zstd: %w", err)
	}
	return &Reader{name: name, f: f, size: size, zdec: zdec}, nil
}

// decompressor is shared: DecodeAll may be called from any goroutine.
var decompressor = sync.OnceValues(func() (*zstd.Decoder, error) {
	return zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(maxRaw))
})

// Open opens a recording file.
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	r, err := NewReader(path, f, st.Size())
	if err != nil {
		f.Close()
		return nil, err
	}
	r.closer = f
	return r, nil
}

// Close closes the file.
func (r *Reader) Close() error {
	if r.closer != nil {
		return r.closer.Close()
	}
	return nil
}

// Name is the file's name.
func (r *Reader) Name() string { return r.name }

// Stats returns the counts so far.
func (r *Reader) Stats() ReaderStats { return r.stats }

// Header is the file's header once read (nil before).
func (r *Reader) Header() *Header { return r.header }

// ClockOffset is wall minus boot time (ns) as last recorded.
func (r *Reader) ClockOffset() int64 { return r.offset }

// SeekBlock makes the next record the first of the block at off (an Offset
// from Index). The header must have been read already, or be read again
// from offset 0.
func (r *Reader) SeekBlock(off int64) {
	r.off, r.inBlock, r.pending = off, false, nil
}

// Next reads the next record into rec; io.EOF at the end of the file.
func (r *Reader) Next(rec *Record) error {
	for {
		if len(r.pending) > 0 {
			*rec = Record{Type: TypeCorrupt, Corrupt: r.pending[0]}
			r.pending = r.pending[1:]
			return nil
		}
		if !r.inBlock {
			if r.off >= r.size {
				return io.EOF
			}
			r.readBlock()
			continue
		}
		t, ok, err := r.dec.next()
		if err == nil && ok {
			var known bool
			known, err = r.decode(t, rec)
			if err == nil && known {
				return nil
			}
		}
		if err != nil {
			r.corrupt(Corrupt{Offset: r.blockOff, Bytes: r.blockInfo.Size, Events: int64(r.blockInfo.Events),
				Reason: fmt.Sprintf("block does not decode: %v", err)})
			r.inBlock = false
		}
		if !ok {
			r.inBlock = false
		}
	}
}

func (r *Reader) corrupt(c Corrupt) {
	c.File = r.name
	r.stats.Corrupt++
	r.stats.Skipped += c.Bytes
	r.pending = append(r.pending, c)
}

// readHeader reads the block header at off. ok is false when the bytes
// there are not a plausible block; complete is false when they run past
// the end of the file.
func (r *Reader) readHeader(off int64) (b BlockInfo, crc uint32, hdr [blockHeaderLen]byte, err error) {
	var buf [frameOverhead]byte
	n, rerr := r.f.ReadAt(buf[:], off)
	if n < len(buf) {
		if rerr == nil || rerr == io.EOF {
			rerr = io.ErrUnexpectedEOF
		}
		return b, 0, hdr, rerr
	}
	if !bytes.Equal(buf[:len(Sync)], Sync[:]) {
		return b, 0, hdr, errors.New("no sync marker")
	}
	copy(hdr[:], buf[len(Sync):])
	clen := binary.LittleEndian.Uint32(hdr[4:])
	b = BlockInfo{Offset: off, Size: int64(frameOverhead) + int64(clen), Flags: hdr[1],
		Events:   binary.LittleEndian.Uint32(hdr[12:]),
		FirstSeq: binary.LittleEndian.Uint64(hdr[16:]),
		First:    binary.LittleEndian.Uint64(hdr[24:]), Last: binary.LittleEndian.Uint64(hdr[32:])}
	crc = binary.LittleEndian.Uint32(hdr[40:])
	if hdr[0] != codecZstd {
		return b, crc, hdr, fmt.Errorf("unknown codec %d", hdr[0])
	}
	if rlen := binary.LittleEndian.Uint32(hdr[8:]); rlen > maxRaw || clen > maxRaw+maxRaw/8 {
		return b, crc, hdr, fmt.Errorf("block of %d bytes (%d raw): larger than any written", clen, rlen)
	}
	return b, crc, hdr, nil
}

// readBlock loads the block at r.off, or reports what is there instead
// and moves past it.
func (r *Reader) readBlock() {
	off := r.off
	b, crc, hdr, err := r.readHeader(off)
	if err == nil && off+b.Size > r.size {
		err = io.ErrUnexpectedEOF
	}
	if err == nil {
		clen := int(b.Size) - frameOverhead
		if cap(r.comp) < clen {
			r.comp = make([]byte, clen)
		}
		r.comp = r.comp[:clen]
		if _, rerr := r.f.ReadAt(r.comp, off+int64(frameOverhead)); rerr != nil && rerr != io.EOF {
			err = rerr
		} else if crc32.Update(crc32.Checksum(hdr[:40], castagnoli), castagnoli, r.comp) != crc {
			err = errors.New("checksum mismatch")
		}
	}
	if err == nil {
		rlen := binary.LittleEndian.Uint32(hdr[8:])
		raw, derr := r.zdec.DecodeAll(r.comp, r.raw[:0])
		switch {
		case derr != nil:
			err = fmt.Errorf("decompress: %w", derr)
		case uint32(len(raw)) != rlen:
			err = fmt.Errorf("decompressed to %d bytes, header says %d", len(raw), rlen)
		}
		r.raw = raw
	}
	if err != nil {
		r.skip(off, b, err)
		return
	}
	r.stats.Blocks++
	r.blockOff, r.blockInfo = off, b
	r.nextSeq = b.FirstSeq
	r.dec.reset(r.raw)
	r.inBlock = true
	r.off = off + b.Size
}

// skip reports the bad bytes at off and moves to the next sync marker.
func (r *Reader) skip(off int64, b BlockInfo, err error) {
	events := int64(-1)
	if b.Size > 0 {
		events = int64(b.Events) // unverified: at most what the header claims
	}
	next := r.findSync(off + 1)
	c := Corrupt{Offset: off, Bytes: next - off, Events: events, Torn: next >= r.size, Reason: err.Error()}
	if errors.Is(err, io.ErrUnexpectedEOF) && c.Torn {
		c.Reason = "the file ends inside this block"
	}
	r.corrupt(c)
	r.off = next
}

// findSync returns the offset of the next sync marker at or after off, or
// the file's size.
func (r *Reader) findSync(off int64) int64 {
	const chunk = 64 << 10
	buf := make([]byte, chunk+len(Sync)-1)
	for off < r.size {
		n, err := r.f.ReadAt(buf, off)
		if n <= 0 {
			break
		}
		if i := bytes.Index(buf[:n], Sync[:]); i >= 0 {
			return off + int64(i)
		}
		if err != nil || n < len(Sync) {
			break
		}
		off += int64(n - len(Sync) + 1)
	}
	return r.size
}

// Index lists the blocks of the file by their headers, without reading
// the payloads (nor checking them). Stretches without a plausible header
// are passed over to the next sync marker.
func (r *Reader) Index() []BlockInfo {
	var idx []BlockInfo
	for off := int64(0); off < r.size; {
		b, _, _, err := r.readHeader(off)
		if err != nil || off+b.Size > r.size {
			off = r.findSync(off + 1)
			continue
		}
		idx = append(idx, b)
		off += b.Size
	}
	return idx
}

// decode fills rec from the record of type t in r.dec.b; known is false
// for types this version does not know, which are skipped.
func (r *Reader) decode(t Type, rec *Record) (known bool, err error) {
	d := &r.dec
	rec.Type = t
	switch t {
	case TypeHeader:
		var h Header
		if err := json.Unmarshal(d.b, &h); err != nil {
			return false, fmt.Errorf("header: %w", err)
		}
		if h.FormatVersion < 1 {
			return false, fmt.Errorf("header: format version %d", h.FormatVersion)
		}
		rec.Header = h
		r.header = &rec.Header
		r.offset = h.ClockOffset
		rec.Time = h.StartBoot
	case TypeClock:
		if rec.Time, err = d.uvarint(); err != nil {
			return false, err
		}
		v, err := d.uvarint()
		if err != nil {
			return false, err
		}
		rec.Offset = unzigzag(v)
		r.offset = rec.Offset
	case TypeEvent, TypeRepeat:
		if err := d.event(&rec.Event); err != nil {
			return false, fmt.Errorf("%s: %w", t, err)
		}
		rec.Time = rec.Event.Time
		if t == TypeEvent {
			rec.Seq = r.nextSeq
			r.nextSeq++
			r.stats.Events++
		} else {
			rec.Seq = r.repeatSeq
			r.repeatSeq++
		}
	case TypeLoss:
		if rec.Time, err = d.uvarint(); err != nil {
			return false, err
		}
		if rec.Loss.Reason, err = d.str(); err != nil {
			return false, err
		}
		if rec.Loss.Count, err = d.uvarint(); err != nil {
			return false, err
		}
		if rec.Loss.Total, err = d.uvarint(); err != nil {
			return false, err
		}
	case TypeStale, TypeResync:
		if rec.Time, err = d.uvarint(); err != nil {
			return false, err
		}
		if rec.Checkpoint.Lost, err = d.uvarint(); err != nil {
			return false, err
		}
	case TypeHeld:
		if rec.Time, err = d.uvarint(); err != nil {
			return false, err
		}
		if rec.Held, err = d.uvarint(); err != nil {
			return false, err
		}
	case TypeCheckpoint:
		var v [7]uint64
		for i := range v {
			if v[i], err = d.uvarint(); err != nil {
				return false, fmt.Errorf("checkpoint: %w", err)
			}
		}
		rec.Time, rec.Offset = v[0], unzigzag(v[1])
		rec.Checkpoint = Checkpoint{Seq: v[2], Rows: v[3], Lost: v[4], Resyncs: v[5], Stale: v[6]&1 != 0, Tracing: v[6]&2 != 0}
		r.cpBase, r.offset, r.repeatSeq = rec.Time, rec.Offset, rec.Checkpoint.Seq
	case TypeRow:
		if err := d.row(&rec.Row, r.cpBase); err != nil {
			return false, fmt.Errorf("row: %w", err)
		}
		rec.Time = r.cpBase
	case TypeCheckEnd:
		if rec.Time, err = d.uvarint(); err != nil {
			return false, err
		}
		if rec.Checkpoint.Rows, err = d.uvarint(); err != nil {
			return false, err
		}
		if rec.Checkpoint.Repeats, err = d.uvarint(); err != nil {
			return false, err
		}
	case TypeGap:
		g := &rec.Gap
		for _, p := range []*uint64{&g.Since, &g.Until, &g.Events, &g.Records, &g.Bytes} {
			if *p, err = d.uvarint(); err != nil {
				return false, fmt.Errorf("gap: %w", err)
			}
		}
		if g.Reason, err = d.str(); err != nil {
			return false, err
		}
		rec.Time = g.Until
	case TypeEnd:
		if rec.Time, err = d.uvarint(); err != nil {
			return false, err
		}
		for _, p := range []*uint64{&rec.End.Events, &rec.End.Lost, &rec.End.NotWritten} {
			if *p, err = d.uvarint(); err != nil {
				return false, fmt.Errorf("end: %w", err)
			}
		}
	default:
		return false, nil
	}
	return true, nil
}
